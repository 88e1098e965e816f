/*
 * codec_impl.h - private to the codec module: the table of operations of a
 * quantizer (how the k values of a payload are written), the payload's
 * constants and id lookups, and the helpers that codec.c, codec_decode.c and
 * quantize.c share. Other modules reach the quantizers only
 * through codec.h.
 */
#ifndef GDML_CODEC_IMPL_H
#define GDML_CODEC_IMPL_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct gdml_quant_ops {
    const char *name; /* "f32", "int8", ... as written in an encoder spec */
    uint8_t id;       /* the quantizer id byte of a payload */
    bool lossy;       /* true if decode(encode(v)) can differ from v */
    bool internal;    /* for gdml's own messages, never an encoder a user names */
    /* Bytes that k values take in a payload. */
    size_t (*bytes)(size_t k);
    /*
     * Writes v[0..k) (finite) into out[0..bytes(k)). Every value it writes
     * decodes to a finite float: out-of-range values saturate.
     */
    void (*encode)(const float *v, size_t k, uint8_t *out);
    /*
     * Checks what decode cannot see in the values it produces (scales that
     * are negative, reserved codes, padding bits); NULL if there is nothing.
     * Returns GDML_ERR_FORMAT with e saying what is wrong.
     */
    gdml_err (*check)(const uint8_t *in, size_t k, gdml_errmsg *e);
    /* Writes the k values stored in in[0..bytes(k)) into v[0..k). */
    void (*decode)(const uint8_t *in, size_t k, float *v);
} gdml_quant_ops;

/* The quantizers (quantize.c), listed in codec.c's table. */
extern const gdml_quant_ops gdml_quant_f32;
extern const gdml_quant_ops gdml_quant_f16;
extern const gdml_quant_ops gdml_quant_bf16;
extern const gdml_quant_ops gdml_quant_int8;
extern const gdml_quant_ops gdml_quant_int4;
extern const gdml_quant_ops gdml_quant_int2;
extern const gdml_quant_ops gdml_quant_sign;
extern const gdml_quant_ops gdml_quant_none;

/* The payload format (codec.h has the layout). */
#define GDML_CODEC_FORMAT 1
#define GDML_CODEC_FLAG_SPARSE 0x01u
#define GDML_CODEC_VARINT_MAX 5 /* bytes of a LEB128 varint of 32 bits */

/* A payload's selector id: its name and whether it writes indices (false for
 * "all"); false if no selector has the id. */
bool gdml_codec_selector_by_id(uint8_t id, const char **name, bool *selects);

/* A payload's quantizer id, or NULL. */
const gdml_quant_ops *gdml_codec_quantizer_by_id(uint8_t id);

/*
 * True if every x[i] is finite: its exponent bits are not all ones. Without
 * an early exit the loop vectorizes; every tensor that is sent or received
 * passes through it, and isfinite() with a return inside the loop ran at
 * one element a cycle.
 */
static inline bool gdml_codec_all_finite(const float *x, size_t n)
{
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        bad |= (~u & 0x7f800000u) == 0;
    }
    return bad == 0;
}

/* Little-endian stores and loads; payloads are little-endian on every host. */
static inline void gdml_codec_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t gdml_codec_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void gdml_codec_put_f32(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    gdml_codec_put_u32(p, u);
}

static inline float gdml_codec_get_f32(const uint8_t *p)
{
    uint32_t u = gdml_codec_get_u32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#endif
