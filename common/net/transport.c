/*
 * transport.c - gdml links over ZeroMQ (transport.h): ROUTER sockets on the
 * binding side, DEALER sockets on the connecting side, one frame per
 * message, non-blocking sends with per-peer outboxes, CURVE, and a byte
 * count of every frame. ZeroMQ errors become gdml_err codes and readable
 * text here.
 *
 * Frames are sent without copying: each send hands ZeroMQ a reference to
 * the frame's blob, which ZeroMQ drops (blob_release) once the bytes have
 * left. A frame ZeroMQ cannot take now (the peer's ZMQ_SNDHWM queue is
 * full) waits in the peer's outbox, in order, until gdml_link_flush gets it
 * in; a bound link drops a peer whose outbox has not moved for
 * drop_after_ms, so a peer that stops reading costs the others nothing.
 */
#include "transport.h"
#include "transport_impl.h"

#include "log.h"
#include "util.h"

#include <zmq.h>

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

_Static_assert(sizeof(zmq_msg_t) <= sizeof(((gdml_rx *)0)->frame_), "gdml_rx holds a zmq_msg_t");

/* How long a closing link tries to deliver what is still queued. */
#define LINK_LINGER_MS 1000
/* Frames ZeroMQ queues per peer before a send has to wait in the outbox. */
#define LINK_SNDHWM 1000
/* Frames waiting in one outbox before its peer is dropped as hopeless. */
#define OUTBOX_MAX 65536
/* Routes remembered with their connection's descriptor, for disconnects. */
#define ROUTES_MAX 4096
#define ENDPOINT_MAX 512
/* gdml_peer_str output: every byte escaped as \xNN in the worst case. */
#define PEER_STR_MAX (GDML_PEER_ID_MAX * 4 + 1)
/* What CURVE adds to each frame: "\x07MESSAGE", an 8-byte nonce, a 16-byte
 * MAC and the flags byte (libzmq's curve_mechanism_base_t::encode). */
#define CURVE_FRAME_OVERHEAD 33
#define RETRY_MS 5

struct gdml_transport {
    void *ctx;
    atomic_int links; /* open links; all must be closed before the context ends */
    zap_handler *zap;
    guard *guard;
};

typedef struct outbox {
    gdml_peer peer;
    gdml_blob **q; /* a ring of frames waiting, oldest at head */
    size_t head, n, cap;
    int64_t stuck_since; /* when the oldest frame last failed to go */
} outbox;

typedef struct route {
    gdml_peer peer;
    int fd;
    int64_t seen_ms;
    bool told_v1; /* a protocol-1 refusal went to it already */
} route;

struct gdml_link {
    gdml_transport *t;
    void *sock;
    bool router, curve;
    char endpoint[ENDPOINT_MAX]; /* resolved for bound links */
    char zap_domain[32];
    char server_name[GDML_NAME_MAX]; /* connecting CURVE link: who the server is */
    uint64_t max_backlog;
    int64_t drop_after_ms;
    int watch_id;
    gdml_curve_allow *allow;
    gdml_link_stats stats;
    outbox *boxes; /* ROUTER: one per peer with frames waiting; DEALER: boxes[0] */
    size_t n_boxes, cap_boxes;
    route *routes;
    size_t n_routes;
    gdml_peer *dropped; /* peers dropped, not yet taken */
    size_t n_dropped, cap_dropped;
};

uint64_t gdml_wire_bytes(size_t frame_len, bool curve)
{
    uint64_t body = (uint64_t)frame_len + (curve ? CURVE_FRAME_OVERHEAD : 0);
    /* ZMTP 3: a flags byte, then a 1-byte length up to 255 or an 8-byte one. */
    return body + (body <= 255 ? 2 : 9);
}

gdml_err gdml_transport_new(gdml_transport **out, gdml_errmsg *e)
{
    gdml_transport *t = calloc(1, sizeof *t);
    if (!t)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "cannot allocate the transport");
    t->ctx = zmq_ctx_new();
    if (!t->ctx) {
        int err = zmq_errno();
        free(t);
        return gdml_errmsg_set(e, GDML_ERR_TRANSPORT, "cannot create a ZeroMQ context: %s",
                               zmq_strerror(err));
    }
    atomic_init(&t->links, 0);
    gdml_err err = guard_start(t->ctx, &t->guard, e);
    if (err) {
        zmq_ctx_term(t->ctx);
        free(t);
        return err;
    }
    *out = t;
    return GDML_OK;
}

void gdml_transport_destroy(gdml_transport **tp)
{
    if (!tp || !*tp)
        return;
    gdml_transport *t = *tp;
    *tp = NULL;
    /* zmq_ctx_term waits for every socket to be closed: an open link would hang it. */
    assert(atomic_load(&t->links) == 0);
    zap_stop(&t->zap);
    guard_stop(&t->guard);
    while (zmq_ctx_term(t->ctx) == -1 && zmq_errno() == EINTR)
        ;
    free(t);
}

static gdml_err set_opt(gdml_link *l, int opt, const void *val, size_t len, const char *name,
                        gdml_errmsg *e)
{
    if (zmq_setsockopt(l->sock, opt, val, len) == 0)
        return GDML_OK;
    return gdml_errmsg_set(e, GDML_ERR_TRANSPORT, "cannot set %s: %s", name,
                           zmq_strerror(zmq_errno()));
}

static gdml_err set_int(gdml_link *l, int opt, int v, const char *name, gdml_errmsg *e)
{
    return set_opt(l, opt, &v, sizeof v, name, e);
}

/* Sets what CURVE needs on either side; the server side also gets a ZAP domain. */
static gdml_err set_curve(gdml_link *l, const gdml_link_options *o, gdml_errmsg *e)
{
    if (!o->key)
        return GDML_OK;
    if (!gdml_curve_available())
        return gdml_errmsg_set(e, GDML_ERR_TRANSPORT,
                               "this libzmq has no CURVE support; install a libzmq built with "
                               "libsodium, or turn CURVE off for this link");
    gdml_err err = GDML_OK;
    l->curve = true;
    if (l->router) {
        if (!o->allow)
            return gdml_errmsg_set(e, GDML_ERR_INVALID, "a CURVE server needs an allow-list");
        if (!l->t->zap && (err = zap_start(l->t->ctx, &l->t->zap, e)))
            return err;
        if ((err = zap_add_domain(l->t->zap, o->allow, l->zap_domain, sizeof l->zap_domain, e)))
            return err;
        l->allow = gdml_curve_allow_ref(o->allow);
        if ((err = set_int(l, ZMQ_CURVE_SERVER, 1, "ZMQ_CURVE_SERVER", e)) ||
            (err = set_opt(l, ZMQ_ZAP_DOMAIN, l->zap_domain, strlen(l->zap_domain),
                           "ZMQ_ZAP_DOMAIN", e)))
            return err;
    } else {
        if (!o->server_key || !o->server_name || !gdml_name_ok(o->server_name))
            return gdml_errmsg_set(e, GDML_ERR_INVALID,
                                   "a CURVE client needs the server's key and name");
        snprintf(l->server_name, sizeof l->server_name, "%s", o->server_name);
        if ((err = set_opt(l, ZMQ_CURVE_SERVERKEY, o->server_key, GDML_CURVE_KEY_BYTES,
                           "ZMQ_CURVE_SERVERKEY", e)) ||
            (err = set_opt(l, ZMQ_CURVE_PUBLICKEY, o->key->public_key, GDML_CURVE_KEY_BYTES,
                           "ZMQ_CURVE_PUBLICKEY", e)))
            return err;
    }
    return set_opt(l, ZMQ_CURVE_SECRETKEY, o->key->secret_key, GDML_CURVE_KEY_BYTES,
                   "ZMQ_CURVE_SECRETKEY", e);
}

/* Creates the socket and sets the options both kinds of link share. */
static gdml_err link_open(gdml_transport *t, int type, const gdml_link_options *o,
                          const char *endpoint, gdml_link **out, gdml_errmsg *e)
{
    static const gdml_link_options defaults;
    if (!o)
        o = &defaults;
    if (strlen(endpoint) >= ENDPOINT_MAX)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "endpoint is longer than %d bytes",
                               ENDPOINT_MAX - 1);
    gdml_link *l = calloc(1, sizeof *l);
    if (!l)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "cannot allocate a link");
    l->t = t;
    l->router = type == ZMQ_ROUTER;
    l->watch_id = -1;
    l->max_backlog = o->max_backlog ? o->max_backlog : GDML_LINK_DEFAULT_BACKLOG;
    if (l->max_backlog < GDML_LINK_MIN_BACKLOG) {
        free(l);
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "a link's backlog bound of %llu bytes is below the %llu that "
                               "frames in flight need (net.max_peer_bytes)",
                               (unsigned long long)o->max_backlog,
                               (unsigned long long)GDML_LINK_MIN_BACKLOG);
    }
    l->drop_after_ms = o->drop_after_ms > 0 ? o->drop_after_ms : GDML_LINK_DEFAULT_DROP_MS;
    snprintf(l->endpoint, sizeof l->endpoint, "%s", endpoint);
    l->sock = zmq_socket(t->ctx, type);
    if (!l->sock) {
        int err = zmq_errno();
        free(l);
        return gdml_errmsg_set(e, GDML_ERR_TRANSPORT, "cannot create a ZeroMQ socket: %s",
                               zmq_strerror(err));
    }
    atomic_fetch_add(&t->links, 1);
    /* ZeroMQ drops the connection of a peer that announces a bigger frame
     * before allocating it, and stops reading a connection once rcvhwm
     * frames wait: so what one peer can make us hold is bounded. */
    int64_t max_frame = (int64_t)GDML_FRAME_MAX;
    /* Half the bound for frames ZeroMQ holds; the guard cuts at three quarters,
     * which leaves room for what arrives between two of its looks. */
    int rcvhwm = (int)(l->max_backlog / 2 / GDML_FRAME_MAX);
    if (rcvhwm < 4)
        rcvhwm = 4;
    /* The kernel's share: an eighth of the bound (8 MiB by default, enough for
     * 80 MB/s over a 100 ms round trip; raise net.max_peer_bytes for more). */
    int rcvbuf = (int)(l->max_backlog / 8 < INT32_MAX ? l->max_backlog / 8 : INT32_MAX);
    gdml_err err = GDML_OK;
    if ((err = set_int(l, ZMQ_LINGER, LINK_LINGER_MS, "ZMQ_LINGER", e)) ||
        (err = set_int(l, ZMQ_SNDHWM, LINK_SNDHWM, "ZMQ_SNDHWM", e)) ||
        (err = set_int(l, ZMQ_RCVHWM, rcvhwm, "ZMQ_RCVHWM", e)) ||
        (err = set_int(l, ZMQ_RCVBUF, rcvbuf, "ZMQ_RCVBUF", e)) ||
        (err = set_opt(l, ZMQ_MAXMSGSIZE, &max_frame, sizeof max_frame, "ZMQ_MAXMSGSIZE", e)))
        goto fail;
    if (l->router &&
        (err = set_int(l, ZMQ_ROUTER_MANDATORY, 1, "ZMQ_ROUTER_MANDATORY", e)))
        goto fail;
    if ((err = set_curve(l, o, e)))
        goto fail;
    char what[96];
    snprintf(what, sizeof what, "%s %.80s", l->router ? "link bound to" : "link to", endpoint);
    if ((err = guard_watch(t->guard, l->sock, l->max_backlog / 4 * 3, what, &l->watch_id, e)))
        goto fail;
    l->boxes = calloc(1, sizeof *l->boxes);
    l->cap_boxes = 1;
    l->n_boxes = l->router ? 0 : 1; /* a DEALER's single outbox always exists */
    if (!l->boxes) {
        err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "cannot allocate a link");
        goto fail;
    }
    *out = l;
    return GDML_OK;
fail:
    gdml_link_close(&l);
    return err;
}

gdml_err gdml_link_bind(gdml_transport *t, const char *endpoint, const gdml_link_options *opts,
                        gdml_link **out, gdml_errmsg *e)
{
    gdml_link *l = NULL;
    gdml_err err = link_open(t, ZMQ_ROUTER, opts, endpoint, &l, e);
    if (err)
        return err;
    if (zmq_bind(l->sock, endpoint) != 0) {
        err = gdml_errmsg_set(e, GDML_ERR_TRANSPORT, "cannot bind to '%s': %s", endpoint,
                              zmq_strerror(zmq_errno()));
        gdml_link_close(&l);
        return err;
    }
    size_t len = sizeof l->endpoint;
    if (zmq_getsockopt(l->sock, ZMQ_LAST_ENDPOINT, l->endpoint, &len) != 0) {
        err = gdml_errmsg_set(e, GDML_ERR_TRANSPORT, "cannot read the bound endpoint: %s",
                              zmq_strerror(zmq_errno()));
        gdml_link_close(&l);
        return err;
    }
    *out = l;
    return GDML_OK;
}

gdml_err gdml_link_connect(gdml_transport *t, const char *endpoint, const gdml_link_options *opts,
                           gdml_link **out, gdml_errmsg *e)
{
    gdml_link *l = NULL;
    gdml_err err = link_open(t, ZMQ_DEALER, opts, endpoint, &l, e);
    if (err)
        return err;
    if (zmq_connect(l->sock, endpoint) != 0) {
        err = gdml_errmsg_set(e, GDML_ERR_TRANSPORT, "cannot connect to '%s': %s", endpoint,
                              zmq_strerror(zmq_errno()));
        gdml_link_close(&l);
        return err;
    }
    *out = l;
    return GDML_OK;
}

static void box_clear(outbox *b)
{
    for (size_t i = 0; i < b->n; i++)
        gdml_blob_unref(&b->q[(b->head + i) % b->cap]);
    free(b->q);
    b->q = NULL;
    b->head = b->n = b->cap = 0;
}

void gdml_link_close(gdml_link **lp)
{
    if (!lp || !*lp)
        return;
    gdml_link *l = *lp;
    *lp = NULL;
    for (size_t i = 0; i < l->n_boxes; i++)
        box_clear(&l->boxes[i]);
    free(l->boxes);
    free(l->routes);
    free(l->dropped);
    if (l->sock) {
        if (l->watch_id >= 0)
            guard_unwatch(l->t->guard, l->sock, l->watch_id);
        zmq_close(l->sock);
        atomic_fetch_sub(&l->t->links, 1);
    }
    if (l->t->zap && *l->zap_domain)
        zap_remove_domain(l->t->zap, l->zap_domain);
    gdml_curve_allow_unref(&l->allow);
    free(l);
}

gdml_err gdml_link_endpoint(const gdml_link *l, char *buf, size_t cap)
{
    size_t n = strlen(l->endpoint);
    if (n >= cap)
        return GDML_ERR_INVALID;
    memcpy(buf, l->endpoint, n + 1);
    return GDML_OK;
}

bool gdml_link_curve(const gdml_link *l)
{
    return l->curve;
}

void gdml_link_stats_get(const gdml_link *l, gdml_link_stats *out)
{
    *out = l->stats;
    out->frames_queued = 0;
    for (size_t i = 0; i < l->n_boxes; i++)
        out->frames_queued += l->boxes[i].n;
    out->backlog_cutoffs = guard_cutoffs(l->t->guard, l->watch_id);
    /* The guard sees every failed handshake, the allow-list's refusals included. */
    out->auth_refused = guard_handshake_failures(l->t->guard, l->watch_id);
}

const char *gdml_peer_str(const gdml_peer *p, char *buf, size_t cap)
{
    if (cap == 0)
        return buf;
    size_t o = 0;
    size_t len = p->len < GDML_PEER_ID_MAX ? p->len : GDML_PEER_ID_MAX;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = p->id[i];
        char tmp[8];
        size_t n = 1;
        if (c >= 0x20 && c < 0x7f && c != '\\')
            tmp[0] = (char)c;
        else
            n = (size_t)snprintf(tmp, sizeof tmp, "\\x%02x", c);
        if (o + n >= cap)
            break;
        memcpy(buf + o, tmp, n);
        o += n;
    }
    buf[o] = '\0';
    return buf;
}

bool gdml_peer_eq(const gdml_peer *a, const gdml_peer *b)
{
    return a->len == b->len && memcmp(a->id, b->id, a->len) == 0;
}

/* ---- routes: which connection a peer id is, for disconnects ---- */

static route *find_route(gdml_link *l, const gdml_peer *p)
{
    for (size_t i = 0; i < l->n_routes; i++)
        if (gdml_peer_eq(&l->routes[i].peer, p))
            return &l->routes[i];
    return NULL;
}

static void note_route(gdml_link *l, const gdml_peer *p, int fd, int64_t now)
{
    route *r = find_route(l, p);
    if (!r) {
        if (!l->routes && !(l->routes = calloc(ROUTES_MAX, sizeof *l->routes)))
            return;
        if (l->n_routes < ROUTES_MAX) {
            r = &l->routes[l->n_routes++];
        } else { /* full: forget the one heard from longest ago */
            r = &l->routes[0];
            for (size_t i = 1; i < l->n_routes; i++)
                if (l->routes[i].seen_ms < r->seen_ms)
                    r = &l->routes[i];
        }
        r->peer = *p;
        r->told_v1 = false;
    }
    r->fd = fd;
    r->seen_ms = now;
}

static void forget_route(gdml_link *l, const gdml_peer *p)
{
    route *r = find_route(l, p);
    if (r)
        *r = l->routes[--l->n_routes];
}

/* ---- sending ---- */

/* ZeroMQ calls this (possibly on its I/O thread) when a frame is done. */
static void blob_release(void *data, void *hint)
{
    (void)data;
    gdml_blob *b = hint;
    gdml_blob_unref(&b);
}

/* Tries to hand one frame to ZeroMQ now. 0, or EAGAIN, EHOSTUNREACH, ... */
static int try_send(gdml_link *l, const gdml_peer *peer, gdml_blob *frame)
{
    size_t len;
    const void *data = gdml_blob_view(frame, &len);
    if (l->router) {
        /* With ZMQ_ROUTER_MANDATORY the id frame fails for an unknown or
         * full peer, before anything is queued. */
        if (zmq_send(l->sock, peer->id, peer->len, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1)
            return zmq_errno();
    }
    zmq_msg_t m;
    gdml_blob *ref = gdml_blob_ref(frame);
    if (zmq_msg_init_data(&m, (void *)data, len, blob_release, ref) != 0) {
        gdml_blob_unref(&ref);
        return ENOMEM;
    }
    int rc;
    while ((rc = zmq_msg_send(&m, l->sock, ZMQ_DONTWAIT)) == -1 && zmq_errno() == EINTR)
        ;
    if (rc == -1) {
        int err = zmq_errno();
        zmq_msg_close(&m); /* drops the reference taken above */
        return err;
    }
    l->stats.bytes_sent += gdml_wire_bytes(len, l->curve);
    l->stats.frames_sent++;
    return 0;
}

static outbox *find_box(gdml_link *l, const gdml_peer *peer)
{
    if (!l->router)
        return &l->boxes[0];
    for (size_t i = 0; i < l->n_boxes; i++)
        if (gdml_peer_eq(&l->boxes[i].peer, peer))
            return &l->boxes[i];
    return NULL;
}

static outbox *add_box(gdml_link *l, const gdml_peer *peer)
{
    if (l->n_boxes == l->cap_boxes) {
        size_t cap = 2 * l->cap_boxes;
        outbox *grown = realloc(l->boxes, cap * sizeof *grown);
        if (!grown)
            return NULL;
        l->boxes = grown;
        l->cap_boxes = cap;
    }
    outbox *b = &l->boxes[l->n_boxes++];
    memset(b, 0, sizeof *b);
    b->peer = *peer;
    return b;
}

static void remove_box(gdml_link *l, outbox *b)
{
    box_clear(b);
    if (l->router)
        *b = l->boxes[--l->n_boxes];
}

static bool box_push(outbox *b, gdml_blob *frame, int64_t now)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 16;
        gdml_blob **q = malloc(cap * sizeof *q);
        if (!q)
            return false;
        for (size_t i = 0; i < b->n; i++)
            q[i] = b->q[(b->head + i) % b->cap];
        free(b->q);
        b->q = q;
        b->head = 0;
        b->cap = cap;
    }
    if (b->n == 0)
        b->stuck_since = now;
    b->q[(b->head + b->n++) % b->cap] = gdml_blob_ref(frame);
    return true;
}

static void report_dropped(gdml_link *l, const gdml_peer *peer)
{
    if (l->n_dropped == l->cap_dropped) {
        size_t cap = l->cap_dropped ? 2 * l->cap_dropped : 8;
        gdml_peer *grown = realloc(l->dropped, cap * sizeof *grown);
        if (!grown)
            return;
        l->dropped = grown;
        l->cap_dropped = cap;
    }
    l->dropped[l->n_dropped++] = *peer;
}

/* Drops a bound link's peer: its frames, its connection, and a report. */
static void drop_peer(gdml_link *l, outbox *b)
{
    gdml_peer peer = b->peer;
    remove_box(l, b);
    gdml_link_disconnect(l, &peer);
    report_dropped(l, &peer);
    l->stats.peers_dropped++;
}

static const char *who(const gdml_link *l, const gdml_peer *p, char *buf, size_t cap)
{
    if (l->router && p)
        return gdml_peer_str(p, buf, cap);
    snprintf(buf, cap, "%s", l->endpoint);
    return buf;
}

gdml_err gdml_link_send(gdml_link *l, const gdml_peer *peer, gdml_blob *frame, gdml_errmsg *e)
{
    char name[PEER_STR_MAX];
    if (l->router && (!peer || peer->len == 0 || peer->len > GDML_PEER_ID_MAX))
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "a bound link needs a peer to send to");
    outbox *b = find_box(l, peer);
    if (!b || b->n == 0) { /* nothing waits: try at once */
        int err = try_send(l, peer, frame);
        if (err == 0)
            return GDML_OK;
        if (err == EHOSTUNREACH)
            return gdml_errmsg_set(e, GDML_ERR_NOTFOUND, "peer '%s' is not connected",
                                   who(l, peer, name, sizeof name));
        if (err != EAGAIN)
            return gdml_errmsg_set(e, GDML_ERR_TRANSPORT, "cannot send to '%s': %s",
                                   who(l, peer, name, sizeof name), zmq_strerror(err));
    }
    if (!b && !(b = add_box(l, peer)))
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for an outbox");
    if (b->n >= OUTBOX_MAX) {
        if (!l->router) { /* one peer: make room, the oldest frame is the stalest */
            gdml_blob_unref(&b->q[b->head]);
            b->head = (b->head + 1) % b->cap;
            b->n--;
        } else {
            return gdml_errmsg_set(e, GDML_ERR_AGAIN, "peer '%s' has %d frames waiting",
                                   who(l, peer, name, sizeof name), OUTBOX_MAX);
        }
    }
    if (!box_push(b, frame, gdml_now_ms()))
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for an outbox");
    return GDML_OK;
}

int64_t gdml_link_flush(gdml_link *l, int64_t now_ms)
{
    int64_t wait = -1;
    for (size_t i = 0; i < l->n_boxes;) {
        outbox *b = &l->boxes[i];
        int err = 0;
        while (b->n > 0 && (err = try_send(l, &b->peer, b->q[b->head])) == 0) {
            gdml_blob_unref(&b->q[b->head]);
            b->head = (b->head + 1) % b->cap;
            b->n--;
            b->stuck_since = now_ms;
        }
        if (b->n == 0) {
            if (l->router) {
                remove_box(l, b);
                continue;
            }
        } else if (l->router && (err == EHOSTUNREACH || now_ms - b->stuck_since >= l->drop_after_ms)) {
            drop_peer(l, b); /* gone, or not reading: it delays nobody else */
            continue;
        } else {
            wait = RETRY_MS;
        }
        i++;
    }
    return wait;
}

bool gdml_link_next_dropped(gdml_link *l, gdml_peer *out)
{
    if (l->n_dropped == 0)
        return false;
    *out = l->dropped[0];
    memmove(l->dropped, l->dropped + 1, --l->n_dropped * sizeof *l->dropped);
    return true;
}

void gdml_link_disconnect(gdml_link *l, const gdml_peer *peer)
{
    if (!l->router)
        return;
    outbox *b = find_box(l, peer);
    if (b)
        remove_box(l, b);
    route *r = find_route(l, peer);
    if (r) {
        guard_cut(l->t->guard, r->fd);
        forget_route(l, peer);
    }
}

gdml_err gdml_link_send_raw(gdml_link *l, const gdml_peer *peer, const void *const *frames,
                            const size_t *sizes, size_t n)
{
    if (n == 0 || (l->router && (!peer || peer->len == 0)))
        return GDML_ERR_INVALID;
    if (l->router && zmq_send(l->sock, peer->id, peer->len, ZMQ_SNDMORE) == -1)
        return GDML_ERR_TRANSPORT;
    for (size_t i = 0; i < n; i++) {
        int rc;
        while ((rc = zmq_send(l->sock, frames[i], sizes[i], i + 1 < n ? ZMQ_SNDMORE : 0)) == -1 &&
               zmq_errno() == EINTR)
            ;
        if (rc == -1)
            return GDML_ERR_TRANSPORT;
        l->stats.bytes_sent += gdml_wire_bytes(sizes[i], l->curve);
    }
    l->stats.frames_sent++;
    return GDML_OK;
}

/* ---- receiving ---- */

static zmq_msg_t *rx_msg(gdml_rx *rx)
{
    return (zmq_msg_t *)rx->frame_;
}

void gdml_rx_release(gdml_rx *rx)
{
    if (!rx)
        return;
    if (rx->held_)
        zmq_msg_close(rx_msg(rx));
    rx->held_ = false;
    rx->payload = NULL;
}

static int recv_part(void *sock, zmq_msg_t *m, int flags)
{
    int rc;
    while ((rc = zmq_msg_recv(m, sock, flags)) == -1 && zmq_errno() == EINTR)
        ;
    return rc;
}

/*
 * Tells a protocol-1 peer, in words it can decode, to upgrade: once per
 * connection, only from a bound link (so two gdml processes never answer
 * each other's refusals), and never waiting (a peer that does not read it
 * loses it).
 */
static void refuse_v1(gdml_link *l, const gdml_peer *peer)
{
    route *r = find_route(l, peer);
    if (!l->router || !r || r->told_v1)
        return;
    r->told_v1 = true;
    uint8_t buf[512];
    size_t len;
    if (gdml_msg_encode_v1_refusal("this peer speaks gdml protocol 2 and refuses protocol 1; "
                                   "upgrade gdml on this host",
                                   buf, sizeof buf, &len))
        return;
    if (zmq_send(l->sock, peer->id, peer->len, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
        zmq_send(l->sock, buf, len, ZMQ_DONTWAIT) >= 0)
        l->stats.bytes_sent += gdml_wire_bytes(len, l->curve);
}

static gdml_err refuse(gdml_link *l, gdml_rx *rx, gdml_reason reason, gdml_err err, gdml_errmsg *e)
{
    char name[PEER_STR_MAX];
    gdml_rx_release(rx);
    rx->reason = reason;
    l->stats.frames_rejected++;
    if (*rx->name)
        gdml_errmsg_prefix(e, "from '%s' (%s): ", rx->name, who(l, &rx->peer, name, sizeof name));
    else
        gdml_errmsg_prefix(e, "from %s: ", who(l, &rx->peer, name, sizeof name));
    return err;
}

gdml_err gdml_link_recv(gdml_link *l, gdml_rx *rx, gdml_errmsg *e)
{
    memset(rx, 0, offsetof(gdml_rx, frame_));
    rx->held_ = false;
    zmq_msg_t *m = rx_msg(rx);
    if (l->router) {
        zmq_msg_t id;
        zmq_msg_init(&id);
        if (recv_part(l->sock, &id, ZMQ_DONTWAIT) == -1) {
            int err = zmq_errno();
            zmq_msg_close(&id);
            if (err == EAGAIN)
                return GDML_ERR_AGAIN;
            return gdml_errmsg_set(e, GDML_ERR_TRANSPORT, "cannot receive: %s", zmq_strerror(err));
        }
        size_t n = zmq_msg_size(&id);
        rx->peer.len = n < GDML_PEER_ID_MAX ? n : GDML_PEER_ID_MAX;
        memcpy(rx->peer.id, zmq_msg_data(&id), rx->peer.len);
        zmq_msg_close(&id);
        zmq_msg_init(m);
        if (recv_part(l->sock, m, 0) == -1) { /* ZeroMQ delivers messages whole */
            zmq_msg_close(m);
            return gdml_errmsg_set(e, GDML_ERR_TRANSPORT, "cannot receive a frame: %s",
                                   zmq_strerror(zmq_errno()));
        }
    } else {
        zmq_msg_init(m);
        if (recv_part(l->sock, m, ZMQ_DONTWAIT) == -1) {
            int err = zmq_errno();
            zmq_msg_close(m);
            if (err == EAGAIN)
                return GDML_ERR_AGAIN;
            return gdml_errmsg_set(e, GDML_ERR_TRANSPORT, "cannot receive: %s", zmq_strerror(err));
        }
    }
    rx->held_ = true;
    int fd = zmq_msg_get(m, ZMQ_SRCFD);
    rx->wire_bytes = gdml_wire_bytes(zmq_msg_size(m), l->curve);
    bool multipart = zmq_msg_more(m);
    while (zmq_msg_more(m)) { /* read the rest, so the next receive starts clean */
        zmq_msg_t extra;
        zmq_msg_init(&extra);
        if (recv_part(l->sock, &extra, 0) == -1) {
            zmq_msg_close(&extra);
            break;
        }
        rx->wire_bytes += gdml_wire_bytes(zmq_msg_size(&extra), l->curve);
        bool more = zmq_msg_more(&extra);
        zmq_msg_close(&extra);
        if (!more)
            break;
    }
    guard_consumed(l->t->guard, fd, rx->wire_bytes);
    l->stats.bytes_received += rx->wire_bytes;
    if (l->router)
        note_route(l, &rx->peer, fd, gdml_now_ms());
    if (l->curve && !l->router) { /* the handshake proved the server holds its key */
        snprintf(rx->name, sizeof rx->name, "%s", l->server_name);
        rx->authenticated = true;
    } else if (l->curve) {
        const char *user = zmq_msg_gets(m, "User-Id");
        if (user && gdml_name_ok(user)) {
            snprintf(rx->name, sizeof rx->name, "%s", user);
            rx->authenticated = true;
        }
    }
    if (multipart)
        return refuse(l, rx, GDML_REASON_MULTIPART,
                      gdml_errmsg_set(e, GDML_ERR_PROTO,
                                      "a message of several frames; gdml sends one frame each"),
                      e);

    uint32_t other = 0;
    gdml_err err = gdml_msg_decode(zmq_msg_data(m), zmq_msg_size(m), &rx->header, &rx->payload,
                                   &other, e);
    if (err == GDML_ERR_VERSION) {
        if (other == 1)
            refuse_v1(l, &rx->peer);
        return refuse(l, rx, GDML_REASON_VERSION, err, e);
    }
    if (err)
        return refuse(l, rx, GDML_REASON_MALFORMED, err, e);
    if (rx->authenticated) {
        if (*rx->header.sender && strcmp(rx->header.sender, rx->name) != 0)
            return refuse(l, rx, GDML_REASON_IDENTITY,
                          gdml_errmsg_set(e, GDML_ERR_PROTO,
                                          "says it is '%s' but its key belongs to '%s'",
                                          rx->header.sender, rx->name),
                          e);
    } else if (l->curve) {
        return refuse(l, rx, GDML_REASON_IDENTITY,
                      gdml_errmsg_set(e, GDML_ERR_PROTO, "no authenticated name on a CURVE link"),
                      e);
    } else if (!gdml_name_ok(rx->header.sender)) {
        return refuse(l, rx, GDML_REASON_MALFORMED,
                      gdml_errmsg_set(e, GDML_ERR_PROTO,
                                      "header field 'from' must name the sender on a plain link"),
                      e);
    } else {
        snprintf(rx->name, sizeof rx->name, "%s", rx->header.sender);
    }
    l->stats.frames_received++;
    return GDML_OK;
}

gdml_err gdml_link_poll(gdml_link *const *links, size_t n, int timeout_ms, bool *ready)
{
    enum { ON_STACK = 16 };
    zmq_pollitem_t stack_items[ON_STACK];
    zmq_pollitem_t *items = stack_items;
    assert(n <= INT32_MAX);
    if (n > ON_STACK && !(items = calloc(n, sizeof *items)))
        return GDML_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        items[i] = (zmq_pollitem_t){.socket = links[i]->sock, .events = ZMQ_POLLIN};
        ready[i] = false;
    }
    gdml_err err = GDML_OK;
    int rc = zmq_poll(items, (int)n, timeout_ms < 0 ? -1 : timeout_ms);
    if (rc == -1)
        err = zmq_errno() == EINTR ? GDML_ERR_INTERRUPTED : GDML_ERR_TRANSPORT;
    else if (rc == 0)
        err = GDML_ERR_AGAIN;
    else
        for (size_t i = 0; i < n; i++)
            ready[i] = (items[i].revents & ZMQ_POLLIN) != 0;
    if (items != stack_items)
        free(items);
    return err;
}
