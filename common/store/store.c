/*
 * store.c - the model-version store over LMDB (store.h, docs/store.md).
 *
 * One LMDB environment per directory, four named databases:
 *
 *   "meta"     version (8 bytes, big-endian) -> the record below
 *   "layout"   version -> the layout text, no NUL
 *   "tensor"   version, tensor index (1 byte), chunk (4 bytes, big-endian)
 *              -> u32 CRC-32 of the bytes that follow, then float32[]
 *   "control"  "format" -> u32 store format (2); "head" -> u64 rolled-back-to version
 *
 * Big-endian keys make LMDB's byte order version order. A tensor is cut into
 * chunks of STORE_CHUNK floats, so no single value is unbounded.
 *
 * Meta record, format 2, integers little-endian:
 *   u32 format (= 2), u64 version, u64 parent, u64 round, i64 time_ms,
 *   u64 bytes_received, u64 bytes_sent, f64 accuracy, f64 loss, u64 seq,
 *   f64 lr_steps, u8 rule length + rule,
 *   u32 n_regions, each: u8 name length + name, u64 seq, u64 samples,
 *   u32 n_tensors, each: u8 name length + name, u64 n, u32 crc32,
 *   u32 crc32 of every byte before it.
 *
 * A version is written in one write transaction, committed with LMDB's
 * default durability (fsync), so a kill -9 leaves every committed version
 * whole and no part of an uncommitted one.
 */
#include "store.h"

#include "checksum.h"
#include "log.h"
#include "util.h"

#include <lmdb.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "store.c stores float32 in host order and needs a little-endian host"
#endif
_Static_assert(sizeof(float) == 4, "tensors are stored as 4-byte floats");
_Static_assert(sizeof(double) == 8, "metrics are stored as 8-byte doubles");

#define STORE_FORMAT 2u
#define STORE_MAX_DBS 8
#define STORE_CHUNK ((size_t)1 << 20) /* floats per tensor chunk: 4 MiB */
#define DEFAULT_MAP ((uint64_t)256 << 20)
#define DEFAULT_MAX_MAP ((uint64_t)1 << 40)
#define META_MAX 16384
/* Below this much free space an I/O error on commit is taken for a full disk. */
#define LOW_SPACE ((uint64_t)16 << 20)

struct gdml_store {
    MDB_env *env;
    MDB_dbi meta, layout, tensor, control;
    gdml_store_options opts;
    uint64_t map;
    char *dir;
    char data_path[GDML_PATH_MAX + 16];
};

/* ---- errors ---- */

static gdml_err disk_full(const gdml_store *s, gdml_errmsg *e)
{
    struct statvfs fs;
    unsigned long long free_bytes = 0;
    if (statvfs(s->dir, &fs) == 0)
        free_bytes = (unsigned long long)fs.f_bavail * fs.f_frsize;
    return gdml_errmsg_set(e, GDML_ERR_NOSPACE,
                           "the disk holding the model store '%s' is full (%llu bytes free); "
                           "free some space or move the store (--store), then restart: every "
                           "version committed so far is safe",
                           s->dir, free_bytes);
}

static bool low_on_space(const gdml_store *s)
{
    struct statvfs fs;
    return statvfs(s->dir, &fs) == 0 && (uint64_t)fs.f_bavail * fs.f_frsize < LOW_SPACE;
}

/* Translates an LMDB failure, with the store's path. */
static gdml_err store_fail(const gdml_store *s, gdml_errmsg *e, int rc, const char *what)
{
    if (rc == ENOSPC || rc == EDQUOT || (rc == EIO && low_on_space(s)))
        return disk_full(s, e);
    if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID)
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "the model store '%s' is damaged (%s: %s); run gdml-models verify "
                               "--store %s, and restore it from a backup or start a new one",
                               s->data_path, what, mdb_strerror(rc), s->dir);
    return gdml_errmsg_set(e, GDML_ERR_STORE, "model store '%s': %s: %s", s->dir, what,
                           mdb_strerror(rc));
}

static gdml_err damaged(const gdml_store *s, gdml_errmsg *e, uint64_t version, const char *what)
{
    return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                           "version %" PRIu64 " in the model store '%s' is damaged: %s; roll "
                           "back to an earlier version (gdml-models rollback) or restore the "
                           "store from a backup",
                           version, s->data_path, what);
}

/* ---- keys and records ---- */

static void put_be(unsigned char *k, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        k[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
}

static uint64_t get_be(const unsigned char *k, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = v << 8 | k[i];
    return v;
}

typedef struct wbuf {
    unsigned char *p;
    size_t len, cap;
    bool overflow;
} wbuf;

static void put_bytes(wbuf *w, const void *b, size_t n)
{
    if (w->overflow || w->cap - w->len < n) {
        w->overflow = true;
        return;
    }
    memcpy(w->p + w->len, b, n);
    w->len += n;
}

static void put_le(wbuf *w, uint64_t v, int bytes)
{
    unsigned char b[8];
    for (int i = 0; i < bytes; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    put_bytes(w, b, (size_t)bytes);
}

static void put_f64(wbuf *w, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    put_le(w, bits, 8);
}

static void put_str(wbuf *w, const char *s, size_t max)
{
    size_t n = strnlen(s, max - 1);
    put_le(w, n, 1);
    put_bytes(w, s, n);
}

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

static uint64_t get_le(rbuf *r, int bytes)
{
    const unsigned char *b = get_bytes(r, (size_t)bytes);
    uint64_t v = 0;
    for (int i = bytes - 1; b && i >= 0; i--)
        v = v << 8 | b[i];
    return v;
}

static double get_f64(rbuf *r)
{
    uint64_t bits = get_le(r, 8);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* A short string of at most max - 1 bytes, no NUL; false if it is not one. */
static bool get_str(rbuf *r, char *out, size_t max)
{
    size_t n = (size_t)get_le(r, 1);
    const unsigned char *b = get_bytes(r, n);
    if (!b || n >= max || memchr(b, '\0', n))
        return false;
    memcpy(out, b, n);
    out[n] = '\0';
    return true;
}

static size_t meta_encode(const gdml_version_meta *m, unsigned char *buf, size_t cap)
{
    wbuf w = {buf, 0, cap, false};
    put_le(&w, STORE_FORMAT, 4);
    put_le(&w, m->version, 8);
    put_le(&w, m->parent, 8);
    put_le(&w, m->round, 8);
    put_le(&w, (uint64_t)m->time_ms, 8);
    put_le(&w, m->bytes_received, 8);
    put_le(&w, m->bytes_sent, 8);
    put_f64(&w, m->accuracy);
    put_f64(&w, m->loss);
    put_le(&w, m->seq, 8);
    put_f64(&w, m->lr_steps);
    put_str(&w, m->rule, GDML_STORE_RULE_MAX);
    put_le(&w, m->n_regions, 4);
    for (uint32_t i = 0; i < m->n_regions; i++) {
        put_str(&w, m->regions[i].name, GDML_NAME_MAX);
        put_le(&w, m->regions[i].seq, 8);
        put_le(&w, m->regions[i].samples, 8);
    }
    put_le(&w, m->n_tensors, 4);
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        put_str(&w, m->tensors[i].name, GDML_STORE_TENSOR_NAME_MAX);
        put_le(&w, m->tensors[i].n, 8);
        put_le(&w, m->tensors[i].crc32, 4);
    }
    put_le(&w, gdml_crc32(0, buf, w.len), 4);
    return w.overflow ? 0 : w.len;
}

/* Parses a meta record; NULL if it is whole and sound, else what is wrong. */
static const char *meta_decode(uint64_t version, const MDB_val *val, gdml_version_meta *out)
{
    if (val->mv_size < 8)
        return "its record is truncated";
    const unsigned char *p = val->mv_data;
    size_t body = val->mv_size - 4;
    uint32_t want = (uint32_t)p[body] | (uint32_t)p[body + 1] << 8 |
                    (uint32_t)p[body + 2] << 16 | (uint32_t)p[body + 3] << 24;
    if (gdml_crc32(0, p, body) != want)
        return "its record's checksum does not match";
    rbuf r = {p, body, 0, true};
    gdml_version_meta m;
    memset(&m, 0, sizeof m);
    if (get_le(&r, 4) != STORE_FORMAT)
        return "its record has another format";
    m.version = get_le(&r, 8);
    m.parent = get_le(&r, 8);
    m.round = get_le(&r, 8);
    m.time_ms = (int64_t)get_le(&r, 8);
    m.bytes_received = get_le(&r, 8);
    m.bytes_sent = get_le(&r, 8);
    m.accuracy = get_f64(&r);
    m.loss = get_f64(&r);
    m.seq = get_le(&r, 8);
    m.lr_steps = get_f64(&r);
    if (!get_str(&r, m.rule, sizeof m.rule))
        return "its merge rule is malformed";
    m.n_regions = (uint32_t)get_le(&r, 4);
    if (m.n_regions > GDML_STORE_MAX_REGIONS)
        return "it names too many regions";
    for (uint32_t i = 0; i < m.n_regions && r.ok; i++) {
        if (!get_str(&r, m.regions[i].name, GDML_NAME_MAX))
            return "a region name is malformed";
        m.regions[i].seq = get_le(&r, 8);
        m.regions[i].samples = get_le(&r, 8);
    }
    m.n_tensors = (uint32_t)get_le(&r, 4);
    if (m.n_tensors > GDML_STORE_MAX_TENSORS)
        return "it names too many tensors";
    for (uint32_t i = 0; i < m.n_tensors && r.ok; i++) {
        if (!get_str(&r, m.tensors[i].name, GDML_STORE_TENSOR_NAME_MAX))
            return "a tensor name is malformed";
        m.tensors[i].n = get_le(&r, 8);
        m.tensors[i].crc32 = (uint32_t)get_le(&r, 4);
    }
    if (!r.ok)
        return "its record is truncated";
    if (r.pos != r.len)
        return "its record has trailing bytes";
    if (m.version != version)
        return "its record names another version";
    *out = m;
    return NULL;
}

/* ---- transactions ---- */

/* Begins a transaction; a map another process grew is followed. */
static int txn_begin(gdml_store *s, bool write, MDB_txn **txn)
{
    int rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, txn);
    if (rc == MDB_MAP_RESIZED) {
        struct stat st;
        size_t size = stat(s->data_path, &st) == 0 ? (size_t)st.st_size : 0;
        uint64_t want = size > s->map ? size : s->map;
        if ((rc = mdb_env_set_mapsize(s->env, (size_t)want)) == 0) {
            s->map = want;
            rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, txn);
        }
    }
    return rc;
}

static gdml_err begin(gdml_store *s, bool write, MDB_txn **txn, gdml_errmsg *e)
{
    int rc = txn_begin(s, write, txn);
    return rc ? store_fail(s, e, rc, write ? "cannot begin a write" : "cannot begin a read")
              : GDML_OK;
}

static int get_version(gdml_store *s, MDB_txn *txn, MDB_dbi dbi, uint64_t v, MDB_val *val)
{
    unsigned char k[8];
    put_be(k, v, 8);
    MDB_val key = {8, k};
    return mdb_get(txn, dbi, &key, val);
}

static gdml_err meta_in(gdml_store *s, MDB_txn *txn, uint64_t v, gdml_version_meta *out,
                        gdml_errmsg *e)
{
    MDB_val val;
    int rc = get_version(s, txn, s->meta, v, &val);
    if (rc == MDB_NOTFOUND)
        return gdml_errmsg_set(e, GDML_ERR_NOTFOUND,
                               "version %" PRIu64 " is not in the model store '%s'", v, s->dir);
    if (rc)
        return store_fail(s, e, rc, "cannot read a version");
    const char *why = meta_decode(v, &val, out);
    return why ? damaged(s, e, v, why) : GDML_OK;
}

/* The newest version in txn's view; GDML_ERR_NOTFOUND when there is none. */
static gdml_err newest_in(gdml_store *s, MDB_txn *txn, uint64_t *v, gdml_errmsg *e)
{
    MDB_cursor *cur;
    MDB_val key, val;
    int rc = mdb_cursor_open(txn, s->meta, &cur);
    if (rc)
        return store_fail(s, e, rc, "cannot open a cursor");
    rc = mdb_cursor_get(cur, &key, &val, MDB_LAST);
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND)
        return gdml_errmsg_set(e, GDML_ERR_NOTFOUND, "the model store '%s' holds no versions",
                               s->dir);
    if (rc)
        return store_fail(s, e, rc, "cannot read the newest version");
    if (key.mv_size != 8)
        return gdml_errmsg_set(e, GDML_ERR_FORMAT, "the model store '%s' has a malformed key",
                               s->data_path);
    *v = get_be(key.mv_data, 8);
    return GDML_OK;
}

static int control_get(gdml_store *s, MDB_txn *txn, const char *name, uint64_t *v, int bytes)
{
    MDB_val key = {strlen(name), (void *)name}, val;
    int rc = mdb_get(txn, s->control, &key, &val);
    if (rc)
        return rc;
    if (val.mv_size != (size_t)bytes)
        return MDB_CORRUPTED;
    *v = get_be(val.mv_data, bytes);
    return 0;
}

static int control_put(gdml_store *s, MDB_txn *txn, const char *name, uint64_t v, int bytes)
{
    unsigned char b[8];
    put_be(b, v, bytes);
    MDB_val key = {strlen(name), (void *)name}, val = {(size_t)bytes, b};
    return mdb_put(txn, s->control, &key, &val, 0);
}

/* ---- opening ---- */

/*
 * Refuses a data file LMDB would misread: an empty one (LMDB takes it for a
 * new store), or one shorter than its pages (reading those would SIGBUS).
 */
static gdml_err check_file(gdml_store *s, bool after_open, gdml_errmsg *e)
{
    struct stat st;
    if (stat(s->data_path, &st) != 0)
        return GDML_OK; /* no file: a new store (or, read-only, refused before) */
    if (!after_open) {
        if (st.st_size < 2 * 4096)
            return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                                   "the model store file '%s' is %lld bytes, too short to be a "
                                   "store: it was truncated or never written. Restore it from a "
                                   "backup, or remove the directory '%s' to start a new store",
                                   s->data_path, (long long)st.st_size, s->dir);
        return GDML_OK;
    }
    MDB_envinfo info;
    MDB_stat stat_;
    if (mdb_env_info(s->env, &info) || mdb_env_stat(s->env, &stat_))
        return GDML_OK;
    uint64_t need = ((uint64_t)info.me_last_pgno + 1) * stat_.ms_psize;
    if ((uint64_t)st.st_size < need)
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "the model store file '%s' is truncated: it is %lld bytes but its "
                               "pages reach %" PRIu64 ". Restore it from a backup, or remove the "
                               "directory '%s' to start a new store",
                               s->data_path, (long long)st.st_size, need, s->dir);
    return GDML_OK;
}

static gdml_err open_dbs(gdml_store *s, gdml_errmsg *e)
{
    bool ro = s->opts.read_only;
    MDB_txn *txn = NULL;
    gdml_err err = begin(s, !ro, &txn, e);
    if (err)
        return err;
    const struct {
        const char *name;
        MDB_dbi *dbi;
    } dbs[] = {{"meta", &s->meta}, {"layout", &s->layout}, {"tensor", &s->tensor},
               {"control", &s->control}};
    for (size_t i = 0; i < sizeof dbs / sizeof dbs[0] && !err; i++) {
        int rc = mdb_dbi_open(txn, dbs[i].name, ro ? 0 : MDB_CREATE, dbs[i].dbi);
        if (rc == MDB_NOTFOUND) {
            MDB_dbi old;
            if (mdb_dbi_open(txn, "params", 0, &old) == 0)
                err = gdml_errmsg_set(e, GDML_ERR_FORMAT,
                                      "the model store '%s' was written by an older gdml (store "
                                      "format 1); this build reads format %u: start a new store",
                                      s->dir, STORE_FORMAT);
            else
                err = gdml_errmsg_set(e, GDML_ERR_NOTFOUND,
                                      "no model store at '%s' (its LMDB has no '%s' database); "
                                      "check --store",
                                      s->dir, dbs[i].name);
        } else if (rc) {
            err = store_fail(s, e, rc, "cannot open a database");
        }
    }
    uint64_t format = 0;
    int rc = err ? 0 : control_get(s, txn, "format", &format, 4);
    if (!err && rc == MDB_NOTFOUND && !ro)
        rc = control_put(s, txn, "format", STORE_FORMAT, 4);
    else if (!err && !rc && format != STORE_FORMAT)
        err = gdml_errmsg_set(e, GDML_ERR_FORMAT,
                              "the model store '%s' has format %" PRIu64 "; this build reads %u",
                              s->dir, format, STORE_FORMAT);
    if (!err && rc && rc != MDB_NOTFOUND)
        err = store_fail(s, e, rc, "cannot read the store's format");
    if (err) {
        mdb_txn_abort(txn);
        return err;
    }
    /* Committing, even a read transaction, makes the handles usable by later ones. */
    rc = mdb_txn_commit(txn);
    return rc ? store_fail(s, e, rc, "cannot open the databases") : GDML_OK;
}

gdml_err gdml_store_open(const char *dir, const gdml_store_options *opts, gdml_store **out,
                         gdml_errmsg *e)
{
    assert(dir && out);
    gdml_store *s = calloc(1, sizeof *s);
    if (!s || !(s->dir = strdup(dir))) {
        free(s);
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory opening the model store '%s'",
                               dir);
    }
    if (opts)
        s->opts = *opts;
    if (!s->opts.map_bytes)
        s->opts.map_bytes = DEFAULT_MAP;
    if (!s->opts.max_map_bytes)
        s->opts.max_map_bytes = DEFAULT_MAX_MAP;
    snprintf(s->data_path, sizeof s->data_path, "%s/data.mdb", dir);
    bool ro = s->opts.read_only;
    gdml_err err = GDML_OK;
    struct stat st;
    bool exists = stat(s->data_path, &st) == 0;
    if (ro && !exists) {
        err = gdml_errmsg_set(e, GDML_ERR_NOTFOUND, "no model store at '%s'; check --store", dir);
        goto out;
    }
    if (!ro && (err = gdml_mkdir_p(dir, e)))
        goto out;
    if ((err = check_file(s, false, e)))
        goto out;
    /* The map is address space, not disk: a reader maps what the file holds,
     * a writer what it may fill before it grows the map. */
    uint64_t file = exists ? (uint64_t)st.st_size : 0;
    s->map = ro ? (file + ((uint64_t)1 << 20) - 1) / ((uint64_t)1 << 20) * ((uint64_t)1 << 20)
                : s->opts.map_bytes;
    if (s->map < file)
        s->map = file;
    int rc = mdb_env_create(&s->env);
    if (!rc)
        rc = mdb_env_set_maxdbs(s->env, STORE_MAX_DBS);
    if (!rc)
        rc = mdb_env_set_mapsize(s->env, (size_t)s->map);
    if (rc) {
        err = store_fail(s, e, rc, "cannot set up LMDB");
        goto out;
    }
    rc = mdb_env_open(s->env, dir, ro ? MDB_RDONLY : 0, 0644);
    if (rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH) {
        err = gdml_errmsg_set(e, GDML_ERR_FORMAT,
                              "'%s' is not an LMDB model store, or its header is damaged (%s). "
                              "Restore it from a backup, or remove the directory '%s' to start "
                              "a new store",
                              s->data_path, mdb_strerror(rc), dir);
        goto out;
    }
    if (rc > 0) { /* errno values: permissions, missing files */
        err = gdml_errmsg_set(e, GDML_ERR_IO, "cannot open the model store '%s': %s", dir,
                              mdb_strerror(rc));
        goto out;
    }
    if (rc) {
        err = store_fail(s, e, rc, "cannot open the environment");
        goto out;
    }
    if ((err = check_file(s, true, e)))
        goto out;
    int dead = 0; /* reader slots of processes that died inside a read */
    if ((rc = mdb_reader_check(s->env, &dead))) {
        err = store_fail(s, e, rc, "cannot check the reader table");
        goto out;
    }
    err = open_dbs(s, e);
out:
    if (err)
        gdml_store_close(&s);
    else
        *out = s;
    return err;
}

void gdml_store_close(gdml_store **sp)
{
    if (!sp || !*sp)
        return;
    if ((*sp)->env)
        mdb_env_close((*sp)->env);
    free((*sp)->dir);
    free(*sp);
    *sp = NULL;
}

uint64_t gdml_store_map_bytes(const gdml_store *s)
{
    return s->map;
}

/* ---- committing ---- */

static gdml_err check_commit(const gdml_store *s, const gdml_version_meta *meta, const char *layout,
                             const gdml_store_tensor *tensors, size_t n_tensors, gdml_errmsg *e)
{
    if (s->opts.read_only)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "the model store '%s' is open read-only",
                               s->dir);
    if (meta->version == 0)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "versions start at 1");
    if (meta->n_regions > GDML_STORE_MAX_REGIONS)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "version %" PRIu64 " names %" PRIu32
                               " regions; at most %d", meta->version, meta->n_regions,
                               GDML_STORE_MAX_REGIONS);
    for (uint32_t i = 0; i < meta->n_regions; i++)
        if (strnlen(meta->regions[i].name, GDML_NAME_MAX) == GDML_NAME_MAX)
            return gdml_errmsg_set(e, GDML_ERR_INVALID, "region %" PRIu32 "'s name is too long", i);
    size_t layout_len = strnlen(layout, GDML_LAYOUT_MAX);
    if (layout_len == 0 || layout_len == GDML_LAYOUT_MAX)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "the layout must be 1 to %d characters",
                               GDML_LAYOUT_MAX - 1);
    if (n_tensors == 0 || n_tensors > GDML_STORE_MAX_TENSORS)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "a version has 1..%d tensors",
                               GDML_STORE_MAX_TENSORS);
    bool params = false;
    for (size_t i = 0; i < n_tensors; i++) {
        size_t len = strlen(tensors[i].name);
        if (len == 0 || len >= GDML_STORE_TENSOR_NAME_MAX || tensors[i].n == 0 ||
            (uint64_t)tensors[i].n > (uint64_t)UINT32_MAX * STORE_CHUNK)
            return gdml_errmsg_set(e, GDML_ERR_INVALID, "tensor %zu ('%s') is malformed", i,
                                   tensors[i].name);
        if (strspn(tensors[i].name, "abcdefghijklmnopqrstuvwxyz0123456789._-") != len)
            return gdml_errmsg_set(e, GDML_ERR_INVALID,
                                   "tensor %zu's name '%s' has a character outside [a-z0-9._-]",
                                   i, tensors[i].name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(tensors[j].name, tensors[i].name) == 0)
                return gdml_errmsg_set(e, GDML_ERR_INVALID,
                                       "tensor %zu's name '%s' repeats tensor %zu", i,
                                       tensors[i].name, j);
        params |= strcmp(tensors[i].name, "params") == 0;
    }
    if (!params)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "a version needs a 'params' tensor");
    return GDML_OK;
}

/* Deletes everything stored under version v. */
static int delete_version(gdml_store *s, MDB_txn *txn, uint64_t v)
{
    unsigned char k[13];
    put_be(k, v, 8);
    MDB_val key = {8, k};
    int rc = mdb_del(txn, s->meta, &key, NULL);
    if (!rc || rc == MDB_NOTFOUND)
        rc = mdb_del(txn, s->layout, &key, NULL);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, s->tensor, &cur)))
        return rc;
    MDB_val tk = {8, k}, tv;
    for (rc = mdb_cursor_get(cur, &tk, &tv, MDB_SET_RANGE);
         rc == 0 && tk.mv_size == 13 && memcmp(tk.mv_data, k, 8) == 0;
         rc = mdb_cursor_get(cur, &tk, &tv, MDB_NEXT))
        if ((rc = mdb_cursor_del(cur, 0)))
            break;
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* retain() found more to free than one pass takes (not an LMDB code). */
#define RETAIN_MORE (-1)

/* Retention: every version but the newest keep_last, the keep_every-th and the head goes. */
static int retain(gdml_store *s, MDB_txn *txn, uint64_t newest)
{
    uint64_t last = s->opts.keep_last, every = s->opts.keep_every;
    if (last == 0)
        return 0;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, s->meta, &cur);
    if (rc)
        return rc;
    /* Count from the newest down: versions past the newest keep_last may go. */
    MDB_val key, val;
    uint64_t seen = 0, doomed[256];
    size_t n_doomed = 0;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_LAST); rc == 0 && n_doomed < 256;
         rc = mdb_cursor_get(cur, &key, &val, MDB_PREV)) {
        uint64_t v = get_be(key.mv_data, 8);
        if (++seen <= last || (every && v % every == 0) || v == newest)
            continue;
        doomed[n_doomed++] = v;
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    for (size_t i = 0; i < n_doomed && !(rc = delete_version(s, txn, doomed[i])); i++)
        ;
    if (rc == MDB_NOTFOUND)
        rc = 0;
    return !rc && n_doomed == 256 ? RETAIN_MORE : rc;
}

/* Writes one tensor's chunks; fills its info. */
static int put_tensor(gdml_store *s, MDB_txn *txn, uint64_t v, uint8_t index,
                      const gdml_store_tensor *t, gdml_tensor_info *info)
{
    snprintf(info->name, sizeof info->name, "%s", t->name);
    info->n = t->n;
    uint32_t whole = 0;
    unsigned char k[13];
    put_be(k, v, 8);
    k[8] = index;
    for (size_t c = 0; c * STORE_CHUNK < t->n; c++) {
        size_t lo = c * STORE_CHUNK, len = t->n - lo < STORE_CHUNK ? t->n - lo : STORE_CHUNK;
        put_be(k + 9, c, 4);
        MDB_val key = {13, k}, val = {4 + len * sizeof(float), NULL};
        /* MDB_RESERVE: LMDB gives the space, the bytes are written into it once. */
        int rc = mdb_put(txn, s->tensor, &key, &val, MDB_RESERVE);
        if (rc)
            return rc;
        const float *src = t->data + lo;
        uint32_t crc = gdml_crc32(0, src, len * sizeof(float));
        unsigned char *dst = val.mv_data;
        for (int b = 0; b < 4; b++)
            dst[b] = (unsigned char)(crc >> (8 * b));
        memcpy(dst + 4, src, len * sizeof(float));
        whole = c == 0 ? crc : gdml_crc32_combine(whole, crc, len * sizeof(float));
    }
    info->crc32 = whole;
    return 0;
}

static int write_version(gdml_store *s, const gdml_version_meta *meta, const char *layout,
                         const gdml_store_tensor *tensors, size_t n_tensors, gdml_errmsg *e,
                         gdml_err *err)
{
    MDB_txn *txn;
    int rc = txn_begin(s, true, &txn);
    if (rc)
        return rc;
    uint64_t newest = 0;
    gdml_errmsg ignored;
    gdml_err found = newest_in(s, txn, &newest, &ignored);
    if (found == GDML_OK && meta->version <= newest) {
        *err = gdml_errmsg_set(e, GDML_ERR_EXISTS,
                               "cannot commit version %" PRIu64 " to the model store '%s': its "
                               "newest is %" PRIu64 " and versions only grow",
                               meta->version, s->dir, newest);
        mdb_txn_abort(txn);
        return 0;
    }
    gdml_version_meta m = *meta;
    m.n_tensors = (uint32_t)n_tensors;
    for (size_t i = 0; i < n_tensors && !rc; i++)
        rc = put_tensor(s, txn, m.version, (uint8_t)i, &tensors[i], &m.tensors[i]);
    unsigned char record[META_MAX], kb[8];
    size_t len = rc ? 0 : meta_encode(&m, record, sizeof record);
    put_be(kb, m.version, 8);
    MDB_val key = {8, kb}, rv = {len, record}, lv = {strlen(layout), (void *)layout};
    if (!rc && len == 0) {
        *err = gdml_errmsg_set(e, GDML_ERR_INVALID, "version %" PRIu64 "'s record is too large",
                               m.version);
        mdb_txn_abort(txn);
        return 0;
    }
    /* Keys arrive in increasing order, so appending fills pages completely. */
    if (!rc)
        rc = mdb_put(txn, s->meta, &key, &rv, MDB_APPEND);
    if (!rc)
        rc = mdb_put(txn, s->layout, &key, &lv, MDB_APPEND);
    if (!rc) { /* the new version is the head: a rollback has been resumed from */
        MDB_val hk = {4, "head"};
        rc = mdb_del(txn, s->control, &hk, NULL);
        rc = rc == MDB_NOTFOUND ? 0 : rc;
    }
    /* retain() frees up to 256 versions a pass: a store that gets keep_last
     * after collecting many versions is trimmed in a few passes. */
    for (int pass = 0; !rc && pass < 1 << 16 && (rc = retain(s, txn, m.version)) == RETAIN_MORE;
         pass++)
        rc = 0;
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

gdml_err gdml_store_commit(gdml_store *s, const gdml_version_meta *meta, const char *layout,
                           const gdml_store_tensor *tensors, size_t n_tensors, gdml_errmsg *e)
{
    assert(s && meta && layout && tensors);
    gdml_err err = check_commit(s, meta, layout, tensors, n_tensors, e);
    if (err)
        return err;
    for (;;) {
        gdml_err refused = GDML_OK;
        int rc = write_version(s, meta, layout, tensors, n_tensors, e, &refused);
        if (refused)
            return refused;
        if (rc != MDB_MAP_FULL)
            return rc ? store_fail(s, e, rc, "cannot commit a version") : GDML_OK;
        /* The map is full: double it (no transaction is open now) and write again. */
        if (s->map >= s->opts.max_map_bytes)
            return gdml_errmsg_set(e, GDML_ERR_NOSPACE,
                                   "the model store '%s' filled its map of %" PRIu64 " bytes, "
                                   "store.max_map_gb; raise it, or keep fewer versions "
                                   "(store.keep_last)",
                                   s->dir, s->map);
        uint64_t grown = s->map * 2 < s->opts.max_map_bytes ? s->map * 2 : s->opts.max_map_bytes;
        if ((rc = mdb_env_set_mapsize(s->env, (size_t)grown)))
            return store_fail(s, e, rc, "cannot grow the map");
        gdml_info("model store '%s': its map was full; grew it from %" PRIu64 " to %" PRIu64
                  " MiB",
                  s->dir, s->map >> 20, grown >> 20);
        s->map = grown;
    }
}

/* ---- reading ---- */

gdml_err gdml_store_newest(gdml_store *s, uint64_t *version, gdml_errmsg *e)
{
    MDB_txn *txn;
    gdml_err err = begin(s, false, &txn, e);
    if (err)
        return err;
    err = newest_in(s, txn, version, e);
    mdb_txn_abort(txn);
    return err;
}

gdml_err gdml_store_head(gdml_store *s, uint64_t *version, gdml_errmsg *e)
{
    MDB_txn *txn;
    gdml_err err = begin(s, false, &txn, e);
    if (err)
        return err;
    uint64_t head = 0;
    int rc = control_get(s, txn, "head", &head, 8);
    if (rc == 0) {
        MDB_val val;
        if (get_version(s, txn, s->meta, head, &val) == 0)
            *version = head;
        else
            err = newest_in(s, txn, version, e); /* rolled back to a version retention removed */
    } else if (rc == MDB_NOTFOUND) {
        err = newest_in(s, txn, version, e);
    } else {
        err = store_fail(s, e, rc, "cannot read the head");
    }
    mdb_txn_abort(txn);
    return err;
}

gdml_err gdml_store_count(gdml_store *s, uint64_t *count, gdml_errmsg *e)
{
    MDB_txn *txn;
    MDB_stat st;
    gdml_err err = begin(s, false, &txn, e);
    if (err)
        return err;
    int rc = mdb_stat(txn, s->meta, &st);
    if (rc)
        err = store_fail(s, e, rc, "cannot count versions");
    else
        *count = st.ms_entries;
    mdb_txn_abort(txn);
    return err;
}

gdml_err gdml_store_meta(gdml_store *s, uint64_t version, gdml_version_meta *out, gdml_errmsg *e)
{
    MDB_txn *txn;
    gdml_err err = begin(s, false, &txn, e);
    if (err)
        return err;
    err = meta_in(s, txn, version, out, e);
    mdb_txn_abort(txn);
    return err;
}

gdml_err gdml_store_layout(gdml_store *s, uint64_t version, char layout[GDML_LAYOUT_MAX],
                           gdml_errmsg *e)
{
    MDB_txn *txn;
    MDB_val val;
    gdml_err err = begin(s, false, &txn, e);
    if (err)
        return err;
    int rc = get_version(s, txn, s->layout, version, &val);
    if (rc == MDB_NOTFOUND)
        err = gdml_errmsg_set(e, GDML_ERR_NOTFOUND, "version %" PRIu64 " is not in '%s'", version,
                              s->dir);
    else if (rc)
        err = store_fail(s, e, rc, "cannot read a layout");
    else if (val.mv_size == 0 || val.mv_size >= GDML_LAYOUT_MAX ||
             memchr(val.mv_data, '\0', val.mv_size))
        err = damaged(s, e, version, "its layout is malformed");
    else {
        memcpy(layout, val.mv_data, val.mv_size);
        layout[val.mv_size] = '\0';
    }
    mdb_txn_abort(txn);
    return err;
}

/* Reads (or, with out NULL, only checks) tensor `index` of meta in txn. */
static gdml_err read_tensor(gdml_store *s, MDB_txn *txn, const gdml_version_meta *meta,
                            uint32_t index, float *out, gdml_errmsg *e)
{
    const gdml_tensor_info *info = &meta->tensors[index];
    unsigned char k[13];
    put_be(k, meta->version, 8);
    k[8] = (unsigned char)index;
    uint32_t whole = 0;
    char what[128];
    for (uint64_t c = 0; c * STORE_CHUNK < info->n; c++) {
        uint64_t lo = c * STORE_CHUNK;
        size_t len = (size_t)(info->n - lo < STORE_CHUNK ? info->n - lo : STORE_CHUNK);
        put_be(k + 9, c, 4);
        MDB_val key = {13, k}, val;
        int rc = mdb_get(txn, s->tensor, &key, &val);
        snprintf(what, sizeof what, "tensor '%s', chunk %" PRIu64, info->name, c);
        if (rc == MDB_NOTFOUND)
            return damaged(s, e, meta->version, what);
        if (rc)
            return store_fail(s, e, rc, "cannot read a tensor");
        if (val.mv_size != 4 + len * sizeof(float)) {
            snprintf(what, sizeof what, "tensor '%s', chunk %" PRIu64 " has the wrong size",
                     info->name, c);
            return damaged(s, e, meta->version, what);
        }
        const unsigned char *p = val.mv_data;
        uint32_t want = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                        (uint32_t)p[3] << 24;
        uint32_t crc = gdml_crc32(0, p + 4, len * sizeof(float));
        if (crc != want) {
            snprintf(what, sizeof what, "tensor '%s', chunk %" PRIu64 " fails its checksum",
                     info->name, c);
            return damaged(s, e, meta->version, what);
        }
        whole = c == 0 ? crc : gdml_crc32_combine(whole, crc, len * sizeof(float));
        if (out) /* the map gives no alignment guarantee for values: copy bytes */
            memcpy(out + lo, p + 4, len * sizeof(float));
    }
    if (whole != info->crc32) {
        snprintf(what, sizeof what, "tensor '%s' fails its checksum", info->name);
        return damaged(s, e, meta->version, what);
    }
    return GDML_OK;
}

gdml_err gdml_store_tensor_read(gdml_store *s, uint64_t version, const char *name, float **out,
                                size_t *n, gdml_errmsg *e)
{
    MDB_txn *txn;
    gdml_version_meta meta;
    float *data = NULL;
    gdml_err err = begin(s, false, &txn, e);
    if (err)
        return err;
    if ((err = meta_in(s, txn, version, &meta, e)))
        goto out;
    uint32_t i = 0;
    while (i < meta.n_tensors && strcmp(meta.tensors[i].name, name) != 0)
        i++;
    if (i == meta.n_tensors) {
        err = gdml_errmsg_set(e, GDML_ERR_NOTFOUND, "version %" PRIu64 " has no tensor '%s'",
                              version, name);
        goto out;
    }
    if (meta.tensors[i].n > SIZE_MAX / sizeof(float) ||
        !(data = malloc((size_t)meta.tensors[i].n * sizeof(float)))) {
        err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory reading version %" PRIu64,
                              version);
        goto out;
    }
    if ((err = read_tensor(s, txn, &meta, i, data, e)))
        goto out;
    *out = data;
    *n = (size_t)meta.tensors[i].n;
    data = NULL;
out:
    free(data);
    mdb_txn_abort(txn);
    return err;
}

/* Walks every meta record in one read transaction; visit gets each decoded one. */
static gdml_err walk(gdml_store *s, int (*visit)(gdml_store *, MDB_txn *, uint64_t, const char *,
                                                 const gdml_version_meta *, void *),
                     void *user, gdml_errmsg *e)
{
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    MDB_val key, val;
    gdml_err err = begin(s, false, &txn, e);
    if (err)
        return err;
    int rc = mdb_cursor_open(txn, s->meta, &cur);
    if (rc) {
        err = store_fail(s, e, rc, "cannot open a cursor");
        goto out;
    }
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (key.mv_size != 8) {
            err = gdml_errmsg_set(e, GDML_ERR_FORMAT, "the model store '%s' has a malformed key",
                                  s->data_path);
            goto out;
        }
        uint64_t v = get_be(key.mv_data, 8);
        gdml_version_meta m;
        const char *why = meta_decode(v, &val, &m);
        if (visit(s, txn, v, why, why ? NULL : &m, user))
            goto out;
    }
    if (rc != MDB_NOTFOUND)
        err = store_fail(s, e, rc, "cannot walk the versions");
out:
    if (cur)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return err;
}

typedef struct each_ctx {
    gdml_store_visit_fn fn;
    void *user;
    gdml_err err;
    gdml_errmsg *e;
} each_ctx;

static int each_visit(gdml_store *s, MDB_txn *txn, uint64_t v, const char *why,
                      const gdml_version_meta *m, void *user)
{
    (void)txn;
    each_ctx *c = user;
    if (why) {
        c->err = damaged(s, c->e, v, why);
        return 1;
    }
    return c->fn(m, c->user);
}

gdml_err gdml_store_each(gdml_store *s, gdml_store_visit_fn fn, void *user, gdml_errmsg *e)
{
    each_ctx c = {fn, user, GDML_OK, e};
    gdml_err err = walk(s, each_visit, &c, e);
    return err ? err : c.err;
}

typedef struct verify_ctx {
    uint64_t checked, bad;
    gdml_err first;
    gdml_errmsg *e;
} verify_ctx;

static int verify_visit(gdml_store *s, MDB_txn *txn, uint64_t v, const char *why,
                        const gdml_version_meta *m, void *user)
{
    verify_ctx *c = user;
    c->checked++;
    gdml_errmsg here;
    gdml_err err = why ? damaged(s, &here, v, why) : GDML_OK;
    for (uint32_t i = 0; !err && i < m->n_tensors; i++)
        err = read_tensor(s, txn, m, i, NULL, &here);
    if (!err) {
        MDB_val val;
        int rc = get_version(s, txn, s->layout, v, &val);
        if (rc || val.mv_size == 0 || val.mv_size >= GDML_LAYOUT_MAX)
            err = damaged(s, &here, v, "its layout is missing or malformed");
    }
    if (err) {
        if (!c->bad++) {
            c->first = err;
            if (c->e)
                *c->e = here;
        }
    }
    return 0;
}

gdml_err gdml_store_verify(gdml_store *s, uint64_t *checked, uint64_t *bad, gdml_errmsg *e)
{
    verify_ctx c = {0, 0, GDML_OK, e};
    gdml_err err = walk(s, verify_visit, &c, e);
    if (checked)
        *checked = c.checked;
    if (bad)
        *bad = c.bad;
    return err ? err : c.first;
}

gdml_err gdml_store_rollback(gdml_store *s, uint64_t version, gdml_errmsg *e)
{
    if (s->opts.read_only)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "the model store '%s' is open read-only",
                               s->dir);
    MDB_txn *txn;
    gdml_err err = begin(s, true, &txn, e);
    if (err)
        return err;
    gdml_version_meta m;
    if ((err = meta_in(s, txn, version, &m, e))) {
        mdb_txn_abort(txn);
        return err;
    }
    for (uint32_t i = 0; i < m.n_tensors && !err; i++)
        err = read_tensor(s, txn, &m, i, NULL, e); /* never roll back onto damage */
    int rc = err ? 0 : control_put(s, txn, "head", version, 8);
    if (err || rc) {
        mdb_txn_abort(txn);
        return err ? err : store_fail(s, e, rc, "cannot record the rollback");
    }
    rc = mdb_txn_commit(txn);
    return rc ? store_fail(s, e, rc, "cannot record the rollback") : GDML_OK;
}
