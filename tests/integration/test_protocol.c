/*
 * test_protocol.c - real processes over loopback TCP, with faults injected:
 * malformed messages from an intruder (garbage, wrong protocol version,
 * truncated header, sizes that do not match the payload, missing frames) are
 * rejected with a log line naming the peer while the job goes on; a worker
 * killed mid-run makes the job fail with errors naming who went silent
 * instead of hanging; a worker killed and started again rejoins and the job
 * finishes; a region the coordinator did not expect is refused.
 */
#define _GNU_SOURCE /* memmem */
#include "../support.h"

#include "msg.h"
#include "store.h"
#include "transport.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct proc {
    pid_t pid;
    char log[4200];
} proc;

static void start(proc *p, const char *dir, const char *log_name, char **argv)
{
    snprintf(p->log, sizeof p->log, "%s/%s", dir, log_name);
    p->pid = gdml_test_spawn(argv, p->log);
}

static char *start_coordinator(proc *p, const char *dir, const char *regions, const char *rounds,
                               const char *timeout_ms)
{
    char *path = gdml_test_program("gdml-coordinator");
    char store[4200], ep[4200];
    snprintf(store, sizeof store, "%s/store", dir);
    snprintf(ep, sizeof ep, "%s/coordinator.ep", dir);
    start(p, dir, "coordinator.log",
          (char *[]){path, "--listen", "tcp://127.0.0.1:*", "--store", store, "--regions",
                     (char *)regions, "--rounds", (char *)rounds, "--timeout-ms",
                     (char *)timeout_ms, "--endpoint-file", ep, NULL});
    free(path);
    char *endpoint = gdml_test_wait_file(ep, 15);
    cr_assert_not_null(endpoint, "the coordinator did not start; see %s", p->log);
    return endpoint;
}

static char *start_server(proc *p, const char *dir, const char *name, const char *coordinator,
                          const char *workers, const char *timeout_ms)
{
    char *path = gdml_test_program("gdml-server");
    char ep[4200], log[256];
    snprintf(ep, sizeof ep, "%s/%s.ep", dir, name);
    snprintf(log, sizeof log, "server-%s.log", name);
    start(p, dir, log,
          (char *[]){path, "--name", (char *)name, "--listen", "tcp://127.0.0.1:*", "--coordinator",
                     (char *)coordinator, "--workers", (char *)workers, "--sync-every", "5",
                     "--timeout-ms", (char *)timeout_ms, "--endpoint-file", ep, NULL});
    free(path);
    char *endpoint = gdml_test_wait_file(ep, 15);
    cr_assert_not_null(endpoint, "server %s did not start; see %s", name, p->log);
    return endpoint;
}

static void start_worker(proc *p, const char *dir, const char *name, const char *server,
                         const char *index, const char *count)
{
    char *path = gdml_test_program("gdml-worker");
    char images[512], labels[512], log[256];
    snprintf(images, sizeof images, "%s", gdml_test_fashion("t10k-images-idx3-ubyte.gz"));
    snprintf(labels, sizeof labels, "%s", gdml_test_fashion("t10k-labels-idx1-ubyte.gz"));
    snprintf(log, sizeof log, "worker-%s.log", name);
    start(p, dir, log,
          (char *[]){path, "--name", (char *)name, "--server", (char *)server, "--images", images,
                     "--labels", labels, "--shard-index", (char *)index, "--shard-count",
                     (char *)count, "--timeout-ms", "20000", NULL});
    free(path);
}

/* Sends five kinds of malformed message from a DEALER named `identity`. */
static void inject_faults(const char *endpoint, const char *identity)
{
    gdml_transport *t;
    gdml_link *l;
    cr_assert_eq(gdml_transport_new(&t, NULL), GDML_OK);
    cr_assert_eq(gdml_link_connect(t, endpoint, identity, &l, NULL), GDML_OK);

    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_PUSH, identity);
    h.seq = 1;
    h.count = 1;
    h.encoding = GDML_ENC_DENSE_F32;
    h.n_payloads = 1;
    h.sizes[0] = 400;
    uint8_t good[GDML_MSG_HEADER_MAX];
    size_t len;
    cr_assert_eq(gdml_msg_encode(&h, good, sizeof good, &len), GDML_OK);
    uint8_t payload[8] = {0};

    /* 1. garbage where the header should be */
    const char garbage[] = "\xc1\xff this is not msgpack";
    cr_assert_eq(
        gdml_link_send_raw(l, NULL, (const void *[]){garbage}, (size_t[]){sizeof garbage}, 1),
        GDML_OK);
    /* 2. a header cut in half */
    cr_assert_eq(gdml_link_send_raw(l, NULL, (const void *[]){good}, (size_t[]){len / 2}, 1),
                 GDML_OK);
    /* 3. a header that says 400 payload bytes, followed by 8 */
    cr_assert_eq(gdml_link_send_raw(l, NULL, (const void *[]){good, payload},
                                    (size_t[]){len, sizeof payload}, 2),
                 GDML_OK);
    /* 4. a header that announces a payload frame that never comes */
    cr_assert_eq(gdml_link_send_raw(l, NULL, (const void *[]){good}, (size_t[]){len}, 1), GDML_OK);
    /* 5. another protocol version: patch the value that follows the "proto" key */
    uint8_t other[GDML_MSG_HEADER_MAX];
    memcpy(other, good, len);
    uint8_t *key = memmem(other, len, "proto", 5);
    cr_assert_not_null(key, "encoded header has no 'proto' key");
    cr_assert_eq(key[5], GDML_PROTO_VERSION, "proto is not encoded as a fixint after its key");
    key[5] = 99;
    cr_assert_eq(gdml_link_send_raw(l, NULL, (const void *[]){other, payload},
                                    (size_t[]){len, sizeof payload}, 2),
                 GDML_OK);
    usleep(300 * 1000); /* let ZeroMQ deliver before the socket closes */
    gdml_link_close(&l);
    gdml_transport_destroy(&t);
}

static int count_lines_with(const char *text, const char *a, const char *b)
{
    int n = 0;
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[2048];
        snprintf(buf, sizeof buf, "%.*s", (int)(len < sizeof buf ? len : sizeof buf - 1), line);
        if (strstr(buf, a) && strstr(buf, b))
            n++;
        line = end ? end + 1 : NULL;
    }
    return n;
}

Test(protocol, malformed_messages_are_rejected_and_the_job_goes_on, .timeout = 120)
{
    if (!gdml_test_have_fashion_mnist())
        cr_skip_test("dataset-fashion-mnist is not installed");
    char *dir = gdml_test_tmpdir();
    proc coord, server, worker;
    char *coord_ep = start_coordinator(&coord, dir, "1", "2", "20000");
    inject_faults(coord_ep, "intruder-wan");
    char *server_ep = start_server(&server, dir, "r1", coord_ep, "1", "20000");
    inject_faults(server_ep, "intruder-lan");
    start_worker(&worker, dir, "r1.w0", server_ep, "0", "1");

    cr_assert_eq(gdml_test_wait(coord.pid, 60), 0, "coordinator failed; see %s", coord.log);
    cr_assert_eq(gdml_test_wait(server.pid, 30), 0, "server failed; see %s", server.log);
    cr_assert_eq(gdml_test_wait(worker.pid, 30), 0, "worker failed; see %s", worker.log);

    char *log = gdml_test_read_file(coord.log);
    int rejected = count_lines_with(log, "rejected", "intruder-wan");
    cr_assert_eq(rejected, 5, "coordinator logged %d of 5 rejections naming the peer:\n%s",
                 rejected, log);
    cr_assert(count_lines_with(log, "intruder-wan", "version 99"), "no version line:\n%s", log);
    free(log);
    log = gdml_test_read_file(server.log);
    rejected = count_lines_with(log, "rejected", "intruder-lan");
    cr_assert_eq(rejected, 5, "server logged %d of 5 rejections naming the peer:\n%s", rejected,
                 log);
    free(log);

    /* Both rounds were committed despite the intruders. */
    char store_dir[4200];
    snprintf(store_dir, sizeof store_dir, "%s/store", dir);
    gdml_store *s;
    uint64_t count = 0;
    cr_assert_eq(gdml_store_open(store_dir, true, &s, NULL), GDML_OK);
    cr_assert_eq(gdml_store_count(s, &count), GDML_OK);
    cr_assert_eq(count, 2);
    gdml_store_close(&s);
    free(coord_ep);
    free(server_ep);
    gdml_test_rmtree(dir);
}

Test(protocol, a_killed_worker_fails_the_job_with_names_not_a_hang, .timeout = 120)
{
    if (!gdml_test_have_fashion_mnist())
        cr_skip_test("dataset-fashion-mnist is not installed");
    char *dir = gdml_test_tmpdir();
    proc coord, server, w0, w1;
    char *coord_ep = start_coordinator(&coord, dir, "1", "100000", "3000");
    char *server_ep = start_server(&server, dir, "r1", coord_ep, "2", "1500");
    start_worker(&w0, dir, "r1.w0", server_ep, "0", "2");
    start_worker(&w1, dir, "r1.w1", server_ep, "1", "2");

    /* Wait until training is under way, then kill one worker outright. */
    cr_assert(gdml_test_wait_for_text(coord.log, "version 2 committed", 30),
              "training did not get under way; see %s", coord.log);
    kill(w1.pid, SIGKILL);
    gdml_test_wait(w1.pid, 5);

    int rc = gdml_test_wait(server.pid, 20);
    cr_assert_eq(rc, 3, "server should time out (status 3), got %d; see %s", rc, server.log);
    char *log = gdml_test_read_file(server.log);
    cr_assert(strstr(log, "no gradient for step") && strstr(log, "'r1.w1'"),
              "server's error does not name the silent worker:\n%s", log);
    free(log);
    rc = gdml_test_wait(w0.pid, 20);
    cr_assert_eq(rc, 0, "the surviving worker should be told to stop; got %d, see %s", rc, w0.log);
    rc = gdml_test_wait(coord.pid, 20);
    cr_assert_eq(rc, 3, "coordinator should time out (status 3), got %d", rc);
    log = gdml_test_read_file(coord.log);
    cr_assert(strstr(log, "no delta for version") && strstr(log, "'r1'"),
              "coordinator's error does not name the silent region:\n%s", log);
    free(log);
    free(coord_ep);
    free(server_ep);
    gdml_test_rmtree(dir);
}

Test(protocol, an_unexpected_region_is_refused_with_a_reason, .timeout = 60)
{
    char *dir = gdml_test_tmpdir();
    proc coord, a, b;
    /* Long timeouts: this test stops both with SIGTERM and expects status 130. */
    char *coord_ep = start_coordinator(&coord, dir, "1", "5", "30000");
    char *a_ep = start_server(&a, dir, "a", coord_ep, "1", "30000");
    usleep(500 * 1000); /* let 'a' join first */
    char *b_ep = start_server(&b, dir, "b", coord_ep, "1", "3000");
    int rc = gdml_test_wait(b.pid, 20);
    cr_assert_eq(rc, 1, "the extra region should fail (status 1), got %d; see %s", rc, b.log);
    char *log = gdml_test_read_file(b.log);
    cr_assert(strstr(log, "refused") && strstr(log, "expects 1 regions"), "got:\n%s", log);
    free(log);
    kill(coord.pid, SIGTERM);
    kill(a.pid, SIGTERM);
    cr_assert_eq(gdml_test_wait(coord.pid, 10), 130, "SIGTERM should stop the coordinator");
    gdml_test_wait(a.pid, 10);
    free(coord_ep);
    free(a_ep);
    free(b_ep);
    gdml_test_rmtree(dir);
}

Test(protocol, a_restarted_worker_rejoins_and_the_job_finishes, .timeout = 120)
{
    if (!gdml_test_have_fashion_mnist())
        cr_skip_test("dataset-fashion-mnist is not installed");
    char *dir = gdml_test_tmpdir();
    proc coord, server, w0, w1, again;
    char *coord_ep = start_coordinator(&coord, dir, "1", "12", "20000");
    char *server_ep = start_server(&server, dir, "r1", coord_ep, "2", "20000");
    start_worker(&w0, dir, "r1.w0", server_ep, "0", "2");
    start_worker(&w1, dir, "r1.w1", server_ep, "1", "2");
    cr_assert(gdml_test_wait_for_text(coord.log, "version 2 committed", 30),
              "training did not get under way; see %s", coord.log);
    kill(w1.pid, SIGKILL);
    gdml_test_wait(w1.pid, 5);
    /* The same worker, started again: it must get the live model and go on. */
    start_worker(&again, dir, "r1.w1", server_ep, "1", "2");
    cr_assert_eq(gdml_test_wait(coord.pid, 60), 0, "coordinator failed; see %s", coord.log);
    cr_assert_eq(gdml_test_wait(server.pid, 30), 0, "server failed; see %s", server.log);
    cr_assert_eq(gdml_test_wait(w0.pid, 30), 0, "w0 failed; see %s", w0.log);
    cr_assert_eq(gdml_test_wait(again.pid, 30), 0, "the restarted worker failed; see %s",
                 again.log);
    char *log = gdml_test_read_file(server.log);
    cr_assert(strstr(log, "worker 'r1.w1' joined again"), "no rejoin in:\n%s", log);
    free(log);
    free(coord_ep);
    free(server_ep);
    gdml_test_rmtree(dir);
}
