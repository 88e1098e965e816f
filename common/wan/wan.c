/*
 * wan.c - a WAN link direction: the budget controller that picks how much of
 * an update to send, error feedback, the frames that carry it, and the byte
 * accounting and log.
 */
#include "wan.h"

#include "chunk.h"
#include "codec.h"
#include "tensor.h"
#include "transport.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct gdml_wan {
    char encoder[GDML_CODEC_NAME_MAX];
    double k_fraction;
    gdml_codec *codec; /* NULL until gdml_wan_start */
    gdml_budget *budget;
    size_t n, k_max; /* k_max: entries of a full message (n when dense) */
    double threshold;
    uint64_t min_message;
    bool curve;
    uint64_t seed; /* randk's, kept for an encoder the controller switches to */
    /* n floats each; work: u + residual, then what was decoded (made on first
     * use: an exact encoder needs it only to fold in a residual it was given) */
    float *residual, *work;
    bool exact;         /* all+f32: decodes to exactly what it was given */
    bool residual_zero; /* known to be all zero (the caller has not been handed it) */
    char peer[GDML_NAME_MAX];
    char send_dir[8], recv_dir[8];
    FILE *log;
    uint64_t sent, received;
};

gdml_err gdml_wan_log_open(const char *path, FILE **out, gdml_errmsg *e)
{
    *out = NULL;
    if (!*path)
        return GDML_OK;
    /* Appended to: a restarted process continues its log. */
    FILE *f = fopen(path, "a");
    if (!f)
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot write the byte log '%s': %s", path,
                               strerror(errno));
    if (ftell(f) == 0)
        fputs("mono_ms,peer,direction,type,bytes,rate\n", f);
    *out = f;
    return GDML_OK;
}

gdml_err gdml_wan_new(const gdml_wan_config *cfg, gdml_wan **out, gdml_errmsg *e)
{
    gdml_wan *w = calloc(1, sizeof *w);
    if (!w)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory");
    gdml_err err = gdml_budget_new(&cfg->budget, &w->budget);
    if (err) {
        gdml_errmsg_set(e, err, "cannot make a budget: %s", gdml_strerror(err));
        gdml_wan_destroy(&w);
        return err;
    }
    snprintf(w->encoder, sizeof w->encoder, "%s", cfg->encoder ? cfg->encoder : "dense");
    w->k_fraction = cfg->k_fraction;
    w->threshold = cfg->threshold;
    w->min_message = cfg->min_message_bytes;
    w->curve = cfg->curve;
    snprintf(w->peer, sizeof w->peer, "%s", cfg->peer ? cfg->peer : "");
    bool up = cfg->direction && strcmp(cfg->direction, "up") == 0;
    snprintf(w->send_dir, sizeof w->send_dir, "%s", up ? "up" : "down");
    snprintf(w->recv_dir, sizeof w->recv_dir, "%s", up ? "down" : "up");
    w->log = cfg->byte_log;
    *out = w;
    return GDML_OK;
}

static size_t full_k(const gdml_wan *w);

gdml_err gdml_wan_start(gdml_wan *w, size_t n, uint64_t seed, gdml_errmsg *e)
{
    if (w->codec) {
        if (n == w->n)
            return GDML_OK;
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "the link with '%s' carries %zu parameters, not %zu", w->peer, w->n,
                               n);
    }
    gdml_err err = gdml_codec_new(w->encoder, n, seed, &w->codec, e);
    if (err)
        return err;
    w->n = n;
    w->seed = seed;
    w->exact = !gdml_codec_sparse(w->codec) && !gdml_codec_lossy(w->codec);
    /* calloc: pages never written take no memory, and an exact encoder's
     * residual stays zero */
    w->residual = calloc(n, sizeof(float));
    w->residual_zero = true;
    w->work = w->exact ? NULL : malloc(n * sizeof(float));
    if (!w->residual || (!w->exact && !w->work)) {
        /* leave the link unstarted, so that a retry starts afresh */
        gdml_codec_destroy(&w->codec);
        free(w->residual);
        free(w->work);
        w->residual = w->work = NULL;
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for a %zu-parameter link", n);
    }
    w->k_max = full_k(w);
    return GDML_OK;
}

/* The entries of a full message of the codec in force: n when dense, else k_fraction of n. */
static size_t full_k(const gdml_wan *w)
{
    if (!gdml_codec_sparse(w->codec))
        return w->n;
    size_t k = (size_t)((double)w->n * w->k_fraction);
    return k < 1 ? 1 : k;
}

gdml_err gdml_wan_set_encoder(gdml_wan *w, const char *spec, double k_fraction, uint64_t seed,
                              gdml_errmsg *e)
{
    if (!gdml_codec_spec_ok(spec, e))
        return GDML_ERR_INVALID;
    if (!(k_fraction > 0.0 && k_fraction <= 1.0))
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "the link with '%s': k_fraction %g is not in (0, 1]", w->peer,
                               k_fraction);
    if (w->codec) {
        gdml_codec *c = NULL;
        gdml_err err = gdml_codec_new(spec, w->n, seed, &c, e);
        if (err)
            return err;
        bool exact = !gdml_codec_sparse(c) && !gdml_codec_lossy(c);
        if (!exact && !w->work && !(w->work = malloc(w->n * sizeof(float)))) {
            gdml_codec_destroy(&c);
            return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for a %zu-parameter link",
                                   w->n);
        }
        gdml_codec_destroy(&w->codec);
        w->codec = c;
        w->exact = exact;
        w->residual_zero = false; /* what the old encoder left is still owed */
    }
    snprintf(w->encoder, sizeof w->encoder, "%s", spec);
    w->k_fraction = k_fraction;
    if (w->codec)
        w->k_max = full_k(w);
    return GDML_OK;
}

const char *gdml_wan_encoder(const gdml_wan *w)
{
    return w->codec ? gdml_codec_name(w->codec) : w->encoder;
}

uint64_t gdml_wan_seed(const gdml_wan *w)
{
    return w->seed;
}

void gdml_wan_destroy(gdml_wan **wp)
{
    gdml_wan *w = wp ? *wp : NULL;
    if (!w)
        return;
    gdml_codec_destroy(&w->codec);
    gdml_budget_destroy(&w->budget);
    free(w->residual);
    free(w->work);
    free(w);
    *wp = NULL;
}

void gdml_wan_set_budget(gdml_wan *w, const gdml_budget_config *budget)
{
    gdml_budget_reconfigure(w->budget, budget);
}

gdml_err gdml_wan_try_budget(gdml_wan *w, const gdml_budget_config *budget,
                             const gdml_msg_header *h, int64_t now_ms, gdml_errmsg *e)
{
    gdml_budget_config old = gdml_budget_get_config(w->budget);
    gdml_budget_reconfigure(w->budget, budget);
    if (!w->codec || gdml_wan_wait_ms(w, h, now_ms, e) >= 0)
        return GDML_OK;
    gdml_budget_reconfigure(w->budget, &old);
    return GDML_ERR_INVALID;
}

gdml_budget_config gdml_wan_budget(const gdml_wan *w)
{
    return gdml_budget_get_config(w->budget);
}

uint64_t gdml_wan_available(gdml_wan *w, int64_t now_ms)
{
    return gdml_budget_available(w->budget, now_ms);
}

void gdml_wan_budget_state(gdml_wan *w, int64_t now_ms, uint64_t *spent, uint64_t *in_window)
{
    *spent = gdml_budget_spent(w->budget);
    *in_window = gdml_budget_in_window(w->budget, now_ms);
}

void gdml_wan_budget_restore(gdml_wan *w, uint64_t spent, uint64_t in_window, int64_t now_ms)
{
    gdml_budget_restore(w->budget, spent, in_window, now_ms);
}

float *gdml_wan_residual(gdml_wan *w)
{
    w->residual_zero = false; /* the caller may write it */
    return w->residual;
}

bool gdml_wan_residual_zero(gdml_wan *w)
{
    /* checked again only after the caller was handed it */
    for (size_t i = 0; !w->residual_zero && i < w->n; i++)
        if (w->residual[i] != 0.0f)
            return false;
    w->residual_zero = true;
    return true;
}

size_t gdml_wan_size(const gdml_wan *w)
{
    return w->n;
}

uint64_t gdml_wan_bytes_sent(const gdml_wan *w)
{
    return w->sent;
}

uint64_t gdml_wan_bytes_received(const gdml_wan *w)
{
    return w->received;
}

static void log_line(gdml_wan *w, const char *dir, gdml_msg_type type, uint64_t bytes,
                     int64_t now_ms)
{
    if (!w->log)
        return;
    gdml_budget_config b = gdml_budget_get_config(w->budget);
    fprintf(w->log, "%" PRId64 ",%s,%s,%s,%" PRIu64 ",%.0f\n", now_ms, w->peer, dir,
            gdml_msg_type_name(type), bytes, b.rate);
    fflush(w->log);
}

/* The frames of an update: every chunk that has entries, or chunk 0 when none does. */
static uint64_t chunks_of(const gdml_wan *w)
{
    return gdml_chunk_count(w->n);
}

/*
 * The largest header any chunk of this message can have: its fields at their
 * largest values for this tensor.
 */
static size_t header_max(const gdml_wan *w, const gdml_msg_header *h)
{
    gdml_msg_header sized = *h;
    sized.encoding = GDML_ENC_CODEC;
    sized.total = w->n;
    sized.chunks = chunks_of(w);
    sized.offset = (chunks_of(w) - 1) * GDML_CHUNK_ELEMS;
    sized.plen = GDML_MSG_PAYLOAD_MAX;
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len;
    if (gdml_msg_encode(&sized, buf, sizeof buf, &len) != GDML_OK)
        return GDML_MSG_HEADER_MAX;
    return len;
}

/* Wire bytes of h carrying an update of at most k entries, every chunk at its largest. */
static uint64_t wire_for_k(const gdml_wan *w, size_t header, size_t k)
{
    uint64_t chunks = chunks_of(w);
    uint64_t payload = gdml_codec_max_bytes_chunked(w->codec, k, GDML_CHUNK_ELEMS);
    /* Each chunk frame: its header, its payload and the framing around them
     * (at most the framing of the largest frame). */
    uint64_t per_frame = gdml_wire_bytes(GDML_FRAME_MAX, w->curve) - GDML_FRAME_MAX;
    if (chunks == 1)
        return gdml_wire_bytes(header + payload, w->curve);
    return chunks * (header + per_frame) + payload;
}

/* The largest k <= k_max whose message surely fits in avail bytes (0: none). */
static size_t fit_k(const gdml_wan *w, size_t header, uint64_t avail)
{
    if (!gdml_codec_sparse(w->codec))
        return wire_for_k(w, header, w->n) <= avail ? w->n : 0;
    size_t lo = 0, hi = w->k_max; /* wire_for_k grows with k: find the last that fits */
    while (lo < hi) {
        size_t mid = lo + (hi - lo + 1) / 2;
        if (wire_for_k(w, header, mid) <= avail)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Bytes that must be free before a message is worth sending. */
static uint64_t useful_bytes(const gdml_wan *w, size_t header)
{
    uint64_t full = wire_for_k(w, header, w->k_max);
    uint64_t least = gdml_codec_sparse(w->codec) ? wire_for_k(w, header, 1) : full;
    uint64_t want = full < w->min_message ? full : w->min_message;
    return want > least ? want : least;
}

void gdml_wan_update_fini(gdml_wan_update *u)
{
    if (!u)
        return;
    for (size_t i = 0; i < u->n_frames; i++)
        gdml_blob_unref(&u->frames[i]);
    free(u->frames);
    memset(u, 0, sizeof *u);
}

/* Writes chunk [lo, hi) of c's selection of x into a sealed frame. */
static gdml_err chunk_frame(gdml_codec *c, gdml_msg_header *h, const float *x, float *decoded,
                            size_t lo, size_t hi, bool curve, gdml_blob **out, uint64_t *wire)
{
    size_t k = gdml_codec_selected_in(c, lo, hi);
    size_t cap = gdml_codec_chunk_max_bytes(c, hi - lo, k);
    gdml_blob *f = NULL;
    size_t len = 0;
    gdml_err err = gdml_frame_new(cap, &f);
    if (!err)
        err = gdml_codec_write(c, x, lo, hi, gdml_frame_payload(f), cap, &len, decoded);
    if (!err) {
        h->offset = lo;
        err = gdml_frame_seal(f, h, len);
    }
    if (err) {
        gdml_blob_unref(&f);
        return err;
    }
    size_t flen;
    gdml_blob_view(f, &flen);
    *wire += gdml_wire_bytes(flen, curve);
    *out = f;
    return GDML_OK;
}

gdml_err gdml_codec_dense_frame(gdml_codec *c, gdml_msg_header *h, const float *x, uint64_t i,
                                bool curve, gdml_blob **out, uint64_t *wire)
{
    size_t n = gdml_codec_size(c);
    assert(i < gdml_chunk_count(n));
    size_t lo = (size_t)(i * GDML_CHUNK_ELEMS), hi = lo + (size_t)gdml_chunk_len(n, lo);
    gdml_err err = gdml_codec_select_slice(c, x, lo, hi);
    if (err)
        return err;
    h->encoding = GDML_ENC_CODEC;
    h->total = n;
    h->chunks = gdml_chunk_count(n);
    return chunk_frame(c, h, x, NULL, lo, hi, curve, out, wire);
}

gdml_err gdml_codec_frames(gdml_codec *c, gdml_msg_header *h, const float *x, float *decoded,
                           bool curve, gdml_wan_update *out, gdml_errmsg *e)
{
    memset(out, 0, sizeof *out);
    size_t n = gdml_codec_size(c);
    /* Every chunk of a dense tensor; the chunks that hold entries of a sparse
     * one, or chunk 0 alone if none does, so the receiver hears of it. */
    bool all = !gdml_codec_sparse(c);
    uint64_t chunks = gdml_chunk_count(n), sending = 0;
    for (uint64_t i = 0; i < chunks; i++) {
        size_t lo = (size_t)(i * GDML_CHUNK_ELEMS), hi = lo + (size_t)gdml_chunk_len(n, lo);
        sending += all || gdml_codec_selected_in(c, lo, hi) > 0;
    }
    bool none = sending == 0;
    if (none)
        sending = 1;
    if (!(out->frames = calloc(sending, sizeof *out->frames)))
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for a tensor's frames");
    h->encoding = GDML_ENC_CODEC;
    h->total = n;
    h->chunks = sending;
    gdml_err err = GDML_OK;
    for (uint64_t i = 0; i < chunks && !err; i++) {
        size_t lo = (size_t)(i * GDML_CHUNK_ELEMS), hi = lo + (size_t)gdml_chunk_len(n, lo);
        if (!all && gdml_codec_selected_in(c, lo, hi) == 0 && !(none && i == 0)) {
            if (decoded)
                memset(decoded + lo, 0, (hi - lo) * sizeof *decoded); /* decodes to nothing */
            continue;
        }
        err = chunk_frame(c, h, x, decoded, lo, hi, curve, &out->frames[out->n_frames], &out->wire);
        if (!err)
            out->n_frames++;
    }
    if (err) {
        gdml_wan_update_fini(out);
        return gdml_errmsg_set(e, err, "cannot make the frames of a %s",
                               gdml_msg_type_name(h->type));
    }
    return GDML_OK;
}

gdml_err gdml_wan_encode_update(gdml_wan *w, gdml_msg_header *h, const float *u, const float *ref,
                                float *applied, int64_t now_ms, gdml_wan_update *out,
                                gdml_errmsg *e)
{
    assert(w->codec && "gdml_wan_start first");
    memset(out, 0, sizeof *out);
    size_t header = header_max(w, h);
    uint64_t avail = gdml_budget_available(w->budget, now_ms);
    if (avail < useful_bytes(w, header))
        return GDML_ERR_AGAIN;
    size_t k = fit_k(w, header, avail);
    if (k == 0)
        return GDML_ERR_AGAIN;

    /* An exact encoder with no residual to fold in sends u itself, and the
     * receiver decodes exactly u: no copy of the model is made. */
    bool direct = w->exact && (applied || gdml_wan_residual_zero(w));
    if (!direct && !w->work && !(w->work = malloc(w->n * sizeof(float))))
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for a %zu-parameter update", w->n);
    /* Error feedback on the uplink; the downlink's caller tracks the receiver itself. */
    for (size_t i = 0; !direct && i < w->n; i++)
        w->work[i] = applied ? u[i] : u[i] + w->residual[i];
    const float *x = direct ? u : w->work;
    gdml_codec_params p = {.k = k, .threshold = w->threshold, .ref = ref};
    size_t chosen = 0;
    gdml_err err = gdml_codec_select(w->codec, x, &p, &chosen);
    if (err)
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "cannot encode an update for '%s': it holds a value that is not "
                               "finite",
                               w->peer);

    if ((err = gdml_codec_frames(w->codec, h, x, direct ? NULL : w->work, w->curve, out, e)))
        return err;
    /* The controller sized k so that the frames fit: wire <= avail by construction. */
    assert(out->wire <= avail);
    if (applied) /* the receiver now holds this much more */
        gdml_saxpy(w->n, 1.0f, x, applied);
    else if (!direct) { /* meant minus decoded; u + residual recomputes to the same bits */
        double uu = 0, rr = 0;
        for (size_t i = 0; i < w->n; i++) {
            w->residual[i] = (u[i] + w->residual[i]) - w->work[i];
            uu += (double)u[i] * u[i];
            rr += (double)w->residual[i] * w->residual[i];
        }
        out->update_norm = sqrt(uu);
        out->residual_norm = sqrt(rr);
        w->residual_zero = false; /* a lossy encoder (or one switched from) leaves one */
    }
    gdml_err spent = gdml_budget_spend(w->budget, out->wire, now_ms);
    assert(spent == GDML_OK && "the controller sent more than the budget allowed");
    (void)spent;
    w->sent += out->wire;
    log_line(w, w->send_dir, h->type, out->wire, now_ms);
    out->k = chosen;
    return GDML_OK;
}

int64_t gdml_wan_wait_ms(gdml_wan *w, const gdml_msg_header *h, int64_t now_ms, gdml_errmsg *e)
{
    assert(w->codec && "gdml_wan_start first");
    uint64_t need = useful_bytes(w, header_max(w, h));
    int64_t wait = gdml_budget_wait_ms(w->budget, need, now_ms);
    if (wait < 0) {
        gdml_budget_config b = gdml_budget_get_config(w->budget);
        if (b.cap && gdml_budget_spent(w->budget) + need > b.cap)
            gdml_errmsg_set(e, GDML_ERR_INVALID,
                            "the %s link with '%s' has spent its total budget of %" PRIu64
                            " bytes; raise budget.%s_total_bytes",
                            w->send_dir, w->peer, b.cap, w->send_dir);
        else
            gdml_errmsg_set(e, GDML_ERR_INVALID,
                            "the smallest useful %s message to '%s' takes %" PRIu64
                            " bytes, more than budget.%s_bytes_per_s = %.0f allows in a "
                            "second; raise it, use a sparse encoder, or (uplink) lower "
                            "budget.min_message_bytes",
                            w->send_dir, w->peer, need, w->send_dir, b.rate);
    }
    return wait;
}

int64_t gdml_wan_admit(gdml_wan *w, gdml_msg_type type, size_t frame_len, int64_t now_ms)
{
    uint64_t wire = gdml_wire_bytes(frame_len, w->curve);
    int64_t wait = gdml_budget_wait_ms(w->budget, wire, now_ms);
    if (wait != 0)
        return wait;
    gdml_err spent = gdml_budget_spend(w->budget, wire, now_ms);
    assert(spent == GDML_OK);
    (void)spent;
    w->sent += wire;
    log_line(w, w->send_dir, type, wire, now_ms);
    return 0;
}

bool gdml_wan_cap_spent(const gdml_wan *w)
{
    gdml_budget_config b = gdml_budget_get_config(w->budget);
    /* The smallest frame there is: a header of a few fields. */
    return b.cap && gdml_budget_spent(w->budget) + 32 > b.cap;
}

void gdml_wan_note_received(gdml_wan *w, gdml_msg_type type, uint64_t wire_bytes, int64_t now_ms)
{
    w->received += wire_bytes;
    log_line(w, w->recv_dir, type, wire_bytes, now_ms);
}

/* A chunk that is not a codec payload, or whose payload does not decode. */
static gdml_err need_codec(const gdml_msg_header *h, const char *from, gdml_errmsg *e)
{
    if (h->encoding == GDML_ENC_CODEC)
        return GDML_OK;
    return gdml_errmsg_set(e, GDML_ERR_PROTO, "%s from '%s' carries no tensor chunk",
                           gdml_msg_type_name(h->type), from);
}

static gdml_err bad_chunk(const gdml_msg_header *h, const char *from, const gdml_errmsg *why,
                          gdml_errmsg *e)
{
    return gdml_errmsg_set(e, GDML_ERR_PROTO, "%s from '%s', chunk at %llu: %s",
                           gdml_msg_type_name(h->type), from, (unsigned long long)h->offset,
                           why->text);
}

/* A transfer whose chunk failed starts again; it counts as abandoned, even at its last chunk. */
static void abandon(gdml_transfer *t)
{
    t->received = 0;
    gdml_transfer_reset(t);
}

gdml_err gdml_wan_decode_chunk(const gdml_msg_header *h, const uint8_t *payload, float *out,
                               const char *from, gdml_errmsg *e)
{
    gdml_err err = need_codec(h, from, e);
    if (err)
        return err;
    gdml_errmsg why;
    size_t m = (size_t)gdml_chunk_len(h->total, h->offset);
    if (gdml_codec_decode(payload, (size_t)h->plen, out + h->offset, m, &why))
        return bad_chunk(h, from, &why, e);
    return GDML_OK;
}

/* The transfer's verdict on a chunk, as a reason; *starts if it opens a new transfer. */
static gdml_reason offer_starts(gdml_transfer *t, const gdml_msg_header *h, size_t n, bool *starts,
                                gdml_errmsg *e)
{
    switch (gdml_transfer_offer(t, h, n, starts, e)) {
    case GDML_CHUNK_NEW:
        return GDML_REASON_NONE;
    case GDML_CHUNK_DUPLICATE:
        return GDML_REASON_DUPLICATE;
    case GDML_CHUNK_STALE:
        return GDML_REASON_STALE;
    case GDML_CHUNK_BAD:
        break;
    }
    return GDML_REASON_TENSOR;
}

static gdml_reason offer(gdml_transfer *t, const gdml_msg_header *h, size_t n, gdml_errmsg *e)
{
    bool starts;
    return offer_starts(t, h, n, &starts, e);
}

gdml_reason gdml_tensor_receive(gdml_transfer *t, const gdml_msg_header *h, const uint8_t *payload,
                                float *dst, size_t n, bool clear, const char *from, bool *complete,
                                gdml_errmsg *e)
{
    *complete = false;
    bool starts = false;
    gdml_reason r = offer_starts(t, h, n, &starts, e);
    if (r != GDML_REASON_NONE)
        return r;
    if (starts && clear)
        memset(dst, 0, n * sizeof *dst);
    if (gdml_wan_decode_chunk(h, payload, dst, from, e)) {
        abandon(t);
        return GDML_REASON_TENSOR;
    }
    *complete = gdml_transfer_complete(t);
    return GDML_REASON_NONE;
}

gdml_reason gdml_tensor_receive_entries(gdml_transfer *t, const gdml_msg_header *h,
                                        const uint8_t *payload, size_t n, const char *from,
                                        uint32_t *idx, float *val, size_t cap, size_t *count,
                                        bool *complete, gdml_errmsg *e)
{
    *complete = false;
    *count = 0;
    gdml_reason r = offer(t, h, n, e);
    if (r != GDML_REASON_NONE)
        return r;
    gdml_errmsg why;
    size_t m = (size_t)gdml_chunk_len(h->total, h->offset);
    if (need_codec(h, from, e) ||
        (gdml_codec_decode_entries(payload, (size_t)h->plen, m, idx, val, cap, count, &why) &&
         bad_chunk(h, from, &why, e))) {
        abandon(t);
        *count = 0;
        return GDML_REASON_TENSOR;
    }
    for (size_t j = 0; j < *count; j++)
        idx[j] += (uint32_t)h->offset;
    *complete = gdml_transfer_complete(t);
    return GDML_REASON_NONE;
}
