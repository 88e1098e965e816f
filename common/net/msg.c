/*
 * msg.c - encodes and decodes the gdml wire header (frame 0 of every message)
 * as a msgpack map. This is the only file that includes msgpack.h.
 *
 * Encoding packs straight into the caller's buffer through a bounded write
 * callback, so it never allocates. Decoding trusts nothing: before msgpack-c
 * builds its object tree, a short pre-scan checks that the buffer is exactly
 * one well-formed msgpack object and that no container claims more entries
 * than there are bytes left. Without it a 5-byte frame announcing a map of
 * 2^32 entries would make msgpack-c reserve hundreds of gigabytes up front.
 * docs/protocol.md describes the fields and their bounds.
 */
#include "msg.h"

#include <msgpack.h>

#include <math.h>
#include <stdbool.h>
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
    F_ENC,
    F_SIZES,
    F_TEXT,
    F_DRATE,
    F_DCAP,
    F_LRSTEPS,
    F_COUNT_OF_FIELDS,
};

static const char *const field_key[F_COUNT_OF_FIELDS] = {
    [F_PROTO] = "proto", [F_TYPE] = "type",   [F_FROM] = "from",   [F_SEQ] = "seq",
    [F_VER] = "ver",     [F_STEP] = "step",   [F_COUNT] = "count", [F_METRIC] = "metric",
    [F_ENC] = "enc",     [F_SIZES] = "sizes", [F_TEXT] = "text",   [F_DRATE] = "drate",
    [F_DCAP] = "dcap",   [F_LRSTEPS] = "lrh",
};

/* Optional fields: metric, text, and the reverse-direction budget. */
#define OPTIONAL_FIELDS                                                                            \
    ((1u << F_METRIC) | (1u << F_TEXT) | (1u << F_DRATE) | (1u << F_DCAP) | (1u << F_LRSTEPS))
#define REQUIRED_FIELDS (((1u << F_COUNT_OF_FIELDS) - 1) & ~OPTIONAL_FIELDS)

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
    switch (type) {
    case GDML_MSG_HELLO:
        return "HELLO";
    case GDML_MSG_WELCOME:
        return "WELCOME";
    case GDML_MSG_PUSH:
        return "PUSH";
    case GDML_MSG_MODEL:
        return "MODEL";
    case GDML_MSG_DELTA:
        return "DELTA";
    case GDML_MSG_GLOBAL:
        return "GLOBAL";
    case GDML_MSG_STOP:
        return "STOP";
    case GDML_MSG_ERROR:
        return "ERROR";
    }
    return "UNKNOWN";
}

/* Checks a sender name of len bytes: non-empty, short, printable. */
static gdml_err check_sender(const char *s, size_t len, gdml_errmsg *e)
{
    if (len == 0)
        return gdml_errmsg_set(e, GDML_ERR_PROTO, "header field 'from' is empty");
    if (len >= GDML_NAME_MAX)
        return gdml_errmsg_set(e, GDML_ERR_PROTO,
                               "header field 'from': %zu bytes, at most %d allowed", len,
                               GDML_NAME_MAX - 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return gdml_errmsg_set(e, GDML_ERR_PROTO,
                                   "header field 'from': control character 0x%02x at byte %zu", c,
                                   i);
    }
    return GDML_OK;
}

/* Checks the numeric fields of a filled header; shared by encode and decode. */
static gdml_err check_values(const gdml_msg_header *h, gdml_errmsg *e)
{
    if ((int)h->type < 1 || (int)h->type > GDML_MSG_TYPE_MAX)
        return gdml_errmsg_set(e, GDML_ERR_PROTO,
                               "header field 'type': %d is not a message type (1..%d)",
                               (int)h->type, GDML_MSG_TYPE_MAX);
    if ((int)h->encoding < 0 || (int)h->encoding > GDML_ENC_MAX)
        return gdml_errmsg_set(e, GDML_ERR_PROTO,
                               "header field 'enc': %d is not an encoding (0..%d)",
                               (int)h->encoding, GDML_ENC_MAX);
    if (h->n_payloads > GDML_MSG_MAX_PAYLOADS)
        return gdml_errmsg_set(e, GDML_ERR_PROTO,
                               "header field 'sizes': %u entries, at most %d allowed",
                               h->n_payloads, GDML_MSG_MAX_PAYLOADS);
    for (uint32_t i = 0; i < h->n_payloads; i++)
        if (h->sizes[i] > GDML_MSG_PAYLOAD_MAX)
            return gdml_errmsg_set(
                e, GDML_ERR_PROTO,
                "header field 'sizes': entry %u is %llu bytes, at most %llu allowed", i,
                (unsigned long long)h->sizes[i], (unsigned long long)GDML_MSG_PAYLOAD_MAX);
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
    pack_str(pk, field_key[f], strlen(field_key[f]));
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
    if (check_values(h, NULL) != GDML_OK || check_sender(h->sender, sender_len, NULL) != GDML_OK ||
        text_len >= sizeof h->text)
        return GDML_ERR_INVALID;

    struct sink s = {.buf = buf, .cap = cap};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s, sink_write);
    /* A failed write sets s.overflow and makes every later write fail too, so
     * checking the flag once at the end is enough. */
    /* Every field up to text is always written; the optional ones only when set. */
    uint32_t entries =
        F_TEXT + (text_len > 0) + (h->down_rate > 0) + (h->down_cap > 0) + (h->lr_steps > 0);
    msgpack_pack_map(&pk, entries);
    pack_u64(&pk, F_PROTO, h->proto);
    pack_u64(&pk, F_TYPE, (uint64_t)h->type);
    pack_key(&pk, F_FROM);
    pack_str(&pk, h->sender, sender_len);
    pack_u64(&pk, F_SEQ, h->seq);
    pack_u64(&pk, F_VER, h->version);
    pack_u64(&pk, F_STEP, h->step);
    pack_u64(&pk, F_COUNT, h->count);
    pack_key(&pk, F_METRIC);
    msgpack_pack_double(&pk, h->metric);
    pack_u64(&pk, F_ENC, (uint64_t)h->encoding);
    pack_key(&pk, F_SIZES);
    msgpack_pack_array(&pk, h->n_payloads);
    for (uint32_t i = 0; i < h->n_payloads; i++)
        msgpack_pack_uint64(&pk, h->sizes[i]);
    if (text_len > 0) {
        pack_key(&pk, F_TEXT);
        pack_str(&pk, h->text, text_len);
    }
    if (h->down_rate > 0)
        pack_u64(&pk, F_DRATE, h->down_rate);
    if (h->down_cap > 0)
        pack_u64(&pk, F_DCAP, h->down_cap);
    if (h->lr_steps > 0) {
        pack_key(&pk, F_LRSTEPS);
        msgpack_pack_double(&pk, h->lr_steps);
    }
    if (s.overflow)
        return GDML_ERR_NOMEM;
    *len = s.len;
    return GDML_OK;
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
                           field_key[f], want, object_type_name(o->type));
}

static gdml_err get_u64(enum field f, const msgpack_object *o, uint64_t *out, gdml_errmsg *e)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return wrong_type(f, o, "an unsigned integer", e);
    *out = o->via.u64;
    return GDML_OK;
}

/* Maps a key to its field; F_COUNT_OF_FIELDS for keys this build does not know. */
static enum field key_field(const msgpack_object *key)
{
    for (int f = 0; f < F_COUNT_OF_FIELDS; f++)
        if (key->via.str.size == strlen(field_key[f]) &&
            memcmp(key->via.str.ptr, field_key[f], key->via.str.size) == 0)
            return (enum field)f;
    return F_COUNT_OF_FIELDS;
}

/* Stores one field's value into h; range checks that need the raw value are here. */
static gdml_err set_field(enum field f, const msgpack_object *o, gdml_msg_header *h, gdml_errmsg *e)
{
    uint64_t v = 0;
    gdml_err err = GDML_OK;
    switch (f) {
    case F_PROTO: /* checked before the loop */
        break;
    case F_TYPE:
        if ((err = get_u64(f, o, &v, e)) != GDML_OK)
            return err;
        if (v < 1 || v > GDML_MSG_TYPE_MAX)
            return gdml_errmsg_set(e, GDML_ERR_PROTO,
                                   "header field 'type': %llu is not a message type (1..%d)",
                                   (unsigned long long)v, GDML_MSG_TYPE_MAX);
        h->type = (gdml_msg_type)v;
        break;
    case F_ENC:
        if ((err = get_u64(f, o, &v, e)) != GDML_OK)
            return err;
        if (v > GDML_ENC_MAX)
            return gdml_errmsg_set(e, GDML_ERR_PROTO,
                                   "header field 'enc': %llu is not an encoding (0..%d)",
                                   (unsigned long long)v, GDML_ENC_MAX);
        h->encoding = (gdml_encoding)v;
        break;
    case F_SEQ:
        return get_u64(f, o, &h->seq, e);
    case F_VER:
        return get_u64(f, o, &h->version, e);
    case F_STEP:
        return get_u64(f, o, &h->step, e);
    case F_COUNT:
        return get_u64(f, o, &h->count, e);
    case F_DRATE:
        return get_u64(f, o, &h->down_rate, e);
    case F_DCAP:
        return get_u64(f, o, &h->down_cap, e);
    case F_LRSTEPS:
        if (o->type != MSGPACK_OBJECT_FLOAT32 && o->type != MSGPACK_OBJECT_FLOAT64)
            return wrong_type(f, o, "a float", e);
        if (!isfinite(o->via.f64) || o->via.f64 < 0)
            return gdml_errmsg_set(e, GDML_ERR_PROTO,
                                   "header field 'lrh': %g is not a finite number >= 0",
                                   o->via.f64);
        h->lr_steps = o->via.f64;
        break;
    case F_METRIC:
        /* Other msgpack writers may store a whole-number float as an integer. */
        if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64)
            h->metric = o->via.f64;
        else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            h->metric = (double)o->via.u64;
        else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
            h->metric = (double)o->via.i64;
        else
            return wrong_type(f, o, "a float", e);
        break;
    case F_FROM:
        if (o->type != MSGPACK_OBJECT_STR)
            return wrong_type(f, o, "a string", e);
        if ((err = check_sender(o->via.str.ptr, o->via.str.size, e)) != GDML_OK)
            return err;
        memcpy(h->sender, o->via.str.ptr, o->via.str.size);
        h->sender[o->via.str.size] = '\0';
        break;
    case F_TEXT:
        if (o->type != MSGPACK_OBJECT_STR)
            return wrong_type(f, o, "a string", e);
        if (o->via.str.size >= GDML_MSG_TEXT_MAX)
            return gdml_errmsg_set(e, GDML_ERR_PROTO,
                                   "header field 'text': %u bytes, at most %d allowed",
                                   o->via.str.size, GDML_MSG_TEXT_MAX - 1);
        if (memchr(o->via.str.ptr, '\0', o->via.str.size))
            return gdml_errmsg_set(e, GDML_ERR_PROTO, "header field 'text' contains a NUL byte");
        memcpy(h->text, o->via.str.ptr, o->via.str.size);
        h->text[o->via.str.size] = '\0';
        break;
    case F_SIZES:
        if (o->type != MSGPACK_OBJECT_ARRAY)
            return wrong_type(f, o, "an array", e);
        if (o->via.array.size > GDML_MSG_MAX_PAYLOADS)
            return gdml_errmsg_set(e, GDML_ERR_PROTO,
                                   "header field 'sizes': %u entries, at most %d allowed",
                                   o->via.array.size, GDML_MSG_MAX_PAYLOADS);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            const msgpack_object *s = &o->via.array.ptr[i];
            if (s->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                return gdml_errmsg_set(e, GDML_ERR_PROTO,
                                       "header field 'sizes': entry %u is %s, not an unsigned "
                                       "integer",
                                       i, object_type_name(s->type));
            h->sizes[i] = s->via.u64;
        }
        h->n_payloads = o->via.array.size;
        break;
    case F_COUNT_OF_FIELDS:
        break;
    }
    return GDML_OK;
}

/* Finds "proto" and checks it before anything else, so that a peer speaking
 * another version gets told so rather than about whichever field changed. */
static gdml_err check_proto(const msgpack_object_map *map, gdml_errmsg *e)
{
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object *key = &map->ptr[i].key;
        if (key->type != MSGPACK_OBJECT_STR || key_field(key) != F_PROTO)
            continue;
        uint64_t v = 0;
        gdml_err err = get_u64(F_PROTO, &map->ptr[i].val, &v, e);
        if (err != GDML_OK)
            return err;
        if (v != GDML_PROTO_VERSION)
            return gdml_errmsg_set(e, GDML_ERR_VERSION,
                                   "protocol version %llu, this build speaks %d",
                                   (unsigned long long)v, GDML_PROTO_VERSION);
        return GDML_OK;
    }
    return gdml_errmsg_set(e, GDML_ERR_PROTO, "header field 'proto' is missing");
}

static gdml_err decode_map(const msgpack_object_map *map, gdml_msg_header *h, gdml_errmsg *e)
{
    gdml_err err = check_proto(map, e);
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
                                   field_key[f]);
        seen |= 1u << f;
        if ((err = set_field(f, &map->ptr[i].val, h, e)) != GDML_OK)
            return err;
    }
    for (int f = 0; f < F_COUNT_OF_FIELDS; f++)
        if ((REQUIRED_FIELDS & (1u << f)) && !(seen & (1u << f)))
            return gdml_errmsg_set(e, GDML_ERR_PROTO, "header field '%s' is missing", field_key[f]);
    h->proto = GDML_PROTO_VERSION;
    return check_values(h, e);
}

gdml_err gdml_msg_decode(const uint8_t *buf, size_t len, gdml_msg_header *h, gdml_errmsg *e)
{
    if (len == 0)
        return gdml_errmsg_set(e, GDML_ERR_PROTO, "header is empty");
    if (len > GDML_MSG_HEADER_MAX)
        return gdml_errmsg_set(e, GDML_ERR_PROTO, "header is %zu bytes, at most %d allowed", len,
                               GDML_MSG_HEADER_MAX);
    size_t used = object_len(buf, len);
    if (used == 0)
        return gdml_errmsg_set(e, GDML_ERR_PROTO,
                               "header is not valid msgpack (truncated or garbage, %zu bytes)",
                               len);
    if (used != len)
        return gdml_errmsg_set(e, GDML_ERR_PROTO, "header has %zu trailing bytes after the map",
                               len - used);

    gdml_err err = GDML_OK;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack_next(&u, (const char *)buf, len, &off);
    if (r == MSGPACK_UNPACK_NOMEM_ERROR) {
        /* msgpack-c also reports nesting deeper than its fixed stack this way. */
        err = gdml_errmsg_set(e, GDML_ERR_PROTO, "header is nested too deeply or out of memory");
        goto out;
    }
    if ((r != MSGPACK_UNPACK_SUCCESS && r != MSGPACK_UNPACK_EXTRA_BYTES) || off != len) {
        err = gdml_errmsg_set(e, GDML_ERR_PROTO, "header is not valid msgpack (%zu bytes)", len);
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
    if ((err = decode_map(&u.data.via.map, &tmp, e)) == GDML_OK)
        *h = tmp;
out:
    msgpack_unpacked_destroy(&u);
    return err;
}
