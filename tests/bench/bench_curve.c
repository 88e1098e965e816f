/*
 * bench_curve.c - what CURVE costs: the same tensors moved both ways over a
 * ROUTER/DEALER link on loopback, plain and with CURVE, in one run.
 *
 *   build/tests/bench/bench_curve [MB_PER_DIRECTION] [RUNS]
 *
 * A child process is the DEALER: it sends MB of tensor chunks (dense float32
 * codec payloads, 1 MiB each, as gdml frames carry them) and receives as many
 * back. Each run times the whole exchange and the CPU time of both processes;
 * the table gives the median over RUNS of goodput (payload MB/s, both
 * directions together) and CPU seconds per GB moved, and CURVE's ratios.
 */
#define _GNU_SOURCE
#include "chunk.h"
#include "curve.h"
#include "msg.h"
#include "transport.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK_BYTES ((size_t)1 << 20)

static gdml_blob *chunk_frame(const char *from, uint64_t seq)
{
    gdml_blob *f = NULL;
    if (gdml_frame_new(CHUNK_BYTES, &f))
        exit(1);
    memset(gdml_frame_payload(f), 0x3c, CHUNK_BYTES);
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_MODEL, from);
    h.seq = seq;
    h.encoding = GDML_ENC_CODEC;
    h.total = CHUNK_BYTES / 4;
    h.chunks = 1;
    if (gdml_frame_seal(f, &h, CHUNK_BYTES))
        exit(1);
    return f;
}

static double cpu_seconds(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* Sends n frames and receives n; the loop a gdml process runs, without the protocol. */
static void exchange(gdml_link *l, const gdml_peer *peer, size_t n, gdml_blob *frame)
{
    size_t sent = 0, got = 0;
    gdml_errmsg e;
    while (got < n || sent < n) {
        while (sent < n && gdml_link_send(l, peer, frame, &e) == GDML_OK) {
            sent++;
            if (gdml_link_flush(l, gdml_now_ms()) >= 0)
                break; /* the queue is full: read for a while */
        }
        bool ready;
        gdml_link_poll(&l, 1, 1, &ready);
        gdml_rx rx;
        while (gdml_link_recv(l, &rx, &e) == GDML_OK) {
            got++;
            gdml_rx_release(&rx);
        }
        gdml_link_flush(l, gdml_now_ms());
    }
    while (gdml_link_flush(l, gdml_now_ms()) >= 0)
        usleep(1000);
}

typedef struct result {
    double seconds, cpu;
} result;

static result one_run(bool curve, size_t n)
{
    gdml_transport *t = NULL;
    gdml_errmsg e = {{0}};
    gdml_curve_key server, client;
    gdml_curve_allow *allow = NULL;
    gdml_link_options so = {0}, co = {0};
    if (curve) {
        gdml_curve_keypair("server", &server, &e);
        gdml_curve_keypair("client", &client, &e);
        gdml_curve_allow_new(&allow);
        gdml_curve_allow_add(allow, "bench", client.public_key, &e);
        so = (gdml_link_options){.key = &server, .allow = allow};
        co = (gdml_link_options){.key = &client, .server_key = server.public_key,
                                 .server_name = "server"};
    }
    if (gdml_transport_new(&t, &e))
        exit(1);
    gdml_link *l = NULL;
    if (gdml_link_bind(t, "tcp://127.0.0.1:*", &so, &l, &e)) {
        fprintf(stderr, "bench_curve: %s\n", e.text);
        exit(1);
    }
    char ep[256];
    gdml_link_endpoint(l, ep, sizeof ep);
    double cpu0 = cpu_seconds(RUSAGE_SELF) + cpu_seconds(RUSAGE_CHILDREN);
    int64_t start = gdml_now_ms();
    pid_t pid = fork();
    if (pid == 0) {
        gdml_transport *ct = NULL;
        gdml_link *cl = NULL;
        if (gdml_transport_new(&ct, &e) || gdml_link_connect(ct, ep, &co, &cl, &e))
            _exit(1);
        gdml_blob *f = chunk_frame("bench", 1);
        exchange(cl, NULL, n, f);
        gdml_blob_unref(&f);
        gdml_link_close(&cl);
        gdml_transport_destroy(&ct);
        _exit(0);
    }
    /* The parent answers: it learns the child's route from its first frame. */
    gdml_blob *f = chunk_frame("server", 2);
    gdml_peer peer = {0};
    size_t got = 0, sent = 0;
    while (got < n || sent < n) {
        bool ready;
        gdml_link_poll(&l, 1, 1, &ready);
        gdml_rx rx;
        while (gdml_link_recv(l, &rx, &e) == GDML_OK) {
            peer = rx.peer;
            got++;
            gdml_rx_release(&rx);
        }
        while (peer.len && sent < got && sent < n && gdml_link_send(l, &peer, f, &e) == GDML_OK) {
            sent++;
            if (gdml_link_flush(l, gdml_now_ms()) >= 0)
                break;
        }
        gdml_link_flush(l, gdml_now_ms());
    }
    while (gdml_link_flush(l, gdml_now_ms()) >= 0)
        usleep(1000);
    int status;
    waitpid(pid, &status, 0);
    result r = {.seconds = (double)(gdml_now_ms() - start) / 1000.0,
                .cpu = cpu_seconds(RUSAGE_SELF) + cpu_seconds(RUSAGE_CHILDREN) - cpu0};
    gdml_blob_unref(&f);
    gdml_link_close(&l);
    gdml_transport_destroy(&t);
    gdml_curve_allow_unref(&allow);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench_curve: the peer failed\n");
        exit(1);
    }
    return r;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    size_t mb = argc > 1 ? (size_t)atol(argv[1]) : 512;
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    if (mb == 0 || runs <= 0 || runs > 100) {
        fprintf(stderr, "usage: bench_curve [MB_PER_DIRECTION] [RUNS]\n");
        return 2;
    }
    size_t n = mb * ((size_t)1 << 20) / CHUNK_BYTES;
    double gbs[2][100], cpus[2][100];
    /* Plain and CURVE alternate, so that a noisy neighbour hits both alike. */
    for (int i = 0; i < runs; i++)
        for (int c = 0; c < 2; c++) {
            result r = one_run(c == 1, n);
            double moved = 2.0 * (double)n * CHUNK_BYTES / 1e6;
            gbs[c][i] = moved / r.seconds;
            cpus[c][i] = r.cpu / (moved / 1000.0);
        }
    double g[2], cpu[2];
    for (int c = 0; c < 2; c++) {
        g[c] = median(gbs[c], runs);
        cpu[c] = median(cpus[c], runs);
    }
    printf("%zu MB each way in 1 MiB chunks, median of %d runs\n", mb, runs);
    printf("%-8s %14s %18s\n", "link", "goodput MB/s", "CPU s per GB");
    printf("%-8s %14.0f %18.2f\n", "plain", g[0], cpu[0]);
    printf("%-8s %14.0f %18.2f\n", "CURVE", g[1], cpu[1]);
    printf("CURVE / plain: goodput %.2fx, CPU per byte %.2fx\n", g[1] / g[0], cpu[1] / cpu[0]);
    return 0;
}
