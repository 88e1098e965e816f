/*
 * store_record.c - the store's record formats (store.c's top comment has
 * them in full): big-endian keys, the little-endian meta record with its
 * CRC-32, and the errors every part of the store reports in one voice.
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

/* ---- errors ---- */

static gdml_err store_disk_full(const gdml_store *s, gdml_errmsg *e)
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

static bool store_low_on_space(const gdml_store *s)
{
    struct statvfs fs;
    return statvfs(s->dir, &fs) == 0 && (uint64_t)fs.f_bavail * fs.f_frsize < LOW_SPACE;
}

/* Translates an LMDB failure, with the store's path. */
gdml_err store_fail(const gdml_store *s, gdml_errmsg *e, int rc, const char *what)
{
    if (rc == ENOSPC || rc == EDQUOT || (rc == EIO && store_low_on_space(s)))
        return store_disk_full(s, e);
    if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID)
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "the model store '%s' is damaged (%s: %s); run gdml-models verify "
                               "--store %s, and restore it from a backup or start a new one",
                               s->data_path, what, mdb_strerror(rc), s->dir);
    return gdml_errmsg_set(e, GDML_ERR_STORE, "model store '%s': %s: %s", s->dir, what,
                           mdb_strerror(rc));
}

gdml_err store_damaged(const gdml_store *s, gdml_errmsg *e, uint64_t version, const char *what)
{
    return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                           "version %" PRIu64 " in the model store '%s' is damaged: %s; roll "
                           "back to an earlier version (gdml-models rollback) or restore the "
                           "store from a backup",
                           version, s->data_path, what);
}

/* ---- keys and records ---- */

void store_put_be(unsigned char *k, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        k[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
}

uint64_t store_get_be(const unsigned char *k, int bytes)
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

uint32_t gdml_store_meta_score(const gdml_version_meta *m, gdml_score *total)
{
    uint32_t regions = 0;
    *total = (gdml_score){0};
    for (uint32_t i = 0; i < m->n_regions && i < GDML_STORE_MAX_REGIONS; i++) {
        regions += m->regions[i].val.rows > 0;
        gdml_score_add(total, &m->regions[i].val);
    }
    return regions;
}

size_t store_meta_encode(const gdml_version_meta *m, unsigned char *buf, size_t cap)
{
    wbuf w = {buf, 0, cap, false};
    gdml_score total;
    bool privacy = m->dp_delta > 0;
    bool scores = privacy || gdml_store_meta_score(m, &total) > 0;
    put_le(&w, privacy ? META_FORMAT_PRIVACY : scores ? META_FORMAT_SCORES : STORE_FORMAT, 4);
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
        if (scores) {
            put_le(&w, m->regions[i].val_version, 8);
            put_le(&w, m->regions[i].val.rows, 8);
            put_le(&w, m->regions[i].val.correct, 8);
            put_f64(&w, m->regions[i].val.loss);
        }
    }
    put_le(&w, m->n_tensors, 4);
    for (uint32_t i = 0; i < m->n_tensors; i++) {
        put_str(&w, m->tensors[i].name, GDML_STORE_TENSOR_NAME_MAX);
        put_le(&w, m->tensors[i].n, 8);
        put_le(&w, m->tensors[i].crc32, 4);
    }
    if (privacy) {
        put_f64(&w, m->epsilon);
        put_f64(&w, m->dp_delta);
    }
    put_le(&w, gdml_crc32(0, buf, w.len), 4);
    return w.overflow ? 0 : w.len;
}

/* Parses a meta record; NULL if it is whole and sound, else what is wrong. */
const char *store_meta_decode(uint64_t version, const MDB_val *val, gdml_version_meta *out)
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
    uint64_t format = get_le(&r, 4);
    if (format != STORE_FORMAT && format != META_FORMAT_SCORES && format != META_FORMAT_PRIVACY)
        return "its record has a format this build does not read (a newer gdml wrote it?)";
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
        if (format >= META_FORMAT_SCORES) {
            gdml_region_part *part = &m.regions[i];
            part->val_version = get_le(&r, 8);
            part->val.rows = get_le(&r, 8);
            part->val.correct = get_le(&r, 8);
            part->val.loss = get_f64(&r);
            if (r.ok && !gdml_score_ok(&part->val, UINT64_MAX))
                return "a region's held-out score is malformed";
        }
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
    if (format == META_FORMAT_PRIVACY) {
        m.epsilon = get_f64(&r);
        m.dp_delta = get_f64(&r);
        if (r.ok && !(m.epsilon >= 0 && m.dp_delta > 0 && m.dp_delta < 1))
            return "its privacy figures are malformed";
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

