/*
 * msg.c - the gdml wire message (msg.h): a msgpack header map and the
 * payload after it, in one frame. This is the only file that includes
 * msgpack.h.
 *
 * Encoding packs straight into the caller's buffer through a bounded write
 * callback, so it never allocates. Decoding trusts nothing: before msgpack-c
 * builds its object tree, a short pre-scan checks that the frame starts with
 * exactly one well-formed msgpack object and that no container claims more
 * entries than there are bytes left. Without it a 5-byte frame announcing a
 * map of 2^32 entries would make msgpack-c reserve hundreds of gigabytes.
 * docs/protocol.md describes the fields and their bounds.
 */
#include "msg.h"

#include <msgpack.h>

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* The header's fields, in the order they are encoded ("proto" first). */
enum field {
    F_PROTO,
    F_TYPE,
    F_FROM,
    F_SEQ,
    F_VER,
    F_STEP,
    F_COUNT,
    F_METRIC,
    F_CODE,
    F_ACKED,
    F_ENC,
    F_OFFSET,
    F_TOTAL,
    F_CHUNKS,
    F_PLEN,
    F_DRATE,
    F_DCAP,
    F_LRSTEPS,
    F_VROWS,
    F_VOK,
    F_VLOSS,
    F_VVER,
    F_TEXT,
    F_COUNT_OF_FIELDS,
};

/*
 * The schema: every field a header may carry, what it holds on the wire,
 * its bound and where it lands in gdml_msg_header. The decoder reads
 * fields through this table and nothing else (any other key is skipped
 * unread), and tests/unit/test_msg_schema.c checks from it that no field
 * can carry more than a few hundred bytes: only the payload of a tensor
 * chunk, whose size the model's layout sets, carries more.
 */
#define AT(m) offsetof(gdml_msg_header, m), sizeof(((gdml_msg_header *)0)->m)
static const gdml_msg_field schema[F_COUNT_OF_FIELDS] = {
    [F_PROTO] = {"proto", GDML_FIELD_UINT, UINT32_MAX, AT(proto)},
    [F_TYPE] = {"type", GDML_FIELD_UINT, 255, AT(type)},
    [F_FROM] = {"from", GDML_FIELD_STRING, GDML_NAME_MAX - 1, AT(sender)},
    [F_SEQ] = {"seq", GDML_FIELD_UINT, GDML_MSG_MAX_U48, AT(seq)},
    [F_VER] = {"ver", GDML_FIELD_UINT, GDML_MSG_MAX_U48, AT(version)},
    [F_STEP] = {"step", GDML_FIELD_UINT, GDML_MSG_MAX_U48, AT(step)},
    [F_COUNT] = {"count", GDML_FIELD_UINT, GDML_MSG_MAX_U48, AT(count)},
    [F_METRIC] = {"metric", GDML_FIELD_FLOAT, 8, AT(metric)},
    [F_CODE] = {"code", GDML_FIELD_UINT, 255, AT(code)},
    [F_ACKED] = {"acked", GDML_FIELD_UINT, GDML_MSG_MAX_U48, AT(acked)},
    [F_ENC] = {"enc", GDML_FIELD_UINT, 255, AT(encoding)},
    [F_OFFSET] = {"off", GDML_FIELD_UINT, GDML_MSG_MAX_ELEMS, AT(offset)},
    [F_TOTAL] = {"total", GDML_FIELD_UINT, GDML_MSG_MAX_ELEMS, AT(total)},
    [F_CHUNKS] = {"chunks", GDML_FIELD_UINT, GDML_MSG_MAX_ELEMS, AT(chunks)},
    [F_PLEN] = {"plen", GDML_FIELD_UINT, GDML_MSG_PAYLOAD_MAX, AT(plen)},
    [F_DRATE] = {"drate", GDML_FIELD_UINT, GDML_MSG_MAX_U48, AT(down_rate)},
    [F_DCAP] = {"dcap", GDML_FIELD_UINT, GDML_MSG_MAX_U48, AT(down_cap)},
    [F_LRSTEPS] = {"lrh", GDML_FIELD_FLOAT, 8, AT(lr_steps)},
    [F_VROWS] = {"vrows", GDML_FIELD_UINT, GDML_MSG_MAX_U48, AT(val.rows)},
    [F_VOK] = {"vok", GDML_FIELD_UINT, GDML_MSG_MAX_U48, AT(val.correct)},
    [F_VLOSS] = {"vloss", GDML_FIELD_FLOAT, 8, AT(val.loss)},
    [F_VVER] = {"vver", GDML_FIELD_UINT, GDML_MSG_MAX_U48, AT(val_version)},
    [F_TEXT] = {"text", GDML_FIELD_STRING, GDML_MSG_TEXT_MAX - 1, AT(text)},
};
#undef AT

const gdml_msg_field *gdml_msg_schema(size_t *n)
{
    *n = F_COUNT_OF_FIELDS;
    return schema;
}

/* A field's key, for messages. */
#define field_key(f) (schema[f].key)

/* Every other field is optional: absent means 0 (metric: NaN; text: empty). */
#define REQUIRED_FIELDS ((1u << F_PROTO) | (1u << F_TYPE) | (1u << F_SEQ))

static const char *const type_names[GDML_MSG_TYPE_MAX + 1] = {
    [GDML_MSG_HELLO] = "HELLO",         [GDML_MSG_WELCOME] = "WELCOME", [GDML_MSG_PUSH] = "PUSH",
    [GDML_MSG_MODEL] = "MODEL",         [GDML_MSG_DELTA] = "DELTA",     [GDML_MSG_GLOBAL] = "GLOBAL",
    [GDML_MSG_STOP] = "STOP",           [GDML_MSG_ERROR] = "ERROR",
    [GDML_MSG_HEARTBEAT] = "HEARTBEAT", [GDML_MSG_LEAVE] = "LEAVE",     [GDML_MSG_PULL] = "PULL",
};

static const char *const reason_names[GDML_REASON_COUNT] = {
    [GDML_REASON_NONE] = "none",
    [GDML_REASON_MALFORMED] = "malformed",
    [GDML_REASON_VERSION] = "protocol version",
    [GDML_REASON_MULTIPART] = "multipart message",
    [GDML_REASON_IDENTITY] = "identity",
    [GDML_REASON_NOT_MEMBER] = "not a member",
    [GDML_REASON_NOT_ALLOWED] = "not allowed to join",
    [GDML_REASON_UNEXPECTED] = "unexpected",
    [GDML_REASON_STALE] = "stale",
    [GDML_REASON_DUPLICATE] = "duplicate",
    [GDML_REASON_BOUNDS] = "out of bounds",
    [GDML_REASON_NONFINITE] = "not finite",
    [GDML_REASON_TENSOR] = "bad tensor chunk",
    [GDML_REASON_NORM] = "norm too large",
    [GDML_REASON_LAYOUT] = "layout",
    [GDML_REASON_BUDGET] = "budget",
    [GDML_REASON_SLOW] = "not reading",
};

void gdml_msg_header_init(gdml_msg_header *h, gdml_msg_type type, const char *sender)
{
    memset(h, 0, sizeof *h);
    h->proto = GDML_PROTO_VERSION;
    h->type = type;
    h->metric = NAN;
    if (sender) {
        size_t n = strnlen(sender, sizeof h->sender - 1);
        memcpy(h->sender, sender, n);
    }
}

const char *gdml_msg_type_name(gdml_msg_type type)
{
    if ((int)type < 1 || (int)type > GDML_MSG_TYPE_MAX)
        return "UNKNOWN";
    return type_names[type];
}

const char *gdml_reason_name(gdml_reason reason)
{
    if ((int)reason < 0 || (int)reason >= GDML_REASON_COUNT)
        return "unknown";
    return reason_names[reason];
}

void gdml_reason_counts(const uint64_t *counts, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int r = 0; r < GDML_REASON_COUNT && len < cap; r++)
        if (counts[r])
            len += (size_t)snprintf(buf + len, cap - len, "%s%s %llu", len ? ", " : "",
                                    reason_names[r], (unsigned long long)counts[r]);
    if (len == 0)
        snprintf(buf, cap, "none");
}

bool gdml_msg_type_has_tensor(gdml_msg_type type)
{
    switch (type) {
    case GDML_MSG_WELCOME:
    case GDML_MSG_PUSH:
    case GDML_MSG_MODEL:
    case GDML_MSG_DELTA:
    case GDML_MSG_GLOBAL:
    case GDML_MSG_PULL:
        return true;
    default:
        return false;
    }
}

/* Checks a sender name of len bytes: empty (not sent), or short and printable. */
static gdml_err check_sender(const char *s, size_t len, gdml_errmsg *e)
{
    if (len >= GDML_NAME_MAX)
        return gdml_errmsg_set(e, GDML_ERR_PROTO,
                               "header field 'from': %zu bytes, at most %d allowed", len,
                               GDML_NAME_MAX - 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x7f)
            return gdml_errmsg_set(e, GDML_ERR_PROTO,
                                   "header field 'from': byte 0x%02x at %zu is not printable ASCII",
                                   c, i);
    }
    return GDML_OK;
}

static gdml_err too_big(enum field f, uint64_t v, uint64_t max, gdml_errmsg *e)
{
    return gdml_errmsg_set(e, GDML_ERR_PROTO, "header field '%s': %llu is above %llu",
                           field_key(f), (unsigned long long)v, (unsigned long long)max);
}

/* Checks the fields of a filled header against each other and their bounds;
 * shared by encode and decode, so that nothing sent is refused on arrival. */
static gdml_err check_values(const gdml_msg_header *h, gdml_errmsg *e)
{
    if ((int)h->type < 1 || (int)h->type > GDML_MSG_TYPE_MAX)
        return gdml_errmsg_set(e, GDML_ERR_PROTO,
                               "header field 'type': %d is not a message type (1..%d)",
                               (int)h->type, GDML_MSG_TYPE_MAX);
    if (h->encoding != GDML_ENC_NONE && h->encoding != GDML_ENC_CODEC)
        return gdml_errmsg_set(e, GDML_ERR_PROTO, "header field 'enc': %d is not an encoding",
                               (int)h->encoding);
    if ((int)h->code < 0 || (int)h->code >= GDML_REASON_COUNT)
        return gdml_errmsg_set(e, GDML_ERR_PROTO, "header field 'code': %d is not a reason",
                               (int)h->code);
    const struct {
        enum field f;
        uint64_t v;
    } u48[] = {{F_SEQ, h->seq},       {F_VER, h->version},    {F_STEP, h->step},
               {F_COUNT, h->count},   {F_ACKED, h->acked},    {F_DRATE, h->down_rate},
               {F_DCAP, h->down_cap}, {F_VROWS, h->val.rows}, {F_VVER, h->val_version}};
    for (size_t i = 0; i < sizeof u48 / sizeof u48[0]; i++)
        if (u48[i].v > GDML_MSG_MAX_U48)
            return too_big(u48[i].f, u48[i].v, GDML_MSG_MAX_U48, e);
    if (isinf(h->metric))
        return gdml_errmsg_set(e, GDML_ERR_PROTO, "header field 'metric' is infinite");
    if (!(h->lr_steps >= 0 && h->lr_steps <= GDML_MSG_MAX_LR_STEPS))
        return gdml_errmsg_set(e, GDML_ERR_PROTO,
                               "header field 'lrh': %g is not a number in [0, %g]", h->lr_steps,
                               GDML_MSG_MAX_LR_STEPS);
    if (!gdml_score_ok(&h->val, GDML_MSG_MAX_U48))
        return gdml_errmsg_set(e, GDML_ERR_PROTO,
                               "header fields 'vrows' %llu, 'vok' %llu, 'vloss' %g: want vok <= "
                               "vrows and vloss a number in [0, %g], or none of them",
                               (unsigned long long)h->val.rows, (unsigned long long)h->val.correct,
                               h->val.loss, GDML_SCORE_MAX_LOSS);
    if (h->val_version > h->version || (h->val.rows == 0 && h->val_version))
        return gdml_errmsg_set(e, GDML_ERR_PROTO,
                               "header field 'vver': a score of version %llu, with %llu rows, in "
                               "a message of version %llu",
                               (unsigned long long)h->val_version, (unsigned long long)h->val.rows,
                               (unsigned long long)h->version);
    if (h->plen > GDML_MSG_PAYLOAD_MAX)
        return too_big(F_PLEN, h->plen, GDML_MSG_PAYLOAD_MAX, e);
    if (h->encoding == GDML_ENC_NONE) {
        if (h->plen || h->total || h->offset || h->chunks)
            return gdml_errmsg_set(e, GDML_ERR_PROTO,
                                   "header without a tensor ('enc' 0) names a payload, offset, "
                                   "total or chunk count");
        return GDML_OK;
    }
    if (!gdml_msg_type_has_tensor(h->type))
        /* Only a model, a delta, a gradient or the keys of a batch travel
         * as a payload, each sized by the model's layout: no other message
         * has room for data. */
        return gdml_errmsg_set(e, GDML_ERR_PROTO, "a %s carries no tensor chunk",
                               gdml_msg_type_name(h->type));
    if (h->plen == 0)
        return gdml_errmsg_set(e, GDML_ERR_PROTO, "a tensor chunk without payload bytes");
    if (h->total == 0 || h->total > GDML_MSG_MAX_ELEMS)
        return gdml_errmsg_set(e, GDML_ERR_PROTO,
                               "header field 'total': %llu elements, allowed 1..%llu",
                               (unsigned long long)h->total,
                               (unsigned long long)GDML_MSG_MAX_ELEMS);
    uint64_t grid = (h->total + GDML_CHUNK_ELEMS - 1) / GDML_CHUNK_ELEMS;
    if (h->offset >= h->total || h->offset % GDML_CHUNK_ELEMS != 0)
        return gdml_errmsg_set(e, GDML_ERR_PROTO,
                               "header field 'off': %llu is not a chunk start of a %llu-element "
                               "tensor (chunks of %llu)",
                               (unsigned long long)h->offset, (unsigned long long)h->total,
                               (unsigned long long)GDML_CHUNK_ELEMS);
    if (h->chunks == 0 || h->chunks > grid)
        return gdml_errmsg_set(e, GDML_ERR_PROTO,
                               "header field 'chunks': %llu, a %llu-element tensor has 1..%llu",
                               (unsigned long long)h->chunks, (unsigned long long)h->total,
                               (unsigned long long)grid);
    return GDML_OK;
}

/* ---- encoding ---- */

/* Where the packer writes: the caller's buffer, never past cap. */
struct sink {
    uint8_t *buf;
    size_t cap, len;
    bool overflow;
};

static int sink_write(void *data, const char *bytes, size_t n)
{
    struct sink *s = data;
    if (s->overflow || n > s->cap - s->len) {
        s->overflow = true;
        return -1;
    }
    memcpy(s->buf + s->len, bytes, n);
    s->len += n;
    return 0;
}

static void pack_str(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_key(msgpack_packer *pk, enum field f)
{
    pack_str(pk, field_key(f), strlen(field_key(f)));
}

static void pack_u64(msgpack_packer *pk, enum field f, uint64_t v)
{
    pack_key(pk, f);
    msgpack_pack_uint64(pk, v);
}

gdml_err gdml_msg_encode(const gdml_msg_header *h, uint8_t *buf, size_t cap, size_t *len)
{
    size_t sender_len = strnlen(h->sender, sizeof h->sender);
    size_t text_len = strnlen(h->text, sizeof h->text);
    if (h->proto != GDML_PROTO_VERSION || check_values(h, NULL) != GDML_OK ||
        check_sender(h->sender, sender_len, NULL) != GDML_OK || text_len >= sizeof h->text)
        return GDML_ERR_INVALID;

    /* Optional fields are written only when they say something. */
    const struct {
        enum field f;
        uint64_t v;
    } opt[] = {{F_VER, h->version},    {F_STEP, h->step},       {F_COUNT, h->count},
               {F_CODE, h->code},      {F_ACKED, h->acked},     {F_ENC, h->encoding},
               {F_OFFSET, h->offset},  {F_TOTAL, h->total},     {F_CHUNKS, h->chunks},
               {F_PLEN, h->plen},      {F_DRATE, h->down_rate}, {F_DCAP, h->down_cap},
               {F_VROWS, h->val.rows}, {F_VOK, h->val.correct}};
    bool vloss = h->val.rows > 0;
    uint32_t entries =
        3 + (sender_len > 0) + !isnan(h->metric) + (h->lr_steps > 0) + 2 * vloss + (text_len > 0);
    for (size_t i = 0; i < sizeof opt / sizeof opt[0]; i++)
        entries += opt[i].v != 0;

    struct sink s = {.buf = buf, .cap = cap};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s, sink_write);
    /* A failed write sets s.overflow and makes every later write fail too, so
     * checking the flag once at the end is enough. */
    msgpack_pack_map(&pk, entries);
    pack_u64(&pk, F_PROTO, h->proto);
    pack_u64(&pk, F_TYPE, (uint64_t)h->type);
    pack_u64(&pk, F_SEQ, h->seq);
    if (sender_len > 0) {
        pack_key(&pk, F_FROM);
        pack_str(&pk, h->sender, sender_len);
    }
    if (!isnan(h->metric)) {
        pack_key(&pk, F_METRIC);
        msgpack_pack_double(&pk, h->metric);
    }
    for (size_t i = 0; i < sizeof opt / sizeof opt[0]; i++)
        if (opt[i].v != 0)
            pack_u64(&pk, opt[i].f, opt[i].v);
    if (h->lr_steps > 0) {
        pack_key(&pk, F_LRSTEPS);
        msgpack_pack_double(&pk, h->lr_steps);
    }
    if (vloss) {
        pack_key(&pk, F_VLOSS);
        msgpack_pack_double(&pk, h->val.loss);
        pack_u64(&pk, F_VVER, h->val_version); /* sent with the score, 0 too */
    }
    if (text_len > 0) {
        pack_key(&pk, F_TEXT);
        pack_str(&pk, h->text, text_len);
    }
    if (s.overflow)
        return GDML_ERR_NOMEM;
    *len = s.len;
    return GDML_OK;
}

gdml_err gdml_msg_encode_v1_refusal(const char *text, uint8_t *buf, size_t cap, size_t *len)
{
    /* Protocol 1 requires proto, type, from, seq, ver, step, count, metric,
     * enc and sizes; type 8 was its ERROR, which it reports and stops on. */
    size_t text_len = strnlen(text, GDML_MSG_TEXT_MAX - 1);
    struct sink s = {.buf = buf, .cap = cap};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s, sink_write);
    msgpack_pack_map(&pk, 11);
    static const char *const zero_keys[] = {"seq", "ver", "step", "count", "enc"};
    pack_str(&pk, "proto", 5);
    msgpack_pack_uint64(&pk, 1);
    pack_str(&pk, "type", 4);
    msgpack_pack_uint64(&pk, 8);
    pack_str(&pk, "from", 4);
    pack_str(&pk, "gdml", 4);
    for (size_t i = 0; i < sizeof zero_keys / sizeof zero_keys[0]; i++) {
        pack_str(&pk, zero_keys[i], strlen(zero_keys[i]));
        msgpack_pack_uint64(&pk, 0);
    }
    pack_str(&pk, "metric", 6);
    msgpack_pack_double(&pk, NAN);
    pack_str(&pk, "sizes", 5);
    msgpack_pack_array(&pk, 0);
    pack_str(&pk, "text", 4);
    pack_str(&pk, text, text_len);
    if (s.overflow)
        return GDML_ERR_NOMEM;
    *len = s.len;
    return GDML_OK;
}

/* ---- frames ---- */

gdml_err gdml_frame_new(size_t payload_cap, gdml_blob **out)
{
    if (payload_cap > GDML_MSG_PAYLOAD_MAX)
        return GDML_ERR_INVALID;
    return gdml_blob_new(GDML_MSG_HEADER_MAX + payload_cap, out);
}

uint8_t *gdml_frame_payload(gdml_blob *frame)
{
    return (uint8_t *)gdml_blob_data(frame) + GDML_MSG_HEADER_MAX;
}

gdml_err gdml_frame_seal(gdml_blob *frame, gdml_msg_header *h, size_t payload_len)
{
    if (payload_len > gdml_blob_size(frame) - GDML_MSG_HEADER_MAX)
        return GDML_ERR_INVALID;
    gdml_msg_header sealed = *h; /* h changes only if the frame is made */
    sealed.plen = payload_len;
    if (payload_len == 0)
        sealed.encoding = GDML_ENC_NONE;
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = 0;
    gdml_err err = gdml_msg_encode(&sealed, buf, sizeof buf, &len);
    if (err)
        return err == GDML_ERR_NOMEM ? GDML_ERR_INVALID : err;
    *h = sealed;
    /* The header goes right in front of the payload, so that the two are one frame. */
    uint8_t *at = gdml_frame_payload(frame) - len;
    memcpy(at, buf, len);
    gdml_blob_set_view(frame, GDML_MSG_HEADER_MAX - len, len + payload_len);
    return GDML_OK;
}

gdml_err gdml_frame_header_only(gdml_msg_header *h, gdml_blob **out)
{
    gdml_blob *b = NULL;
    gdml_err err = gdml_frame_new(0, &b);
    if (!err && (err = gdml_frame_seal(b, h, 0)))
        gdml_blob_unref(&b);
    if (!err)
        *out = b;
    return err;
}

/* ---- decoding ---- */

static uint64_t read_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* What follows a msgpack type byte: an optional big-endian length field of
 * len_bytes; fixed plus that length is the body in bytes, or the entries of
 * an array or map. The table covers 0xc0..0xdf; object_len does the rest. */
enum wire_kind { W_BYTES, W_ARRAY, W_MAP, W_BAD };
struct wire_type {
    uint8_t kind, len_bytes, fixed;
};

/* clang-format off */
static const struct wire_type wire_types[32] = {
    {W_BYTES, 0, 0},  /* c0 nil */
    {W_BAD, 0, 0},    /* c1 never used */
    {W_BYTES, 0, 0},  /* c2 false */
    {W_BYTES, 0, 0},  /* c3 true */
    {W_BYTES, 1, 0},  /* c4 bin8 */
    {W_BYTES, 2, 0},  /* c5 bin16 */
    {W_BYTES, 4, 0},  /* c6 bin32 */
    {W_BYTES, 1, 1},  /* c7 ext8 (+ type byte) */
    {W_BYTES, 2, 1},  /* c8 ext16 */
    {W_BYTES, 4, 1},  /* c9 ext32 */
    {W_BYTES, 0, 4},  /* ca float32 */
    {W_BYTES, 0, 8},  /* cb float64 */
    {W_BYTES, 0, 1},  /* cc uint8 */
    {W_BYTES, 0, 2},  /* cd uint16 */
    {W_BYTES, 0, 4},  /* ce uint32 */
    {W_BYTES, 0, 8},  /* cf uint64 */
    {W_BYTES, 0, 1},  /* d0 int8 */
    {W_BYTES, 0, 2},  /* d1 int16 */
    {W_BYTES, 0, 4},  /* d2 int32 */
    {W_BYTES, 0, 8},  /* d3 int64 */
    {W_BYTES, 0, 2},  /* d4 fixext1 */
    {W_BYTES, 0, 3},  /* d5 fixext2 */
    {W_BYTES, 0, 5},  /* d6 fixext4 */
    {W_BYTES, 0, 9},  /* d7 fixext8 */
    {W_BYTES, 0, 17}, /* d8 fixext16 */
    {W_BYTES, 1, 0},  /* d9 str8 */
    {W_BYTES, 2, 0},  /* da str16 */
    {W_BYTES, 4, 0},  /* db str32 */
    {W_ARRAY, 2, 0},  /* dc array16 */
    {W_ARRAY, 4, 0},  /* dd array32 */
    {W_MAP, 2, 0},    /* de map16 */
    {W_MAP, 4, 0},    /* df map32 */
};
/* clang-format on */

/*
 * Returns the length of the msgpack object that starts at p, or 0 if it is
 * truncated or malformed. `pending` counts objects announced but not yet
 * read; each takes at least one byte, so a container announcing more than
 * the bytes left is rejected before anything is allocated for it.
 */
static size_t object_len(const uint8_t *p, size_t len)
{
    size_t pos = 0;
    uint64_t pending = 1;
    while (pending > 0) {
        if (pos >= len)
            return 0;
        uint8_t b = p[pos++];
        pending--;
        struct wire_type t = {W_BYTES, 0, 0}; /* positive and negative fixint */
        if (b >= 0x80 && b <= 0x8f)
            t = (struct wire_type){W_MAP, 0, (uint8_t)(b & 0x0f)};
        else if (b >= 0x90 && b <= 0x9f)
            t = (struct wire_type){W_ARRAY, 0, (uint8_t)(b & 0x0f)};
        else if (b >= 0xa0 && b <= 0xbf)
            t = (struct wire_type){W_BYTES, 0, (uint8_t)(b & 0x1f)};
        else if (b >= 0xc0 && b <= 0xdf)
            t = wire_types[b - 0xc0];
        if (t.kind == W_BAD || t.len_bytes > len - pos)
            return 0;
        uint64_t n = t.fixed + read_be(p + pos, t.len_bytes);
        pos += t.len_bytes;
        if (t.kind == W_BYTES) {
            if (n > len - pos)
                return 0;
            pos += n;
        } else {
            pending += t.kind == W_MAP ? 2 * n : n;
            if (pending > len - pos)
                return 0;
        }
    }
    return pos;
}

static const char *object_type_name(msgpack_object_type t)
{
    switch (t) {
    case MSGPACK_OBJECT_NIL:
        return "nil";
    case MSGPACK_OBJECT_BOOLEAN:
        return "a boolean";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return "an unsigned integer";
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return "a negative integer";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return "a float";
    case MSGPACK_OBJECT_STR:
        return "a string";
    case MSGPACK_OBJECT_ARRAY:
        return "an array";
    case MSGPACK_OBJECT_MAP:
        return "a map";
    case MSGPACK_OBJECT_BIN:
        return "binary data";
    case MSGPACK_OBJECT_EXT:
        return "an extension";
    }
    return "an unknown object";
}


static gdml_err wrong_type(enum field f, const msgpack_object *o, const char *want, gdml_errmsg *e)
{
    return gdml_errmsg_set(e, GDML_ERR_PROTO, "header field '%s': expected %s, got %s",
                           field_key(f), want, object_type_name(o->type));
}

static gdml_err get_u64(enum field f, const msgpack_object *o, uint64_t *out, gdml_errmsg *e)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return wrong_type(f, o, "an unsigned integer", e);
    *out = o->via.u64;
    return GDML_OK;
}

/* A float field; other msgpack writers may store a whole number as an integer. */
static gdml_err get_f64(enum field f, const msgpack_object *o, double *out, gdml_errmsg *e)
{
    if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64)
        *out = o->via.f64;
    else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        *out = (double)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *out = (double)o->via.i64;
    else
        return wrong_type(f, o, "a number", e);
    return GDML_OK;
}

static gdml_err get_str(enum field f, const msgpack_object *o, char *out, size_t cap,
                        gdml_errmsg *e)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return wrong_type(f, o, "a string", e);
    if (o->via.str.size >= cap)
        return gdml_errmsg_set(e, GDML_ERR_PROTO, "header field '%s': %u bytes, at most %zu allowed",
                               field_key(f), o->via.str.size, cap - 1);
    if (memchr(o->via.str.ptr, '\0', o->via.str.size))
        return gdml_errmsg_set(e, GDML_ERR_PROTO, "header field '%s' contains a NUL byte",
                               field_key(f));
    memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = '\0';
    return GDML_OK;
}

/* Maps a key to its field; F_COUNT_OF_FIELDS for keys this build does not know. */
static enum field key_field(const msgpack_object *key)
{
    for (int f = 0; f < F_COUNT_OF_FIELDS; f++)
        if (key->via.str.size == strlen(field_key(f)) &&
            memcmp(key->via.str.ptr, field_key(f), key->via.str.size) == 0)
            return (enum field)f;
    return F_COUNT_OF_FIELDS;
}

/* Stores one field's value into h, as the schema says; the bounds that
 * relate fields to each other are checked afterwards, all at once. */
static gdml_err set_field(enum field f, const msgpack_object *o, gdml_msg_header *h, gdml_errmsg *e)
{
    const gdml_msg_field *d = &schema[f];
    char *at = (char *)h + d->offset;
    gdml_err err = GDML_OK;
    if (f == F_PROTO) /* checked before the loop */
        return GDML_OK;
    switch (d->kind) {
    case GDML_FIELD_UINT: {
        uint64_t v = 0;
        if ((err = get_u64(f, o, &v, e)))
            return err;
        /* total's bound is check_values', which says it in elements */
        if (v > d->max && f != F_TOTAL)
            return too_big(f, v, d->max, e);
        if (d->size == sizeof(uint64_t)) {
            memcpy(at, &v, sizeof v);
        } else { /* an enum: type, enc, code */
            int small = (int)v;
            memcpy(at, &small, sizeof small);
        }
        return GDML_OK;
    }
    case GDML_FIELD_FLOAT:
        return get_f64(f, o, (double *)(void *)at, e);
    case GDML_FIELD_STRING:
        if ((err = get_str(f, o, at, d->size, e)))
            return err;
        return f == F_FROM ? check_sender(at, strlen(at), e) : GDML_OK;
    }
    return GDML_OK;
}

/* Finds "proto" and checks it before anything else, so that a peer speaking
 * another version gets told so rather than about whichever field changed. */
static gdml_err check_proto(const msgpack_object_map *map, uint32_t *other, gdml_errmsg *e)
{
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object *key = &map->ptr[i].key;
        if (key->type != MSGPACK_OBJECT_STR || key_field(key) != F_PROTO)
            continue;
        uint64_t v = 0;
        gdml_err err = get_u64(F_PROTO, &map->ptr[i].val, &v, e);
        if (err != GDML_OK)
            return err;
        if (v != GDML_PROTO_VERSION) {
            if (other)
                *other = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
            return gdml_errmsg_set(e, GDML_ERR_VERSION,
                                   "protocol version %llu, this build speaks %d",
                                   (unsigned long long)v, GDML_PROTO_VERSION);
        }
        return GDML_OK;
    }
    return gdml_errmsg_set(e, GDML_ERR_PROTO, "header field 'proto' is missing");
}

static gdml_err decode_map(const msgpack_object_map *map, gdml_msg_header *h, uint32_t *other,
                           gdml_errmsg *e)
{
    gdml_err err = check_proto(map, other, e);
    if (err != GDML_OK)
        return err;
    unsigned seen = 0;
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object *key = &map->ptr[i].key;
        if (key->type != MSGPACK_OBJECT_STR)
            return gdml_errmsg_set(e, GDML_ERR_PROTO, "header key %u is %s, not a string", i,
                                   object_type_name(key->type));
        enum field f = key_field(key);
        if (f == F_COUNT_OF_FIELDS)
            continue; /* added by a newer minor revision: skip */
        if (seen & (1u << f))
            return gdml_errmsg_set(e, GDML_ERR_PROTO, "header field '%s' appears twice",
                                   field_key(f));
        seen |= 1u << f;
        if ((err = set_field(f, &map->ptr[i].val, h, e)) != GDML_OK)
            return err;
    }
    for (int f = 0; f < F_COUNT_OF_FIELDS; f++)
        if ((REQUIRED_FIELDS & (1u << f)) && !(seen & (1u << f)))
            return gdml_errmsg_set(e, GDML_ERR_PROTO, "header field '%s' is missing", field_key(f));
    h->proto = GDML_PROTO_VERSION;
    return check_values(h, e);
}

gdml_err gdml_msg_decode(const uint8_t *frame, size_t len, gdml_msg_header *h,
                         const uint8_t **payload, uint32_t *other_proto, gdml_errmsg *e)
{
    if (len == 0)
        return gdml_errmsg_set(e, GDML_ERR_PROTO, "frame is empty");
    size_t used = object_len(frame, len < GDML_MSG_HEADER_MAX ? len : GDML_MSG_HEADER_MAX);
    if (used == 0)
        return gdml_errmsg_set(e, GDML_ERR_PROTO,
                               "frame does not start with a msgpack header of at most %d bytes "
                               "(truncated or garbage, %zu bytes)",
                               GDML_MSG_HEADER_MAX, len);

    gdml_err err = GDML_OK;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack_next(&u, (const char *)frame, used, &off);
    if (r == MSGPACK_UNPACK_NOMEM_ERROR) {
        /* msgpack-c also reports nesting deeper than its fixed stack this way. */
        err = gdml_errmsg_set(e, GDML_ERR_PROTO, "header is nested too deeply or out of memory");
        goto out;
    }
    if ((r != MSGPACK_UNPACK_SUCCESS && r != MSGPACK_UNPACK_EXTRA_BYTES) || off != used) {
        err = gdml_errmsg_set(e, GDML_ERR_PROTO, "header is not valid msgpack (%zu bytes)", used);
        goto out;
    }
    if (u.data.type != MSGPACK_OBJECT_MAP) {
        err = gdml_errmsg_set(e, GDML_ERR_PROTO, "header is %s, not a map",
                              object_type_name(u.data.type));
        goto out;
    }
    gdml_msg_header tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.metric = NAN;
    if ((err = decode_map(&u.data.via.map, &tmp, other_proto, e)) != GDML_OK)
        goto out;
    if (len - used != tmp.plen) {
        err = gdml_errmsg_set(e, GDML_ERR_PROTO,
                              "%s header announces %llu payload bytes, the frame has %zu",
                              gdml_msg_type_name(tmp.type), (unsigned long long)tmp.plen,
                              len - used);
        goto out;
    }
    *h = tmp;
    if (payload)
        *payload = frame + used;
out:
    msgpack_unpacked_destroy(&u);
    return err;
}

/* ---- auditing ---- */

/* The length of the string header at p (fixstr, str8/16/32) into *body; 0 if it is not one. */
static size_t str_header(const uint8_t *p, size_t len, size_t *body)
{
    if (len >= 1 && p[0] >= 0xa0 && p[0] <= 0xbf) {
        *body = p[0] & 0x1f;
        return 1;
    }
    size_t n = len == 0 ? 0 : p[0] == 0xd9 ? 1 : p[0] == 0xda ? 2 : p[0] == 0xdb ? 4 : 0;
    if (n == 0 || len < 1 + n)
        return 0;
    *body = (size_t)read_be(p + 1, n);
    return 1 + n;
}

gdml_err gdml_msg_each_key(const uint8_t *frame, size_t len, gdml_msg_key_fn fn, void *user,
                           gdml_errmsg *e)
{
    size_t cap = len < GDML_MSG_HEADER_MAX ? len : GDML_MSG_HEADER_MAX;
    size_t whole = object_len(frame, cap);
    if (whole == 0)
        return gdml_errmsg_set(e, GDML_ERR_PROTO, "frame does not start with a msgpack header");
    size_t pos, entries;
    if (frame[0] >= 0x80 && frame[0] <= 0x8f) {
        entries = frame[0] & 0x0f;
        pos = 1;
    } else if (frame[0] == 0xde || frame[0] == 0xdf) {
        size_t n = frame[0] == 0xde ? 2 : 4;
        entries = (size_t)read_be(frame + 1, n);
        pos = 1 + n;
    } else {
        return gdml_errmsg_set(e, GDML_ERR_PROTO, "header is not a map");
    }
    /* object_len has checked that every entry lies within `whole`. */
    for (size_t i = 0; i < entries; i++) {
        size_t body = 0, h = str_header(frame + pos, whole - pos, &body);
        if (h == 0 || body > whole - pos - h)
            return gdml_errmsg_set(e, GDML_ERR_PROTO, "header key %zu is not a string", i);
        const char *key = (const char *)frame + pos + h;
        pos += h + body;
        size_t value = object_len(frame + pos, whole - pos);
        if (value == 0)
            return gdml_errmsg_set(e, GDML_ERR_PROTO, "header value %zu is malformed", i);
        fn(key, body, value, user);
        pos += value;
    }
    return GDML_OK;
}
