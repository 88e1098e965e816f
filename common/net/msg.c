/*
 * msg.c - the gdml wire message (msg.h): a msgpack header map and the
 * payload after it, in one frame.
 *
 * This file holds the schema, the names, the checks that encoding and
 * decoding share, and the encoder, which packs straight into the caller's
 * buffer through a bounded write callback, so it never allocates. The
 * decoder is msg_decode.c. These two are the only files that include
 * msgpack.h. docs/protocol.md describes the fields and their bounds.
 */
#include "msg.h"
#include "msg_impl.h"

#include <msgpack.h>

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/*
 * The schema: every field a header may carry, what it holds on the wire,
 * its bound and where it lands in gdml_msg_header. The decoder reads
 * fields through this table and nothing else (any other key is skipped
 * unread), and tests/unit/test_msg_schema.c checks from it that no field
 * can carry more than a few hundred bytes: only the payload of a tensor
 * chunk, whose size the model's layout sets, carries more.
 */
#define AT(m) offsetof(gdml_msg_header, m), sizeof(((gdml_msg_header *)0)->m)
const gdml_msg_field gdml_msg_fields[F_COUNT_OF_FIELDS] = {
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
    return gdml_msg_fields;
}

static const char *const type_names[GDML_MSG_TYPE_MAX + 1] = {
    [GDML_MSG_HELLO] = "HELLO", [GDML_MSG_WELCOME] = "WELCOME", [GDML_MSG_PUSH] = "PUSH",
    [GDML_MSG_MODEL] = "MODEL", [GDML_MSG_DELTA] = "DELTA",     [GDML_MSG_GLOBAL] = "GLOBAL",
    [GDML_MSG_STOP] = "STOP",   [GDML_MSG_ERROR] = "ERROR",     [GDML_MSG_HEARTBEAT] = "HEARTBEAT",
    [GDML_MSG_LEAVE] = "LEAVE", [GDML_MSG_PULL] = "PULL",
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

gdml_err gdml_msg_check_sender(const char *s, size_t len, gdml_errmsg *e)
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

gdml_err gdml_msg_too_big(enum field f, uint64_t v, uint64_t max, gdml_errmsg *e)
{
    return gdml_errmsg_set(e, GDML_ERR_PROTO, "header field '%s': %llu is above %llu", field_key(f),
                           (unsigned long long)v, (unsigned long long)max);
}

gdml_err gdml_msg_check_values(const gdml_msg_header *h, gdml_errmsg *e)
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
            return gdml_msg_too_big(u48[i].f, u48[i].v, GDML_MSG_MAX_U48, e);
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
        return gdml_msg_too_big(F_PLEN, h->plen, GDML_MSG_PAYLOAD_MAX, e);
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
        return gdml_errmsg_set(
            e, GDML_ERR_PROTO, "header field 'total': %llu elements, allowed 1..%llu",
            (unsigned long long)h->total, (unsigned long long)GDML_MSG_MAX_ELEMS);
    uint64_t grid = (h->total + GDML_CHUNK_ELEMS - 1) / GDML_CHUNK_ELEMS;
    if (h->offset >= h->total || h->offset % GDML_CHUNK_ELEMS != 0)
        return gdml_errmsg_set(e, GDML_ERR_PROTO,
                               "header field 'off': %llu is not a chunk start of a %llu-element "
                               "tensor (chunks of %llu)",
                               (unsigned long long)h->offset, (unsigned long long)h->total,
                               (unsigned long long)GDML_CHUNK_ELEMS);
    if (h->chunks == 0 || h->chunks > grid)
        return gdml_errmsg_set(
            e, GDML_ERR_PROTO, "header field 'chunks': %llu, a %llu-element tensor has 1..%llu",
            (unsigned long long)h->chunks, (unsigned long long)h->total, (unsigned long long)grid);
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
    if (h->proto != GDML_PROTO_VERSION || gdml_msg_check_values(h, NULL) != GDML_OK ||
        gdml_msg_check_sender(h->sender, sender_len, NULL) != GDML_OK || text_len >= sizeof h->text)
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
