/*
 * test_codec.c - the WAN encoders: every selector x quantizer round trip with
 * its exact entries and error bound, the selectors' choices against brute
 * force, the size bounds the budget controller relies on, error feedback,
 * spec parsing, and a decoder that refuses every malformed payload without
 * reading out of bounds.
 */
#include "codec.h"
#include "rng.h"

#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const selector_names[] = {"all", "topk", "randk", "significance"};
static const char *const quantizer_names[] = {"f32",  "f16",  "bf16", "int8",
                                              "int4", "int2", "sign"};
#define N_SELECTORS (sizeof selector_names / sizeof selector_names[0])
#define N_QUANTIZERS (sizeof quantizer_names / sizeof quantizer_names[0])

/* ---- helpers ---- */

static gdml_codec *make(const char *spec, size_t n, uint64_t seed)
{
    gdml_codec *c = NULL;
    gdml_errmsg e;
    cr_assert_eq(gdml_codec_new(spec, n, seed, &c, &e), GDML_OK, "%s: %s", spec, e.text);
    return c;
}

static void fill_normal(gdml_rng *r, float *x, size_t n, double sigma)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(sigma * gdml_rng_normal(r));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_f32(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    put_u32(p, u);
}

/* Writes a payload header as docs/protocol.md describes it; returns its size. */
static size_t put_header(uint8_t *p, uint8_t sel, uint8_t q, uint8_t flags, uint32_t n, uint32_t k)
{
    p[0] = 1;
    p[1] = sel;
    p[2] = q;
    p[3] = flags;
    put_u32(p + 4, n);
    put_u32(p + 8, k);
    return GDML_CODEC_HEADER;
}

static size_t put_varint(uint8_t *p, uint32_t v)
{
    size_t len = 0;
    for (; v >= 0x80; v >>= 7)
        p[len++] = (uint8_t)(v | 0x80);
    p[len++] = (uint8_t)v;
    return len;
}

/* Reads the indices of a valid sparse payload (per docs/protocol.md) into idx; returns k. */
static size_t payload_indices(const uint8_t *p, uint32_t *idx)
{
    size_t k = get_u32(p + 8), pos = GDML_CODEC_HEADER;
    uint32_t next = 0;
    for (size_t j = 0; j < k; j++) {
        uint32_t gap = 0;
        for (int shift = 0;; shift += 7) {
            gap |= (uint32_t)(p[pos] & 0x7f) << shift;
            if (!(p[pos++] & 0x80))
                break;
        }
        idx[j] = next + gap;
        next = idx[j] + 1;
    }
    return k;
}

static const float *sort_key;

/* Larger magnitude first; equal magnitudes by lower index. */
static int by_magnitude(const void *a, const void *b)
{
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    float x = fabsf(sort_key[i]), y = fabsf(sort_key[j]);
    if (x != y)
        return x > y ? -1 : 1;
    return i < j ? -1 : i > j;
}

static int by_index(const void *a, const void *b)
{
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    return i < j ? -1 : i > j;
}

/* The k entries of largest |x| (lowest index on ties), increasing; brute force. */
static void brute_topk(const float *x, size_t n, size_t k, uint32_t *idx)
{
    uint32_t *all = malloc(n * sizeof *all);
    for (size_t i = 0; i < n; i++)
        all[i] = (uint32_t)i;
    sort_key = x;
    qsort(all, n, sizeof *all, by_magnitude);
    memcpy(idx, all, k * sizeof *idx);
    qsort(idx, k, sizeof *idx, by_index);
    free(all);
}

static bool significant(float x, const float *ref, size_t i, double threshold)
{
    return fabs((double)x) > threshold * (ref ? fabs((double)ref[i]) : 1.0);
}

/* The key significance ranks by, as the codec computes it. */
static float significance_ratio(float x, const float *ref, size_t i)
{
    double a = fabs((double)x);
    return (float)(ref ? a / fmax(fabs((double)ref[i]), 1e-30) : a);
}

/*
 * Checks the values decoded for the sent entries (in order) against the
 * quantizer's bound; blocks run over the sent values.
 */
static void check_values(const char *q, const float *sent, const float *got, size_t k,
                         const char *spec)
{
    for (size_t lo = 0; lo < k; lo += GDML_CODEC_BLOCK) {
        size_t hi = lo + GDML_CODEC_BLOCK < k ? lo + GDML_CODEC_BLOCK : k;
        float max = 0.0f;
        double sum = 0.0;
        for (size_t j = lo; j < hi; j++) {
            max = fmaxf(max, fabsf(sent[j]));
            sum += fabs((double)sent[j]);
        }
        float mean = (float)(sum / (double)(hi - lo));
        for (size_t j = lo; j < hi; j++) {
            float v = sent[j], d = got[j];
            if (strcmp(q, "f32") == 0)
                cr_assert(d == v, "%s: value %zu: %g != %g", spec, j, d, v);
            else if (strcmp(q, "f16") == 0)
                cr_assert(fabsf(d - v) <= 4.9e-4f * fabsf(v) + 3e-8f, "%s: value %zu: %g for %g",
                          spec, j, d, v);
            else if (strcmp(q, "bf16") == 0)
                cr_assert(fabsf(d - v) <= 3.91e-3f * fabsf(v), "%s: value %zu: %g for %g", spec, j,
                          d, v);
            else if (strcmp(q, "int8") == 0 || strcmp(q, "int4") == 0) {
                float levels = strcmp(q, "int8") == 0 ? 127.0f : 7.0f;
                cr_assert(fabsf(d - v) <= max / levels / 2.0f + 1e-6f * max,
                          "%s: value %zu: %g for %g (block max %g)", spec, j, d, v, max);
            } else if (strcmp(q, "int2") == 0) {
                /* Levels +-s, +-3s with s = max / 3: at most s away, and on the grid. */
                float s = max / 3.0f, level = s > 0.0f ? d / s : 0.0f;
                cr_assert(fabsf(d - v) <= s * (1.0f + 1e-5f), "%s: value %zu: %g for %g (max %g)",
                          spec, j, d, v, max);
                cr_assert(s == 0.0f || fabsf(fabsf(level) - 1.0f) < 1e-4f ||
                              fabsf(fabsf(level) - 3.0f) < 1e-4f,
                          "%s: value %zu decodes to %g scales", spec, j, level);
            } else
                cr_assert(d == (v < 0.0f ? -mean : mean), "%s: value %zu: %g for %g, mean %g", spec,
                          j, d, v, mean);
        }
    }
}

/*
 * Encodes random data with spec and checks everything a round trip promises:
 * the exact entries, the value bound, decoded == decode(payload) bit for bit,
 * zeros elsewhere, and the size bounds.
 */
static void round_trip(const char *sel, const char *q, size_t n, size_t k, uint64_t seed)
{
    char spec[64];
    snprintf(spec, sizeof spec, "%s+%s", sel, q);
    gdml_codec *c = make(spec, n, seed);
    gdml_rng r;
    gdml_rng_seed(&r, seed);
    float *x = malloc(n * sizeof *x), *ref = malloc(n * sizeof *ref);
    float *dec = malloc(n * sizeof *dec), *dec2 = malloc(n * sizeof *dec2);
    float *sent = malloc(n * sizeof *sent), *got = malloc(n * sizeof *got);
    uint32_t *idx = malloc(n * sizeof *idx), *want = malloc(n * sizeof *want);
    fill_normal(&r, x, n, 0.01);
    fill_normal(&r, ref, n, 1.0);
    gdml_codec_params p = {.k = k, .threshold = 0.02, .ref = ref};

    size_t cap = gdml_codec_max_bytes(c, n), len = 0;
    uint8_t *buf = malloc(cap);
    cr_assert_eq(gdml_codec_encode(c, x, &p, buf, cap, &len, dec), GDML_OK, "%s", spec);

    /* The entries expected. */
    size_t expect_k = 0;
    if (strcmp(sel, "all") == 0) {
        for (size_t i = 0; i < n; i++)
            want[expect_k++] = (uint32_t)i;
    } else if (strcmp(sel, "topk") == 0) {
        expect_k = k < n ? k : n;
        brute_topk(x, n, expect_k, want);
    } else if (strcmp(sel, "randk") == 0) {
        expect_k = k < n ? k : n;
    } else {
        for (size_t i = 0; i < n; i++)
            if (significant(x[i], ref, i, p.threshold))
                want[expect_k++] = (uint32_t)i;
        cr_assert_leq(expect_k, k, "%s: the test wants k above the candidates", spec);
    }
    cr_assert_eq(get_u32(buf + 8), expect_k, "%s: k %u, expected %zu", spec, get_u32(buf + 8),
                 expect_k);
    if (gdml_codec_sparse(c)) {
        cr_assert_eq(payload_indices(buf, idx), expect_k);
        for (size_t j = 0; j < expect_k; j++) {
            cr_assert_lt(idx[j], n, "%s", spec);
            cr_assert(j == 0 || idx[j] > idx[j - 1], "%s: indices not increasing", spec);
            if (strcmp(sel, "randk") != 0)
                cr_assert_eq(idx[j], want[j], "%s: entry %zu is %u, expected %u", spec, j, idx[j],
                             want[j]);
        }
    } else {
        memcpy(idx, want, n * sizeof *idx);
    }

    /* Values within the bound; zeros where nothing was sent. */
    for (size_t j = 0; j < expect_k; j++) {
        sent[j] = x[idx[j]];
        got[j] = dec[idx[j]];
    }
    check_values(q, sent, got, expect_k, spec);
    size_t zeros = 0;
    for (size_t i = 0; i < n; i++)
        zeros += dec[i] == 0.0f;
    size_t zero_sent = 0;
    for (size_t j = 0; j < expect_k; j++)
        zero_sent += got[j] == 0.0f;
    cr_assert_eq(zeros, n - expect_k + zero_sent, "%s: nonzero where nothing was sent", spec);

    /* decoded is exactly what the receiver decodes. */
    gdml_errmsg e;
    cr_assert_eq(gdml_codec_decode(buf, len, dec2, n, &e), GDML_OK, "%s: %s", spec, e.text);
    cr_assert(memcmp(dec, dec2, n * sizeof *dec) == 0, "%s: decoded differs from decode()", spec);

    /* Size bounds. */
    cr_assert_leq(len, gdml_codec_max_bytes(c, expect_k), "%s: %zu bytes > max %zu", spec, len,
                  gdml_codec_max_bytes(c, expect_k));
    cr_assert_geq(gdml_codec_k_for_bytes(c, gdml_codec_max_bytes(c, expect_k)), expect_k, "%s",
                  spec);
    cr_assert_eq(gdml_codec_lossy(c), strcmp(spec, "all+f32") != 0, "%s", spec);

    free(buf);
    free(x);
    free(ref);
    free(dec);
    free(dec2);
    free(sent);
    free(got);
    free(idx);
    free(want);
    gdml_codec_destroy(&c);
}

/* ---- round trips ---- */

Test(codec, every_combination_round_trips)
{
    const size_t sizes[][2] = {{1000, 600}, {7850, 785}, {300, 256}, {5, 3}, {1, 1}, {513, 513}};
    for (size_t s = 0; s < N_SELECTORS; s++)
        for (size_t q = 0; q < N_QUANTIZERS; q++)
            for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
                size_t n = sizes[z][0], k = sizes[z][1];
                /* significance sends all candidates when k allows it. */
                round_trip(selector_names[s], quantizer_names[q], n, s == 3 ? n : k, 17 + z);
            }
}

Test(codec, sparse_selectors_send_nothing_for_k_zero)
{
    for (size_t s = 1; s < N_SELECTORS; s++)
        for (size_t q = 0; q < N_QUANTIZERS; q++) {
            char spec[64];
            snprintf(spec, sizeof spec, "%s+%s", selector_names[s], quantizer_names[q]);
            gdml_codec *c = make(spec, 100, 1);
            float x[100], dec[100], dec2[100];
            for (int i = 0; i < 100; i++)
                x[i] = (float)i + 1.0f;
            gdml_codec_params p = {.k = 0, .threshold = 0.5};
            uint8_t buf[64];
            size_t len;
            cr_assert_eq(gdml_codec_encode(c, x, &p, buf, sizeof buf, &len, dec), GDML_OK, "%s",
                         spec);
            cr_assert_eq(len, GDML_CODEC_HEADER, "%s: %zu bytes", spec, len);
            cr_assert_eq(len, gdml_codec_max_bytes(c, 0), "%s", spec);
            cr_assert_eq(get_u32(buf + 8), 0);
            gdml_errmsg e;
            cr_assert_eq(gdml_codec_decode(buf, len, dec2, 100, &e), GDML_OK, "%s: %s", spec,
                         e.text);
            for (int i = 0; i < 100; i++)
                cr_assert(dec[i] == 0.0f && dec2[i] == 0.0f, "%s", spec);
            gdml_codec_destroy(&c);
        }
}

Test(codec, k_above_n_sends_everything)
{
    gdml_codec *c = make("topk+f32", 10, 1);
    float x[10], dec[10];
    for (int i = 0; i < 10; i++)
        x[i] = (float)(i - 5);
    gdml_codec_params p = {.k = 1000};
    uint8_t buf[128];
    size_t len;
    cr_assert_eq(gdml_codec_encode(c, x, &p, buf, sizeof buf, &len, dec), GDML_OK);
    cr_assert_eq(get_u32(buf + 8), 10);
    cr_assert(memcmp(x, dec, sizeof x) == 0);
    cr_assert_eq(gdml_codec_max_bytes(c, 1000), gdml_codec_max_bytes(c, 10));
    gdml_codec_destroy(&c);
}

/* ---- selectors ---- */

Test(codec, topk_picks_exactly_the_largest_magnitudes)
{
    const size_t n = 5000;
    float x[5000];
    uint32_t want[5000], got[5000];
    uint8_t *buf = malloc(40000);
    gdml_codec *c = make("topk", n, 1);
    for (uint64_t seed = 0; seed < 20; seed++) {
        gdml_rng r;
        gdml_rng_seed(&r, seed);
        fill_normal(&r, x, n, 1.0);
        if (seed % 2) /* many ties: values from a small set */
            for (size_t i = 0; i < n; i++)
                x[i] = (float)((int)(x[i] * 3.0f)) / 3.0f;
        size_t k = 1 + (size_t)gdml_rng_below(&r, n);
        gdml_codec_params p = {.k = k};
        size_t len;
        cr_assert_eq(gdml_codec_encode(c, x, &p, buf, 40000, &len, NULL), GDML_OK);
        cr_assert_eq(payload_indices(buf, got), k);
        brute_topk(x, n, k, want);
        cr_assert(memcmp(got, want, k * sizeof *got) == 0, "seed %llu k %zu",
                  (unsigned long long)seed, k);
    }
    free(buf);
    gdml_codec_destroy(&c);
}

Test(codec, topk_breaks_ties_by_lowest_index)
{
    float x[10] = {1, -2, 2, 2, -2, 0, 2, 1, 1, 0};
    gdml_codec *c = make("topk", 10, 1);
    uint8_t buf[128];
    uint32_t idx[10];
    size_t len;
    gdml_codec_params p = {.k = 3};
    cr_assert_eq(gdml_codec_encode(c, x, &p, buf, sizeof buf, &len, NULL), GDML_OK);
    cr_assert_eq(payload_indices(buf, idx), 3);
    cr_assert(idx[0] == 1 && idx[1] == 2 && idx[2] == 3);
    gdml_codec_destroy(&c);
}

Test(codec, significance_picks_exactly_the_entries_above_the_threshold)
{
    const size_t n = 3000;
    float x[3000], ref[3000];
    uint32_t idx[3000];
    uint8_t buf[16000];
    gdml_codec *c = make("significance", n, 1);
    gdml_rng r;
    gdml_rng_seed(&r, 5);
    fill_normal(&r, x, n, 0.01);
    fill_normal(&r, ref, n, 1.0);
    ref[7] = 0.0f; /* any change to a zero parameter is significant */
    x[7] = 1e-6f;
    for (int with_ref = 0; with_ref < 2; with_ref++) {
        const float *rp = with_ref ? ref : NULL;
        double t = with_ref ? 0.01 : 0.012;
        size_t cand = 0;
        for (size_t i = 0; i < n; i++)
            cand += significant(x[i], rp, i, t);
        cr_assert(cand > 100 && cand < n - 100, "%zu candidates", cand);
        /* k above the candidates: exactly the candidates. */
        gdml_codec_params p = {.k = n, .threshold = t, .ref = rp};
        size_t len;
        cr_assert_eq(gdml_codec_encode(c, x, &p, buf, sizeof buf, &len, NULL), GDML_OK);
        cr_assert_eq(payload_indices(buf, idx), cand);
        for (size_t i = 0, j = 0; i < n; i++)
            if (significant(x[i], rp, i, t))
                cr_assert_eq(idx[j++], i);
        /* k below: k candidates, none less significant than one left out. */
        for (size_t k = 1; k < cand; k += cand / 7) {
            p.k = k;
            cr_assert_eq(gdml_codec_encode(c, x, &p, buf, sizeof buf, &len, NULL), GDML_OK);
            cr_assert_eq(payload_indices(buf, idx), k);
            bool chosen[3000] = {false};
            float least = INFINITY;
            for (size_t j = 0; j < k; j++) {
                cr_assert(significant(x[idx[j]], rp, idx[j], t));
                chosen[idx[j]] = true;
                least = fminf(least, significance_ratio(x[idx[j]], rp, idx[j]));
            }
            for (size_t i = 0; i < n; i++)
                if (!chosen[i] && significant(x[i], rp, i, t))
                    cr_assert_leq(significance_ratio(x[i], rp, i), least, "k %zu entry %zu", k, i);
        }
    }
    gdml_codec_params bad = {.k = n, .threshold = NAN};
    size_t len;
    cr_assert_eq(gdml_codec_encode(c, x, &bad, buf, sizeof buf, &len, NULL), GDML_ERR_INVALID);
    bad.threshold = -1.0;
    cr_assert_eq(gdml_codec_encode(c, x, &bad, buf, sizeof buf, &len, NULL), GDML_ERR_INVALID);
    gdml_codec_destroy(&c);
}

Test(codec, significance_is_strictly_above_the_threshold)
{
    float x[6] = {0.5f, -0.5f, 0.25f, 0.5000001f, -2.0f, 0.0f};
    float ref[6] = {1.0f, -1.0f, 0.5f, 1.0f, 4.0f, 0.0f};
    gdml_codec *c = make("significance", 6, 1);
    uint8_t buf[128];
    uint32_t idx[6];
    size_t len;
    gdml_codec_params p = {.k = 6, .threshold = 0.5, .ref = ref};
    cr_assert_eq(gdml_codec_encode(c, x, &p, buf, sizeof buf, &len, NULL), GDML_OK);
    cr_assert_eq(payload_indices(buf, idx), 1, "equal to threshold * |ref| counts as significant");
    cr_assert_eq(idx[0], 3);
    p.ref = NULL; /* |x| > 0.5 */
    cr_assert_eq(gdml_codec_encode(c, x, &p, buf, sizeof buf, &len, NULL), GDML_OK);
    cr_assert_eq(payload_indices(buf, idx), 2);
    cr_assert(idx[0] == 3 && idx[1] == 4);
    gdml_codec_destroy(&c);
}

Test(codec, randk_draws_distinct_uniform_and_repeatable_sets)
{
    const size_t n = 200, k = 20, rounds = 2000;
    gdml_codec *a = make("randk", n, 99), *b = make("randk", n, 99), *other = make("randk", n, 7);
    float x[200];
    for (size_t i = 0; i < n; i++)
        x[i] = 1.0f;
    uint8_t pa[512], pb[512], po[512];
    uint32_t idx[200];
    size_t count[200] = {0}, differ = 0;
    gdml_codec_params p = {.k = k};
    for (size_t round = 0; round < rounds; round++) {
        size_t la, lb, lo;
        cr_assert_eq(gdml_codec_encode(a, x, &p, pa, sizeof pa, &la, NULL), GDML_OK);
        cr_assert_eq(gdml_codec_encode(b, x, &p, pb, sizeof pb, &lb, NULL), GDML_OK);
        cr_assert_eq(gdml_codec_encode(other, x, &p, po, sizeof po, &lo, NULL), GDML_OK);
        cr_assert(la == lb && memcmp(pa, pb, la) == 0, "same seed, different draws");
        differ += la != lo || memcmp(pa, po, la) != 0;
        cr_assert_eq(payload_indices(pa, idx), k);
        for (size_t j = 0; j < k; j++) {
            cr_assert(j == 0 || idx[j] > idx[j - 1]);
            count[idx[j]]++;
        }
    }
    cr_assert_gt(differ, rounds - 5);
    /* Each index is drawn with probability k/n: 200 times expected, sd about 13.4. */
    for (size_t i = 0; i < n; i++)
        cr_assert(count[i] > 130 && count[i] < 270, "index %zu drawn %zu times", i, count[i]);
    gdml_codec_destroy(&a);
    gdml_codec_destroy(&b);
    gdml_codec_destroy(&other);
}

/* ---- quantizers ---- */

/* Encodes v[0..n) with "all+<q>" and returns the decoded values in out. */
static void quantize(const char *q, const float *v, size_t n, float *out)
{
    gdml_codec *c = make(q, n, 1);
    size_t cap = gdml_codec_max_bytes(c, n), len;
    uint8_t *buf = malloc(cap);
    cr_assert_eq(gdml_codec_encode(c, v, NULL, buf, cap, &len, out), GDML_OK, "%s", q);
    free(buf);
    gdml_codec_destroy(&c);
}

Test(codec, f16_and_bf16_round_to_nearest_even_and_saturate)
{
    const float in[] = {1.0f,
                        1.0f + 0x1p-11f,
                        1.0f + 3 * 0x1p-11f,
                        65504.0f,
                        65519.0f,
                        65520.0f,
                        1e6f,
                        -1e6f,
                        0x1p-24f,
                        0x1p-25f,
                        3 * 0x1p-25f,
                        0x1p-14f - 0x1p-25f,
                        -0.0f,
                        0.1f,
                        FLT_MAX};
    const float f16[] = {1.0f,     1.0f,     1.0f + 0x1p-9f, 65504.0f,         65504.0f,
                         65504.0f, 65504.0f, -65504.0f,      0x1p-24f,         0.0f,
                         0x1p-23f, 0x1p-14f, -0.0f,          0.0999755859375f, 65504.0f};
    float out[15];
    quantize("f16", in, 15, out);
    for (int i = 0; i < 15; i++)
        cr_assert(out[i] == f16[i] && signbit(out[i]) == signbit(f16[i]), "f16(%a) = %a, not %a",
                  in[i], out[i], f16[i]);
    const float bin[] = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, FLT_MAX, -FLT_MAX, 0x1p-130f, 3.0f};
    const float bf[] = {1.0f, 1.0f + 0x1p-6f, 0x1.fep127f, -0x1.fep127f, 0x1p-130f, 3.0f};
    quantize("bf16", bin, 6, out);
    for (int i = 0; i < 6; i++)
        cr_assert(out[i] == bf[i], "bf16(%a) = %a, not %a", bin[i], out[i], bf[i]);
}

Test(codec, every_finite_half_decodes_and_encodes_to_itself)
{
    /* A payload of all 63488 finite halves; re-encoding the decoded floats must give it back. */
    size_t n = 0;
    uint8_t *buf = malloc(GDML_CODEC_HEADER + 2 * 65536);
    for (uint32_t h = 0; h < 65536; h++)
        if (((h >> 10) & 0x1f) != 0x1f) {
            buf[GDML_CODEC_HEADER + 2 * n] = (uint8_t)h;
            buf[GDML_CODEC_HEADER + 2 * n + 1] = (uint8_t)(h >> 8);
            n++;
        }
    cr_assert_eq(n, 63488);
    put_header(buf, 0, 1, 0, (uint32_t)n, (uint32_t)n);
    float *v = malloc(n * sizeof *v), *again = malloc(n * sizeof *v);
    gdml_errmsg e;
    size_t len = GDML_CODEC_HEADER + 2 * n;
    cr_assert_eq(gdml_codec_decode(buf, len, v, n, &e), GDML_OK, "%s", e.text);
    gdml_codec *c = make("f16", n, 1);
    uint8_t *re = malloc(len);
    size_t relen;
    cr_assert_eq(gdml_codec_encode(c, v, NULL, re, len, &relen, again), GDML_OK);
    cr_assert_eq(relen, len);
    cr_assert(memcmp(re, buf, len) == 0);
    cr_assert(memcmp(v, again, n * sizeof *v) == 0);
    free(buf);
    free(re);
    free(v);
    free(again);
    gdml_codec_destroy(&c);
}

#ifdef __FLT16_MAX__
Test(codec, f16_agrees_with_the_compilers_half)
{
    /* Random bit patterns over the whole float range, compared with _Float16's rounding. */
    const size_t n = 200000;
    float *v = malloc(n * sizeof *v), *out = malloc(n * sizeof *out);
    gdml_rng r;
    gdml_rng_seed(&r, 3);
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)gdml_rng_u64(&r);
        u = (u & 0x80000000u) | (0x32000000u + u % (0x47800000u - 0x32000000u));
        memcpy(&v[i], &u, sizeof u);
    }
    quantize("f16", v, n, out);
    for (size_t i = 0; i < n; i++) {
        __extension__ _Float16 h = (_Float16)v[i];
        float want = fabsf((float)h) > 65504.0f ? copysignf(65504.0f, v[i]) : (float)h;
        cr_assert(out[i] == want, "f16(%a) = %a, compiler says %a", v[i], out[i], want);
    }
    free(v);
    free(out);
}
#endif

Test(codec, int8_and_sign_handle_zero_blocks)
{
    float v[600] = {0};
    for (int i = 256; i < 512; i++)
        v[i] = (float)(i % 7) - 3.0f; /* block 1 is not zero; blocks 0 and 2 are */
    float out[600];
    quantize("int8", v, 600, out);
    for (int i = 0; i < 600; i++)
        cr_assert(i >= 256 && i < 512 ? fabsf(out[i] - v[i]) <= 3.0f / 254.0f : out[i] == 0.0f);
    quantize("sign", v, 600, out);
    for (int i = 0; i < 600; i++)
        cr_assert(i >= 256 && i < 512 ? out[i] != 0.0f : out[i] == 0.0f);
}

Test(codec, int4_packs_two_values_a_byte_and_rejects_bad_nibbles)
{
    float v[5] = {7.0f, -7.0f, 3.0f, -1.0f, 0.0f}, out[5];
    quantize("int4", v, 5, out);
    for (int i = 0; i < 5; i++)
        cr_assert_float_eq(out[i], v[i], 1e-6, "value %d: %g", i, out[i]);
    gdml_codec *c = make("int4", 5, 1);
    cr_assert_eq(gdml_codec_max_bytes(c, 5), GDML_CODEC_HEADER + 4 + 3, "5 values: 3 bytes");
    uint8_t buf[64];
    size_t len;
    gdml_codec_params p = {.k = 5};
    cr_assert_eq(gdml_codec_encode(c, v, &p, buf, sizeof buf, &len, NULL), GDML_OK);
    gdml_errmsg e;
    uint8_t bad[64];
    memcpy(bad, buf, len);
    bad[len - 1] |= 0x80; /* the padding nibble of an odd count */
    cr_assert_eq(gdml_codec_decode(bad, len, out, 5, &e), GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, "padding"), "%s", e.text);
    memcpy(bad, buf, len);
    bad[GDML_CODEC_HEADER + 4] = 0x08; /* value 0 coded as -8 */
    cr_assert_eq(gdml_codec_decode(bad, len, out, 5, &e), GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, "-8"), "%s", e.text);
    gdml_codec_destroy(&c);
}

Test(codec, int2_packs_four_values_a_byte_and_rejects_bad_padding)
{
    /* Block max 3: the scale is 1, and the levels are -3, -1, 1, 3. */
    float v[6] = {3.0f, -3.0f, 0.9f, -1.2f, 2.1f, 0.0f}, out[6];
    const float want[6] = {3.0f, -3.0f, 1.0f, -1.0f, 3.0f, 1.0f};
    quantize("int2", v, 6, out);
    for (int i = 0; i < 6; i++)
        cr_assert(out[i] == want[i], "value %d: %g for %g, expected %g", i, out[i], v[i], want[i]);
    gdml_codec *c = make("topk+int2", 6, 1);
    cr_assert_eq(gdml_codec_max_bytes(c, 5), GDML_CODEC_HEADER + 5 + 4 + 2,
                 "5 values: 5 index bytes, a scale and 2 bytes of codes");
    gdml_codec_destroy(&c);
    c = make("int2", 6, 1);
    uint8_t buf[64];
    size_t len;
    cr_assert_eq(gdml_codec_encode(c, v, NULL, buf, sizeof buf, &len, NULL), GDML_OK);
    cr_assert_eq(len, GDML_CODEC_HEADER + 4 + 2, "6 values take 2 bytes");
    gdml_errmsg e;
    uint8_t bad[64];
    memcpy(bad, buf, len);
    bad[len - 1] |= 0x40; /* the padding bits after the 6th value */
    cr_assert_eq(gdml_codec_decode(bad, len, out, 6, &e), GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, "padding"), "%s", e.text);
    memcpy(bad, buf, len);
    put_f32(bad + GDML_CODEC_HEADER, -1.0f);
    cr_assert_eq(gdml_codec_decode(bad, len, out, 6, &e), GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, "int2 scale"), "%s", e.text);
    gdml_codec_destroy(&c);
}

Test(codec, encode_refuses_non_finite_input_and_small_buffers)
{
    gdml_codec *c = make("topk+int8", 100, 1);
    float x[100] = {0};
    uint8_t buf[1024];
    size_t len = 77;
    gdml_codec_params p = {.k = 10};
    x[40] = NAN;
    cr_assert_eq(gdml_codec_encode(c, x, &p, buf, sizeof buf, &len, NULL), GDML_ERR_INVALID);
    x[40] = INFINITY;
    cr_assert_eq(gdml_codec_encode(c, x, &p, buf, sizeof buf, &len, NULL), GDML_ERR_INVALID);
    x[40] = 1.0f;
    size_t need = gdml_codec_max_bytes(c, 10);
    cr_assert_eq(gdml_codec_encode(c, x, &p, buf, need - 1, &len, NULL), GDML_ERR_NOMEM);
    cr_assert_eq(len, 77, "len set on failure");
    cr_assert_eq(gdml_codec_encode(c, x, &p, buf, need, &len, NULL), GDML_OK);
    gdml_codec_destroy(&c);
}

/* ---- sizes ---- */

Test(codec, max_bytes_is_reached_by_the_widest_index_gaps)
{
    /* Indices 128, 257, ...: every varint is 2 bytes, which the bound must allow exactly. */
    const size_t k = 50, n = 129 * k;
    float *x = calloc(n, sizeof *x);
    for (size_t j = 0; j < k; j++)
        x[128 + 129 * j] = 1.0f;
    gdml_codec *c = make("topk+f32", n, 1);
    uint8_t buf[1024];
    size_t len;
    gdml_codec_params p = {.k = k};
    cr_assert_eq(gdml_codec_encode(c, x, &p, buf, sizeof buf, &len, NULL), GDML_OK);
    cr_assert_eq(len, GDML_CODEC_HEADER + 2 * k + 4 * k);
    cr_assert_eq(len, gdml_codec_max_bytes(c, k));
    free(x);
    gdml_codec_destroy(&c);
}

Test(codec, max_bytes_bounds_every_index_spread)
{
    /* Up to 4-byte varints; the k entries spread evenly, bunched at either end, or in a run. */
    const size_t sizes[] = {300, 20000, 3000000};
    for (size_t s = 0; s < 3; s++) {
        size_t n = sizes[s];
        gdml_codec *c = make("topk+sign", n, 1);
        float *x = calloc(n, sizeof *x);
        uint8_t *buf = malloc(gdml_codec_max_bytes(c, 300));
        gdml_rng r;
        gdml_rng_seed(&r, s);
        for (size_t trial = 0; trial < 16; trial++) {
            size_t k = 1 + (size_t)gdml_rng_below(&r, 300), step = n / k;
            size_t run = (size_t)gdml_rng_below(&r, n - k + 1);
            for (size_t j = 0; j < k; j++) {
                size_t i = trial % 4 == 0   ? j * step + (step - 1)
                           : trial % 4 == 1 ? n - k + j
                           : trial % 4 == 2 ? (j + 1 < k ? j : n - 1)
                                            : run + j;
                x[i] = 1.0f + (float)j;
            }
            gdml_codec_params p = {.k = k};
            size_t len;
            cr_assert_eq(gdml_codec_encode(c, x, &p, buf, gdml_codec_max_bytes(c, k), &len, NULL),
                         GDML_OK, "n %zu k %zu", n, k);
            cr_assert_leq(len, gdml_codec_max_bytes(c, k));
            memset(x, 0, n * sizeof *x);
        }
        free(buf);
        free(x);
        gdml_codec_destroy(&c);
    }
}

Test(codec, k_for_bytes_is_the_largest_k_that_fits)
{
    for (size_t s = 0; s < N_SELECTORS; s++)
        for (size_t q = 0; q < N_QUANTIZERS; q++) {
            char spec[64];
            snprintf(spec, sizeof spec, "%s+%s", selector_names[s], quantizer_names[q]);
            const size_t n = 70000;
            gdml_codec *c = make(spec, n, 1);
            for (size_t bytes = 0; bytes < 400000; bytes = bytes * 3 / 2 + 1) {
                size_t k = gdml_codec_k_for_bytes(c, bytes);
                cr_assert_leq(k, n);
                if (!gdml_codec_sparse(c)) {
                    cr_assert_eq(k, gdml_codec_max_bytes(c, n) <= bytes ? n : 0, "%s", spec);
                    continue;
                }
                if (k > 0)
                    cr_assert_leq(gdml_codec_max_bytes(c, k), bytes, "%s", spec);
                if (k < n)
                    cr_assert_gt(gdml_codec_max_bytes(c, k + 1), bytes, "%s: %zu bytes, k %zu",
                                 spec, bytes, k);
            }
            cr_assert_eq(gdml_codec_k_for_bytes(c, GDML_CODEC_HEADER - 1), 0);
            gdml_codec_destroy(&c);
        }
}

Test(codec, topk_int8_at_a_tenth_is_15_times_smaller_than_dense)
{
    const size_t n = 7850, k = n / 10;
    float x[7850];
    gdml_rng r;
    gdml_rng_seed(&r, 11);
    fill_normal(&r, x, n, 0.01);
    gdml_codec *dense = make("dense", n, 1), *c = make("topk+int8", n, 1);
    static uint8_t buf[40000];
    size_t dense_len, len;
    gdml_codec_params p = {.k = k};
    cr_assert_eq(gdml_codec_encode(dense, x, NULL, buf, sizeof buf, &dense_len, NULL), GDML_OK);
    cr_assert_eq(gdml_codec_encode(c, x, &p, buf, sizeof buf, &len, NULL), GDML_OK);
    cr_assert_eq(dense_len, GDML_CODEC_HEADER + 4 * n);
    cr_log_info("topk+int8 k=n/10 on n=%zu: %zu bytes, dense %zu, ratio %.1f (bound %zu)", n, len,
                dense_len, (double)dense_len / (double)len, gdml_codec_max_bytes(c, k));
    cr_assert_lt(15 * len, dense_len, "%zu bytes vs dense %zu", len, dense_len);
    cr_assert_lt(15 * gdml_codec_max_bytes(c, k), dense_len);
    gdml_codec_destroy(&dense);
    gdml_codec_destroy(&c);
}

/* ---- error feedback ---- */

Test(codec, error_feedback_sends_every_coordinate_and_tracks_the_sum)
{
    const size_t n = 400, k = 20, rounds = 400;
    float u[400], res[400], dec[400];
    double total[400];
    gdml_rng r;
    gdml_rng_seed(&r, 4);
    for (size_t i = 0; i < n; i++)
        u[i] = (float)(0.5 + gdml_rng_uniform(&r)) * (i % 2 ? 1.0f : -1.0f);
    for (size_t q = 0; q < N_QUANTIZERS; q++) {
        char spec[64];
        snprintf(spec, sizeof spec, "topk+%s", quantizer_names[q]);
        gdml_codec *c = make(spec, n, 1);
        memset(res, 0, sizeof res);
        memset(total, 0, sizeof total);
        bool seen[400] = {false};
        uint8_t buf[4096];
        uint32_t idx[400];
        gdml_codec_params p = {.k = k};
        float worst = 0.0f;
        for (size_t t = 0; t < rounds; t++) {
            size_t len;
            cr_assert_eq(gdml_codec_encode_ef(c, u, res, &p, buf, sizeof buf, &len), GDML_OK);
            cr_assert_eq(gdml_codec_decode(buf, len, dec, n, NULL), GDML_OK);
            for (size_t j = 0; j < payload_indices(buf, idx); j++)
                seen[idx[j]] = true;
            for (size_t i = 0; i < n; i++) {
                total[i] += dec[i];
                worst = fmaxf(worst, fabsf(res[i]));
            }
        }
        /* Sent + still owed = all that was meant, so the residual bounds the drift. */
        double drift = 0.0, all = 0.0;
        for (size_t i = 0; i < n; i++) {
            cr_assert(seen[i], "%s: coordinate %zu never sent", spec, i);
            double meant = (double)rounds * u[i];
            cr_assert(fabs(total[i] + res[i] - meant) < 1e-3 * fabs(meant), "%s: coordinate %zu",
                      spec, i);
            drift += fabs(total[i] - meant);
            all += fabs(meant);
        }
        cr_assert_lt(drift, 0.1 * all, "%s: sent %g off of %g", spec, drift, all);
        cr_assert_lt(worst, 4.0f * (float)(n / k) * 1.5f, "%s: residual reached %g", spec, worst);
        gdml_codec_destroy(&c);
    }
}

Test(codec, error_feedback_identity_holds_for_every_encoder)
{
    const size_t n = 1000;
    float u[1000], res[1000], old[1000], dec[1000], ref[1000];
    gdml_rng r;
    gdml_rng_seed(&r, 8);
    fill_normal(&r, ref, n, 1.0);
    for (size_t s = 0; s < N_SELECTORS; s++)
        for (size_t q = 0; q < N_QUANTIZERS; q++) {
            char spec[64];
            snprintf(spec, sizeof spec, "%s+%s", selector_names[s], quantizer_names[q]);
            gdml_codec *c = make(spec, n, 1);
            size_t cap = gdml_codec_max_bytes(c, n), len;
            uint8_t *buf = malloc(cap);
            gdml_codec_params p = {.k = 50, .threshold = 0.02, .ref = ref};
            memset(res, 0, sizeof res);
            for (int t = 0; t < 20; t++) {
                fill_normal(&r, u, n, 0.01);
                memcpy(old, res, sizeof res);
                cr_assert_eq(gdml_codec_encode_ef(c, u, res, &p, buf, cap, &len), GDML_OK);
                cr_assert_eq(gdml_codec_decode(buf, len, dec, n, NULL), GDML_OK);
                for (size_t i = 0; i < n; i++) {
                    float e = u[i] + old[i];
                    cr_assert(fabsf(dec[i] + res[i] - e) <= 1e-6f * (fabsf(e) + fabsf(dec[i])),
                              "%s: round %d entry %zu", spec, t, i);
                    if (!gdml_codec_lossy(c))
                        cr_assert(res[i] == 0.0f, "%s: lossless residual %g", spec, res[i]);
                }
            }
            /* A failed encode leaves the residual as it was. */
            memcpy(old, res, sizeof res);
            cr_assert_eq(gdml_codec_encode_ef(c, u, res, &p, buf, GDML_CODEC_HEADER, &len),
                         GDML_ERR_NOMEM, "%s", spec);
            cr_assert(memcmp(old, res, sizeof res) == 0, "%s", spec);
            free(buf);
            gdml_codec_destroy(&c);
        }
}

Test(codec, lossless_error_feedback_keeps_a_zero_residual)
{
    const size_t n = 300;
    float u[300], res[300] = {0};
    uint8_t buf[2000];
    gdml_rng r;
    gdml_rng_seed(&r, 1);
    gdml_codec *c = make("dense", n, 1);
    cr_assert(!gdml_codec_lossy(c));
    for (int t = 0; t < 50; t++) {
        fill_normal(&r, u, n, 3.0);
        size_t len;
        cr_assert_eq(gdml_codec_encode_ef(c, u, res, NULL, buf, sizeof buf, &len), GDML_OK);
        for (size_t i = 0; i < n; i++)
            cr_assert(res[i] == 0.0f);
    }
    gdml_codec_destroy(&c);
}

/* ---- specs ---- */

Test(codec, specs_parse_to_canonical_names)
{
    const char *good[][2] = {{"dense", "all+f32"},         {"all+f32", "all+f32"},
                             {"topk", "topk+f32"},         {"int8", "all+int8"},
                             {"topk+int8", "topk+int8"},   {"significance", "significance+f32"},
                             {"randk+sign", "randk+sign"}, {"bf16", "all+bf16"}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        gdml_errmsg e;
        cr_assert(gdml_codec_spec_ok(good[i][0], &e), "%s: %s", good[i][0], e.text);
        gdml_codec *c = make(good[i][0], 10, 1);
        cr_assert_str_eq(gdml_codec_name(c), good[i][1]);
        cr_assert_eq(gdml_codec_sparse(c), strncmp(good[i][1], "all", 3) != 0);
        gdml_codec_destroy(&c);
        cr_assert_null(c);
    }
    gdml_codec_destroy(NULL);
}

Test(codec, bad_specs_are_refused_with_the_known_names)
{
    const char *bad[][2] = {{"", "''"},
                            {"foo", "'foo'"},
                            {"topk+", "quantizer ''"},
                            {"+int8", "selector ''"},
                            {"topk+foo", "quantizer 'foo'"},
                            {"foo+int8", "selector 'foo'"},
                            {"dense+f16", "selector 'dense'"},
                            {"topk+int8+x", "quantizer 'int8+x'"},
                            {"TOPK", "'TOPK'"},
                            {"topk +int8", "selector 'topk '"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gdml_errmsg e;
        gdml_codec *c = NULL;
        cr_assert(!gdml_codec_spec_ok(bad[i][0], &e), "'%s' accepted", bad[i][0]);
        cr_assert(strstr(e.text, bad[i][1]), "'%s': %s", bad[i][0], e.text);
        const char *names[] = {"all",  "topk", "randk", "significance", "f32", "f16",
                               "bf16", "int8", "int4",  "int2",         "sign"};
        for (size_t j = 0; j < sizeof names / sizeof names[0]; j++)
            cr_assert(strstr(e.text, names[j]), "'%s': no %s in: %s", bad[i][0], names[j], e.text);
        cr_assert_eq(gdml_codec_new(bad[i][0], 10, 1, &c, &e), GDML_ERR_INVALID);
        cr_assert_null(c);
    }
    gdml_errmsg e;
    gdml_codec *c = NULL;
    cr_assert_eq(gdml_codec_new("topk", 0, 1, &c, &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "0 entries"), "%s", e.text);
    cr_assert_eq(gdml_codec_new("topk", (size_t)UINT32_MAX + 1, 1, &c, &e), GDML_ERR_INVALID);
    cr_assert_null(c);
    cr_assert(!gdml_codec_spec_ok("nope", NULL));
}

/* ---- decoder robustness ---- */

/* Decodes with a buffer of exactly n floats; anything but OK must be FORMAT, with a message. */
static gdml_err try_decode(const uint8_t *in, size_t len, size_t n, gdml_errmsg *e)
{
    float *out = malloc((n ? n : 1) * sizeof *out);
    e->text[0] = '\0';
    gdml_err err = gdml_codec_decode(in, len, out, n, e);
    if (err == GDML_OK)
        for (size_t i = 0; i < n; i++)
            cr_assert(isfinite(out[i]));
    else
        cr_assert(err == GDML_ERR_FORMAT && strstr(e->text, "codec payload"), "%d: %s", err,
                  e->text);
    free(out);
    return err;
}

Test(codec, every_truncation_and_extension_is_refused)
{
    const size_t n = 700;
    float x[700], ref[700];
    gdml_rng r;
    gdml_rng_seed(&r, 2);
    fill_normal(&r, x, n, 1.0);
    fill_normal(&r, ref, n, 1.0);
    for (size_t s = 0; s < N_SELECTORS; s++)
        for (size_t q = 0; q < N_QUANTIZERS; q++) {
            char spec[64];
            snprintf(spec, sizeof spec, "%s+%s", selector_names[s], quantizer_names[q]);
            gdml_codec *c = make(spec, n, 1);
            size_t cap = gdml_codec_max_bytes(c, n) + 1, len;
            uint8_t *buf = malloc(cap);
            gdml_codec_params p = {.k = 300, .threshold = 0.5, .ref = ref};
            cr_assert_eq(gdml_codec_encode(c, x, &p, buf, cap, &len, NULL), GDML_OK);
            gdml_errmsg e;
            for (size_t cut = 0; cut < len; cut++) {
                uint8_t *copy = malloc(cut ? cut : 1); /* exact size, so ASan sees overreads */
                memcpy(copy, buf, cut);
                cr_assert_eq(try_decode(copy, cut, n, &e), GDML_ERR_FORMAT, "%s cut at %zu", spec,
                             cut);
                free(copy);
            }
            buf[len] = 0;
            cr_assert_eq(try_decode(buf, len + 1, n, &e), GDML_ERR_FORMAT, "%s", spec);
            cr_assert_eq(try_decode(buf, len, n + 1, &e), GDML_ERR_FORMAT, "%s", spec);
            cr_assert_eq(try_decode(buf, len, n, &e), GDML_OK, "%s: %s", spec, e.text);
            free(buf);
            gdml_codec_destroy(&c);
        }
}

Test(codec, random_garbage_never_crashes)
{
    gdml_errmsg e;
    size_t ok = 0;
    for (uint64_t seed = 0; seed < 20000; seed++) {
        gdml_rng r;
        gdml_rng_seed(&r, seed);
        size_t len = (size_t)gdml_rng_below(&r, 96), n = 1 + (size_t)gdml_rng_below(&r, 40);
        uint8_t *in = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++)
            in[i] = (uint8_t)gdml_rng_u64(&r);
        /* Most seeds get a plausible header, so the check goes past it. */
        if (seed % 4 && len >= GDML_CODEC_HEADER) {
            uint8_t sel = (uint8_t)gdml_rng_below(&r, 4);
            uint32_t k = (uint32_t)gdml_rng_below(&r, n + 1);
            put_header(in, sel, (uint8_t)gdml_rng_below(&r, 5), sel ? 1 : 0, (uint32_t)n,
                       sel ? k : (uint32_t)n);
        }
        ok += try_decode(in, len, n, &e) == GDML_OK;
        free(in);
    }
    cr_log_info("%zu of 20000 garbage payloads happened to be valid", ok);
}

/* Expects decode of in[0..len) for n entries to fail with a message containing want. */
static void refuse(const uint8_t *in, size_t len, size_t n, const char *want)
{
    gdml_errmsg e;
    cr_assert_eq(try_decode(in, len, n, &e), GDML_ERR_FORMAT, "accepted; wanted '%s'", want);
    cr_assert(strstr(e.text, want), "message '%s' lacks '%s'", e.text, want);
}

Test(codec, corrupted_headers_are_refused)
{
    uint8_t p[64];
    size_t h;
    put_header(p, 0, 0, 0, 2, 2);
    put_f32(p + 12, 1.0f);
    put_f32(p + 16, 2.0f);
    gdml_errmsg e;
    cr_assert_eq(try_decode(p, 20, 2, &e), GDML_OK, "%s", e.text);
    p[0] = 2;
    refuse(p, 20, 2, "format 2");
    p[0] = 1;
    p[1] = 9;
    refuse(p, 20, 2, "selector id 9");
    p[1] = 0;
    p[2] = 9;
    refuse(p, 20, 2, "quantizer id 9");
    p[2] = 0;
    p[3] = 2;
    refuse(p, 20, 2, "flags 0x02");
    p[3] = 1; /* "all" in its sparse form: 2 index bytes, then 6 bytes for 2 f32 values */
    refuse(p, 20, 2, "6 bytes of values");
    p[3] = 4;
    refuse(p, 20, 2, "flags 0x04");
    p[3] = 0;
    refuse(p, 20, 3, "expected 3");
    put_u32(p + 8, 1);
    refuse(p, 20, 2, "k 1 != n 2");
    /* A sparse payload without its flag, and with k above n. */
    h = put_header(p, 1, 0, 0, 2, 1);
    p[h] = 0;
    put_f32(p + h + 1, 1.0f);
    refuse(p, h + 5, 2, "flags 0x00");
    p[3] = 1;
    cr_assert_eq(try_decode(p, h + 5, 2, &e), GDML_OK, "%s", e.text);
    put_u32(p + 8, 3);
    refuse(p, h + 5, 2, "k 3 > n 2");
    put_u32(p + 8, 0xffffffffu);
    refuse(p, h + 5, 2, "k 4294967295 > n 2");
    refuse(p, 5, 2, "header");
}

Test(codec, bad_indices_are_refused)
{
    uint8_t p[64];
    size_t h = put_header(p, 1, 0, 1, 7850, 2), at;
    /* Out of range. */
    at = h + put_varint(p + h, 9000);
    at += put_varint(p + at, 0);
    put_f32(p + at, 1.0f);
    put_f32(p + at + 4, 1.0f);
    refuse(p, at + 8, 7850, "index 9000 >= n 7850");
    /* Gaps that would wrap a 32-bit index back to a repeat (5, 5) or a decrease (5, 4). */
    const uint32_t gaps[] = {0xffffffffu, 0xfffffffeu};
    for (int i = 0; i < 2; i++) {
        at = h + put_varint(p + h, 5);
        at += put_varint(p + at, gaps[i]);
        put_f32(p + at, 1.0f);
        put_f32(p + at + 4, 1.0f);
        refuse(p, at + 8, 7850, ">= n 7850");
    }
    /* The second index one past the end. */
    at = h + put_varint(p + h, 7848);
    at += put_varint(p + at, 1);
    put_f32(p + at, 1.0f);
    put_f32(p + at + 4, 1.0f);
    refuse(p, at + 8, 7850, "index 7850 >= n 7850");
    p[at - 1] = 0; /* index 7849: valid */
    gdml_errmsg e;
    cr_assert_eq(try_decode(p, at + 8, 7850, &e), GDML_OK, "%s", e.text);
    /* Overlong, above 32 bits, and unterminated varints. */
    const uint8_t bad[][6] = {
        {0x85, 0x00}, {0xff, 0xff, 0xff, 0xff, 0x1f}, {0x80, 0x80, 0x80, 0x80, 0x80, 0x01}};
    const size_t bad_len[] = {2, 5, 6};
    for (int i = 0; i < 3; i++) {
        memcpy(p + h, bad[i], bad_len[i]);
        at = h + bad_len[i];
        p[at++] = 0;
        put_f32(p + at, 1.0f);
        put_f32(p + at + 4, 1.0f);
        refuse(p, at + 8, 7850, "varint");
    }
    /* More indices claimed than bytes to hold them. */
    put_u32(p + 8, 7000);
    refuse(p, 40, 7850, "cannot hold 7000 indices");
}

Test(codec, non_finite_values_and_bad_scales_are_refused)
{
    uint8_t p[64];
    size_t h = put_header(p, 0, 0, 0, 2, 2);
    put_f32(p + h, 1.0f);
    put_f32(p + h + 4, NAN);
    refuse(p, h + 8, 2, "value 1");
    put_f32(p + h + 4, -INFINITY);
    refuse(p, h + 8, 2, "not a finite number");
    /* f16 infinity, bf16 NaN. */
    h = put_header(p, 0, 1, 0, 1, 1);
    p[h] = 0x00;
    p[h + 1] = 0x7c;
    refuse(p, h + 2, 1, "not a finite number");
    h = put_header(p, 0, 2, 0, 1, 1);
    p[h] = 0xc0;
    p[h + 1] = 0x7f;
    refuse(p, h + 2, 1, "not a finite number");
    /* int8: NaN, infinite and negative scales; the code -128. */
    const float scales[] = {NAN, INFINITY, -1.0f};
    for (int i = 0; i < 3; i++) {
        h = put_header(p, 0, 3, 0, 2, 2);
        put_f32(p + h, scales[i]);
        p[h + 4] = 0;
        p[h + 5] = 1;
        refuse(p, h + 6, 2, "scale of block 0");
        /* The same scales in a sign payload. */
        h = put_header(p, 0, 4, 0, 2, 2);
        put_f32(p + h, scales[i]);
        p[h + 4] = 0x01;
        refuse(p, h + 5, 2, "scale of block 0");
    }
    h = put_header(p, 0, 3, 0, 2, 2);
    put_f32(p + h, 1.0f);
    p[h + 4] = 0x80;
    p[h + 5] = 0x7f;
    refuse(p, h + 6, 2, "-128");
    /* A huge scale times 127 is not finite. */
    put_f32(p + h, FLT_MAX);
    p[h + 4] = 0x7f;
    refuse(p, h + 6, 2, "not a finite number");
    /* sign: padding bits after the 2 values must be zero. */
    h = put_header(p, 0, 4, 0, 2, 2);
    put_f32(p + h, 1.0f);
    p[h + 4] = 0x05;
    refuse(p, h + 5, 2, "padding");
    p[h + 4] = 0x02;
    float out[2];
    cr_assert_eq(gdml_codec_decode(p, h + 5, out, 2, NULL), GDML_OK);
    cr_assert(out[0] == 1.0f && out[1] == -1.0f);
}

/* ---- slices: select once, write any [lo, hi) as its own payload ---- */

#define ALL_QUANTIZERS (sizeof quantizer_names / sizeof quantizer_names[0])

/* True for the quantizers that write each value on its own (no block scale). */
static bool elementwise(const char *q)
{
    return strcmp(q, "f32") == 0 || strcmp(q, "f16") == 0 || strcmp(q, "bf16") == 0;
}

/* Writes slice [lo, hi) of the last selection with the bound as cap; checks it decodes. */
static size_t write_slice(gdml_codec *c, const float *x, size_t lo, size_t hi, uint8_t *buf,
                          float *decoded, float *out)
{
    size_t k = gdml_codec_selected_in(c, lo, hi);
    size_t cap = gdml_codec_chunk_max_bytes(c, hi - lo, k), len = 0;
    gdml_err err = gdml_codec_write(c, x, lo, hi, buf, cap, &len, decoded);
    cr_assert_eq(err, GDML_OK, "%s [%zu, %zu): %d", gdml_codec_name(c), lo, hi, err);
    cr_assert_leq(len, cap, "%s [%zu, %zu) k %zu: %zu bytes, bound %zu", gdml_codec_name(c), lo, hi,
                  k, len, cap);
    cr_assert_eq(gdml_codec_payload_k(buf, len), k);
    gdml_errmsg e;
    cr_assert_eq(gdml_codec_decode(buf, len, out, hi - lo, &e), GDML_OK, "%s [%zu, %zu): %s",
                 gdml_codec_name(c), lo, hi, e.text);
    return len;
}

Test(codec, slices_decode_to_the_slice_of_the_whole)
{
    enum { N = 2000 };
    static float x[N], whole[N], decoded[N], out[N];
    static uint8_t buf[16 * N];
    /* Block quantizers are cut on block boundaries, as chunks are (2^18 is a multiple). */
    const size_t any_cuts[] = {0, 1, 700, 701, 1999, N};
    const size_t block_cuts[] = {0, 256, 768, 1792, N};
    gdml_rng r;
    gdml_rng_seed(&r, 51);
    fill_normal(&r, x, N, 2.0);
    for (size_t q = 0; q < ALL_QUANTIZERS; q++) {
        char spec[32];
        snprintf(spec, sizeof spec, "all+%s", quantizer_names[q]);
        gdml_codec *c = make(spec, N, 1);
        size_t len = 0;
        cr_assert_eq(gdml_codec_encode(c, x, NULL, buf, sizeof buf, &len, NULL), GDML_OK);
        cr_assert_eq(gdml_codec_decode(buf, len, whole, N, NULL), GDML_OK);
        size_t k = 0;
        cr_assert_eq(gdml_codec_select(c, x, NULL, &k), GDML_OK);
        cr_assert_eq(k, N);
        bool any = elementwise(quantizer_names[q]);
        const size_t *cuts = any ? any_cuts : block_cuts;
        size_t n_cuts =
            any ? sizeof any_cuts / sizeof *any_cuts : sizeof block_cuts / sizeof *block_cuts;
        memset(decoded, 0, sizeof decoded);
        for (size_t s = 0; s + 1 < n_cuts; s++) {
            size_t lo = cuts[s], hi = cuts[s + 1];
            write_slice(c, x, lo, hi, buf, decoded, out);
            cr_assert_arr_eq(out, whole + lo, (hi - lo) * sizeof *out, "%s [%zu, %zu)", spec, lo,
                             hi);
        }
        cr_assert_arr_eq(decoded, whole, sizeof whole, "%s: write's decoded differs", spec);
        gdml_codec_destroy(&c);
    }
}

Test(codec, sparse_slices_of_elementwise_values_decode_to_the_slice_of_the_whole)
{
    enum { N = 3000 };
    static float x[N], whole[N], decoded[N], out[N];
    static uint8_t buf[16 * N];
    const size_t cuts[] = {0, 128, 129, 1000, 2047, N};
    gdml_rng r;
    gdml_rng_seed(&r, 52);
    fill_normal(&r, x, N, 1.0);
    const char *sels[] = {"topk", "randk", "significance"};
    const char *qs[] = {"f32", "f16", "bf16"};
    for (int s = 0; s < 3; s++)
        for (int q = 0; q < 3; q++) {
            char spec[32];
            snprintf(spec, sizeof spec, "%s+%s", sels[s], qs[q]);
            gdml_codec *c = make(spec, N, 9);
            gdml_codec_params p = {.k = 300, .threshold = 1.0};
            size_t k = 0;
            cr_assert_eq(gdml_codec_select(c, x, &p, &k), GDML_OK);
            cr_assert(k > 0 && k <= 300);
            /* The whole tensor from the same selection (randk would draw anew). */
            write_slice(c, x, 0, N, buf, NULL, whole);
            memset(decoded, 0, sizeof decoded);
            for (size_t j = 0; j + 1 < sizeof cuts / sizeof *cuts; j++) {
                size_t lo = cuts[j], hi = cuts[j + 1];
                write_slice(c, x, lo, hi, buf, decoded, out);
                cr_assert_arr_eq(out, whole + lo, (hi - lo) * sizeof *out, "%s [%zu, %zu)", spec,
                                 lo, hi);
            }
            cr_assert_arr_eq(decoded, whole, sizeof whole, "%s", spec);
            gdml_codec_destroy(&c);
        }
}

Test(codec, selected_in_counts_the_selection_of_any_slice)
{
    enum { N = 5000 };
    static float x[N];
    static uint8_t buf[16 * N];
    static uint32_t idx[N];
    gdml_rng r;
    gdml_rng_seed(&r, 53);
    fill_normal(&r, x, N, 1.0);
    const size_t ks[] = {0, 1, 17, 500, 4999, N};
    for (size_t s = 0; s < N_SELECTORS; s++)
        for (size_t t = 0; t < sizeof ks / sizeof *ks; t++) {
            char spec[32];
            snprintf(spec, sizeof spec, "%s+f32", selector_names[s]);
            gdml_codec *c = make(spec, N, 3);
            gdml_codec_params p = {.k = ks[t], .threshold = 0.5};
            size_t k = 0;
            cr_assert_eq(gdml_codec_select(c, x, &p, &k), GDML_OK);
            cr_assert_eq(gdml_codec_selected_in(c, 0, N), k, "%s k %zu", spec, ks[t]);
            size_t len = 0;
            cr_assert_eq(gdml_codec_write(c, x, 0, N, buf, sizeof buf, &len, NULL), GDML_OK);
            bool sparse = gdml_codec_sparse(c);
            size_t got = sparse ? payload_indices(buf, idx) : N;
            cr_assert_eq(got, k);
            for (int trial = 0; trial < 20; trial++) {
                /* A random partition of [0, N) into slices. */
                size_t sum = 0;
                for (size_t lo = 0, hi; lo < N; lo = hi) {
                    hi = lo + 1 + (size_t)gdml_rng_below(&r, N / 4);
                    if (hi > N)
                        hi = N;
                    size_t in = gdml_codec_selected_in(c, lo, hi), want = hi - lo;
                    if (sparse) {
                        want = 0;
                        for (size_t j = 0; j < k; j++)
                            want += idx[j] >= lo && idx[j] < hi;
                    }
                    cr_assert_eq(in, want, "%s [%zu, %zu)", spec, lo, hi);
                    sum += in;
                }
                cr_assert_eq(sum, k, "%s: slices hold %zu of %zu", spec, sum, k);
            }
            cr_assert_eq(gdml_codec_selected_in(c, 7, 7), 0);
            gdml_codec_destroy(&c);
        }
}

Test(codec, chunk_max_bytes_bounds_every_slice_and_is_the_cap_write_needs)
{
    enum { N = 5000 };
    static float x[N], out[N];
    static uint8_t buf[16 * N];
    gdml_rng r;
    gdml_rng_seed(&r, 54);
    const size_t ks[] = {0, 1, 13, 250, 2500, N};
    for (size_t s = 0; s < N_SELECTORS; s++)
        for (size_t q = 0; q < ALL_QUANTIZERS; q++)
            for (size_t t = 0; t < sizeof ks / sizeof *ks; t++) {
                char spec[32];
                snprintf(spec, sizeof spec, "%s+%s", selector_names[s], quantizer_names[q]);
                gdml_codec *c = make(spec, N, 5);
                fill_normal(&r, x, N, 1.0);
                gdml_codec_params p = {.k = ks[t], .threshold = 0.1};
                size_t k = 0;
                cr_assert_eq(gdml_codec_select(c, x, &p, &k), GDML_OK);
                for (size_t lo = 0, hi; lo < N; lo = hi) {
                    hi = lo + 1 + (size_t)gdml_rng_below(&r, 1500);
                    if (hi > N)
                        hi = N;
                    write_slice(c, x, lo, hi, buf, NULL, out);
                    size_t in = gdml_codec_selected_in(c, lo, hi);
                    size_t cap = gdml_codec_chunk_max_bytes(c, hi - lo, in), len = 0;
                    cr_assert_eq(gdml_codec_write(c, x, lo, hi, buf, cap - 1, &len, NULL),
                                 GDML_ERR_NOMEM, "%s [%zu, %zu): a cap under the bound", spec, lo,
                                 hi);
                }
                gdml_codec_destroy(&c);
            }
}

/*
 * A selection of k entries spread to make slice payloads as large as they
 * get: entries at the far end of each slice (long first varints) and widely
 * spaced, so that gaps need several varint bytes and value blocks end part
 * full. Returns x with these entries large and the rest small.
 */
static void spread_selection(float *x, size_t n, size_t chunk, size_t k, gdml_rng *r)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(1e-3 * gdml_rng_uniform(r));
    if (k > n / 8) { /* dense enough that spacing is moot: the k largest of noise */
        for (size_t i = 0; i < n; i++)
            x[i] = (float)gdml_rng_uniform(r);
        return;
    }
    size_t chunks = (n + chunk - 1) / chunk;
    for (size_t j = 0; j < k; j++) {
        size_t c = j % chunks, lo = c * chunk, m = (lo + chunk < n ? lo + chunk : n) - lo;
        size_t per = (k + chunks - 1) / chunks, slot = j / chunks;
        /* Backwards from the end of the chunk, evenly spaced over it. */
        size_t at = lo + m - 1 - (slot * (m / (per + 1))) % m;
        while (x[at] >= 1.0f)
            at = at == lo ? lo + m - 1 : at - 1;
        x[at] = 2.0f + (float)gdml_rng_uniform(r);
    }
}

Test(codec, max_bytes_chunked_bounds_the_sum_of_slice_payloads)
{
    /* Chunks long enough for 3-byte index varints, and a short last one. */
    enum { CHUNK = 40000, N = 3 * CHUNK + 777 };
    static float x[N], out[N];
    static uint8_t buf[8 * CHUNK];
    gdml_rng r;
    gdml_rng_seed(&r, 55);
    const size_t ks[] = {1, 4, 7, 100, 257 * 4, 3000, N / 3, N};
    for (size_t q = 0; q < ALL_QUANTIZERS; q++) {
        /* Dense: the bound is the exact sum. */
        char spec[32];
        snprintf(spec, sizeof spec, "all+%s", quantizer_names[q]);
        gdml_codec *c = make(spec, N, 1);
        fill_normal(&r, x, N, 1.0);
        size_t k = 0;
        cr_assert_eq(gdml_codec_select(c, x, NULL, &k), GDML_OK);
        size_t sum = 0;
        for (size_t lo = 0; lo < N; lo += CHUNK)
            sum += write_slice(c, x, lo, lo + CHUNK < N ? lo + CHUNK : N, buf, NULL, out);
        cr_assert_eq(sum, gdml_codec_max_bytes_chunked(c, N, CHUNK), "%s", spec);
        cr_assert_eq(gdml_codec_max_bytes_chunked(c, N, N), gdml_codec_max_bytes(c, N),
                     "%s: one chunk is the whole tensor", spec);
        gdml_codec_destroy(&c);

        const char *sels[] = {"randk", "topk"};
        for (int s = 0; s < 2; s++)
            for (size_t t = 0; t < sizeof ks / sizeof *ks; t++)
                for (int trial = 0; trial < 3; trial++) {
                    snprintf(spec, sizeof spec, "%s+%s", sels[s], quantizer_names[q]);
                    c = make(spec, N, 100 + (uint64_t)trial);
                    if (s == 1)
                        spread_selection(x, N, CHUNK, ks[t], &r);
                    gdml_codec_params p = {.k = ks[t]};
                    cr_assert_eq(gdml_codec_select(c, x, &p, &k), GDML_OK);
                    cr_assert_eq(k, ks[t]);
                    sum = 0;
                    for (size_t lo = 0; lo < N; lo += CHUNK)
                        sum +=
                            write_slice(c, x, lo, lo + CHUNK < N ? lo + CHUNK : N, buf, NULL, out);
                    size_t bound = gdml_codec_max_bytes_chunked(c, k, CHUNK);
                    cr_assert_leq(sum, bound, "%s k %zu: slices take %zu bytes, bound %zu", spec, k,
                                  sum, bound);
                    cr_assert_geq(bound, gdml_codec_max_bytes_chunked(c, k - 1, CHUNK),
                                  "%s: the bound must grow with k", spec);
                    gdml_codec_destroy(&c);
                }
    }
}

/* ---- the keys of sparse models, and the sparse form of "all" ---- */

Test(codec, keys_send_exactly_the_listed_entries)
{
    float x[1000] = {0};
    for (size_t i = 0; i < 1000; i++)
        x[i] = (float)i + 0.5f;
    gdml_codec *c = make("keys+f32", 1000, 0);
    const uint32_t keys[] = {3, 4, 500, 999};
    gdml_codec_params p = {.keys = keys, .n_keys = 4};
    uint8_t out[256];
    size_t len;
    float back[1000];
    cr_assert_eq(gdml_codec_encode(c, x, &p, out, sizeof out, &len, NULL), GDML_OK);
    cr_assert_eq(len, GDML_CODEC_HEADER + 1 + 1 + 2 + 2 + 4 * 4, "payload of %zu bytes", len);
    gdml_errmsg e;
    cr_assert_eq(gdml_codec_decode(out, len, back, 1000, &e), GDML_OK, "%s", e.text);
    for (size_t i = 0; i < 1000; i++) {
        bool key = i == 3 || i == 4 || i == 500 || i == 999;
        cr_assert_eq(back[i], key ? x[i] : 0.0f, "entry %zu", i);
    }
    uint32_t got[4];
    cr_assert_eq(gdml_codec_payload_indices(out, len, got), 4);
    cr_assert_arr_eq(got, keys, sizeof keys);
    /* Keys that repeat, go backwards or lie outside the tensor are refused. */
    size_t k;
    const uint32_t twice[] = {3, 3}, back_keys[] = {5, 4}, outside[] = {1000};
    gdml_codec_params bad[] = {{.keys = twice, .n_keys = 2},
                               {.keys = back_keys, .n_keys = 2},
                               {.keys = outside, .n_keys = 1}};
    for (size_t i = 0; i < 3; i++)
        cr_assert_eq(gdml_codec_select(c, x, &bad[i], &k), GDML_ERR_INVALID, "case %zu", i);
    /* Only the listed values must be finite. */
    x[10] = NAN;
    cr_assert_eq(gdml_codec_select(c, x, &p, &k), GDML_OK);
    x[500] = INFINITY;
    cr_assert_eq(gdml_codec_select(c, x, &p, &k), GDML_ERR_INVALID);
    gdml_codec_destroy(&c);
}

Test(codec, a_key_set_carries_no_values_and_decodes_to_ones)
{
    float x[300] = {0};
    gdml_codec *c = make("keys+none", 300, 0);
    const uint32_t keys[] = {0, 17, 299};
    gdml_codec_params p = {.keys = keys, .n_keys = 3};
    uint8_t out[64];
    size_t len;
    cr_assert_eq(gdml_codec_encode(c, x, &p, out, sizeof out, &len, NULL), GDML_OK);
    cr_assert_eq(len, GDML_CODEC_HEADER + 1 + 1 + 2, "indices only: %zu bytes", len);
    float back[300];
    gdml_errmsg e;
    cr_assert_eq(gdml_codec_decode(out, len, back, 300, &e), GDML_OK, "%s", e.text);
    for (size_t i = 0; i < 300; i++)
        cr_assert_eq(back[i], i == 0 || i == 17 || i == 299 ? 1.0f : 0.0f);
    gdml_codec_destroy(&c);
}

Test(codec, keys_and_none_are_not_encoders_a_user_chooses)
{
    gdml_errmsg e;
    cr_assert(!gdml_codec_spec_ok("keys+f32", &e));
    cr_assert(strstr(e.text, "sparse models"), "%s", e.text);
    cr_assert(!gdml_codec_spec_ok("topk+none", &e));
    cr_assert(strstr(e.text, "'none'"), "%s", e.text);
    cr_assert(gdml_codec_spec_ok("topk+int8", &e));
}

Test(codec, all_writes_a_mostly_zero_slice_sparse_and_decodes_it_exactly)
{
    const size_t n = 4096;
    float *x = calloc(n, sizeof *x), *back = calloc(n, sizeof *back), *dec = calloc(n, sizeof *dec);
    uint8_t *out = malloc(GDML_CODEC_HEADER + 4 * n);
    cr_assert(x && back && dec && out);
    for (size_t i = 0; i < n; i += 97)
        x[i] = (float)i - 1000.0f;
    const char *specs[] = {"dense", "f16", "int8"};
    for (size_t s = 0; s < 3; s++) {
        gdml_codec *c = make(specs[s], n, 0);
        size_t len;
        cr_assert_eq(gdml_codec_encode(c, x, NULL, out, GDML_CODEC_HEADER + 4 * n, &len, dec),
                     GDML_OK);
        cr_assert_eq(out[3], 1, "%s: the sparse form", specs[s]);
        cr_assert_lt(len, GDML_CODEC_HEADER + 2 * n / 10, "%s: %zu bytes", specs[s], len);
        gdml_errmsg e;
        cr_assert_eq(gdml_codec_decode(out, len, back, n, &e), GDML_OK, "%s", e.text);
        cr_assert_arr_eq(back, dec, n * sizeof *back, "%s: decoded is what decode gives",
                         specs[s]);
        if (s == 0)
            cr_assert_arr_eq(back, x, n * sizeof *x, "f32 is lossless in either form");
        gdml_codec_destroy(&c);
    }
    /* A dense slice keeps the dense form. */
    for (size_t i = 0; i < n; i++)
        x[i] = 1.0f + (float)i;
    gdml_codec *c = make("dense", n, 0);
    size_t len;
    cr_assert_eq(gdml_codec_encode(c, x, NULL, out, GDML_CODEC_HEADER + 4 * n, &len, NULL),
                 GDML_OK);
    cr_assert_eq(out[3], 0);
    cr_assert_eq(len, GDML_CODEC_HEADER + 4 * n);
    gdml_codec_destroy(&c);
    free(x);
    free(back);
    free(dec);
    free(out);
}

Test(codec, entries_decode_as_entries_and_are_checked_as_a_whole_decode_is)
{
    float x[5000] = {0};
    x[3] = 1.5f, x[4000] = -2.0f, x[4999] = 0.25f;
    const uint32_t keys[] = {3, 4000, 4999};
    gdml_codec_params p = {.keys = keys, .n_keys = 3};
    gdml_codec *c = make("keys+f32", 5000, 0);
    uint8_t out[128];
    size_t len, k;
    cr_assert_eq(gdml_codec_encode(c, x, &p, out, sizeof out, &len, NULL), GDML_OK);
    uint32_t idx[4];
    float val[4];
    gdml_errmsg e;
    cr_assert_eq(gdml_codec_decode_entries(out, len, 5000, idx, val, 4, &k, &e), GDML_OK, "%s",
                 e.text);
    cr_assert_eq(k, 3);
    cr_assert_arr_eq(idx, keys, sizeof keys);
    cr_assert(val[0] == 1.5f && val[1] == -2.0f && val[2] == 0.25f);
    /* More entries than there is room for, a wrong slice size, a value that is not finite. */
    cr_assert_eq(gdml_codec_decode_entries(out, len, 5000, idx, val, 2, &k, &e), GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, "more than the 2"), "%s", e.text);
    cr_assert_eq(gdml_codec_decode_entries(out, len, 4999, idx, val, 4, &k, &e), GDML_ERR_FORMAT);
    uint32_t nan_bits = 0x7fc00000u;
    memcpy(out + len - 4, &nan_bits, 4);
    cr_assert_eq(gdml_codec_decode_entries(out, len, 5000, idx, val, 4, &k, &e), GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, "not a finite number"), "%s", e.text);
    /* A dense payload decodes to every entry in order. */
    gdml_codec *d = make("dense", 4, 0);
    float four[4] = {1, 2, 3, 4};
    cr_assert_eq(gdml_codec_encode(d, four, NULL, out, sizeof out, &len, NULL), GDML_OK);
    cr_assert_eq(gdml_codec_decode_entries(out, len, 4, idx, val, 4, &k, &e), GDML_OK, "%s",
                 e.text);
    cr_assert(k == 4 && idx[3] == 3 && val[3] == 4.0f);
    gdml_codec_destroy(&c);
    gdml_codec_destroy(&d);
}
