/*
 * transport.c - gdml links over ZeroMQ (transport.h): ROUTER sockets on the
 * binding side, DEALER sockets on the connecting side, one frame per
 * message, CURVE, and a byte count of every frame. This file opens and
 * closes transports and links; transport_send.c sends and
 * transport_recv.c receives. ZeroMQ errors become gdml_err codes and
 * readable text here.
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

/* How long a closing link tries to deliver what is still queued. */
#define LINK_LINGER_MS 1000
/* Frames ZeroMQ queues per peer before a send has to wait in the outbox. */
#define LINK_SNDHWM 1000
/* What CURVE adds to each frame: "\x07MESSAGE", an 8-byte nonce, a 16-byte
 * MAC and the flags byte (libzmq's curve_mechanism_base_t::encode). */
#define CURVE_FRAME_OVERHEAD 33
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
    if (l->router && (err = set_int(l, ZMQ_ROUTER_MANDATORY, 1, "ZMQ_ROUTER_MANDATORY", e)))
        goto fail;
    if (o->dead_after_ms > 0) {
        /* ZMTP heartbeats: a PING a third of the timeout apart; a connect
         * attempt gives up after a second, so a healed network is found
         * within about a second rather than after SYN backoff. */
        int timeout = o->dead_after_ms < INT32_MAX ? (int)o->dead_after_ms : INT32_MAX;
        int ivl = timeout / 3 > 100 ? timeout / 3 : 100;
        if ((err = set_int(l, ZMQ_HEARTBEAT_IVL, ivl, "ZMQ_HEARTBEAT_IVL", e)) ||
            (err = set_int(l, ZMQ_HEARTBEAT_TIMEOUT, timeout, "ZMQ_HEARTBEAT_TIMEOUT", e)) ||
            (err = set_int(l, ZMQ_HEARTBEAT_TTL, timeout, "ZMQ_HEARTBEAT_TTL", e)) ||
            (!l->router && (err = set_int(l, ZMQ_CONNECT_TIMEOUT, 1000, "ZMQ_CONNECT_TIMEOUT", e))))
            goto fail;
    }
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

void gdml_link_close(gdml_link **lp)
{
    if (!lp || !*lp)
        return;
    gdml_link *l = *lp;
    *lp = NULL;
    link_free_queues(l);
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
    out->connects = guard_connects(l->t->guard, l->watch_id);
}

bool gdml_link_reconnected(gdml_link *l)
{
    uint64_t now = guard_connects(l->t->guard, l->watch_id);
    bool again = l->connects_seen > 0 && now > l->connects_seen;
    l->connects_seen = now;
    return again;
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
