/*
 * test_wan.c - one direction of a WAN link (wan.h), with no socket: updates
 * made into sealed frames, one per chunk, decoded back with msg.h and
 * gdml_wan_decode_chunk; error feedback that forgets nothing; the budget
 * controller under simulated time (no window ever over the rate, AGAIN
 * changes nothing, wait_ms says when); exact wire counts with and without
 * CURVE; the downlink's view mode; caps, budgets that can never carry a
 * message, control frames; the CSV byte log; and gdml_tensor_receive fed
 * chunks in any order, duplicated, stale, undecodable and of the wrong size.
 */
#include "../support.h"

#include "chunk.h"
#include "rng.h"
#include "transport.h"
#include "wan.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENDER "region-x"
#define C ((size_t)GDML_CHUNK_ELEMS)

TestSuite(wan, .timeout = 120);

/* ---- helpers ---- */

typedef struct link_opts {
    const char *encoder;
    double k_fraction;
    double rate;
    uint64_t cap;
    uint64_t min_message;
    size_t n; /* 0: not started */
    FILE *log;
    const char *direction;
    bool curve;
} link_opts;

static gdml_wan *make_link(const link_opts *o)
{
    gdml_wan_config cfg = {.encoder = o->encoder,
                           .k_fraction = o->k_fraction,
                           .budget = {.rate = o->rate, .cap = o->cap, .window_ms = 1000},
                           .min_message_bytes = o->min_message,
                           .peer = "coordinator",
                           .direction = o->direction ? o->direction : "up",
                           .byte_log = o->log,
                           .curve = o->curve};
    gdml_wan *w = NULL;
    gdml_errmsg e;
    cr_assert_eq(gdml_wan_new(&cfg, &w, &e), GDML_OK, "%s", e.text);
    if (o->n > 0)
        cr_assert_eq(gdml_wan_start(w, o->n, 7, &e), GDML_OK, "%s", e.text);
    return w;
}

static gdml_wan *make_wan(const char *encoder, double k_fraction, double rate, uint64_t cap,
                          uint64_t min_message, size_t n)
{
    link_opts o = {.encoder = encoder,
                   .k_fraction = k_fraction,
                   .rate = rate,
                   .cap = cap,
                   .min_message = min_message,
                   .n = n};
    return make_link(&o);
}

static float *floats(size_t n)
{
    float *x = calloc(n, sizeof *x);
    cr_assert_not_null(x);
    return x;
}

static void fill_normal(gdml_rng *r, float *x, size_t n, double sigma)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(sigma * gdml_rng_normal(r));
}

static void delta_header(gdml_msg_header *h, uint64_t seq)
{
    gdml_msg_header_init(h, GDML_MSG_DELTA, SENDER);
    h->seq = seq;
    h->version = seq;
    h->step = seq;
    h->count = 64;
    h->metric = 0.5;
}

/* Makes u into frames; asserts GDML_OK. */
static void encode_ok(gdml_wan *w, uint64_t seq, const float *u, float *applied, int64_t now_ms,
                      gdml_wan_update *up)
{
    gdml_msg_header h;
    delta_header(&h, seq);
    gdml_errmsg e;
    gdml_err err = gdml_wan_encode_update(w, &h, u, NULL, applied, now_ms, up, &e);
    cr_assert_eq(err, GDML_OK, "encode at %" PRId64 ": %d %s", now_ms, err, e.text);
    cr_assert_gt(up->n_frames, 0);
}

/* Decodes frame f of an update: its header and where its payload is. */
static void frame_header(const gdml_wan_update *up, size_t f, gdml_msg_header *h,
                         const uint8_t **payload)
{
    size_t len;
    const uint8_t *frame = gdml_blob_view(up->frames[f], &len);
    gdml_errmsg e;
    cr_assert_eq(gdml_msg_decode(frame, len, h, payload, NULL, &e), GDML_OK, "frame %zu: %s", f,
                 e.text);
}

/* Decodes every frame of an update into out (zeroed first); offsets[f] gets each offset. */
static void decode_update(const gdml_wan_update *up, float *out, size_t n, uint64_t seq,
                          uint64_t *offsets)
{
    memset(out, 0, n * sizeof *out);
    for (size_t f = 0; f < up->n_frames; f++) {
        gdml_msg_header h;
        const uint8_t *payload;
        frame_header(up, f, &h, &payload);
        cr_assert_eq(h.type, GDML_MSG_DELTA);
        cr_assert_eq(h.seq, seq);
        cr_assert_eq(h.count, 64);
        cr_assert_eq(h.encoding, GDML_ENC_CODEC);
        cr_assert_eq(h.total, n);
        cr_assert_eq(h.chunks, up->n_frames, "frame %zu says %" PRIu64 " chunks of %zu made", f,
                     h.chunks, up->n_frames);
        gdml_errmsg e;
        cr_assert_eq(gdml_wan_decode_chunk(&h, payload, out, SENDER, &e), GDML_OK, "%s", e.text);
        if (offsets)
            offsets[f] = h.offset;
    }
}

/* The wire bytes of the update's frames, counted from their lengths. */
static uint64_t frames_wire(const gdml_wan_update *up, bool curve)
{
    uint64_t sum = 0;
    for (size_t f = 0; f < up->n_frames; f++) {
        size_t len;
        gdml_blob_view(up->frames[f], &len);
        sum += gdml_wire_bytes(len, curve);
    }
    return sum;
}

static size_t nonzeros(const float *x, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += x[i] != 0.0f;
    return c;
}

/* ---- lifecycle ---- */

Test(wan, start_checks_the_encoder_and_the_size)
{
    gdml_wan *w = make_wan("topk+int9", 0.1, 0, 0, 0, 0);
    gdml_errmsg e;
    cr_assert_eq(gdml_wan_size(w), 0);
    cr_assert_eq(gdml_wan_start(w, 100, 1, &e), GDML_ERR_INVALID);
    gdml_wan_destroy(&w);
    cr_assert_null(w);
    gdml_wan_destroy(&w);
    w = make_wan("topk+int8", 0.1, 0, 0, 0, 100);
    cr_assert_eq(gdml_wan_size(w), 100);
    cr_assert_eq(gdml_wan_start(w, 100, 1, &e), GDML_OK, "same n: nothing to do");
    cr_assert_eq(gdml_wan_start(w, 101, 1, &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "coordinator") && strstr(e.text, "100"), "%s", e.text);
    cr_assert(nonzeros(gdml_wan_residual(w), 100) == 0);
    gdml_wan_destroy(&w);
}

/* ---- frames of dense updates ---- */

Test(wan, a_dense_update_under_one_chunk_is_one_exact_frame)
{
    enum { N = 1000 };
    float *u = floats(N), *out = floats(N);
    gdml_rng r;
    gdml_rng_seed(&r, 1);
    gdml_wan *w = make_wan("dense", 0, 0, 0, 0, N);
    uint64_t sent = 0;
    for (uint64_t seq = 1; seq <= 3; seq++) {
        fill_normal(&r, u, N, 1.0);
        gdml_wan_update up;
        encode_ok(w, seq, u, NULL, 0, &up);
        cr_assert_eq(up.n_frames, 1);
        cr_assert_eq(up.k, N);
        uint64_t off[1];
        decode_update(&up, out, N, seq, off);
        cr_assert_eq(off[0], 0);
        cr_assert_arr_eq(out, u, N * sizeof *u, "decoded update differs (seq %" PRIu64 ")", seq);
        cr_assert(nonzeros(gdml_wan_residual(w), N) == 0, "a lossless encoder left a residual");
        sent += up.wire;
        cr_assert_eq(gdml_wan_bytes_sent(w), sent);
        gdml_wan_update_fini(&up);
        cr_assert_null(up.frames);
        cr_assert_eq(up.n_frames, 0);
        gdml_wan_update_fini(&up); /* safe on a zeroed update */
    }
    gdml_wan_destroy(&w);
    free(u);
    free(out);
}

/* A dense link sends u itself, without a copy; a residual the caller wrote
 * (a restored checkpoint) is still folded into the next update, once. */
Test(wan, a_dense_link_folds_in_a_residual_it_was_given)
{
    enum { N = 1000 };
    float *u = floats(N), *out = floats(N), *want = floats(N);
    gdml_rng r;
    gdml_rng_seed(&r, 2);
    gdml_wan *w = make_wan("dense", 0, 0, 0, 0, N);
    float *res = gdml_wan_residual(w);
    for (size_t i = 0; i < N; i++)
        res[i] = (float)i * 0.5f;
    for (uint64_t seq = 1; seq <= 2; seq++) {
        fill_normal(&r, u, N, 1.0);
        for (size_t i = 0; i < N; i++)
            want[i] = seq == 1 ? u[i] + (float)i * 0.5f : u[i];
        gdml_wan_update up;
        encode_ok(w, seq, u, NULL, 0, &up);
        decode_update(&up, out, N, seq, NULL);
        cr_assert_arr_eq(out, want, N * sizeof *u, "update %" PRIu64 " decodes wrong", seq);
        cr_assert(nonzeros(gdml_wan_residual(w), N) == 0, "a lossless encoder left a residual");
        gdml_wan_update_fini(&up);
    }
    gdml_wan_destroy(&w);
    free(u);
    free(out);
    free(want);
}

Test(wan, a_dense_update_of_two_and_a_half_chunks_is_three_frames)
{
    size_t n = 2 * C + C / 2;
    float *u = floats(n), *out = floats(n);
    gdml_rng r;
    gdml_rng_seed(&r, 2);
    fill_normal(&r, u, n, 1.0);
    gdml_wan *w = make_wan("dense", 0, 0, 0, 0, n);
    gdml_wan_update up;
    encode_ok(w, 1, u, NULL, 0, &up);
    cr_assert_eq(up.n_frames, 3);
    cr_assert_eq(up.k, n);
    uint64_t off[3];
    decode_update(&up, out, n, 1, off);
    cr_assert(off[0] == 0 && off[1] == C && off[2] == 2 * C,
              "offsets %" PRIu64 " %" PRIu64 " %" PRIu64, off[0], off[1], off[2]);
    cr_assert_arr_eq(out, u, n * sizeof *u);
    cr_assert_eq(up.wire, frames_wire(&up, false));
    cr_assert_eq(gdml_wan_bytes_sent(w), up.wire);
    gdml_wan_update_fini(&up);
    gdml_wan_destroy(&w);
    free(u);
    free(out);
}

/* ---- sparse updates and error feedback ---- */

/* u: 50 entries of magnitude >= 1 in each of chunks a and b, small noise elsewhere. */
static void two_chunk_update(gdml_rng *r, float *u, size_t n, size_t a, size_t b)
{
    fill_normal(r, u, n, 0.001);
    size_t chunks[2] = {a, b};
    for (int c = 0; c < 2; c++)
        for (int j = 0; j < 50; j++) {
            size_t i = chunks[c] * C + (size_t)gdml_rng_below(r, C);
            while (fabsf(u[i]) >= 1.0f) /* already one of the 50 */
                i = chunks[c] * C + (size_t)gdml_rng_below(r, C);
            u[i] = (float)((1.0 + gdml_rng_uniform(r)) * (j % 2 ? 1 : -1));
        }
}

Test(wan, a_sparse_update_sends_only_the_chunks_holding_entries)
{
    size_t n = 4 * C;
    const char *encoders[] = {"topk", "topk+int8"};
    for (int enc = 0; enc < 2; enc++) {
        bool exact = enc == 0;
        float *u = floats(n), *out = floats(n), *r0 = floats(n);
        gdml_rng r;
        gdml_rng_seed(&r, 3);
        /* k_max = n * 100 / 2^20 = 100 exactly: the 100 large entries. */
        gdml_wan *w = make_wan(encoders[enc], 100.0 / (double)n, 0, 0, 0, n);
        size_t pairs[2][2] = {{0, 2}, {3, 1}};
        for (uint64_t seq = 1; seq <= 2; seq++) {
            two_chunk_update(&r, u, n, pairs[seq - 1][0], pairs[seq - 1][1]);
            memcpy(r0, gdml_wan_residual(w), n * sizeof *r0);
            gdml_wan_update up;
            encode_ok(w, seq, u, NULL, 0, &up);
            cr_assert_eq(up.k, 100);
            cr_assert_eq(up.n_frames, 2, "%s seq %" PRIu64 ": %zu frames", encoders[enc], seq,
                         up.n_frames);
            uint64_t off[2];
            decode_update(&up, out, n, seq, off);
            size_t lo =
                pairs[seq - 1][0] < pairs[seq - 1][1] ? pairs[seq - 1][0] : pairs[seq - 1][1];
            size_t hi = pairs[seq - 1][0] ^ pairs[seq - 1][1] ^ lo;
            cr_assert(off[0] == lo * C && off[1] == hi * C, "offsets %" PRIu64 " %" PRIu64, off[0],
                      off[1]);
            size_t entries = 0;
            for (size_t f = 0; f < up.n_frames; f++) {
                gdml_msg_header h;
                const uint8_t *payload;
                frame_header(&up, f, &h, &payload);
                entries += gdml_codec_payload_k(payload, (size_t)h.plen);
            }
            cr_assert_eq(entries, 100);
            /* What error feedback says was sent is what the frames decode to. */
            const float *r1 = gdml_wan_residual(w);
            for (size_t i = 0; i < n; i++) {
                float meant = (u[i] + r0[i]) - r1[i];
                float tol = exact ? 0.0f : 1e-6f * fabsf(u[i] + r0[i]);
                cr_assert(fabsf(meant - out[i]) <= tol,
                          "%s seq %" PRIu64 " [%zu]: %g sent, %g "
                          "decoded",
                          encoders[enc], seq, i, (double)meant, (double)out[i]);
            }
            for (size_t i = 0; i < n; i++)
                if (i / C != lo && i / C != hi)
                    cr_assert_eq(out[i], 0.0f, "[%zu] is in a chunk not sent", i);
            gdml_wan_update_fini(&up);
        }
        gdml_wan_destroy(&w);
        free(u);
        free(out);
        free(r0);
    }
}

Test(wan, the_residual_is_sent_by_later_updates_and_nothing_is_forgotten)
{
    size_t n = C + 1000;
    float *u = floats(n), *zero = floats(n), *out = floats(n), *sum = floats(n);
    gdml_rng r;
    gdml_rng_seed(&r, 4);
    /* 400 entries over both chunks; k = 100 a message; f32 values, so exact. */
    for (int j = 0; j < 400; j++) {
        size_t i = (size_t)gdml_rng_below(&r, n);
        while (u[i] != 0.0f)
            i = (size_t)gdml_rng_below(&r, n);
        u[i] = (float)(1.0 + gdml_rng_uniform(&r));
    }
    gdml_wan *w = make_wan("topk", 100.5 / (double)n, 0, 0, 0, n);
    for (uint64_t seq = 1; seq <= 4; seq++) {
        gdml_wan_update up;
        encode_ok(w, seq, seq == 1 ? u : zero, NULL, 0, &up);
        cr_assert_eq(up.k, 100);
        decode_update(&up, out, n, seq, NULL);
        cr_assert_eq(nonzeros(out, n), 100, "seq %" PRIu64 " sent %zu entries", seq,
                     nonzeros(out, n));
        for (size_t i = 0; i < n; i++) {
            cr_assert(out[i] == 0.0f || sum[i] == 0.0f, "[%zu] sent twice", i);
            sum[i] += out[i];
        }
        cr_assert_eq(nonzeros(gdml_wan_residual(w), n), 400 - 100 * seq);
        gdml_wan_update_fini(&up);
    }
    cr_assert_arr_eq(sum, u, n * sizeof *u, "four messages of zeros did not send the rest");
    gdml_wan_destroy(&w);

    /* Lossy and random: sum of decoded + final residual == sum of the updates. */
    w = make_wan("topk+int8", 0.002, 0, 0, 0, n);
    double *want = calloc(n, sizeof *want), *got = calloc(n, sizeof *got);
    cr_assert(want && got);
    for (uint64_t seq = 1; seq <= 30; seq++) {
        fill_normal(&r, u, n, 1.0);
        gdml_wan_update up;
        encode_ok(w, seq, u, NULL, 0, &up);
        decode_update(&up, out, n, seq, NULL);
        for (size_t i = 0; i < n; i++) {
            want[i] += u[i];
            got[i] += out[i];
        }
        gdml_wan_update_fini(&up);
    }
    const float *res = gdml_wan_residual(w);
    for (size_t i = 0; i < n; i++)
        cr_assert(fabs(got[i] + res[i] - want[i]) <= 1e-4 * (1.0 + fabs(want[i])),
                  "[%zu]: sent %g + residual %g, meant %g", i, got[i], (double)res[i], want[i]);
    gdml_wan_destroy(&w);
    free(want);
    free(got);
    free(u);
    free(zero);
    free(out);
    free(sum);
}

/*
 * A controller switches the encoder mid-stream (topk+int2, randk+int4, then
 * dense): the residual carries over, so decoded + final residual is still the
 * sum of the updates, and the last, dense message leaves nothing owed. A bad
 * spec or k_fraction is refused and the old encoder stays.
 */
Test(wan, switching_the_encoder_keeps_what_is_owed)
{
    size_t n = C + 300;
    float *u = floats(n), *out = floats(n);
    double *want = calloc(n, sizeof *want), *got = calloc(n, sizeof *got);
    cr_assert(want && got);
    gdml_rng r;
    gdml_rng_seed(&r, 9);
    gdml_wan *w = make_wan("topk+int2", 0.01, 0, 0, 0, n);
    gdml_errmsg e;
    cr_assert_eq(gdml_wan_set_encoder(w, "topk+int9", 0.1, 1, &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "int9"), "%s", e.text);
    cr_assert_eq(gdml_wan_set_encoder(w, "randk+int4", 0.0, 1, &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "k_fraction"), "%s", e.text);
    cr_assert_str_eq(gdml_wan_encoder(w), "topk+int2");
    const char *plan[] = {"topk+int2", "randk+int4", "dense"};
    for (uint64_t seq = 1; seq <= 12; seq++) {
        const char *spec = plan[(seq - 1) / 5 < 2 ? (seq - 1) / 5 : 2];
        cr_assert_eq(gdml_wan_set_encoder(w, spec, 0.05, seq, &e), GDML_OK, "%s", e.text);
        cr_assert_str_eq(gdml_wan_encoder(w), strcmp(spec, "dense") ? spec : "all+f32");
        if (seq < 12)
            fill_normal(&r, u, n, 1.0);
        else
            memset(u, 0, n * sizeof *u); /* the dense message only settles what is owed */
        gdml_wan_update up;
        encode_ok(w, seq, u, NULL, 0, &up);
        cr_assert_eq(up.k, strcmp(spec, "dense") ? (size_t)(0.05 * (double)n) : n);
        decode_update(&up, out, n, seq, NULL);
        for (size_t i = 0; i < n; i++) {
            want[i] += u[i];
            got[i] += out[i];
        }
        gdml_wan_update_fini(&up);
    }
    const float *res = gdml_wan_residual(w);
    for (size_t i = 0; i < n; i++) {
        cr_assert(fabs(got[i] - want[i]) <= 1e-4 * (1.0 + fabs(want[i])),
                  "[%zu]: sent %g in all, meant %g", i, got[i], want[i]);
        cr_assert(res[i] == 0.0f, "[%zu]: %g still owed after a dense message", i, (double)res[i]);
    }
    gdml_wan_destroy(&w);
    free(want);
    free(got);
    free(u);
    free(out);
}

/* ---- the budget ---- */

/*
 * Tries an update every few simulated milliseconds for run_ms: a refused one
 * changes nothing and wait_ms says exactly when the next succeeds; no window
 * (t - 1000, t] ever holds more than rate wire bytes. Returns the share of
 * the budget used.
 */
static double run_budget(const char *encoder, size_t n, double k_fraction, double rate,
                         uint64_t min_message, int64_t run_ms, uint64_t seed)
{
    enum { MAX_SENDS = 4096 };
    static int64_t when[MAX_SENDS];
    static uint64_t bytes[MAX_SENDS];
    float *u = floats(n), *saved = floats(n);
    gdml_rng r;
    gdml_rng_seed(&r, seed);
    gdml_wan *w = make_wan(encoder, k_fraction, rate, 0, min_message, n);
    size_t sends = 0, agains = 0;
    bool must_send = false;
    uint64_t total = 0;
    fill_normal(&r, u, n, 1.0);
    for (int64_t now = 0; now < run_ms;) {
        memcpy(saved, gdml_wan_residual(w), n * sizeof *saved);
        uint64_t sent_before = gdml_wan_bytes_sent(w);
        gdml_msg_header h;
        delta_header(&h, sends + 1);
        gdml_wan_update up;
        gdml_errmsg e;
        gdml_err err = gdml_wan_encode_update(w, &h, u, NULL, NULL, now, &up, &e);
        if (err == GDML_ERR_AGAIN) {
            cr_assert(!must_send, "%s: wait_ms said %" PRId64 " would do", encoder, now);
            agains++;
            cr_assert_eq(up.n_frames, 0);
            cr_assert_arr_eq(gdml_wan_residual(w), saved, n * sizeof *saved,
                             "AGAIN at %" PRId64 " changed the residual", now);
            cr_assert_eq(gdml_wan_bytes_sent(w), sent_before);
            int64_t wait = gdml_wan_wait_ms(w, &h, now, &e);
            cr_assert_gt(wait, 0, "%s at %" PRId64 ": AGAIN but wait %" PRId64 " (%s)", encoder,
                         now, wait, e.text);
            if (wait > 1) /* not a millisecond earlier */
                cr_assert_eq(gdml_wan_encode_update(w, &h, u, NULL, NULL, now + wait - 1, &up, &e),
                             GDML_ERR_AGAIN);
            now += wait;
            must_send = true;
            continue;
        }
        cr_assert_eq(err, GDML_OK, "at %" PRId64 ": %s", now, e.text);
        cr_assert_lt(sends, MAX_SENDS);
        cr_assert_eq(up.wire, frames_wire(&up, false));
        cr_assert_eq(gdml_wan_bytes_sent(w) - sent_before, up.wire);
        when[sends] = now;
        bytes[sends] = up.wire;
        total += up.wire;
        sends++;
        must_send = false;
        gdml_wan_update_fini(&up);
        fill_normal(&r, u, n, 1.0);
        now += 1 + (int64_t)gdml_rng_below(&r, 80);
    }
    for (size_t i = 0; i < sends; i++) {
        uint64_t in_window = 0;
        for (size_t j = 0; j <= i; j++)
            if (when[j] > when[i] - 1000)
                in_window += bytes[j];
        cr_assert_leq(in_window, (uint64_t)rate,
                      "%s: the window ending at %" PRId64 " holds %" PRIu64 " bytes", encoder,
                      when[i], in_window);
    }
    cr_assert_gt(sends, 5);
    cr_assert_gt(agains, 0, "a tight budget must refuse some attempts");
    gdml_wan_destroy(&w);
    free(u);
    free(saved);
    return (double)total / (rate * (double)run_ms / 1000.0);
}

Test(wan, no_window_holds_more_than_the_rate)
{
    double share = run_budget("topk+int8", 7850, 0.1, 3000, 256, 20000, 5);
    cr_assert_geq(share, 0.5, "only %.0f%% of the budget used", 100 * share);
    /* Several chunks a message, some with no entries left to send. */
    share = run_budget("topk+int8", 2 * C + 1000, 0.002, 9000, 1000, 10000, 6);
    cr_assert_geq(share, 0.5, "only %.0f%% of the budget used", 100 * share);
    run_budget("dense", 1000, 0, 9000, 0, 10000, 7);
}

/* The least rate at which wait_ms says a message can go now, on a fresh link; applied. */
static uint64_t least_rate(gdml_wan *w, const gdml_msg_header *h)
{
    uint64_t lo = 1, hi = 1u << 24;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        gdml_budget_config b = {.rate = (double)mid, .window_ms = 1000};
        gdml_wan_set_budget(w, &b);
        gdml_errmsg e;
        if (gdml_wan_wait_ms(w, h, 0, &e) == 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    gdml_budget_config b = {.rate = (double)lo, .window_ms = 1000};
    gdml_wan_set_budget(w, &b); /* the search's last try may have been lo - 1 */
    return lo;
}

/*
 * The controller must never let through a message larger than what it
 * found free: at the least rate it accepts, the message must fit it. The
 * last case is multi-chunk and dense, where every frame is over 255 bytes.
 */
Test(wan, the_controller_counts_a_message_no_smaller_than_it_is)
{
    size_t sizes[] = {1000, 2 * C + C / 2};
    for (int curve = 0; curve < 2; curve++)
        for (int s = 0; s < 2; s++) {
            size_t n = sizes[s];
            float *u = floats(n);
            link_opts o = {.encoder = "dense", .n = n, .curve = curve};
            gdml_wan *w = make_link(&o);
            gdml_wan_update up;
            encode_ok(w, 1, u, NULL, 0, &up); /* unlimited: what it really takes */
            uint64_t real = up.wire;
            gdml_wan_update_fini(&up);
            gdml_wan_destroy(&w);

            w = make_link(&o);
            gdml_msg_header h;
            delta_header(&h, 1);
            uint64_t least = least_rate(w, &h);
            cr_expect_geq(least, real,
                          "n %zu curve %d: wait_ms says %" PRIu64 " bytes/s can carry a message "
                          "of %" PRIu64 " wire bytes",
                          n, curve, least, real);
            gdml_wan_destroy(&w);
            free(u);
        }
}

/*
 * What the controller's undercount does: at the least rate wait_ms accepts,
 * encode must make a message within it (wan.c asserts that it does, so a
 * message larger than the rate ends the process).
 */
Test(wan, a_multi_chunk_update_at_the_least_accepted_rate_fits_it)
{
    size_t n = 2 * C + C / 2;
    float *u = floats(n);
    gdml_wan *w = make_wan("dense", 0, 0, 0, 0, n);
    gdml_msg_header h;
    delta_header(&h, 1);
    uint64_t least = least_rate(w, &h);
    gdml_wan_update up;
    encode_ok(w, 1, u, NULL, 0, &up);
    cr_assert_leq(up.wire, least, "a message of %" PRIu64 " bytes at %" PRIu64 " bytes/s", up.wire,
                  least);
    gdml_wan_update_fini(&up);
    gdml_wan_destroy(&w);
    free(u);
}

Test(wan, wire_counts_every_frame_and_curve_costs_more)
{
    size_t sizes[] = {1000, 2 * C + C / 2, 4 * C};
    const char *encoders[] = {"dense", "dense", "topk+int8"};
    for (int s = 0; s < 3; s++) {
        size_t n = sizes[s];
        float *u = floats(n);
        gdml_rng r;
        gdml_rng_seed(&r, 8);
        if (s == 2)
            two_chunk_update(&r, u, n, 1, 3);
        else
            fill_normal(&r, u, n, 1.0);
        uint64_t wire[2];
        size_t frames[2];
        for (int curve = 0; curve < 2; curve++) {
            link_opts o = {
                .encoder = encoders[s], .k_fraction = 100.0 / (double)n, .n = n, .curve = curve};
            gdml_wan *w = make_link(&o);
            gdml_wan_update up;
            encode_ok(w, 1, u, NULL, 0, &up);
            cr_assert_eq(up.wire, frames_wire(&up, curve), "n %zu curve %d", n, curve);
            cr_assert_eq(gdml_wan_bytes_sent(w), up.wire);
            wire[curve] = up.wire;
            frames[curve] = up.n_frames;
            gdml_wan_update_fini(&up);
            gdml_wan_destroy(&w);
        }
        cr_assert_eq(frames[0], frames[1]);
        cr_assert_geq(wire[1], wire[0] + 33 * frames[0], "n %zu: CURVE %" PRIu64 ", plain %" PRIu64,
                      n, wire[1], wire[0]);
        free(u);
    }
}

Test(wan, a_refused_update_changes_nothing_and_wait_ms_says_when)
{
    enum { N = 7850 };
    float *u = floats(N);
    gdml_rng r;
    gdml_rng_seed(&r, 9);
    fill_normal(&r, u, N, 1.0);
    /* The full message (785 entries) fits 3000 bytes once; what is left is under 1500. */
    gdml_wan *w = make_wan("topk+int8", 0.1, 3000, 0, 1500, N);
    gdml_wan_update up;
    encode_ok(w, 1, u, NULL, 0, &up);
    cr_assert_eq(up.k, 785);
    uint64_t first = up.wire;
    gdml_wan_update_fini(&up);
    float *saved = floats(N);
    memcpy(saved, gdml_wan_residual(w), N * sizeof *saved);
    gdml_msg_header h;
    delta_header(&h, 2);
    gdml_errmsg e;
    cr_assert_eq(gdml_wan_encode_update(w, &h, u, NULL, NULL, 10, &up, &e), GDML_ERR_AGAIN);
    cr_assert_eq(up.n_frames, 0);
    cr_assert_null(up.frames);
    cr_assert_arr_eq(gdml_wan_residual(w), saved, N * sizeof *saved);
    cr_assert_eq(gdml_wan_bytes_sent(w), first);
    cr_assert_eq(gdml_wan_wait_ms(w, &h, 10, &e), 990,
                 "the first message leaves the window at "
                 "1000");
    cr_assert_eq(gdml_wan_encode_update(w, &h, u, NULL, NULL, 999, &up, &e), GDML_ERR_AGAIN);
    encode_ok(w, 2, u, NULL, 1000, &up);
    cr_assert_eq(up.k, 785);
    gdml_wan_update_fini(&up);
    gdml_wan_destroy(&w);

    /* With min_message_bytes 256 the rest of the window carries a smaller message. */
    w = make_wan("topk+int8", 0.1, 3000, 0, 256, N);
    encode_ok(w, 1, u, NULL, 0, &up);
    first = up.wire;
    gdml_wan_update_fini(&up);
    encode_ok(w, 2, u, NULL, 10, &up);
    cr_assert(up.k > 0 && up.k < 785, "k = %zu", up.k);
    cr_assert_leq(first + up.wire, 3000);
    cr_assert_geq(first + up.wire, 2900, "%" PRIu64 " bytes left unused", 3000 - first - up.wire);
    gdml_wan_update_fini(&up);
    gdml_wan_destroy(&w);
    free(u);
    free(saved);
}

Test(wan, the_downlink_adds_what_it_sent_to_the_view)
{
    enum { N = 5000 };
    float *global = floats(N), *view = floats(N), *before = floats(N), *u = floats(N),
          *out = floats(N);
    gdml_rng r;
    gdml_rng_seed(&r, 10);
    fill_normal(&r, global, N, 1.0);
    link_opts o = {.encoder = "topk+int8", .k_fraction = 0.1, .n = N, .direction = "down"};
    gdml_wan *w = make_link(&o);
    double first = 0, last = 0;
    for (uint64_t seq = 1; seq <= 30; seq++) {
        double err2 = 0;
        for (size_t i = 0; i < N; i++) {
            u[i] = global[i] - view[i];
            err2 += (double)u[i] * u[i];
        }
        if (seq == 1)
            first = err2;
        last = err2;
        memcpy(before, view, sizeof(float) * N);
        gdml_wan_update up;
        encode_ok(w, seq, u, view, 0, &up);
        decode_update(&up, out, N, seq, NULL);
        for (size_t i = 0; i < N; i++)
            cr_assert_eq(view[i], before[i] + out[i], "[%zu]: %g + %g != %g", i, (double)before[i],
                         (double)out[i], (double)view[i]);
        cr_assert_eq(nonzeros(gdml_wan_residual(w), N), 0, "view mode keeps no residual");
        gdml_wan_update_fini(&up);
    }
    cr_assert_lt(last, first / 100, "the view did not converge: %g then %g", first, last);
    gdml_wan_destroy(&w);
    free(global);
    free(view);
    free(before);
    free(u);
    free(out);
}

/* ---- budgets that cannot carry a message ---- */

Test(wan, a_message_that_can_never_fit_is_reported)
{
    enum { N = 7850, M = 100 };
    float *u = floats(N);
    gdml_wan *w = make_wan("dense", 0, 1000, 0, 256, N);
    gdml_msg_header h;
    delta_header(&h, 1);
    gdml_errmsg e;
    gdml_wan_update up;
    for (int64_t now = 0; now < 5000; now += 500)
        cr_assert_eq(gdml_wan_encode_update(w, &h, u, NULL, NULL, now, &up, &e), GDML_ERR_AGAIN);
    e.text[0] = '\0';
    cr_assert_eq(gdml_wan_wait_ms(w, &h, 5000, &e), -1);
    cr_assert(strstr(e.text, "budget.up_bytes_per_s") && strstr(e.text, "coordinator"), "%s",
              e.text);
    cr_assert_eq(gdml_wan_bytes_sent(w), 0);
    gdml_wan_destroy(&w);

    /* A cap with room for one message, then spent; up and down name their own key. */
    const char *dirs[] = {"up", "down"};
    for (int d = 0; d < 2; d++) {
        link_opts o = {.encoder = "dense", .n = M, .direction = dirs[d]};
        w = make_link(&o);
        encode_ok(w, 1, u, NULL, 0, &up); /* how big one is */
        uint64_t one = up.wire;
        gdml_wan_update_fini(&up);
        gdml_wan_destroy(&w);

        o.cap = one + 40;
        w = make_link(&o);
        cr_assert_eq(gdml_wan_wait_ms(w, &h, 0, &e), 0);
        encode_ok(w, 1, u, NULL, 0, &up);
        gdml_wan_update_fini(&up);
        cr_assert_not(gdml_wan_cap_spent(w), "40 bytes left hold a control frame");
        delta_header(&h, 2);
        cr_assert_eq(gdml_wan_encode_update(w, &h, u, NULL, NULL, 10000, &up, &e), GDML_ERR_AGAIN);
        e.text[0] = '\0';
        cr_assert_eq(gdml_wan_wait_ms(w, &h, 10000, &e), -1);
        char key[64];
        snprintf(key, sizeof key, "budget.%s_total_bytes", dirs[d]);
        cr_assert(strstr(e.text, key), "%s: %s", key, e.text);
        /* A 32-byte control frame takes 34 on the wire: 6 bytes are left. */
        cr_assert_eq(gdml_wan_admit(w, GDML_MSG_HEARTBEAT, 32, 10000), 0);
        cr_assert(gdml_wan_cap_spent(w));
        cr_assert_eq(gdml_wan_admit(w, GDML_MSG_HEARTBEAT, 32, 20000), -1);
        cr_assert_eq(gdml_wan_bytes_sent(w), one + 34);
        gdml_wan_destroy(&w);
    }
    free(u);
}

Test(wan, try_budget_keeps_the_old_budget_when_nothing_useful_fits)
{
    enum { M = 100 };
    gdml_wan *w = make_wan("dense", 0, 0, 0, 0, M);
    gdml_msg_header h;
    delta_header(&h, 1);
    gdml_errmsg e;
    gdml_budget_config tiny = {.rate = 100, .window_ms = 1000};
    cr_assert_eq(gdml_wan_try_budget(w, &tiny, &h, 0, &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "bytes_per_s"), "%s", e.text);
    cr_assert_eq(gdml_wan_budget(w).rate, 0, "the refused budget was applied");
    gdml_budget_config ok = {.rate = 5000, .window_ms = 1000};
    cr_assert_eq(gdml_wan_try_budget(w, &ok, &h, 0, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_wan_budget(w).rate, 5000);
    gdml_budget_config capped = {.rate = 5000, .cap = 100, .window_ms = 1000};
    cr_assert_eq(gdml_wan_try_budget(w, &capped, &h, 0, &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "total_bytes"), "%s", e.text);
    cr_assert_eq(gdml_wan_budget(w).cap, 0);
    cr_assert_eq(gdml_wan_budget(w).rate, 5000);
    gdml_wan_destroy(&w);

    /* Sparse: below one entry's message nothing fits; a little above, it does. */
    w = make_wan("topk+int8", 0.1, 0, 0, 256, 7850);
    cr_assert_eq(gdml_wan_try_budget(w, &tiny, &h, 0, &e), GDML_ERR_INVALID);
    cr_assert_eq(gdml_wan_budget(w).rate, 0);
    gdml_budget_config some = {.rate = 400, .window_ms = 1000};
    cr_assert_eq(gdml_wan_try_budget(w, &some, &h, 0, &e), GDML_OK, "%s", e.text);
    gdml_wan_destroy(&w);

    /* Before gdml_wan_start there is nothing to judge: applied as it is. */
    w = make_wan("dense", 0, 0, 0, 0, 0);
    cr_assert_eq(gdml_wan_try_budget(w, &tiny, &h, 0, &e), GDML_OK);
    cr_assert_eq(gdml_wan_budget(w).rate, 100);
    gdml_wan_destroy(&w);
}

/* ---- control frames ---- */

Test(wan, admit_spends_control_frames_and_waits_for_tokens)
{
    gdml_wan *w = make_wan("dense", 0, 200, 0, 0, 0);
    uint64_t wire = gdml_wire_bytes(80, false);
    cr_assert_eq(wire, 82);
    cr_assert_eq(gdml_wan_admit(w, GDML_MSG_HELLO, 80, 0), 0);
    cr_assert_eq(gdml_wan_admit(w, GDML_MSG_HELLO, 80, 10), 0);
    cr_assert_eq(gdml_wan_bytes_sent(w), 2 * wire);
    /* 164 of 200 spent: a third waits for the first to leave the window at 1000. */
    cr_assert_eq(gdml_wan_admit(w, GDML_MSG_HELLO, 80, 20), 980);
    cr_assert_eq(gdml_wan_admit(w, GDML_MSG_HELLO, 80, 999), 1);
    cr_assert_eq(gdml_wan_bytes_sent(w), 2 * wire, "a refused frame was counted");
    cr_assert_eq(gdml_wan_admit(w, GDML_MSG_HELLO, 80, 1000), 0);
    cr_assert_eq(gdml_wan_bytes_sent(w), 3 * wire);
    /* Larger than a window's budget: never. */
    cr_assert_eq(gdml_wan_admit(w, GDML_MSG_HELLO, 199, 5000), -1);
    cr_assert_eq(gdml_wan_bytes_sent(w), 3 * wire);
    gdml_wan_destroy(&w);

    /* CURVE frames cost their overhead too. */
    link_opts o = {.encoder = "dense", .rate = 200, .curve = true};
    w = make_link(&o);
    cr_assert_eq(gdml_wan_admit(w, GDML_MSG_HELLO, 80, 0), 0);
    cr_assert_eq(gdml_wan_bytes_sent(w), gdml_wire_bytes(80, true));
    cr_assert_gt(gdml_wire_bytes(80, true), wire);
    cr_assert_gt(gdml_wan_admit(w, GDML_MSG_HELLO, 80, 1), 0, "two CURVE HELLOs fit 200 bytes");
    gdml_wan_destroy(&w);
}

/* ---- the byte log ---- */

struct log_line {
    long long ms;
    char peer[64], dir[8], type[16];
    unsigned long long bytes;
    double rate;
};

static int read_log(const char *path, char *header, size_t cap, struct log_line *lines, int max)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    cr_assert_not_null(fgets(header, (int)cap, f));
    int n = 0;
    while (n < max) {
        struct log_line *l = &lines[n];
        if (fscanf(f, "%lld,%63[^,],%7[^,],%15[^,],%llu,%lf\n", &l->ms, l->peer, l->dir, l->type,
                   &l->bytes, &l->rate) != 6)
            break;
        n++;
    }
    fclose(f);
    return n;
}

Test(wan, byte_log_lines)
{
    enum { N = 100 };
    float *u = floats(N);
    char *dir = gdml_test_tmpdir();
    char path[4096];
    gdml_errmsg e;
    FILE *log = NULL;
    cr_assert_eq(gdml_wan_log_open("", &log, &e), GDML_OK);
    cr_assert_null(log);
    snprintf(path, sizeof path, "%s/no/such/dir/bytes.csv", dir);
    cr_assert_eq(gdml_wan_log_open(path, &log, &e), GDML_ERR_IO);
    cr_assert(strstr(e.text, path), "%s", e.text);
    cr_assert_null(log);
    snprintf(path, sizeof path, "%s/bytes.csv", dir);
    cr_assert_eq(gdml_wan_log_open(path, &log, &e), GDML_OK, "%s", e.text);
    cr_assert_not_null(log);

    link_opts o = {.encoder = "dense", .rate = 1e6, .n = N, .log = log, .direction = "up"};
    gdml_wan *up = make_link(&o);
    link_opts od = {.encoder = "dense", .rate = 5000, .log = log, .direction = "down"};
    gdml_wan *down = make_link(&od);

    u[3] = 1.5f;
    gdml_wan_update upd;
    encode_ok(up, 1, u, NULL, 1234, &upd);
    uint64_t update_bytes = upd.wire;
    gdml_wan_update_fini(&upd);
    gdml_wan_note_received(up, GDML_MSG_STOP, 57, 2000);
    cr_assert_eq(gdml_wan_bytes_received(up), 57);
    cr_assert_eq(gdml_wan_admit(down, GDML_MSG_HEARTBEAT, 40, 2001), 0);
    gdml_wan_note_received(down, GDML_MSG_HELLO, 90, 2002); /* on a downlink, received is "up" */

    /* A new budget shows in the rate column of later lines. */
    gdml_budget_config b = {.rate = 7000, .window_ms = 1000};
    gdml_wan_set_budget(up, &b);
    encode_ok(up, 2, u, NULL, 3000, &upd);
    gdml_wan_update_fini(&upd);

    char header[128];
    struct log_line l[8];
    cr_assert_eq(read_log(path, header, sizeof header, l, 8), 5);
    cr_assert_str_eq(header, "mono_ms,peer,direction,type,bytes,rate\n");
    cr_assert_eq(l[0].ms, 1234);
    cr_assert_str_eq(l[0].peer, "coordinator");
    cr_assert_str_eq(l[0].dir, "up");
    cr_assert_str_eq(l[0].type, "DELTA");
    cr_assert_eq(l[0].bytes, update_bytes);
    cr_assert_eq(l[0].rate, 1e6);
    cr_assert_eq(l[1].ms, 2000);
    cr_assert_str_eq(l[1].dir, "down");
    cr_assert_str_eq(l[1].type, "STOP");
    cr_assert_eq(l[1].bytes, 57);
    cr_assert_eq(l[2].ms, 2001);
    cr_assert_str_eq(l[2].dir, "down");
    cr_assert_str_eq(l[2].type, "HEARTBEAT");
    cr_assert_eq(l[2].bytes, gdml_wire_bytes(40, false));
    cr_assert_eq(l[2].rate, 5000);
    cr_assert_eq(l[3].ms, 2002);
    cr_assert_str_eq(l[3].dir, "up");
    cr_assert_str_eq(l[3].type, "HELLO");
    cr_assert_eq(l[3].bytes, 90);
    cr_assert_eq(l[4].ms, 3000);
    cr_assert_str_eq(l[4].dir, "up");
    cr_assert_eq(l[4].rate, 7000);
    cr_assert_eq(l[0].bytes + l[4].bytes, gdml_wan_bytes_sent(up));

    gdml_wan_destroy(&down);
    gdml_wan_destroy(&up);
    fclose(log);
    gdml_test_rmtree(dir);
    free(u);
}

/* ---- input the encoder refuses ---- */

Test(wan, non_finite_input_is_refused_and_changes_nothing)
{
    enum { N = 1000 };
    const char *encoders[] = {"dense", "topk+int8"};
    float bad[] = {NAN, INFINITY, -INFINITY};
    for (int enc = 0; enc < 2; enc++)
        for (int b = 0; b < 3; b++) {
            float *u = floats(N), *saved = floats(N);
            gdml_wan *w = make_wan(encoders[enc], 0.1, 100000, 0, 0, N);
            float *res = gdml_wan_residual(w);
            for (size_t i = 0; i < N; i++)
                res[i] = (float)i / N;
            memcpy(saved, res, N * sizeof *saved);
            u[5] = bad[b];
            gdml_msg_header h;
            delta_header(&h, 1);
            gdml_wan_update up;
            gdml_errmsg e;
            cr_assert_eq(gdml_wan_encode_update(w, &h, u, NULL, NULL, 0, &up, &e),
                         GDML_ERR_INVALID);
            cr_assert(strstr(e.text, "finite") && strstr(e.text, "coordinator"), "%s", e.text);
            cr_assert_eq(up.n_frames, 0);
            cr_assert_arr_eq(res, saved, N * sizeof *saved);
            cr_assert_eq(gdml_wan_bytes_sent(w), 0);
            /* Nothing was spent: a good update at once still has the whole budget. */
            u[5] = 0.0f;
            encode_ok(w, 1, u, NULL, 0, &up);
            gdml_wan_update_fini(&up);
            gdml_wan_destroy(&w);
            free(u);
            free(saved);
        }
}

/* A copy of frame f's bytes, and its header and payload within the copy. */
static uint8_t *frame_copy(const gdml_wan_update *up, size_t f, gdml_msg_header *h,
                           uint8_t **payload)
{
    size_t len;
    const uint8_t *frame = gdml_blob_view(up->frames[f], &len);
    uint8_t *copy = malloc(len);
    cr_assert_not_null(copy);
    memcpy(copy, frame, len);
    const uint8_t *p;
    gdml_errmsg e;
    cr_assert_eq(gdml_msg_decode(copy, len, h, &p, NULL, &e), GDML_OK, "%s", e.text);
    *payload = (uint8_t *)p; /* within copy */
    return copy;
}

Test(wan, decode_chunk_refuses_bad_payloads)
{
    enum { N = 100 };
    float *u = floats(N), *out = floats(N);
    u[7] = 2.0f;
    gdml_wan *w = make_wan("dense", 0, 0, 0, 0, N);
    gdml_wan_update up;
    encode_ok(w, 1, u, NULL, 0, &up);
    gdml_msg_header h;
    uint8_t *payload;
    uint8_t *copy = frame_copy(&up, 0, &h, &payload);
    gdml_errmsg e;
    cr_assert_eq(gdml_wan_decode_chunk(&h, payload, out, SENDER, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(out[7], 2.0f);

    gdml_msg_header none = h;
    none.encoding = GDML_ENC_NONE;
    e.text[0] = '\0';
    cr_assert_eq(gdml_wan_decode_chunk(&none, payload, out, SENDER, &e), GDML_ERR_PROTO);
    cr_assert(strstr(e.text, SENDER) && strstr(e.text, "DELTA"), "%s", e.text);

    gdml_msg_header shorter = h;
    shorter.plen -= 4;
    e.text[0] = '\0';
    cr_assert_eq(gdml_wan_decode_chunk(&shorter, payload, out, SENDER, &e), GDML_ERR_PROTO);
    cr_assert(strstr(e.text, SENDER), "%s", e.text);

    payload[0] = 9; /* an unknown payload format */
    e.text[0] = '\0';
    cr_assert_eq(gdml_wan_decode_chunk(&h, payload, out, SENDER, &e), GDML_ERR_PROTO);
    cr_assert(strstr(e.text, SENDER) && strstr(e.text, "format"), "%s", e.text);
    free(copy);
    gdml_wan_update_fini(&up);
    gdml_wan_destroy(&w);
    free(u);
    free(out);
}

/* ---- gdml_tensor_receive ---- */

/* Offers frame f of up to the transfer record; returns the reason. */
static gdml_reason receive(gdml_transfer *t, const gdml_wan_update *up, size_t f, float *dst,
                           size_t n, bool clear, bool *complete, gdml_errmsg *e)
{
    gdml_msg_header h;
    const uint8_t *payload;
    frame_header(up, f, &h, &payload);
    return gdml_tensor_receive(t, &h, payload, dst, n, clear, SENDER, complete, e);
}

static void fill(float *x, size_t n, float v)
{
    for (size_t i = 0; i < n; i++)
        x[i] = v;
}

Test(wan, tensor_receive_assembles_chunks_in_any_order)
{
    size_t n = 2 * C + C / 2;
    float *u = floats(n), *dst = floats(n);
    gdml_rng r;
    gdml_rng_seed(&r, 11);
    fill_normal(&r, u, n, 1.0);
    gdml_wan *w = make_wan("dense", 0, 0, 0, 0, n);
    gdml_wan_update up;
    encode_ok(w, 1, u, NULL, 0, &up);
    cr_assert_eq(up.n_frames, 3);
    gdml_transfer t;
    cr_assert_eq(gdml_transfer_init(&t, n), GDML_OK);
    fill(dst, n, 7.0f);
    size_t order[] = {2, 0, 1};
    gdml_errmsg e;
    for (int i = 0; i < 3; i++) {
        bool complete = true;
        cr_assert_eq(receive(&t, &up, order[i], dst, n, true, &complete, &e), GDML_REASON_NONE,
                     "%s", e.text);
        cr_assert_eq(complete, i == 2, "chunk %zu: complete %d", order[i], complete);
    }
    cr_assert_arr_eq(dst, u, n * sizeof *u);
    gdml_transfer_fini(&t);
    gdml_wan_update_fini(&up);
    gdml_wan_destroy(&w);
    free(u);
    free(dst);
}

Test(wan, tensor_receive_clears_the_destination_when_a_transfer_starts)
{
    size_t n = 4 * C;
    float *u = floats(n), *dst = floats(n), *want = floats(n);
    gdml_rng r;
    gdml_rng_seed(&r, 12);
    gdml_wan *w = make_wan("topk", 100.0 / (double)n, 0, 0, 0, n);
    gdml_transfer t;
    cr_assert_eq(gdml_transfer_init(&t, n), GDML_OK);
    gdml_errmsg e;
    bool complete;

    /* seq 1: chunks 0 and 2, onto a destination of 7s. */
    two_chunk_update(&r, u, n, 0, 2);
    gdml_wan_update up;
    encode_ok(w, 1, u, NULL, 0, &up);
    cr_assert_eq(up.n_frames, 2);
    decode_update(&up, want, n, 1, NULL);
    fill(dst, n, 7.0f);
    for (size_t f = 0; f < 2; f++)
        cr_assert_eq(receive(&t, &up, f, dst, n, true, &complete, &e), GDML_REASON_NONE, "%s",
                     e.text);
    cr_assert(complete);
    cr_assert_arr_eq(dst, want, n * sizeof *want, "the chunks not sent must decode to zero");
    gdml_wan_update_fini(&up);

    /* seq 2 with clear: only chunk 3 has entries; chunks 0..2 are zero again. */
    memset(u, 0, n * sizeof *u);
    for (size_t j = 0; j < 100; j++)
        u[3 * C + 7 * j] = 3.0f;
    memset(gdml_wan_residual(w), 0, n * sizeof(float));
    encode_ok(w, 2, u, NULL, 0, &up);
    cr_assert_eq(up.n_frames, 1);
    cr_assert_eq(receive(&t, &up, 0, dst, n, true, &complete, &e), GDML_REASON_NONE, "%s", e.text);
    cr_assert(complete);
    cr_assert_arr_eq(dst, u, n * sizeof *u);
    gdml_wan_update_fini(&up);

    /* seq 3 without clear: chunk 1 is written, chunk 3 keeps what seq 2 left. */
    memset(u, 0, n * sizeof *u);
    for (size_t j = 0; j < 100; j++)
        u[C + 5 * j] = -2.0f;
    encode_ok(w, 3, u, NULL, 0, &up);
    cr_assert_eq(up.n_frames, 1);
    cr_assert_eq(receive(&t, &up, 0, dst, n, false, &complete, &e), GDML_REASON_NONE, "%s", e.text);
    cr_assert(complete);
    for (size_t j = 0; j < 100; j++) {
        cr_assert_eq(dst[C + 5 * j], -2.0f);
        cr_assert_eq(dst[3 * C + 7 * j], 3.0f, "clear=false zeroed an earlier transfer");
    }
    gdml_wan_update_fini(&up);
    gdml_transfer_fini(&t);
    gdml_wan_destroy(&w);
    free(u);
    free(dst);
    free(want);
}

Test(wan, tensor_receive_reports_duplicates_and_stale_chunks_untouched)
{
    size_t n = 2 * C + C / 2;
    float *u = floats(n), *dst = floats(n), *snap = floats(n);
    gdml_rng r;
    gdml_rng_seed(&r, 13);
    gdml_wan *w = make_wan("dense", 0, 0, 0, 0, n);
    gdml_wan_update old, cur;
    fill_normal(&r, u, n, 1.0);
    encode_ok(w, 1, u, NULL, 0, &old);
    fill_normal(&r, u, n, 1.0);
    encode_ok(w, 2, u, NULL, 0, &cur);
    gdml_transfer t;
    cr_assert_eq(gdml_transfer_init(&t, n), GDML_OK);
    gdml_errmsg e;
    bool complete;
    cr_assert_eq(receive(&t, &cur, 0, dst, n, true, &complete, &e), GDML_REASON_NONE);
    memcpy(snap, dst, n * sizeof *snap);
    cr_assert_eq(receive(&t, &cur, 0, dst, n, true, &complete, &e), GDML_REASON_DUPLICATE);
    cr_assert_not(complete);
    cr_assert_arr_eq(dst, snap, n * sizeof *snap, "a duplicate touched the destination");
    cr_assert_eq(receive(&t, &old, 1, dst, n, true, &complete, &e), GDML_REASON_STALE);
    cr_assert_arr_eq(dst, snap, n * sizeof *snap, "a stale chunk touched the destination");
    cr_assert_eq(receive(&t, &cur, 2, dst, n, true, &complete, &e), GDML_REASON_NONE);
    cr_assert_eq(receive(&t, &cur, 1, dst, n, true, &complete, &e), GDML_REASON_NONE);
    cr_assert(complete);
    cr_assert_arr_eq(dst, u, n * sizeof *u);
    cr_assert_eq(receive(&t, &cur, 1, dst, n, true, &complete, &e), GDML_REASON_DUPLICATE);
    cr_assert_not(complete, "a refused chunk does not report the tensor whole");
    cr_assert_eq(receive(&t, &old, 0, dst, n, true, &complete, &e), GDML_REASON_STALE);
    cr_assert_arr_eq(dst, u, n * sizeof *u);
    gdml_transfer_fini(&t);
    gdml_wan_update_fini(&old);
    gdml_wan_update_fini(&cur);
    gdml_wan_destroy(&w);
    free(u);
    free(dst);
    free(snap);
}

Test(wan, tensor_receive_abandons_a_transfer_whose_chunk_does_not_decode)
{
    size_t n = 2 * C + C / 2;
    float *u = floats(n), *dst = floats(n);
    gdml_rng r;
    gdml_rng_seed(&r, 14);
    fill_normal(&r, u, n, 1.0);
    gdml_wan *w = make_wan("dense", 0, 0, 0, 0, n);
    gdml_wan_update up;
    encode_ok(w, 1, u, NULL, 0, &up);
    gdml_transfer t;
    cr_assert_eq(gdml_transfer_init(&t, n), GDML_OK);
    gdml_errmsg e;
    bool complete;
    cr_assert_eq(receive(&t, &up, 0, dst, n, true, &complete, &e), GDML_REASON_NONE);

    gdml_msg_header h;
    uint8_t *payload;
    uint8_t *copy = frame_copy(&up, 1, &h, &payload);
    payload[4] ^= 1; /* the slice's n no longer matches its chunk */
    e.text[0] = '\0';
    complete = true;
    cr_assert_eq(gdml_tensor_receive(&t, &h, payload, dst, n, true, SENDER, &complete, &e),
                 GDML_REASON_TENSOR);
    cr_assert_not(complete);
    cr_assert(strstr(e.text, SENDER), "%s", e.text);
    cr_assert_eq(t.abandoned, 1, "the transfer was not abandoned");
    free(copy);

    /* Abandoned: the good chunks start it afresh, chunk 0 included. */
    cr_assert_eq(receive(&t, &up, 1, dst, n, true, &complete, &e), GDML_REASON_NONE, "%s", e.text);
    cr_assert_eq(receive(&t, &up, 0, dst, n, true, &complete, &e), GDML_REASON_NONE, "%s", e.text);
    cr_assert_eq(receive(&t, &up, 2, dst, n, true, &complete, &e), GDML_REASON_NONE, "%s", e.text);
    cr_assert(complete);
    cr_assert_arr_eq(dst, u, n * sizeof *u);
    gdml_transfer_fini(&t);
    gdml_wan_update_fini(&up);
    gdml_wan_destroy(&w);
    free(u);
    free(dst);
}

Test(wan, tensor_receive_refuses_a_chunk_of_another_size)
{
    enum { N = 1000 };
    float *u = floats(N), *dst = floats(N + 1), *snap = floats(N + 1);
    u[1] = 1.0f;
    gdml_wan *w = make_wan("dense", 0, 0, 0, 0, N);
    gdml_wan_update up;
    encode_ok(w, 1, u, NULL, 0, &up);
    gdml_transfer t;
    cr_assert_eq(gdml_transfer_init(&t, N + 1), GDML_OK);
    fill(dst, N + 1, 7.0f);
    memcpy(snap, dst, (N + 1) * sizeof *snap);
    gdml_errmsg e;
    e.text[0] = '\0';
    bool complete = true;
    cr_assert_eq(receive(&t, &up, 0, dst, N + 1, true, &complete, &e), GDML_REASON_TENSOR);
    cr_assert_not(complete);
    cr_assert(strstr(e.text, "1000") && strstr(e.text, "1001"), "%s", e.text);
    cr_assert_arr_eq(dst, snap, (N + 1) * sizeof *snap);
    gdml_transfer_fini(&t);
    gdml_wan_update_fini(&up);
    gdml_wan_destroy(&w);
    free(u);
    free(dst);
    free(snap);
}
