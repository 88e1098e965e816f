/*
 * msg_decode.c - decoding the gdml wire message (msg.h), and reading a
 * header's keys for audits. It trusts nothing: before msgpack-c builds its
 * object tree, a short pre-scan checks that the frame starts with exactly
 * one well-formed msgpack object and that no container claims more entries
 * than there are bytes left. Without it a 5-byte frame announcing a map of
 * 2^32 entries would make msgpack-c reserve hundreds of gigabytes. Fields
 * are read through the schema (msg.c) and checked as the encoder checks
 * them.
 */
#include "msg.h"
#include "msg_impl.h"

#include <msgpack.h>

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* Every other field is optional: absent means 0 (metric: NaN; text: empty). */
#define REQUIRED_FIELDS ((1u << F_PROTO) | (1u << F_TYPE) | (1u << F_SEQ))

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
        return gdml_errmsg_set(e, GDML_ERR_PROTO,
                               "header field '%s': %u bytes, at most %zu allowed", field_key(f),
                               o->via.str.size, cap - 1);
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
    const gdml_msg_field *d = &gdml_msg_fields[f];
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
            return gdml_msg_too_big(f, v, d->max, e);
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
        return f == F_FROM ? gdml_msg_check_sender(at, strlen(at), e) : GDML_OK;
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
    return gdml_msg_check_values(h, e);
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
        err = gdml_errmsg_set(
            e, GDML_ERR_PROTO, "%s header announces %llu payload bytes, the frame has %zu",
            gdml_msg_type_name(tmp.type), (unsigned long long)tmp.plen, len - used);
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
