/*
 * test_wan.c - one direction of a WAN link, over a real ROUTER/DEALER pair:
 * a lossless round trip with exact byte counts, error feedback that forgets
 * nothing, view mode, the budget controller under a tight rate driven with
 * simulated time, messages that can never fit, control messages that wait
 * for tokens, the CSV byte log, and a decoder that refuses bad messages.
 */
#include "../support.h"

#include "rng.h"
#include "util.h"
#include "wan.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SENDER "region-x"
#define RECV_TIMEOUT_MS 5000

static gdml_transport *t;
static gdml_link *server, *client; /* ROUTER and the DEALER that sends updates */

static void setup(void)
{
    char endpoint[GDML_ENDPOINT_MAX];
    gdml_errmsg e;
    cr_assert_eq(gdml_transport_new(&t, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_link_bind(t, "tcp://127.0.0.1:*", &server, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_link_endpoint(server, endpoint, sizeof endpoint), GDML_OK);
    cr_assert_eq(gdml_link_connect(t, endpoint, SENDER, &client, &e), GDML_OK, "%s", e.text);
}

static void teardown(void)
{
    gdml_link_close(&client);
    gdml_link_close(&server);
    gdml_transport_destroy(&t);
}

TestSuite(wan, .init = setup, .fini = teardown, .timeout = 60);

/* ---- helpers ---- */

static gdml_wan *make_wan(const char *encoder, double k_fraction, double rate, uint64_t cap,
                          uint64_t min_message, size_t n, FILE *log, const char *direction)
{
    gdml_wan_config cfg = {.encoder = encoder,
                           .k_fraction = k_fraction,
                           .budget = {.rate = rate, .cap = cap, .window_ms = 1000},
                           .min_message_bytes = min_message,
                           .peer = "coordinator",
                           .direction = direction,
                           .byte_log = log};
    gdml_wan *w = NULL;
    gdml_errmsg e;
    cr_assert_eq(gdml_wan_new(&cfg, &w, &e), GDML_OK, "%s", e.text);
    if (n > 0)
        cr_assert_eq(gdml_wan_start(w, n, 7, &e), GDML_OK, "%s", e.text);
    return w;
}

static void fill_normal(gdml_rng *r, float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)gdml_rng_normal(r);
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

/* Sends u from the DEALER; asserts GDML_OK and returns the entries sent. */
static size_t send_ok(gdml_wan *w, uint64_t seq, const float *u, float *applied, int64_t now_ms)
{
    gdml_msg_header h;
    delta_header(&h, seq);
    size_t k = 0;
    gdml_errmsg e;
    gdml_err err = gdml_wan_send_update(w, client, NULL, &h, u, NULL, applied, now_ms, &k, &e);
    cr_assert_eq(err, GDML_OK, "send at %" PRId64 ": %d %s", now_ms, err, e.text);
    return k;
}

/* Receives one update on the ROUTER and decodes it into out[0..n). */
static void recv_decode(gdml_rx *rx, float *out, size_t n)
{
    gdml_errmsg e;
    cr_assert_eq(gdml_link_recv(server, rx, RECV_TIMEOUT_MS, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_wan_decode(rx, out, n, &e), GDML_OK, "%s", e.text);
}

static size_t nonzeros(const float *x, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += x[i] != 0.0f;
    return c;
}

/* The k field of a codec payload (codec.h: bytes 8..11, little-endian). */
static uint32_t payload_k(const gdml_rx *rx)
{
    const uint8_t *p = rx->payload[0];
    return (uint32_t)p[8] | (uint32_t)p[9] << 8 | (uint32_t)p[10] << 16 | (uint32_t)p[11] << 24;
}

/* ---- round trips and error feedback ---- */

Test(wan, start_checks_the_encoder_and_the_size)
{
    gdml_wan *w = make_wan("topk+int9", 0.1, 0, 0, 0, 0, NULL, "up");
    gdml_errmsg e;
    cr_assert_eq(gdml_wan_start(w, 100, 1, &e), GDML_ERR_INVALID);
    gdml_wan_destroy(&w);
    w = make_wan("topk+int8", 0.1, 0, 0, 0, 100, NULL, "up");
    cr_assert_eq(gdml_wan_start(w, 100, 1, &e), GDML_OK, "same n: nothing to do");
    cr_assert_eq(gdml_wan_start(w, 101, 1, &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "coordinator") && strstr(e.text, "100"), "%s", e.text);
    cr_assert(nonzeros(gdml_wan_residual(w), 100) == 0);
    gdml_wan_destroy(&w);
}

Test(wan, dense_round_trip_is_exact_and_counted)
{
    enum { N = 1000 };
    static float u[N], out[N];
    gdml_rng r;
    gdml_rng_seed(&r, 1);
    gdml_wan *w = make_wan("dense", 0, 0, 0, 0, N, NULL, "up");
    gdml_wan *rw = make_wan("dense", 0, 0, 0, 0, 0, NULL, "down"); /* the receiving end */
    uint64_t received = 0;
    for (uint64_t seq = 1; seq <= 3; seq++) {
        fill_normal(&r, u, N);
        gdml_msg_header h;
        delta_header(&h, seq);
        size_t k = 0;
        gdml_errmsg e;
        cr_assert_eq(gdml_wan_send_update(w, client, NULL, &h, u, NULL, NULL, 0, &k, &e), GDML_OK,
                     "%s", e.text);
        cr_assert_eq(k, N);
        cr_assert_eq(h.encoding, GDML_ENC_CODEC);
        gdml_rx rx;
        recv_decode(&rx, out, N);
        cr_assert_arr_eq(out, u, sizeof u, "decoded update differs (seq %" PRIu64 ")", seq);
        cr_assert(nonzeros(gdml_wan_residual(w), N) == 0, "a lossless encoder left a residual");
        cr_assert_eq(rx.header.seq, seq);
        cr_assert_eq(rx.header.count, 64);

        gdml_link_stats st;
        gdml_link_stats_get(client, &st);
        received += rx.wire_bytes;
        cr_assert_eq(gdml_wan_bytes_sent(w), st.bytes_sent);
        cr_assert_eq(gdml_wan_bytes_sent(w), received);
        cr_assert_eq(gdml_wan_wire_bytes(&h), rx.wire_bytes);
        cr_assert_eq(gdml_wan_wire_bytes(&rx.header), rx.wire_bytes);
        gdml_wan_note_received(rw, &rx, 0);
        cr_assert_eq(gdml_wan_bytes_received(rw), received);
        gdml_rx_release(&rx);
    }
    cr_assert_gt(received, 3 * N * sizeof(float));

    /* Control messages whose header frame crosses 255 bytes, where ZMTP's frame header grows. */
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_HELLO, SENDER);
    for (size_t len = 150; len < 250; len++) {
        memset(h.text, 't', len);
        uint64_t before = gdml_wan_bytes_sent(w);
        gdml_errmsg e;
        cr_assert_eq(gdml_wan_send_control(w, client, NULL, &h, 1000, &e), GDML_OK, "%s", e.text);
        gdml_rx rx;
        cr_assert_eq(gdml_link_recv(server, &rx, RECV_TIMEOUT_MS, &e), GDML_OK, "%s", e.text);
        cr_assert_eq(gdml_wan_bytes_sent(w) - before, rx.wire_bytes, "text of %zu bytes", len);
        gdml_rx_release(&rx);
    }
    gdml_wan_destroy(&rw);
    gdml_wan_destroy(&w);
    cr_assert_null(w);
    gdml_wan_destroy(&w);
    gdml_wan_destroy(NULL);
}

Test(wan, error_feedback_forgets_nothing)
{
    enum { N = 1000, K = 50, ROUNDS = 400 };
    static float u[N], out[N], zero[N];
    static double sum[N];
    gdml_rng r;
    gdml_rng_seed(&r, 2);
    fill_normal(&r, u, N);
    gdml_wan *w = make_wan("topk+int8", 0.05, 0, 0, 0, N, NULL, "up");
    float *res = gdml_wan_residual(w);

    cr_assert_eq(send_ok(w, 1, u, NULL, 0), K);
    gdml_rx rx;
    recv_decode(&rx, out, N);
    cr_assert_eq(payload_k(&rx), K);
    gdml_rx_release(&rx);
    cr_assert_leq(nonzeros(out, N), K);
    for (size_t i = 0; i < N; i++) {
        cr_assert_float_eq(out[i] + res[i], u[i], 1e-6 * (1 + fabs(u[i])),
                           "entry %zu: decoded %g + residual %g != %g", i, out[i], res[i], u[i]);
        sum[i] = out[i];
    }

    double first_err = 0, err = 0;
    for (int round = 1; round <= ROUNDS; round++) {
        send_ok(w, 1 + (uint64_t)round, zero, NULL, round);
        recv_decode(&rx, out, N);
        gdml_rx_release(&rx);
        err = 0;
        for (size_t i = 0; i < N; i++) {
            sum[i] += out[i];
            err = fmax(err, fabs(sum[i] - u[i]));
        }
        if (round == 1)
            first_err = err;
    }
    /* The invariant: what was delivered plus what is still owed is u. */
    for (size_t i = 0; i < N; i++)
        cr_assert_float_eq(sum[i] + res[i], u[i], 1e-5, "entry %zu", i);
    cr_assert_gt(first_err, 0.5, "one message cannot have carried all of u");
    cr_assert_lt(err, 1e-5, "after %d rounds the delivered sum is still %g away from u", ROUNDS,
                 err);
    gdml_wan_destroy(&w);
}

Test(wan, view_mode_accumulates_what_was_decoded)
{
    enum { N = 1000, ROUNDS = 60 };
    static float global[N], view[N], before[N], u[N], out[N];
    gdml_rng r;
    gdml_rng_seed(&r, 3);
    fill_normal(&r, global, N);
    fill_normal(&r, view, N); /* the receiver starts from some other model */
    gdml_wan *w = make_wan("topk+int8", 0.05, 0, 0, 0, N, NULL, "down");
    double first_gap = 0, gap = 0;
    for (int round = 0; round < ROUNDS; round++) {
        for (size_t i = 0; i < N; i++)
            u[i] = global[i] - view[i];
        memcpy(before, view, sizeof view);
        send_ok(w, 1 + (uint64_t)round, u, view, round);
        gdml_rx rx;
        recv_decode(&rx, out, N);
        gdml_rx_release(&rx);
        cr_assert_gt(nonzeros(out, N), 0);
        gap = 0;
        for (size_t i = 0; i < N; i++) {
            /* The receiver adds what it decoded; the sender's view must match bit for bit. */
            float want = before[i] + out[i];
            cr_assert_eq(view[i], want, "round %d entry %zu: view %g, receiver holds %g", round, i,
                         view[i], want);
            gap = fmax(gap, fabs(global[i] - view[i]));
        }
        if (round == 0)
            first_gap = gap;
        cr_assert(nonzeros(gdml_wan_residual(w), N) == 0, "view mode touched the residual");
    }
    cr_assert_lt(gap, first_gap / 10, "the view did not approach the global model");
    gdml_wan_destroy(&w);
}

/* ---- the budget controller ---- */

Test(wan, controller_keeps_every_window_under_the_rate)
{
    enum { N = 7850, MAX_SENDS = 1000 };
    const double rate = 2000;
    const int64_t step_ms = 37, run_ms = 20000;
    static float u[N], out[N], saved[N];
    static int64_t when[MAX_SENDS];
    static uint64_t bytes[MAX_SENDS];
    gdml_rng r;
    gdml_rng_seed(&r, 4);
    gdml_wan *w = make_wan("topk+int8", 0.1, rate, 0, 256, N, NULL, "up");
    const size_t k_max = 785;
    float *res = gdml_wan_residual(w);
    size_t sends = 0, agains = 0, partial = 0;
    uint64_t total = 0;
    for (int64_t now = 0; now <= run_ms; now += step_ms) {
        fill_normal(&r, u, N);
        memcpy(saved, res, sizeof saved);
        uint64_t sent_before = gdml_wan_bytes_sent(w);
        gdml_msg_header h;
        delta_header(&h, sends + 1);
        size_t k = 0;
        gdml_errmsg e;
        gdml_err err = gdml_wan_send_update(w, client, NULL, &h, u, NULL, NULL, now, &k, &e);
        if (err == GDML_ERR_AGAIN) {
            agains++;
            cr_assert_arr_eq(res, saved, sizeof saved, "AGAIN at %" PRId64 " changed the residual",
                             now);
            cr_assert_eq(gdml_wan_bytes_sent(w), sent_before);
            /* Never "send now" while send_update refuses: the caller would spin. */
            cr_assert_gt(gdml_wan_wait_ms(w, &h, now, &e), 0, "at %" PRId64 ": %s", now, e.text);
            continue;
        }
        cr_assert_eq(err, GDML_OK, "at %" PRId64 ": %s", now, e.text);
        cr_assert_lt(sends, MAX_SENDS);
        cr_assert(k > 0 && k <= k_max, "sent k = %zu (k_max %zu)", k, k_max);
        partial += k < k_max;
        gdml_rx rx;
        recv_decode(&rx, out, N);
        cr_assert_eq(payload_k(&rx), k, "sent_k says %zu, the payload carries %u", k,
                     payload_k(&rx));
        cr_assert_eq(gdml_wan_bytes_sent(w) - sent_before, rx.wire_bytes);
        /* Sent only with at least min_message_bytes free (a full message is larger). */
        uint64_t used = 0;
        for (size_t j = 0; j < sends; j++)
            used += when[j] > now - 1000 ? bytes[j] : 0;
        cr_assert_geq((uint64_t)rate - used, 256, "sent at %" PRId64 " with %" PRIu64 " free", now,
                      (uint64_t)rate - used);
        when[sends] = now;
        bytes[sends] = rx.wire_bytes;
        total += rx.wire_bytes;
        sends++;
        gdml_rx_release(&rx);
    }
    /* What the ROUTER received, over every window (t - 1000, t] ending at a send. */
    for (size_t i = 0; i < sends; i++) {
        uint64_t in_window = 0;
        for (size_t j = 0; j <= i; j++)
            if (when[j] > when[i] - 1000)
                in_window += bytes[j];
        cr_assert_leq(in_window, (uint64_t)rate, "window ending at %" PRId64 ": %" PRIu64 " bytes",
                      when[i], in_window);
    }
    cr_assert_gt(sends, 10);
    cr_assert_gt(agains, 0, "a tight budget must refuse some attempts");
    double share = (double)total / (rate * (double)run_ms / 1000.0);
    cr_assert_geq(share, 0.5, "only %.0f%% of the budget used (%zu sends, %zu partial)",
                  100 * share, sends, partial);
    gdml_wan_destroy(&w);
}

Test(wan, controller_shrinks_k_to_what_is_left)
{
    enum { N = 7850 };
    static float u[N], out[N];
    gdml_rng r;
    gdml_rng_seed(&r, 5);
    fill_normal(&r, u, N);
    /* The full message (785 entries) fits 3000 bytes once; the second gets what is left. */
    gdml_wan *w = make_wan("topk+int8", 0.1, 3000, 0, 256, N, NULL, "up");
    cr_assert_eq(send_ok(w, 1, u, NULL, 0), 785);
    gdml_rx rx;
    recv_decode(&rx, out, N);
    uint64_t first = rx.wire_bytes;
    gdml_rx_release(&rx);
    size_t k = send_ok(w, 2, u, NULL, 10);
    recv_decode(&rx, out, N);
    cr_assert(k > 0 && k < 785, "k = %zu", k);
    cr_assert_eq(payload_k(&rx), k);
    cr_assert_leq(first + rx.wire_bytes, 3000);
    /* Sizes are bounded conservatively (every index gap could need two varint bytes), so
     * some bytes stay unused, but not many. */
    cr_assert_geq(first + rx.wire_bytes, 2900, "the second message left %" PRIu64 " unused",
                  3000 - first - rx.wire_bytes);
    gdml_rx_release(&rx);
    gdml_wan_destroy(&w);

    /* With min_message_bytes 1500 the ~1270 bytes left are not worth a message. */
    w = make_wan("topk+int8", 0.1, 3000, 0, 1500, N, NULL, "up");
    cr_assert_eq(send_ok(w, 1, u, NULL, 0), 785);
    recv_decode(&rx, out, N);
    gdml_rx_release(&rx);
    gdml_msg_header h;
    delta_header(&h, 2);
    gdml_errmsg e;
    cr_assert_eq(gdml_wan_send_update(w, client, NULL, &h, u, NULL, NULL, 10, NULL, &e),
                 GDML_ERR_AGAIN);
    cr_assert_eq(gdml_wan_wait_ms(w, &h, 10, &e), 990,
                 "the first message leaves the window at 1000");
    cr_assert_eq(send_ok(w, 2, u, NULL, 1000), 785);
    recv_decode(&rx, out, N);
    gdml_rx_release(&rx);
    gdml_wan_destroy(&w);
}

Test(wan, a_message_that_can_never_fit_is_reported)
{
    enum { N = 7850 };
    static float u[N];
    gdml_wan *w = make_wan("dense", 0, 1000, 0, 256, N, NULL, "up");
    gdml_msg_header h;
    delta_header(&h, 1);
    gdml_errmsg e;
    for (int64_t now = 0; now < 5000; now += 500)
        cr_assert_eq(gdml_wan_send_update(w, client, NULL, &h, u, NULL, NULL, now, NULL, &e),
                     GDML_ERR_AGAIN);
    e.text[0] = '\0';
    cr_assert_eq(gdml_wan_wait_ms(w, &h, 5000, &e), -1);
    cr_assert(strstr(e.text, "bytes_per_s") && strstr(e.text, "coordinator"), "%s", e.text);
    cr_assert_eq(gdml_wan_bytes_sent(w), 0);
    gdml_wan_destroy(&w);

    /* A cap with room for one message, then spent. */
    enum { M = 100 };
    static float v[M], out[M];
    w = make_wan("dense", 0, 0, 700, 0, M, NULL, "up");
    cr_assert_eq(gdml_wan_wait_ms(w, &h, 0, &e), 0);
    send_ok(w, 1, v, NULL, 0);
    gdml_rx rx;
    recv_decode(&rx, out, M);
    gdml_rx_release(&rx);
    cr_assert_leq(gdml_wan_bytes_sent(w), 700);
    delta_header(&h, 2);
    cr_assert_eq(gdml_wan_send_update(w, client, NULL, &h, v, NULL, NULL, 10000, NULL, &e),
                 GDML_ERR_AGAIN);
    e.text[0] = '\0';
    cr_assert_eq(gdml_wan_wait_ms(w, &h, 10000, &e), -1);
    cr_assert(strstr(e.text, "total"), "%s", e.text);
    gdml_wan_destroy(&w);
}

/* ---- control messages ---- */

/* A HELLO padded with text to about 80 bytes on the wire. */
static void hello_header(gdml_msg_header *h, uint64_t seq)
{
    gdml_msg_header_init(h, GDML_MSG_HELLO, SENDER);
    h->seq = seq;
    for (size_t i = 0; gdml_wan_wire_bytes(h) < 80 && i + 1 < sizeof h->text; i++)
        h->text[i] = 'p';
}

Test(wan, control_messages_wait_for_tokens)
{
    char *dir = gdml_test_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/bytes.csv", dir);
    FILE *log = fopen(path, "w+");
    cr_assert_not_null(log);
    gdml_wan *w = make_wan("dense", 0, 200, 0, 0, 0, log, "up");
    gdml_msg_header h;
    hello_header(&h, 1);
    uint64_t wire = gdml_wan_wire_bytes(&h);
    cr_assert(2 * wire <= 200 && 3 * wire > 200, "a HELLO takes %" PRIu64 " bytes", wire);
    gdml_errmsg e;

    int64_t start = gdml_now_ms();
    for (uint64_t seq = 1; seq <= 2; seq++) {
        hello_header(&h, seq);
        cr_assert_eq(gdml_wan_send_control(w, client, NULL, &h, 5000, &e), GDML_OK, "%s", e.text);
    }
    /* The window is full: a short timeout gives up and sends nothing. */
    hello_header(&h, 3);
    cr_assert_eq(gdml_wan_send_control(w, client, NULL, &h, 50, &e), GDML_ERR_TIMEOUT);
    cr_assert(strstr(e.text, "HELLO") && strstr(e.text, "coordinator"), "%s", e.text);
    cr_assert_eq(gdml_wan_bytes_sent(w), 2 * wire);
    cr_assert_eq(gdml_wan_send_control(w, client, NULL, &h, 5000, &e), GDML_OK, "%s", e.text);
    int64_t took = gdml_now_ms() - start;
    cr_assert_geq(took, 300, "the third HELLO went out after %" PRId64 " ms", took);
    cr_assert_eq(gdml_wan_bytes_sent(w), 3 * wire);

    for (int i = 0; i < 3; i++) {
        gdml_rx rx;
        cr_assert_eq(gdml_link_recv(server, &rx, RECV_TIMEOUT_MS, &e), GDML_OK, "%s", e.text);
        cr_assert_eq(rx.header.type, GDML_MSG_HELLO);
        cr_assert_eq(rx.header.seq, (uint64_t)i + 1);
        cr_assert_eq(rx.wire_bytes, wire);
        gdml_rx_release(&rx);
    }

    /* The log's times are the budget's: no window (t - 1000, t] holds more than 200 bytes. */
    rewind(log);
    int64_t when[3];
    unsigned long long b[3];
    for (int i = 0; i < 3; i++) {
        long long ms;
        cr_assert_eq(fscanf(log, "%lld,coordinator,up,HELLO,%llu,200\n", &ms, &b[i]), 2);
        when[i] = ms;
        cr_assert_eq(b[i], wire);
    }
    /* Two fit in a window, three do not: the third waited for the first to leave. */
    cr_assert_geq(when[2] - when[0], 1000, "three HELLOs within %" PRId64 " ms", when[2] - when[0]);
    fclose(log);
    gdml_wan_destroy(&w);
    gdml_test_rmtree(dir);
}

Test(wan, a_control_message_larger_than_the_rate_is_refused)
{
    gdml_wan *w = make_wan("dense", 0, 50, 0, 0, 0, NULL, "up");
    gdml_msg_header h;
    hello_header(&h, 1);
    gdml_errmsg e;
    cr_assert_eq(gdml_wan_send_control(w, client, NULL, &h, 1000, &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "HELLO") && strstr(e.text, "coordinator"), "%s", e.text);
    cr_assert_eq(gdml_wan_bytes_sent(w), 0);
    gdml_wan_destroy(&w);
}

/* ---- the byte log ---- */

struct log_line {
    long long ms;
    char peer[64], dir[8], type[16];
    unsigned long long bytes;
    double rate;
};

static int read_log(FILE *f, struct log_line *lines, int cap)
{
    rewind(f);
    int n = 0;
    while (n < cap) {
        struct log_line *l = &lines[n];
        if (fscanf(f, "%lld,%63[^,],%7[^,],%15[^,],%llu,%lf\n", &l->ms, l->peer, l->dir, l->type,
                   &l->bytes, &l->rate) != 6)
            break;
        n++;
    }
    return n;
}

Test(wan, byte_log_lines)
{
    enum { N = 100 };
    static float u[N], out[N];
    char *dir = gdml_test_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/bytes.csv", dir);
    FILE *log = fopen(path, "w+");
    cr_assert_not_null(log);
    gdml_wan *up = make_wan("dense", 0, 1e6, 0, 0, N, log, "up");
    gdml_wan *down = make_wan("dense", 0, 5000, 0, 0, 0, log, "down");
    gdml_errmsg e;

    u[3] = 1.5f;
    send_ok(up, 1, u, NULL, 1234);
    gdml_rx rx;
    recv_decode(&rx, out, N);
    uint64_t update_bytes = rx.wire_bytes;
    gdml_peer peer = rx.peer;
    gdml_rx_release(&rx);

    /* The coordinator answers; the region notes what came down. */
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_STOP, "coordinator");
    h.seq = 1;
    cr_assert_eq(gdml_link_send(server, &peer, &h, NULL, 0, 1000, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_link_recv(client, &rx, RECV_TIMEOUT_MS, &e), GDML_OK, "%s", e.text);
    gdml_wan_note_received(up, &rx, 2000);
    gdml_wan_note_received(down, &rx, 2001); /* on a downlink, received means "up" */
    uint64_t stop_bytes = rx.wire_bytes;
    gdml_rx_release(&rx);
    cr_assert_eq(gdml_wan_bytes_received(up), stop_bytes);

    struct log_line l[8];
    cr_assert_eq(read_log(log, l, 8), 3);
    cr_assert_eq(l[0].ms, 1234);
    cr_assert_str_eq(l[0].peer, "coordinator");
    cr_assert_str_eq(l[0].dir, "up");
    cr_assert_str_eq(l[0].type, "DELTA");
    cr_assert_eq(l[0].bytes, update_bytes);
    cr_assert_eq(l[0].rate, 1e6);
    cr_assert_eq(l[1].ms, 2000);
    cr_assert_str_eq(l[1].dir, "down");
    cr_assert_str_eq(l[1].type, "STOP");
    cr_assert_eq(l[1].bytes, stop_bytes);
    cr_assert_eq(l[2].ms, 2001);
    cr_assert_str_eq(l[2].dir, "up");
    cr_assert_eq(l[2].rate, 5000);
    cr_assert_eq(l[0].bytes + l[1].bytes, gdml_wan_bytes_sent(up) + gdml_wan_bytes_received(up));

    /* A new budget shows in the rate column of later lines. */
    gdml_budget_config b = {.rate = 7000, .window_ms = 1000};
    gdml_wan_set_budget(up, &b);
    send_ok(up, 2, u, NULL, 3000);
    recv_decode(&rx, out, N);
    gdml_rx_release(&rx);
    cr_assert_eq(read_log(log, l, 8), 4);
    cr_assert_str_eq(l[3].dir, "up");
    cr_assert_eq(l[3].rate, 7000);

    gdml_wan_destroy(&down);
    gdml_wan_destroy(&up);
    fclose(log);
    gdml_test_rmtree(dir);
}

/* ---- decoding ---- */

/* Sends a header (encoding enc, one payload of the given bytes, or none) as raw frames. */
static void send_raw(gdml_encoding enc, const void *payload, size_t size)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_DELTA, SENDER);
    h.seq = 1;
    h.encoding = enc;
    h.n_payloads = payload ? 1 : 0;
    h.sizes[0] = payload ? size : 0;
    uint8_t hdr[GDML_MSG_HEADER_MAX];
    size_t len;
    cr_assert_eq(gdml_msg_encode(&h, hdr, sizeof hdr, &len), GDML_OK);
    const void *frames[2] = {hdr, payload};
    size_t sizes[2] = {len, size};
    cr_assert_eq(gdml_link_send_raw(client, NULL, frames, sizes, payload ? 2 : 1), GDML_OK);
}

static void expect_refused(size_t n, const char *why)
{
    float out[100];
    gdml_rx rx;
    gdml_errmsg e;
    cr_assert_eq(gdml_link_recv(server, &rx, RECV_TIMEOUT_MS, &e), GDML_OK, "%s", e.text);
    e.text[0] = '\0';
    cr_assert_eq(gdml_wan_decode(&rx, out, n, &e), GDML_ERR_PROTO, "%s", why);
    cr_assert(strstr(e.text, SENDER), "%s: %s", why, e.text);
    gdml_rx_release(&rx);
}

Test(wan, decode_refuses_bad_messages)
{
    float dense[16] = {1, 2, 3};
    send_raw(GDML_ENC_DENSE_F32, dense, sizeof dense);
    expect_refused(16, "dense f32 payload");
    send_raw(GDML_ENC_NONE, NULL, 0);
    expect_refused(16, "no payload");

    uint8_t garbage[64];
    memset(garbage, 0xab, sizeof garbage);
    send_raw(GDML_ENC_CODEC, garbage, sizeof garbage);
    expect_refused(16, "garbage codec payload");

    /* A real payload for 100 entries, read as 99, then truncated. */
    static float u[100];
    u[7] = 2.0f;
    gdml_wan *w = make_wan("dense", 0, 0, 0, 0, 100, NULL, "up");
    send_ok(w, 1, u, NULL, 0);
    expect_refused(99, "wrong n");
    gdml_rx rx;
    float out[100];
    send_ok(w, 2, u, NULL, 0);
    recv_decode(&rx, out, 100);
    cr_assert_eq(out[7], 2.0f);
    send_raw(GDML_ENC_CODEC, rx.payload[0], rx.payload_size[0] - 4);
    gdml_rx_release(&rx);
    expect_refused(100, "truncated payload");
    gdml_wan_destroy(&w);
}

/* Regression: a dense message just under the rate is "wait", never "never". */
Test(wan, a_message_that_fits_a_window_is_never_called_impossible)
{
    enum { M = 100 };
    static float v[M], out[M];
    gdml_msg_header h;
    delta_header(&h, 2);
    /* The real message is about 500 bytes: a rate a little above it. */
    gdml_wan *w = make_wan("dense", 0, 525, 0, 0, M, NULL, "up");
    send_ok(w, 1, v, NULL, 0);
    gdml_rx rx;
    recv_decode(&rx, out, M);
    gdml_rx_release(&rx);
    gdml_errmsg e;
    cr_assert_eq(gdml_wan_send_update(w, client, NULL, &h, v, NULL, NULL, 600, NULL, &e),
                 GDML_ERR_AGAIN);
    int64_t wait = gdml_wan_wait_ms(w, &h, 600, &e);
    cr_assert(wait > 0 && wait <= 400, "wait %" PRId64 ": %s", wait, wait < 0 ? e.text : "");
    send_ok(w, 3, v, NULL, 600 + wait);
    recv_decode(&rx, out, M);
    gdml_rx_release(&rx);
    gdml_wan_destroy(&w);
}

/* Regression: sent_k is what the encoder sent, not what the budget allowed. */
Test(wan, sent_k_counts_the_entries_a_filter_sent)
{
    enum { M = 1000 };
    static float v[M], out[M];
    v[10] = 5.0f, v[500] = -4.0f, v[999] = 3.0f; /* three significant entries */
    gdml_wan *w = make_wan("significance", 0.1, 0, 0, 0, M, NULL, "up");
    size_t k = send_ok(w, 1, v, NULL, 0);
    cr_assert_eq(k, 3, "sent_k %zu", k);
    gdml_rx rx;
    recv_decode(&rx, out, M);
    cr_assert(out[10] == 5.0f && out[500] == -4.0f && out[999] == 3.0f);
    gdml_rx_release(&rx);
    gdml_wan_destroy(&w);
}
