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
 * Format 3 is format 2 with, after each region's samples, its held-out
 * score: u64 val_version, u64 rows, u64 correct, f64 loss. It is written
 * only when some region has a score, so that a store trained without
 * holdouts stays as it was; both formats are read.
 *
 * A version's tensor chunks are written in transactions of at most
 * TXN_CHUNKS chunks, and its meta record last, with the layout and
 * retention in the transaction of the last chunks (a small version is one
 * transaction): LMDB holds a write transaction's dirty pages in memory until
 * it commits, so one transaction per version would hold a copy of the whole
 * model. Every read starts from the meta record, so
 * a version exists exactly when its meta record is committed (LMDB's default
 * durability, fsync): a kill -9 leaves every committed version whole, and
 * the chunks of one it interrupted are invisible and deleted by the next
 * commit.
 */
#include "store_impl.h"

#include "checksum.h"
#include "log.h"
#include "util.h"

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
#error "the store keeps float32 in host order and needs a little-endian host"
#endif
_Static_assert(sizeof(float) == 4, "tensors are stored as 4-byte floats");
_Static_assert(sizeof(double) == 8, "metrics are stored as 8-byte doubles");

/* ---- transactions ---- */

/* Begins a transaction; a map another process grew is followed. */
int store_txn_begin(gdml_store *s, bool write, MDB_txn **txn)
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

gdml_err store_begin(gdml_store *s, bool write, MDB_txn **txn, gdml_errmsg *e)
{
    int rc = store_txn_begin(s, write, txn);
    return rc ? store_fail(s, e, rc, write ? "cannot begin a write" : "cannot begin a read")
              : GDML_OK;
}

int store_get_version(gdml_store *s, MDB_txn *txn, MDB_dbi dbi, uint64_t v, MDB_val *val)
{
    unsigned char k[8];
    store_put_be(k, v, 8);
    MDB_val key = {8, k};
    return mdb_get(txn, dbi, &key, val);
}

gdml_err store_meta_in(gdml_store *s, MDB_txn *txn, uint64_t v, gdml_version_meta *out,
                        gdml_errmsg *e)
{
    MDB_val val;
    int rc = store_get_version(s, txn, s->meta, v, &val);
    if (rc == MDB_NOTFOUND)
        return gdml_errmsg_set(e, GDML_ERR_NOTFOUND,
                               "version %" PRIu64 " is not in the model store '%s'", v, s->dir);
    if (rc)
        return store_fail(s, e, rc, "cannot read a version");
    const char *why = store_meta_decode(v, &val, out);
    return why ? store_damaged(s, e, v, why) : GDML_OK;
}

/* The newest version in txn's view; GDML_ERR_NOTFOUND when there is none. */
gdml_err store_newest_in(gdml_store *s, MDB_txn *txn, uint64_t *v, gdml_errmsg *e)
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
    *v = store_get_be(key.mv_data, 8);
    return GDML_OK;
}

int store_control_get(gdml_store *s, MDB_txn *txn, const char *name, uint64_t *v, int bytes)
{
    MDB_val key = {strlen(name), (void *)name}, val;
    int rc = mdb_get(txn, s->control, &key, &val);
    if (rc)
        return rc;
    if (val.mv_size != (size_t)bytes)
        return MDB_CORRUPTED;
    *v = store_get_be(val.mv_data, bytes);
    return 0;
}

int store_control_put(gdml_store *s, MDB_txn *txn, const char *name, uint64_t v, int bytes)
{
    unsigned char b[8];
    store_put_be(b, v, bytes);
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
    gdml_err err = store_begin(s, !ro, &txn, e);
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
    int rc = err ? 0 : store_control_get(s, txn, "format", &format, 4);
    if (!err && rc == MDB_NOTFOUND && !ro)
        rc = store_control_put(s, txn, "format", STORE_FORMAT, 4);
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
    for (uint32_t i = 0; i < meta->n_regions; i++) {
        if (strnlen(meta->regions[i].name, GDML_NAME_MAX) == GDML_NAME_MAX)
            return gdml_errmsg_set(e, GDML_ERR_INVALID, "region %" PRIu32 "'s name is too long", i);
        if (!gdml_score_ok(&meta->regions[i].val, UINT64_MAX))
            return gdml_errmsg_set(e, GDML_ERR_INVALID,
                                   "region %" PRIu32 "'s held-out score is malformed (more right "
                                   "than rows, or a loss that is not a number in range)",
                                   i);
    }
    if (meta->dp_delta != 0 && !(meta->dp_delta > 0 && meta->dp_delta < 1 && meta->epsilon >= 0 &&
                                 isfinite(meta->epsilon)))
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "version %" PRIu64 "'s privacy figures are malformed (epsilon %g, "
                               "delta %g)",
                               meta->version, meta->epsilon, meta->dp_delta);
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
    store_put_be(k, v, 8);
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
        uint64_t v = store_get_be(key.mv_data, 8);
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

/* Tensor chunks per write transaction: 64 MiB of dirty pages at most. */
#define TXN_CHUNKS 16

/* Commits *txn and begins the next write transaction in it. */
static int next_txn(gdml_store *s, MDB_txn **txn)
{
    int rc = mdb_txn_commit(*txn);
    *txn = NULL;
    return rc ? rc : store_txn_begin(s, true, txn);
}

/*
 * Writes one tensor's chunks, committing *txn and beginning another after
 * every TXN_CHUNKS chunks (*in_txn counts those of the current one); fills
 * its info.
 */
static int put_tensor(gdml_store *s, MDB_txn **txn, size_t *in_txn, uint64_t v, uint8_t index,
                      const gdml_store_tensor *t, gdml_tensor_info *info)
{
    snprintf(info->name, sizeof info->name, "%s", t->name);
    info->n = t->n;
    uint32_t whole = 0;
    unsigned char k[13];
    store_put_be(k, v, 8);
    k[8] = index;
    for (size_t c = 0; c * STORE_CHUNK < t->n; c++) {
        int rc = 0;
        if (*in_txn == TXN_CHUNKS && (rc = next_txn(s, txn)))
            return rc;
        *in_txn = *in_txn == TXN_CHUNKS ? 1 : *in_txn + 1;
        size_t lo = c * STORE_CHUNK, len = t->n - lo < STORE_CHUNK ? t->n - lo : STORE_CHUNK;
        store_put_be(k + 9, c, 4);
        MDB_val key = {13, k}, val = {4 + len * sizeof(float), NULL};
        /* MDB_RESERVE: LMDB gives the space, the bytes are written into it once. */
        if ((rc = mdb_put(*txn, s->tensor, &key, &val, MDB_RESERVE)))
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

/*
 * Deletes the tensor chunks of versions after `newest`: what a commit that
 * was interrupted (a crash, a full map or disk) wrote before its meta record.
 */
static int drop_unfinished(gdml_store *s, MDB_txn *txn, uint64_t newest)
{
    unsigned char k[8];
    store_put_be(k, newest + 1, 8);
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, s->tensor, &cur);
    if (rc)
        return rc;
    MDB_val key = {8, k}, val;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT))
        if ((rc = mdb_cursor_del(cur, 0)))
            break;
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/*
 * In a transaction of its own, drops what an interrupted commit left;
 * *newest gets the newest version.
 */
static int clean_unfinished(gdml_store *s, uint64_t *newest)
{
    MDB_txn *txn;
    int rc = store_txn_begin(s, true, &txn);
    if (rc)
        return rc;
    /* The newest meta record; with none, every chunk is unfinished. */
    MDB_cursor *cur;
    MDB_val key, val;
    *newest = 0;
    if (!(rc = mdb_cursor_open(txn, s->meta, &cur))) {
        rc = mdb_cursor_get(cur, &key, &val, MDB_LAST);
        mdb_cursor_close(cur);
    }
    if (!rc && key.mv_size != 8)
        rc = MDB_CORRUPTED;
    if (!rc)
        *newest = store_get_be(key.mv_data, 8);
    if ((rc && rc != MDB_NOTFOUND) || (rc = drop_unfinished(s, txn, *newest))) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

static int write_version(gdml_store *s, const gdml_version_meta *meta, const char *layout,
                         const gdml_store_tensor *tensors, size_t n_tensors, gdml_errmsg *e,
                         gdml_err *err)
{
    uint64_t newest = 0;
    int rc = clean_unfinished(s, &newest);
    if (rc)
        return rc;
    if (meta->version <= newest) {
        *err = gdml_errmsg_set(e, GDML_ERR_EXISTS,
                               "cannot commit version %" PRIu64 " to the model store '%s': its "
                               "newest is %" PRIu64 " and versions only grow",
                               meta->version, s->dir, newest);
        return 0;
    }
    MDB_txn *txn = NULL;
    if ((rc = store_txn_begin(s, true, &txn)))
        return rc;
    gdml_version_meta m = *meta;
    m.n_tensors = (uint32_t)n_tensors;
    size_t in_txn = 0;
    for (size_t i = 0; i < n_tensors && !rc; i++)
        rc = put_tensor(s, &txn, &in_txn, m.version, (uint8_t)i, &tensors[i], &m.tensors[i]);
    /* The meta record makes the version exist: it goes with the last chunks,
     * after every earlier transaction of them is committed. */
    unsigned char record[META_MAX], kb[8];
    size_t len = rc ? 0 : store_meta_encode(&m, record, sizeof record);
    store_put_be(kb, m.version, 8);
    MDB_val key = {8, kb}, rv = {len, record}, lv = {strlen(layout), (void *)layout};
    if (!rc && len == 0) {
        *err = gdml_errmsg_set(e, GDML_ERR_INVALID, "version %" PRIu64 "'s record is too large",
                               m.version);
        rc = -1;
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
    if (!rc) {
        rc = mdb_txn_commit(txn);
        txn = NULL;
    }
    if (rc) {
        if (txn)
            mdb_txn_abort(txn);
        /* The chunks already committed go now, so that their space is free
         * for the retry; if that fails too, the next commit drops them. */
        uint64_t ignored;
        clean_unfinished(s, &ignored);
    }
    return rc == -1 ? 0 : rc;
}

/* Bytes a commit of these tensors writes, with room for LMDB's own pages. */
static uint64_t commit_bytes(const gdml_store_tensor *tensors, size_t n_tensors)
{
    uint64_t bytes = (uint64_t)1 << 20; /* meta, layout, branch pages */
    for (size_t i = 0; i < n_tensors; i++) {
        uint64_t chunks = (tensors[i].n + STORE_CHUNK - 1) / STORE_CHUNK;
        /* each chunk is an overflow run: its CRC and floats, rounded up to whole pages */
        bytes += (uint64_t)tensors[i].n * sizeof(float) + chunks * (4 + 2 * 4096);
    }
    return bytes;
}

/*
 * Grows the map (no transaction may be open) to min(max_map_bytes, the
 * larger of twice its size and what the file's pages and `need` more take);
 * *grew is false if it is at that limit already.
 */
static gdml_err grow_map(gdml_store *s, uint64_t need, gdml_errmsg *e, bool *grew)
{
    *grew = false;
    MDB_envinfo info;
    MDB_stat st;
    uint64_t used = 0;
    if (mdb_env_info(s->env, &info) == 0 && mdb_env_stat(s->env, &st) == 0)
        used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
    uint64_t want = used + need > s->map * 2 ? used + need : s->map * 2;
    want = (want + ((uint64_t)1 << 20) - 1) & ~(((uint64_t)1 << 20) - 1);
    if (want > s->opts.max_map_bytes)
        want = s->opts.max_map_bytes;
    if (want <= s->map)
        return GDML_OK;
    int rc = mdb_env_set_mapsize(s->env, (size_t)want);
    if (rc)
        return store_fail(s, e, rc, "cannot grow the map");
    gdml_info("store_map_grown", "store=%s from_mib=%" PRIu64 " to_mib=%" PRIu64, s->dir,
              s->map >> 20, want >> 20);
    s->map = want;
    *grew = true;
    return GDML_OK;
}

/* True if the file's pages and need more bytes may not fit the map. */
static bool map_short(const gdml_store *s, uint64_t need)
{
    MDB_envinfo info;
    MDB_stat st;
    if (mdb_env_info(s->env, &info) || mdb_env_stat(s->env, &st))
        return false;
    return ((uint64_t)info.me_last_pgno + 1) * st.ms_psize + need > s->map;
}

gdml_err gdml_store_commit(gdml_store *s, const gdml_version_meta *meta, const char *layout,
                           const gdml_store_tensor *tensors, size_t n_tensors, gdml_errmsg *e)
{
    assert(s && meta && layout && tensors);
    gdml_err err = check_commit(s, meta, layout, tensors, n_tensors, e);
    if (err)
        return err;
    /* Grown before writing, the map does not fill halfway through a version
     * (pages freed by retention are reused, so this may grow it early). */
    uint64_t need = commit_bytes(tensors, n_tensors);
    bool grew;
    if (map_short(s, need) && (err = grow_map(s, need, e, &grew)))
        return err;
    for (;;) {
        gdml_err refused = GDML_OK;
        int rc = write_version(s, meta, layout, tensors, n_tensors, e, &refused);
        if (refused)
            return refused;
        if (rc != MDB_MAP_FULL)
            return rc ? store_fail(s, e, rc, "cannot commit a version") : GDML_OK;
        /* The map is full: grow it (no transaction is open now) and write again. */
        if ((err = grow_map(s, need, e, &grew)))
            return err;
        if (!grew)
            return gdml_errmsg_set(e, GDML_ERR_NOSPACE,
                                   "the model store '%s' filled its map of %" PRIu64 " bytes, "
                                   "store.max_map_gb; raise it, or keep fewer versions "
                                   "(store.keep_last)",
                                   s->dir, s->map);
    }
}
