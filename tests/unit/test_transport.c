/*
 * test_transport.c - gdml links over real loopback TCP (transport.h):
 * one-frame messages both ways on plain and CURVE links, names from the
 * header on plain links and from the allow-list on CURVE links, byte
 * counts by gdml_wire_bytes, refusal of every kind of broken message (after
 * which the link keeps working), protocol-1 peers told to upgrade, sends
 * that never block and peers that stop reading dropped, and the two memory
 * bounds: ZeroMQ's frame limit and the backlog guard, attacked by a raw TCP
 * client speaking ZMTP 3.0 by hand.
 *
 * Every test binds "tcp://127.0.0.1:*" and reads the real port back; raw
 * ZeroMQ sockets appear only where a test needs a peer the transport would
 * never be (one that does not reconnect, or reads refusals as bytes).
 */
#include "transport.h"
#include "util.h"

#include <criterion/criterion.h>
#include <zmq.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define ANY "tcp://127.0.0.1:*"
#define WAIT_MS 5000
#define QUIET_MS 1000 /* how long "nothing arrives" is watched */

/* ---- helpers ---- */

static gdml_transport *transport_new(void)
{
    gdml_transport *t = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_transport_new(&t, &e), GDML_OK, "%s", e.text);
    return t;
}

static gdml_link *bind_on(gdml_transport *t, const gdml_link_options *o, char *ep, size_t cap)
{
    gdml_link *l = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_link_bind(t, ANY, o, &l, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_link_endpoint(l, ep, cap), GDML_OK);
    cr_assert_eq(strncmp(ep, "tcp://127.0.0.1:", 16), 0, "%s", ep);
    cr_assert_null(strchr(ep, '*'), "%s", ep);
    return l;
}

static gdml_link *connect_to(gdml_transport *t, const char *ep, const gdml_link_options *o)
{
    gdml_link *l = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_link_connect(t, ep, o, &l, &e), GDML_OK, "%s", e.text);
    return l;
}

static gdml_blob *header_frame(gdml_msg_type type, const char *from, uint64_t seq)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, type, from);
    h.seq = seq;
    gdml_blob *f = NULL;
    cr_assert_eq(gdml_frame_header_only(&h, &f), GDML_OK, "from '%s'", from);
    return f;
}

static uint8_t pattern(size_t i, unsigned seed)
{
    return (uint8_t)((i * 31 + seed) % 251);
}

/* A tensor chunk frame with n payload bytes of a pattern. */
static gdml_blob *payload_frame(const char *from, uint64_t seq, size_t n, unsigned seed)
{
    gdml_blob *f = NULL;
    cr_assert_eq(gdml_frame_new(n, &f), GDML_OK);
    uint8_t *p = gdml_frame_payload(f);
    for (size_t i = 0; i < n; i++)
        p[i] = pattern(i, seed);
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_PUSH, from);
    h.seq = seq;
    h.encoding = GDML_ENC_CODEC;
    h.total = 1000;
    h.chunks = 1;
    cr_assert_eq(gdml_frame_seal(f, &h, n), GDML_OK);
    return f;
}

static size_t frame_len(const gdml_blob *f)
{
    size_t len = 0;
    gdml_blob_view(f, &len);
    return len;
}

static const void *frame_bytes(const gdml_blob *f, size_t *len)
{
    return gdml_blob_view(f, len);
}

static void send_ok(gdml_link *l, const gdml_peer *peer, gdml_blob *f)
{
    gdml_errmsg e = {{0}};
    gdml_err err = gdml_link_send(l, peer, f, &e);
    cr_assert_eq(err, GDML_OK, "%s: %s", gdml_strerror(err), e.text);
}

/* Sends f and drops the caller's reference. */
static void send_take(gdml_link *l, const gdml_peer *peer, gdml_blob *f)
{
    send_ok(l, peer, f);
    gdml_blob_unref(&f);
}

static gdml_err recv_within(gdml_link *l, gdml_rx *rx, int timeout_ms, gdml_errmsg *e)
{
    int64_t end = gdml_now_ms() + timeout_ms;
    for (;;) {
        gdml_err err = gdml_link_recv(l, rx, e);
        if (err != GDML_ERR_AGAIN)
            return err;
        int64_t left = end - gdml_now_ms();
        if (left <= 0)
            return GDML_ERR_AGAIN;
        bool ready;
        gdml_link_poll(&l, 1, (int)(left < 50 ? left : 50), &ready);
    }
}

static void recv_ok(gdml_link *l, gdml_rx *rx)
{
    gdml_errmsg e = {{0}};
    gdml_err err = recv_within(l, rx, WAIT_MS, &e);
    cr_assert_eq(err, GDML_OK, "%s: %s", gdml_strerror(err), e.text);
}

/* Expects a refusal with this error and reason; returns rx (released). */
static gdml_rx recv_refused(gdml_link *l, gdml_err want, gdml_reason reason, gdml_errmsg *e)
{
    gdml_rx rx;
    memset(e, 0, sizeof *e);
    gdml_err err = recv_within(l, &rx, WAIT_MS, e);
    cr_assert_eq(err, want, "got %s (%s), want %s", gdml_strerror(err), e->text,
                 gdml_strerror(want));
    cr_assert_eq(rx.reason, reason, "reason %s, want %s (%s)", gdml_reason_name(rx.reason),
                 gdml_reason_name(reason), e->text);
    cr_assert_null(rx.payload, "nothing is held after an error");
    gdml_rx_release(&rx); /* safe on a refused rx */
    return rx;
}

static void expect_nothing(gdml_link *l, int ms)
{
    gdml_rx rx;
    gdml_errmsg e = {{0}};
    gdml_err err = recv_within(l, &rx, ms, &e);
    if (err == GDML_OK)
        gdml_rx_release(&rx);
    cr_assert_eq(err, GDML_ERR_AGAIN, "something arrived: %s (%s), name '%s'", gdml_strerror(err),
                 e.text, rx.name);
}

/* Receives and discards whatever arrives for ms milliseconds. */
static void drain(gdml_link *l, int ms)
{
    gdml_rx rx;
    int64_t end = gdml_now_ms() + ms;
    for (;;) {
        int64_t left = end - gdml_now_ms();
        if (left <= 0)
            return;
        if (recv_within(l, &rx, (int)left, NULL) == GDML_OK)
            gdml_rx_release(&rx);
    }
}

/* The client says hello so that the server learns its peer id. */
static gdml_peer greet(gdml_link *srv, gdml_link *cli, const char *from)
{
    send_take(cli, NULL, header_frame(GDML_MSG_HELLO, from, 1));
    gdml_rx rx;
    recv_ok(srv, &rx);
    cr_assert_eq(rx.header.type, GDML_MSG_HELLO);
    cr_assert_gt(rx.peer.len, 0);
    gdml_peer p = rx.peer;
    gdml_rx_release(&rx);
    return p;
}

static gdml_link_stats stats_of(const gdml_link *l)
{
    gdml_link_stats s;
    gdml_link_stats_get(l, &s);
    return s;
}

/* ---- raw TCP peers speaking ZMTP 3.0 by hand ---- */

static int port_of(const char *ep)
{
    const char *colon = strrchr(ep, ':');
    cr_assert_not_null(colon, "%s", ep);
    return atoi(colon + 1);
}

static int tcp_connect(const char *ep)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port_of(ep))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s", strerror(errno));
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

static void send_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    int64_t end = gdml_now_ms() + WAIT_MS;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR) && gdml_now_ms() < end)
            continue;
        cr_assert_gt(w, 0, "send: %s", strerror(errno));
        p += w;
        n -= (size_t)w;
    }
}

/* Greets a ZeroMQ socket as a ZMTP 3.0 DEALER with the NULL mechanism. */
static void zmtp_handshake(int fd)
{
    uint8_t greeting[64] = {0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 3, 0, 'N', 'U', 'L', 'L'};
    send_all(fd, greeting, sizeof greeting);
    uint8_t theirs[64];
    size_t got = 0;
    int64_t end = gdml_now_ms() + WAIT_MS;
    while (got < sizeof theirs && gdml_now_ms() < end) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        ssize_t r = recv(fd, theirs + got, sizeof theirs - got, 0);
        cr_assert_gt(r, 0, "the ZeroMQ socket closed during the greeting");
        got += (size_t)r;
    }
    cr_assert_eq(got, sizeof theirs, "no greeting from ZeroMQ");
    cr_assert_eq(theirs[0], 0xff);
    cr_assert_eq(theirs[9], 0x7f);
    cr_assert_eq(theirs[10], 3);
    cr_assert_eq(memcmp(theirs + 12, "NULL", 4), 0);
    /* READY with one property: Socket-Type = DEALER. */
    static const uint8_t ready[] = {0x04, 28,  0x05, 'R', 'E', 'A', 'D', 'Y', 11,  'S',
                                    'o',  'c', 'k',  'e', 't', '-', 'T', 'y', 'p', 'e',
                                    0,    0,   0,    6,   'D', 'E', 'A', 'L', 'E', 'R'};
    send_all(fd, ready, sizeof ready);
}

/* The header of a ZMTP long frame of `size` bytes. */
static void long_frame_header(uint8_t out[9], bool more, uint64_t size)
{
    out[0] = more ? 0x03 : 0x02;
    for (int i = 0; i < 8; i++)
        out[1 + i] = (uint8_t)(size >> (56 - 8 * i));
}

/* True once the peer has closed fd (EOF or an error), within timeout_ms. */
static bool wait_closed(int fd, int timeout_ms)
{
    int64_t end = gdml_now_ms() + timeout_ms;
    while (gdml_now_ms() < end) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        uint8_t buf[4096];
        ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
            return true;
    }
    return false;
}

static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    cr_assert_not_null(f);
    unsigned long size = 0, resident = 0;
    cr_assert_eq(fscanf(f, "%lu %lu", &size, &resident), 2);
    fclose(f);
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* ---- plain links ---- */

Test(transport, wire_bytes_formula)
{
    cr_assert_eq(gdml_wire_bytes(0, false), 2);
    cr_assert_eq(gdml_wire_bytes(255, false), 257);
    cr_assert_eq(gdml_wire_bytes(256, false), 265);
    cr_assert_eq(gdml_wire_bytes(GDML_FRAME_MAX, false), GDML_FRAME_MAX + 9);
    /* CURVE adds 33 bytes to the body before the short/long choice. */
    cr_assert_eq(gdml_wire_bytes(0, true), 35);
    cr_assert_eq(gdml_wire_bytes(222, true), 257);
    cr_assert_eq(gdml_wire_bytes(223, true), 265);
}

Test(transport, plain_header_only_round_trip_and_reply)
{
    gdml_transport *t = transport_new();
    char ep[256];
    gdml_link *srv = bind_on(t, NULL, ep, sizeof ep);
    gdml_link *cli = connect_to(t, ep, NULL);
    cr_assert_not(gdml_link_curve(srv));
    cr_assert_not(gdml_link_curve(cli));
    char cep[256];
    cr_assert_eq(gdml_link_endpoint(cli, cep, sizeof cep), GDML_OK);
    cr_assert_str_eq(cep, ep);
    cr_assert_eq(gdml_link_endpoint(srv, cep, 5), GDML_ERR_INVALID);

    gdml_blob *hello = header_frame(GDML_MSG_HELLO, "us-east", 7);
    size_t hello_len = frame_len(hello);
    send_ok(cli, NULL, hello);
    gdml_rx rx;
    recv_ok(srv, &rx);
    cr_assert_str_eq(rx.name, "us-east", "on a plain link the name is 'from'");
    cr_assert_not(rx.authenticated);
    cr_assert_eq(rx.header.type, GDML_MSG_HELLO);
    cr_assert_eq(rx.header.seq, 7);
    cr_assert_str_eq(rx.header.sender, "us-east");
    cr_assert_eq(rx.header.plen, 0);
    cr_assert_gt(rx.peer.len, 0);
    cr_assert_eq(rx.wire_bytes, gdml_wire_bytes(hello_len, false));
    cr_assert_eq(rx.reason, GDML_REASON_NONE);
    gdml_peer peer = rx.peer;
    gdml_rx_release(&rx);
    gdml_rx_release(&rx); /* twice is harmless */

    gdml_blob *welcome = header_frame(GDML_MSG_WELCOME, "coordinator", 1);
    size_t welcome_len = frame_len(welcome);
    send_ok(srv, &peer, welcome);
    recv_ok(cli, &rx);
    cr_assert_eq(rx.peer.len, 0, "a DEALER has no peer id");
    cr_assert_str_eq(rx.name, "coordinator");
    cr_assert_eq(rx.header.type, GDML_MSG_WELCOME);
    cr_assert_eq(rx.wire_bytes, gdml_wire_bytes(welcome_len, false));
    gdml_rx_release(&rx);

    gdml_link_stats cs = stats_of(cli), ss = stats_of(srv);
    cr_assert_eq(cs.bytes_sent, gdml_wire_bytes(hello_len, false));
    cr_assert_eq(ss.bytes_received, gdml_wire_bytes(hello_len, false));
    cr_assert_eq(ss.bytes_sent, gdml_wire_bytes(welcome_len, false));
    cr_assert_eq(cs.bytes_received, gdml_wire_bytes(welcome_len, false));
    cr_assert_eq(cs.frames_sent, 1);
    cr_assert_eq(cs.frames_received, 1);
    cr_assert_eq(ss.frames_sent, 1);
    cr_assert_eq(ss.frames_received, 1);
    cr_assert_eq(cs.frames_rejected + ss.frames_rejected + cs.frames_queued + ss.frames_queued, 0);
    cr_assert_eq(ss.peers_dropped + ss.backlog_cutoffs + ss.auth_refused, 0);

    /* The caller kept its references: the frames can be sent again. */
    send_ok(cli, NULL, hello);
    recv_ok(srv, &rx);
    cr_assert(gdml_peer_eq(&rx.peer, &peer), "one connection keeps its peer id");
    gdml_rx_release(&rx);
    gdml_blob_unref(&hello);
    gdml_blob_unref(&welcome);
    gdml_link_close(&cli);
    gdml_link_close(&srv);
    cr_assert_null(srv);
    gdml_transport_destroy(&t);
    cr_assert_null(t);
}

Test(transport, plain_round_trip_with_payloads)
{
    gdml_transport *t = transport_new();
    char ep[256];
    gdml_link *srv = bind_on(t, NULL, ep, sizeof ep);
    gdml_link *cli = connect_to(t, ep, NULL);
    gdml_peer peer = greet(srv, cli, "w0");
    uint64_t c_sent = stats_of(cli).bytes_sent, s_recv = stats_of(srv).bytes_received;
    uint64_t s_sent = 0, c_recv = 0;
    const size_t sizes[] = {1, 200, 100000, GDML_MSG_PAYLOAD_MAX};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        gdml_blob *f = payload_frame("w0", 10 + i, n, (unsigned)i);
        size_t len = frame_len(f);
        cr_assert_leq(len, GDML_FRAME_MAX);
        send_take(cli, NULL, f);
        gdml_rx rx;
        recv_ok(srv, &rx);
        cr_assert_str_eq(rx.name, "w0");
        cr_assert_eq(rx.header.seq, 10 + i);
        cr_assert_eq(rx.header.plen, n);
        cr_assert_eq(rx.header.encoding, GDML_ENC_CODEC);
        cr_assert_eq(rx.wire_bytes, gdml_wire_bytes(len, false));
        for (size_t j = 0; j < n; j++)
            if (rx.payload[j] != pattern(j, (unsigned)i))
                cr_assert_fail("payload byte %zu of %zu differs", j, n);
        gdml_rx_release(&rx);
        c_sent += gdml_wire_bytes(len, false);
        s_recv += gdml_wire_bytes(len, false);

        /* And back to the peer it came from. */
        f = payload_frame("srv", 20 + i, n, (unsigned)i + 7);
        len = frame_len(f);
        send_take(srv, &peer, f);
        recv_ok(cli, &rx);
        cr_assert_str_eq(rx.name, "srv");
        cr_assert_eq(rx.header.plen, n);
        for (size_t j = 0; j < n; j++)
            if (rx.payload[j] != pattern(j, (unsigned)i + 7))
                cr_assert_fail("reply byte %zu of %zu differs", j, n);
        gdml_rx_release(&rx);
        s_sent += gdml_wire_bytes(len, false);
        c_recv += gdml_wire_bytes(len, false);
    }
    gdml_link_stats cs = stats_of(cli), ss = stats_of(srv);
    cr_assert_eq(cs.bytes_sent, c_sent);
    cr_assert_eq(ss.bytes_received, s_recv);
    cr_assert_eq(ss.bytes_sent, s_sent);
    cr_assert_eq(cs.bytes_received, c_recv);
    cr_assert_eq(ss.frames_received, 5);
    cr_assert_eq(cs.frames_received, 4);
    gdml_link_close(&cli);
    gdml_link_close(&srv);
    gdml_transport_destroy(&t);
}

Test(transport, one_sealed_frame_goes_to_many_peers)
{
    gdml_transport *t = transport_new();
    char ep[256];
    gdml_link *srv = bind_on(t, NULL, ep, sizeof ep);
    gdml_link *a = connect_to(t, ep, NULL), *b = connect_to(t, ep, NULL);
    gdml_peer pa = greet(srv, a, "a"), pb = greet(srv, b, "b");
    cr_assert_not(gdml_peer_eq(&pa, &pb));
    gdml_blob *f = payload_frame("srv", 3, 5000, 9);
    send_ok(srv, &pa, f);
    send_ok(srv, &pb, f);
    gdml_blob_unref(&f); /* the links hold their own references */
    gdml_link *both[] = {a, b};
    for (int i = 0; i < 2; i++) {
        gdml_rx rx;
        recv_ok(both[i], &rx);
        cr_assert_eq(rx.header.plen, 5000);
        for (size_t j = 0; j < 5000; j++)
            cr_assert_eq(rx.payload[j], pattern(j, 9));
        gdml_rx_release(&rx);
    }
    gdml_link_close(&a);
    gdml_link_close(&b);
    gdml_link_close(&srv);
    gdml_transport_destroy(&t);
}

Test(transport, plain_link_refuses_an_empty_or_invalid_from)
{
    gdml_transport *t = transport_new();
    char ep[256];
    gdml_link *srv = bind_on(t, NULL, ep, sizeof ep);
    gdml_link *cli = connect_to(t, ep, NULL);
    gdml_peer peer = greet(srv, cli, "w0");
    const char *bad[] = {"", "has space", "a/b", "semi;colon"};
    uint64_t want_bytes = stats_of(srv).bytes_received;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gdml_blob *f = header_frame(GDML_MSG_HEARTBEAT, bad[i], 2);
        want_bytes += gdml_wire_bytes(frame_len(f), false);
        send_take(cli, NULL, f);
        gdml_errmsg e;
        gdml_rx rx = recv_refused(srv, GDML_ERR_PROTO, GDML_REASON_MALFORMED, &e);
        cr_assert(strstr(e.text, "'from'"), "'%s': %s", bad[i], e.text);
        cr_assert(gdml_peer_eq(&rx.peer, &peer), "the refusal names the connection");
    }
    gdml_link_stats ss = stats_of(srv);
    cr_assert_eq(ss.frames_rejected, 4);
    cr_assert_eq(ss.frames_received, 1);
    cr_assert_eq(ss.bytes_received, want_bytes, "refused frames are counted too");
    /* A DEALER refuses them as well. */
    send_take(srv, &peer, header_frame(GDML_MSG_MODEL, "", 1));
    gdml_errmsg e;
    recv_refused(cli, GDML_ERR_PROTO, GDML_REASON_MALFORMED, &e);
    /* And the link still works. */
    send_take(cli, NULL, header_frame(GDML_MSG_HEARTBEAT, "w0", 3));
    gdml_rx rx;
    recv_ok(srv, &rx);
    cr_assert_eq(rx.header.seq, 3);
    gdml_rx_release(&rx);
    gdml_link_close(&cli);
    gdml_link_close(&srv);
    gdml_transport_destroy(&t);
}

Test(transport, garbage_frames_are_malformed_and_the_link_keeps_working)
{
    gdml_transport *t = transport_new();
    char ep[256];
    gdml_link *srv = bind_on(t, NULL, ep, sizeof ep);
    gdml_link *cli = connect_to(t, ep, NULL);
    gdml_peer peer = greet(srv, cli, "w0");

    gdml_blob *good = header_frame(GDML_MSG_HEARTBEAT, "w0", 5);
    size_t glen;
    const uint8_t *gbytes = frame_bytes(good, &glen);
    uint8_t trailing[GDML_MSG_HEADER_MAX + 3];
    memcpy(trailing, gbytes, glen);
    memset(trailing + glen, 0xee, 3);
    static const uint8_t hello[] = "hello";
    static const uint8_t never_used[] = {0xc1};
    static const uint8_t huge_map[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t array[] = {0x93, 1, 2, 3};
    static const uint8_t no_proto[] = {0x81, 0xa4, 't', 'y', 'p', 'e', 0x01};
    static uint8_t zeros[4096];
    const struct {
        const void *data;
        size_t len;
    } junk[] = {
        {hello, 5},         {hello, 0},    {never_used, 1},      {huge_map, sizeof huge_map},
        {array, 4},         {no_proto, 7}, {trailing, glen + 3}, {zeros, sizeof zeros},
        {gbytes, glen - 1},
    };
    size_t n = sizeof junk / sizeof junk[0];
    uint64_t before = stats_of(srv).bytes_received, want = before;
    for (size_t i = 0; i < n; i++) {
        const void *frames[] = {junk[i].data};
        size_t sizes[] = {junk[i].len};
        cr_assert_eq(gdml_link_send_raw(cli, NULL, frames, sizes, 1), GDML_OK);
        want += gdml_wire_bytes(junk[i].len, false);
        gdml_errmsg e;
        gdml_rx rx = recv_refused(srv, GDML_ERR_PROTO, GDML_REASON_MALFORMED, &e);
        cr_assert(gdml_peer_eq(&rx.peer, &peer));
        cr_assert_eq(rx.wire_bytes, gdml_wire_bytes(junk[i].len, false), "junk %zu", i);
        cr_assert_eq(strncmp(e.text, "from ", 5), 0, "the message names the peer: %s", e.text);
    }
    gdml_link_stats ss = stats_of(srv);
    cr_assert_eq(ss.frames_rejected, n);
    cr_assert_eq(ss.bytes_received, want);

    /* Garbage the other way. */
    const void *frames[] = {hello};
    size_t sizes[] = {5};
    cr_assert_eq(gdml_link_send_raw(srv, &peer, frames, sizes, 1), GDML_OK);
    gdml_errmsg e;
    recv_refused(cli, GDML_ERR_PROTO, GDML_REASON_MALFORMED, &e);
    cr_assert_eq(strncmp(e.text, "from ", 5), 0, "%s", e.text);
    cr_assert_eq(stats_of(cli).frames_rejected, 1);

    /* Both directions still work. */
    send_ok(cli, NULL, good);
    gdml_rx rx;
    recv_ok(srv, &rx);
    cr_assert_eq(rx.header.seq, 5);
    gdml_rx_release(&rx);
    send_take(srv, &peer, header_frame(GDML_MSG_HEARTBEAT, "srv", 6));
    recv_ok(cli, &rx);
    cr_assert_eq(rx.header.seq, 6);
    gdml_rx_release(&rx);
    gdml_blob_unref(&good);
    gdml_link_close(&cli);
    gdml_link_close(&srv);
    gdml_transport_destroy(&t);
}

Test(transport, multipart_messages_are_refused_and_the_link_stays_in_step)
{
    gdml_transport *t = transport_new();
    char ep[256];
    gdml_link *srv = bind_on(t, NULL, ep, sizeof ep);
    gdml_link *cli = connect_to(t, ep, NULL);
    gdml_peer peer = greet(srv, cli, "w0");
    gdml_blob *a = header_frame(GDML_MSG_HEARTBEAT, "w0", 2);
    gdml_blob *b = payload_frame("w0", 3, 300, 1);
    size_t la, lb;
    const void *da = frame_bytes(a, &la), *db = frame_bytes(b, &lb);

    const void *two[] = {da, db};
    size_t two_sizes[] = {la, lb};
    cr_assert_eq(gdml_link_send_raw(cli, NULL, two, two_sizes, 2), GDML_OK);
    gdml_errmsg e;
    gdml_rx rx = recv_refused(srv, GDML_ERR_PROTO, GDML_REASON_MULTIPART, &e);
    cr_assert_eq(rx.wire_bytes, gdml_wire_bytes(la, false) + gdml_wire_bytes(lb, false));
    cr_assert(strstr(e.text, "several frames"), "%s", e.text);

    const void *three[] = {da, da, db};
    size_t three_sizes[] = {la, la, lb};
    cr_assert_eq(gdml_link_send_raw(cli, NULL, three, three_sizes, 3), GDML_OK);
    rx = recv_refused(srv, GDML_ERR_PROTO, GDML_REASON_MULTIPART, &e);
    cr_assert_eq(rx.wire_bytes, 2 * gdml_wire_bytes(la, false) + gdml_wire_bytes(lb, false));

    /* The rest of each message was read: the next frame is a whole one. */
    send_ok(cli, NULL, a);
    recv_ok(srv, &rx);
    cr_assert_eq(rx.header.seq, 2);
    gdml_rx_release(&rx);
    expect_nothing(srv, 200);
    gdml_link_stats ss = stats_of(srv);
    cr_assert_eq(ss.frames_rejected, 2);
    cr_assert_eq(ss.frames_received, 2);

    /* A DEALER refuses multipart messages too. */
    cr_assert_eq(gdml_link_send_raw(srv, &peer, two, two_sizes, 2), GDML_OK);
    recv_refused(cli, GDML_ERR_PROTO, GDML_REASON_MULTIPART, &e);
    send_take(srv, &peer, header_frame(GDML_MSG_HEARTBEAT, "srv", 9));
    recv_ok(cli, &rx);
    cr_assert_eq(rx.header.seq, 9);
    gdml_rx_release(&rx);

    gdml_blob_unref(&a);
    gdml_blob_unref(&b);
    gdml_link_close(&cli);
    gdml_link_close(&srv);
    gdml_transport_destroy(&t);
}

/* A protocol-1 HELLO, written by hand: {"proto":1,"type":1,"from":"w0","seq":1}. */
static const uint8_t v1_hello[] = {0x84, 0xa5, 'p', 'r', 'o',  't',  'o', 0x01, 0xa4,
                                   't',  'y',  'p', 'e', 0x01, 0xa4, 'f', 'r',  'o',
                                   'm',  0xa2, 'w', '0', 0xa3, 's',  'e', 'q',  0x01};

static bool contains(const void *hay, size_t n, const void *needle, size_t m)
{
    for (size_t i = 0; i + m <= n; i++)
        if (memcmp((const uint8_t *)hay + i, needle, m) == 0)
            return true;
    return false;
}

Test(transport, protocol_1_is_refused_with_an_error_protocol_1_can_read)
{
    gdml_transport *t = transport_new();
    char ep[256];
    gdml_link *srv = bind_on(t, NULL, ep, sizeof ep);
    gdml_link *cli = connect_to(t, ep, NULL);

    /* A raw ZeroMQ DEALER reads the answer as bytes: a v1 map, type 8 (ERROR). */
    gdml_errmsg e;
    void *ctx = zmq_ctx_new();
    void *raw = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0, timeout = WAIT_MS;
    zmq_setsockopt(raw, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(raw, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    cr_assert_eq(zmq_connect(raw, ep), 0);
    cr_assert_eq(zmq_send(raw, v1_hello, sizeof v1_hello, 0), (int)sizeof v1_hello);
    recv_refused(srv, GDML_ERR_VERSION, GDML_REASON_VERSION, &e);
    cr_assert(strstr(e.text, "protocol version 1"), "%s", e.text);
    uint8_t buf[1024];
    int n = zmq_recv(raw, buf, sizeof buf, 0);
    cr_assert_gt(n, 0, "no refusal came back: %s", zmq_strerror(zmq_errno()));
    cr_assert_eq(buf[0] & 0xf0, 0x80, "a msgpack map");
    cr_assert(contains(buf, (size_t)n, "\xa5proto\x01", 7), "proto 1");
    cr_assert(contains(buf, (size_t)n, "\xa4type\x08", 6), "type 8, ERROR in protocol 1");
    cr_assert(contains(buf, (size_t)n, "upgrade", 7), "the text says what to do");
    int more = 0;
    size_t more_len = sizeof more;
    zmq_getsockopt(raw, ZMQ_RCVMORE, &more, &more_len);
    cr_assert_eq(more, 0, "the refusal is one frame");

    /* Another version is refused but not answered: only protocol 1 is told. */
    uint8_t v3[sizeof v1_hello];
    memcpy(v3, v1_hello, sizeof v3);
    v3[7] = 3;
    cr_assert_eq(zmq_send(raw, v3, sizeof v3, 0), (int)sizeof v3);
    recv_refused(srv, GDML_ERR_VERSION, GDML_REASON_VERSION, &e);
    cr_assert(strstr(e.text, "protocol version 3"), "%s", e.text);
    timeout = 300;
    zmq_setsockopt(raw, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    cr_assert_eq(zmq_recv(raw, buf, sizeof buf, 0), -1, "a version-3 peer got an answer");
    zmq_close(raw);
    zmq_ctx_term(ctx);

    /* Through the transport: the DEALER refuses the answer as version 1 too. */
    const void *frames[] = {v1_hello};
    size_t sizes[] = {sizeof v1_hello};
    cr_assert_eq(gdml_link_send_raw(cli, NULL, frames, sizes, 1), GDML_OK);
    recv_refused(srv, GDML_ERR_VERSION, GDML_REASON_VERSION, &e);
    recv_refused(cli, GDML_ERR_VERSION, GDML_REASON_VERSION, &e);
    cr_assert(strstr(e.text, "protocol version 1"), "%s", e.text);
    cr_assert_eq(stats_of(srv).frames_rejected, 3);
    gdml_link_close(&cli);
    gdml_link_close(&srv);
    gdml_transport_destroy(&t);
}

/* Two gdml peers must not answer each other's protocol-1 refusals forever. */
Test(transport, a_protocol_1_refusal_is_not_answered_with_another)
{
    gdml_transport *t = transport_new();
    char ep[256];
    gdml_link *srv = bind_on(t, NULL, ep, sizeof ep);
    gdml_link *cli = connect_to(t, ep, NULL);
    const void *frames[] = {v1_hello};
    size_t sizes[] = {sizeof v1_hello};
    cr_assert_eq(gdml_link_send_raw(cli, NULL, frames, sizes, 1), GDML_OK);
    gdml_errmsg e;
    recv_refused(srv, GDML_ERR_VERSION, GDML_REASON_VERSION, &e); /* answers the HELLO */
    recv_refused(cli, GDML_ERR_VERSION, GDML_REASON_VERSION, &e); /* reads the ERROR */
    gdml_rx rx;
    memset(&e, 0, sizeof e);
    gdml_err err = recv_within(srv, &rx, 500, &e);
    cr_assert_eq(err, GDML_ERR_AGAIN,
                 "the DEALER answered the protocol-1 ERROR with another one (%s: %s); two gdml "
                 "peers would bounce refusals forever",
                 gdml_strerror(err), e.text);
    gdml_link_close(&cli);
    gdml_link_close(&srv);
    gdml_transport_destroy(&t);
}

/* The ROUTER's owner thread in the hostile protocol-1 test. */
typedef struct v1_server {
    gdml_link *srv;
    atomic_bool stop;
    atomic_llong beat_ms; /* last time a recv call returned */
    atomic_llong refused;
} v1_server;

static void *v1_server_main(void *arg)
{
    v1_server *s = arg;
    while (!atomic_load(&s->stop)) {
        bool ready;
        gdml_link_poll(&s->srv, 1, 20, &ready);
        gdml_rx rx;
        gdml_err err;
        while ((err = gdml_link_recv(s->srv, &rx, NULL)) != GDML_ERR_AGAIN) {
            atomic_store(&s->beat_ms, gdml_now_ms());
            if (err == GDML_ERR_VERSION)
                atomic_fetch_add(&s->refused, 1);
            gdml_rx_release(&rx);
            if (atomic_load(&s->stop))
                break;
        }
        atomic_store(&s->beat_ms, gdml_now_ms());
    }
    return NULL;
}

/*
 * A peer that sends protocol-1 frames and never reads what comes back must
 * not be able to stop the ROUTER: sends never block, refusals included.
 */
Test(transport, a_protocol_1_peer_that_never_reads_cannot_block_the_router, .timeout = 30)
{
    gdml_transport *t = transport_new();
    char ep[256];
    static v1_server s;
    s.srv = bind_on(t, NULL, ep, sizeof ep);
    atomic_init(&s.stop, false);
    atomic_init(&s.beat_ms, gdml_now_ms());
    atomic_init(&s.refused, 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, v1_server_main, &s), 0);

    void *ctx = zmq_ctx_new();
    void *raw = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0, rcvhwm = 1, rcvbuf = 4096, sndhwm = 0;
    zmq_setsockopt(raw, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(raw, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm);
    zmq_setsockopt(raw, ZMQ_RCVBUF, &rcvbuf, sizeof rcvbuf);
    zmq_setsockopt(raw, ZMQ_SNDHWM, &sndhwm, sizeof sndhwm);
    cr_assert_eq(zmq_connect(raw, ep), 0);
    int64_t end = gdml_now_ms() + 4000;
    long sent = 0;
    int64_t worst_stall = 0;
    while (gdml_now_ms() < end) {
        if (zmq_send(raw, v1_hello, sizeof v1_hello, ZMQ_DONTWAIT) > 0)
            sent++;
        else
            usleep(100);
        int64_t stall = gdml_now_ms() - atomic_load(&s.beat_ms);
        if (stall > worst_stall)
            worst_stall = stall;
    }
    /* Give the ROUTER thread a last chance to come back. */
    for (int i = 0; i < 20 && gdml_now_ms() - atomic_load(&s.beat_ms) > 500; i++)
        usleep(100000);
    int64_t stall = gdml_now_ms() - atomic_load(&s.beat_ms);
    long long refused = atomic_load(&s.refused);
    cr_assert_gt(refused, 0, "no protocol-1 frame was refused");
    cr_assert_lt(stall, 1500,
                 "the ROUTER thread has been stuck for %lld ms in gdml_link_recv after refusing "
                 "%lld of %ld protocol-1 frames: its refusal is a blocking send to a peer that "
                 "does not read",
                 (long long)stall, refused, sent);
    cr_assert_lt(worst_stall, 1500, "the ROUTER thread stalled for %lld ms",
                 (long long)worst_stall);
    atomic_store(&s.stop, true);
    pthread_join(th, NULL);
    zmq_close(raw);
    zmq_ctx_term(ctx);
    gdml_link_close(&s.srv);
    gdml_transport_destroy(&t);
}

Test(transport, send_to_an_unknown_peer_is_notfound_and_a_router_needs_a_peer)
{
    gdml_transport *t = transport_new();
    char ep[256];
    gdml_link *srv = bind_on(t, NULL, ep, sizeof ep);
    gdml_blob *f = header_frame(GDML_MSG_HEARTBEAT, "srv", 1);
    gdml_peer nobody = {.id = {0, 'x', 'y'}, .len = 3};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_link_send(srv, &nobody, f, &e), GDML_ERR_NOTFOUND);
    cr_assert(strstr(e.text, "not connected"), "%s", e.text);
    cr_assert(strstr(e.text, "\\x00xy"), "the peer is named, escaped: %s", e.text);
    cr_assert_eq(gdml_link_send(srv, NULL, f, &e), GDML_ERR_INVALID);
    gdml_peer empty = {.len = 0};
    cr_assert_eq(gdml_link_send(srv, &empty, f, &e), GDML_ERR_INVALID);
    cr_assert_eq(stats_of(srv).frames_queued, 0, "a failed send queues nothing");
    cr_assert_eq(gdml_link_flush(srv, gdml_now_ms()), -1, "nothing waits");
    gdml_blob_unref(&f);
    gdml_link_close(&srv);
    gdml_transport_destroy(&t);
}

Test(transport, bind_errors_say_why)
{
    gdml_transport *t = transport_new();
    gdml_link *l = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_link_bind(t, "tcp://no-such-host.invalid:1", NULL, &l, &e),
                 GDML_ERR_TRANSPORT);
    cr_assert(strstr(e.text, "no-such-host.invalid"), "%s", e.text);
    cr_assert_null(l);
    cr_assert_eq(gdml_link_bind(t, "bogus://x", NULL, &l, &e), GDML_ERR_TRANSPORT);
    char ep[256];
    gdml_link *first = bind_on(t, NULL, ep, sizeof ep);
    memset(&e, 0, sizeof e);
    cr_assert_eq(gdml_link_bind(t, ep, NULL, &l, &e), GDML_ERR_TRANSPORT, "bound twice");
    cr_assert(strstr(e.text, ep), "%s", e.text);
    gdml_link_close(&first);
    gdml_link_close(&l); /* NULL-safe */
    gdml_link_close(NULL);
    gdml_transport_destroy(&t);
    gdml_transport_destroy(&t);
    gdml_transport_destroy(NULL);
}

Test(transport, poll_times_out_and_reports_the_ready_link)
{
    gdml_transport *t = transport_new();
    char ep[256];
    gdml_link *srv = bind_on(t, NULL, ep, sizeof ep);
    gdml_link *cli = connect_to(t, ep, NULL);
    gdml_link *links[] = {srv, cli};
    bool ready[2] = {true, true};
    int64_t t0 = gdml_now_ms();
    cr_assert_eq(gdml_link_poll(links, 2, 100, ready), GDML_ERR_AGAIN);
    cr_assert_geq(gdml_now_ms() - t0, 90);
    cr_assert_not(ready[0] || ready[1]);
    gdml_rx rx;
    cr_assert_eq(gdml_link_recv(srv, &rx, NULL), GDML_ERR_AGAIN);
    send_take(cli, NULL, header_frame(GDML_MSG_HELLO, "w0", 1));
    cr_assert_eq(gdml_link_poll(links, 2, WAIT_MS, ready), GDML_OK);
    cr_assert(ready[0]);
    cr_assert_not(ready[1]);
    recv_ok(srv, &rx);
    gdml_rx_release(&rx);
    gdml_link_close(&cli);
    gdml_link_close(&srv);
    gdml_transport_destroy(&t);
}

Test(transport, peer_str_escapes_bytes)
{
    gdml_peer p = {.id = {0x00, 'a', '\\', 0x7f, 0xff, ' ', '~'}, .len = 7};
    char buf[64];
    cr_assert_str_eq(gdml_peer_str(&p, buf, sizeof buf), "\\x00a\\x5c\\x7f\\xff ~");
    gdml_peer text = {.id = {'w', '0'}, .len = 2};
    cr_assert_str_eq(gdml_peer_str(&text, buf, sizeof buf), "w0");
    /* Truncation never splits an escape and always terminates. */
    cr_assert_str_eq(gdml_peer_str(&p, buf, 4), "");
    cr_assert_str_eq(gdml_peer_str(&p, buf, 5), "\\x00");
    cr_assert_str_eq(gdml_peer_str(&p, buf, 6), "\\x00a");
    gdml_peer empty = {.len = 0};
    cr_assert_str_eq(gdml_peer_str(&empty, buf, sizeof buf), "");
    /* The longest id fits the documented worst case. */
    gdml_peer max = {.len = GDML_PEER_ID_MAX};
    memset(max.id, 0xab, sizeof max.id);
    char big[GDML_PEER_ID_MAX * 4 + 1];
    cr_assert_eq(strlen(gdml_peer_str(&max, big, sizeof big)), GDML_PEER_ID_MAX * 4);
    cr_assert(gdml_peer_eq(&p, &p));
    cr_assert_not(gdml_peer_eq(&p, &text));
    gdml_peer prefix = {.id = {0x00, 'a'}, .len = 2};
    cr_assert_not(gdml_peer_eq(&p, &prefix));
}

/* ---- CURVE ---- */

typedef struct curve_env {
    gdml_transport *t;
    gdml_curve_key srv_key, cli_key;
    gdml_curve_allow *allow;
    gdml_link *srv;
    char ep[256];
} curve_env;

static gdml_curve_key keypair(const char *name)
{
    gdml_curve_key k;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_curve_keypair(name, &k, &e), GDML_OK, "%s", e.text);
    return k;
}

/* A CURVE server "srv" allowing the client key under "w0". */
static void curve_open(curve_env *c)
{
    memset(c, 0, sizeof *c);
    c->t = transport_new();
    c->srv_key = keypair("srv");
    c->cli_key = keypair("w0");
    cr_assert_eq(gdml_curve_allow_new(&c->allow), GDML_OK);
    cr_assert_eq(gdml_curve_allow_add(c->allow, "w0", c->cli_key.public_key, NULL), GDML_OK);
    gdml_link_options o = {.key = &c->srv_key, .allow = c->allow};
    c->srv = bind_on(c->t, &o, c->ep, sizeof c->ep);
    cr_assert(gdml_link_curve(c->srv));
}

static gdml_link *curve_client(curve_env *c, const gdml_curve_key *key, const uint8_t *server_key)
{
    gdml_link_options o = {.key = key,
                           .server_key = server_key ? server_key : c->srv_key.public_key,
                           .server_name = "srv"};
    gdml_link *l = connect_to(c->t, c->ep, &o);
    cr_assert(gdml_link_curve(l));
    return l;
}

static void curve_close(curve_env *c)
{
    gdml_link_close(&c->srv);
    gdml_curve_allow_unref(&c->allow);
    gdml_transport_destroy(&c->t);
}

Test(transport, curve_round_trip_names_peers_by_their_keys)
{
    curve_env c;
    curve_open(&c);
    gdml_link *cli = curve_client(&c, &c.cli_key, NULL);

    gdml_blob *f = payload_frame("w0", 1, 1000, 3);
    size_t len = frame_len(f);
    send_take(cli, NULL, f);
    gdml_rx rx;
    recv_ok(c.srv, &rx);
    cr_assert(rx.authenticated);
    cr_assert_str_eq(rx.name, "w0");
    cr_assert_eq(rx.header.plen, 1000);
    for (size_t j = 0; j < 1000; j++)
        cr_assert_eq(rx.payload[j], pattern(j, 3));
    cr_assert_eq(rx.wire_bytes, gdml_wire_bytes(len, true));
    gdml_peer peer = rx.peer;
    gdml_rx_release(&rx);

    /* An empty 'from' is fine: the key says who it is. */
    gdml_blob *anon = header_frame(GDML_MSG_HEARTBEAT, "", 2);
    size_t alen = frame_len(anon);
    send_take(cli, NULL, anon);
    recv_ok(c.srv, &rx);
    cr_assert(rx.authenticated);
    cr_assert_str_eq(rx.name, "w0");
    gdml_rx_release(&rx);

    /* The server's frames arrive named after server_name. */
    gdml_blob *r = header_frame(GDML_MSG_WELCOME, "srv", 1);
    size_t rlen = frame_len(r);
    send_take(c.srv, &peer, r);
    recv_ok(cli, &rx);
    cr_assert(rx.authenticated);
    cr_assert_str_eq(rx.name, "srv");
    cr_assert_eq(rx.wire_bytes, gdml_wire_bytes(rlen, true));
    gdml_rx_release(&rx);

    gdml_link_stats cs = stats_of(cli), ss = stats_of(c.srv);
    uint64_t up = gdml_wire_bytes(len, true) + gdml_wire_bytes(alen, true);
    cr_assert_eq(cs.bytes_sent, up);
    cr_assert_eq(ss.bytes_received, up);
    cr_assert_eq(ss.bytes_sent, gdml_wire_bytes(rlen, true));
    cr_assert_eq(cs.bytes_received, gdml_wire_bytes(rlen, true));
    cr_assert_eq(ss.auth_refused, 0);
    gdml_link_close(&cli);
    curve_close(&c);
}

Test(transport, curve_from_that_is_not_the_key_name_is_identity)
{
    curve_env c;
    curve_open(&c);
    gdml_link *cli = curve_client(&c, &c.cli_key, NULL);
    gdml_peer peer = greet(c.srv, cli, "w0");
    send_take(cli, NULL, header_frame(GDML_MSG_PUSH, "w1", 2));
    gdml_errmsg e;
    gdml_rx rx = recv_refused(c.srv, GDML_ERR_PROTO, GDML_REASON_IDENTITY, &e);
    cr_assert_str_eq(rx.name, "w0", "the refusal carries the authenticated name");
    cr_assert(strstr(e.text, "'w1'") && strstr(e.text, "'w0'"), "%s", e.text);
    cr_assert_eq(stats_of(c.srv).frames_rejected, 1);

    /* A server frame whose 'from' is not server_name is refused by the DEALER. */
    send_take(c.srv, &peer, header_frame(GDML_MSG_MODEL, "impostor", 1));
    recv_refused(cli, GDML_ERR_PROTO, GDML_REASON_IDENTITY, &e);
    cr_assert(strstr(e.text, "impostor"), "%s", e.text);

    /* The right name still goes through. */
    send_take(cli, NULL, header_frame(GDML_MSG_PUSH, "w0", 3));
    recv_ok(c.srv, &rx);
    cr_assert_eq(rx.header.seq, 3);
    gdml_rx_release(&rx);
    gdml_link_close(&cli);
    curve_close(&c);
}

Test(transport, curve_client_whose_key_is_not_allowed_gets_nothing_through)
{
    curve_env c;
    curve_open(&c);
    gdml_curve_key stranger = keypair("w0"); /* claims an allowed name, with another key */
    gdml_link *bad = curve_client(&c, &stranger, NULL);
    send_take(bad, NULL, header_frame(GDML_MSG_HELLO, "w0", 1));
    expect_nothing(c.srv, QUIET_MS);
    gdml_link_stats ss = stats_of(c.srv);
    cr_assert_gt(ss.auth_refused, 0);
    cr_assert_eq(ss.frames_received + ss.frames_rejected + ss.bytes_received, 0);
    expect_nothing(bad, 200);
    cr_assert_eq(stats_of(bad).bytes_received, 0);

    /* An allowed client of the same server is served meanwhile. */
    gdml_link *good = curve_client(&c, &c.cli_key, NULL);
    gdml_peer peer = greet(c.srv, good, "w0");
    send_take(c.srv, &peer, header_frame(GDML_MSG_WELCOME, "srv", 1));
    gdml_rx rx;
    recv_ok(good, &rx);
    gdml_rx_release(&rx);
    expect_nothing(bad, 200);
    gdml_link_close(&bad);
    gdml_link_close(&good);
    curve_close(&c);
}

/* Connections a raw socket's monitor has reported as made, so far. */
static int count_connected(void *monitor, int *connected)
{
    zmq_msg_t m;
    for (;;) {
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, monitor, ZMQ_DONTWAIT) == -1) {
            zmq_msg_close(&m);
            return *connected;
        }
        uint16_t event = 0;
        if (zmq_msg_size(&m) == 6)
            memcpy(&event, zmq_msg_data(&m), 2);
        bool more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        if (more) { /* the endpoint frame */
            zmq_msg_init(&m);
            zmq_msg_recv(&m, monitor, 0);
            zmq_msg_close(&m);
        }
        if (event == ZMQ_EVENT_CONNECTED)
            (*connected)++;
    }
}

Test(transport, one_refused_handshake_counts_once)
{
    curve_env c;
    curve_open(&c);
    /* A raw ZeroMQ client that tries once and never reconnects; its monitor
     * says how many connections it made. */
    gdml_curve_key stranger = keypair("x");
    void *ctx = zmq_ctx_new();
    void *raw = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0, no_reconnect = -1;
    zmq_setsockopt(raw, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(raw, ZMQ_RECONNECT_IVL, &no_reconnect, sizeof no_reconnect);
    zmq_setsockopt(raw, ZMQ_CURVE_SERVERKEY, c.srv_key.public_key, GDML_CURVE_KEY_BYTES);
    zmq_setsockopt(raw, ZMQ_CURVE_PUBLICKEY, stranger.public_key, GDML_CURVE_KEY_BYTES);
    zmq_setsockopt(raw, ZMQ_CURVE_SECRETKEY, stranger.secret_key, GDML_CURVE_KEY_BYTES);
    cr_assert_eq(zmq_socket_monitor(raw, "inproc://raw-monitor", ZMQ_EVENT_CONNECTED), 0);
    void *monitor = zmq_socket(ctx, ZMQ_PAIR);
    zmq_setsockopt(monitor, ZMQ_LINGER, &linger, sizeof linger);
    cr_assert_eq(zmq_connect(monitor, "inproc://raw-monitor"), 0);
    cr_assert_eq(zmq_connect(raw, c.ep), 0);
    int connected = 0;
    int64_t end = gdml_now_ms() + 3000;
    while (stats_of(c.srv).auth_refused == 0 && gdml_now_ms() < end)
        usleep(10000);
    usleep(500000); /* let any later count arrive */
    count_connected(monitor, &connected);
    cr_assert_eq(connected, 1, "the raw client connected %d times", connected);
    cr_assert_eq(stats_of(c.srv).auth_refused, 1,
                 "one handshake refused by the allow-list is counted %llu times",
                 (unsigned long long)stats_of(c.srv).auth_refused);
    zmq_close(monitor);
    zmq_close(raw);
    zmq_ctx_term(ctx);
    curve_close(&c);
}

Test(transport, curve_client_with_the_wrong_server_key_gets_nothing)
{
    curve_env c;
    curve_open(&c);
    gdml_curve_key other = keypair("srv");
    gdml_link *cli = curve_client(&c, &c.cli_key, other.public_key);
    send_take(cli, NULL, header_frame(GDML_MSG_HELLO, "w0", 1));
    expect_nothing(c.srv, QUIET_MS);
    expect_nothing(cli, 100);
    gdml_link_stats ss = stats_of(c.srv);
    cr_assert_eq(ss.frames_received + ss.frames_rejected + ss.bytes_received, 0);
    cr_assert_gt(ss.auth_refused + stats_of(cli).auth_refused, 0,
                 "the failed handshakes are counted");
    gdml_link_close(&cli);
    curve_close(&c);
}

Test(transport, plain_client_of_a_curve_server_gets_nothing)
{
    curve_env c;
    curve_open(&c);
    gdml_link *cli = connect_to(c.t, c.ep, NULL);
    send_take(cli, NULL, header_frame(GDML_MSG_HELLO, "w0", 1));
    expect_nothing(c.srv, QUIET_MS);
    cr_assert_eq(stats_of(c.srv).bytes_received, 0);
    gdml_link_close(&cli);
    curve_close(&c);
}

Test(transport, curve_options_are_checked)
{
    gdml_transport *t = transport_new();
    gdml_curve_key k = keypair("srv");
    gdml_link *l = NULL;
    gdml_errmsg e = {{0}};
    gdml_link_options no_allow = {.key = &k};
    cr_assert_eq(gdml_link_bind(t, ANY, &no_allow, &l, &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "allow-list"), "%s", e.text);
    gdml_link_options no_server = {.key = &k, .server_name = "srv"};
    cr_assert_eq(gdml_link_connect(t, "tcp://127.0.0.1:9", &no_server, &l, &e), GDML_ERR_INVALID);
    gdml_link_options bad_name = {.key = &k, .server_key = k.public_key, .server_name = "a b"};
    cr_assert_eq(gdml_link_connect(t, "tcp://127.0.0.1:9", &bad_name, &l, &e), GDML_ERR_INVALID);
    cr_assert_null(l);
    gdml_transport_destroy(&t);
}

Test(transport, allow_replace_rotates_keys_for_new_connections)
{
    curve_env c;
    curve_open(&c);
    gdml_curve_key next = keypair("w0");

    /* The new key is not allowed yet. */
    gdml_link *early = curve_client(&c, &next, NULL);
    send_take(early, NULL, header_frame(GDML_MSG_HELLO, "w0", 1));
    expect_nothing(c.srv, 700);
    gdml_link_close(&early);

    /* Established with the old key. */
    gdml_link *old_conn = curve_client(&c, &c.cli_key, NULL);
    greet(c.srv, old_conn, "w0");

    /* Allow both keys under w0: a new connection with the new key works. */
    gdml_curve_allow *both = NULL;
    cr_assert_eq(gdml_curve_allow_new(&both), GDML_OK);
    cr_assert_eq(gdml_curve_allow_add(both, "w0", c.cli_key.public_key, NULL), GDML_OK);
    cr_assert_eq(gdml_curve_allow_add(both, "w0", next.public_key, NULL), GDML_OK);
    cr_assert_eq(gdml_curve_allow_replace(c.allow, both), GDML_OK);
    gdml_link *new_conn = curve_client(&c, &next, NULL);
    send_take(new_conn, NULL, header_frame(GDML_MSG_HELLO, "w0", 2));
    gdml_rx rx;
    recv_ok(c.srv, &rx);
    cr_assert(rx.authenticated);
    cr_assert_str_eq(rx.name, "w0");
    cr_assert_eq(rx.header.seq, 2);
    gdml_rx_release(&rx);

    /* Retire the old key: the authenticated connection keeps working ... */
    gdml_curve_allow *only_next = NULL;
    cr_assert_eq(gdml_curve_allow_new(&only_next), GDML_OK);
    cr_assert_eq(gdml_curve_allow_add(only_next, "w0", next.public_key, NULL), GDML_OK);
    cr_assert_eq(gdml_curve_allow_replace(c.allow, only_next), GDML_OK);
    send_take(old_conn, NULL, header_frame(GDML_MSG_HEARTBEAT, "w0", 3));
    recv_ok(c.srv, &rx);
    cr_assert_eq(rx.header.seq, 3);
    gdml_rx_release(&rx);
    /* ... but a new connection with it is refused. */
    gdml_link *retired = curve_client(&c, &c.cli_key, NULL);
    send_take(retired, NULL, header_frame(GDML_MSG_HELLO, "w0", 4));
    expect_nothing(c.srv, 700);

    gdml_link_close(&retired);
    gdml_link_close(&new_conn);
    gdml_link_close(&old_conn);
    gdml_curve_allow_unref(&both);
    gdml_curve_allow_unref(&only_next);
    curve_close(&c);
}

Test(transport, closed_curve_servers_can_be_bound_again)
{
    gdml_transport *t = transport_new();
    gdml_curve_key k = keypair("srv");
    gdml_curve_allow *allow = NULL;
    cr_assert_eq(gdml_curve_allow_new(&allow), GDML_OK);
    gdml_link_options o = {.key = &k, .allow = allow};
    /* One at a time: a program that rebinds its link must not run out. */
    for (int i = 0; i < 12; i++) {
        gdml_link *l = NULL;
        gdml_errmsg e = {{0}};
        gdml_err err = gdml_link_bind(t, ANY, &o, &l, &e);
        cr_assert_eq(err, GDML_OK, "bind %d after %d closed: %s", i + 1, i, e.text);
        gdml_link_close(&l);
    }
    gdml_curve_allow_unref(&allow);
    gdml_transport_destroy(&t);
}

/* ---- sends that never block ---- */

Test(transport, sends_never_block_and_a_peer_that_stops_reading_is_dropped, .timeout = 30)
{
    gdml_transport *t = transport_new();
    char ep[256];
    gdml_link_options o = {.drop_after_ms = 300};
    gdml_link *srv = bind_on(t, &o, ep, sizeof ep);
    gdml_link *slow = connect_to(t, ep, NULL), *fast = connect_to(t, ep, NULL);
    gdml_peer ps = greet(srv, slow, "slow"), pf = greet(srv, fast, "fast");

    gdml_blob *big = payload_frame("srv", 1, 64 << 10, 5);
    enum { N = 3000, FAST_EVERY = 100 };
    int fast_sent = 0, fast_got = 0;
    int64_t t0 = gdml_now_ms();
    for (int i = 0; i < N; i++) {
        send_ok(srv, &ps, big);
        if (i % FAST_EVERY == 0) {
            send_take(srv, &pf, header_frame(GDML_MSG_HEARTBEAT, "srv", (uint64_t)i + 1));
            fast_sent++;
        }
    }
    int64_t took = gdml_now_ms() - t0;
    cr_assert_lt(took, 1000, "%d sends took %lld ms", N, (long long)took);
    gdml_link_stats ss = stats_of(srv);
    cr_assert_gt(ss.frames_queued, 0, "a peer that does not read has frames in its outbox");
    cr_assert_lt(ss.frames_queued, (uint64_t)N);
    cr_assert_gt(gdml_link_flush(srv, gdml_now_ms()), 0, "flush asks to run again");

    /* Flush until the slow peer is dropped; the fast one is served meanwhile. */
    gdml_peer gone;
    bool dropped = false;
    int64_t dropped_at = 0, end = gdml_now_ms() + 5000;
    while (!dropped && gdml_now_ms() < end) {
        gdml_link_flush(srv, gdml_now_ms());
        if (gdml_link_next_dropped(srv, &gone)) {
            dropped = true;
            dropped_at = gdml_now_ms();
            break;
        }
        gdml_rx rx;
        while (gdml_link_recv(fast, &rx, NULL) == GDML_OK) {
            fast_got++;
            gdml_rx_release(&rx);
        }
        bool ready;
        gdml_link_poll(&fast, 1, 5, &ready);
    }
    cr_assert(dropped, "the peer that stopped reading was not dropped");
    cr_assert(gdml_peer_eq(&gone, &ps), "the dropped peer is the slow one");
    cr_assert_geq(dropped_at - t0, 290, "dropped after %lld ms, before drop_after_ms",
                  (long long)(dropped_at - t0));
    cr_assert_eq(fast_got, fast_sent, "the fast peer got %d of %d frames before the drop", fast_got,
                 fast_sent);
    cr_assert_not(gdml_link_next_dropped(srv, &gone), "reported once");
    ss = stats_of(srv);
    cr_assert_eq(ss.peers_dropped, 1);
    cr_assert_eq(ss.frames_queued, 0, "the dropped peer's outbox is gone");
    cr_assert_eq(gdml_link_flush(srv, gdml_now_ms()), -1);

    /* The fast peer keeps receiving. */
    for (int i = 0; i < 10; i++)
        send_ok(srv, &pf, big);
    for (int i = 0; i < 10; i++) {
        gdml_rx rx;
        recv_ok(fast, &rx);
        cr_assert_eq(rx.header.plen, 64 << 10);
        gdml_rx_release(&rx);
    }
    /* The slow peer's connection was closed: its old id is gone. */
    gdml_err err = GDML_OK;
    end = gdml_now_ms() + 3000;
    while ((err = gdml_link_send(srv, &ps, big, NULL)) != GDML_ERR_NOTFOUND &&
           gdml_now_ms() < end) {
        gdml_link_flush(srv, gdml_now_ms());
        drain(srv, 20); /* ZeroMQ sees a closed connection on the input side */
    }
    cr_assert_eq(err, GDML_ERR_NOTFOUND, "the dropped peer is still connected");
    gdml_blob_unref(&big);
    gdml_link_close(&slow);
    gdml_link_close(&fast);
    gdml_link_close(&srv);
    gdml_transport_destroy(&t);
}

Test(transport, a_full_router_outbox_says_again)
{
    gdml_transport *t = transport_new();
    char ep[256];
    gdml_link *srv = bind_on(t, NULL, ep, sizeof ep);
    gdml_link *slow = connect_to(t, ep, NULL);
    gdml_peer ps = greet(srv, slow, "slow");
    gdml_blob *big = payload_frame("srv", 1, 64 << 10, 5);
    int first_again = -1;
    int64_t t0 = gdml_now_ms();
    for (int i = 0; i < 80000 && first_again < 0; i++) {
        gdml_errmsg e = {{0}};
        gdml_err err = gdml_link_send(srv, &ps, big, &e);
        if (err == GDML_ERR_AGAIN) {
            first_again = i;
            cr_assert(strstr(e.text, "frames waiting"), "%s", e.text);
        } else {
            cr_assert_eq(err, GDML_OK, "%s", e.text);
        }
    }
    cr_assert_lt(gdml_now_ms() - t0, 3000, "sending never blocks");
    cr_assert_geq(first_again, 65536, "AGAIN only once the outbox is full");
    gdml_link_stats ss = stats_of(srv);
    cr_assert_eq(ss.frames_queued, 65536);
    cr_assert_eq(gdml_link_send(srv, &ps, big, NULL), GDML_ERR_AGAIN);
    cr_assert_eq(stats_of(srv).frames_queued, 65536, "the refused frame was not queued");
    gdml_blob_unref(&big);
    gdml_link_close(&slow);
    gdml_link_close(&srv);
    gdml_transport_destroy(&t);
}

Test(transport, a_dealer_never_blocks_and_bounds_its_outbox)
{
    gdml_transport *t = transport_new();
    char ep[256];
    gdml_link *srv = bind_on(t, NULL, ep, sizeof ep); /* never reads below */
    gdml_link *cli = connect_to(t, ep, NULL);
    gdml_blob *big = payload_frame("w0", 1, 64 << 10, 5);
    int64_t t0 = gdml_now_ms();
    for (int i = 0; i < 70000; i++)
        send_ok(cli, NULL, big);
    cr_assert_lt(gdml_now_ms() - t0, 3000, "sending never blocks");
    gdml_link_stats cs = stats_of(cli);
    cr_assert_eq(cs.frames_queued, 65536, "the outbox holds its bound, the oldest went");
    cr_assert_gt(gdml_link_flush(cli, gdml_now_ms() + 100000), 0,
                 "a DEALER never drops its server");
    cr_assert_eq(stats_of(cli).peers_dropped, 0);
    gdml_blob_unref(&big);
    gdml_link_close(&cli);
    gdml_link_close(&srv);
    gdml_transport_destroy(&t);
}

Test(transport, disconnect_closes_a_peer_and_discards_its_outbox)
{
    gdml_transport *t = transport_new();
    char ep[256];
    gdml_link *srv = bind_on(t, NULL, ep, sizeof ep);
    gdml_link *cli = connect_to(t, ep, NULL);
    gdml_peer p = greet(srv, cli, "w0");
    cr_assert_not(gdml_link_reconnected(cli), "its first connection is not a reconnect");
    gdml_blob *big = payload_frame("srv", 1, 64 << 10, 5);
    for (int i = 0; i < 3000; i++)
        send_ok(srv, &p, big);
    cr_assert_gt(stats_of(srv).frames_queued, 0);
    gdml_link_disconnect(srv, &p);
    cr_assert_eq(stats_of(srv).frames_queued, 0);
    gdml_peer unknown = {.id = {1, 2, 3}, .len = 3};
    gdml_link_disconnect(srv, &unknown); /* harmless */

    gdml_err err = GDML_OK;
    int64_t end = gdml_now_ms() + 3000;
    while ((err = gdml_link_send(srv, &p, big, NULL)) != GDML_ERR_NOTFOUND && gdml_now_ms() < end) {
        gdml_link_disconnect(srv, &p); /* drop what a send queued meanwhile */
        drain(srv, 20);                /* ZeroMQ sees a closed connection on the input side */
    }
    cr_assert_eq(err, GDML_ERR_NOTFOUND, "the peer is still connected");
    /* Frames ZeroMQ had taken may still arrive; then the DEALER reconnects
     * on its own and comes back as a new peer. */
    gdml_rx rx;
    while (recv_within(cli, &rx, 300, NULL) != GDML_ERR_AGAIN)
        gdml_rx_release(&rx);
    gdml_peer again = greet(srv, cli, "w0");
    cr_assert_not(gdml_peer_eq(&again, &p), "a reconnected peer has a new id");
    /* The connecting side is told, once (the guard sees the connect a moment later). */
    bool told = false;
    for (int64_t until = gdml_now_ms() + 3000; !told && gdml_now_ms() < until; usleep(10 * 1000))
        told = gdml_link_reconnected(cli);
    cr_assert(told, "the DEALER's reconnect was not reported");
    cr_assert_not(gdml_link_reconnected(cli), "a reconnect is reported once");
    send_take(srv, &again, header_frame(GDML_MSG_WELCOME, "srv", 1));
    recv_ok(cli, &rx);
    cr_assert_eq(rx.header.type, GDML_MSG_WELCOME);
    gdml_rx_release(&rx);
    gdml_blob_unref(&big);
    gdml_link_close(&cli);
    gdml_link_close(&srv);
    gdml_transport_destroy(&t);
}

/* ---- memory bounds against raw TCP peers ---- */

Test(transport, backlog_guard_cuts_off_an_unfinished_multipart_flood, .timeout = 30)
{
    gdml_transport *t = transport_new();
    char ep[256];
    const uint64_t max_backlog = GDML_LINK_MIN_BACKLOG;
    gdml_link_options o = {.max_backlog = max_backlog};
    gdml_link *srv = bind_on(t, &o, ep, sizeof ep);

    const size_t body = (size_t)1 << 20;
    uint8_t *frame = malloc(9 + body);
    cr_assert_not_null(frame);
    long_frame_header(frame, true, body);
    memset(frame + 9, 0x41, body);
    int fd = tcp_connect(ep);
    zmtp_handshake(fd);

    uint64_t rss0 = rss_bytes(), peak = rss0, sent = 0;
    bool cut = false;
    size_t off = 0;
    int64_t end = gdml_now_ms() + 8000;
    while (!cut && gdml_now_ms() < end) {
        ssize_t w = send(fd, frame + off, 9 + body - off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                cut = wait_closed(fd, 1);
                continue;
            }
            cut = true; /* EPIPE, ECONNRESET */
            break;
        }
        sent += (uint64_t)w;
        off = (off + (size_t)w) % (9 + body);
        uint64_t now = rss_bytes();
        if (now > peak)
            peak = now;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 0) > 0) {
            uint8_t buf[4096];
            ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            if (r == 0 || (r < 0 && errno != EAGAIN))
                cut = true;
        }
    }
    cr_assert(cut, "the connection was not cut off after %llu bytes", (unsigned long long)sent);
    /* The guard cuts below max_backlog (at three quarters of it, so that what
     * arrives between two of its looks still fits), never early. */
    cr_assert_gt(sent, max_backlog / 2, "cut off after only %llu bytes", (unsigned long long)sent);
    end = gdml_now_ms() + 2000;
    while (stats_of(srv).backlog_cutoffs == 0 && gdml_now_ms() < end)
        usleep(10000);
    cr_assert_geq(stats_of(srv).backlog_cutoffs, 1);
    uint64_t grew = peak > rss0 ? peak - rss0 : 0;
    cr_assert_lt(grew, max_backlog + ((uint64_t)48 << 20), "RSS grew by %llu MiB",
                 (unsigned long long)(grew >> 20));
    close(fd);
    free(frame);
    expect_nothing(srv, 200);

    /* The ROUTER still serves a normal DEALER. */
    gdml_link *cli = connect_to(t, ep, NULL);
    gdml_peer p = greet(srv, cli, "w0");
    send_take(srv, &p, header_frame(GDML_MSG_WELCOME, "srv", 1));
    gdml_rx rx;
    recv_ok(cli, &rx);
    gdml_rx_release(&rx);
    cr_assert_eq(stats_of(srv).backlog_cutoffs, 1, "the normal peer was not cut off");
    gdml_link_close(&cli);
    gdml_link_close(&srv);
    gdml_transport_destroy(&t);
}

Test(transport, a_frame_above_the_limit_drops_the_connection)
{
    gdml_transport *t = transport_new();
    char ep[256];
    gdml_link *srv = bind_on(t, NULL, ep, sizeof ep);

    /* Exactly GDML_FRAME_MAX is delivered (and refused as garbage). */
    int fd = tcp_connect(ep);
    zmtp_handshake(fd);
    uint8_t *body = calloc(1, GDML_FRAME_MAX);
    cr_assert_not_null(body);
    uint8_t hdr[9];
    long_frame_header(hdr, false, GDML_FRAME_MAX);
    send_all(fd, hdr, sizeof hdr);
    send_all(fd, body, GDML_FRAME_MAX);
    gdml_errmsg e;
    gdml_rx rx = recv_refused(srv, GDML_ERR_PROTO, GDML_REASON_MALFORMED, &e);
    cr_assert_eq(rx.wire_bytes, gdml_wire_bytes(GDML_FRAME_MAX, false));
    cr_assert_not(wait_closed(fd, 200), "a frame at the limit closed the connection");

    /* One byte more: ZeroMQ closes the connection as soon as it reads the size. */
    long_frame_header(hdr, false, (uint64_t)GDML_FRAME_MAX + 1);
    send_all(fd, hdr, sizeof hdr);
    send(fd, body, 4096, MSG_NOSIGNAL);
    cr_assert(wait_closed(fd, WAIT_MS), "the connection stayed open");
    expect_nothing(srv, 300);
    close(fd);

    /* A huge announced size, on a fresh connection: the same. */
    fd = tcp_connect(ep);
    zmtp_handshake(fd);
    long_frame_header(hdr, false, (uint64_t)1 << 40);
    send_all(fd, hdr, sizeof hdr);
    cr_assert(wait_closed(fd, WAIT_MS), "the connection stayed open");
    close(fd);
    free(body);
    expect_nothing(srv, 200);
    cr_assert_eq(stats_of(srv).frames_rejected, 1);

    gdml_link *cli = connect_to(t, ep, NULL);
    greet(srv, cli, "w0");
    gdml_link_close(&cli);
    gdml_link_close(&srv);
    gdml_transport_destroy(&t);
}

/*
 * A reader that is busy for a while must not be taken for an attack: a
 * legitimate peer sending full-size frames stays below the backlog bound,
 * whatever bound the configuration accepts. Returns the frames received.
 */
static int busy_reader(uint64_t max_backlog, uint64_t *cutoffs)
{
    gdml_transport *t = transport_new();
    char ep[256];
    gdml_link_options o = {.max_backlog = max_backlog};
    gdml_link *srv = bind_on(t, &o, ep, sizeof ep);
    gdml_link *cli = connect_to(t, ep, NULL);
    greet(srv, cli, "w0");
    gdml_blob *f = payload_frame("w0", 2, GDML_MSG_PAYLOAD_MAX, 1);
    enum { N = 40 };
    for (int i = 0; i < N; i++)
        send_ok(cli, NULL, f);
    /* Busy: nothing read for a second while the DEALER pushes. */
    int64_t end = gdml_now_ms() + 1000;
    while (gdml_now_ms() < end) {
        gdml_link_flush(cli, gdml_now_ms());
        usleep(5000);
    }
    int got = 0;
    end = gdml_now_ms() + 5000;
    while (got < N && gdml_now_ms() < end && stats_of(srv).backlog_cutoffs == 0) {
        gdml_link_flush(cli, gdml_now_ms());
        gdml_rx rx;
        if (recv_within(srv, &rx, 20, NULL) == GDML_OK) {
            got++;
            gdml_rx_release(&rx);
        }
    }
    *cutoffs = stats_of(srv).backlog_cutoffs;
    gdml_blob_unref(&f);
    gdml_link_close(&cli);
    gdml_link_close(&srv);
    gdml_transport_destroy(&t);
    return got;
}

Test(transport, a_busy_reader_does_not_cut_off_a_legitimate_peer, .timeout = 30)
{
    uint64_t cutoffs = 0;
    int got = busy_reader(0, &cutoffs); /* the default bound */
    cr_assert_eq(cutoffs, 0, "a legitimate peer was cut off");
    cr_assert_eq(got, 40);
}

/* net.max_peer_bytes accepts 8 MiB (config_keys.c); a link bound so must still work. */
Test(transport, the_smallest_configured_backlog_bound_keeps_legitimate_peers, .timeout = 30)
{
    uint64_t cutoffs = 0;
    int got = busy_reader(GDML_LINK_MIN_BACKLOG, &cutoffs);
    cr_assert_eq(cutoffs, 0,
                 "with max_backlog 32 MiB a legitimate peer sending full-size frames to a reader "
                 "busy for 1 s was cut off after %d of 40 frames",
                 got);
    cr_assert_eq(got, 40);
}
