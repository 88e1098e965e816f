/*
 * transport_send.c - sending on gdml links (transport.h), and the routes
 * that name a bound link's connections for disconnects.
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

#include "util.h"

#include <zmq.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Frames waiting in one outbox before its peer is dropped as hopeless. */
#define OUTBOX_MAX 65536
/* Routes remembered with their connection's descriptor, for disconnects. */
#define ROUTES_MAX 4096
/* How soon gdml_link_flush asks to be called again while frames wait. */
#define RETRY_MS 5

static void box_clear(outbox *b)
{
    for (size_t i = 0; i < b->n; i++)
        gdml_blob_unref(&b->q[(b->head + i) % b->cap]);
    free(b->q);
    b->q = NULL;
    b->head = b->n = b->cap = 0;
}

void link_free_queues(gdml_link *l)
{
    for (size_t i = 0; i < l->n_boxes; i++)
        box_clear(&l->boxes[i]);
    free(l->boxes);
    free(l->routes);
    free(l->dropped);
    l->boxes = NULL;
    l->routes = NULL;
    l->dropped = NULL;
    l->n_boxes = l->n_routes = l->n_dropped = 0;
}

/* ---- routes: which connection a peer id is, for disconnects ---- */

route *link_find_route(gdml_link *l, const gdml_peer *p)
{
    for (size_t i = 0; i < l->n_routes; i++)
        if (gdml_peer_eq(&l->routes[i].peer, p))
            return &l->routes[i];
    return NULL;
}

void link_note_route(gdml_link *l, const gdml_peer *p, int fd, int64_t now)
{
    route *r = link_find_route(l, p);
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
    route *r = link_find_route(l, p);
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

const char *link_who(const gdml_link *l, const gdml_peer *p, char *buf, size_t cap)
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
                                   link_who(l, peer, name, sizeof name));
        if (err != EAGAIN)
            return gdml_errmsg_set(e, GDML_ERR_TRANSPORT, "cannot send to '%s': %s",
                                   link_who(l, peer, name, sizeof name), zmq_strerror(err));
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
                                   link_who(l, peer, name, sizeof name), OUTBOX_MAX);
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
        } else if (l->router &&
                   (err == EHOSTUNREACH || now_ms - b->stuck_since >= l->drop_after_ms)) {
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
    route *r = link_find_route(l, peer);
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
