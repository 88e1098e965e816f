/*
 * wan.c - a WAN link direction: the budget controller that picks how much of
 * an update to send, error feedback, and the byte accounting and log.
 */
#include "wan.h"

#include "blob.h"
#include "codec.h"
#include "log.h"
#include "tensor.h"
#include "util.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEND_TIMEOUT_MS 5000

struct gdml_wan {
    char encoder[GDML_CODEC_NAME_MAX];
    double k_fraction;
    gdml_codec *codec; /* NULL until gdml_wan_start */
    gdml_budget *budget;
    size_t n, k_max; /* k_max: entries of a full message (n when dense) */
    double threshold;
    uint64_t min_message;
    float *residual, *saved, *decoded; /* n floats each; saved: the residual before a send */
    uint8_t *buf;
    size_t buf_cap;
    char peer[GDML_NAME_MAX];
    char send_dir[8], recv_dir[8];
    FILE *log;
    uint64_t sent, received;
};

static uint64_t frame_bytes(uint64_t size)
{
    return size + (size <= 255 ? 2 : 9);
}

uint64_t gdml_wan_wire_bytes(const gdml_msg_header *h)
{
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len;
    if (gdml_msg_encode(h, buf, sizeof buf, &len) != GDML_OK)
        return UINT64_MAX;
    uint64_t total = frame_bytes(len);
    for (uint32_t i = 0; i < h->n_payloads; i++)
        total += frame_bytes(h->sizes[i]);
    return total;
}

gdml_err gdml_wan_log_open(const char *path, FILE **out, gdml_errmsg *e)
{
    *out = NULL;
    if (!*path)
        return GDML_OK;
    FILE *f = fopen(path, "w");
    if (!f)
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot write the byte log '%s': %s", path,
                               strerror(errno));
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
    snprintf(w->peer, sizeof w->peer, "%s", cfg->peer ? cfg->peer : "");
    bool up = cfg->direction && strcmp(cfg->direction, "up") == 0;
    snprintf(w->send_dir, sizeof w->send_dir, "%s", up ? "up" : "down");
    snprintf(w->recv_dir, sizeof w->recv_dir, "%s", up ? "down" : "up");
    w->log = cfg->byte_log;
    *out = w;
    return GDML_OK;
}

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
    w->residual = calloc(n, sizeof(float));
    w->saved = malloc(n * sizeof(float));
    w->decoded = malloc(n * sizeof(float));
    if (!w->residual || !w->saved || !w->decoded)
        goto nomem;
    w->k_max = n;
    if (gdml_codec_sparse(w->codec)) {
        w->k_max = (size_t)((double)n * w->k_fraction);
        if (w->k_max < 1)
            w->k_max = 1;
    }
    w->buf_cap = gdml_codec_max_bytes(w->codec, w->k_max);
    if (!(w->buf = malloc(w->buf_cap)))
        goto nomem;
    return GDML_OK;
nomem: /* leave the link unstarted, so that a retry starts afresh */
    gdml_codec_destroy(&w->codec);
    free(w->residual);
    free(w->saved);
    free(w->decoded);
    w->residual = w->saved = w->decoded = NULL;
    return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for a %zu-parameter link", n);
}

void gdml_wan_destroy(gdml_wan **wp)
{
    gdml_wan *w = wp ? *wp : NULL;
    if (!w)
        return;
    gdml_codec_destroy(&w->codec);
    gdml_budget_destroy(&w->budget);
    free(w->residual);
    free(w->saved);
    free(w->decoded);
    free(w->buf);
    free(w);
    *wp = NULL;
}

void gdml_wan_set_budget(gdml_wan *w, const gdml_budget_config *budget)
{
    gdml_budget_reconfigure(w->budget, budget);
}

gdml_err gdml_wan_try_budget(gdml_wan *w, const gdml_budget_config *budget,
                             const gdml_msg_header *h, gdml_errmsg *e)
{
    gdml_budget_config old = gdml_budget_get_config(w->budget);
    gdml_budget_reconfigure(w->budget, budget);
    if (!w->codec || gdml_wan_wait_ms(w, h, gdml_now_ms(), e) >= 0)
        return GDML_OK;
    gdml_budget_reconfigure(w->budget, &old);
    return GDML_ERR_INVALID;
}

float *gdml_wan_residual(gdml_wan *w)
{
    return w->residual;
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

/* Wire bytes of h carrying a payload of at most the size k entries can take. */
static uint64_t wire_for_k(const gdml_wan *w, const gdml_msg_header *h, size_t k)
{
    gdml_msg_header sized = *h;
    sized.encoding = GDML_ENC_CODEC;
    sized.n_payloads = 1;
    sized.sizes[0] = gdml_codec_max_bytes(w->codec, k);
    return gdml_wan_wire_bytes(&sized);
}

/* The largest k <= k_max whose message surely fits in avail bytes (0: none). */
static size_t fit_k(const gdml_wan *w, const gdml_msg_header *h, uint64_t avail)
{
    if (!gdml_codec_sparse(w->codec))
        return wire_for_k(w, h, w->n) <= avail ? w->n : 0;
    size_t lo = 0, hi = w->k_max; /* wire_for_k grows with k: find the last that fits */
    while (lo < hi) {
        size_t mid = lo + (hi - lo + 1) / 2;
        if (wire_for_k(w, h, mid) <= avail)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Bytes that must be free before a message is worth sending. */
static uint64_t useful_bytes(const gdml_wan *w, const gdml_msg_header *h)
{
    uint64_t full = wire_for_k(w, h, w->k_max);
    uint64_t least = gdml_codec_sparse(w->codec) ? wire_for_k(w, h, 1) : full;
    uint64_t want = full < w->min_message ? full : w->min_message;
    return want > least ? want : least;
}

gdml_err gdml_wan_send_update(gdml_wan *w, gdml_link *l, const gdml_peer *peer, gdml_msg_header *h,
                              const float *u, const float *ref, float *applied, int64_t now_ms,
                              size_t *sent_k, gdml_errmsg *e)
{
    assert(w->codec && "gdml_wan_start first");
    uint64_t avail = gdml_budget_available(w->budget, now_ms);
    if (avail < useful_bytes(w, h))
        return GDML_ERR_AGAIN;
    size_t k = fit_k(w, h, avail);
    if (k == 0)
        return GDML_ERR_AGAIN;

    gdml_codec_params p = {.k = k, .threshold = w->threshold, .ref = ref};
    size_t len;
    gdml_err err;
    if (applied) {
        err = gdml_codec_encode(w->codec, u, &p, w->buf, w->buf_cap, &len, w->decoded);
    } else {
        /* Error feedback is the codec's; the residual is kept to be put back
         * if the message does not go out after all. */
        memcpy(w->saved, w->residual, w->n * sizeof(float));
        err = gdml_codec_encode_ef(w->codec, u, w->residual, &p, w->buf, w->buf_cap, &len);
    }
    if (err)
        return gdml_errmsg_set(e, err, "cannot encode an update for '%s'", w->peer);
    h->encoding = GDML_ENC_CODEC;
    h->n_payloads = 1;
    h->sizes[0] = len;
    uint64_t wire = gdml_wan_wire_bytes(h);
    gdml_blob *b = NULL;
    if (wire > avail) /* cannot happen: len <= max_bytes(k), which fit_k checked */
        err = gdml_errmsg_set(e, GDML_ERR_INVALID,
                              "an update of %" PRIu64 " bytes does not fit the %" PRIu64
                              " the budget allows",
                              wire, avail);
    else if (gdml_blob_copy(w->buf, len, &b))
        err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory");
    else
        err = gdml_link_send(l, peer, h, &b, 1, SEND_TIMEOUT_MS, e);
    gdml_blob_unref(&b);
    if (err) {
        if (!applied)
            memcpy(w->residual, w->saved, w->n * sizeof(float));
        return err;
    }
    if (applied) /* the receiver now holds this much more */
        gdml_saxpy(w->n, 1.0f, w->decoded, applied);
    gdml_err spent = gdml_budget_spend(w->budget, wire, now_ms);
    assert(spent == GDML_OK && "the controller sent more than the budget allowed");
    (void)spent;
    w->sent += wire;
    log_line(w, w->send_dir, h->type, wire, now_ms);
    if (sent_k) /* what the encoder sent: a filter may send fewer than it may */
        *sent_k = gdml_codec_payload_k(w->buf, len);
    return GDML_OK;
}

int64_t gdml_wan_wait_ms(gdml_wan *w, const gdml_msg_header *h, int64_t now_ms, gdml_errmsg *e)
{
    assert(w->codec && "gdml_wan_start first");
    uint64_t need = useful_bytes(w, h);
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

gdml_err gdml_wan_send_control(gdml_wan *w, gdml_link *l, const gdml_peer *peer,
                               const gdml_msg_header *h, int timeout_ms, gdml_errmsg *e)
{
    uint64_t wire = gdml_wan_wire_bytes(h);
    int64_t deadline = gdml_now_ms() + timeout_ms;
    for (;;) {
        int64_t now = gdml_now_ms();
        int64_t wait = gdml_budget_wait_ms(w->budget, wire, now);
        if (wait < 0)
            return gdml_errmsg_set(e, GDML_ERR_INVALID,
                                   "a %" PRIu64 "-byte %s does not fit the %s budget with '%s'",
                                   wire, gdml_msg_type_name(h->type), w->send_dir, w->peer);
        if (wait == 0)
            break;
        if (now + wait > deadline)
            return gdml_errmsg_set(e, GDML_ERR_TIMEOUT, "no budget to send %s to '%s' within %d ms",
                                   gdml_msg_type_name(h->type), w->peer, timeout_ms);
        struct timespec ts = {.tv_sec = wait / 1000, .tv_nsec = (wait % 1000) * 1000000};
        nanosleep(&ts, NULL);
    }
    int64_t now = gdml_now_ms();
    gdml_err err = gdml_link_send(l, peer, h, NULL, 0, SEND_TIMEOUT_MS, e);
    if (err)
        return err;
    gdml_err spent = gdml_budget_spend(w->budget, wire, now);
    assert(spent == GDML_OK && "a control message was sent beyond the budget");
    (void)spent;
    w->sent += wire;
    log_line(w, w->send_dir, h->type, wire, now);
    return GDML_OK;
}

void gdml_wan_note_received(gdml_wan *w, const gdml_rx *rx, int64_t now_ms)
{
    w->received += rx->wire_bytes;
    log_line(w, w->recv_dir, rx->header.type, rx->wire_bytes, now_ms);
}

gdml_err gdml_wan_decode(const gdml_rx *rx, float *out, size_t n, gdml_errmsg *e)
{
    const char *type = gdml_msg_type_name(rx->header.type);
    if (rx->header.encoding != GDML_ENC_CODEC || rx->n_payloads != 1)
        return gdml_errmsg_set(e, GDML_ERR_PROTO,
                               "%s from '%s': expected one codec payload, got encoding %u with "
                               "%zu payloads",
                               type, rx->header.sender, (unsigned)rx->header.encoding,
                               rx->n_payloads);
    gdml_errmsg why;
    if (gdml_codec_decode(rx->payload[0], rx->payload_size[0], out, n, &why))
        return gdml_errmsg_set(e, GDML_ERR_PROTO, "%s from '%s': %s", type, rx->header.sender,
                               why.text);
    return GDML_OK;
}
