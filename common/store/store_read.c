/*
 * store_read.c - reading the store: the head, counts, metadata, layouts and
 * tensors (every chunk's checksum checked), walks over every version,
 * verification and rollback.
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

/* ---- reading ---- */

gdml_err gdml_store_newest(gdml_store *s, uint64_t *version, gdml_errmsg *e)
{
    MDB_txn *txn;
    gdml_err err = store_begin(s, false, &txn, e);
    if (err)
        return err;
    err = store_newest_in(s, txn, version, e);
    mdb_txn_abort(txn);
    return err;
}

gdml_err gdml_store_head(gdml_store *s, uint64_t *version, gdml_errmsg *e)
{
    MDB_txn *txn;
    gdml_err err = store_begin(s, false, &txn, e);
    if (err)
        return err;
    uint64_t head = 0;
    int rc = store_control_get(s, txn, "head", &head, 8);
    if (rc == 0) {
        MDB_val val;
        if (store_get_version(s, txn, s->meta, head, &val) == 0)
            *version = head;
        else
            err = store_newest_in(s, txn, version, e); /* rolled back to a version retention removed */
    } else if (rc == MDB_NOTFOUND) {
        err = store_newest_in(s, txn, version, e);
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
    gdml_err err = store_begin(s, false, &txn, e);
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
    gdml_err err = store_begin(s, false, &txn, e);
    if (err)
        return err;
    err = store_meta_in(s, txn, version, out, e);
    mdb_txn_abort(txn);
    return err;
}

gdml_err gdml_store_layout(gdml_store *s, uint64_t version, char layout[GDML_LAYOUT_MAX],
                           gdml_errmsg *e)
{
    MDB_txn *txn;
    MDB_val val;
    gdml_err err = store_begin(s, false, &txn, e);
    if (err)
        return err;
    int rc = store_get_version(s, txn, s->layout, version, &val);
    if (rc == MDB_NOTFOUND)
        err = gdml_errmsg_set(e, GDML_ERR_NOTFOUND, "version %" PRIu64 " is not in '%s'", version,
                              s->dir);
    else if (rc)
        err = store_fail(s, e, rc, "cannot read a layout");
    else if (val.mv_size == 0 || val.mv_size >= GDML_LAYOUT_MAX ||
             memchr(val.mv_data, '\0', val.mv_size))
        err = store_damaged(s, e, version, "its layout is malformed");
    else {
        memcpy(layout, val.mv_data, val.mv_size);
        layout[val.mv_size] = '\0';
    }
    mdb_txn_abort(txn);
    return err;
}

/* Reads (or, with out NULL, only checks) tensor `index` of meta in txn. */
gdml_err store_read_tensor(gdml_store *s, MDB_txn *txn, const gdml_version_meta *meta,
                            uint32_t index, float *out, gdml_errmsg *e)
{
    const gdml_tensor_info *info = &meta->tensors[index];
    unsigned char k[13];
    store_put_be(k, meta->version, 8);
    k[8] = (unsigned char)index;
    uint32_t whole = 0;
    char what[128];
    for (uint64_t c = 0; c * STORE_CHUNK < info->n; c++) {
        uint64_t lo = c * STORE_CHUNK;
        size_t len = (size_t)(info->n - lo < STORE_CHUNK ? info->n - lo : STORE_CHUNK);
        store_put_be(k + 9, c, 4);
        MDB_val key = {13, k}, val;
        int rc = mdb_get(txn, s->tensor, &key, &val);
        snprintf(what, sizeof what, "tensor '%s', chunk %" PRIu64, info->name, c);
        if (rc == MDB_NOTFOUND)
            return store_damaged(s, e, meta->version, what);
        if (rc)
            return store_fail(s, e, rc, "cannot read a tensor");
        if (val.mv_size != 4 + len * sizeof(float)) {
            snprintf(what, sizeof what, "tensor '%s', chunk %" PRIu64 " has the wrong size",
                     info->name, c);
            return store_damaged(s, e, meta->version, what);
        }
        const unsigned char *p = val.mv_data;
        uint32_t want = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                        (uint32_t)p[3] << 24;
        uint32_t crc = gdml_crc32(0, p + 4, len * sizeof(float));
        if (crc != want) {
            snprintf(what, sizeof what, "tensor '%s', chunk %" PRIu64 " fails its checksum",
                     info->name, c);
            return store_damaged(s, e, meta->version, what);
        }
        whole = c == 0 ? crc : gdml_crc32_combine(whole, crc, len * sizeof(float));
        if (out) /* the map gives no alignment guarantee for values: copy bytes */
            memcpy(out + lo, p + 4, len * sizeof(float));
    }
    if (whole != info->crc32) {
        snprintf(what, sizeof what, "tensor '%s' fails its checksum", info->name);
        return store_damaged(s, e, meta->version, what);
    }
    return GDML_OK;
}

gdml_err gdml_store_tensor_read(gdml_store *s, uint64_t version, const char *name, float **out,
                                size_t *n, gdml_errmsg *e)
{
    MDB_txn *txn;
    gdml_version_meta meta;
    float *data = NULL;
    gdml_err err = store_begin(s, false, &txn, e);
    if (err)
        return err;
    if ((err = store_meta_in(s, txn, version, &meta, e)))
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
    if ((err = store_read_tensor(s, txn, &meta, i, data, e)))
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
    gdml_err err = store_begin(s, false, &txn, e);
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
        uint64_t v = store_get_be(key.mv_data, 8);
        gdml_version_meta m;
        const char *why = store_meta_decode(v, &val, &m);
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
        c->err = store_damaged(s, c->e, v, why);
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
    gdml_err err = why ? store_damaged(s, &here, v, why) : GDML_OK;
    for (uint32_t i = 0; !err && i < m->n_tensors; i++)
        err = store_read_tensor(s, txn, m, i, NULL, &here);
    if (!err) {
        MDB_val val;
        int rc = store_get_version(s, txn, s->layout, v, &val);
        if (rc || val.mv_size == 0 || val.mv_size >= GDML_LAYOUT_MAX)
            err = store_damaged(s, &here, v, "its layout is missing or malformed");
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
    gdml_err err = store_begin(s, true, &txn, e);
    if (err)
        return err;
    gdml_version_meta m;
    if ((err = store_meta_in(s, txn, version, &m, e))) {
        mdb_txn_abort(txn);
        return err;
    }
    for (uint32_t i = 0; i < m.n_tensors && !err; i++)
        err = store_read_tensor(s, txn, &m, i, NULL, e); /* never roll back onto damage */
    int rc = err ? 0 : store_control_put(s, txn, "head", version, 8);
    if (err || rc) {
        mdb_txn_abort(txn);
        return err ? err : store_fail(s, e, rc, "cannot record the rollback");
    }
    rc = mdb_txn_commit(txn);
    return rc ? store_fail(s, e, rc, "cannot record the rollback") : GDML_OK;
}

