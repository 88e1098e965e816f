/*
 * codec_decode.c - the decoder of codec payloads (codec.c writes them). It
 * trusts nothing: every header field, index and length is checked against
 * the slice it is for before a value is written, and every value decoded
 * must be finite.
 */
#include "codec.h"
#include "codec_impl.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/*
 * Reads one LEB128 varint of at most 32 bits from in[*pos..len). Returns
 * false if it is truncated, longer than needed, or too big for 32 bits.
 */
static bool get_varint(const uint8_t *in, size_t len, size_t *pos, uint32_t *v)
{
    uint64_t value = 0;
    for (size_t i = 0; i < GDML_CODEC_VARINT_MAX && *pos + i < len; i++) {
        uint8_t b = in[*pos + i];
        value |= (uint64_t)(b & 0x7fu) << (7 * i);
        if (!(b & 0x80u)) {
            if ((i > 0 && b == 0) || value > UINT32_MAX)
                return false;
            *pos += i + 1;
            *v = (uint32_t)value;
            return true;
        }
    }
    return false;
}

/* Checks the k index varints from in[*pos..len) against n; leaves *pos after them. */
static gdml_err check_indices(const uint8_t *in, size_t len, size_t *pos, size_t k, size_t n,
                              gdml_errmsg *e)
{
    if (len - *pos < k)
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "codec payload: %zu bytes after the header cannot hold %zu indices",
                               len - *pos, k);
    uint64_t next = 0; /* the smallest index the next entry may have */
    for (size_t j = 0; j < k; j++) {
        uint32_t gap;
        size_t at = *pos;
        if (!get_varint(in, len, pos, &gap))
            return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                                   "codec payload: entry %zu: index varint at byte %zu is "
                                   "truncated, overlong or above 32 bits",
                                   j, at);
        uint64_t index = next + gap;
        if (index >= n)
            return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                                   "codec payload: entry %zu: index %llu >= n %zu", j,
                                   (unsigned long long)index, n);
        next = index + 1;
    }
    return GDML_OK;
}

/*
 * Moves the k values at out[n-k..n) to their (checked) indices and zeroes
 * the rest. Going forwards is safe: entry j's index is at most n - k + j,
 * as k - 1 - j larger indices follow it, so a write never lands on a value
 * not yet moved.
 */
static void scatter(const uint8_t *in, size_t len, size_t k, float *out, size_t n)
{
    const float *src = out + (n - k);
    size_t pos = GDML_CODEC_HEADER, next = 0;
    for (size_t j = 0; j < k; j++) {
        uint32_t gap;
        bool ok = get_varint(in, len, &pos, &gap);
        assert(ok);
        (void)ok;
        size_t index = next + gap;
        float v = src[j];
        memset(out + next, 0, (index - next) * sizeof *out);
        out[index] = v;
        next = index + 1;
    }
    memset(out + next, 0, (n - next) * sizeof *out);
}

size_t gdml_codec_payload_indices(const uint8_t *payload, size_t len, uint32_t *out)
{
    size_t k = gdml_codec_payload_k(payload, len);
    if (payload[3] != GDML_CODEC_FLAG_SPARSE) {
        for (size_t j = 0; j < k; j++)
            out[j] = (uint32_t)j;
        return k;
    }
    size_t pos = GDML_CODEC_HEADER;
    uint32_t next = 0;
    for (size_t j = 0; j < k; j++) {
        uint32_t gap;
        bool ok = get_varint(payload, len, &pos, &gap);
        assert(ok && "gdml_codec_decode checks a payload before its indices are read");
        (void)ok;
        out[j] = next + gap;
        next = out[j] + 1;
    }
    return k;
}

size_t gdml_codec_payload_k(const uint8_t *payload, size_t len)
{
    return len < GDML_CODEC_HEADER ? 0 : gdml_codec_get_u32(payload + 8);
}

/*
 * Checks everything of payload in[0..len) for a slice of n entries but its
 * values: header, ids, flags, k, indices, length, the quantizer's own check.
 * Stores the quantizer, k and where the values start.
 */
static gdml_err check_payload(const uint8_t *in, size_t len, size_t n, const gdml_quant_ops **qp,
                              size_t *kp, size_t *posp, gdml_errmsg *e)
{
    assert(in || len == 0);
    if (len < GDML_CODEC_HEADER)
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "codec payload: %zu bytes, shorter than its %d-byte header", len,
                               GDML_CODEC_HEADER);
    if (in[0] != GDML_CODEC_FORMAT)
        return gdml_errmsg_set(e, GDML_ERR_FORMAT, "codec payload: format %u, expected %d", in[0],
                               GDML_CODEC_FORMAT);
    const char *sel_name;
    bool selects;
    if (!gdml_codec_selector_by_id(in[1], &sel_name, &selects))
        return gdml_errmsg_set(e, GDML_ERR_FORMAT, "codec payload: unknown selector id %u", in[1]);
    const gdml_quant_ops *q = gdml_codec_quantizer_by_id(in[2]);
    if (!q)
        return gdml_errmsg_set(e, GDML_ERR_FORMAT, "codec payload: unknown quantizer id %u", in[2]);
    /* A selector's payloads are sparse; "all" writes either form. */
    bool sparse = in[3] == GDML_CODEC_FLAG_SPARSE;
    if (in[3] & ~GDML_CODEC_FLAG_SPARSE || (selects && !sparse))
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "codec payload: flags 0x%02x, expected 0x%02x for selector %s",
                               in[3], selects ? GDML_CODEC_FLAG_SPARSE : 0, sel_name);
    uint32_t pn = gdml_codec_get_u32(in + 4), k = gdml_codec_get_u32(in + 8);
    if (pn != n)
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "codec payload: tensor of %lu entries, expected %zu",
                               (unsigned long)pn, n);
    if (k > n || (!sparse && k != n))
        return gdml_errmsg_set(e, GDML_ERR_FORMAT, "codec payload: k %lu %s n %zu",
                               (unsigned long)k, sparse ? ">" : "!=", n);
    size_t pos = GDML_CODEC_HEADER;
    if (sparse) {
        gdml_err err = check_indices(in, len, &pos, k, n, e);
        if (err)
            return err;
    }
    if (len - pos != q->bytes(k))
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "codec payload: %zu bytes of values, but %lu %s values take %zu",
                               len - pos, (unsigned long)k, q->name, q->bytes(k));
    if (q->check) {
        gdml_err err = q->check(in + pos, k, e);
        if (err)
            return err;
    }
    *qp = q;
    *kp = k;
    *posp = pos;
    return GDML_OK;
}

/* Decodes the k values at in + pos into values and checks that each is finite. */
static gdml_err decode_values(const gdml_quant_ops *q, const uint8_t *in, size_t k, float *values,
                              gdml_errmsg *e)
{
    q->decode(in, k, values);
    if (gdml_codec_all_finite(values, k))
        return GDML_OK;
    size_t j = 0;
    while (isfinite(values[j]))
        j++;
    return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                           "codec payload: value %zu (of %zu) is not a finite number", j, k);
}

gdml_err gdml_codec_decode(const uint8_t *in, size_t len, float *out, size_t n, gdml_errmsg *e)
{
    const gdml_quant_ops *q;
    size_t k, pos;
    gdml_err err = check_payload(in, len, n, &q, &k, &pos, e);
    if (!err)
        err = decode_values(q, in + pos, k, out + (n - k), e);
    if (!err && in[3] == GDML_CODEC_FLAG_SPARSE)
        scatter(in, len, k, out, n);
    return err;
}

gdml_err gdml_codec_decode_entries(const uint8_t *in, size_t len, size_t n, uint32_t *idx,
                                   float *val, size_t cap, size_t *count, gdml_errmsg *e)
{
    const gdml_quant_ops *q;
    size_t k, pos;
    gdml_err err = check_payload(in, len, n, &q, &k, &pos, e);
    if (err)
        return err;
    if (k > cap)
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "codec payload: %zu entries, more than the %zu expected", k, cap);
    if ((err = decode_values(q, in + pos, k, val, e)))
        return err;
    gdml_codec_payload_indices(in, len, idx);
    *count = k;
    return GDML_OK;
}
