/*
 * bench_datapath.c - the server data path (issue 8): push+pull goodput and
 * round-trip latency of a real gdml-server with 1..8 workers, against raw
 * ZeroMQ moving the same frames between processes of the same kind, in one
 * run.
 *
 *   build/tests/bench/bench_datapath [--floats 1000,100000,10000000,100000000]
 *       [--workers 1,2,4,8] [--curve off,on] [--reps 5] [--big-reps 2]
 *       [--rep-mb 256] [--server PATH] [--quick]
 *
 * For each CURVE setting, worker count W and model size n it starts a real
 * gdml-server (softmax layout of n floats, BSP, synced never: the
 * coordinator's link stays idle, the model starts from [model] at once) and a
 * raw ZeroMQ ROUTER in a process of its own, then forks W worker processes.
 * Each worker is the real worker's data path without its gradient
 * computation: through the project's own transport, codec and chunk code it
 * joins, and for each round encodes a gradient of n floats into its chunk
 * frames, sending each as soon as it is made (gdml_codec_dense_frame), and decodes the
 * model's chunks into its model (gdml_tensor_receive) until it is whole.
 * The server does what it does for any job: checks, sums, steps and
 * broadcasts one set of frames to every worker.
 *
 * The raw path is the limit: the same workers send, over a DEALER, frames of
 * the very sizes their gdml frames had, zero-copy (zmq_msg_init_data) from
 * the gradient buffer they reuse; the raw ROUTER waits, as a BSP step does,
 * for every worker's frames, and sends each as many frames of the same
 * sizes back, zero-copy from one reused buffer; receivers close what arrives
 * without touching it. Same CURVE setting, same loopback TCP. This file is
 * the one place outside the transport module that touches ZeroMQ, because
 * measuring ZeroMQ alone is its point.
 *
 * A rep is `rounds` push+pulls back to back (as many as move about --rep-mb
 * of payload; at least one), one rep of each path, gdml first, alternating
 * in time so that a noisy neighbour hits both alike; one warm-up rep of
 * each is not reported (sizes of 1e8 floats have no warm-up and --big-reps
 * reps). Goodput counts the payload, n float32 each way per worker per
 * round, over the rep's wall time (first push sent to last model whole);
 * round trips are each worker's own, from its push's first frame to its
 * model's last chunk. Output: one JSON object per line, per rep and path
 * (tests/bench/datapath.py takes the medians), or one saying why a
 * configuration was skipped (not enough memory on this machine).
 */
#define _GNU_SOURCE
#include "chunk.h"
#include "codec.h"
#include "keys.h"
#include "msg.h"
#include "transport.h"
#include "util.h"
#include "wan.h"

#include <zmq.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_LIST 8
#define MAX_WORKERS 8
#define CLASSES 10
#define BATCH 64
#define SAMPLES 6400
#define BIG_FLOATS 50000000 /* from here on: no warm-up, --big-reps reps */
#define MAX_ROUNDS 2000
#define SERVER_NAME "datapath"
#define WAIT_S 600 /* longest a worker or the raw server waits for anything */

typedef struct options {
    size_t floats[MAX_LIST], n_floats;
    size_t workers[MAX_LIST], n_workers;
    int curve[2], n_curve;
    int reps, big_reps;
    double rep_mb;
    char server[4096];
} options;

/* What one configuration shares between the parent and its children. */
typedef struct setup {
    size_t n, workers;
    bool curve;
    char dir[4096];
    char gdml_ep[256], raw_ep[256];
    char raw_public[41], raw_secret[41];       /* the raw ROUTER's CURVE pair, Z85 */
    char client_public[41], client_secret[41]; /* one pair for every raw DEALER */
} setup;

/* Parent to worker: which path, how many rounds; rounds 0 ends the worker. */
typedef struct command {
    int raw;
    int rounds;
} command;

/* Worker to parent, then `rounds` round trips in seconds. */
typedef struct report {
    double start, end; /* CLOCK_MONOTONIC seconds, the same clock in every process */
    int rounds;
} report;

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_datapath: %s: %s\n", what, why);
    _exit(1);
}

static void write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("pipe", strerror(errno));
        p += w;
        len -= (size_t)w;
    }
}

static bool read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len) {
        ssize_t r = read(fd, p, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        p += r;
        len -= (size_t)r;
    }
    return true;
}

/* ---- the gdml worker ---- */

typedef struct worker {
    const setup *s;
    char name[GDML_NAME_MAX];
    gdml_transport *t;
    gdml_link *link;
    gdml_codec *dense;
    gdml_transfer in;
    float *grad, *model;
    uint64_t seq, step, version;
    size_t frame_len[GDML_MSG_MAX_ELEMS / GDML_CHUNK_ELEMS + 1]; /* of its last push */
    size_t n_frames;
    void *raw_ctx, *raw_sock;
} worker;

static void send_frame(worker *w, gdml_blob *f)
{
    gdml_errmsg e;
    if (gdml_link_send(w->link, NULL, f, &e))
        die("send", e.text);
    gdml_link_flush(w->link, gdml_now_ms());
}

/* Receives until the model (WELCOME or MODEL) is whole in w->model. */
static void receive_model(worker *w)
{
    double deadline = mono_s() + WAIT_S;
    for (;;) {
        gdml_rx rx;
        gdml_errmsg e;
        gdml_err err;
        while ((err = gdml_link_recv(w->link, &rx, &e)) == GDML_OK) {
            const gdml_msg_header *h = &rx.header;
            bool complete = false;
            if (h->type == GDML_MSG_MODEL || h->type == GDML_MSG_WELCOME) {
                gdml_reason r = gdml_tensor_receive(&w->in, h, rx.payload, w->model, w->s->n, false,
                                                    "the server", &complete, &e);
                if (r != GDML_REASON_NONE && r != GDML_REASON_DUPLICATE && r != GDML_REASON_STALE)
                    die("model chunk", e.text);
                if (complete) {
                    w->step = h->step;
                    w->version = h->version;
                }
            } else if (h->type == GDML_MSG_ERROR || h->type == GDML_MSG_STOP) {
                die("the server refused", h->text);
            }
            gdml_rx_release(&rx);
            if (complete)
                return;
        }
        if (err != GDML_ERR_AGAIN)
            die("receive", e.text);
        if (mono_s() > deadline)
            die("receive", "no model from the server");
        int64_t wait = gdml_link_flush(w->link, gdml_now_ms());
        bool ready;
        gdml_link_poll(&w->link, 1, wait < 0 || wait > 100 ? 100 : (int)wait, &ready);
    }
}

/* One push of the gradient and the model back, as the worker does it. */
static void gdml_round(worker *w)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_PUSH, w->name);
    h.seq = ++w->seq;
    h.version = w->version;
    h.step = w->step;
    h.count = BATCH;
    h.metric = 1.0;
    w->n_frames = gdml_chunk_count(w->s->n);
    for (size_t i = 0; i < w->n_frames; i++) { /* as the worker does: each sent once made */
        gdml_blob *f = NULL;
        uint64_t wire = 0;
        if (gdml_codec_dense_frame(w->dense, &h, w->grad, i, w->s->curve, &f, &wire))
            die("push", "cannot make the gradient's frames");
        gdml_blob_view(f, &w->frame_len[i]);
        send_frame(w, f);
        gdml_blob_unref(&f);
    }
    receive_model(w);
}

static void worker_join(worker *w, size_t index)
{
    const setup *s = w->s;
    snprintf(w->name, sizeof w->name, "w%zu", index);
    w->seq = (uint64_t)gdml_wall_ms() * 16;
    gdml_errmsg e = {{0}};
    gdml_link_options opts = {0};
    gdml_curve_key key;
    char server_name[GDML_NAME_MAX];
    uint8_t server_key[GDML_CURVE_KEY_BYTES];
    if (s->curve) {
        char path[4200];
        snprintf(path, sizeof path, "%s/keys/%s.key", s->dir, w->name);
        if (gdml_keys_load_pair(path, &key, &e))
            die("key", e.text);
        snprintf(path, sizeof path, "%s/keys/%s.pub", s->dir, SERVER_NAME);
        if (gdml_keys_load_public(path, server_name, server_key, &e))
            die("server key", e.text);
        opts.key = &key;
        opts.server_key = server_key;
        opts.server_name = server_name;
    }
    if (gdml_transport_new(&w->t, &e) || gdml_link_connect(w->t, s->gdml_ep, &opts, &w->link, &e))
        die("connect", e.text);
    if (gdml_codec_new("dense", s->n, 0, &w->dense, &e))
        die("codec", e.text);
    if (gdml_transfer_init(&w->in, s->n) || !(w->grad = malloc(s->n * sizeof(float))) ||
        !(w->model = malloc(s->n * sizeof(float))))
        die("worker", "out of memory");
    /* Small, finite, not all equal: a gradient the server's checks pass. */
    for (size_t i = 0; i < s->n; i++)
        w->grad[i] = 1e-5f * (float)((int)(i % 7) - 3);
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_HELLO, w->name);
    h.seq = ++w->seq;
    h.count = SAMPLES;
    gdml_blob *f = NULL;
    if (gdml_frame_header_only(&h, &f))
        die("hello", "cannot make it");
    send_frame(w, f);
    gdml_blob_unref(&f);
    receive_model(w); /* WELCOME */
}

/* ---- the raw ZeroMQ limit ---- */

static void raw_curve_client(void *sock, const setup *s)
{
    if (!s->curve)
        return;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, s->raw_public, 40) ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, s->client_public, 40) ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, s->client_secret, 40))
        die("raw CURVE", zmq_strerror(zmq_errno()));
}

static void raw_connect(worker *w)
{
    int linger = 0;
    if (!(w->raw_ctx = zmq_ctx_new()) || !(w->raw_sock = zmq_socket(w->raw_ctx, ZMQ_DEALER)))
        die("raw socket", zmq_strerror(zmq_errno()));
    zmq_setsockopt(w->raw_sock, ZMQ_LINGER, &linger, sizeof linger);
    raw_curve_client(w->raw_sock, w->s);
    if (zmq_connect(w->raw_sock, w->s->raw_ep))
        die("raw connect", zmq_strerror(zmq_errno()));
}

/* The frames of the last gdml push, zero-copy from the gradient; as many back. */
static void raw_round(worker *w)
{
    const char *base = (const char *)w->grad;
    size_t off = 0, cap = w->s->n * sizeof(float);
    for (size_t i = 0; i < w->n_frames; i++) {
        size_t len = w->frame_len[i];
        if (off + len > cap) /* a frame's header makes it a little longer than its floats */
            off = 0;
        zmq_msg_t m;
        zmq_msg_init_data(&m, (void *)(base + off), len, NULL, NULL);
        if (zmq_msg_send(&m, w->raw_sock, 0) < 0)
            die("raw send", zmq_strerror(zmq_errno()));
        off += len;
    }
    for (size_t got = 0; got < w->n_frames; got++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, w->raw_sock, 0) < 0)
            die("raw receive", zmq_strerror(zmq_errno()));
        zmq_msg_close(&m);
    }
}

static void worker_main(const setup *s, size_t index, int cmd_fd, int out_fd)
{
    worker w = {.s = s};
    worker_join(&w, index);
    raw_connect(&w);
    report ready = {0};
    write_all(out_fd, &ready, sizeof ready);
    double *rtt = malloc(MAX_ROUNDS * sizeof *rtt);
    command c;
    while (rtt && read_all(cmd_fd, &c, sizeof c) && c.rounds > 0) {
        report r = {.rounds = c.rounds, .start = mono_s()};
        for (int i = 0; i < c.rounds; i++) {
            double t0 = mono_s();
            if (c.raw)
                raw_round(&w);
            else
                gdml_round(&w);
            rtt[i] = mono_s() - t0;
        }
        r.end = mono_s();
        write_all(out_fd, &r, sizeof r);
        write_all(out_fd, rtt, (size_t)c.rounds * sizeof *rtt);
    }
    _exit(0); /* the processes end with the configuration: nothing to free */
}

/* The raw ROUTER: a BSP step of nothing. Runs until killed. */
static void raw_server_main(const setup *s, int ep_fd)
{
    void *ctx = zmq_ctx_new(), *sock = ctx ? zmq_socket(ctx, ZMQ_ROUTER) : NULL;
    if (!sock)
        die("raw server", zmq_strerror(zmq_errno()));
    int one = 1;
    if (s->curve && (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) ||
                     zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, s->raw_secret, 40)))
        die("raw server CURVE", zmq_strerror(zmq_errno()));
    if (zmq_bind(sock, "tcp://127.0.0.1:*"))
        die("raw bind", zmq_strerror(zmq_errno()));
    char ep[256];
    size_t len = sizeof ep;
    zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, ep, &len);
    write_all(ep_fd, ep, sizeof ep);
    uint64_t chunks = gdml_chunk_count(s->n);
    size_t cap = s->n * sizeof(float) + chunks * GDML_MSG_HEADER_MAX;
    char *out = calloc(1, cap);
    size_t *sizes = calloc(chunks, sizeof *sizes);
    uint8_t ids[MAX_WORKERS][GDML_PEER_ID_MAX];
    size_t id_len[MAX_WORKERS], got[MAX_WORKERS], known = 0;
    if (!out || !sizes)
        die("raw server", "out of memory");
    for (;;) {
        memset(got, 0, sizeof got);
        size_t whole = 0;
        while (whole < s->workers) {
            zmq_msg_t id, m;
            zmq_msg_init(&id);
            zmq_msg_init(&m);
            if (zmq_msg_recv(&id, sock, 0) < 0 || zmq_msg_recv(&m, sock, 0) < 0)
                die("raw server receive", zmq_strerror(zmq_errno()));
            size_t w = 0;
            while (w < known && (id_len[w] != zmq_msg_size(&id) ||
                                 memcmp(ids[w], zmq_msg_data(&id), id_len[w]) != 0))
                w++;
            if (w == known) {
                if (known == MAX_WORKERS)
                    die("raw server", "too many peers");
                id_len[w] =
                    zmq_msg_size(&id) < GDML_PEER_ID_MAX ? zmq_msg_size(&id) : GDML_PEER_ID_MAX;
                memcpy(ids[w], zmq_msg_data(&id), id_len[w]);
                known++;
            }
            if (got[w] < chunks)
                sizes[got[w]] = zmq_msg_size(&m);
            whole += ++got[w] == chunks;
            zmq_msg_close(&id);
            zmq_msg_close(&m);
        }
        for (size_t w = 0; w < known; w++) {
            size_t off = 0;
            for (uint64_t c = 0; c < chunks; c++) {
                if (off + sizes[c] > cap)
                    off = 0;
                zmq_msg_t m;
                zmq_msg_init_data(&m, out + off, sizes[c], NULL, NULL);
                if (zmq_send(sock, ids[w], id_len[w], ZMQ_SNDMORE) < 0 ||
                    zmq_msg_send(&m, sock, 0) < 0)
                    die("raw server send", zmq_strerror(zmq_errno()));
                off += sizes[c];
            }
        }
    }
}

/* ---- the parent ---- */

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f))
        die(path, strerror(errno));
}

/* Key pairs for the server and each worker, and the server's allow-list of them. */
static void make_keys(setup *s)
{
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/keys", s->dir);
    mkdir(dir, 0700);
    gdml_errmsg e = {{0}};
    if (gdml_keys_write_pair(dir, SERVER_NAME, &e))
        die("keys", e.text);
    snprintf(path, sizeof path, "%s/workers.allow", dir);
    FILE *allow = fopen(path, "w");
    if (!allow)
        die(path, strerror(errno));
    for (size_t i = 0; i < s->workers; i++) {
        char name[32], pub[4300], line[512];
        snprintf(name, sizeof name, "w%zu", i);
        if (gdml_keys_write_pair(dir, name, &e))
            die("keys", e.text);
        snprintf(pub, sizeof pub, "%s/%s.pub", dir, name);
        FILE *f = fopen(pub, "r");
        while (f && fgets(line, sizeof line, f))
            fputs(line, allow);
        if (f)
            fclose(f);
    }
    fclose(allow);
    if (zmq_curve_keypair(s->raw_public, s->raw_secret) ||
        zmq_curve_keypair(s->client_public, s->client_secret))
        die("raw keys", zmq_strerror(zmq_errno()));
}

/* Writes the server's configuration and starts it; returns its pid. */
static pid_t start_server(setup *s, const char *program)
{
    char ini[16384], path[4200], ep[4200], coord[4200], log[4200];
    snprintf(ep, sizeof ep, "%s/server.ep", s->dir);
    /* Nothing listens there: with sync_every at its largest the region never
     * syncs, and early start trains from [model] without the coordinator. */
    snprintf(coord, sizeof coord, "ipc://%s/no-coordinator", s->dir);
    int len = snprintf(ini, sizeof ini,
                       "[log]\nlevel = warn\n"
                       "[model]\nkind = softmax\ninputs = %zu\nclasses = %d\n"
                       "[server]\nname = %s\nlisten = tcp://127.0.0.1:*\ncoordinator = %s\n"
                       "workers = %zu\nsync_every = 1000000\nlearning_rate = 0.01\n"
                       "timeout_ms = 86400000\nendpoint_file = %s\noverlap = off\n"
                       "[net]\npeer_timeout_ms = 3600000\ndrop_after_ms = 86400000\n"
                       "[security]\ncurve = off\nlan_curve = %s\n",
                       (s->n - CLASSES) / CLASSES, CLASSES, SERVER_NAME, coord, s->workers, ep,
                       s->curve ? "on" : "off");
    if (s->curve)
        snprintf(ini + len, sizeof ini - (size_t)len,
                 "key = %s/keys/%s.key\nallow = %s/keys/workers.allow\n", s->dir, SERVER_NAME,
                 s->dir);
    snprintf(path, sizeof path, "%s/server.ini", s->dir);
    write_text(path, ini);
    snprintf(log, sizeof log, "%s/server.log", s->dir);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a bench that fails takes its server along */
        FILE *f = freopen(log, "w", stderr);
        (void)f;
        dup2(STDERR_FILENO, STDOUT_FILENO);
        execl(program, program, "--config", path, (char *)NULL);
        die(program, strerror(errno));
    }
    for (int i = 0; i < 3000; i++) {
        FILE *f = fopen(ep, "r");
        if (f) {
            bool ok = fgets(s->gdml_ep, sizeof s->gdml_ep, f) != NULL;
            fclose(f);
            s->gdml_ep[strcspn(s->gdml_ep, "\n")] = '\0';
            if (ok && s->gdml_ep[0])
                return pid;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid)
            break;
        usleep(10000);
    }
    fprintf(stderr, "bench_datapath: gdml-server did not start; its log:\n");
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "cat '%s' >&2", log);
    if (system(cmd) < 0)
        perror("cat");
    exit(1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile of v[0..n) (sorted here), nearest rank. */
static double quantile(double *v, size_t n, double q)
{
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t)(q * (double)n + 0.999999);
    return v[i == 0 ? 0 : i > n ? n - 1 : i - 1];
}

static void load_average(char *buf, size_t cap)
{
    FILE *f = fopen("/proc/loadavg", "r");
    double a = 0, b = 0, c = 0;
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &a, &b, &c) != 3)
            a = b = c = 0;
        fclose(f);
    }
    snprintf(buf, cap, "%.2f %.2f %.2f", a, b, c);
}

/* MemAvailable, in bytes; 0 if unknown. */
static double mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb * 1024;
}

typedef struct children {
    pid_t server, raw, workers[MAX_WORKERS];
    int cmd[MAX_WORKERS], out[MAX_WORKERS];
} children;

/* One rep of one path: every worker runs `rounds` rounds; prints its line. */
static void run_rep(const setup *s, children *ch, int raw, int rounds, int rep, bool report_it)
{
    command c = {.raw = raw, .rounds = rounds};
    for (size_t i = 0; i < s->workers; i++)
        write_all(ch->cmd[i], &c, sizeof c);
    size_t total = s->workers * (size_t)rounds;
    double *rtt = malloc(total * sizeof *rtt), start = 0, end = 0;
    if (!rtt)
        die("parent", "out of memory");
    for (size_t i = 0; i < s->workers; i++) {
        report r;
        if (!read_all(ch->out[i], &r, sizeof r) ||
            !read_all(ch->out[i], rtt + i * (size_t)rounds, (size_t)rounds * sizeof *rtt))
            die("a worker", "failed (see the server's log under the bench's directory)");
        if (i == 0 || r.start < start)
            start = r.start;
        if (i == 0 || r.end > end)
            end = r.end;
    }
    if (report_it) {
        double seconds = end - start;
        double payload = 2.0 * (double)s->workers * (double)s->n * sizeof(float) * rounds;
        double med = quantile(rtt, total, 0.5), p99 = quantile(rtt, total, 0.99);
        char load[64];
        load_average(load, sizeof load);
        printf("{\"curve\": \"%s\", \"workers\": %zu, \"floats\": %zu, \"path\": \"%s\", "
               "\"rep\": %d, \"rounds\": %d, \"seconds\": %.6f, \"goodput_gbs\": %.4f, "
               "\"rtt_median_ms\": %.4f, \"rtt_p99_ms\": %.4f, \"load\": \"%s\"}\n",
               s->curve ? "on" : "off", s->workers, s->n, raw ? "raw" : "gdml", rep, rounds,
               seconds, payload / seconds / 1e9, med * 1e3, p99 * 1e3, load);
        fflush(stdout);
    }
    free(rtt);
}

static void stop_children(const setup *s, children *ch)
{
    command quit = {0};
    for (size_t i = 0; i < s->workers; i++) {
        write_all(ch->cmd[i], &quit, sizeof quit);
        close(ch->cmd[i]);
        close(ch->out[i]);
        waitpid(ch->workers[i], NULL, 0);
    }
    kill(ch->server, SIGTERM);
    kill(ch->raw, SIGKILL);
    waitpid(ch->server, NULL, 0);
    waitpid(ch->raw, NULL, 0);
}

static void remove_dir(const char *dir)
{
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_datapath: could not remove %s\n", dir);
}

static void run_config(const options *o, bool curve, size_t workers, size_t n)
{
    /* Floats held: the server's model, anchor, sum, scratch and one set of
     * frames; each worker's gradient, model and frames; the raw server's buffer. */
    double need = (5.0 + 3.0 * (double)workers + 1.0) * (double)n * sizeof(float);
    double avail = mem_available();
    if (avail > 0 && need > 0.7 * avail) {
        printf("{\"curve\": \"%s\", \"workers\": %zu, \"floats\": %zu, \"skipped\": "
               "\"needs %.1f GB, %.1f GB available\"}\n",
               curve ? "on" : "off", workers, n, need / 1e9, avail / 1e9);
        fflush(stdout);
        return;
    }
    setup s = {.n = n, .workers = workers, .curve = curve};
    const char *tmp = getenv("TMPDIR");
    snprintf(s.dir, sizeof s.dir, "%s/gdml-datapath-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(s.dir))
        die("mkdtemp", strerror(errno));
    make_keys(&s); /* the raw link's keys are made even with CURVE off: it is cheap */
    children ch = {0};
    ch.server = start_server(&s, o->server);
    int ep_pipe[2];
    if (pipe(ep_pipe))
        die("pipe", strerror(errno));
    if ((ch.raw = fork()) == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(ep_pipe[0]);
        raw_server_main(&s, ep_pipe[1]);
    }
    close(ep_pipe[1]);
    if (!read_all(ep_pipe[0], s.raw_ep, sizeof s.raw_ep))
        die("raw server", "did not start");
    close(ep_pipe[0]);
    for (size_t i = 0; i < workers; i++) {
        int cmd[2], out[2];
        if (pipe(cmd) || pipe(out))
            die("pipe", strerror(errno));
        if ((ch.workers[i] = fork()) == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            close(cmd[1]);
            close(out[0]);
            worker_main(&s, i, cmd[0], out[1]);
        }
        close(cmd[0]);
        close(out[1]);
        ch.cmd[i] = cmd[1];
        ch.out[i] = out[0];
    }
    for (size_t i = 0; i < workers; i++) { /* each has its WELCOME: the server trains */
        report ready;
        if (!read_all(ch.out[i], &ready, sizeof ready))
            die("a worker", "did not join");
    }
    double per_round = 2.0 * (double)workers * (double)n * sizeof(float);
    double want = o->rep_mb * 1e6 / per_round;
    int rounds = want < 1 ? 1 : want > MAX_ROUNDS ? MAX_ROUNDS : (int)want;
    bool big = n >= BIG_FLOATS;
    int reps = big ? o->big_reps : o->reps;
    for (int rep = big ? 0 : -1; rep < reps; rep++)
        for (int raw = 0; raw < 2; raw++)
            run_rep(&s, &ch, raw, rounds, rep, rep >= 0);
    stop_children(&s, &ch);
    remove_dir(s.dir);
}

static size_t parse_list(const char *text, size_t *out)
{
    size_t n = 0;
    char *copy = strdup(text), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t && n < MAX_LIST; t = strtok_r(NULL, ",", &save))
        out[n++] = (size_t)strtod(t, NULL);
    free(copy);
    return n;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench_datapath [--floats N,..] [--workers W,..] [--curve off,on] "
                    "[--reps N] [--big-reps N] [--rep-mb MB] [--server PATH] [--quick]\n");
    return 2;
}

static bool parse_options(int argc, char **argv, options *o)
{
    *o = (options){.reps = 5, .big_reps = 2, .rep_mb = 256, .n_curve = 2, .curve = {0, 1}};
    o->n_floats = parse_list("1e3,1e5,1e7,1e8", o->floats);
    o->n_workers = parse_list("1,2,4,8", o->workers);
    /* gdml-server sits two folders up from this program in the build tree. */
    char self[4000];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    self[len > 0 ? len : 0] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    snprintf(o->server, sizeof o->server, "%s/../../gdml-server", self);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0) {
            o->n_floats = parse_list("1e3,1e5,1e7", o->floats);
            o->n_workers = parse_list("1,4", o->workers);
            o->reps = 3;
            o->rep_mb = 128;
            continue;
        }
        if (!v)
            return false;
        i++;
        if (strcmp(a, "--floats") == 0)
            o->n_floats = parse_list(v, o->floats);
        else if (strcmp(a, "--workers") == 0)
            o->n_workers = parse_list(v, o->workers);
        else if (strcmp(a, "--reps") == 0)
            o->reps = atoi(v);
        else if (strcmp(a, "--big-reps") == 0)
            o->big_reps = atoi(v);
        else if (strcmp(a, "--rep-mb") == 0)
            o->rep_mb = strtod(v, NULL);
        else if (strcmp(a, "--server") == 0)
            snprintf(o->server, sizeof o->server, "%s", v);
        else if (strcmp(a, "--curve") == 0) {
            o->n_curve = 0;
            if (strstr(v, "off"))
                o->curve[o->n_curve++] = 0;
            if (strstr(v, "on"))
                o->curve[o->n_curve++] = 1;
        } else
            return false;
    }
    for (size_t i = 0; i < o->n_floats; i++)
        if (o->floats[i] < 2 * CLASSES || o->floats[i] % CLASSES || o->floats[i] > UINT32_MAX)
            return false; /* softmax INPUTS 10 holds 10 * INPUTS + 10 floats */
    for (size_t i = 0; i < o->n_workers; i++)
        if (o->workers[i] < 1 || o->workers[i] > MAX_WORKERS)
            return false;
    return o->reps > 0 && o->big_reps > 0 && o->rep_mb > 0 && o->n_curve > 0;
}

int main(int argc, char **argv)
{
    options o;
    if (!parse_options(argc, argv, &o))
        return usage();
    if (access(o.server, X_OK) != 0) {
        fprintf(stderr, "bench_datapath: no gdml-server at %s (--server PATH)\n", o.server);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    gdml_keep_freed_memory(); /* as every gdml program does; the forked workers inherit it */
    for (int c = 0; c < o.n_curve; c++)
        for (size_t f = 0; f < o.n_floats; f++)
            for (size_t w = 0; w < o.n_workers; w++)
                run_config(&o, o.curve[c] == 1, o.workers[w], o.floats[f]);
    return 0;
}
