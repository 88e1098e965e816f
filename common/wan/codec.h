/*
 * codec.h - WAN tensor encoders: what crosses the WAN, and how small.
 *
 * An encoder is a selector (which entries are sent) composed with a quantizer
 * (how each sent value is written), named "selector+quantizer" or by one part
 * alone (the other taking its default, "all" or "f32"):
 *
 *   selectors   all           every entry (dense)
 *               topk          the k entries of largest magnitude
 *               randk         k entries chosen uniformly at random
 *               significance  Gaia's filter: entries whose accumulated change
 *                             relative to the current parameter value exceeds
 *                             a threshold, |x_i| > threshold * |ref_i|
 *                             (at most k of them, the most significant first)
 *               keys          the entries a list names (gdml_codec_params.keys):
 *                             what a sparse model's worker pulls and pushes
 *   quantizers  f32           4 bytes a value (lossless)
 *               f16, bf16     2 bytes a value (IEEE half; bfloat16), round to nearest even
 *               int8          1 byte a value, plus a float32 scale per block of
 *                             GDML_CODEC_BLOCK values: q = round(v / scale),
 *                             scale = max|v| / 127 over the block
 *               int4          half a byte a value (two a byte, even index in the
 *                             low nibble), scale = max|v| / 7 per block
 *               int2          2 bits a value (four a byte, value i in bits
 *                             2*(i%4)): code q in 0..3 decodes to (2q - 3) *
 *                             scale, scale = max|v| / 3 per block (no zero
 *                             level: what a selector keeps is large)
 *               sign          1 bit a value, plus a float32 scale per block:
 *                             the mean |v| of the block; decodes to +-scale
 *               none          no values: a payload of keys alone (a pull); each
 *                             decodes to 1
 *   "dense" is "all+f32". Examples: "topk+int8", "significance", "bf16".
 *   keys and none are gdml's own; gdml_codec_spec_ok refuses them.
 *
 * "all" writes a slice in the sparse form, its non-zero entries and their
 * indices, wherever that is smaller than the dense form (as a sparse model's
 * update mostly is); decoding gives the same values either way.
 *
 * Selectors and quantizers are each a table of operations (codec.c), so a new
 * one is one table row and its functions.
 *
 * Payload format (little-endian; docs/protocol.md has the byte table):
 *   u8 format (1), u8 selector id, u8 quantizer id, u8 flags (bit 0: sparse),
 *   u32 n (entries in the tensor), u32 k (entries present; n when dense),
 *   if sparse: k indices, strictly increasing, as LEB128 varints of the gap
 *              (first: the index itself; then index - previous - 1),
 *   the k values as the quantizer writes them.
 * A payload is self-describing: decoding needs only n, never the encoder.
 *
 * Error feedback: every lossy encoding leaves a residual (what was meant
 * minus what the receiver will decode); gdml_codec_encode_ef adds the
 * residual of the previous message before encoding and stores the new one,
 * so nothing that was not sent is forgotten (Karimireddy et al. 2019).
 */
#ifndef GDML_CODEC_H
#define GDML_CODEC_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GDML_CODEC_BLOCK 256 /* values per int8/sign scale */
#define GDML_CODEC_HEADER 12 /* bytes before indices and values */
#define GDML_CODEC_NAME_MAX 32

typedef struct gdml_codec gdml_codec;

/* What one encode may send; fields a selector does not use are ignored. */
typedef struct gdml_codec_params {
    size_t k;             /* topk, randk: entries to send; significance: at most this many */
    double threshold;     /* significance: relative change that makes an entry significant */
    const float *ref;     /* significance: the current parameter values (n of them) */
    const uint32_t *keys; /* keys: the entries to send, strictly increasing */
    size_t n_keys;
} gdml_codec_params;

/*
 * Parses spec ("topk+int8", "dense", ...) for tensors of n entries and makes
 * an encoder (with its scratch and, for randk, a generator seeded by seed).
 * Returns GDML_ERR_INVALID with e listing the known selectors and quantizers
 * if spec is not one of them, or n is 0 or above UINT32_MAX.
 */
gdml_err gdml_codec_new(const char *spec, size_t n, uint64_t seed, gdml_codec **out,
                        gdml_errmsg *e);

/* Frees the encoder. NULL-safe; clears *c. */
void gdml_codec_destroy(gdml_codec **c);

/* True if spec names a known encoder (for configuration checks); e says why not. */
bool gdml_codec_spec_ok(const char *spec, gdml_errmsg *e);

/* The canonical name, "selector+quantizer". */
const char *gdml_codec_name(const gdml_codec *c);

/* The number of entries of the tensors it encodes. */
size_t gdml_codec_size(const gdml_codec *c);

/* True if the selector sends a subset (topk, randk, significance). */
bool gdml_codec_sparse(const gdml_codec *c);

/* True if decode(encode(x)) can differ from x. */
bool gdml_codec_lossy(const gdml_codec *c);

/* Largest payload, in bytes, of one encoding of the whole tensor with k entries present. */
size_t gdml_codec_max_bytes(const gdml_codec *c, size_t k);

/* Largest payload of a slice of m entries with k of them present. */
size_t gdml_codec_chunk_max_bytes(const gdml_codec *c, size_t m, size_t k);

/*
 * Largest total of the payloads when the tensor is written in slices of
 * `chunk` entries (the last one shorter) and k entries are present in all.
 */
size_t gdml_codec_max_bytes_chunked(const gdml_codec *c, size_t k, size_t chunk);

/*
 * Largest k (<= n) whose payload surely fits in bytes; 0 if not even one
 * entry fits. For a dense encoder: n if the whole tensor fits, else 0.
 */
size_t gdml_codec_k_for_bytes(const gdml_codec *c, size_t bytes);

/*
 * Chooses what of x[0..n) an encoding sends (all of it for a dense
 * selector) and stores *k, the entries chosen. gdml_codec_write then writes
 * the payload of any slice. Returns GDML_ERR_INVALID if x holds a value that
 * is not finite or p is out of range.
 */
gdml_err gdml_codec_select(gdml_codec *c, const float *x, const gdml_codec_params *p, size_t *k);

/*
 * A dense codec's selection for one slice: checks that x[lo..hi) is finite
 * (GDML_ERR_INVALID if not) and selects all of the tensor, so that
 * gdml_codec_write can write that slice. For a tensor sent slice by slice as
 * each is ready; the caller checks each slice it writes.
 */
gdml_err gdml_codec_select_slice(gdml_codec *c, const float *x, size_t lo, size_t hi);

/* Entries of the last selection in [lo, hi). */
size_t gdml_codec_selected_in(const gdml_codec *c, size_t lo, size_t hi);

/*
 * Writes the payload of slice x[lo..hi) of the last selection into
 * out[0..cap) (a payload of hi - lo entries, indices relative to lo) and its
 * size into *len. If decoded is not NULL, decoded[lo..hi) receives what
 * gdml_codec_decode will make of it; it may be x itself. GDML_ERR_NOMEM if
 * cap is too small.
 */
gdml_err gdml_codec_write(gdml_codec *c, const float *x, size_t lo, size_t hi, uint8_t *out,
                          size_t cap, size_t *len, float *decoded);

/*
 * Selects and writes the whole tensor as one payload: encodes x[0..n) into
 * out[0..cap) and stores the payload size in *len. If decoded is not NULL it
 * receives exactly what gdml_codec_decode will produce from the payload
 * (zeros where nothing was sent). Returns GDML_ERR_NOMEM if
 * cap < gdml_codec_max_bytes(c, k) for the k it would send.
 */
gdml_err gdml_codec_encode(gdml_codec *c, const float *x, const gdml_codec_params *p, uint8_t *out,
                           size_t cap, size_t *len, float *decoded);

/*
 * Encodes with error feedback: e = u + residual; out = encode(e);
 * residual = e - decode(out). residual[0..n) is the link's state, kept by the
 * caller between messages (start at zeros). For a lossless encoder residual
 * stays zero.
 */
gdml_err gdml_codec_encode_ef(gdml_codec *c, const float *u, float *residual,
                              const gdml_codec_params *p, uint8_t *out, size_t cap, size_t *len);

/* The number of entries a payload holds (its k field); 0 if it is too short. */
size_t gdml_codec_payload_k(const uint8_t *payload, size_t len);

/*
 * Decodes a payload of a slice of n entries as its entries alone: their
 * indices (increasing, within the slice) into idx and values into val, at
 * most cap of them, and their count into *count. Checks all that
 * gdml_codec_decode checks, without writing n floats: what a sparse model's
 * receivers use. GDML_ERR_FORMAT with e, also for more than cap entries.
 */
gdml_err gdml_codec_decode_entries(const uint8_t *in, size_t len, size_t n, uint32_t *idx,
                                   float *val, size_t cap, size_t *count, gdml_errmsg *e);

/*
 * The indices of the entries a payload holds, which gdml_codec_decode has
 * accepted, into out[0..k) (k = gdml_codec_payload_k); returns k. For the
 * keys of a sparse model's pull.
 */
size_t gdml_codec_payload_indices(const uint8_t *payload, size_t len, uint32_t *out);

/*
 * Decodes a payload into out[0..n) (overwritten; zeros where absent). Checks
 * everything before trusting it: format, ids, n, k <= n, indices in range and
 * increasing, exact length, finite scales and values. GDML_ERR_FORMAT with e
 * saying what is wrong; out is then unspecified.
 */
gdml_err gdml_codec_decode(const uint8_t *in, size_t len, float *out, size_t n, gdml_errmsg *e);

#endif
