/*
 * store.c - the model-version store over LMDB (see store.h and docs/store.md).
 *
 * One LMDB environment per directory, three named databases keyed by the
 * version as 8 big-endian bytes (so LMDB's byte order is version order):
 *
 *   "params"  float32[n], raw little-endian, n * 4 bytes
 *   "layout"  the layout text, 1..GDML_LAYOUT_MAX-1 bytes, no NUL
 *   "meta"    the record below
 *
 * Meta record, format 1, every integer little-endian:
 *   u32 format (= 1)
 *   u64 version, u64 round, i64 time_ms, u64 bytes_received, u64 bytes_sent,
 *   f64 accuracy, f64 loss (IEEE-754 bit patterns), u32 n_regions,
 *   n_regions times: u32 name_len, name_len bytes (no NUL), u64 seq, u64 samples
 * and nothing after the last region. A reader checks every length before it
 * reads, and rejects any other format number, so a damaged or future record
 * becomes GDML_ERR_FORMAT rather than a crash.
 *
 * A version is written in one write transaction, committed with LMDB's
 * default durability (fsync), so a kill -9 leaves every committed version
 * whole and no part of an uncommitted one.
 */
#include "store.h"

#include "util.h"

#include <lmdb.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/*
 * Parameters are stored as the host's float32 bytes, which is the on-disk
 * format only on a little-endian host. No big-endian host is a target; one
 * would need a byte swap in commit and params.
 */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "store.c stores float32 in host order and needs a little-endian host"
#endif
_Static_assert(sizeof(float) == 4, "params are stored as 4-byte floats");
_Static_assert(sizeof(double) == 8, "metrics are stored as 8-byte doubles");

/*
 * The map is reserved address space, not disk: data.mdb grows with the data
 * and stays sparse on Linux. 64 GiB holds thousands of versions of a
 * 10M-parameter model; a 32-bit host cannot map that much.
 */
#if SIZE_MAX > 0xffffffffu
#define STORE_MAP_GIB 64
#else
#define STORE_MAP_GIB 1
#endif
#define STORE_MAP_SIZE ((size_t)STORE_MAP_GIB << 30)
#define STORE_MAX_DBS 8

#define META_FORMAT 1u
#define META_FIXED (4 + 7 * 8 + 4)
#define META_REGION_MAX (4 + (GDML_NAME_MAX - 1) + 8 + 8)
#define META_MAX (META_FIXED + GDML_STORE_MAX_REGIONS * META_REGION_MAX)

struct gdml_store {
    MDB_env *env;
    MDB_dbi params, layout, meta;
    bool read_only;
    char *dir;
};

/* Translates an LMDB failure into GDML_ERR_STORE with the store's path. */
static gdml_err store_fail(const gdml_store *s, gdml_errmsg *e, int rc, const char *what)
{
    if (rc == MDB_MAP_FULL)
        return gdml_errmsg_set(e, GDML_ERR_STORE,
                               "the model store at '%s' is full (map size %d GiB)", s->dir,
                               STORE_MAP_GIB);
    return gdml_errmsg_set(e, GDML_ERR_STORE, "model store at '%s': %s: %s", s->dir, what,
                           mdb_strerror(rc));
}

static void key_encode(uint64_t v, unsigned char k[8])
{
    for (int i = 0; i < 8; i++)
        k[i] = (unsigned char)(v >> (56 - 8 * i));
}

static uint64_t key_decode(const unsigned char k[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | k[i];
    return v;
}

/* Little-endian writer into a buffer that the caller sized to META_MAX. */
typedef struct wbuf {
    unsigned char *p;
    size_t len;
} wbuf;

static void put_u64(wbuf *w, uint64_t v)
{
    assert(w->len + 8 <= META_MAX);
    for (int i = 0; i < 8; i++)
        w->p[w->len++] = (unsigned char)(v >> (8 * i));
}

static void put_u32(wbuf *w, uint32_t v)
{
    assert(w->len + 4 <= META_MAX);
    for (int i = 0; i < 4; i++)
        w->p[w->len++] = (unsigned char)(v >> (8 * i));
}

static void put_f64(wbuf *w, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    put_u64(w, bits);
}

/* Little-endian reader; after the first short read ok is false and all reads give 0. */
typedef struct rbuf {
    const unsigned char *p;
    size_t len, pos;
    bool ok;
} rbuf;

static const unsigned char *get_bytes(rbuf *r, size_t n)
{
    if (!r->ok || r->len - r->pos < n) {
        r->ok = false;
        return NULL;
    }
    const unsigned char *b = r->p + r->pos;
    r->pos += n;
    return b;
}

static uint64_t get_u64(rbuf *r)
{
    const unsigned char *b = get_bytes(r, 8);
    uint64_t v = 0;
    for (int i = 7; b && i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

static uint32_t get_u32(rbuf *r)
{
    const unsigned char *b = get_bytes(r, 4);
    uint32_t v = 0;
    for (int i = 3; b && i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

static double get_f64(rbuf *r)
{
    uint64_t bits = get_u64(r);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* Serializes an already validated meta into buf[0..META_MAX); returns the length. */
static size_t meta_encode(const gdml_version_meta *m, unsigned char *buf)
{
    wbuf w = {buf, 0};
    put_u32(&w, META_FORMAT);
    put_u64(&w, m->version);
    put_u64(&w, m->round);
    put_u64(&w, (uint64_t)m->time_ms);
    put_u64(&w, m->bytes_received);
    put_u64(&w, m->bytes_sent);
    put_f64(&w, m->accuracy);
    put_f64(&w, m->loss);
    put_u32(&w, m->n_regions);
    for (uint32_t i = 0; i < m->n_regions; i++) {
        const gdml_region_part *r = &m->regions[i];
        size_t name_len = strlen(r->name);
        put_u32(&w, (uint32_t)name_len);
        assert(w.len + name_len <= META_MAX);
        memcpy(w.p + w.len, r->name, name_len);
        w.len += name_len;
        put_u64(&w, r->seq);
        put_u64(&w, r->samples);
    }
    return w.len;
}

/* Parses the meta record stored under key version; GDML_ERR_FORMAT if it is malformed. */
static gdml_err meta_decode(const gdml_store *s, uint64_t version, const MDB_val *val,
                            gdml_version_meta *out, gdml_errmsg *e)
{
    rbuf r = {val->mv_data, val->mv_size, 0, true};
    gdml_version_meta m;
    memset(&m, 0, sizeof m);
    const char *problem = NULL;

    uint32_t format = get_u32(&r);
    if (r.ok && format != META_FORMAT) {
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "version %" PRIu64 " in the model store at '%s' has a meta record "
                               "of format %" PRIu32 "; this build reads format %u",
                               version, s->dir, format, META_FORMAT);
    }
    m.version = get_u64(&r);
    m.round = get_u64(&r);
    m.time_ms = (int64_t)get_u64(&r);
    m.bytes_received = get_u64(&r);
    m.bytes_sent = get_u64(&r);
    m.accuracy = get_f64(&r);
    m.loss = get_f64(&r);
    m.n_regions = get_u32(&r);
    if (r.ok && m.n_regions > GDML_STORE_MAX_REGIONS)
        problem = "too many regions";
    for (uint32_t i = 0; r.ok && !problem && i < m.n_regions; i++) {
        gdml_region_part *part = &m.regions[i];
        uint32_t name_len = get_u32(&r);
        if (r.ok && name_len >= GDML_NAME_MAX) {
            problem = "a region name is too long";
            break;
        }
        const unsigned char *name = get_bytes(&r, name_len);
        if (name && memchr(name, '\0', name_len)) {
            problem = "a region name contains a NUL byte";
            break;
        }
        if (name)
            memcpy(part->name, name, name_len);
        part->name[name_len] = '\0';
        part->seq = get_u64(&r);
        part->samples = get_u64(&r);
    }
    if (!problem && !r.ok)
        problem = "the record is truncated";
    if (!problem && r.pos != r.len)
        problem = "the record has trailing bytes";
    if (!problem && m.version != version)
        problem = "the record names another version";
    if (problem)
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "version %" PRIu64
                               " in the model store at '%s' has a malformed meta record: %s",
                               version, s->dir, problem);
    *out = m;
    return GDML_OK;
}

static gdml_err txn_begin(gdml_store *s, bool write, MDB_txn **txn, gdml_errmsg *e)
{
    int rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, txn);
    if (rc != 0)
        return store_fail(s, e, rc,
                          write ? "cannot begin a write transaction"
                                : "cannot begin a read transaction");
    return GDML_OK;
}

/* The newest version in txn's view; GDML_ERR_NOTFOUND when the store is empty. */
static gdml_err head_in(gdml_store *s, MDB_txn *txn, uint64_t *version, gdml_errmsg *e)
{
    gdml_err err = GDML_OK;
    MDB_cursor *cur = NULL;
    MDB_val key, val;
    int rc = mdb_cursor_open(txn, s->meta, &cur);
    if (rc != 0) {
        err = store_fail(s, e, rc, "cannot open a cursor");
        goto out;
    }
    rc = mdb_cursor_get(cur, &key, &val, MDB_LAST);
    if (rc == MDB_NOTFOUND) {
        err = gdml_errmsg_set(e, GDML_ERR_NOTFOUND, "the model store at '%s' holds no versions",
                              s->dir);
        goto out;
    }
    if (rc != 0) {
        err = store_fail(s, e, rc, "cannot read the newest version");
        goto out;
    }
    if (key.mv_size != 8) {
        err = gdml_errmsg_set(e, GDML_ERR_FORMAT,
                              "the model store at '%s' has a meta key of %zu bytes, not 8", s->dir,
                              key.mv_size);
        goto out;
    }
    *version = key_decode(key.mv_data);
out:
    if (cur)
        mdb_cursor_close(cur);
    return err;
}

gdml_err gdml_store_open(const char *dir, bool read_only, gdml_store **out, gdml_errmsg *e)
{
    assert(dir && out);
    gdml_err err = GDML_OK;
    MDB_txn *txn = NULL;
    gdml_store *s = calloc(1, sizeof *s);
    if (!s)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory opening the model store at '%s'",
                               dir);
    s->read_only = read_only;
    s->dir = strdup(dir);
    if (!s->dir) {
        err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory opening the model store at '%s'",
                              dir);
        goto out;
    }

    if (read_only) {
        /* LMDB would report ENOENT; say what the user should check instead. */
        char data_path[4096];
        struct stat st;
        if (snprintf(data_path, sizeof data_path, "%s/data.mdb", dir) >= (int)sizeof data_path) {
            err = gdml_errmsg_set(e, GDML_ERR_INVALID, "store path '%s' is too long", dir);
            goto out;
        }
        if (stat(data_path, &st) != 0) {
            if (errno == ENOENT || errno == ENOTDIR)
                err = gdml_errmsg_set(e, GDML_ERR_NOTFOUND, "no model store at '%s'; check --store",
                                      dir);
            else
                err = gdml_errmsg_set(e, GDML_ERR_IO, "cannot open the model store at '%s': %s",
                                      dir, strerror(errno));
            goto out;
        }
    } else {
        err = gdml_mkdir_p(dir, e);
        if (err != GDML_OK)
            goto out;
    }

    int rc = mdb_env_create(&s->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(s->env, STORE_MAX_DBS);
    if (rc == 0)
        rc = mdb_env_set_mapsize(s->env, STORE_MAP_SIZE);
    if (rc != 0) {
        err = store_fail(s, e, rc, "cannot set up LMDB");
        goto out;
    }
    rc = mdb_env_open(s->env, dir, read_only ? MDB_RDONLY : 0, 0644);
    if (rc > 0) {
        /* Positive codes are errno values: permissions, missing files. */
        err = gdml_errmsg_set(e, GDML_ERR_IO, "cannot open the model store at '%s': %s", dir,
                              mdb_strerror(rc));
        goto out;
    }
    if (rc != 0) {
        err = store_fail(s, e, rc, "cannot open the environment");
        goto out;
    }
    /* Frees reader slots left by processes that died inside a read transaction. */
    int dead = 0;
    rc = mdb_reader_check(s->env, &dead);
    if (rc != 0) {
        err = store_fail(s, e, rc, "cannot check the reader table");
        goto out;
    }

    err = txn_begin(s, !read_only, &txn, e);
    if (err != GDML_OK)
        goto out;
    const struct {
        const char *name;
        MDB_dbi *dbi;
    } dbs[] = {{"params", &s->params}, {"layout", &s->layout}, {"meta", &s->meta}};
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
        rc = mdb_dbi_open(txn, dbs[i].name, read_only ? 0 : MDB_CREATE, dbs[i].dbi);
        if (rc == MDB_NOTFOUND) {
            err = gdml_errmsg_set(e, GDML_ERR_NOTFOUND,
                                  "no model store at '%s' (the LMDB there has no '%s' database); "
                                  "check --store",
                                  dir, dbs[i].name);
            goto out;
        }
        if (rc != 0) {
            err = store_fail(s, e, rc, "cannot open a database");
            goto out;
        }
    }
    /* Committing, even a read transaction, makes the handles usable by later ones. */
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc != 0) {
        err = store_fail(s, e, rc, "cannot create the databases");
        goto out;
    }
    *out = s;
    s = NULL;
out:
    if (txn)
        mdb_txn_abort(txn);
    gdml_store_close(&s);
    return err;
}

void gdml_store_close(gdml_store **s)
{
    if (!s || !*s)
        return;
    if ((*s)->env)
        mdb_env_close((*s)->env);
    free((*s)->dir);
    free(*s);
    *s = NULL;
}

/* Checks a version before anything is written; GDML_ERR_INVALID says why it is refused. */
static gdml_err check_commit(const gdml_store *s, const gdml_version_meta *meta, const char *layout,
                             size_t n, gdml_errmsg *e)
{
    if (s->read_only)
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "the model store at '%s' is open read-only; cannot commit", s->dir);
    if (meta->version == 0)
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "version 0 cannot be stored; versions start at 1");
    if (meta->n_regions > GDML_STORE_MAX_REGIONS)
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "version %" PRIu64 " names %" PRIu32
                               " regions; the store holds at most %d",
                               meta->version, meta->n_regions, GDML_STORE_MAX_REGIONS);
    for (uint32_t i = 0; i < meta->n_regions; i++)
        if (strnlen(meta->regions[i].name, GDML_NAME_MAX) == GDML_NAME_MAX)
            return gdml_errmsg_set(e, GDML_ERR_INVALID,
                                   "version %" PRIu64 ": region %" PRIu32
                                   "'s name is not terminated within %d bytes",
                                   meta->version, i, GDML_NAME_MAX);
    size_t layout_len = strnlen(layout, GDML_LAYOUT_MAX);
    if (layout_len == 0 || layout_len == GDML_LAYOUT_MAX)
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "version %" PRIu64 ": the layout must be 1 to %d characters",
                               meta->version, GDML_LAYOUT_MAX - 1);
    if (n == 0 || n > SIZE_MAX / sizeof(float))
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "version %" PRIu64 " has %zu parameters; a version needs at least 1",
                               meta->version, n);
    return GDML_OK;
}

gdml_err gdml_store_commit(gdml_store *s, const gdml_version_meta *meta, const char *layout,
                           const float *params, size_t n, gdml_errmsg *e)
{
    assert(s && meta && layout && params);
    gdml_err err = check_commit(s, meta, layout, n, e);
    if (err != GDML_OK)
        return err;
    unsigned char record[META_MAX];
    size_t record_len = meta_encode(meta, record);
    unsigned char kbytes[8];
    key_encode(meta->version, kbytes);

    MDB_txn *txn = NULL;
    err = txn_begin(s, true, &txn, e);
    if (err != GDML_OK)
        goto out;
    uint64_t head = 0;
    err = head_in(s, txn, &head, e);
    if (err == GDML_OK && meta->version <= head) {
        err = gdml_errmsg_set(e, GDML_ERR_EXISTS,
                              "cannot commit version %" PRIu64 " to the model store at '%s': "
                              "its head is version %" PRIu64 " and versions only grow",
                              meta->version, s->dir, head);
        goto out;
    }
    if (err != GDML_OK && err != GDML_ERR_NOTFOUND)
        goto out;
    err = GDML_OK;

    /* LMDB copies from these values and never writes through mv_data on a plain put. */
    MDB_val key = {sizeof kbytes, kbytes};
    const struct {
        MDB_dbi dbi;
        MDB_val val;
    } writes[] = {
        {s->meta, {record_len, record}},
        {s->layout, {strlen(layout), (void *)layout}},
        {s->params, {n * sizeof(float), (void *)params}},
    };
    for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++) {
        MDB_val val = writes[i].val;
        /* Keys arrive in increasing order, so appending fills pages completely. */
        int rc = mdb_put(txn, writes[i].dbi, &key, &val, MDB_APPEND);
        if (rc != 0) {
            err = store_fail(s, e, rc, "cannot write a version");
            goto out;
        }
    }
    int rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc != 0)
        err = store_fail(s, e, rc, "cannot commit a version");
out:
    if (txn)
        mdb_txn_abort(txn);
    return err;
}

gdml_err gdml_store_head(gdml_store *s, uint64_t *version)
{
    assert(s && version);
    MDB_txn *txn = NULL;
    gdml_err err = txn_begin(s, false, &txn, NULL);
    if (err != GDML_OK)
        goto out;
    err = head_in(s, txn, version, NULL);
out:
    if (txn)
        mdb_txn_abort(txn);
    return err;
}

gdml_err gdml_store_count(gdml_store *s, uint64_t *count)
{
    assert(s && count);
    MDB_txn *txn = NULL;
    MDB_stat st;
    gdml_err err = txn_begin(s, false, &txn, NULL);
    if (err != GDML_OK)
        goto out;
    int rc = mdb_stat(txn, s->meta, &st);
    if (rc != 0) {
        err = store_fail(s, NULL, rc, "cannot count versions");
        goto out;
    }
    *count = st.ms_entries;
out:
    if (txn)
        mdb_txn_abort(txn);
    return err;
}

/* Looks up version in dbi; GDML_ERR_NOTFOUND names the version when it is absent. */
static gdml_err get_version(gdml_store *s, MDB_txn *txn, MDB_dbi dbi, uint64_t version,
                            MDB_val *val, gdml_errmsg *e)
{
    unsigned char kbytes[8];
    key_encode(version, kbytes);
    MDB_val key = {sizeof kbytes, kbytes};
    int rc = mdb_get(txn, dbi, &key, val);
    if (rc == MDB_NOTFOUND)
        return gdml_errmsg_set(e, GDML_ERR_NOTFOUND,
                               "version %" PRIu64 " is not in the model store at '%s'", version,
                               s->dir);
    if (rc != 0)
        return store_fail(s, e, rc, "cannot read a version");
    return GDML_OK;
}

gdml_err gdml_store_meta(gdml_store *s, uint64_t version, gdml_version_meta *out, gdml_errmsg *e)
{
    assert(s && out);
    MDB_txn *txn = NULL;
    MDB_val val;
    gdml_err err = txn_begin(s, false, &txn, e);
    if (err != GDML_OK)
        goto out;
    err = get_version(s, txn, s->meta, version, &val, e);
    if (err != GDML_OK)
        goto out;
    /* val points into the map, valid only until the transaction ends. */
    err = meta_decode(s, version, &val, out, e);
out:
    if (txn)
        mdb_txn_abort(txn);
    return err;
}

gdml_err gdml_store_params(gdml_store *s, uint64_t version, char layout[GDML_LAYOUT_MAX],
                           float **params, size_t *n, gdml_errmsg *e)
{
    assert(s && layout && params && n);
    MDB_txn *txn = NULL;
    MDB_val lval, pval;
    float *copy = NULL;
    gdml_err err = txn_begin(s, false, &txn, e);
    if (err != GDML_OK)
        goto out;
    err = get_version(s, txn, s->layout, version, &lval, e);
    if (err == GDML_OK)
        err = get_version(s, txn, s->params, version, &pval, e);
    if (err != GDML_OK)
        goto out;
    if (lval.mv_size == 0 || lval.mv_size >= GDML_LAYOUT_MAX ||
        memchr(lval.mv_data, '\0', lval.mv_size)) {
        err = gdml_errmsg_set(e, GDML_ERR_FORMAT,
                              "version %" PRIu64 " in the model store at '%s' has a malformed "
                              "layout (%zu bytes)",
                              version, s->dir, lval.mv_size);
        goto out;
    }
    if (pval.mv_size == 0 || pval.mv_size % sizeof(float) != 0) {
        err = gdml_errmsg_set(e, GDML_ERR_FORMAT,
                              "version %" PRIu64 " in the model store at '%s' has malformed "
                              "parameters (%zu bytes, not a positive multiple of 4)",
                              version, s->dir, pval.mv_size);
        goto out;
    }
    copy = malloc(pval.mv_size);
    if (!copy) {
        err = gdml_errmsg_set(e, GDML_ERR_NOMEM,
                              "out of memory reading version %" PRIu64 " (%zu bytes)", version,
                              pval.mv_size);
        goto out;
    }
    /* The map gives no alignment guarantee for values, so copy bytes. */
    memcpy(copy, pval.mv_data, pval.mv_size);
    memcpy(layout, lval.mv_data, lval.mv_size);
    layout[lval.mv_size] = '\0';
    *params = copy;
    *n = pval.mv_size / sizeof(float);
    copy = NULL;
out:
    free(copy);
    if (txn)
        mdb_txn_abort(txn);
    return err;
}

gdml_err gdml_store_each(gdml_store *s, gdml_store_visit_fn fn, void *user, gdml_errmsg *e)
{
    assert(s && fn);
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val key, val;
    gdml_version_meta m;
    gdml_err err = txn_begin(s, false, &txn, e);
    if (err != GDML_OK)
        goto out;
    int rc = mdb_cursor_open(txn, s->meta, &cur);
    if (rc != 0) {
        err = store_fail(s, e, rc, "cannot open a cursor");
        goto out;
    }
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (key.mv_size != 8) {
            err = gdml_errmsg_set(e, GDML_ERR_FORMAT,
                                  "the model store at '%s' has a meta key of %zu bytes, not 8",
                                  s->dir, key.mv_size);
            goto out;
        }
        err = meta_decode(s, key_decode(key.mv_data), &val, &m, e);
        if (err != GDML_OK)
            goto out;
        if (fn(&m, user) != 0)
            goto out;
    }
    if (rc != MDB_NOTFOUND)
        err = store_fail(s, e, rc, "cannot walk the versions");
out:
    if (cur)
        mdb_cursor_close(cur);
    if (txn)
        mdb_txn_abort(txn);
    return err;
}
