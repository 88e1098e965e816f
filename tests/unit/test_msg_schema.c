/*
 * test_msg_schema.c - no message type can carry training samples: a check
 * over the whole protocol, from the schema the decoder reads headers with
 * (msg.h).
 *
 * A Fashion-MNIST sample is 784 bytes of pixels (3,136 as float32) and a
 * label. The checks:
 *   - every header field is a scalar (an integer or a double: a label or a
 *     sample count travels as a number, never as an array) or a short
 *     string (a name, a layout, an error text), and all of them together
 *     hold fewer bytes than one sample;
 *   - the encoder writes exactly the schema's keys, each within its bound,
 *     and a key outside the schema, however large, never reaches a decoded
 *     header;
 *   - only the types that carry a model, a delta, a gradient or a batch's
 *     keys may have a payload, and a receiver takes a tensor only if its
 *     length is the model's parameter count: the model's layout sizes
 *     every payload, never the data set.
 * Adding a field that could carry rows (a long string, an array, binary
 * data) or a payload to another type makes one of these fail.
 */
#include "msg.h"
#include "wan.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SAMPLE_BYTES 784 /* one 28x28 image, a byte a pixel */

Test(msg_schema, every_field_is_a_scalar_or_a_short_string)
{
    size_t n;
    const gdml_msg_field *f = gdml_msg_schema(&n);
    cr_assert(n >= 20, "%zu fields", n);
    size_t most = 0, strings = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert_not_null(f[i].key, "field %zu has no key", i);
        switch (f[i].kind) {
        case GDML_FIELD_UINT:
            /* 64 bits, or proto's 32, or an enum of one wire byte */
            cr_assert(f[i].size == sizeof(uint64_t) ||
                          (f[i].size == sizeof(uint32_t) && f[i].max <= UINT32_MAX),
                      "'%s': %zu bytes", f[i].key, f[i].size);
            most += 9; /* msgpack's largest integer */
            break;
        case GDML_FIELD_FLOAT:
            cr_assert_eq(f[i].size, sizeof(double), "'%s'", f[i].key);
            most += 9;
            break;
        case GDML_FIELD_STRING:
            /* Room for the longest string and its NUL, and no more. */
            cr_assert_eq(f[i].size, f[i].max + 1, "'%s'", f[i].key);
            cr_assert(f[i].max < 256, "'%s' holds %llu bytes", f[i].key,
                      (unsigned long long)f[i].max);
            most += f[i].max + 3;
            strings++;
            break;
        default:
            cr_assert_fail("'%s' is of kind %d, neither scalar nor string", f[i].key, f[i].kind);
        }
        for (size_t j = 0; j < i; j++)
            cr_assert(strcmp(f[i].key, f[j].key) != 0, "'%s' twice", f[i].key);
    }
    cr_assert_eq(strings, 2, "strings: 'from' and 'text' only");
    cr_assert(most < SAMPLE_BYTES,
              "a header can hold %zu bytes besides its payload: a sample's "
              "%d would fit",
              most, SAMPLE_BYTES);
}

/* The keys gdml_msg_each_key reports, checked against the schema. */
typedef struct seen {
    size_t count, unknown;
    uint64_t bytes;
    char bad[128];
} seen;

static void check_key(const char *key, size_t len, size_t value_bytes, void *user)
{
    seen *s = user;
    size_t n;
    const gdml_msg_field *f = gdml_msg_schema(&n);
    s->count++;
    s->bytes += value_bytes;
    for (size_t i = 0; i < n; i++)
        if (strlen(f[i].key) == len && memcmp(f[i].key, key, len) == 0) {
            size_t bound = f[i].kind == GDML_FIELD_STRING ? f[i].max + 3 : 9;
            if (value_bytes > bound)
                snprintf(s->bad, sizeof s->bad, "'%s' takes %zu bytes", f[i].key, value_bytes);
            return;
        }
    s->unknown++;
    snprintf(s->bad, sizeof s->bad, "'%.*s' is not in the schema", (int)len, key);
}

/* A header with every field set, at its largest. */
static void full_header(gdml_msg_header *h)
{
    gdml_msg_header_init(h, GDML_MSG_DELTA, NULL);
    memset(h->sender, 'r', sizeof h->sender - 1);
    memset(h->text, 't', sizeof h->text - 1);
    h->seq = h->version = h->step = h->count = h->acked = GDML_MSG_MAX_U48;
    h->down_rate = h->down_cap = GDML_MSG_MAX_U48;
    h->metric = 1.5;
    h->code = GDML_REASON_SLOW;
    h->encoding = GDML_ENC_CODEC;
    h->total = GDML_MSG_MAX_ELEMS;
    h->offset = GDML_CHUNK_ELEMS;
    h->chunks = 2;
    h->plen = GDML_MSG_PAYLOAD_MAX;
    h->lr_steps = GDML_MSG_MAX_LR_STEPS;
    h->val = (gdml_score){.rows = GDML_MSG_MAX_U48, .correct = 5, .loss = 0.5};
    h->val_version = 7;
}

Test(msg_schema, the_encoder_writes_exactly_the_schemas_keys)
{
    gdml_msg_header h;
    full_header(&h);
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_OK);
    seen s = {0};
    gdml_errmsg e;
    cr_assert_eq(gdml_msg_each_key(buf, len, check_key, &s, &e), GDML_OK, "%s", e.text);
    size_t n;
    gdml_msg_schema(&n);
    cr_assert_eq(s.unknown, 0, "%s", s.bad);
    cr_assert_eq(s.bad[0], '\0', "%s", s.bad);
    cr_assert_eq(s.count, n, "the encoder wrote %zu keys, the schema has %zu", s.count, n);
    cr_assert(len < SAMPLE_BYTES, "the fullest header is %zu bytes", len);
}

Test(msg_schema, a_key_outside_the_schema_never_reaches_a_header)
{
    gdml_msg_header h, plain, with;
    gdml_msg_header_init(&h, GDML_MSG_HEARTBEAT, "us-east");
    h.seq = 3;
    h.version = 2;
    uint8_t frame[GDML_MSG_HEADER_MAX];
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode(&h, frame, sizeof frame, &len), GDML_OK);
    cr_assert(frame[0] >= 0x80 && frame[0] < 0x8f, "a small header is a fixmap");
    const uint8_t *payload;
    cr_assert_eq(gdml_msg_decode(frame, len, &plain, &payload, NULL, NULL), GDML_OK);
    /* Splice in a key "rows" holding a whole sample, as a string. */
    uint8_t big[GDML_MSG_HEADER_MAX];
    size_t m = 0;
    big[m++] = frame[0] + 1;
    memcpy(big + m, frame + 1, len - 1);
    m += len - 1;
    big[m++] = 0xa4;
    memcpy(big + m, "rows", 4);
    m += 4;
    big[m++] = 0xda;
    big[m++] = SAMPLE_BYTES >> 8;
    big[m++] = SAMPLE_BYTES & 0xff;
    for (int i = 0; i < SAMPLE_BYTES; i++)
        big[m++] = (uint8_t)('a' + i % 26);
    cr_assert(m <= sizeof big);
    seen s = {0};
    cr_assert_eq(gdml_msg_each_key(big, m, check_key, &s, NULL), GDML_OK);
    cr_assert_eq(s.unknown, 1, "the audit does not see the spliced key");
    cr_assert_eq(gdml_msg_decode(big, m, &with, &payload, NULL, NULL), GDML_OK);
    cr_assert(memcmp(&plain, &with, sizeof plain) == 0,
              "an unknown key changed the decoded header");
}

/* A header of type t for a 4-byte chunk of a 10-element tensor. */
static void chunk_header(gdml_msg_header *h, gdml_msg_type t)
{
    gdml_msg_header_init(h, t, "r");
    h->seq = 1;
    h->encoding = GDML_ENC_CODEC;
    h->total = 10;
    h->chunks = 1;
    h->plen = 4;
}

Test(msg_schema, only_tensor_types_carry_a_payload)
{
    for (int t = 1; t <= GDML_MSG_TYPE_MAX; t++) {
        gdml_msg_header h;
        chunk_header(&h, (gdml_msg_type)t);
        uint8_t buf[GDML_MSG_HEADER_MAX + 4];
        size_t len = 0;
        gdml_err err = gdml_msg_encode(&h, buf, GDML_MSG_HEADER_MAX, &len);
        if (gdml_msg_type_has_tensor((gdml_msg_type)t)) {
            cr_assert_eq(err, GDML_OK, "%s", gdml_msg_type_name((gdml_msg_type)t));
            continue;
        }
        cr_assert_eq(err, GDML_ERR_INVALID, "a %s with a payload was encoded",
                     gdml_msg_type_name((gdml_msg_type)t));
    }
    /* The decoder refuses one too (built by hand: the encoder will not). */
    gdml_msg_header h;
    chunk_header(&h, GDML_MSG_DELTA);
    uint8_t frame[GDML_MSG_HEADER_MAX + 4];
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode(&h, frame, GDML_MSG_HEADER_MAX, &len), GDML_OK);
    /* DELTA is 5, HELLO 1: the type's value is one byte after the key "type". */
    uint8_t *at = NULL;
    for (size_t i = 0; i + 6 <= len && !at; i++)
        if (memcmp(frame + i, "\xa4type", 5) == 0)
            at = frame + i;
    cr_assert_not_null(at);
    cr_assert_eq(at[5], GDML_MSG_DELTA);
    at[5] = GDML_MSG_HELLO;
    memset(frame + len, 0, 4);
    gdml_msg_header got;
    gdml_errmsg e;
    cr_assert_eq(gdml_msg_decode(frame, len + 4, &got, NULL, NULL, &e), GDML_ERR_PROTO);
    cr_assert(strstr(e.text, "a HELLO carries no tensor chunk"), "%s", e.text);
}

Test(msg_schema, a_tensor_is_taken_only_at_the_models_size)
{
    size_t n = 7850; /* softmax 784 -> 10 */
    gdml_wan_config wc = {.encoder = "dense", .peer = "coordinator", .direction = "up"};
    gdml_wan *w = NULL;
    gdml_errmsg e;
    cr_assert_eq(gdml_wan_new(&wc, &w, &e), GDML_OK);
    /* A sender whose tensor is one element longer than the model: a row's
     * worth of extra entries would have to travel this way. */
    cr_assert_eq(gdml_wan_start(w, n + SAMPLE_BYTES, 1, &e), GDML_OK);
    float *u = calloc(n + SAMPLE_BYTES, sizeof *u), *dst = calloc(n, sizeof *dst);
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_DELTA, "us-east");
    h.seq = 1;
    h.count = 100;
    gdml_wan_update up;
    cr_assert_eq(gdml_wan_encode_update(w, &h, u, NULL, NULL, 0, &up, &e), GDML_OK, "%s", e.text);
    gdml_transfer t;
    cr_assert_eq(gdml_transfer_init(&t, n), GDML_OK);
    for (size_t f = 0; f < up.n_frames; f++) {
        gdml_msg_header got;
        const uint8_t *payload;
        size_t len = 0;
        const uint8_t *frame = gdml_blob_view(up.frames[f], &len);
        cr_assert_eq(gdml_msg_decode(frame, len, &got, &payload, NULL, &e), GDML_OK, "%s", e.text);
        bool complete = false;
        cr_assert_eq(gdml_tensor_receive(&t, &got, payload, dst, n, true, "us-east", &complete, &e),
                     GDML_REASON_TENSOR,
                     "a %llu-element tensor was taken for a %zu-parameter "
                     "model",
                     (unsigned long long)got.total, n);
    }
    gdml_wan_update_fini(&up);
    gdml_transfer_fini(&t);
    gdml_wan_destroy(&w);
    free(u);
    free(dst);
}
