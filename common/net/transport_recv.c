/*
 * transport_recv.c - receiving on gdml links (transport.h): one frame at a
 * time, decoded and checked against the sender's authenticated name before
 * the program sees it, and polling several links at once.
 */
#include "transport.h"
#include "transport_impl.h"

#include "util.h"

#include <zmq.h>

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(zmq_msg_t) <= sizeof(((gdml_rx *)0)->frame_), "gdml_rx holds a zmq_msg_t");

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
    route *r = link_find_route(l, peer);
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
        gdml_errmsg_prefix(e, "from '%s' (%s): ", rx->name,
                           link_who(l, &rx->peer, name, sizeof name));
    else
        gdml_errmsg_prefix(e, "from %s: ", link_who(l, &rx->peer, name, sizeof name));
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
        link_note_route(l, &rx->peer, fd, gdml_now_ms());
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
    gdml_err err =
        gdml_msg_decode(zmq_msg_data(m), zmq_msg_size(m), &rx->header, &rx->payload, &other, e);
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
