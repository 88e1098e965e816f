/*
 * test_transport.c - links over loopback TCP: whole messages with payloads
 * both ways, zero-copy sends that release their blobs, byte accounting by
 * the ZMTP formula, rejection of every kind of broken message (after which
 * the link must keep working), unknown and vanished peers, timeouts and
 * signals. Every test binds "tcp://127.0.0.1:*" and asks for the real port.
 */
#include "transport.h"

#include <criterion/criterion.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 5000
#define ID "us-east/w0"
#define BIG (48u << 20)

typedef struct pair {
    gdml_transport *t;
    gdml_link *srv, *cli;
    char ep[256];
    gdml_peer peer; /* the client as the server sees it, after pair_greet */
} pair;

static void pair_open(pair *p)
{
    memset(p, 0, sizeof *p);
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_transport_new(&p->t, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_link_bind(p->t, "tcp://127.0.0.1:*", &p->srv, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_link_endpoint(p->srv, p->ep, sizeof p->ep), GDML_OK);
    cr_assert_eq(gdml_link_connect(p->t, p->ep, ID, &p->cli, &e), GDML_OK, "%s", e.text);
}

static void pair_close(pair *p)
{
    gdml_link_close(&p->cli);
    gdml_link_close(&p->srv);
    cr_assert_null(p->srv);
    gdml_transport_destroy(&p->t);
    cr_assert_null(p->t);
}

static void send_hello(gdml_link *l, const gdml_peer *peer, uint64_t seq)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_HELLO, ID);
    h.seq = seq;
    h.count = 100;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_link_send(l, peer, &h, NULL, 0, WAIT_MS, &e), GDML_OK, "%s", e.text);
}

static void recv_ok(gdml_link *l, gdml_rx *rx)
{
    gdml_errmsg e = {{0}};
    gdml_err err = gdml_link_recv(l, rx, WAIT_MS, &e);
    cr_assert_eq(err, GDML_OK, "%s: %s", gdml_strerror(err), e.text);
}

/* The client says hello so that the server learns its routing id. */
static void pair_greet(pair *p)
{
    send_hello(p->cli, NULL, 1);
    gdml_rx rx;
    recv_ok(p->srv, &rx);
    p->peer = rx.peer;
    gdml_rx_release(&rx);
}

static gdml_peer peer_of(const char *id)
{
    gdml_peer p = {.len = strlen(id)};
    memcpy(p.id, id, p.len);
    return p;
}

static uint64_t wire(size_t size)
{
    return size + (size <= 255 ? 2 : 9);
}

static size_t encoded_len(const gdml_msg_header *h)
{
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode(h, buf, sizeof buf, &len), GDML_OK);
    return len;
}

static gdml_blob *pattern_blob(size_t size, unsigned seed)
{
    gdml_blob *b = NULL;
    cr_assert_eq(gdml_blob_new(size, &b), GDML_OK);
    uint8_t *d = gdml_blob_data(b);
    for (size_t i = 0; i < size; i++)
        d[i] = (uint8_t)((i * 31 + seed) % 251);
    return b;
}

static void assert_pattern(const uint8_t *d, size_t size, unsigned seed)
{
    for (size_t i = 0; i < size; i++)
        if (d[i] != (uint8_t)((i * 31 + seed) % 251))
            cr_assert_fail("byte %zu of %zu differs", i, size);
}

static size_t mapped_bytes(void)
{
    return mallinfo2().hblkhd;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- whole messages ---- */

Test(transport, bind_resolves_the_port)
{
    pair p;
    pair_open(&p);
    cr_assert_eq(strncmp(p.ep, "tcp://127.0.0.1:", 16), 0, "%s", p.ep);
    cr_assert_null(strchr(p.ep, '*'), "%s", p.ep);
    char ep[256];
    cr_assert_eq(gdml_link_endpoint(p.cli, ep, sizeof ep), GDML_OK);
    cr_assert_str_eq(ep, p.ep);
    cr_assert_eq(gdml_link_endpoint(p.srv, ep, 5), GDML_ERR_INVALID);
    pair_close(&p);
}

Test(transport, round_trip_with_two_payloads)
{
    pair p;
    pair_open(&p);
    gdml_blob *blobs[2] = {pattern_blob(4000, 1), pattern_blob(3, 2)};
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_PUSH, ID);
    h.seq = 5;
    h.step = 3;
    h.count = 32;
    h.metric = 0.75;
    h.encoding = GDML_ENC_DENSE_F32;
    h.n_payloads = 2; /* sizes left 0: the transport fills them in */
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_link_send(p.cli, NULL, &h, blobs, 2, WAIT_MS, &e), GDML_OK, "%s", e.text);

    gdml_rx rx;
    recv_ok(p.srv, &rx);
    char name[64];
    cr_assert_str_eq(gdml_peer_str(&rx.peer, name, sizeof name), ID);
    cr_assert(gdml_peer_eq(&rx.peer, &(gdml_peer){.len = strlen(ID), .id = ID}));
    cr_assert_eq(rx.header.type, GDML_MSG_PUSH);
    cr_assert_str_eq(rx.header.sender, ID);
    cr_assert_eq(rx.header.seq, 5);
    cr_assert_eq(rx.header.step, 3);
    cr_assert_eq(rx.header.count, 32);
    cr_assert_eq(rx.header.metric, 0.75);
    cr_assert_eq(rx.header.n_payloads, 2);
    cr_assert_eq(rx.header.sizes[0], 4000);
    cr_assert_eq(rx.header.sizes[1], 3);
    cr_assert_eq(rx.n_payloads, 2);
    cr_assert_eq(rx.payload_size[0], 4000);
    cr_assert_eq(rx.payload_size[1], 3);
    assert_pattern(rx.payload[0], 4000, 1);
    assert_pattern(rx.payload[1], 3, 2);
    for (int i = 0; i < 2; i++)
        cr_assert_eq((uintptr_t)rx.payload[i] % 8, 0, "payload %d misaligned", i);

    /* And back: the server answers the peer it heard from. */
    gdml_msg_header m;
    gdml_msg_header_init(&m, GDML_MSG_MODEL, "us-east");
    m.version = 9;
    m.n_payloads = 2;
    m.encoding = GDML_ENC_DENSE_F32;
    cr_assert_eq(gdml_link_send(p.srv, &rx.peer, &m, blobs, 2, WAIT_MS, &e), GDML_OK, "%s", e.text);
    gdml_rx_release(&rx);
    cr_assert_null(rx.frames_);
    gdml_rx_release(&rx); /* twice is harmless */

    recv_ok(p.cli, &rx);
    cr_assert_eq(rx.peer.len, 0, "a DEALER has no peer id");
    cr_assert_eq(rx.header.type, GDML_MSG_MODEL);
    cr_assert_eq(rx.header.version, 9);
    cr_assert_str_eq(rx.header.sender, "us-east");
    assert_pattern(rx.payload[0], 4000, 1);
    assert_pattern(rx.payload[1], 3, 2);
    gdml_rx_release(&rx);

    gdml_blob_unref(&blobs[0]);
    gdml_blob_unref(&blobs[1]);
    pair_close(&p);
}

Test(transport, round_trip_with_max_payloads_and_text)
{
    pair p;
    pair_open(&p);
    gdml_blob *blobs[GDML_MSG_MAX_PAYLOADS];
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_WELCOME, "us-east");
    h.n_payloads = GDML_MSG_MAX_PAYLOADS;
    for (int i = 0; i < GDML_MSG_MAX_PAYLOADS; i++) {
        blobs[i] = pattern_blob((size_t)i * 777, (unsigned)i); /* payload 0 is empty */
        h.sizes[i] = (uint64_t)i * 777;
    }
    snprintf(h.text, sizeof h.text, "softmax 784x10");
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_link_send(p.cli, NULL, &h, blobs, GDML_MSG_MAX_PAYLOADS, WAIT_MS, &e),
                 GDML_OK, "%s", e.text);
    gdml_rx rx;
    recv_ok(p.srv, &rx);
    cr_assert_eq(rx.n_payloads, GDML_MSG_MAX_PAYLOADS);
    cr_assert_str_eq(rx.header.text, "softmax 784x10");
    for (int i = 0; i < GDML_MSG_MAX_PAYLOADS; i++) {
        cr_assert_eq(rx.payload_size[i], (size_t)i * 777);
        assert_pattern(rx.payload[i], rx.payload_size[i], (unsigned)i);
        gdml_blob_unref(&blobs[i]);
    }
    gdml_rx_release(&rx);
    pair_close(&p);
}

Test(transport, received_payloads_are_aligned_for_floats)
{
    pair p;
    pair_open(&p);
    /* ZeroMQ places small frames at any offset of its receive buffer; vary
     * the header length so that some payloads would land misaligned. */
    gdml_blob *blobs[2] = {pattern_blob(100, 4), pattern_blob(1000, 5)};
    for (int shift = 0; shift < 16; shift++) {
        gdml_msg_header h;
        gdml_msg_header_init(&h, GDML_MSG_PUSH, ID);
        memset(h.text, 't', (size_t)shift);
        h.n_payloads = 2;
        gdml_errmsg e = {{0}};
        cr_assert_eq(gdml_link_send(p.cli, NULL, &h, blobs, 2, WAIT_MS, &e), GDML_OK, "%s", e.text);
    }
    for (int shift = 0; shift < 16; shift++) {
        gdml_rx rx;
        recv_ok(p.srv, &rx);
        for (int i = 0; i < 2; i++)
            cr_assert_eq((uintptr_t)rx.payload[i] % 8, 0, "shift %d payload %d", shift, i);
        assert_pattern(rx.payload[0], 100, 4);
        assert_pattern(rx.payload[1], 1000, 5);
        gdml_rx_release(&rx);
    }
    gdml_blob_unref(&blobs[0]);
    gdml_blob_unref(&blobs[1]);
    pair_close(&p);
}

Test(transport, byte_accounting_follows_the_frame_formula)
{
    pair p;
    pair_open(&p);
    /* Sizes either side of the 255-byte short-frame limit, and an empty frame. */
    gdml_blob *blobs[3] = {pattern_blob(255, 0), pattern_blob(256, 0), pattern_blob(0, 0)};
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_DELTA, ID);
    h.n_payloads = 3;
    h.sizes[0] = 255;
    h.sizes[1] = 256;
    h.sizes[2] = 0;
    uint64_t want = wire(encoded_len(&h)) + wire(255) + wire(256) + wire(0);
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_link_send(p.cli, NULL, &h, blobs, 3, WAIT_MS, &e), GDML_OK, "%s", e.text);
    gdml_rx rx;
    recv_ok(p.srv, &rx);
    cr_assert_eq(rx.wire_bytes, want);

    gdml_link_stats cs, ss;
    gdml_link_stats_get(p.cli, &cs);
    gdml_link_stats_get(p.srv, &ss);
    cr_assert_eq(cs.bytes_sent, want);
    cr_assert_eq(ss.bytes_received, want);
    cr_assert_eq(cs.msgs_sent, 1);
    cr_assert_eq(ss.msgs_received, 1);
    cr_assert_eq(cs.bytes_received + ss.bytes_sent + cs.msgs_rejected + ss.msgs_rejected, 0);

    /* The other way, with a header over 255 bytes (long text). */
    gdml_msg_header g;
    gdml_msg_header_init(&g, GDML_MSG_GLOBAL, "coordinator");
    memset(g.text, 'x', 250);
    g.n_payloads = 1;
    g.sizes[0] = 256;
    size_t hl = encoded_len(&g);
    cr_assert_gt(hl, 255);
    uint64_t back = wire(hl) + wire(256);
    cr_assert_eq(gdml_link_send(p.srv, &rx.peer, &g, &blobs[1], 1, WAIT_MS, &e), GDML_OK, "%s",
                 e.text);
    gdml_rx_release(&rx);
    recv_ok(p.cli, &rx);
    cr_assert_eq(rx.wire_bytes, back);
    gdml_rx_release(&rx);
    gdml_link_stats_get(p.cli, &cs);
    gdml_link_stats_get(p.srv, &ss);
    cr_assert_eq(ss.bytes_sent, back);
    cr_assert_eq(cs.bytes_received, back);
    cr_assert_eq(cs.bytes_sent, want);
    cr_assert_eq(ss.bytes_received, want);

    for (int i = 0; i < 3; i++)
        gdml_blob_unref(&blobs[i]);
    pair_close(&p);
}

/* ---- zero copy and blob ownership ---- */

Test(transport, zero_copy_send_releases_the_blob_once_sent)
{
    pair p;
    pair_open(&p);
    size_t base = mapped_bytes();
    gdml_blob *b = pattern_blob(BIG, 7);
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_PUSH, ID);
    h.n_payloads = 1;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_link_send(p.cli, NULL, &h, &b, 1, WAIT_MS, &e), GDML_OK, "%s", e.text);
    /* Drop ours at once: the transport's own reference keeps the bytes alive. */
    gdml_blob_unref(&b);

    gdml_rx rx;
    recv_ok(p.srv, &rx);
    cr_assert_eq(rx.payload_size[0], BIG);
    assert_pattern(rx.payload[0], BIG, 7);
    gdml_rx_release(&rx);

    /* ZeroMQ drops the last reference once the frame is on the wire. */
    int64_t deadline = now_ms() + WAIT_MS;
    while (mapped_bytes() >= base + BIG / 2 && now_ms() < deadline)
        usleep(10000);
    cr_assert_lt(mapped_bytes(), base + BIG / 2, "the sent blob was not freed");
    pair_close(&p);
}

Test(transport, failed_send_leaves_the_caller_its_reference)
{
    pair p;
    pair_open(&p);
    size_t base = mapped_bytes();
    gdml_blob *b = pattern_blob(BIG, 3);
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_MODEL, "us-east");
    h.n_payloads = 1;
    gdml_peer ghost = peer_of("ghost");
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_link_send(p.srv, &ghost, &h, &b, 1, WAIT_MS, &e), GDML_ERR_NOTFOUND);
    cr_assert(strstr(e.text, "peer 'ghost' is not connected"), "%s", e.text);
    /* Still ours and intact; and the transport kept no reference of its own. */
    assert_pattern(gdml_blob_data(b), BIG, 3);
    gdml_blob_unref(&b);
    cr_assert_lt(mapped_bytes(), base + BIG / 2);
    gdml_link_stats s;
    gdml_link_stats_get(p.srv, &s);
    cr_assert_eq(s.msgs_sent + s.bytes_sent, 0);
    pair_close(&p);
}

/* ---- peers that are gone, timeouts, signals ---- */

Test(transport, send_to_vanished_peer_is_notfound)
{
    pair p;
    pair_open(&p);
    pair_greet(&p);
    gdml_link_close(&p.cli);
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_STOP, "us-east");
    gdml_errmsg e = {{0}};
    gdml_err err = GDML_OK;
    /* The ROUTER learns of the disconnect asynchronously. */
    for (int64_t deadline = now_ms() + WAIT_MS; err == GDML_OK && now_ms() < deadline;) {
        err = gdml_link_send(p.srv, &p.peer, &h, NULL, 0, 100, &e);
        usleep(10000);
    }
    cr_assert_eq(err, GDML_ERR_NOTFOUND, "%s", e.text);
    cr_assert(strstr(e.text, "peer '" ID "' is not connected"), "%s", e.text);
    pair_close(&p);
}

Test(transport, send_times_out_when_the_queue_is_full)
{
    gdml_transport *t = NULL;
    gdml_link *gone = NULL, *cli = NULL;
    cr_assert_eq(gdml_transport_new(&t, NULL), GDML_OK);
    cr_assert_eq(gdml_link_bind(t, "tcp://127.0.0.1:*", &gone, NULL), GDML_OK);
    char ep[256];
    cr_assert_eq(gdml_link_endpoint(gone, ep, sizeof ep), GDML_OK);
    gdml_link_close(&gone); /* nobody listens there now */
    cr_assert_eq(gdml_link_connect(t, ep, ID, &cli, NULL), GDML_OK);

    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_HELLO, ID);
    gdml_errmsg e = {{0}};
    gdml_err err = GDML_OK;
    int sent = 0;
    while (sent < 100000 && (err = gdml_link_send(cli, NULL, &h, NULL, 0, 0, &e)) == GDML_OK)
        sent++;
    cr_assert_eq(err, GDML_ERR_TIMEOUT, "%d sent, %s", sent, e.text);
    cr_assert_gt(sent, 0);
    int64_t t0 = now_ms();
    cr_assert_eq(gdml_link_send(cli, NULL, &h, NULL, 0, 100, &e), GDML_ERR_TIMEOUT);
    cr_assert_geq(now_ms() - t0, 90);
    cr_assert(strstr(e.text, "did not take the message within 100 ms"), "%s", e.text);
    gdml_link_stats s;
    gdml_link_stats_get(cli, &s);
    cr_assert_eq(s.msgs_sent, (uint64_t)sent);
    gdml_link_close(&cli);
    gdml_transport_destroy(&t);
}

Test(transport, poll_and_recv_time_out_with_again)
{
    pair p;
    pair_open(&p);
    gdml_link *links[2] = {p.srv, p.cli};
    bool ready[2] = {true, true};
    int64_t t0 = now_ms();
    cr_assert_eq(gdml_link_poll(links, 2, 50, ready), GDML_ERR_AGAIN);
    cr_assert_geq(now_ms() - t0, 45);
    cr_assert(!ready[0] && !ready[1]);
    gdml_rx rx;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_link_recv(p.srv, &rx, 0, &e), GDML_ERR_AGAIN);
    cr_assert_eq(gdml_link_recv(p.srv, &rx, 30, &e), GDML_ERR_AGAIN);
    cr_assert_null(rx.frames_);
    pair_close(&p);
}

Test(transport, poll_reports_which_link_is_ready)
{
    pair p;
    pair_open(&p);
    send_hello(p.cli, NULL, 1);
    gdml_link *links[2] = {p.cli, p.srv};
    bool ready[2] = {true, false};
    cr_assert_eq(gdml_link_poll(links, 2, WAIT_MS, ready), GDML_OK);
    cr_assert(!ready[0]);
    cr_assert(ready[1]);
    pair_close(&p);
}

Test(transport, poll_over_many_links)
{
    gdml_transport *t = NULL;
    cr_assert_eq(gdml_transport_new(&t, NULL), GDML_OK);
    enum { N = 20 };
    gdml_link *links[N];
    bool ready[N];
    for (int i = 0; i < N; i++)
        cr_assert_eq(gdml_link_bind(t, "tcp://127.0.0.1:*", &links[i], NULL), GDML_OK);
    cr_assert_eq(gdml_link_poll(links, N, 10, ready), GDML_ERR_AGAIN);
    gdml_link *cli = NULL;
    char ep[256];
    cr_assert_eq(gdml_link_endpoint(links[N - 1], ep, sizeof ep), GDML_OK);
    cr_assert_eq(gdml_link_connect(t, ep, ID, &cli, NULL), GDML_OK);
    send_hello(cli, NULL, 1);
    cr_assert_eq(gdml_link_poll(links, N, WAIT_MS, ready), GDML_OK);
    for (int i = 0; i < N; i++)
        cr_assert_eq(ready[i], i == N - 1, "link %d", i);
    gdml_link_close(&cli);
    for (int i = 0; i < N; i++)
        gdml_link_close(&links[i]);
    gdml_transport_destroy(&t);
}

static void on_alarm(int sig)
{
    (void)sig;
}

static void *alarm_later(void *arg)
{
    usleep(100000);
    pthread_kill(*(pthread_t *)arg, SIGALRM);
    return NULL;
}

Test(transport, a_signal_interrupts_waiting)
{
    struct sigaction sa = {.sa_handler = on_alarm}; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGALRM, &sa, NULL), 0);
    pair p;
    pair_open(&p);
    pthread_t self = pthread_self(), th;
    cr_assert_eq(pthread_create(&th, NULL, alarm_later, &self), 0);
    cr_assert_eq(gdml_link_poll(&p.srv, 1, WAIT_MS, &(bool){false}), GDML_ERR_INTERRUPTED);
    pthread_join(th, NULL);
    cr_assert_eq(pthread_create(&th, NULL, alarm_later, &self), 0);
    gdml_rx rx;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_link_recv(p.srv, &rx, -1, &e), GDML_ERR_INTERRUPTED);
    pthread_join(th, NULL);
    pair_close(&p);
}

/* ---- rejected messages ---- */

/* The client sends frames as given; the server must reject them with code and
 * a text naming the peer and containing want, and then still take a valid
 * message. */
static void expect_rejected(pair *p, const void *const *frames, const size_t *sizes, size_t n,
                            gdml_err code, const char *want)
{
    gdml_link_stats before, after;
    gdml_link_stats_get(p->srv, &before);
    cr_assert_eq(gdml_link_send_raw(p->cli, NULL, frames, sizes, n), GDML_OK);
    gdml_rx rx;
    gdml_errmsg e = {{0}};
    gdml_err err = gdml_link_recv(p->srv, &rx, WAIT_MS, &e);
    cr_assert_eq(err, code, "want %s, got %s (%s)", gdml_strerror(code), gdml_strerror(err),
                 e.text);
    cr_assert(strncmp(e.text, "from peer '" ID "': ", strlen("from peer '" ID "': ")) == 0,
              "'%s' does not name the peer", e.text);
    cr_assert(strstr(e.text, want), "'%s' lacks '%s'", e.text, want);
    gdml_peer id = peer_of(ID);
    cr_assert(gdml_peer_eq(&rx.peer, &id), "rx.peer not set on rejection");
    cr_assert_null(rx.frames_);
    gdml_rx_release(&rx);
    gdml_link_stats_get(p->srv, &after);
    cr_assert_eq(after.msgs_rejected, before.msgs_rejected + 1);
    cr_assert_eq(after.msgs_received, before.msgs_received);
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += wire(sizes[i]);
    cr_assert_eq(after.bytes_received, before.bytes_received + bytes, "rejected bytes count");

    /* The link keeps working. */
    send_hello(p->cli, NULL, 99);
    recv_ok(p->srv, &rx);
    cr_assert_eq(rx.header.seq, 99);
    gdml_rx_release(&rx);
}

static size_t encode(const gdml_msg_header *h, uint8_t *buf)
{
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode(h, buf, GDML_MSG_HEADER_MAX, &len), GDML_OK);
    return len;
}

Test(transport, rejects_wrong_version)
{
    pair p;
    pair_open(&p);
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_HELLO, ID);
    h.proto = 2;
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = encode(&h, buf);
    expect_rejected(&p, (const void *[]){buf}, &len, 1, GDML_ERR_VERSION,
                    "protocol version 2, this build speaks 1");
    pair_close(&p);
}

Test(transport, rejects_garbage_empty_and_oversized_headers)
{
    pair p;
    pair_open(&p);
    const char garbage[] = "\xc1 this is not msgpack";
    size_t len = sizeof garbage - 1;
    expect_rejected(&p, (const void *[]){garbage}, &len, 1, GDML_ERR_PROTO, "not valid msgpack");
    len = 0;
    expect_rejected(&p, (const void *[]){garbage}, &len, 1, GDML_ERR_PROTO, "header is empty");
    static uint8_t big[GDML_MSG_HEADER_MAX + 1];
    len = sizeof big;
    expect_rejected(&p, (const void *[]){big}, &len, 1, GDML_ERR_PROTO, "at most 2048 allowed");
    pair_close(&p);
}

Test(transport, rejects_truncated_header)
{
    pair p;
    pair_open(&p);
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_HELLO, ID);
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = encode(&h, buf) / 2;
    expect_rejected(&p, (const void *[]){buf}, &len, 1, GDML_ERR_PROTO, "not valid msgpack");
    pair_close(&p);
}

Test(transport, rejects_frame_count_mismatch)
{
    pair p;
    pair_open(&p);
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_PUSH, ID);
    h.n_payloads = 2;
    h.sizes[0] = h.sizes[1] = 8;
    uint8_t buf[GDML_MSG_HEADER_MAX];
    uint8_t body[8] = {0};
    size_t sizes[2] = {encode(&h, buf), 8};
    expect_rejected(&p, (const void *[]){buf, body}, sizes, 2, GDML_ERR_PROTO,
                    "PUSH header lists 2 payloads, message has 1");
    /* One frame more than the header says. */
    h.n_payloads = 0;
    size_t three[3] = {encode(&h, buf), 8, 8};
    expect_rejected(&p, (const void *[]){buf, body, body}, three, 3, GDML_ERR_PROTO,
                    "lists 0 payloads, message has 2");
    pair_close(&p);
}

Test(transport, rejects_payload_size_mismatch)
{
    pair p;
    pair_open(&p);
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_PUSH, ID);
    h.n_payloads = 2;
    h.sizes[0] = 16;
    h.sizes[1] = 100;
    uint8_t buf[GDML_MSG_HEADER_MAX];
    static uint8_t body[100];
    size_t sizes[3] = {encode(&h, buf), 16, 99};
    expect_rejected(&p, (const void *[]){buf, body, body}, sizes, 3, GDML_ERR_PROTO,
                    "PUSH payload 1 is 99 bytes, header says 100");
    pair_close(&p);
}

Test(transport, rejects_too_many_frames_and_stays_in_step)
{
    pair p;
    pair_open(&p);
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_PUSH, ID);
    uint8_t buf[GDML_MSG_HEADER_MAX];
    enum { N = GDML_MSG_MAX_PAYLOADS + 5 };
    const void *frames[N];
    size_t sizes[N];
    frames[0] = buf;
    sizes[0] = encode(&h, buf);
    for (int i = 1; i < N; i++) {
        frames[i] = "abcd";
        sizes[i] = 4;
    }
    expect_rejected(&p, frames, sizes, N, GDML_ERR_PROTO, "message has 13 frames, at most 9");
    pair_close(&p);
}

Test(transport, dealer_rejects_bad_messages_from_its_server)
{
    pair p;
    pair_open(&p);
    pair_greet(&p);
    const char garbage[] = "\x93\x01\x02";
    size_t len = sizeof garbage - 1;
    cr_assert_eq(gdml_link_send_raw(p.srv, &p.peer, (const void *[]){garbage}, &len, 1), GDML_OK);
    gdml_rx rx;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_link_recv(p.cli, &rx, WAIT_MS, &e), GDML_ERR_PROTO, "%s", e.text);
    char want[300];
    snprintf(want, sizeof want, "from peer '%s': ", p.ep);
    cr_assert(strncmp(e.text, want, strlen(want)) == 0, "%s", e.text);
    gdml_link_stats s;
    gdml_link_stats_get(p.cli, &s);
    cr_assert_eq(s.msgs_rejected, 1);
    send_hello(p.srv, &p.peer, 4);
    recv_ok(p.cli, &rx);
    cr_assert_eq(rx.header.seq, 4);
    gdml_rx_release(&rx);
    pair_close(&p);
}

/* ---- argument and setup errors ---- */

Test(transport, bind_and_connect_errors_say_why)
{
    pair p;
    pair_open(&p);
    gdml_link *l = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_link_bind(p.t, p.ep, &l, &e), GDML_ERR_TRANSPORT);
    cr_assert_null(l);
    char want[300];
    snprintf(want, sizeof want, "cannot bind to '%s': Address already in use", p.ep);
    cr_assert_str_eq(e.text, want);
    cr_assert_eq(gdml_link_bind(p.t, "nonsense", &l, &e), GDML_ERR_TRANSPORT);
    cr_assert(strstr(e.text, "cannot bind to 'nonsense': "), "%s", e.text);
    cr_assert_eq(gdml_link_connect(p.t, "bogus://x", ID, &l, &e), GDML_ERR_TRANSPORT);
    cr_assert(strstr(e.text, "cannot connect to 'bogus://x': "), "%s", e.text);
    cr_assert_eq(gdml_link_connect(p.t, p.ep, "", &l, &e), GDML_ERR_INVALID);
    cr_assert_null(l);
    pair_close(&p);
}

Test(transport, send_rejects_inconsistent_arguments)
{
    pair p;
    pair_open(&p);
    gdml_blob *b = pattern_blob(10, 0);
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_PUSH, ID);
    gdml_errmsg e = {{0}};
    h.n_payloads = 0;
    cr_assert_eq(gdml_link_send(p.cli, NULL, &h, &b, 1, WAIT_MS, &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "1 payloads but its header lists 0"), "%s", e.text);
    h.n_payloads = 1;
    h.sizes[0] = 11;
    cr_assert_eq(gdml_link_send(p.cli, NULL, &h, &b, 1, WAIT_MS, &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "payload 0 is 10 bytes, header says 11"), "%s", e.text);
    h.sizes[0] = 10;
    h.type = (gdml_msg_type)0;
    cr_assert_eq(gdml_link_send(p.cli, NULL, &h, &b, 1, WAIT_MS, &e), GDML_ERR_INVALID);
    h.type = GDML_MSG_MODEL;
    cr_assert_eq(gdml_link_send(p.srv, NULL, &h, &b, 1, WAIT_MS, &e), GDML_ERR_INVALID);
    cr_assert_eq(gdml_link_send_raw(p.srv, NULL, (const void *[]){"x"}, (size_t[]){1}, 1),
                 GDML_ERR_INVALID);
    gdml_link_stats s;
    gdml_link_stats_get(p.cli, &s);
    cr_assert_eq(s.msgs_sent, 0);
    /* Nothing half-sent is in the way of the next message. */
    cr_assert_eq(gdml_link_send(p.cli, NULL, &h, &b, 1, WAIT_MS, &e), GDML_OK, "%s", e.text);
    gdml_rx rx;
    recv_ok(p.srv, &rx);
    cr_assert_eq(rx.header.type, GDML_MSG_MODEL);
    gdml_rx_release(&rx);
    gdml_blob_unref(&b);
    pair_close(&p);
}

Test(transport, peer_str_escapes_and_truncates)
{
    gdml_peer p = {.len = 5, .id = {'a', 0x00, '\\', 0xff, 'z'}};
    char buf[64];
    cr_assert_str_eq(gdml_peer_str(&p, buf, sizeof buf), "a\\x00\\x5c\\xffz");
    cr_assert_str_eq(gdml_peer_str(&p, buf, 4), "a");
    cr_assert_str_eq(gdml_peer_str(&p, buf, 1), "");
    gdml_peer empty = {.len = 0};
    cr_assert_str_eq(gdml_peer_str(&empty, buf, sizeof buf), "");
    gdml_peer q = p;
    cr_assert(gdml_peer_eq(&p, &q));
    q.id[4] = 'y';
    cr_assert(!gdml_peer_eq(&p, &q));
    q = p;
    q.len = 4;
    cr_assert(!gdml_peer_eq(&p, &q));
}

Test(transport, close_and_destroy_accept_null)
{
    gdml_link *l = NULL;
    gdml_link_close(&l);
    gdml_link_close(NULL);
    gdml_transport *t = NULL;
    gdml_transport_destroy(&t);
    gdml_transport_destroy(NULL);
    gdml_rx_release(NULL);
}
