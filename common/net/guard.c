/*
 * guard.c - the backlog guard (transport_impl.h): a thread that cuts off any
 * connection whose peer has sent far more than this process has read.
 *
 * Why it exists: ZeroMQ bounds one frame (ZMQ_MAXMSGSIZE) but keeps every
 * frame of a multipart message until its last, and a peer that never sends
 * the last frame can make it hold gigabytes. gdml never sends multipart
 * messages, so such a backlog is always hostile or broken; yet ZeroMQ gives
 * no hook to see it. The kernel does: TCP_INFO's tcpi_bytes_received counts
 * what a connection delivered, and the transport counts, per connection
 * (ZMQ_SRCFD), the wire bytes of every frame the program has read. Their
 * difference is what sits in ZeroMQ's buffers and the socket's; when it
 * passes the link's max_backlog the guard shuts the socket down, and
 * ZeroMQ, seeing the connection end, frees what it held.
 *
 * A legitimate peer stays far below the bound: its frames are at most
 * GDML_FRAME_MAX each, ZeroMQ stops reading a connection once ZMQ_RCVHWM of
 * them wait (half the link's bound; the guard cuts at three quarters of it),
 * and the rest waits in the sender's queues.
 *
 * Connections are learnt from ZeroMQ's socket monitor (ACCEPTED, CONNECTED,
 * DISCONNECTED, CLOSED events carry the file descriptor). Each watched
 * socket's monitor is a PAIR socket that only this thread uses.
 */
#include "transport_impl.h"

#include "log.h"
#include "ratelog.h"
#include "util.h"

#include <zmq.h>

#include <errno.h>
#include <netinet/in.h>
#include <linux/tcp.h> /* glibc's tcp_info lacks tcpi_bytes_received */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#define GUARD_TICK_MS 5
#define GUARD_MAX_WATCHES 16
#define GUARD_MAX_FDS 65536
/* The greeting and handshake a connection sends before its first frame. */
#define GUARD_HANDSHAKE_ALLOWANCE 65536

#define MONITOR_EVENTS                                                                             \
    (ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_CLOSED |        \
     ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |                       \
     ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)

typedef struct watch {
    bool used, connected; /* connected: the thread has its monitor PAIR */
    char endpoint[64];    /* the monitor's inproc endpoint */
    char what[64];        /* for logs: "coordinator link" */
    uint64_t max_backlog;
    void *pair;
    atomic_uint_fast64_t cutoffs;
    atomic_uint_fast64_t handshake_failures;
    atomic_uint_fast64_t connects; /* connections this (connecting) socket made */
} watch;

typedef struct fd_state {
    int watch;                /* -1: not a connection the guard knows */
    int slot;                 /* its place in the active list */
    uint64_t base_consumed;   /* consumed[fd] when this connection began */
    uint64_t closed_consumed; /* consumed[fd] when the descriptor's last connection ended */
} fd_state;

struct guard {
    pthread_t thread;
    void *ctx;
    atomic_bool stop;
    pthread_mutex_t lock; /* watches' used/connected flags and registration */
    pthread_cond_t changed;
    watch watches[GUARD_MAX_WATCHES];
    int n_fds;
    atomic_uint_fast64_t *consumed; /* per fd, written by the program's thread */
    fd_state *fds;                  /* per fd, the guard thread's own */
    int *active;                    /* the fds being watched, n_active of them */
    int n_active;
    gdml_ratelog *log;  /* failed handshakes, a line per link and interval */
    unsigned next_name; /* monitor endpoints are never named twice */
};

static uint64_t tcp_received(int fd, bool *ok)
{
    struct tcp_info info;
    socklen_t len = sizeof info;
    memset(&info, 0, sizeof info);
    *ok = getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0 &&
          len >= offsetof(struct tcp_info, tcpi_bytes_received) + sizeof info.tcpi_bytes_received;
    return *ok ? info.tcpi_bytes_received : 0;
}

static void untrack(guard *g, int fd)
{
    fd_state *s = &g->fds[fd];
    s->closed_consumed = atomic_load(&g->consumed[fd]);
    if (s->watch < 0)
        return;
    int last = g->active[--g->n_active];
    g->active[s->slot] = last;
    g->fds[last].slot = s->slot;
    s->watch = -1;
}

static void track(guard *g, int w, int fd)
{
    if (fd < 0 || fd >= g->n_fds)
        return;
    fd_state *s = &g->fds[fd];
    if (s->watch >= 0)
        untrack(g, fd); /* its close was not seen: the descriptor starts afresh */
    /* TCP_INFO counts from the connection's start, however late this event is
     * seen; what the program read of it counts from the last connection's end. */
    bool ok;
    tcp_received(fd, &ok);
    s->base_consumed = s->closed_consumed;
    if (!ok)
        return; /* not TCP (ipc, inproc): nothing to measure */
    s->watch = w;
    s->slot = g->n_active;
    g->active[g->n_active++] = fd;
}

static void on_event(guard *g, int w)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, g->watches[w].pair, ZMQ_DONTWAIT) == -1) {
        zmq_msg_close(&m);
        return;
    }
    uint16_t event = 0;
    uint32_t value = 0;
    bool more = zmq_msg_more(&m);
    if (zmq_msg_size(&m) == 6) {
        memcpy(&event, zmq_msg_data(&m), 2);
        memcpy(&value, (uint8_t *)zmq_msg_data(&m) + 2, 4);
    }
    zmq_msg_close(&m);
    while (more) { /* the endpoint frame */
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, g->watches[w].pair, 0) == -1)
            more = false;
        else
            more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    int fd = (int)value;
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH || event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
        event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
        atomic_fetch_add(&g->watches[w].handshake_failures, 1);
        gdml_ratelog_note(g->log, gdml_now_ms(), GDML_LOG_WARN, "handshake_failed",
                          g->watches[w].what, "handshake failed", "zmq_event=0x%x code=%u why=%s",
                          event, value,
                          event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                              ? "the peer presented a CURVE key this link does not accept"
                              : "the peer does not speak this link's mechanism (no CURVE key, "
                                "or CURVE where the link is plain)");
    } else if (event == ZMQ_EVENT_ACCEPTED || event == ZMQ_EVENT_CONNECTED) {
        if (event == ZMQ_EVENT_CONNECTED)
            atomic_fetch_add(&g->watches[w].connects, 1);
        track(g, w, fd);
    } else if ((event == ZMQ_EVENT_DISCONNECTED || event == ZMQ_EVENT_CLOSED) && fd >= 0 &&
               fd < g->n_fds)
        untrack(g, fd);
}

static void check_all(guard *g)
{
    for (int i = g->n_active - 1; i >= 0; i--) { /* backwards: untrack moves the last here */
        int fd = g->active[i];
        fd_state *s = &g->fds[fd];
        bool ok;
        uint64_t received = tcp_received(fd, &ok);
        if (!ok) {
            untrack(g, fd);
            continue;
        }
        uint64_t consumed = atomic_load(&g->consumed[fd]) - s->base_consumed;
        uint64_t arrived = received;
        watch *w = &g->watches[s->watch];
        if (arrived <= consumed || arrived - consumed <= w->max_backlog + GUARD_HANDSHAKE_ALLOWANCE)
            continue;
        gdml_warn("backlog_cut", "link=%s fd=%d unread_bytes=%llu bound_bytes=%llu why=%s", w->what,
                  fd, (unsigned long long)(arrived - consumed), (unsigned long long)w->max_backlog,
                  "a peer sent a message it never finished");
        shutdown(fd, SHUT_RDWR);
        atomic_fetch_add(&w->cutoffs, 1);
        untrack(g, fd);
    }
}

/* Connects the PAIRs of new watches and closes those of finished ones. */
static void sync_watches(guard *g)
{
    pthread_mutex_lock(&g->lock);
    for (int i = 0; i < GUARD_MAX_WATCHES; i++) {
        watch *w = &g->watches[i];
        if (w->used && !w->connected) {
            w->pair = zmq_socket(g->ctx, ZMQ_PAIR);
            int linger = 0;
            if (w->pair) {
                zmq_setsockopt(w->pair, ZMQ_LINGER, &linger, sizeof linger);
                zmq_connect(w->pair, w->endpoint);
            }
            w->connected = true;
            pthread_cond_broadcast(&g->changed);
        } else if (!w->used && w->connected) {
            if (w->pair)
                zmq_close(w->pair);
            w->pair = NULL;
            w->connected = false;
            for (int j = g->n_active - 1; j >= 0; j--)
                if (g->fds[g->active[j]].watch == i)
                    untrack(g, g->active[j]);
            pthread_cond_broadcast(&g->changed);
        }
    }
    pthread_mutex_unlock(&g->lock);
}

static void *guard_main(void *arg)
{
    guard *g = arg;
    zmq_pollitem_t items[GUARD_MAX_WATCHES];
    int owner[GUARD_MAX_WATCHES];
    while (!atomic_load(&g->stop)) {
        sync_watches(g);
        int n = 0;
        for (int i = 0; i < GUARD_MAX_WATCHES; i++)
            if (g->watches[i].connected && g->watches[i].pair) {
                items[n] = (zmq_pollitem_t){.socket = g->watches[i].pair, .events = ZMQ_POLLIN};
                owner[n++] = i;
            }
        /* About 10 us of getsockopt per connection: with many, tick slower. */
        int tick = GUARD_TICK_MS + g->n_active / 100;
        if (zmq_poll(items, n, tick) > 0)
            for (int i = 0; i < n; i++)
                if (items[i].revents & ZMQ_POLLIN)
                    on_event(g, owner[i]);
        check_all(g);
        gdml_ratelog_flush(g->log, gdml_now_ms());
    }
    for (int i = 0; i < GUARD_MAX_WATCHES; i++)
        if (g->watches[i].pair)
            zmq_close(g->watches[i].pair);
    return NULL;
}

gdml_err guard_start(void *ctx, guard **out, gdml_errmsg *e)
{
    guard *g = calloc(1, sizeof *g);
    if (!g)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for the backlog guard");
    struct rlimit rl;
    g->n_fds = GUARD_MAX_FDS;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < GUARD_MAX_FDS)
        g->n_fds = (int)rl.rlim_cur;
    g->consumed = calloc((size_t)g->n_fds, sizeof *g->consumed);
    g->fds = malloc((size_t)g->n_fds * sizeof *g->fds);
    g->active = malloc((size_t)g->n_fds * sizeof *g->active);
    if (!g->consumed || !g->fds || !g->active) {
        free(g->consumed);
        free(g->fds);
        free(g->active);
        free(g);
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for the backlog guard");
    }
    for (int fd = 0; fd < g->n_fds; fd++) {
        atomic_init(&g->consumed[fd], 0);
        g->fds[fd].watch = -1;
        g->fds[fd].closed_consumed = 0;
    }
    if (gdml_ratelog_new(10000, 32, &g->log)) {
        free(g->consumed);
        free(g->fds);
        free(g->active);
        free(g);
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for the backlog guard");
    }
    g->ctx = ctx;
    atomic_init(&g->stop, false);
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->changed, NULL);
    if (pthread_create(&g->thread, NULL, guard_main, g) != 0) {
        free(g->consumed);
        free(g->fds);
        free(g->active);
        free(g);
        return gdml_errmsg_set(e, GDML_ERR_TRANSPORT, "cannot start the backlog guard's thread");
    }
    *out = g;
    return GDML_OK;
}

void guard_stop(guard **gp)
{
    if (!gp || !*gp)
        return;
    guard *g = *gp;
    *gp = NULL;
    atomic_store(&g->stop, true);
    pthread_join(g->thread, NULL);
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->changed);
    gdml_ratelog_destroy(&g->log);
    free(g->consumed);
    free(g->fds);
    free(g->active);
    free(g);
}

gdml_err guard_watch(guard *g, void *sock, uint64_t max_backlog, const char *what, int *watch_id,
                     gdml_errmsg *e)
{
    pthread_mutex_lock(&g->lock);
    int id = -1;
    for (int i = 0; i < GUARD_MAX_WATCHES && id < 0; i++)
        if (!g->watches[i].used && !g->watches[i].connected)
            id = i;
    if (id < 0) {
        pthread_mutex_unlock(&g->lock);
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "at most %d guarded links per process",
                               GUARD_MAX_WATCHES);
    }
    watch *w = &g->watches[id];
    /* A fresh name each time: a slot's old endpoint may not be unbound yet. */
    snprintf(w->endpoint, sizeof w->endpoint, "inproc://gdml-guard-%p-%u", (void *)g,
             g->next_name++);
    snprintf(w->what, sizeof w->what, "%s", what);
    w->max_backlog = max_backlog;
    atomic_init(&w->cutoffs, 0);
    atomic_init(&w->handshake_failures, 0);
    atomic_init(&w->connects, 0);
    if (zmq_socket_monitor(sock, w->endpoint, MONITOR_EVENTS) != 0) {
        pthread_mutex_unlock(&g->lock);
        return gdml_errmsg_set(e, GDML_ERR_TRANSPORT, "cannot monitor a socket: %s",
                               zmq_strerror(zmq_errno()));
    }
    w->used = true;
    /* Wait until the thread listens: events sent before would be lost. */
    while (!w->connected)
        pthread_cond_wait(&g->changed, &g->lock);
    pthread_mutex_unlock(&g->lock);
    *watch_id = id;
    return GDML_OK;
}

void guard_unwatch(guard *g, void *sock, int watch_id)
{
    if (watch_id < 0 || watch_id >= GUARD_MAX_WATCHES)
        return;
    zmq_socket_monitor(sock, NULL, 0);
    pthread_mutex_lock(&g->lock);
    g->watches[watch_id].used = false;
    while (g->watches[watch_id].connected)
        pthread_cond_wait(&g->changed, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

void guard_consumed(guard *g, int fd, uint64_t bytes)
{
    if (fd >= 0 && fd < g->n_fds)
        atomic_fetch_add_explicit(&g->consumed[fd], bytes, memory_order_relaxed);
}

void guard_cut(guard *g, int fd)
{
    (void)g;
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
}

uint64_t guard_cutoffs(guard *g, int watch_id)
{
    if (watch_id < 0 || watch_id >= GUARD_MAX_WATCHES)
        return 0;
    return atomic_load(&g->watches[watch_id].cutoffs);
}

uint64_t guard_handshake_failures(guard *g, int watch_id)
{
    if (watch_id < 0 || watch_id >= GUARD_MAX_WATCHES)
        return 0;
    return atomic_load(&g->watches[watch_id].handshake_failures);
}

uint64_t guard_connects(guard *g, int watch_id)
{
    if (watch_id < 0 || watch_id >= GUARD_MAX_WATCHES)
        return 0;
    return atomic_load(&g->watches[watch_id].connects);
}
