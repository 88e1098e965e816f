/*
 * test_protocol.c - real processes over loopback TCP with CURVE on, and
 * faults injected: malformed frames from a peer without a key and from one
 * with a key are dropped and counted while the job goes on; a protocol-1
 * peer is told what to do in words it can decode; a killed worker leaves
 * its region training with the rest; a restarted worker rejoins; a region
 * the coordinator does not admit is refused and says why.
 */
#define _GNU_SOURCE /* memmem */
#include "../peer_support.h"
#include "../support.h"

#include "store.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

static const char *const one_region[] = {"r1"};

static uint64_t versions_in(const tp_cluster *c)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/store", c->dir);
    gdml_store_options so = {.read_only = true};
    gdml_store *s = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_open(dir, &so, &s, &e), GDML_OK, "%s", e.text);
    uint64_t n = 0;
    cr_assert_eq(gdml_store_count(s, &n, &e), GDML_OK);
    cr_assert_eq(gdml_store_verify(s, NULL, NULL, &e), GDML_OK, "%s", e.text);
    gdml_store_close(&s);
    return n;
}

/* Five kinds of bad frame, from a peer that got through the handshake. */
static void inject(tp_peer *p)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_DELTA, p->name);
    h.seq = 1;
    uint8_t good[GDML_MSG_HEADER_MAX];
    size_t len;
    cr_assert_eq(gdml_msg_encode(&h, good, sizeof good, &len), GDML_OK);
    const char garbage[] = "\xc1\xff this is not msgpack";
    uint8_t longer[GDML_MSG_HEADER_MAX + 8];
    memcpy(longer, good, len);
    memset(longer + len, 0, 8); /* a header without payload, followed by 8 bytes */
    uint8_t other[GDML_MSG_HEADER_MAX];
    memcpy(other, good, len);
    uint8_t *key = memmem(other, len, "proto", 5);
    cr_assert_not_null(key);
    key[5] = 99;
    const void *frames[][2] = {{garbage, NULL}, {good, NULL}, {longer, NULL}, {good, good},
                               {other, NULL}};
    size_t sizes[][2] = {{sizeof garbage, 0}, {len / 2, 0}, {len + 8, 0}, {len, len}, {len, 0}};
    size_t counts[] = {1, 1, 1, 2, 1};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(gdml_link_send_raw(p->link, NULL, frames[i], sizes[i], counts[i]), GDML_OK);
    usleep(300 * 1000);
}

Test(protocol, malformed_frames_are_dropped_and_counted_and_the_job_goes_on, .timeout = 120)
{
    if (!gdml_test_have_fashion_mnist())
        cr_skip_test("dataset-fashion-mnist is not installed");
    tp_cluster c;
    tp_cluster_init(&c, true);
    tp_proc coord, server, worker;
    const char *regions[] = {"r1", "intruder"};
    tp_start_coordinator(&c, &coord, regions, 2,  NULL,
                         (const char *[]){"--regions", "1", "--rounds", "3", "--timeout-ms",
                                          "20000", NULL});
    /* With a key the coordinator admits, 'intruder' gets its frames in: all bad. */
    tp_peer keyed, keyless;
    tp_peer_connect(&keyed, &c, c.coord_ep, "intruder", "intruder", "coordinator");
    inject(&keyed);
    /* Without a key nothing gets in at all: the handshake fails first. */
    tp_peer_connect(&keyless, &c, c.coord_ep, "r1", NULL, NULL);
    tp_peer_send(&keyless, GDML_MSG_HELLO, 0, 100);
    gdml_msg_header h;
    cr_assert_not(tp_peer_recv(&keyless, 500, &h), "a peer without a key got a frame back");
    char *server_ep =
        tp_start_server(&c, &server, "r1",
                        (const char *[]){"--workers", "1", "--sync-every", "5", NULL});
    tp_start_worker(&c, &worker, "r1.w0", server_ep, 0, 1, NULL);
    cr_assert_eq(gdml_test_wait(coord.pid, 60), 0, "coordinator failed; see %s", coord.log);
    cr_assert_eq(gdml_test_wait(server.pid, 30), 0, "server failed; see %s", server.log);
    cr_assert_eq(gdml_test_wait(worker.pid, 30), 0, "worker failed; see %s", worker.log);
    cr_assert_eq(versions_in(&c), 3);
    /* The refusals name the peer, and are rate-limited: one line per reason. */
    cr_assert_geq(tp_count_lines(coord.log, "intruder", "malformed"), 1, "see %s", coord.log);
    cr_assert_geq(tp_count_lines(coord.log, "intruder", "protocol version"), 1, "see %s",
                  coord.log);
    cr_assert_geq(tp_count_lines(coord.log, "intruder", "multipart"), 1, "see %s", coord.log);
    cr_assert_lt(tp_count_lines(coord.log, "intruder", NULL), 10, "refusals flood the log: %s",
                 coord.log);
    tp_peer_close(&keyed);
    tp_peer_close(&keyless);
    free(server_ep);
    tp_cluster_fini(&c);
}

Test(protocol, a_protocol_1_peer_is_told_in_words_it_can_decode, .timeout = 60)
{
    tp_cluster c;
    tp_cluster_init(&c, false);
    tp_proc coord;
    tp_start_coordinator(&c, &coord, one_region, 1, NULL,
                         (const char *[]){"--regions", "1", "--timeout-ms", "30000", NULL});
    /* A version-1 HELLO, as gdml 0.1 wrote it: a msgpack map with proto 1. */
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER);
    cr_assert_eq(zmq_connect(s, c.coord_ep), 0);
    static const uint8_t hello[] = {0x83, 0xa5, 'p', 'r', 'o', 't', 'o', 0x01, 0xa4, 't', 'y',
                                    'p',  'e',  0x01, 0xa4, 'f', 'r', 'o', 'm',  0xa2, 'r', '1'};
    cr_assert_eq(zmq_send(s, hello, sizeof hello, 0), (int)sizeof hello);
    int timeout = 5000;
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    char reply[1024];
    int n = zmq_recv(s, reply, sizeof reply - 1, 0);
    cr_assert_gt(n, 0, "a protocol-1 peer got no answer");
    cr_assert(memmem(reply, (size_t)n, "proto", 5) && memmem(reply, (size_t)n, "upgrade", 7),
              "the answer does not tell a protocol-1 peer to upgrade");
    zmq_close(s);
    zmq_ctx_term(ctx);
    cr_assert(gdml_test_wait_for_text(coord.log, "protocol version", 5));
    kill(coord.pid, SIGTERM);
    cr_assert_eq(gdml_test_wait(coord.pid, 10), 130, "SIGTERM should stop it with status 130");
    tp_cluster_fini(&c);
}

Test(protocol, a_killed_worker_leaves_its_region_training_with_the_rest, .timeout = 120)
{
    if (!gdml_test_have_fashion_mnist())
        cr_skip_test("dataset-fashion-mnist is not installed");
    tp_cluster c;
    tp_cluster_init(&c, true);
    tp_proc coord, server, w0, w1;
    tp_start_coordinator(&c, &coord, one_region, 1, NULL,
                         (const char *[]){"--regions", "1", "--rounds", "30", NULL});
    char *server_ep = tp_start_server(
        &c, &server, "r1",
        (const char *[]){"--workers", "2", "--sync-every", "100", "--peer-timeout-ms", "1000",
                         NULL});
    tp_start_worker(&c, &w0, "r1.w0", server_ep, 0, 2, NULL);
    tp_start_worker(&c, &w1, "r1.w1", server_ep, 1, 2, NULL);
    cr_assert(gdml_test_wait_for_text(coord.log, " commit version=2 ", 30),
              "training did not get under way; see %s", coord.log);
    kill(w1.pid, SIGKILL);
    gdml_test_wait(w1.pid, 5);
    cr_assert_eq(gdml_test_wait(coord.pid, 60), 0, "coordinator failed; see %s", coord.log);
    cr_assert_eq(gdml_test_wait(server.pid, 30), 0, "server failed; see %s", server.log);
    cr_assert_eq(gdml_test_wait(w0.pid, 30), 0, "the surviving worker failed; see %s", w0.log);
    cr_assert(tp_count_lines(server.log, "worker_silent", "worker=r1.w1 "), "see %s", server.log);
    cr_assert_eq(versions_in(&c), 30);
    free(server_ep);
    tp_cluster_fini(&c);
}

Test(protocol, a_restarted_worker_rejoins_and_the_job_finishes, .timeout = 120)
{
    if (!gdml_test_have_fashion_mnist())
        cr_skip_test("dataset-fashion-mnist is not installed");
    tp_cluster c;
    tp_cluster_init(&c, true);
    tp_proc coord, server, w0, w1, again;
    tp_start_coordinator(&c, &coord, one_region, 1, NULL,
                         (const char *[]){"--regions", "1", "--rounds", "30", NULL});
    char *server_ep = tp_start_server(
        &c, &server, "r1",
        (const char *[]){"--workers", "2", "--sync-every", "100", "--peer-timeout-ms", "1000",
                         NULL});
    tp_start_worker(&c, &w0, "r1.w0", server_ep, 0, 2, NULL);
    tp_start_worker(&c, &w1, "r1.w1", server_ep, 1, 2, NULL);
    cr_assert(gdml_test_wait_for_text(coord.log, " commit version=2 ", 30),
              "training did not get under way; see %s", coord.log);
    kill(w1.pid, SIGKILL);
    gdml_test_wait(w1.pid, 5);
    tp_start_worker(&c, &again, "r1.w1", server_ep, 1, 2, NULL);
    cr_assert_eq(gdml_test_wait(coord.pid, 60), 0, "coordinator failed; see %s", coord.log);
    cr_assert_eq(gdml_test_wait(server.pid, 30), 0, "server failed; see %s", server.log);
    cr_assert_eq(gdml_test_wait(again.pid, 30), 0, "the restarted worker failed; see %s",
                 again.log);
    cr_assert(gdml_test_wait_for_text(server.log, "worker_rejoin worker=r1.w1 ", 1),
              "no rejoin in %s", server.log);
    cr_assert_eq(tp_count_lines(again.log, " stop why=", NULL), 1, "see %s", again.log);
    cr_assert_eq(tp_count_lines(again.log, " done pushes=0 ", NULL), 0,
                 "the restarted worker never trained; see %s", again.log);
    free(server_ep);
    tp_cluster_fini(&c);
}

Test(protocol, a_region_the_coordinator_does_not_admit_is_refused_and_says_why, .timeout = 60)
{
    /* Plain links: the member list decides, and the refusal reaches the region. */
    tp_cluster c;
    tp_cluster_init(&c, false);
    tp_proc coord, a, b;
    tp_start_coordinator(&c, &coord, one_region, 1, NULL,
                         (const char *[]){"--regions", "1", "--timeout-ms", "30000", NULL});
    char *b_ep = tp_start_server(
        &c, &b, "b",
        (const char *[]){"--workers", "1", "--timeout-ms", "2500", "--heartbeat-ms", "200", NULL});
    (void)a;
    /* 'b' has no workers: it never says HELLO; give it a fake worker so it joins. */
    tp_peer w;
    tp_peer_connect(&w, &c, b_ep, "b.w0", NULL, NULL);
    tp_peer_send(&w, GDML_MSG_HELLO, 0, 100);
    int rc = gdml_test_wait(b.pid, 20);
    cr_assert_eq(rc, 3, "the refused region should time out (status 3), got %d; see %s", rc,
                 b.log);
    cr_assert(tp_count_lines(b.log, "not allowed to join", "not one of the regions"),
              "the region does not say why it was refused; see %s", b.log);
    kill(coord.pid, SIGTERM);
    cr_assert_eq(gdml_test_wait(coord.pid, 10), 130);
    tp_peer_close(&w);
    free(b_ep);
    tp_cluster_fini(&c);
}

Test(protocol, a_region_with_a_key_the_coordinator_does_not_know_gets_nothing, .timeout = 60)
{
    tp_cluster c;
    tp_cluster_init(&c, true);
    tp_proc coord, b;
    tp_start_coordinator(&c, &coord, one_region, 1, NULL,
                         (const char *[]){"--regions", "1", "--timeout-ms", "30000", NULL});
    char *b_ep = tp_start_server(&c, &b, "stranger",
                                 (const char *[]){"--workers", "1", "--timeout-ms", "2500", NULL});
    tp_peer w;
    tp_peer_connect(&w, &c, b_ep, "stranger.w0", NULL, NULL);
    tp_peer_send(&w, GDML_MSG_HELLO, 0, 100);
    cr_assert_eq(gdml_test_wait(b.pid, 20), 3, "see %s", b.log);
    cr_assert(tp_count_lines(b.log, "handshake_refused", "coordinator_key"),
              "the region does not say its handshake failed; see %s", b.log);
    cr_assert(tp_count_lines(coord.log, "connection refused", "allow-list"), "see %s", coord.log);
    kill(coord.pid, SIGTERM);
    gdml_test_wait(coord.pid, 10);
    tp_peer_close(&w);
    free(b_ep);
    tp_cluster_fini(&c);
}
