/*
 * codec.c - WAN tensor encoders: the table of selectors (which entries are
 * sent), the table of quantizers (quantize.c: how values are written), the
 * payload format around them, its bounds for the budget controller, and
 * error feedback. The decoder, which trusts nothing, is codec_decode.c.
 *
 * Every encode runs in O(n) on average with scratch allocated by
 * gdml_codec_new; nothing is allocated per message.
 */
#include "codec.h"
#include "codec_impl.h"
#include "rng.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Significance ratios divide by max(|ref_i|, this), so that ref_i = 0 is no division by 0. */
#define SIGNIFICANCE_TINY 1e-30

typedef struct selector_ops {
    const char *name;
    uint8_t id;
    bool needs_aux;  /* uses the aux scratch (n floats) */
    bool needs_bits; /* uses the bitmap scratch (n bits) */
    bool internal;   /* for gdml's own messages, never an encoder a user names */
    /*
     * Writes the indices of the entries to send, strictly increasing, into
     * c->idx and their count into *k. NULL for "all", which sends every entry
     * without indices. Returns GDML_ERR_INVALID for parameters out of range.
     */
    gdml_err (*select)(gdml_codec *c, const float *x, const gdml_codec_params *p, size_t *k);
} selector_ops;

struct gdml_codec {
    const selector_ops *sel;
    const gdml_quant_ops *q;
    size_t n;
    char name[GDML_CODEC_NAME_MAX];
    gdml_rng rng;   /* randk's draws */
    float *mag;     /* sparse: keys for selection, then the values to send */
    float *aux;     /* significance: the candidates' ratios, in index order */
    uint32_t *idx;  /* sparse: indices to send; randk keeps a permutation of 0..n-1 here */
    uint64_t *bits; /* randk: which indices were drawn */
    float *ef;      /* encode_ef: u + residual, then what is decoded (made on first use) */
    size_t k;       /* entries of the last selection */
    bool selected;  /* a selection has been made */
    float *gather;  /* "all" in its sparse form: the non-zero values of a slice */
    size_t gather_cap;
};

static gdml_err select_topk(gdml_codec *c, const float *x, const gdml_codec_params *p, size_t *k);
static gdml_err select_randk(gdml_codec *c, const float *x, const gdml_codec_params *p, size_t *k);
static gdml_err select_significance(gdml_codec *c, const float *x, const gdml_codec_params *p,
                                    size_t *k);
static gdml_err select_keys(gdml_codec *c, const float *x, const gdml_codec_params *p, size_t *k);

static const selector_ops selectors[] = {
    {.name = "all", .id = 0, .select = NULL},
    {.name = "topk", .id = 1, .select = select_topk},
    {.name = "randk", .id = 2, .needs_bits = true, .select = select_randk},
    {.name = "significance", .id = 3, .needs_aux = true, .select = select_significance},
    {.name = "keys", .id = 4, .internal = true, .select = select_keys},
};

static const gdml_quant_ops *const quantizers[] = {
    &gdml_quant_f32,  &gdml_quant_f16,  &gdml_quant_bf16, &gdml_quant_int8,
    &gdml_quant_int4, &gdml_quant_int2, &gdml_quant_sign, &gdml_quant_none,
};

#define SELECTOR_COUNT (sizeof selectors / sizeof selectors[0])
#define QUANTIZER_COUNT (sizeof quantizers / sizeof quantizers[0])

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* ---- names ---- */

static const selector_ops *find_selector(const char *name, size_t len)
{
    for (size_t i = 0; i < SELECTOR_COUNT; i++)
        if (strlen(selectors[i].name) == len && memcmp(selectors[i].name, name, len) == 0)
            return &selectors[i];
    return NULL;
}

static const gdml_quant_ops *find_quantizer(const char *name, size_t len)
{
    for (size_t i = 0; i < QUANTIZER_COUNT; i++)
        if (strlen(quantizers[i]->name) == len && memcmp(quantizers[i]->name, name, len) == 0)
            return quantizers[i];
    return NULL;
}

/* Writes "selectors: all, topk, ...; quantizers: f32, ..." into buf. */
static void list_names(char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < SELECTOR_COUNT + QUANTIZER_COUNT; i++) {
        const char *name =
            i < SELECTOR_COUNT ? selectors[i].name : quantizers[i - SELECTOR_COUNT]->name;
        const char *before = i == 0 ? "selectors: " : i == SELECTOR_COUNT ? "; quantizers: " : ", ";
        int w = snprintf(buf + used, cap - used, "%s%s", before, name);
        if (w < 0 || (size_t)w >= cap - used)
            return;
        used += (size_t)w;
    }
}

static gdml_err unknown(gdml_errmsg *e, const char *what, const char *part, size_t len,
                        const char *spec)
{
    char names[160];
    list_names(names, sizeof names);
    return gdml_errmsg_set(e, GDML_ERR_INVALID,
                           "unknown %s '%.*s' in encoder '%.64s' (%s; write selector+quantizer, "
                           "either one alone, or dense)",
                           what, (int)min_size(len, 64), part, spec, names);
}

static gdml_err parse_spec(const char *spec, const selector_ops **sel, const gdml_quant_ops **q,
                           gdml_errmsg *e)
{
    assert(spec);
    if (strcmp(spec, "dense") == 0) {
        *sel = &selectors[0];
        *q = &gdml_quant_f32;
        return GDML_OK;
    }
    const char *plus = strchr(spec, '+');
    if (!plus) {
        size_t len = strlen(spec);
        const selector_ops *s = find_selector(spec, len);
        const gdml_quant_ops *qq = find_quantizer(spec, len);
        if (!s && !qq)
            return unknown(e, "selector or quantizer", spec, len, spec);
        *sel = s ? s : &selectors[0];
        *q = qq ? qq : &gdml_quant_f32;
        return GDML_OK;
    }
    const selector_ops *s = find_selector(spec, (size_t)(plus - spec));
    if (!s)
        return unknown(e, "selector", spec, (size_t)(plus - spec), spec);
    const gdml_quant_ops *qq = find_quantizer(plus + 1, strlen(plus + 1));
    if (!qq)
        return unknown(e, "quantizer", plus + 1, strlen(plus + 1), spec);
    *sel = s;
    *q = qq;
    return GDML_OK;
}

bool gdml_codec_spec_ok(const char *spec, gdml_errmsg *e)
{
    const selector_ops *sel;
    const gdml_quant_ops *q;
    if (parse_spec(spec, &sel, &q, e))
        return false;
    if (sel->internal || q->internal) {
        gdml_errmsg_set(e, GDML_ERR_INVALID,
                        "encoder '%.64s': '%s' is how sparse models name their keys, not an "
                        "encoder to choose",
                        spec, sel->internal ? sel->name : q->name);
        return false;
    }
    return true;
}

/* ---- lifecycle ---- */

gdml_err gdml_codec_new(const char *spec, size_t n, uint64_t seed, gdml_codec **out, gdml_errmsg *e)
{
    const selector_ops *sel;
    const gdml_quant_ops *q;
    gdml_err err = parse_spec(spec, &sel, &q, e);
    if (err)
        return err;
    if (n == 0 || n > UINT32_MAX)
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "encoder '%s': a tensor of %zu entries (must be 1..%lu)", spec, n,
                               (unsigned long)UINT32_MAX);
    gdml_codec *c = calloc(1, sizeof *c);
    if (!c)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "encoder '%s': out of memory", spec);
    c->sel = sel;
    c->q = q;
    c->n = n;
    snprintf(c->name, sizeof c->name, "%s+%s", sel->name, q->name);
    gdml_rng_seed(&c->rng, seed);
    bool ok = true;
    if (sel->select) {
        ok = (c->mag = malloc(n * sizeof *c->mag)) && (c->idx = malloc(n * sizeof *c->idx));
        if (ok && sel->needs_aux)
            ok = (c->aux = malloc(n * sizeof *c->aux)) != NULL;
        if (ok && sel->needs_bits)
            ok = (c->bits = malloc((n + 63) / 64 * sizeof *c->bits)) != NULL;
        for (size_t i = 0; ok && i < n; i++)
            c->idx[i] = (uint32_t)i;
    }
    if (!ok) {
        gdml_codec_destroy(&c);
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "encoder '%s': no memory for %zu entries", spec,
                               n);
    }
    *out = c;
    return GDML_OK;
}

void gdml_codec_destroy(gdml_codec **c)
{
    if (!c || !*c)
        return;
    free((*c)->mag);
    free((*c)->aux);
    free((*c)->idx);
    free((*c)->bits);
    free((*c)->ef);
    free((*c)->gather);
    free(*c);
    *c = NULL;
}

const char *gdml_codec_name(const gdml_codec *c)
{
    return c->name;
}

size_t gdml_codec_size(const gdml_codec *c)
{
    return c->n;
}

bool gdml_codec_sparse(const gdml_codec *c)
{
    return c->sel->select != NULL;
}

bool gdml_codec_lossy(const gdml_codec *c)
{
    return gdml_codec_sparse(c) || c->q->lossy;
}

/* ---- sizes ---- */

/*
 * Bytes the k index varints can take at most. A varint of g has
 * 1 + #{j >= 1 : g >= 128^j} bytes, and the k varints (the first index, then
 * the gaps) sum to last index - (k - 1) <= n - 1, so at most (n - 1) / 128^j
 * of them, and at most k, reach 128^j. Monotone in k, which k_for_bytes needs.
 */
static size_t index_bytes_max(size_t n, size_t k)
{
    size_t total = k;
    for (uint64_t step = 128; step <= n - 1; step *= 128)
        total += min_size(k, (size_t)((n - 1) / step));
    return total;
}

/* The largest payload of a slice of m elements holding k of them. */
static size_t chunk_max_bytes(const gdml_codec *c, size_t m, size_t k)
{
    if (!gdml_codec_sparse(c))
        return GDML_CODEC_HEADER + c->q->bytes(m);
    k = min_size(k, m);
    return GDML_CODEC_HEADER + index_bytes_max(m, k) + c->q->bytes(k);
}

size_t gdml_codec_chunk_max_bytes(const gdml_codec *c, size_t m, size_t k)
{
    return chunk_max_bytes(c, m, k);
}

size_t gdml_codec_max_bytes(const gdml_codec *c, size_t k)
{
    return chunk_max_bytes(c, c->n, k);
}

size_t gdml_codec_max_bytes_chunked(const gdml_codec *c, size_t k, size_t chunk)
{
    size_t n = c->n, chunks = (n + chunk - 1) / chunk;
    if (chunks <= 1)
        return chunk_max_bytes(c, n, k);
    if (!gdml_codec_sparse(c))
        return chunks * GDML_CODEC_HEADER + (chunks - 1) * c->q->bytes(chunk) +
               c->q->bytes(n - (chunks - 1) * chunk);
    /*
     * Split over chunks as k_1 + ... + k_c = k, index varints take at most
     * sum_c (k_c + min(k_c, (m-1)/128) + min(k_c, (m-1)/128^2) + ...) bytes,
     * and sum_c min(k_c, a) <= min(k, c * a). Values: every quantizer writes
     * k values in at most bytes(k) plus one partial block per extra chunk,
     * which bytes(1) bounds.
     */
    k = min_size(k, n);
    size_t idx = k;
    for (uint64_t step = 128; step <= chunk - 1; step *= 128)
        idx += min_size(k, chunks * (size_t)((chunk - 1) / step));
    return chunks * GDML_CODEC_HEADER + idx + c->q->bytes(k) + (chunks - 1) * c->q->bytes(1);
}

size_t gdml_codec_k_for_bytes(const gdml_codec *c, size_t bytes)
{
    if (!gdml_codec_sparse(c))
        return gdml_codec_max_bytes(c, c->n) <= bytes ? c->n : 0;
    if (gdml_codec_max_bytes(c, 1) > bytes)
        return 0;
    size_t lo = 1, hi = c->n; /* max_bytes(lo) fits; the answer is in [lo, hi] */
    while (lo < hi) {
        size_t mid = lo + (hi - lo + 1) / 2;
        if (gdml_codec_max_bytes(c, mid) <= bytes)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* ---- selectors ---- */

/*
 * The k-th largest of a[0..m) (1 <= k <= m), by Hoare's selection with a
 * median-of-three pivot: O(m) on average. Permutes a.
 */
static float kth_largest(float *a, size_t m, size_t k)
{
    ptrdiff_t want = (ptrdiff_t)(m - k), lo = 0, hi = (ptrdiff_t)m - 1;
    while (lo < hi) {
        float x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi];
        float pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        ptrdiff_t i = lo, j = hi;
        do {
            while (a[i] < pivot)
                i++;
            while (pivot < a[j])
                j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        } while (i <= j);
        /* Now a[lo..j] <= pivot <= a[i..hi], and everything between equals pivot. */
        if (j < want)
            lo = i;
        if (want < i)
            hi = j;
    }
    return a[want];
}

static gdml_err select_topk(gdml_codec *c, const float *x, const gdml_codec_params *p, size_t *k)
{
    size_t n = c->n, want = min_size(p->k, n);
    if (want == 0 || want == n) {
        for (size_t i = 0; i < want; i++)
            c->idx[i] = (uint32_t)i;
        *k = want;
        return GDML_OK;
    }
    for (size_t i = 0; i < n; i++)
        c->mag[i] = fabsf(x[i]);
    float t = kth_largest(c->mag, n, want);
    size_t above = 0;
    for (size_t i = 0; i < n; i++)
        above += fabsf(x[i]) > t;
    /* Ties at the threshold go to the lowest indices, so the choice is deterministic. */
    size_t ties = want - above, j = 0;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        bool take = a > t;
        if (!take && a == t && ties > 0) {
            take = true;
            ties--;
        }
        if (take)
            c->idx[j++] = (uint32_t)i;
    }
    assert(j == want);
    *k = want;
    return GDML_OK;
}

static gdml_err select_randk(gdml_codec *c, const float *x, const gdml_codec_params *p, size_t *k)
{
    (void)x;
    size_t n = c->n, want = min_size(p->k, n);
    /*
     * A partial Fisher-Yates shuffle of c->idx, which stays a permutation of
     * 0..n-1 between calls: its first `want` entries are a uniform subset,
     * whatever order the permutation was left in. A bitmap then sorts them in
     * O(n / 64 + want).
     */
    for (size_t i = 0; i < want; i++) {
        size_t r = i + (size_t)gdml_rng_below(&c->rng, n - i);
        uint32_t t = c->idx[i];
        c->idx[i] = c->idx[r];
        c->idx[r] = t;
    }
    size_t words = (n + 63) / 64;
    memset(c->bits, 0, words * sizeof *c->bits);
    for (size_t i = 0; i < want; i++)
        c->bits[c->idx[i] / 64] |= 1ull << (c->idx[i] % 64);
    size_t j = 0;
    for (size_t w = 0; w < words; w++)
        for (uint64_t b = c->bits[w]; b; b &= b - 1)
            c->idx[j++] = (uint32_t)(w * 64 + (size_t)__builtin_ctzll(b));
    assert(j == want);
    *k = want;
    return GDML_OK;
}

static gdml_err select_significance(gdml_codec *c, const float *x, const gdml_codec_params *p,
                                    size_t *k)
{
    if (isnan(p->threshold) || p->threshold < 0.0)
        return GDML_ERR_INVALID;
    const float *ref = p->ref;
    size_t m = 0;
    for (size_t i = 0; i < c->n; i++) {
        double a = fabs((double)x[i]), r = ref ? fabs((double)ref[i]) : 1.0;
        if (a > p->threshold * r) {
            c->idx[m] = (uint32_t)i;
            c->aux[m] = (float)(ref ? a / fmax(r, SIGNIFICANCE_TINY) : a);
            m++;
        }
    }
    size_t want = min_size(p->k, m);
    if (want == 0 || want == m) {
        *k = want;
        return GDML_OK;
    }
    /* More candidates than k: keep the k most significant, ties to the lowest indices. */
    memcpy(c->mag, c->aux, m * sizeof *c->mag);
    float t = kth_largest(c->mag, m, want);
    size_t above = 0;
    for (size_t j = 0; j < m; j++)
        above += c->aux[j] > t;
    size_t ties = want - above, kept = 0;
    for (size_t j = 0; j < m; j++) {
        bool take = c->aux[j] > t;
        if (!take && c->aux[j] == t && ties > 0) {
            take = true;
            ties--;
        }
        if (take)
            c->idx[kept++] = c->idx[j];
    }
    assert(kept == want);
    *k = want;
    return GDML_OK;
}

static gdml_err select_keys(gdml_codec *c, const float *x, const gdml_codec_params *p, size_t *k)
{
    (void)x;
    if (p->n_keys > c->n || (p->n_keys && !p->keys))
        return GDML_ERR_INVALID;
    for (size_t j = 0; j < p->n_keys; j++) {
        if (p->keys[j] >= c->n || (j && p->keys[j] <= p->keys[j - 1]))
            return GDML_ERR_INVALID;
        c->idx[j] = p->keys[j];
    }
    *k = p->n_keys;
    return GDML_OK;
}

/* ---- encoding ---- */

static size_t put_varint(uint8_t *p, uint32_t v)
{
    size_t len = 0;
    while (v >= 0x80u) {
        p[len++] = (uint8_t)(v | 0x80u);
        v >>= 7;
    }
    p[len++] = (uint8_t)v;
    return len;
}

gdml_err gdml_codec_select(gdml_codec *c, const float *x, const gdml_codec_params *p, size_t *k)
{
    assert(x);
    bool listed = c->sel->select == select_keys; /* only the listed entries are read */
    if (!listed && !gdml_codec_all_finite(x, c->n))
        return GDML_ERR_INVALID;
    size_t chosen = c->n;
    if (gdml_codec_sparse(c)) {
        assert(p);
        gdml_err err = c->sel->select(c, x, p, &chosen);
        if (err)
            return err;
    }
    for (size_t j = 0; listed && j < chosen; j++)
        if (!isfinite(x[c->idx[j]]))
            return GDML_ERR_INVALID;
    c->k = chosen;
    c->selected = true;
    *k = chosen;
    return GDML_OK;
}

gdml_err gdml_codec_select_slice(gdml_codec *c, const float *x, size_t lo, size_t hi)
{
    assert(x && !gdml_codec_sparse(c) && c->sel->select != select_keys && lo < hi && hi <= c->n);
    if (!gdml_codec_all_finite(x + lo, hi - lo))
        return GDML_ERR_INVALID;
    c->k = c->n;
    c->selected = true;
    return GDML_OK;
}

/* The first position j of the selection with idx[j] >= i. */
static size_t first_at(const gdml_codec *c, size_t i)
{
    size_t lo = 0, hi = c->k;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->idx[mid] < i)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

size_t gdml_codec_selected_in(const gdml_codec *c, size_t lo, size_t hi)
{
    assert(c->selected && lo <= hi && hi <= c->n);
    if (!gdml_codec_sparse(c))
        return hi - lo;
    return first_at(c, hi) - first_at(c, lo);
}

/*
 * Writes the payload of x[lo..hi) as selected. decoded may be x itself: the
 * slice's values are gathered before decoded[lo..hi) is written, which lets
 * error feedback work in one buffer.
 */
static size_t varint_len(uint32_t v)
{
    size_t len = 1;
    for (; v >= 0x80u; v >>= 7)
        len++;
    return len;
}

/*
 * "all" writes a slice in the sparse form when that is smaller: its non-zero
 * entries with their indices, which is lossless, since what it leaves out is
 * zero. The number of entries the sparse form holds, or m (the slice's size)
 * for the dense form.
 */
static size_t all_sparse_k(const gdml_codec *c, const float *x, size_t lo, size_t hi)
{
    size_t m = hi - lo, dense = c->q->bytes(m), k = 0, index_bytes = 0, last = 0;
    /* Each entry of the sparse form takes a byte of index at least: with this
     * many entries the dense form wins. A dense chunk (every gradient and
     * model on the LAN) is told so by one count that vectorizes, not by a
     * call to bytes() for most of its entries. */
    size_t nonzero = 0;
    for (size_t i = lo; i < hi; i++)
        nonzero += x[i] != 0.0f;
    if (nonzero + c->q->bytes(nonzero) >= dense)
        return m;
    for (size_t i = lo; i < hi; i++) {
        if (x[i] == 0.0f)
            continue;
        index_bytes += varint_len((uint32_t)(k ? i - last - 1 : i - lo));
        last = i;
        if (index_bytes + c->q->bytes(++k) >= dense)
            return m;
    }
    return k;
}

/* The values of an "all" slice's sparse form: its k non-zero entries, gathered. NULL: no memory. */
static const float *gather_nonzero(gdml_codec *c, const float *x, size_t lo, size_t hi, size_t k)
{
    if (k > c->gather_cap) {
        float *g = realloc(c->gather, k * sizeof *g);
        if (!g)
            return NULL;
        c->gather = g;
        c->gather_cap = k;
    }
    size_t j = 0;
    for (size_t i = lo; i < hi; i++)
        if (x[i] != 0.0f)
            c->gather[j++] = x[i];
    return c->gather;
}

/*
 * Writes the payload of x[lo..hi) as selected. decoded may be x itself: the
 * slice's values are gathered before decoded[lo..hi) is written, which lets
 * error feedback work in one buffer.
 */
gdml_err gdml_codec_write(gdml_codec *c, const float *x, size_t lo, size_t hi, uint8_t *out,
                          size_t cap, size_t *len, float *decoded)
{
    assert(c->selected && x && out && len && lo < hi && hi <= c->n);
    bool select = gdml_codec_sparse(c);
    size_t m = hi - lo, j0 = 0, k = m;
    const float *values = x + lo;
    if (select) {
        j0 = first_at(c, lo);
        k = first_at(c, hi) - j0;
        for (size_t j = 0; j < k; j++)
            c->mag[j] = x[c->idx[j0 + j]];
        values = c->mag;
    } else if ((k = all_sparse_k(c, x, lo, hi)) < m &&
               !(values = gather_nonzero(c, x, lo, hi, k))) {
        k = m; /* no room to gather: the dense form, which is only larger */
        values = x + lo;
    }
    bool sparse = k < m || select;
    if (cap < chunk_max_bytes(c, m, k))
        return GDML_ERR_NOMEM;

    out[0] = GDML_CODEC_FORMAT;
    out[1] = c->sel->id;
    out[2] = c->q->id;
    out[3] = sparse ? GDML_CODEC_FLAG_SPARSE : 0;
    gdml_codec_put_u32(out + 4, (uint32_t)m);
    gdml_codec_put_u32(out + 8, (uint32_t)k);
    size_t pos = GDML_CODEC_HEADER;
    if (select) {
        for (size_t j = 0; j < k; j++) {
            size_t at = c->idx[j0 + j] - lo;
            pos += put_varint(out + pos, (uint32_t)(j ? at - (c->idx[j0 + j - 1] - lo) - 1 : at));
        }
    } else if (sparse) {
        for (size_t i = lo, j = 0, last = 0; i < hi; i++)
            if (x[i] != 0.0f) {
                pos += put_varint(out + pos, (uint32_t)(j++ ? i - last - 1 : i - lo));
                last = i;
            }
    }
    c->q->encode(values, k, out + pos);
    *len = pos + c->q->bytes(k);
    if (decoded) { /* what the receiver will make of it: the payload, decoded */
        gdml_errmsg why;
        gdml_err err = gdml_codec_decode(out, *len, decoded + lo, m, &why);
        assert(err == GDML_OK && "the codec cannot read what it wrote");
        (void)err;
    }
    return GDML_OK;
}

gdml_err gdml_codec_encode(gdml_codec *c, const float *x, const gdml_codec_params *p, uint8_t *out,
                           size_t cap, size_t *len, float *decoded)
{
    size_t k;
    gdml_err err = gdml_codec_select(c, x, p, &k);
    if (!err)
        err = gdml_codec_write(c, x, 0, c->n, out, cap, len, decoded);
    return err;
}

gdml_err gdml_codec_encode_ef(gdml_codec *c, const float *u, float *residual,
                              const gdml_codec_params *p, uint8_t *out, size_t cap, size_t *len)
{
    /* Made here, not with the codec: the links keep their own buffers, and a
     * model-sized array per codec that is never used is memory wasted. */
    if (!c->ef && !(c->ef = malloc(c->n * sizeof *c->ef)))
        return GDML_ERR_NOMEM;
    for (size_t i = 0; i < c->n; i++)
        c->ef[i] = u[i] + residual[i];
    gdml_err err = gdml_codec_encode(c, c->ef, p, out, cap, len, c->ef);
    if (err)
        return err; /* residual untouched: the caller may retry with room */
    /* u + residual is recomputed to the same bits; c->ef now holds what was decoded. */
    for (size_t i = 0; i < c->n; i++)
        residual[i] = (u[i] + residual[i]) - c->ef[i];
    return GDML_OK;
}

/* ---- the payload's ids, for the decoder (codec_decode.c) ---- */

bool gdml_codec_selector_by_id(uint8_t id, const char **name, bool *selects)
{
    for (size_t i = 0; i < SELECTOR_COUNT; i++)
        if (selectors[i].id == id) {
            *name = selectors[i].name;
            *selects = selectors[i].select != NULL;
            return true;
        }
    return false;
}

const gdml_quant_ops *gdml_codec_quantizer_by_id(uint8_t id)
{
    for (size_t i = 0; i < QUANTIZER_COUNT; i++)
        if (quantizers[i]->id == id)
            return quantizers[i];
    return NULL;
}
