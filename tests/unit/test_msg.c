/*
 * test_msg.c - the protocol-2 wire message (msg.h): round trips of every
 * header field, frames built with gdml_frame_seal, what the encoder refuses,
 * what the decoder refuses from a broken or hostile peer, the refusal a
 * protocol-1 peer can read, and the type and reason names.
 *
 * Hostile headers are written by a small msgpack writer of the test's own,
 * and what the encoder writes is read back by a small reader of its own, so
 * the tests check the wire format rather than msgpack-c agreeing with itself.
 */
#include "msg.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK GDML_CHUNK_ELEMS

/* ---- a minimal msgpack writer ---- */

typedef struct w {
    uint8_t b[4096];
    size_t n;
} w;

static void w_byte(w *o, uint8_t v)
{
    cr_assert_lt(o->n, sizeof o->b, "test writer overflow");
    o->b[o->n++] = v;
}

static void w_be(w *o, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--)
        w_byte(o, (uint8_t)(v >> (8 * i)));
}

static void w_raw(w *o, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        w_byte(o, ((const uint8_t *)p)[i]);
}

static void w_map(w *o, size_t n)
{
    w_byte(o, 0xde);
    w_be(o, n, 2);
}

static void w_uint(w *o, uint64_t v)
{
    w_byte(o, 0xcf);
    w_be(o, v, 8);
}

static void w_strn(w *o, const char *s, size_t len)
{
    w_byte(o, 0xda);
    w_be(o, len, 2);
    w_raw(o, s, len);
}

static void w_str(w *o, const char *s)
{
    w_strn(o, s, strlen(s));
}

static void w_f64(w *o, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    w_byte(o, 0xcb);
    w_be(o, bits, 8);
}

static void w_kv_uint(w *o, const char *key, uint64_t v)
{
    w_str(o, key);
    w_uint(o, v);
}

/* Appends n payload bytes. */
static void w_pad(w *o, size_t n)
{
    for (size_t i = 0; i < n; i++)
        w_byte(o, (uint8_t)(0xa5 ^ i));
}

/* Starts a frame: a map of the required fields (proto 2, type PUSH, seq 7)
 * with room for extra more pairs, which the caller writes next. */
static void w_required(w *o, size_t extra)
{
    o->n = 0;
    w_map(o, 3 + extra);
    w_kv_uint(o, "proto", GDML_PROTO_VERSION);
    w_kv_uint(o, "type", GDML_MSG_PUSH);
    w_kv_uint(o, "seq", 7);
}

/* The required fields and a tensor chunk's fields, with room for extra more
 * pairs; the caller appends the payload bytes. */
static void w_tensor(w *o, uint64_t total, uint64_t off, uint64_t chunks, uint64_t plen,
                     size_t extra)
{
    w_required(o, 5 + extra);
    w_kv_uint(o, "enc", GDML_ENC_CODEC);
    w_kv_uint(o, "total", total);
    w_kv_uint(o, "off", off);
    w_kv_uint(o, "chunks", chunks);
    w_kv_uint(o, "plen", plen);
}

/* A value to write: 'u' unsigned, 'i' signed, 'f' float64, 's' string of n
 * bytes, 'r' n raw msgpack bytes. */
typedef struct wval {
    char kind;
    uint64_t u;
    int64_t i;
    double d;
    const char *s;
    size_t n;
} wval;

#define U(x) ((wval){.kind = 'u', .u = (x)})
#define I(x) ((wval){.kind = 'i', .i = (x)})
#define F(x) ((wval){.kind = 'f', .d = (x)})
#define S(x) ((wval){.kind = 's', .s = (x), .n = sizeof(x) - 1})
#define RAW(x) ((wval){.kind = 'r', .s = (const char *)(x), .n = sizeof(x)})

static void w_val(w *o, wval v)
{
    switch (v.kind) {
    case 'u':
        w_uint(o, v.u);
        break;
    case 'i':
        w_byte(o, 0xd3);
        w_be(o, (uint64_t)v.i, 8);
        break;
    case 'f':
        w_f64(o, v.d);
        break;
    case 's':
        w_strn(o, v.s, v.n);
        break;
    default:
        w_raw(o, v.s, v.n);
        break;
    }
}

/* A frame of the required fields and key = v; if key names a required field,
 * v replaces its value. */
static void w_with(w *o, const char *key, wval v)
{
    static const char *const req[] = {"proto", "type", "seq"};
    static const uint64_t req_val[] = {GDML_PROTO_VERSION, GDML_MSG_PUSH, 7};
    bool replaces = false;
    for (size_t i = 0; i < 3; i++)
        replaces |= strcmp(key, req[i]) == 0;
    o->n = 0;
    w_map(o, replaces ? 3 : 4);
    for (size_t i = 0; i < 3; i++)
        if (strcmp(key, req[i]) != 0)
            w_kv_uint(o, req[i], req_val[i]);
    w_str(o, key);
    w_val(o, v);
}

/* ---- a minimal msgpack reader, for what the encoders write ---- */

typedef enum rkind { R_NIL, R_UINT, R_FLOAT, R_STR, R_ARRAY, R_MAP } rkind;

typedef struct rval {
    rkind kind;
    uint64_t u;       /* R_UINT; entries of R_ARRAY and R_MAP */
    double d;         /* R_FLOAT */
    const uint8_t *s; /* R_STR */
    size_t n;         /* R_STR bytes */
} rval;

static bool r_be(const uint8_t *p, size_t len, size_t *pos, size_t bytes, uint64_t *out)
{
    if (bytes > len - *pos)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < bytes; i++)
        v = v << 8 | p[(*pos)++];
    *out = v;
    return true;
}

static bool r_value(const uint8_t *p, size_t len, size_t *pos, rval *v);

/* Reads the n elements of an array (or 2n of a map) that follow. */
static bool r_items(const uint8_t *p, size_t len, size_t *pos, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        rval item;
        if (!r_value(p, len, pos, &item))
            return false;
    }
    return true;
}

/* Reads one object; false if it is truncated or of a kind the encoders never write. */
static bool r_value(const uint8_t *p, size_t len, size_t *pos, rval *v)
{
    memset(v, 0, sizeof *v);
    if (*pos >= len)
        return false;
    uint8_t b = p[(*pos)++];
    uint64_t x = 0;
    if (b <= 0x7f) {
        v->kind = R_UINT;
        v->u = b;
        return true;
    }
    if (b >= 0x80 && b <= 0x9f) {
        v->kind = b <= 0x8f ? R_MAP : R_ARRAY;
        v->u = b & 0x0f;
        return r_items(p, len, pos, v->kind == R_MAP ? 2 * v->u : v->u);
    }
    if (b >= 0xa0 && b <= 0xbf)
        x = b & 0x1f;
    else if (b >= 0xd9 && b <= 0xdb && !r_be(p, len, pos, (size_t)1 << (b - 0xd9), &x))
        return false;
    if ((b >= 0xa0 && b <= 0xbf) || (b >= 0xd9 && b <= 0xdb)) {
        if (x > len - *pos)
            return false;
        v->kind = R_STR;
        v->s = p + *pos;
        v->n = (size_t)x;
        *pos += (size_t)x;
        return true;
    }
    switch (b) {
    case 0xc0:
        v->kind = R_NIL;
        return true;
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        v->kind = R_UINT;
        return r_be(p, len, pos, (size_t)1 << (b - 0xcc), &v->u);
    case 0xca: {
        float f;
        uint32_t bits;
        if (!r_be(p, len, pos, 4, &x))
            return false;
        bits = (uint32_t)x;
        memcpy(&f, &bits, sizeof f);
        v->kind = R_FLOAT;
        v->d = f;
        return true;
    }
    case 0xcb:
        if (!r_be(p, len, pos, 8, &x))
            return false;
        memcpy(&v->d, &x, sizeof v->d);
        v->kind = R_FLOAT;
        return true;
    case 0xdc:
    case 0xdd:
    case 0xde:
    case 0xdf:
        v->kind = b <= 0xdd ? R_ARRAY : R_MAP;
        if (!r_be(p, len, pos, b % 2 ? 4 : 2, &v->u))
            return false;
        return r_items(p, len, pos, v->kind == R_MAP ? 2 * v->u : v->u);
    default:
        return false;
    }
}

#define RMAP_MAX 32

/* A top-level map with string keys, as read. */
typedef struct rmap {
    size_t n;
    char key[RMAP_MAX][32];
    rval val[RMAP_MAX];
} rmap;

/* Reads the map at the start of buf[0..len) into m; returns its length in bytes. */
static size_t read_map(const uint8_t *buf, size_t len, rmap *m)
{
    size_t pos = 0;
    uint64_t n = 0;
    memset(m, 0, sizeof *m);
    cr_assert_gt(len, 0);
    if (buf[0] >= 0x80 && buf[0] <= 0x8f) {
        n = buf[0] & 0x0f;
        pos = 1;
    } else {
        cr_assert(buf[0] == 0xde || buf[0] == 0xdf, "not a map: 0x%02x", buf[0]);
        pos = 1;
        cr_assert(r_be(buf, len, &pos, buf[0] == 0xde ? 2 : 4, &n));
    }
    cr_assert_leq(n, RMAP_MAX);
    m->n = (size_t)n;
    for (size_t i = 0; i < m->n; i++) {
        rval k;
        cr_assert(r_value(buf, len, &pos, &k), "key %zu unreadable", i);
        cr_assert_eq(k.kind, R_STR, "key %zu is not a string", i);
        cr_assert_lt(k.n, sizeof m->key[i]);
        memcpy(m->key[i], k.s, k.n);
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(m->key[j], m->key[i], "key '%s' twice", m->key[i]);
        cr_assert(r_value(buf, len, &pos, &m->val[i]), "value of '%s' unreadable", m->key[i]);
    }
    return pos;
}

static const rval *rmap_get(const rmap *m, const char *key)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->key[i], key) == 0)
            return &m->val[i];
    return NULL;
}

/* ---- helpers ---- */

/* Decodes and expects code with an error text containing want; nothing the
 * decoder returns through an out-parameter may change on failure, except
 * other_proto on a version error. */
static void expect_fail(const uint8_t *buf, size_t len, gdml_err code, const char *want)
{
    gdml_msg_header h, before;
    memset(&h, 0x5a, sizeof h);
    memset(&before, 0x5a, sizeof before);
    const uint8_t *const sentinel = (const uint8_t *)&before;
    const uint8_t *payload = sentinel;
    uint32_t other = 0xdeadbeef;
    gdml_errmsg e = {{0}};
    gdml_err err = gdml_msg_decode(buf, len, &h, &payload, &other, &e);
    cr_assert_eq(err, code, "want %s, got %s (%s)", gdml_strerror(code), gdml_strerror(err),
                 e.text);
    cr_assert(strstr(e.text, want), "error text '%s' lacks '%s'", e.text, want);
    cr_assert(memcmp(&h, &before, sizeof h) == 0, "header written on failure");
    cr_assert_eq(payload, sentinel, "payload written on failure");
    if (code != GDML_ERR_VERSION)
        cr_assert_eq(other, 0xdeadbeef, "other_proto written without a version error");
}

static void expect_fail_w(const w *o, gdml_err code, const char *want)
{
    expect_fail(o->b, o->n, code, want);
}

static void decode_ok(const w *o, gdml_msg_header *h)
{
    gdml_errmsg e = {{0}};
    const uint8_t *payload = NULL;
    cr_assert_eq(gdml_msg_decode(o->b, o->n, h, &payload, NULL, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(payload, o->b + o->n - h->plen);
}

/* A header with every field set, most at their bounds; a tensor chunk of plen bytes. */
static void full_header(gdml_msg_header *h, uint64_t plen)
{
    char sender[GDML_NAME_MAX];
    memset(sender, 'r', sizeof sender - 1);
    sender[sizeof sender - 1] = '\0';
    gdml_msg_header_init(h, GDML_MSG_DELTA, sender);
    h->seq = GDML_MSG_MAX_U48;
    h->version = GDML_MSG_MAX_U48 - 1;
    h->step = 42;
    h->count = 60000;
    h->metric = -0.3125;
    h->code = GDML_REASON_SLOW;
    h->acked = 123456789012345ull;
    h->encoding = GDML_ENC_CODEC;
    h->total = 5 * CHUNK + 7; /* a grid of 6 chunks */
    h->offset = 5 * CHUNK;    /* the last, short one */
    h->chunks = 6;
    h->plen = plen;
    h->down_rate = 25000;
    h->down_cap = (uint64_t)1 << 40;
    h->lr_steps = GDML_MSG_MAX_LR_STEPS;
    h->val = (gdml_score){
        .rows = GDML_MSG_MAX_U48, .correct = GDML_MSG_MAX_U48, .loss = GDML_SCORE_MAX_LOSS};
    h->val_version = h->version - 1;
    for (size_t i = 0; i < GDML_MSG_TEXT_MAX - 1; i++)
        h->text[i] = (char)(1 + i % 255); /* every byte but NUL */
    h->text[GDML_MSG_TEXT_MAX - 1] = '\0';
}

static void assert_headers_equal(const gdml_msg_header *a, const gdml_msg_header *b)
{
    cr_assert_eq(a->proto, b->proto);
    cr_assert_eq(a->type, b->type);
    cr_assert_str_eq(a->sender, b->sender);
    cr_assert_eq(a->seq, b->seq);
    cr_assert_eq(a->version, b->version);
    cr_assert_eq(a->step, b->step);
    cr_assert_eq(a->count, b->count);
    if (isnan(a->metric))
        cr_assert(isnan(b->metric), "metric %g, want NaN", b->metric);
    else
        cr_assert(a->metric == b->metric && signbit(a->metric) == signbit(b->metric),
                  "metric %g, want %g", b->metric, a->metric);
    cr_assert_eq(a->code, b->code);
    cr_assert_eq(a->acked, b->acked);
    cr_assert_eq(a->encoding, b->encoding);
    cr_assert_eq(a->offset, b->offset);
    cr_assert_eq(a->total, b->total);
    cr_assert_eq(a->chunks, b->chunks);
    cr_assert_eq(a->plen, b->plen);
    cr_assert_eq(a->down_rate, b->down_rate);
    cr_assert_eq(a->down_cap, b->down_cap);
    cr_assert(a->lr_steps == b->lr_steps, "lr_steps %g, want %g", b->lr_steps, a->lr_steps);
    cr_assert_eq(a->val.rows, b->val.rows);
    cr_assert_eq(a->val.correct, b->val.correct);
    cr_assert(a->val.loss == b->val.loss, "val.loss %g, want %g", b->val.loss, a->val.loss);
    cr_assert_eq(a->val_version, b->val_version);
    cr_assert_str_eq(a->text, b->text);
}

/* Encodes h, appends its plen payload bytes, and decodes the frame into out. */
static void round_trip(const gdml_msg_header *h, gdml_msg_header *out)
{
    static uint8_t buf[GDML_MSG_HEADER_MAX + 4096];
    size_t len = 0;
    cr_assert_leq(h->plen, 4096);
    cr_assert_eq(gdml_msg_encode(h, buf, GDML_MSG_HEADER_MAX, &len), GDML_OK);
    cr_assert(len > 0 && len <= GDML_MSG_HEADER_MAX);
    for (size_t i = 0; i < h->plen; i++)
        buf[len + i] = (uint8_t)(i * 7);
    const uint8_t *payload = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_msg_decode(buf, len + h->plen, out, &payload, NULL, &e), GDML_OK, "%s",
                 e.text);
    cr_assert_eq(payload, buf + len, "payload does not start right after the header");
}

/* ---- round trips ---- */

Test(msg, round_trip_every_field_at_its_bounds)
{
    gdml_msg_header h, out;
    full_header(&h, 1000);
    round_trip(&h, &out);
    assert_headers_equal(&h, &out);
    cr_assert_eq(out.proto, GDML_PROTO_VERSION);
}

Test(msg, every_field_is_written_under_its_key)
{
    gdml_msg_header h;
    full_header(&h, 1000);
    h.offset = CHUNK; /* nonzero and not the last chunk */
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_OK);
    rmap m;
    cr_assert_eq(read_map(buf, len, &m), len, "bytes after the header map");
    static const char *const keys[] = {"proto", "type",   "from",  "seq",   "ver",  "step",
                                       "count", "metric", "code",  "acked", "enc",  "off",
                                       "total", "chunks", "plen",  "drate", "dcap", "lrh",
                                       "vrows", "vok",    "vloss", "vver",  "text"};
    cr_assert_eq(m.n, sizeof keys / sizeof keys[0]);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        cr_assert_not_null(rmap_get(&m, keys[i]), "key '%s' missing", keys[i]);
    cr_assert_str_eq(m.key[0], "proto", "proto is not first");
    cr_assert_eq(rmap_get(&m, "proto")->u, 2);
    cr_assert_eq(rmap_get(&m, "seq")->u, GDML_MSG_MAX_U48);
    cr_assert_eq(rmap_get(&m, "off")->u, CHUNK);
    cr_assert_eq(rmap_get(&m, "metric")->kind, R_FLOAT);
    cr_assert_eq(rmap_get(&m, "lrh")->d, GDML_MSG_MAX_LR_STEPS);
    cr_assert_eq(rmap_get(&m, "vrows")->u, GDML_MSG_MAX_U48);
    cr_assert_eq(rmap_get(&m, "vloss")->kind, R_FLOAT);
    cr_assert_eq(rmap_get(&m, "vver")->u, GDML_MSG_MAX_U48 - 2);
    cr_assert_eq(rmap_get(&m, "from")->n, GDML_NAME_MAX - 1);
    cr_assert_eq(rmap_get(&m, "text")->n, GDML_MSG_TEXT_MAX - 1);
}

Test(msg, round_trip_each_type)
{
    for (int t = 1; t <= GDML_MSG_TYPE_MAX; t++) {
        gdml_msg_header h, out;
        gdml_msg_header_init(&h, (gdml_msg_type)t, "eu-west");
        h.seq = (uint64_t)t;
        round_trip(&h, &out);
        assert_headers_equal(&h, &out);
    }
}

Test(msg, minimal_header_omits_every_optional_field)
{
    gdml_msg_header h, out;
    gdml_msg_header_init(&h, GDML_MSG_HEARTBEAT, NULL);
    h.seq = 1;
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_OK);
    rmap m;
    read_map(buf, len, &m);
    cr_assert_eq(m.n, 3, "a minimal header has %zu keys, want proto, type, seq", m.n);
    cr_assert_not_null(rmap_get(&m, "proto"));
    cr_assert_not_null(rmap_get(&m, "type"));
    cr_assert_not_null(rmap_get(&m, "seq"));
    /* Absent fields decode to 0, NaN and "". */
    round_trip(&h, &out);
    assert_headers_equal(&h, &out);
    cr_assert(isnan(out.metric));
    cr_assert_str_eq(out.text, "");
    cr_assert_str_eq(out.sender, "");
    cr_assert_eq(out.encoding, GDML_ENC_NONE);
    cr_assert_eq(out.lr_steps, 0.0);
    cr_assert_eq(out.val.rows, 0);
}

/* Encodes h and reads the map back into m, for a look at the keys written. */
static void encode_into_map(const gdml_msg_header *h, rmap *m)
{
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode(h, buf, sizeof buf, &len), GDML_OK);
    read_map(buf, len, m);
}

Test(msg, validation_fields_are_written_only_with_rows)
{
    /* Rows alone: vrows, vloss and vver (a loss of 0 is a loss, version 0 a version); vok
     * only when some are right. */
    gdml_msg_header h, out;
    gdml_msg_header_init(&h, GDML_MSG_PUSH, NULL);
    h.seq = 3;
    h.val = (gdml_score){.rows = 512, .correct = 0, .loss = 0.0};
    rmap m;
    encode_into_map(&h, &m);
    cr_assert_eq(m.n, 6, "%zu keys", m.n);
    cr_assert_eq(rmap_get(&m, "vrows")->u, 512);
    cr_assert_eq(rmap_get(&m, "vver")->u, 0);
    cr_assert_eq(rmap_get(&m, "vloss")->d, 0.0);
    cr_assert_null(rmap_get(&m, "vok"));
    round_trip(&h, &out);
    assert_headers_equal(&h, &out);

    h.val = (gdml_score){.rows = 512, .correct = 400, .loss = 0.5625};
    h.version = 9;
    h.val_version = 8;
    encode_into_map(&h, &m);
    cr_assert_eq(m.n, 8, "%zu keys", m.n);
    cr_assert_eq(rmap_get(&m, "vver")->u, 8);
    cr_assert_eq(rmap_get(&m, "vok")->u, 400);
    cr_assert_eq(rmap_get(&m, "vloss")->d, 0.5625);
    round_trip(&h, &out);
    assert_headers_equal(&h, &out);
    cr_assert_float_eq(gdml_score_accuracy(&out.val), 400.0 / 512.0, 1e-12);
}

Test(msg, encode_refuses_bad_validation_fields)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_PUSH, "w0");
    h.seq = 1;
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = 0;
    const gdml_score bad[] = {
        {.rows = 10, .correct = 11, .loss = 0.5},                /* more right than rows */
        {.rows = 10, .correct = 5, .loss = NAN},                 /* a loss that is not a number */
        {.rows = 10, .correct = 5, .loss = INFINITY},            /* an infinite loss */
        {.rows = 10, .correct = 5, .loss = -0.25},               /* a negative loss */
        {.rows = 10, .correct = 5, .loss = 2e6},                 /* above GDML_SCORE_MAX_LOSS */
        {.rows = 0, .correct = 1, .loss = 0},                    /* correct without rows */
        {.rows = 0, .correct = 0, .loss = 0.5},                  /* a loss without rows */
        {.rows = GDML_MSG_MAX_U48 + 1, .correct = 0, .loss = 0}, /* rows above 2^48 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        h.val = bad[i];
        cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_ERR_INVALID,
                     "score %zu was encoded", i);
    }
    h.val = (gdml_score){.rows = 10, .correct = 10, .loss = GDML_SCORE_MAX_LOSS};
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_OK);
    /* A score of a version the message is not yet at, or a version without a score. */
    h.version = 4;
    h.val_version = 5;
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_ERR_INVALID);
    h.val_version = 4;
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_OK);
    h.val = (gdml_score){0};
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_ERR_INVALID);
}

Test(msg, decode_checks_the_validation_fields)
{
    w o;
    gdml_msg_header h;
    /* Hand-written frames: the required fields, then vrows, vok and vloss as given. */
    struct {
        wval rows, ok, loss;
        const char *want; /* NULL: decodes */
    } cases[] = {
        {U(100), U(80), F(0.5), NULL},
        {U(100), U(100), U(2), NULL}, /* another writer's whole-number loss */
        {U(100), U(101), F(0.5), "want vok <= vrows"},
        {U(100), U(80), F(NAN), "'vloss'"},
        {U(100), U(80), F(INFINITY), "'vloss'"},
        {U(100), U(80), F(-1.0), "'vloss'"},
        {U(100), U(80), I(-1), "'vloss'"},
        {U(100), U(80), F(1e7), "'vloss'"},
        {U(0), U(1), F(0.0), "or none of them"},
        {U(0), U(0), F(0.5), "or none of them"},
        {U(GDML_MSG_MAX_U48 + 1), U(0), F(0.5), "header field 'vrows'"},
        {I(-5), U(0), F(0.5), "header field 'vrows': expected an unsigned integer"},
        {U(100), S("80"), F(0.5), "header field 'vok': expected an unsigned integer"},
        {U(100), U(80), S("0.5"), "header field 'vloss': expected a number"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        w_required(&o, 3);
        w_str(&o, "vrows");
        w_val(&o, cases[i].rows);
        w_str(&o, "vok");
        w_val(&o, cases[i].ok);
        w_str(&o, "vloss");
        w_val(&o, cases[i].loss);
        if (cases[i].want) {
            expect_fail_w(&o, GDML_ERR_PROTO, cases[i].want);
            continue;
        }
        decode_ok(&o, &h);
        cr_assert_eq(h.val.rows, 100, "case %zu", i);
        cr_assert_eq(h.val.correct, cases[i].ok.u, "case %zu", i);
    }
    /* vok or vloss alone (a writer that left out vrows) is refused too. */
    w_with(&o, "vok", U(3));
    expect_fail_w(&o, GDML_ERR_PROTO, "or none of them");
    w_with(&o, "vloss", F(0.25));
    expect_fail_w(&o, GDML_ERR_PROTO, "or none of them");
    /* vver: at most ver, and only with a score. */
    w_required(&o, 4);
    w_kv_uint(&o, "ver", 6);
    w_kv_uint(&o, "vrows", 10);
    w_str(&o, "vloss");
    w_f64(&o, 0.5);
    w_kv_uint(&o, "vver", 7);
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'vver': a score of version 7");
    o.b[o.n - 1] = 5; /* vver 5, written as uint64: its last byte */
    decode_ok(&o, &h);
    cr_assert_eq(h.val_version, 5);
    w_with(&o, "vver", U(3));
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'vver'");
    /* Duplicated, they are refused like any field. */
    w_required(&o, 2);
    w_kv_uint(&o, "vrows", 4);
    w_kv_uint(&o, "vrows", 4);
    expect_fail_w(&o, GDML_ERR_PROTO, "'vrows' appears twice");
}

/* Sets the optional field written under key to a value it does not have by default. */
static void set_optional(gdml_msg_header *h, const char *key)
{
    if (strcmp(key, "from") == 0)
        strcpy(h->sender, "us-east/w3");
    else if (strcmp(key, "ver") == 0)
        h->version = 9;
    else if (strcmp(key, "step") == 0)
        h->step = 9;
    else if (strcmp(key, "count") == 0)
        h->count = 9;
    else if (strcmp(key, "metric") == 0)
        h->metric = 0.0; /* zero is a metric; only NaN means none */
    else if (strcmp(key, "code") == 0)
        h->code = GDML_REASON_BUDGET;
    else if (strcmp(key, "acked") == 0)
        h->acked = 9;
    else if (strcmp(key, "drate") == 0)
        h->down_rate = 9;
    else if (strcmp(key, "dcap") == 0)
        h->down_cap = 9;
    else if (strcmp(key, "lrh") == 0)
        h->lr_steps = 0.25;
    else if (strcmp(key, "text") == 0)
        strcpy(h->text, "784x10 softmax");
    else
        cr_assert_fail("no optional field '%s'", key);
}

Test(msg, each_optional_field_is_written_only_when_set)
{
    static const char *const keys[] = {"from",  "ver",   "step", "count", "metric", "code",
                                       "acked", "drate", "dcap", "lrh",   "text"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        gdml_msg_header h, out;
        gdml_msg_header_init(&h, GDML_MSG_ERROR, NULL);
        h.seq = 3;
        set_optional(&h, keys[i]);
        uint8_t buf[GDML_MSG_HEADER_MAX];
        size_t len = 0;
        cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_OK);
        rmap m;
        read_map(buf, len, &m);
        cr_assert_eq(m.n, 4, "with '%s' set: %zu keys", keys[i], m.n);
        cr_assert_not_null(rmap_get(&m, keys[i]), "'%s' not written", keys[i]);
        round_trip(&h, &out);
        assert_headers_equal(&h, &out);
    }
}

Test(msg, first_chunk_omits_offset_and_negative_zero_metric_survives)
{
    gdml_msg_header h, out;
    gdml_msg_header_init(&h, GDML_MSG_MODEL, NULL);
    h.seq = 1;
    h.metric = -0.0;
    h.encoding = GDML_ENC_CODEC;
    h.total = 3 * CHUNK;
    h.chunks = 3;
    h.plen = 16;
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_OK);
    rmap m;
    read_map(buf, len, &m);
    cr_assert_null(rmap_get(&m, "off"), "offset 0 is written");
    cr_assert_eq(rmap_get(&m, "enc")->u, GDML_ENC_CODEC);
    cr_assert_eq(rmap_get(&m, "total")->u, 3 * CHUNK);
    cr_assert_eq(rmap_get(&m, "plen")->u, 16);
    round_trip(&h, &out);
    assert_headers_equal(&h, &out);
    cr_assert(signbit(out.metric));
}

Test(msg, header_init_sets_defaults_and_truncates_long_sender)
{
    char longname[200];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    gdml_msg_header h;
    memset(&h, 0x77, sizeof h);
    gdml_msg_header_init(&h, GDML_MSG_HELLO, longname);
    cr_assert_eq(strlen(h.sender), GDML_NAME_MAX - 1);
    cr_assert_eq(h.proto, GDML_PROTO_VERSION);
    cr_assert_eq(h.type, GDML_MSG_HELLO);
    cr_assert(isnan(h.metric));
    cr_assert_eq(h.seq, 0);
    cr_assert_eq(h.plen, 0);
    cr_assert_eq(h.lr_steps, 0.0);
    cr_assert_str_eq(h.text, "");
    gdml_msg_header_init(&h, GDML_MSG_STOP, NULL);
    cr_assert_str_eq(h.sender, "");
}

/* ---- encoding ---- */

/* A valid tensor chunk header: the second of three chunks, 10 payload bytes. */
static void tensor_header(gdml_msg_header *h)
{
    gdml_msg_header_init(h, GDML_MSG_PUSH, "us-east/w0");
    h->seq = 5;
    h->encoding = GDML_ENC_CODEC;
    h->total = 3 * CHUNK;
    h->offset = CHUNK;
    h->chunks = 3;
    h->plen = 10;
}

static void expect_encode_invalid(const gdml_msg_header *h, const char *what)
{
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = 4242;
    cr_assert_eq(gdml_msg_encode(h, buf, sizeof buf, &len), GDML_ERR_INVALID, "%s: encoded", what);
    cr_assert_eq(len, 4242, "%s: len written on failure", what);
}

static void expect_encode_ok(const gdml_msg_header *h, const char *what)
{
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode(h, buf, sizeof buf, &len), GDML_OK, "%s: refused", what);
}

Test(msg, encode_refuses_bad_type_encoding_code_and_proto)
{
    gdml_msg_header h;
    tensor_header(&h);
    expect_encode_ok(&h, "the base header");
    h.type = (gdml_msg_type)0;
    expect_encode_invalid(&h, "type 0");
    h.type = (gdml_msg_type)(GDML_MSG_TYPE_MAX + 1);
    expect_encode_invalid(&h, "type above the last");
    h.type = (gdml_msg_type)-1;
    expect_encode_invalid(&h, "type -1");
    tensor_header(&h);
    h.encoding = (gdml_encoding)1; /* protocol 1's dense float32 */
    expect_encode_invalid(&h, "encoding 1");
    h.encoding = (gdml_encoding)(GDML_ENC_MAX + 1);
    expect_encode_invalid(&h, "encoding above the last");
    tensor_header(&h);
    h.code = GDML_REASON_COUNT;
    expect_encode_invalid(&h, "code GDML_REASON_COUNT");
    tensor_header(&h);
    h.proto = 1;
    expect_encode_invalid(&h, "proto 1");
}

Test(msg, encode_refuses_payload_fields_without_a_tensor)
{
    const char *what[] = {"plen", "total", "offset", "chunks"};
    for (int i = 0; i < 4; i++) {
        gdml_msg_header h;
        gdml_msg_header_init(&h, GDML_MSG_HELLO, "us-east");
        h.seq = 1;
        expect_encode_ok(&h, "no tensor");
        uint64_t *f[] = {&h.plen, &h.total, &h.offset, &h.chunks};
        *f[i] = CHUNK;
        expect_encode_invalid(&h, what[i]);
    }
}

Test(msg, encode_refuses_inconsistent_tensor_chunks)
{
    gdml_msg_header h;
    tensor_header(&h);
    h.plen = 0;
    expect_encode_invalid(&h, "a chunk without payload");
    tensor_header(&h);
    h.plen = GDML_MSG_PAYLOAD_MAX + 1;
    expect_encode_invalid(&h, "plen above the payload maximum");
    h.plen = GDML_MSG_PAYLOAD_MAX;
    expect_encode_ok(&h, "plen at the payload maximum");
    tensor_header(&h);
    h.total = 0;
    h.offset = 0;
    expect_encode_invalid(&h, "total 0");
    tensor_header(&h);
    h.total = GDML_MSG_MAX_ELEMS + 1;
    expect_encode_invalid(&h, "total above the maximum");
    h.total = GDML_MSG_MAX_ELEMS;
    expect_encode_ok(&h, "total at the maximum");
    tensor_header(&h);
    h.offset = CHUNK + 1;
    expect_encode_invalid(&h, "offset off the grid");
    h.offset = 3 * CHUNK;
    expect_encode_invalid(&h, "offset at total");
    h.offset = 2 * CHUNK;
    expect_encode_ok(&h, "offset of the last chunk");
    tensor_header(&h);
    h.chunks = 0;
    expect_encode_invalid(&h, "chunks 0");
    h.chunks = 4;
    expect_encode_invalid(&h, "chunks above the grid");
    h.chunks = 1;
    expect_encode_ok(&h, "one chunk of three (sparse)");
}

Test(msg, encode_refuses_fields_above_2_to_the_48)
{
    const char *what[] = {"seq", "version", "step", "count", "acked", "down_rate", "down_cap"};
    for (int i = 0; i < 7; i++) {
        gdml_msg_header h;
        tensor_header(&h);
        uint64_t *f[] = {&h.seq,   &h.version,   &h.step,    &h.count,
                         &h.acked, &h.down_rate, &h.down_cap};
        *f[i] = GDML_MSG_MAX_U48;
        expect_encode_ok(&h, what[i]);
        *f[i] = GDML_MSG_MAX_U48 + 1;
        expect_encode_invalid(&h, what[i]);
        *f[i] = UINT64_MAX;
        expect_encode_invalid(&h, what[i]);
    }
}

Test(msg, encode_refuses_bad_metric_and_lr_steps)
{
    gdml_msg_header h;
    tensor_header(&h);
    h.metric = INFINITY;
    expect_encode_invalid(&h, "metric +inf");
    h.metric = -INFINITY;
    expect_encode_invalid(&h, "metric -inf");
    h.metric = -1e300;
    expect_encode_ok(&h, "a large negative metric");
    tensor_header(&h);
    h.lr_steps = -1.0;
    expect_encode_invalid(&h, "lr_steps -1");
    h.lr_steps = -1e-300;
    expect_encode_invalid(&h, "lr_steps slightly negative");
    h.lr_steps = nextafter(GDML_MSG_MAX_LR_STEPS, INFINITY);
    expect_encode_invalid(&h, "lr_steps above the bound");
    h.lr_steps = INFINITY;
    expect_encode_invalid(&h, "lr_steps inf");
    h.lr_steps = NAN;
    expect_encode_invalid(&h, "lr_steps NaN");
    h.lr_steps = GDML_MSG_MAX_LR_STEPS;
    expect_encode_ok(&h, "lr_steps at the bound");
}

Test(msg, encode_refuses_bad_sender_and_unterminated_text)
{
    gdml_msg_header h;
    tensor_header(&h);
    strcpy(h.sender, "bad\nname");
    expect_encode_invalid(&h, "sender with a newline");
    strcpy(h.sender, "caf\xc3\xa9");
    expect_encode_invalid(&h, "sender with a non-ASCII byte");
    memset(h.sender, 'n', sizeof h.sender); /* not terminated */
    expect_encode_invalid(&h, "unterminated sender");
    tensor_header(&h);
    memset(h.text, 'x', sizeof h.text); /* not terminated */
    expect_encode_invalid(&h, "unterminated text");
}

Test(msg, encode_into_too_small_buffer_fails_without_overrun)
{
    gdml_msg_header h;
    full_header(&h, 1000);
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_OK);
    for (size_t cap = 0; cap < len; cap++) {
        uint8_t small[GDML_MSG_HEADER_MAX];
        memset(small, 0xee, sizeof small);
        size_t out = 12345;
        cr_assert_eq(gdml_msg_encode(&h, small, cap, &out), GDML_ERR_NOMEM, "cap %zu", cap);
        cr_assert_eq(out, 12345, "len written on failure");
        for (size_t i = cap; i < sizeof small; i++)
            cr_assert_eq(small[i], 0xee, "byte %zu written with cap %zu", i, cap);
    }
    size_t exact = 0;
    cr_assert_eq(gdml_msg_encode(&h, buf, len, &exact), GDML_OK);
    cr_assert_eq(exact, len);
}

/* ---- frames ---- */

static void fill_payload(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 31 + 7);
}

Test(msg, frame_seal_puts_the_header_right_before_the_payload)
{
    const size_t plen = 5000; /* a frame longer than the header maximum */
    gdml_blob *frame = NULL;
    cr_assert_eq(gdml_frame_new(plen, &frame), GDML_OK);
    cr_assert_eq(gdml_blob_size(frame), GDML_MSG_HEADER_MAX + plen);
    uint8_t *payload = gdml_frame_payload(frame);
    cr_assert_eq(payload, (uint8_t *)gdml_blob_data(frame) + GDML_MSG_HEADER_MAX);
    fill_payload(payload, plen);

    gdml_msg_header h, out;
    full_header(&h, 0);
    h.plen = 0; /* seal sets it */
    cr_assert_eq(gdml_frame_seal(frame, &h, plen), GDML_OK);
    cr_assert_eq(h.plen, plen, "seal does not record the payload length in h");

    size_t vlen = 0;
    const uint8_t *view = gdml_blob_view(frame, &vlen);
    cr_assert_gt(vlen, plen);
    size_t hlen = vlen - plen;
    cr_assert_leq(hlen, GDML_MSG_HEADER_MAX);
    cr_assert_eq(view + hlen, payload, "the view is not header + payload");

    uint8_t alone[GDML_MSG_HEADER_MAX];
    size_t alone_len = 0;
    cr_assert_eq(gdml_msg_encode(&h, alone, sizeof alone, &alone_len), GDML_OK);
    cr_assert_eq(alone_len, hlen);
    cr_assert(memcmp(view, alone, hlen) == 0, "the frame's header differs from encode's");

    const uint8_t *got = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_msg_decode(view, vlen, &out, &got, NULL, &e), GDML_OK, "%s", e.text);
    assert_headers_equal(&h, &out);
    cr_assert_eq(got, payload);
    uint8_t want[5000];
    fill_payload(want, plen);
    cr_assert(memcmp(got, want, plen) == 0, "payload bytes changed");
    gdml_blob_unref(&frame);
    cr_assert_null(frame);
}

Test(msg, frame_payload_cap_is_enforced)
{
    gdml_blob *frame = NULL;
    cr_assert_eq(gdml_frame_new(GDML_MSG_PAYLOAD_MAX + 1, &frame), GDML_ERR_INVALID);
    cr_assert_null(frame, "out written on failure");

    cr_assert_eq(gdml_frame_new(100, &frame), GDML_OK);
    gdml_msg_header h;
    tensor_header(&h);
    h.plen = 0;
    cr_assert_eq(gdml_frame_seal(frame, &h, 101), GDML_ERR_INVALID);
    cr_assert_eq(h.plen, 0, "h changed by a refused seal");
    cr_assert_eq(gdml_frame_seal(frame, &h, 100), GDML_OK);
    size_t vlen = 0;
    const uint8_t *view = gdml_blob_view(frame, &vlen);
    gdml_msg_header out;
    cr_assert_eq(gdml_msg_decode(view, vlen, &out, NULL, NULL, NULL), GDML_OK);
    cr_assert_eq(out.plen, 100);
    gdml_blob_unref(&frame);
}

Test(msg, frame_of_the_largest_payload_fits_the_frame_maximum)
{
    gdml_blob *frame = NULL;
    cr_assert_eq(gdml_frame_new(GDML_MSG_PAYLOAD_MAX, &frame), GDML_OK);
    memset(gdml_frame_payload(frame), 0x42, GDML_MSG_PAYLOAD_MAX);
    gdml_msg_header h;
    full_header(&h, 0);
    cr_assert_eq(gdml_frame_seal(frame, &h, GDML_MSG_PAYLOAD_MAX), GDML_OK);
    size_t vlen = 0;
    const uint8_t *view = gdml_blob_view(frame, &vlen);
    cr_assert_leq(vlen, GDML_FRAME_MAX);
    gdml_msg_header out;
    const uint8_t *got = NULL;
    cr_assert_eq(gdml_msg_decode(view, vlen, &out, &got, NULL, NULL), GDML_OK);
    cr_assert_eq(out.plen, GDML_MSG_PAYLOAD_MAX);
    cr_assert_eq(got, gdml_frame_payload(frame));
    gdml_blob_unref(&frame);
}

Test(msg, frame_seal_refuses_inconsistent_headers)
{
    gdml_blob *frame = NULL;
    cr_assert_eq(gdml_frame_new(64, &frame), GDML_OK);
    gdml_msg_header h;
    tensor_header(&h);
    h.seq = GDML_MSG_MAX_U48 + 1;
    cr_assert_eq(gdml_frame_seal(frame, &h, 64), GDML_ERR_INVALID);
    tensor_header(&h);
    h.encoding = GDML_ENC_NONE; /* a payload without an encoding */
    h.total = h.offset = h.chunks = 0;
    cr_assert_eq(gdml_frame_seal(frame, &h, 64), GDML_ERR_INVALID);
    /* No payload, but a tensor named: refused, not silently dropped. */
    tensor_header(&h);
    cr_assert_eq(gdml_frame_seal(frame, &h, 0), GDML_ERR_INVALID);
    gdml_blob_unref(&frame);
}

Test(msg, frame_seal_without_payload_clears_the_encoding)
{
    gdml_blob *frame = NULL;
    cr_assert_eq(gdml_frame_new(64, &frame), GDML_OK);
    gdml_msg_header h, out;
    gdml_msg_header_init(&h, GDML_MSG_PULL, "us-east/w1");
    h.seq = 2;
    h.encoding = GDML_ENC_CODEC;
    cr_assert_eq(gdml_frame_seal(frame, &h, 0), GDML_OK);
    cr_assert_eq(h.encoding, GDML_ENC_NONE);
    size_t vlen = 0;
    const uint8_t *view = gdml_blob_view(frame, &vlen);
    cr_assert_eq(view + vlen, gdml_frame_payload(frame), "the view does not end at the header");
    cr_assert_eq(gdml_msg_decode(view, vlen, &out, NULL, NULL, NULL), GDML_OK);
    cr_assert_eq(out.encoding, GDML_ENC_NONE);
    cr_assert_eq(out.plen, 0);
    gdml_blob_unref(&frame);
}

Test(msg, header_only_frame)
{
    gdml_msg_header h, out;
    gdml_msg_header_init(&h, GDML_MSG_STOP, "coordinator");
    h.seq = 99;
    strcpy(h.text, "training is over");
    gdml_blob *frame = NULL;
    cr_assert_eq(gdml_frame_header_only(&h, &frame), GDML_OK);
    cr_assert_not_null(frame);
    size_t vlen = 0;
    const uint8_t *view = gdml_blob_view(frame, &vlen);
    cr_assert_eq(view + vlen, (const uint8_t *)gdml_blob_data(frame) + gdml_blob_size(frame),
                 "a header-only frame's view does not end where the blob does");
    const uint8_t *payload = NULL;
    cr_assert_eq(gdml_msg_decode(view, vlen, &out, &payload, NULL, NULL), GDML_OK);
    assert_headers_equal(&h, &out);
    cr_assert_eq(out.plen, 0);
    cr_assert_eq(payload, view + vlen);
    gdml_blob_unref(&frame);

    gdml_msg_header_init(&h, (gdml_msg_type)0, "coordinator");
    cr_assert_eq(gdml_frame_header_only(&h, &frame), GDML_ERR_INVALID);
    cr_assert_null(frame, "out written on failure");
}

/* ---- decoding: the frame as a whole ---- */

Test(msg, decode_accepts_a_hand_written_tensor_chunk)
{
    w o;
    w_tensor(&o, 3 * CHUNK + 1, 3 * CHUNK, 4, 9, 0);
    w_pad(&o, 9);
    gdml_msg_header h;
    decode_ok(&o, &h);
    cr_assert_eq(h.proto, GDML_PROTO_VERSION);
    cr_assert_eq(h.type, GDML_MSG_PUSH);
    cr_assert_eq(h.seq, 7);
    cr_assert_eq(h.encoding, GDML_ENC_CODEC);
    cr_assert_eq(h.total, 3 * CHUNK + 1);
    cr_assert_eq(h.offset, 3 * CHUNK);
    cr_assert_eq(h.chunks, 4);
    cr_assert_eq(h.plen, 9);
    cr_assert(isnan(h.metric));
}

Test(msg, decode_accepts_compact_encodings)
{
    /* As msgpack-c or any other writer would pack it: fixmap, fixstr, fixint,
     * float32 metric, uint8/uint16 values. */
    static const uint8_t frame[] = {0x86, 0xa5, 'p', 'r',  'o',  't',  'o',  0x02, 0xa4, 't',
                                    'y',  'p',  'e', 0x09, 0xa3, 's',  'e',  'q',  0xcc, 200,
                                    0xa3, 'v',  'e', 'r',  0xcd, 0x01, 0x00, 0xa6, 'm',  'e',
                                    't',  'r',  'i', 'c',  0xca, 0x3f, 0xc0, 0x00, 0x00, 0xa4,
                                    'f',  'r',  'o', 'm',  0xa2, 'e',  'u'};
    gdml_msg_header h;
    cr_assert_eq(gdml_msg_decode(frame, sizeof frame, &h, NULL, NULL, NULL), GDML_OK);
    cr_assert_eq(h.type, GDML_MSG_HEARTBEAT);
    cr_assert_eq(h.seq, 200);
    cr_assert_eq(h.version, 256);
    cr_assert_eq(h.metric, 1.5);
    cr_assert_str_eq(h.sender, "eu");
}

Test(msg, decode_refuses_empty_garbage_and_non_maps)
{
    uint8_t one = 0x80;
    expect_fail(&one, 0, GDML_ERR_PROTO, "empty");
    static const uint8_t reserved[] = {0xc1};
    expect_fail(reserved, sizeof reserved, GDML_ERR_PROTO, "truncated or garbage");
    static const uint8_t text[] = "GET / HTTP/1.1\r\n\r\n";
    expect_fail(text, sizeof text - 1, GDML_ERR_PROTO, "not a map"); /* 'G' is a fixint */
    static const uint8_t array[] = {0x91, 0x01};
    expect_fail(array, sizeof array, GDML_ERR_PROTO, "not a map");
    static const uint8_t number[] = {0x07};
    expect_fail(number, sizeof number, GDML_ERR_PROTO, "not a map");
    w o;
    w_required(&o, 1);
    w_uint(&o, 5); /* a key that is not a string */
    w_uint(&o, 5);
    expect_fail_w(&o, GDML_ERR_PROTO, "not a string");
}

Test(msg, decode_refuses_every_truncation)
{
    gdml_msg_header h;
    full_header(&h, 300);
    uint8_t buf[GDML_MSG_HEADER_MAX + 300];
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode(&h, buf, GDML_MSG_HEADER_MAX, &len), GDML_OK);
    fill_payload(buf + len, 300);
    size_t whole = len + 300;
    for (size_t cut = 0; cut < whole; cut++) {
        /* A copy of exactly `cut` bytes, so that a read past the end is a
         * real overrun under a memory checker. */
        uint8_t *copy = malloc(cut ? cut : 1);
        cr_assert_not_null(copy);
        memcpy(copy, buf, cut);
        gdml_msg_header out;
        gdml_errmsg e = {{0}};
        gdml_err err = gdml_msg_decode(copy, cut, &out, NULL, NULL, &e);
        free(copy);
        cr_assert_eq(err, GDML_ERR_PROTO, "cut at %zu of %zu: %s", cut, whole, gdml_strerror(err));
        cr_assert_neq(e.text[0], '\0');
    }
}

Test(msg, decode_refuses_a_truncated_map)
{
    /* Three pairs announced, two written. */
    static const uint8_t frame[] = {0x83, 0xa5, 'p', 'r', 'o', 't', 'o',
                                    0x02, 0xa4, 't', 'y', 'p', 'e', 0x01};
    expect_fail(frame, sizeof frame, GDML_ERR_PROTO, "truncated or garbage");
    /* A string announcing more bytes than the frame has. */
    static const uint8_t str[] = {0x81, 0xa5, 'p', 'r', 'o', 't', 'o', 0xd9, 0x40, 'a'};
    expect_fail(str, sizeof str, GDML_ERR_PROTO, "truncated or garbage");
}

Test(msg, decode_refuses_huge_container_counts_without_allocating)
{
    /* 5 bytes announcing a map of 2^32 - 1 entries: the pre-scan refuses it
     * (its message, not msgpack-c's out-of-memory one). */
    static const uint8_t map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    expect_fail(map32, sizeof map32, GDML_ERR_PROTO, "truncated or garbage");
    /* The same inside a valid header, as an unknown key's value. */
    static const uint8_t arr32[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t inner_map32[] = {0xdf, 0x80, 0x00, 0x00, 0x00};
    static const uint8_t str32[] = {0xdb, 0xff, 0xff, 0xff, 0xf0, 'a'};
    static const uint8_t bin32[] = {0xc6, 0x7f, 0xff, 0xff, 0xff, 'a'};
    wval hostile[] = {RAW(arr32), RAW(inner_map32), RAW(str32), RAW(bin32)};
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        w o;
        w_with(&o, "future", hostile[i]);
        expect_fail_w(&o, GDML_ERR_PROTO, "truncated or garbage");
    }
}

Test(msg, decode_refuses_a_header_longer_than_the_maximum)
{
    char big[GDML_MSG_HEADER_MAX];
    memset(big, 'z', sizeof big);
    w o;
    w_required(&o, 1);
    w_str(&o, "future");
    w_strn(&o, big, sizeof big);
    cr_assert_gt(o.n, GDML_MSG_HEADER_MAX);
    expect_fail_w(&o, GDML_ERR_PROTO, "at most 1024 bytes");
}

Test(msg, decode_refuses_deep_nesting)
{
    w o;
    w_required(&o, 1);
    w_str(&o, "future");
    for (int i = 0; i < 500; i++)
        w_byte(&o, 0x91); /* [[[[...]]]] */
    w_byte(&o, 0x01);
    cr_assert_leq(o.n, GDML_MSG_HEADER_MAX);
    expect_fail_w(&o, GDML_ERR_PROTO, "header");
}

Test(msg, decode_skips_unknown_keys)
{
    static const uint8_t nested[] = {0x82, 0xa1, 'a', 0x93, 0x01, 0x02,
                                     0x80, 0xa1, 'b', 0xc0}; /* {"a": [1, 2, {}], "b": nil} */
    static const uint8_t bin[] = {0xc4, 0x03, 0x00, 0xff, 0x00};
    static const uint8_t ext[] = {0xd4, 0x05, 0x01};
    w o;
    w_tensor(&o, 2 * CHUNK, CHUNK, 2, 4, 9);
    w_str(&o, "future");
    w_raw(&o, nested, sizeof nested);
    w_str(&o, "blob");
    w_raw(&o, bin, sizeof bin);
    w_str(&o, "x");
    w_raw(&o, ext, sizeof ext);
    w_str(&o, "Proto"); /* keys are case-sensitive */
    w_str(&o, "two");
    w_str(&o, "pro");
    w_uint(&o, 1);
    w_str(&o, "seqs");
    w_f64(&o, -1.0);
    w_str(&o, "");
    w_byte(&o, 0xff);    /* -1 */
    w_str(&o, "future"); /* unknown keys may repeat */
    w_uint(&o, 3);
    w_str(&o, "text");
    w_str(&o, "still read");
    w_pad(&o, 4);
    gdml_msg_header h;
    decode_ok(&o, &h);
    cr_assert_eq(h.seq, 7);
    cr_assert_eq(h.offset, CHUNK);
    cr_assert_eq(h.plen, 4);
    cr_assert_str_eq(h.text, "still read");
}

/* ---- decoding: the protocol version ---- */

Test(msg, decode_checks_proto_first)
{
    /* A protocol-1 PUSH header, proto last: everything else about it is
     * wrong for protocol 2 (enc 1, sizes), yet the answer is the version. */
    w o;
    o.n = 0;
    w_map(&o, 9);
    w_kv_uint(&o, "type", 3);
    w_str(&o, "from");
    w_str(&o, "us-east/w0");
    w_kv_uint(&o, "seq", 7);
    w_kv_uint(&o, "ver", 7);
    w_kv_uint(&o, "step", 7);
    w_kv_uint(&o, "count", 7);
    w_kv_uint(&o, "enc", 1);
    w_str(&o, "sizes");
    w_byte(&o, 0x91);
    w_uint(&o, 40);
    w_kv_uint(&o, "proto", 1);
    uint32_t other = 0;
    gdml_msg_header h;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_msg_decode(o.b, o.n, &h, NULL, &other, &e), GDML_ERR_VERSION, "%s", e.text);
    cr_assert_eq(other, 1);
    cr_assert(strstr(e.text, "protocol version 1, this build speaks 2"), "%s", e.text);
    expect_fail_w(&o, GDML_ERR_VERSION, "protocol version 1");

    /* A future version may change every other field: still a version error. */
    o.n = 0;
    w_map(&o, 3);
    w_str(&o, "type");
    w_str(&o, "a string now");
    w_str(&o, "type");
    w_byte(&o, 0xc0);
    w_kv_uint(&o, "proto", 7);
    cr_assert_eq(gdml_msg_decode(o.b, o.n, &h, NULL, &other, NULL), GDML_ERR_VERSION);
    cr_assert_eq(other, 7);
    /* Neither other_proto nor e is required. */
    cr_assert_eq(gdml_msg_decode(o.b, o.n, &h, NULL, NULL, NULL), GDML_ERR_VERSION);
}

Test(msg, decode_reports_odd_versions)
{
    w o;
    uint32_t other = 5;
    gdml_msg_header h;
    w_with(&o, "proto", U(0));
    cr_assert_eq(gdml_msg_decode(o.b, o.n, &h, NULL, &other, NULL), GDML_ERR_VERSION);
    cr_assert_eq(other, 0);
    w_with(&o, "proto", U((uint64_t)1 << 40));
    cr_assert_eq(gdml_msg_decode(o.b, o.n, &h, NULL, &other, NULL), GDML_ERR_VERSION);
    cr_assert_eq(other, UINT32_MAX, "a version above 2^32 is not clamped");
    w_with(&o, "proto", S("2"));
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'proto': expected an unsigned integer");
    w_with(&o, "proto", I(-2));
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'proto'");
}

/* ---- decoding: fields ---- */

Test(msg, decode_refuses_missing_required_fields)
{
    static const char *const req[] = {"proto", "type", "seq"};
    static const uint64_t val[] = {GDML_PROTO_VERSION, GDML_MSG_PUSH, 7};
    for (size_t skip = 0; skip < 3; skip++) {
        w o;
        o.n = 0;
        w_map(&o, 3); /* the missing one replaced by an optional field */
        for (size_t i = 0; i < 3; i++)
            if (i != skip)
                w_kv_uint(&o, req[i], val[i]);
        w_kv_uint(&o, "ver", 1);
        char want[64];
        snprintf(want, sizeof want, "header field '%s' is missing", req[skip]);
        expect_fail_w(&o, GDML_ERR_PROTO, want);
    }
}

Test(msg, decode_refuses_duplicate_keys)
{
    static const char *const keys[] = {"proto", "type", "seq", "ver", "text", "plen"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        w o;
        w_required(&o, 2);
        bool text = strcmp(keys[i], "text") == 0;
        for (int k = 0; k < 2; k++) {
            w_str(&o, keys[i]);
            if (text)
                w_str(&o, "t");
            else if (strcmp(keys[i], "proto") == 0)
                w_uint(&o, GDML_PROTO_VERSION);
            else
                w_uint(&o, strcmp(keys[i], "type") == 0 ? GDML_MSG_PUSH : 0);
        }
        char want[64];
        snprintf(want, sizeof want, "header field '%s' appears twice", keys[i]);
        expect_fail_w(&o, GDML_ERR_PROTO, want);
    }
}

Test(msg, decode_refuses_wrong_types)
{
    static const uint8_t nil[] = {0xc0}, yes[] = {0xc3}, arr[] = {0x90}, map[] = {0x80};
    static const uint8_t bin[] = {0xc4, 0x01, 0x07};
    const struct {
        const char *key;
        wval v;
        const char *want;
    } cases[] = {
        {"type", S("PUSH"), "header field 'type': expected an unsigned integer, got a string"},
        {"seq", I(-1), "header field 'seq': expected an unsigned integer, got a negative integer"},
        {"seq", F(7.0), "header field 'seq': expected an unsigned integer, got a float"},
        {"ver", S("7"), "header field 'ver': expected an unsigned integer"},
        {"step", RAW(map), "header field 'step': expected an unsigned integer, got a map"},
        {"count", RAW(bin), "header field 'count': expected an unsigned integer, got binary data"},
        {"acked", RAW(nil), "header field 'acked': expected an unsigned integer, got nil"},
        {"drate", RAW(yes), "header field 'drate': expected an unsigned integer, got a boolean"},
        {"dcap", RAW(arr), "header field 'dcap': expected an unsigned integer, got an array"},
        {"code", S("stale"), "header field 'code': expected an unsigned integer"},
        {"enc", F(2.0), "header field 'enc': expected an unsigned integer"},
        {"off", S("0"), "header field 'off': expected an unsigned integer"},
        {"total", I(-5), "header field 'total': expected an unsigned integer"},
        {"chunks", RAW(nil), "header field 'chunks': expected an unsigned integer"},
        {"plen", S("4"), "header field 'plen': expected an unsigned integer"},
        {"from", U(3), "header field 'from': expected a string, got an unsigned integer"},
        {"text", U(1), "header field 'text': expected a string"},
        {"metric", S("0.5"), "header field 'metric': expected a number, got a string"},
        {"lrh", RAW(nil), "header field 'lrh': expected a number, got nil"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        w o;
        w_with(&o, cases[i].key, cases[i].v);
        expect_fail_w(&o, GDML_ERR_PROTO, cases[i].want);
    }
}

Test(msg, decode_refuses_out_of_range_scalars)
{
    const struct {
        const char *key;
        uint64_t v;
        const char *want;
    } cases[] = {
        {"type", 0, "header field 'type': 0 is not a message type (1..11)"},
        {"type", GDML_MSG_TYPE_MAX + 1, "header field 'type': 12 is not a message type"},
        {"type", 256, "header field 'type': 256 is above 255"},
        {"type", UINT64_MAX, "header field 'type': 18446744073709551615 is above 255"},
        {"enc", 1, "header field 'enc': 1 is not an encoding"},
        {"enc", 3, "header field 'enc': 3 is not an encoding"},
        {"code", GDML_REASON_COUNT, "header field 'code': 17 is not a reason"},
        {"plen", GDML_MSG_PAYLOAD_MAX + 1, "header field 'plen': 2097153 is above 2097152"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        w o;
        w_with(&o, cases[i].key, U(cases[i].v));
        expect_fail_w(&o, GDML_ERR_PROTO, cases[i].want);
    }
}

Test(msg, decode_refuses_fields_above_2_to_the_48)
{
    static const char *const keys[] = {"seq", "ver", "step", "count", "acked", "drate", "dcap"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        w o;
        gdml_msg_header h;
        w_with(&o, keys[i], U(GDML_MSG_MAX_U48));
        decode_ok(&o, &h);
        w_with(&o, keys[i], U(GDML_MSG_MAX_U48 + 1));
        char want[96];
        snprintf(want, sizeof want, "header field '%s': 281474976710657 is above 281474976710656",
                 keys[i]);
        expect_fail_w(&o, GDML_ERR_PROTO, want);
        w_with(&o, keys[i], U(UINT64_MAX));
        expect_fail_w(&o, GDML_ERR_PROTO, "is above");
    }
}

Test(msg, decode_checks_metric_and_lr_steps)
{
    w o;
    gdml_msg_header h;
    w_with(&o, "metric", F(INFINITY));
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'metric' is infinite");
    w_with(&o, "metric", F(-INFINITY));
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'metric' is infinite");
    w_with(&o, "metric", F(NAN));
    decode_ok(&o, &h);
    cr_assert(isnan(h.metric));
    w_with(&o, "metric", I(-2)); /* another writer's whole number */
    decode_ok(&o, &h);
    cr_assert_eq(h.metric, -2.0);
    w_with(&o, "metric", U(3));
    decode_ok(&o, &h);
    cr_assert_eq(h.metric, 3.0);

    w_with(&o, "lrh", F(-0.5));
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'lrh'");
    w_with(&o, "lrh", I(-1));
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'lrh'");
    w_with(&o, "lrh", F(NAN));
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'lrh'");
    w_with(&o, "lrh", F(INFINITY));
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'lrh'");
    w_with(&o, "lrh", F(2 * GDML_MSG_MAX_LR_STEPS));
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'lrh'");
    w_with(&o, "lrh", F(GDML_MSG_MAX_LR_STEPS));
    decode_ok(&o, &h);
    cr_assert_eq(h.lr_steps, GDML_MSG_MAX_LR_STEPS);
    w_with(&o, "lrh", U(5));
    decode_ok(&o, &h);
    cr_assert_eq(h.lr_steps, 5.0);
}

Test(msg, decode_checks_the_sender)
{
    w o;
    gdml_msg_header h;
    w_with(&o, "from", S("us\neast"));
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'from': byte 0x0a at 2 is not printable");
    w_with(&o, "from", S("\x1b[31mred"));
    expect_fail_w(&o, GDML_ERR_PROTO, "byte 0x1b at 0");
    w_with(&o, "from", S("us\x7f"));
    expect_fail_w(&o, GDML_ERR_PROTO, "byte 0x7f at 2");
    w_with(&o, "from", S("caf\xc3\xa9"));
    expect_fail_w(&o, GDML_ERR_PROTO, "byte 0xc3 at 3");
    w_with(&o, "from", S("us\0east"));
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'from' contains a NUL byte");

    char name[GDML_NAME_MAX];
    memset(name, 'n', sizeof name);
    wval v = {.kind = 's', .s = name, .n = GDML_NAME_MAX};
    w_with(&o, "from", v);
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'from': 64 bytes, at most 63 allowed");
    v.n = GDML_NAME_MAX - 1;
    w_with(&o, "from", v);
    decode_ok(&o, &h);
    cr_assert_eq(strlen(h.sender), GDML_NAME_MAX - 1);
    w_with(&o, "from", S(""));
    decode_ok(&o, &h);
    cr_assert_str_eq(h.sender, "");
}

Test(msg, decode_checks_the_text)
{
    w o;
    gdml_msg_header h;
    w_with(&o, "text", S("layout\0hidden"));
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'text' contains a NUL byte");
    char text[GDML_MSG_TEXT_MAX];
    memset(text, 't', sizeof text);
    wval v = {.kind = 's', .s = text, .n = GDML_MSG_TEXT_MAX};
    w_with(&o, "text", v);
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'text': 256 bytes, at most 255 allowed");
    v.n = GDML_MSG_TEXT_MAX - 1;
    w_with(&o, "text", v);
    decode_ok(&o, &h);
    cr_assert_eq(strlen(h.text), GDML_MSG_TEXT_MAX - 1);
}

Test(msg, decode_requires_exactly_plen_payload_bytes)
{
    w o;
    gdml_msg_header h;
    w_tensor(&o, 3 * CHUNK, 0, 3, 10, 0);
    size_t header = o.n;
    w_pad(&o, 10);
    decode_ok(&o, &h);
    o.n = header + 9;
    expect_fail_w(&o, GDML_ERR_PROTO, "PUSH header announces 10 payload bytes, the frame has 9");
    o.n = header;
    w_pad(&o, 11);
    expect_fail_w(&o, GDML_ERR_PROTO, "announces 10 payload bytes, the frame has 11");
    o.n = header;
    expect_fail_w(&o, GDML_ERR_PROTO, "announces 10 payload bytes, the frame has 0");

    /* No plen: no byte may follow, not even a second header. */
    w_required(&o, 0);
    header = o.n;
    w_byte(&o, 0x00);
    expect_fail_w(&o, GDML_ERR_PROTO, "announces 0 payload bytes, the frame has 1");
    o.n = header;
    w_raw(&o, o.b, header);
    expect_fail_w(&o, GDML_ERR_PROTO, "announces 0 payload bytes");
}

Test(msg, decode_refuses_payload_fields_that_contradict_the_encoding)
{
    w o;
    /* enc 0 with a payload. */
    w_required(&o, 1);
    w_kv_uint(&o, "plen", 4);
    w_pad(&o, 4);
    expect_fail_w(&o, GDML_ERR_PROTO, "without a tensor");
    /* enc 0 with a total. */
    w_required(&o, 1);
    w_kv_uint(&o, "total", 4);
    expect_fail_w(&o, GDML_ERR_PROTO, "without a tensor");
    /* enc CODEC without payload bytes. */
    w_tensor(&o, CHUNK, 0, 1, 0, 0);
    expect_fail_w(&o, GDML_ERR_PROTO, "without payload bytes");
    /* enc CODEC without a total (absent means 0). */
    w_required(&o, 3);
    w_kv_uint(&o, "enc", GDML_ENC_CODEC);
    w_kv_uint(&o, "chunks", 1);
    w_kv_uint(&o, "plen", 2);
    w_pad(&o, 2);
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'total': 0 elements");
}

/* A tensor chunk frame with 4 payload bytes. */
static void w_chunk(w *o, uint64_t total, uint64_t off, uint64_t chunks)
{
    w_tensor(o, total, off, chunks, 4, 0);
    w_pad(o, 4);
}

Test(msg, decode_refuses_offsets_off_the_chunk_grid)
{
    w o;
    gdml_msg_header h;
    w_chunk(&o, 3 * CHUNK, 1, 3);
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'off': 1 is not a chunk start");
    w_chunk(&o, 3 * CHUNK, CHUNK - 1, 3);
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'off'");
    w_chunk(&o, 3 * CHUNK, CHUNK + 1, 3);
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'off'");
    w_chunk(&o, 3 * CHUNK, 3 * CHUNK, 3); /* on the grid, but past the tensor */
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'off'");
    w_chunk(&o, 10, CHUNK, 1);
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'off'");
    w_chunk(&o, 3 * CHUNK, 2 * CHUNK, 3);
    decode_ok(&o, &h);
    cr_assert_eq(h.offset, 2 * CHUNK);
    w_chunk(&o, 3 * CHUNK + 1, 3 * CHUNK, 4); /* the one-element last chunk */
    decode_ok(&o, &h);
}

Test(msg, decode_refuses_chunk_counts_off_the_grid)
{
    w o;
    gdml_msg_header h;
    w_chunk(&o, 3 * CHUNK, 0, 0);
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'chunks': 0");
    w_chunk(&o, 3 * CHUNK, 0, 4);
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'chunks': 4, a 786432-element tensor has 1..3");
    w_chunk(&o, 1, 0, 2);
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'chunks': 2");
    w_chunk(&o, 3 * CHUNK + 1, 0, 4);
    decode_ok(&o, &h);
    cr_assert_eq(h.chunks, 4);
    w_chunk(&o, 3 * CHUNK, 0, 1);
    decode_ok(&o, &h);
}

Test(msg, decode_refuses_totals_out_of_bounds)
{
    w o;
    gdml_msg_header h;
    w_chunk(&o, 0, 0, 1);
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'total': 0 elements");
    w_chunk(&o, GDML_MSG_MAX_ELEMS + 1, 0, 1);
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'total': 4294967296 elements");
    w_chunk(&o, UINT64_MAX, 0, 1);
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'total'");
    uint64_t grid = (GDML_MSG_MAX_ELEMS + CHUNK - 1) / CHUNK;
    w_chunk(&o, GDML_MSG_MAX_ELEMS, (grid - 1) * CHUNK, grid);
    decode_ok(&o, &h);
    cr_assert_eq(h.total, GDML_MSG_MAX_ELEMS);
    cr_assert_eq(h.chunks, grid);
}

/* ---- decoding: random input ---- */

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Whatever decode accepts satisfies every bound of the header. */
static void assert_sane(const gdml_msg_header *h, const uint8_t *payload, const uint8_t *frame,
                        size_t len)
{
    cr_assert_eq(h->proto, GDML_PROTO_VERSION);
    cr_assert(h->type >= 1 && h->type <= GDML_MSG_TYPE_MAX);
    cr_assert(h->encoding == GDML_ENC_NONE || h->encoding == GDML_ENC_CODEC);
    cr_assert((int)h->code >= 0 && h->code < GDML_REASON_COUNT);
    cr_assert(h->seq <= GDML_MSG_MAX_U48 && h->version <= GDML_MSG_MAX_U48 &&
              h->step <= GDML_MSG_MAX_U48 && h->count <= GDML_MSG_MAX_U48 &&
              h->acked <= GDML_MSG_MAX_U48 && h->down_rate <= GDML_MSG_MAX_U48 &&
              h->down_cap <= GDML_MSG_MAX_U48);
    cr_assert(!isinf(h->metric));
    cr_assert(h->lr_steps >= 0 && h->lr_steps <= GDML_MSG_MAX_LR_STEPS);
    cr_assert_leq(h->plen, GDML_MSG_PAYLOAD_MAX);
    cr_assert_eq(payload + h->plen, frame + len);
    if (h->encoding == GDML_ENC_NONE) {
        cr_assert(h->plen == 0 && h->total == 0 && h->offset == 0 && h->chunks == 0);
    } else {
        cr_assert(h->plen > 0 && h->total >= 1 && h->total <= GDML_MSG_MAX_ELEMS);
        cr_assert(h->offset < h->total && h->offset % CHUNK == 0);
        cr_assert(h->chunks >= 1 && h->chunks <= (h->total + CHUNK - 1) / CHUNK);
    }
    size_t n = strnlen(h->sender, sizeof h->sender);
    cr_assert_lt(n, sizeof h->sender);
    for (size_t i = 0; i < n; i++)
        cr_assert(h->sender[i] >= 0x20 && h->sender[i] < 0x7f);
    cr_assert_lt(strnlen(h->text, sizeof h->text), sizeof h->text);
}

static void decode_any(const uint8_t *buf, size_t len, uint64_t seed)
{
    gdml_msg_header h;
    const uint8_t *payload = NULL;
    gdml_errmsg e = {{0}};
    gdml_err err = gdml_msg_decode(buf, len, &h, &payload, NULL, &e);
    if (err == GDML_OK)
        assert_sane(&h, payload, buf, len);
    else
        cr_assert(err == GDML_ERR_PROTO || err == GDML_ERR_VERSION, "seed %llu: %s",
                  (unsigned long long)seed, gdml_strerror(err));
}

Test(msg, decode_random_garbage_never_crashes)
{
    for (uint64_t seed = 1; seed <= 5000; seed++) {
        uint64_t s = seed * 0x9e3779b97f4a7c15ull;
        size_t len = (size_t)(xorshift(&s) % 300);
        uint8_t buf[300];
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)xorshift(&s);
        /* Half the seeds start with a map byte, to get past the first check. */
        if (len > 0 && seed % 2)
            buf[0] = (uint8_t)(0x80 | (buf[0] & 0x0f));
        decode_any(buf, len, seed);
    }
}

Test(msg, decode_mutated_valid_frames_never_crash)
{
    gdml_msg_header h;
    full_header(&h, 16);
    uint8_t good[GDML_MSG_HEADER_MAX + 16];
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode(&h, good, GDML_MSG_HEADER_MAX, &len), GDML_OK);
    fill_payload(good + len, 16);
    len += 16;
    for (uint64_t seed = 1; seed <= 5000; seed++) {
        uint64_t s = seed * 0xd1b54a32d192ed03ull;
        uint8_t buf[sizeof good];
        memcpy(buf, good, len);
        int flips = 1 + (int)(xorshift(&s) % 4);
        for (int i = 0; i < flips; i++)
            buf[xorshift(&s) % len] = (uint8_t)xorshift(&s);
        decode_any(buf, len, seed);
    }
}

/* ---- the refusal a protocol-1 peer reads ---- */

static bool printable(const rval *v)
{
    for (size_t i = 0; i < v->n; i++)
        if (v->s[i] < 0x20 || v->s[i] == 0x7f)
            return false;
    return true;
}

/* Checks buf[0..len) against what protocol 1's decoder required: one map
 * and nothing after it, at most 2048 bytes, string keys once each, proto 1,
 * type 1..8 (8 its ERROR), a non-empty printable 'from', unsigned seq, ver,
 * step, count, enc in 0..2, 'sizes' an array of at most 8 unsigned, an
 * optional float metric and an optional text of at most 255 bytes without NUL. */
static void assert_v1_decodable(const uint8_t *buf, size_t len, rmap *m)
{
    cr_assert_leq(len, 2048);
    cr_assert_eq(read_map(buf, len, m), len, "bytes after the map");
    static const char *const req[] = {"proto", "type",  "from", "seq",  "ver",
                                      "step",  "count", "enc",  "sizes"};
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++)
        cr_assert_not_null(rmap_get(m, req[i]), "v1 field '%s' missing", req[i]);
    const rval *v = rmap_get(m, "proto");
    cr_assert(v->kind == R_UINT && v->u == 1);
    v = rmap_get(m, "type");
    cr_assert(v->kind == R_UINT && v->u == 8, "not v1's ERROR");
    v = rmap_get(m, "from");
    cr_assert(v->kind == R_STR && v->n > 0 && v->n < 64 && printable(v));
    static const char *const nums[] = {"seq", "ver", "step", "count", "enc"};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
        cr_assert_eq(rmap_get(m, nums[i])->kind, R_UINT, "'%s' is not unsigned", nums[i]);
    cr_assert_leq(rmap_get(m, "enc")->u, 2);
    v = rmap_get(m, "sizes");
    cr_assert(v->kind == R_ARRAY && v->u == 0, "sizes is not an empty array");
    v = rmap_get(m, "metric");
    cr_assert(v && v->kind == R_FLOAT, "metric missing or not a float");
    v = rmap_get(m, "text");
    cr_assert(v && v->kind == R_STR && v->n < 256 && !memchr(v->s, 0, v->n),
              "text missing or not v1-valid");
}

Test(msg, v1_refusal_is_a_v1_error)
{
    const char *text = "this server speaks gdml protocol 2: upgrade the worker";
    uint8_t buf[512];
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode_v1_refusal(text, buf, sizeof buf, &len), GDML_OK);
    rmap m;
    assert_v1_decodable(buf, len, &m);
    const rval *t = rmap_get(&m, "text");
    cr_assert(t->n == strlen(text) && memcmp(t->s, text, t->n) == 0, "text changed");
    /* Our own decoder recognises it as protocol 1. */
    uint32_t other = 0;
    gdml_msg_header h;
    cr_assert_eq(gdml_msg_decode(buf, len, &h, NULL, &other, NULL), GDML_ERR_VERSION);
    cr_assert_eq(other, 1);
}

Test(msg, v1_refusal_truncates_long_text_and_keeps_empty_text)
{
    char text[400];
    memset(text, 'q', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    uint8_t buf[1024];
    size_t len = 0;
    rmap m;
    cr_assert_eq(gdml_msg_encode_v1_refusal(text, buf, sizeof buf, &len), GDML_OK);
    cr_assert_leq(len, 256 + GDML_MSG_TEXT_MAX, "longer than the documented cap");
    assert_v1_decodable(buf, len, &m);
    cr_assert_eq(rmap_get(&m, "text")->n, GDML_MSG_TEXT_MAX - 1);

    cr_assert_eq(gdml_msg_encode_v1_refusal("", buf, sizeof buf, &len), GDML_OK);
    assert_v1_decodable(buf, len, &m);
    cr_assert_eq(rmap_get(&m, "text")->n, 0);
}

Test(msg, v1_refusal_into_too_small_buffer_fails_without_overrun)
{
    uint8_t buf[512];
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode_v1_refusal("upgrade", buf, sizeof buf, &len), GDML_OK);
    for (size_t cap = 0; cap < len; cap++) {
        uint8_t small[512];
        memset(small, 0xee, sizeof small);
        size_t out = 777;
        cr_assert_eq(gdml_msg_encode_v1_refusal("upgrade", small, cap, &out), GDML_ERR_NOMEM,
                     "cap %zu", cap);
        cr_assert_eq(out, 777);
        for (size_t i = cap; i < sizeof small; i++)
            cr_assert_eq(small[i], 0xee, "byte %zu written with cap %zu", i, cap);
    }
}

/* ---- names ---- */

Test(msg, type_names_for_every_value)
{
    static const char *const names[] = {NULL,     "HELLO", "WELCOME", "PUSH",      "MODEL", "DELTA",
                                        "GLOBAL", "STOP",  "ERROR",   "HEARTBEAT", "LEAVE", "PULL"};
    cr_assert_eq(sizeof names / sizeof names[0], GDML_MSG_TYPE_MAX + 1);
    for (int t = 1; t <= GDML_MSG_TYPE_MAX; t++)
        cr_assert_str_eq(gdml_msg_type_name((gdml_msg_type)t), names[t]);
    const int out_of_range[] = {0, -1, GDML_MSG_TYPE_MAX + 1, 255, 1 << 30};
    for (size_t i = 0; i < sizeof out_of_range / sizeof out_of_range[0]; i++)
        cr_assert_str_eq(gdml_msg_type_name((gdml_msg_type)out_of_range[i]), "UNKNOWN");
}

Test(msg, reason_names_for_every_value)
{
    static const char *const names[] = {"none",
                                        "malformed",
                                        "protocol version",
                                        "multipart message",
                                        "identity",
                                        "not a member",
                                        "not allowed to join",
                                        "unexpected",
                                        "stale",
                                        "duplicate",
                                        "out of bounds",
                                        "not finite",
                                        "bad tensor chunk",
                                        "norm too large",
                                        "layout",
                                        "budget",
                                        "not reading"};
    cr_assert_eq(sizeof names / sizeof names[0], GDML_REASON_COUNT);
    for (int r = 0; r < GDML_REASON_COUNT; r++)
        cr_assert_str_eq(gdml_reason_name((gdml_reason)r), names[r], "reason %d", r);
    const int out_of_range[] = {-1, GDML_REASON_COUNT, 1000};
    for (size_t i = 0; i < sizeof out_of_range / sizeof out_of_range[0]; i++)
        cr_assert_str_eq(gdml_reason_name((gdml_reason)out_of_range[i]), "unknown");
}

Test(msg, only_chunked_types_carry_tensors)
{
    for (int t = 0; t <= GDML_MSG_TYPE_MAX + 1; t++) {
        bool want = t == GDML_MSG_WELCOME || t == GDML_MSG_PUSH || t == GDML_MSG_MODEL ||
                    t == GDML_MSG_DELTA || t == GDML_MSG_GLOBAL || t == GDML_MSG_PULL;
        cr_assert_eq(gdml_msg_type_has_tensor((gdml_msg_type)t), want, "type %d", t);
    }
}
