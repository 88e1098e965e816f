/*
 * quantize.c - the codec's quantizers: how the k values of a payload are
 * written (f32, f16, bf16, int8, int4 and int2 with a scale per block, 1-bit
 * sign with a scale per block) and read back. Each is one gdml_quant_ops table that
 * codec.c lists; the byte layouts are in docs/protocol.md.
 *
 * The half-precision conversions are written here rather than taken from
 * _Float16 or F16C so that every host rounds the same way (to nearest, ties
 * to even) and a payload decodes to the same bits everywhere.
 */
#include "codec.h"
#include "codec_impl.h"

#include <math.h>

#define INT8_LEVELS 127 /* q in [-127, 127]; -128 is never written */
#define INT4_LEVELS 7   /* q in [-7, 7]; -8 is never written */
#define INT2_LEVELS 3   /* codes 0..3 decode to -3, -1, 1, 3 times the scale */

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static size_t blocks(size_t k)
{
    return (k + GDML_CODEC_BLOCK - 1) / GDML_CODEC_BLOCK;
}

/* ---- f32: the value's own bits ---- */

static size_t f32_bytes(size_t k)
{
    return 4 * k;
}

static void f32_encode(const float *v, size_t k, uint8_t *out)
{
    for (size_t i = 0; i < k; i++)
        gdml_codec_put_f32(out + 4 * i, v[i]);
}

static void f32_decode(const uint8_t *in, size_t k, float *v)
{
    for (size_t i = 0; i < k; i++)
        v[i] = gdml_codec_get_f32(in + 4 * i);
}

/* ---- f16: IEEE 754 binary16 ---- */

/* Rounds to nearest even; overflow gives infinity, NaN stays NaN. */
static uint16_t half_from_float(float f)
{
    uint32_t x = float_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* infinity, or NaN made quiet */
        return (uint16_t)(sign | 0x7c00u |
                          (ax > 0x7f800000u ? 0x0200u | ((ax >> 13) & 0x3ffu) : 0u));
    if (ax < 0x38800000u) {
        /* Below 2^-14: a subnormal half, m * 2^-24; below 2^-25 it rounds to zero. */
        if (ax < 0x33000000u)
            return (uint16_t)sign;
        uint32_t exp = ax >> 23;
        uint32_t mant = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - exp; /* 14..24 */
        uint32_t m = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (m & 1)))
            m++; /* may carry into the smallest normal, which is the right encoding */
        return (uint16_t)(sign | m);
    }
    /* Rebias the exponent (127 - 15); a rounding carry may reach infinity, as it should. */
    uint32_t h = (ax - 0x38000000u) >> 13;
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
        h++;
    if (h > 0x7c00u)
        h = 0x7c00u;
    return (uint16_t)(sign | h);
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0) {
        float mag = (float)mant * 0x1p-24f; /* exact: at most 10 significant bits */
        return sign ? -mag : mag;
    }
    if (exp == 31)
        return bits_float(sign | 0x7f800000u | (mant << 13));
    return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
}

static size_t f16_bytes(size_t k)
{
    return 2 * k;
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static void f16_encode(const float *v, size_t k, uint8_t *out)
{
    for (size_t i = 0; i < k; i++) {
        uint16_t h = half_from_float(v[i]);
        /* Beyond +-65504 saturate: infinity would be refused by the decoder. */
        if ((h & 0x7fffu) == 0x7c00u)
            h = (uint16_t)((h & 0x8000u) | 0x7bffu);
        put_u16(out + 2 * i, h);
    }
}

static void f16_decode(const uint8_t *in, size_t k, float *v)
{
    for (size_t i = 0; i < k; i++)
        v[i] = half_to_float(get_u16(in + 2 * i));
}

/* ---- bf16: the top 16 bits of a float32 ---- */

static uint16_t bf16_from_float(float f)
{
    uint32_t x = float_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x0040u); /* NaN: keep it a (quiet) NaN */
    x += 0x7fffu + ((x >> 16) & 1);             /* round to nearest even */
    return (uint16_t)(x >> 16);
}

static void bf16_encode(const float *v, size_t k, uint8_t *out)
{
    for (size_t i = 0; i < k; i++) {
        uint16_t b = bf16_from_float(v[i]);
        if ((b & 0x7fffu) == 0x7f80u) /* rounded up past FLT_MAX: saturate */
            b = (uint16_t)((b & 0x8000u) | 0x7f7fu);
        put_u16(out + 2 * i, b);
    }
}

static void bf16_decode(const uint8_t *in, size_t k, float *v)
{
    for (size_t i = 0; i < k; i++)
        v[i] = bits_float((uint32_t)get_u16(in + 2 * i) << 16);
}

/* ---- int8 and sign: block scales, then the codes ---- */

/* Checks that the scales of the blocks of k values are finite and not negative. */
static gdml_err check_scales(const uint8_t *in, size_t k, const char *what, gdml_errmsg *e)
{
    for (size_t b = 0; b < blocks(k); b++) {
        float s = gdml_codec_get_f32(in + 4 * b);
        if (!isfinite(s) || s < 0.0f)
            return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                                   "codec payload: %s scale of block %zu is %g, not a finite "
                                   "number >= 0",
                                   what, b, (double)s);
    }
    return GDML_OK;
}

static size_t int8_bytes(size_t k)
{
    return 4 * blocks(k) + k;
}

/*
 * Rounds r (|r| <= 127) to the nearest integer, ties to even, as lrintf does
 * in the default rounding mode: adding 1.5 * 2^23 leaves no fraction bits.
 * Unlike lrintf it is inlined, which makes int8 encoding several times faster.
 */
static float round_even(float r)
{
    const float magic = 0x1.8p23f;
    return (r + magic) - magic;
}

/* The scale of block v[lo..hi): max |v| / levels, stepped down until levels * scale is finite. */
static float block_scale(const float *v, size_t lo, size_t hi, float levels)
{
    float max = 0.0f;
    for (size_t i = lo; i < hi; i++)
        max = fabsf(v[i]) > max ? fabsf(v[i]) : max;
    float scale = max / levels;
    while (isinf(scale * levels)) /* near FLT_MAX */
        scale = nextafterf(scale, 0.0f);
    return scale;
}

/*
 * Quantizes v[0..k) to integers in [-levels, levels], block by block: writes
 * each block's scale (max |v| / levels) at out + 4 * b and hands each code to
 * put(codes, i, q). Shared by int8 and int4, which differ only in packing.
 */
static void quantize_blocks(const float *v, size_t k, uint8_t *out, float levels,
                            void (*put)(uint8_t *codes, size_t i, int q))
{
    uint8_t *codes = out + 4 * blocks(k);
    for (size_t b = 0; b < blocks(k); b++) {
        size_t lo = b * GDML_CODEC_BLOCK;
        size_t hi = lo + GDML_CODEC_BLOCK < k ? lo + GDML_CODEC_BLOCK : k;
        float scale = block_scale(v, lo, hi, levels);
        gdml_codec_put_f32(out + 4 * b, scale);
        for (size_t i = lo; i < hi; i++) {
            /* A subnormal scale can push v / scale past the levels (or to infinity): clamp. */
            float r = scale == 0.0f ? 0.0f : fminf(fmaxf(v[i] / scale, -levels), levels);
            put(codes, i, (int)round_even(r));
        }
    }
}

static void int8_put(uint8_t *codes, size_t i, int q)
{
    codes[i] = (uint8_t)(int8_t)q;
}

static void int8_encode(const float *v, size_t k, uint8_t *out)
{
    quantize_blocks(v, k, out, INT8_LEVELS, int8_put);
}

static gdml_err int8_check(const uint8_t *in, size_t k, gdml_errmsg *e)
{
    gdml_err err = check_scales(in, k, "int8", e);
    if (err)
        return err;
    const uint8_t *codes = in + 4 * blocks(k);
    for (size_t i = 0; i < k; i++)
        if (codes[i] == 0x80u)
            return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                                   "codec payload: int8 value %zu is -128, outside [-127, 127]", i);
    return GDML_OK;
}

static void int8_decode(const uint8_t *in, size_t k, float *v)
{
    const uint8_t *codes = in + 4 * blocks(k);
    for (size_t b = 0; b < blocks(k); b++) {
        size_t lo = b * GDML_CODEC_BLOCK;
        size_t hi = lo + GDML_CODEC_BLOCK < k ? lo + GDML_CODEC_BLOCK : k;
        float scale = gdml_codec_get_f32(in + 4 * b);
        for (size_t i = lo; i < hi; i++)
            v[i] = (float)(int8_t)codes[i] * scale;
    }
}

/* int4: two codes a byte, the even index in the low nibble; an odd k pads with 0. */
static size_t int4_bytes(size_t k)
{
    return 4 * blocks(k) + (k + 1) / 2;
}

static void int4_put(uint8_t *codes, size_t i, int q)
{
    unsigned nibble = (unsigned)q & 0xfu, shift = 4u * (unsigned)(i % 2);
    codes[i / 2] = (uint8_t)((codes[i / 2] & ~(0xfu << shift)) | nibble << shift);
}

static void int4_encode(const float *v, size_t k, uint8_t *out)
{
    memset(out + 4 * blocks(k), 0, (k + 1) / 2);
    quantize_blocks(v, k, out, INT4_LEVELS, int4_put);
}

static int int4_get(const uint8_t *codes, size_t i)
{
    int nibble = (codes[i / 2] >> (4 * (i % 2))) & 0xf;
    return nibble >= 8 ? nibble - 16 : nibble;
}

static gdml_err int4_check(const uint8_t *in, size_t k, gdml_errmsg *e)
{
    gdml_err err = check_scales(in, k, "int4", e);
    if (err)
        return err;
    const uint8_t *codes = in + 4 * blocks(k);
    for (size_t i = 0; i < k; i++)
        if (int4_get(codes, i) == -8)
            return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                                   "codec payload: int4 value %zu is -8, outside [-7, 7]", i);
    if (k % 2 && codes[k / 2] >> 4)
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "codec payload: int4 padding nibble is not zero");
    return GDML_OK;
}

static void int4_decode(const uint8_t *in, size_t k, float *v)
{
    const uint8_t *codes = in + 4 * blocks(k);
    for (size_t i = 0; i < k; i++)
        v[i] = (float)int4_get(codes, i) * gdml_codec_get_f32(in + 4 * (i / GDML_CODEC_BLOCK));
}

/*
 * int2: four levels a value, (2q - 3) * scale for the code q in 0..3, four
 * codes a byte (value i in bits 2*(i%4)), scale = max|v| / 3 per block. The
 * grid has no zero: what an encoder that selects sends is the largest
 * entries, for which -s, s are worth more than 0, and every level is used.
 * |v - decode| <= scale for every |v| <= max. An odd tail pads with 0 bits.
 */
static size_t int2_bytes(size_t k)
{
    return 4 * blocks(k) + (k + 3) / 4;
}

static void int2_encode(const float *v, size_t k, uint8_t *out)
{
    uint8_t *codes = out + 4 * blocks(k);
    memset(codes, 0, (k + 3) / 4);
    for (size_t b = 0; b < blocks(k); b++) {
        size_t lo = b * GDML_CODEC_BLOCK;
        size_t hi = lo + GDML_CODEC_BLOCK < k ? lo + GDML_CODEC_BLOCK : k;
        float scale = block_scale(v, lo, hi, INT2_LEVELS);
        gdml_codec_put_f32(out + 4 * b, scale);
        for (size_t i = lo; i < hi; i++) {
            /* The nearest odd level: (r + 3) / 2 rounded is its code. */
            float r = scale == 0.0f ? 0.0f : fminf(fmaxf(v[i] / scale, -3.0f), 3.0f);
            int q = (int)round_even((r + 3.0f) / 2.0f);
            q = q < 0 ? 0 : q > 3 ? 3 : q;
            codes[i / 4] |= (uint8_t)((unsigned)q << (2 * (i % 4)));
        }
    }
}

static gdml_err int2_check(const uint8_t *in, size_t k, gdml_errmsg *e)
{
    gdml_err err = check_scales(in, k, "int2", e);
    if (err)
        return err;
    if (k % 4 && in[4 * blocks(k) + k / 4] >> (2 * (k % 4)))
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "codec payload: int2 padding bits are not zero");
    return GDML_OK;
}

static void int2_decode(const uint8_t *in, size_t k, float *v)
{
    const uint8_t *codes = in + 4 * blocks(k);
    for (size_t i = 0; i < k; i++) {
        int q = (codes[i / 4] >> (2 * (i % 4))) & 3;
        v[i] = (float)(2 * q - 3) * gdml_codec_get_f32(in + 4 * (i / GDML_CODEC_BLOCK));
    }
}

static size_t sign_bytes(size_t k)
{
    return 4 * blocks(k) + (k + 7) / 8;
}

static void sign_encode(const float *v, size_t k, uint8_t *out)
{
    uint8_t *bits = out + 4 * blocks(k);
    memset(bits, 0, (k + 7) / 8);
    for (size_t b = 0; b < blocks(k); b++) {
        size_t lo = b * GDML_CODEC_BLOCK;
        size_t hi = lo + GDML_CODEC_BLOCK < k ? lo + GDML_CODEC_BLOCK : k;
        double sum = 0.0;
        for (size_t i = lo; i < hi; i++)
            sum += fabs((double)v[i]);
        gdml_codec_put_f32(out + 4 * b, (float)(sum / (double)(hi - lo)));
        for (size_t i = lo; i < hi; i++)
            bits[i / 8] |= (uint8_t)((unsigned)(v[i] < 0.0f) << (i % 8));
    }
}

static gdml_err sign_check(const uint8_t *in, size_t k, gdml_errmsg *e)
{
    gdml_err err = check_scales(in, k, "sign", e);
    if (err)
        return err;
    /* The bits after the k-th in the last byte are padding and must be 0. */
    if (k % 8) {
        uint8_t last = in[4 * blocks(k) + k / 8];
        if (last >> (k % 8))
            return gdml_errmsg_set(
                e, GDML_ERR_FORMAT,
                "codec payload: sign padding bits are not zero (last byte 0x%02x "
                "for %zu values)",
                last, k);
    }
    return GDML_OK;
}

static void sign_decode(const uint8_t *in, size_t k, float *v)
{
    const uint8_t *bits = in + 4 * blocks(k);
    for (size_t b = 0; b < blocks(k); b++) {
        size_t lo = b * GDML_CODEC_BLOCK;
        size_t hi = lo + GDML_CODEC_BLOCK < k ? lo + GDML_CODEC_BLOCK : k;
        /* A zero scale decodes to +0 whatever the bit says. */
        float scale = gdml_codec_get_f32(in + 4 * b),
              both[2] = {scale, scale == 0.0f ? 0.0f : -scale};
        for (size_t i = lo; i < hi; i++)
            v[i] = both[(bits[i / 8] >> (i % 8)) & 1];
    }
}

const gdml_quant_ops gdml_quant_f32 = {
    .name = "f32",
    .id = 0,
    .lossy = false,
    .bytes = f32_bytes,
    .encode = f32_encode,
    .check = NULL,
    .decode = f32_decode,
};

const gdml_quant_ops gdml_quant_f16 = {
    .name = "f16",
    .id = 1,
    .lossy = true,
    .bytes = f16_bytes,
    .encode = f16_encode,
    .check = NULL,
    .decode = f16_decode,
};

const gdml_quant_ops gdml_quant_bf16 = {
    .name = "bf16",
    .id = 2,
    .lossy = true,
    .bytes = f16_bytes,
    .encode = bf16_encode,
    .check = NULL,
    .decode = bf16_decode,
};

const gdml_quant_ops gdml_quant_int8 = {
    .name = "int8",
    .id = 3,
    .lossy = true,
    .bytes = int8_bytes,
    .encode = int8_encode,
    .check = int8_check,
    .decode = int8_decode,
};

const gdml_quant_ops gdml_quant_int4 = {
    .name = "int4",
    .id = 5,
    .lossy = true,
    .bytes = int4_bytes,
    .encode = int4_encode,
    .check = int4_check,
    .decode = int4_decode,
};

const gdml_quant_ops gdml_quant_int2 = {
    .name = "int2",
    .id = 7,
    .lossy = true,
    .bytes = int2_bytes,
    .encode = int2_encode,
    .check = int2_check,
    .decode = int2_decode,
};

const gdml_quant_ops gdml_quant_sign = {
    .name = "sign",
    .id = 4,
    .lossy = true,
    .bytes = sign_bytes,
    .encode = sign_encode,
    .check = sign_check,
    .decode = sign_decode,
};

/* ---- none: no values at all, for a list of keys (a sparse model's pull) ---- */

static size_t none_bytes(size_t k)
{
    (void)k;
    return 0;
}

static void none_encode(const float *v, size_t k, uint8_t *out)
{
    (void)v, (void)k, (void)out;
}

/* Every key present decodes to 1: a mask of the keys. */
static void none_decode(const uint8_t *in, size_t k, float *v)
{
    (void)in;
    for (size_t i = 0; i < k; i++)
        v[i] = 1.0f;
}

const gdml_quant_ops gdml_quant_none = {
    .name = "none",
    .id = 6,
    .lossy = true,
    .internal = true,
    .bytes = none_bytes,
    .encode = none_encode,
    .check = NULL,
    .decode = none_decode,
};
