/*
 * test_msg.c - the wire header: round trips of every field, encoding into
 * small buffers, and decoding of everything a hostile or broken peer could
 * send. Hostile headers are written with a tiny msgpack writer of the test's
 * own, so the tests check the wire format in docs/protocol.md rather than
 * msgpack-c agreeing with itself.
 */
#define _GNU_SOURCE /* memmem */
#include "msg.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- a minimal msgpack writer ---- */

typedef struct w {
    uint8_t b[8192];
    size_t n;
} w;

static void w_byte(w *o, uint8_t v)
{
    cr_assert_lt(o->n, sizeof o->b);
    o->b[o->n++] = v;
}

static void w_be(w *o, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--)
        w_byte(o, (uint8_t)(v >> (8 * i)));
}

static void w_map(w *o, size_t n)
{
    w_byte(o, 0xde);
    w_be(o, n, 2);
}

static void w_array(w *o, size_t n)
{
    w_byte(o, 0xdc);
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
    for (size_t i = 0; i < len; i++)
        w_byte(o, (uint8_t)s[i]);
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

static const char *const std_keys[] = {"proto", "type",  "from", "seq",  "ver",
                                       "step",  "count", "enc",  "sizes"};
#define N_STD (sizeof std_keys / sizeof std_keys[0])

/* Writes key and a valid value for it. */
static void w_std_field(w *o, const char *key)
{
    w_str(o, key);
    if (strcmp(key, "proto") == 0)
        w_uint(o, GDML_PROTO_VERSION);
    else if (strcmp(key, "type") == 0)
        w_uint(o, GDML_MSG_PUSH);
    else if (strcmp(key, "from") == 0)
        w_str(o, "us-east/w0");
    else if (strcmp(key, "enc") == 0)
        w_uint(o, GDML_ENC_DENSE_F32);
    else if (strcmp(key, "sizes") == 0) {
        w_array(o, 1);
        w_uint(o, 40);
    } else
        w_uint(o, 7);
}

/* Starts a map holding every required field except skip (may be NULL) and
 * room for n_extra more pairs, which the caller writes next. */
static void w_header(w *o, const char *skip, size_t n_extra)
{
    o->n = 0;
    w_map(o, N_STD - (skip ? 1 : 0) + n_extra);
    for (size_t i = 0; i < N_STD; i++)
        if (!skip || strcmp(skip, std_keys[i]) != 0)
            w_std_field(o, std_keys[i]);
}

static gdml_err decode(const w *o, gdml_msg_header *h, gdml_errmsg *e)
{
    return gdml_msg_decode(o->b, o->n, h, e);
}

/* Decodes and expects the error code with a text containing want. */
static void expect_fail(const uint8_t *buf, size_t len, gdml_err code, const char *want)
{
    gdml_msg_header h;
    memset(&h, 0x5a, sizeof h);
    gdml_msg_header before = h;
    gdml_errmsg e = {{0}};
    gdml_err err = gdml_msg_decode(buf, len, &h, &e);
    cr_assert_eq(err, code, "want %s, got %s (%s)", gdml_strerror(code), gdml_strerror(err),
                 e.text);
    cr_assert(strstr(e.text, want), "error text '%s' lacks '%s'", e.text, want);
    cr_assert(memcmp(&h, &before, sizeof h) == 0, "header written on failure");
}

static void expect_fail_w(const w *o, gdml_err code, const char *want)
{
    expect_fail(o->b, o->n, code, want);
}

/* A header with every field set and every bound reached. */
static void full_header(gdml_msg_header *h)
{
    char sender[GDML_NAME_MAX];
    memset(sender, 'r', sizeof sender - 1);
    sender[sizeof sender - 1] = '\0';
    gdml_msg_header_init(h, GDML_MSG_DELTA, sender);
    h->seq = UINT64_MAX;
    h->version = 123456789012345ull;
    h->step = 42;
    h->count = 60000;
    h->metric = 0.3125;
    h->encoding = GDML_ENC_DENSE_F32;
    h->n_payloads = GDML_MSG_MAX_PAYLOADS;
    for (int i = 0; i < GDML_MSG_MAX_PAYLOADS; i++)
        h->sizes[i] = (uint64_t)i * 1000003u;
    h->sizes[GDML_MSG_MAX_PAYLOADS - 1] = GDML_MSG_PAYLOAD_MAX;
    memset(h->text, 'L', GDML_MSG_TEXT_MAX - 1);
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
        cr_assert(isnan(b->metric));
    else
        cr_assert_eq(a->metric, b->metric);
    cr_assert_eq(a->encoding, b->encoding);
    cr_assert_eq(a->n_payloads, b->n_payloads);
    for (uint32_t i = 0; i < a->n_payloads; i++)
        cr_assert_eq(a->sizes[i], b->sizes[i], "sizes[%u]", i);
    cr_assert_str_eq(a->text, b->text);
}

/* ---- round trips ---- */

Test(msg, round_trip_every_field_at_its_bounds)
{
    gdml_msg_header h, out;
    full_header(&h);
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_OK);
    cr_assert_gt(len, 0);
    cr_assert_leq(len, GDML_MSG_HEADER_MAX);
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_msg_decode(buf, len, &out, &e), GDML_OK, "%s", e.text);
    assert_headers_equal(&h, &out);
}

Test(msg, round_trip_minimal_header_with_nan_metric)
{
    gdml_msg_header h, out;
    gdml_msg_header_init(&h, GDML_MSG_STOP, "coordinator");
    cr_assert(isnan(h.metric));
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_OK);
    /* An empty text is left out of the map. */
    for (size_t i = 0; i + 4 <= len; i++)
        cr_assert(memcmp(buf + i, "text", 4) != 0);
    cr_assert_eq(gdml_msg_decode(buf, len, &out, NULL), GDML_OK);
    assert_headers_equal(&h, &out);
    cr_assert_eq(out.n_payloads, 0);
    cr_assert_str_eq(out.text, "");
}

Test(msg, round_trip_each_type_and_special_metrics)
{
    const double metrics[] = {0.0, -0.0, -1.5, 1e300, INFINITY, -INFINITY, NAN};
    for (int t = 1; t <= GDML_MSG_TYPE_MAX; t++) {
        for (size_t m = 0; m < sizeof metrics / sizeof metrics[0]; m++) {
            gdml_msg_header h, out;
            gdml_msg_header_init(&h, (gdml_msg_type)t, "eu-west");
            h.metric = metrics[m];
            h.seq = (uint64_t)t * 3 + m;
            uint8_t buf[GDML_MSG_HEADER_MAX];
            size_t len = 0;
            cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_OK);
            cr_assert_eq(gdml_msg_decode(buf, len, &out, NULL), GDML_OK);
            assert_headers_equal(&h, &out);
        }
    }
}

Test(msg, header_init_truncates_long_sender)
{
    char longname[200];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_HELLO, longname);
    cr_assert_eq(strlen(h.sender), GDML_NAME_MAX - 1);
    cr_assert_eq(h.proto, GDML_PROTO_VERSION);
    cr_assert_eq(h.n_payloads, 0);
}

Test(msg, type_names)
{
    cr_assert_str_eq(gdml_msg_type_name(GDML_MSG_HELLO), "HELLO");
    cr_assert_str_eq(gdml_msg_type_name(GDML_MSG_GLOBAL), "GLOBAL");
    cr_assert_str_eq(gdml_msg_type_name(GDML_MSG_ERROR), "ERROR");
    cr_assert_str_eq(gdml_msg_type_name((gdml_msg_type)0), "UNKNOWN");
    cr_assert_str_eq(gdml_msg_type_name((gdml_msg_type)99), "UNKNOWN");
}

/* ---- encoding ---- */

Test(msg, encode_into_too_small_buffer_fails_without_overrun)
{
    gdml_msg_header h;
    full_header(&h);
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_OK);
    for (size_t cap = 0; cap < len; cap++) {
        uint8_t small[GDML_MSG_HEADER_MAX + 16];
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

Test(msg, encode_rejects_inconsistent_headers)
{
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = 0;
    gdml_msg_header h;

    gdml_msg_header_init(&h, (gdml_msg_type)0, "a");
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_ERR_INVALID);
    gdml_msg_header_init(&h, (gdml_msg_type)(GDML_MSG_TYPE_MAX + 1), "a");
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_ERR_INVALID);

    gdml_msg_header_init(&h, GDML_MSG_PUSH, "a");
    h.encoding = (gdml_encoding)(GDML_ENC_MAX + 1);
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_ERR_INVALID);

    gdml_msg_header_init(&h, GDML_MSG_PUSH, "a");
    h.n_payloads = GDML_MSG_MAX_PAYLOADS + 1;
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_ERR_INVALID);

    gdml_msg_header_init(&h, GDML_MSG_PUSH, "a");
    h.n_payloads = 1;
    h.sizes[0] = GDML_MSG_PAYLOAD_MAX + 1;
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_ERR_INVALID);

    gdml_msg_header_init(&h, GDML_MSG_PUSH, "");
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_ERR_INVALID);

    gdml_msg_header_init(&h, GDML_MSG_PUSH, "bad\nname");
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_ERR_INVALID);

    gdml_msg_header_init(&h, GDML_MSG_PUSH, "a");
    memset(h.text, 'x', sizeof h.text); /* not terminated */
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_ERR_INVALID);
    cr_assert_eq(len, 0);
}

/* ---- decoding: malformed input ---- */

Test(msg, decode_every_truncation_fails_cleanly)
{
    gdml_msg_header h;
    full_header(&h);
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_OK);
    for (size_t cut = 0; cut < len; cut++) {
        gdml_msg_header out;
        gdml_errmsg e = {{0}};
        /* A copy of exactly `cut` bytes, so that a read past the end is a
         * real overrun under a memory checker. */
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, buf, cut);
        gdml_err err = gdml_msg_decode(copy, cut, &out, &e);
        free(copy);
        cr_assert_eq(err, GDML_ERR_PROTO, "cut at %zu: %s", cut, gdml_strerror(err));
        cr_assert_neq(e.text[0], '\0');
    }
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Whatever decode accepts must satisfy the header's own bounds. */
static void assert_sane(const gdml_msg_header *h)
{
    cr_assert_eq(h->proto, GDML_PROTO_VERSION);
    cr_assert(h->type >= 1 && h->type <= GDML_MSG_TYPE_MAX);
    cr_assert((int)h->encoding >= 0 && h->encoding <= GDML_ENC_MAX);
    cr_assert_leq(h->n_payloads, GDML_MSG_MAX_PAYLOADS);
    for (uint32_t i = 0; i < h->n_payloads; i++)
        cr_assert_leq(h->sizes[i], GDML_MSG_PAYLOAD_MAX);
    size_t n = strnlen(h->sender, sizeof h->sender);
    cr_assert(n > 0 && n < sizeof h->sender);
    cr_assert_lt(strnlen(h->text, sizeof h->text), sizeof h->text);
}

Test(msg, decode_random_garbage_never_crashes)
{
    for (uint64_t seed = 1; seed <= 5000; seed++) {
        uint64_t s = seed * 0x9e3779b97f4a7c15ull;
        size_t len = xorshift(&s) % 300;
        uint8_t buf[300];
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)xorshift(&s);
        /* Half the seeds start with a map byte, to get past the first check. */
        if (len > 0 && seed % 2)
            buf[0] = (uint8_t)(0x80 | (buf[0] & 0x0f));
        gdml_msg_header h;
        gdml_errmsg e = {{0}};
        gdml_err err = gdml_msg_decode(buf, len, &h, &e);
        if (err == GDML_OK)
            assert_sane(&h);
        else
            cr_assert(err == GDML_ERR_PROTO || err == GDML_ERR_VERSION, "seed %llu: %s",
                      (unsigned long long)seed, gdml_strerror(err));
    }
}

Test(msg, decode_mutated_valid_headers_never_crash)
{
    gdml_msg_header h;
    full_header(&h);
    uint8_t good[GDML_MSG_HEADER_MAX];
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode(&h, good, sizeof good, &len), GDML_OK);
    for (uint64_t seed = 1; seed <= 5000; seed++) {
        uint64_t s = seed * 0xd1b54a32d192ed03ull;
        uint8_t buf[GDML_MSG_HEADER_MAX];
        memcpy(buf, good, len);
        int flips = 1 + (int)(xorshift(&s) % 4);
        for (int i = 0; i < flips; i++)
            buf[xorshift(&s) % len] = (uint8_t)xorshift(&s);
        gdml_msg_header out;
        gdml_err err = gdml_msg_decode(buf, len, &out, NULL);
        if (err == GDML_OK)
            assert_sane(&out);
    }
}

Test(msg, decode_rejects_empty_and_oversized_buffers)
{
    uint8_t one = 0x80;
    expect_fail(&one, 0, GDML_ERR_PROTO, "empty");
    /* A valid header padded by an unknown key to more than the maximum. */
    static w o;
    w_header(&o, NULL, 1);
    char big[GDML_MSG_HEADER_MAX];
    memset(big, 'z', sizeof big);
    w_str(&o, "future");
    w_strn(&o, big, sizeof big);
    cr_assert_gt(o.n, GDML_MSG_HEADER_MAX);
    expect_fail_w(&o, GDML_ERR_PROTO, "at most 2048");
}

Test(msg, decode_rejects_trailing_bytes)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_HELLO, "us-east");
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_OK);
    buf[len] = 0x00;
    expect_fail(buf, len + 1, GDML_ERR_PROTO, "1 trailing byte");
    /* Two whole maps back to back are trailing bytes too. */
    memcpy(buf + len, buf, len);
    expect_fail(buf, 2 * len, GDML_ERR_PROTO, "trailing");
}

Test(msg, decode_rejects_non_map_and_non_string_keys)
{
    w o = {.n = 0};
    w_array(&o, 1);
    w_uint(&o, 1);
    expect_fail_w(&o, GDML_ERR_PROTO, "not a map");

    w_header(&o, NULL, 1);
    w_uint(&o, 5); /* a key that is not a string */
    w_uint(&o, 5);
    expect_fail_w(&o, GDML_ERR_PROTO, "not a string");
}

Test(msg, decode_rejects_hostile_container_sizes)
{
    /* Maps and arrays announcing billions of entries in a few bytes. */
    const uint8_t map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    const uint8_t arr32[] = {0x81, 0xa1, 'x', 0xdd, 0x7f, 0xff, 0xff, 0xff};
    const uint8_t str32[] = {0x81, 0xa1, 'x', 0xdb, 0xff, 0xff, 0xff, 0xf0, 'a'};
    const uint8_t reserved[] = {0x81, 0xa1, 'x', 0xc1};
    expect_fail(map32, sizeof map32, GDML_ERR_PROTO, "not valid msgpack");
    expect_fail(arr32, sizeof arr32, GDML_ERR_PROTO, "not valid msgpack");
    expect_fail(str32, sizeof str32, GDML_ERR_PROTO, "not valid msgpack");
    expect_fail(reserved, sizeof reserved, GDML_ERR_PROTO, "not valid msgpack");
}

Test(msg, decode_rejects_deep_nesting)
{
    uint8_t buf[1000];
    size_t n = 0;
    buf[n++] = 0x81;
    buf[n++] = 0xa1;
    buf[n++] = 'x';
    while (n < sizeof buf - 1)
        buf[n++] = 0x91; /* [[[[...]]]] */
    buf[n++] = 0x01;
    expect_fail(buf, n, GDML_ERR_PROTO, "header");
}

/* ---- decoding: fields ---- */

Test(msg, decode_checks_version_first)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_HELLO, "us-east");
    h.proto = 2;
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_OK);
    expect_fail(buf, len, GDML_ERR_VERSION, "protocol version 2, this build speaks 1");

    /* A future version may change everything else: still a version error. */
    w o = {.n = 0};
    w_map(&o, 2);
    w_str(&o, "type");
    w_str(&o, "a string now");
    w_str(&o, "proto");
    w_uint(&o, 7);
    expect_fail_w(&o, GDML_ERR_VERSION, "protocol version 7");

    w_header(&o, "proto", 0);
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'proto' is missing");
    w_header(&o, "proto", 1);
    w_str(&o, "proto");
    w_str(&o, "1");
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'proto': expected an unsigned integer");
}

Test(msg, decode_accepts_hand_written_header_and_skips_unknown_keys)
{
    w o;
    w_header(&o, NULL, 3);
    w_str(&o, "future");
    w_array(&o, 2);
    w_map(&o, 0);
    w_f64(&o, 1.0);
    w_str(&o, "metric");
    w_f64(&o, 2.5);
    w_str(&o, "text");
    w_str(&o, "layout 784x10");
    gdml_msg_header h;
    gdml_errmsg e = {{0}};
    cr_assert_eq(decode(&o, &h, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(h.type, GDML_MSG_PUSH);
    cr_assert_str_eq(h.sender, "us-east/w0");
    cr_assert_eq(h.seq, 7);
    cr_assert_eq(h.version, 7);
    cr_assert_eq(h.n_payloads, 1);
    cr_assert_eq(h.sizes[0], 40);
    cr_assert_eq(h.metric, 2.5);
    cr_assert_str_eq(h.text, "layout 784x10");

    /* Without metric and text: NaN and empty. */
    w_header(&o, NULL, 0);
    cr_assert_eq(decode(&o, &h, &e), GDML_OK, "%s", e.text);
    cr_assert(isnan(h.metric));
    cr_assert_str_eq(h.text, "");
}

Test(msg, decode_rejects_each_missing_field)
{
    for (size_t i = 0; i < N_STD; i++) {
        if (strcmp(std_keys[i], "proto") == 0)
            continue; /* covered with the version checks */
        w o;
        w_header(&o, std_keys[i], 0);
        char want[64];
        snprintf(want, sizeof want, "header field '%s' is missing", std_keys[i]);
        expect_fail_w(&o, GDML_ERR_PROTO, want);
    }
}

Test(msg, decode_rejects_each_mistyped_field)
{
    for (size_t i = 0; i < N_STD; i++) {
        if (strcmp(std_keys[i], "proto") == 0)
            continue;
        w o;
        w_header(&o, std_keys[i], 1);
        w_str(&o, std_keys[i]);
        if (strcmp(std_keys[i], "from") == 0)
            w_uint(&o, 3);
        else
            w_str(&o, "3");
        char want[64];
        snprintf(want, sizeof want, "header field '%s': expected", std_keys[i]);
        expect_fail_w(&o, GDML_ERR_PROTO, want);
    }
    w o;
    w_header(&o, NULL, 1);
    w_str(&o, "metric");
    w_str(&o, "0.5");
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'metric': expected a float");
    w_header(&o, NULL, 1);
    w_str(&o, "text");
    w_uint(&o, 1);
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'text': expected a string");
    w_header(&o, "sizes", 1);
    w_str(&o, "sizes");
    w_array(&o, 2);
    w_uint(&o, 1);
    w_str(&o, "2");
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'sizes': entry 1 is a string");
    /* A negative number where an unsigned one belongs. */
    w_header(&o, "seq", 1);
    w_str(&o, "seq");
    w_byte(&o, 0xff); /* fixint -1 */
    expect_fail_w(&o, GDML_ERR_PROTO,
                  "header field 'seq': expected an unsigned integer, got a "
                  "negative integer");
}

Test(msg, decode_rejects_duplicate_fields)
{
    w o;
    w_header(&o, NULL, 1);
    w_str(&o, "seq");
    w_uint(&o, 8);
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'seq' appears twice");
}

static void expect_field_value(const char *key, uint64_t v, const char *want)
{
    w o;
    w_header(&o, key, 1);
    w_str(&o, key);
    w_uint(&o, v);
    expect_fail_w(&o, GDML_ERR_PROTO, want);
}

Test(msg, decode_rejects_out_of_range_type_and_encoding)
{
    expect_field_value("type", 0, "header field 'type': 0 is not a message type (1..8)");
    expect_field_value("type", GDML_MSG_TYPE_MAX + 1, "header field 'type': 9 is not");
    expect_field_value("type", (uint64_t)1 << 40, "header field 'type': 1099511627776 is not");
    expect_field_value("type", UINT64_MAX, "header field 'type': 18446744073709551615 is not");
    expect_field_value("enc", GDML_ENC_MAX + 1, "header field 'enc': 3 is not an encoding (0..2)");
    expect_field_value("enc", UINT64_MAX, "header field 'enc'");
}

Test(msg, decode_rejects_too_many_or_too_large_sizes)
{
    w o;
    w_header(&o, "sizes", 1);
    w_str(&o, "sizes");
    w_array(&o, GDML_MSG_MAX_PAYLOADS + 1);
    for (int i = 0; i <= GDML_MSG_MAX_PAYLOADS; i++)
        w_uint(&o, 4);
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'sizes': 9 entries, at most 8 allowed");

    w_header(&o, "sizes", 1);
    w_str(&o, "sizes");
    w_array(&o, 2);
    w_uint(&o, 4);
    w_uint(&o, GDML_MSG_PAYLOAD_MAX + 1);
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'sizes': entry 1 is 2147483649 bytes");
}

static void expect_sender(const char *s, size_t len, const char *want)
{
    w o;
    w_header(&o, "from", 1);
    w_str(&o, "from");
    w_strn(&o, s, len);
    expect_fail_w(&o, GDML_ERR_PROTO, want);
}

Test(msg, decode_rejects_bad_senders)
{
    char name[GDML_NAME_MAX + 1];
    memset(name, 'n', sizeof name);
    expect_sender("", 0, "header field 'from' is empty");
    expect_sender(name, GDML_NAME_MAX, "header field 'from': 64 bytes, at most 63 allowed");
    expect_sender("us\0east", 7, "header field 'from': control character 0x00");
    expect_sender("us\teast", 7, "control character 0x09");
    expect_sender("us\x7f", 3, "control character 0x7f");

    /* The longest allowed name is fine. */
    w o;
    w_header(&o, "from", 1);
    w_str(&o, "from");
    w_strn(&o, name, GDML_NAME_MAX - 1);
    gdml_msg_header h;
    cr_assert_eq(decode(&o, &h, NULL), GDML_OK);
    cr_assert_eq(strlen(h.sender), GDML_NAME_MAX - 1);
}

Test(msg, decode_rejects_bad_text)
{
    char text[GDML_MSG_TEXT_MAX];
    memset(text, 't', sizeof text);
    w o;
    w_header(&o, NULL, 1);
    w_str(&o, "text");
    w_strn(&o, text, GDML_MSG_TEXT_MAX);
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'text': 256 bytes, at most 255 allowed");
    w_header(&o, NULL, 1);
    w_str(&o, "text");
    w_strn(&o, "a\0b", 3);
    expect_fail_w(&o, GDML_ERR_PROTO, "header field 'text' contains a NUL byte");
}

Test(msg, decode_accepts_integer_metric)
{
    w o;
    w_header(&o, NULL, 1);
    w_str(&o, "metric");
    w_byte(&o, 0xfe); /* fixint -2 */
    gdml_msg_header h;
    cr_assert_eq(decode(&o, &h, NULL), GDML_OK);
    cr_assert_eq(h.metric, -2.0);
}

Test(msg, optional_downlink_budget_round_trips_and_is_omitted_when_zero)
{
    gdml_msg_header h, back;
    gdml_msg_header_init(&h, GDML_MSG_HELLO, "us-east");
    h.seq = 1;
    uint8_t buf[GDML_MSG_HEADER_MAX], without[GDML_MSG_HEADER_MAX];
    size_t len, len_without;
    cr_assert_eq(gdml_msg_encode(&h, without, sizeof without, &len_without), GDML_OK);
    cr_assert_null(memmem(without, len_without, "drate", 5), "drate is written when zero");
    h.down_rate = 25000;
    h.down_cap = (uint64_t)1 << 40;
    h.lr_steps = 12.5;
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_OK);
    cr_assert_eq(gdml_msg_decode(buf, len, &back, NULL), GDML_OK);
    cr_assert_eq(back.down_rate, 25000);
    cr_assert_eq(back.down_cap, (uint64_t)1 << 40);
    cr_assert_float_eq(back.lr_steps, 12.5, 1e-12);
    cr_assert_eq(gdml_msg_decode(without, len_without, &back, NULL), GDML_OK);
    cr_assert_eq(back.down_rate, 0);
    cr_assert_eq(back.down_cap, 0);
}
