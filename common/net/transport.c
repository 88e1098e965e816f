/*
 * transport.c - gdml links over ZeroMQ: ROUTER sockets on the binding side,
 * DEALER sockets on the connecting side, whole validated gdml messages in
 * and out, and a byte count of every frame. This is the only file that
 * includes zmq.h; ZeroMQ errors become gdml_err codes and readable text here.
 *
 * Payload blobs are sent without copying: each frame holds its own blob
 * reference, which ZeroMQ drops (blob_release) once the bytes have left.
 * Everything a send can fail on (allocation, encoding, the first frame) is
 * done or checked before anything is queued, and ZeroMQ queues a multipart
 * message atomically when its last frame is sent, so a failed send leaves
 * nothing behind.
 */
#include "transport.h"

#include <zmq.h>

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long a closing link tries to deliver what is still queued. */
#define LINK_LINGER_MS 1000
/* Messages queued per peer and direction before sends block or fail. The
 * protocol is request/reply, so queues stay short; the bound is for bursts of
 * worker pushes, well above ZeroMQ's default of 1000. */
#define LINK_HWM 10000
#define ENDPOINT_MAX 512
/* gdml_peer_str output: every byte escaped as \xNN in the worst case. */
#define PEER_STR_MAX (GDML_PEER_ID_MAX * 4 + 1)
/* The header frame and the payload frames. */
#define FRAMES_MAX (GDML_MSG_MAX_PAYLOADS + 1)
/* Received payloads are at least this aligned, so that float and double
 * arrays can be read in place. ZeroMQ carves small frames out of its receive
 * buffer at any offset; those (and only those) are copied. */
#define PAYLOAD_ALIGN 8

struct gdml_transport {
    void *ctx;
    atomic_int links; /* open links; all must be closed before the context ends */
};

struct gdml_link {
    gdml_transport *t;
    void *sock;
    bool router;
    int sndtimeo;                /* the ZMQ_SNDTIMEO currently set */
    char endpoint[ENDPOINT_MAX]; /* resolved for bound links */
    gdml_link_stats stats;
};

/* What gdml_rx.frames_ points to. */
struct rx_frames {
    size_t n; /* msg[0..n) are initialised */
    zmq_msg_t msg[FRAMES_MAX];
    void *copy[GDML_MSG_MAX_PAYLOADS]; /* aligned copies of misaligned payloads */
};

/* What a frame of size bytes takes on the wire under ZMTP 3: a flags byte,
 * then a 1-byte length up to 255 bytes or an 8-byte length above. */
static uint64_t frame_wire_bytes(size_t size)
{
    return (uint64_t)size + (size <= 255 ? 2 : 9);
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

/* Creates the socket and sets the options both kinds of link share. */
static gdml_err link_open(gdml_transport *t, int type, gdml_link **out, gdml_errmsg *e)
{
    gdml_link *l = calloc(1, sizeof *l);
    if (!l)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "cannot allocate a link");
    l->t = t;
    l->router = type == ZMQ_ROUTER;
    l->sndtimeo = -1;
    l->sock = zmq_socket(t->ctx, type);
    if (!l->sock) {
        int err = zmq_errno();
        free(l);
        return gdml_errmsg_set(e, GDML_ERR_TRANSPORT, "cannot create a ZeroMQ socket: %s",
                               zmq_strerror(err));
    }
    atomic_fetch_add(&t->links, 1);
    /* ZeroMQ drops the connection of a peer that sends a bigger frame, so a
     * hostile peer cannot make this process allocate more than that. */
    int64_t max_msg = (int64_t)GDML_MSG_PAYLOAD_MAX;
    gdml_err err = GDML_OK;
    if ((err = set_int(l, ZMQ_LINGER, LINK_LINGER_MS, "ZMQ_LINGER", e)) != GDML_OK ||
        (err = set_int(l, ZMQ_SNDHWM, LINK_HWM, "ZMQ_SNDHWM", e)) != GDML_OK ||
        (err = set_int(l, ZMQ_RCVHWM, LINK_HWM, "ZMQ_RCVHWM", e)) != GDML_OK ||
        (err = set_opt(l, ZMQ_MAXMSGSIZE, &max_msg, sizeof max_msg, "ZMQ_MAXMSGSIZE", e)) !=
            GDML_OK)
        goto fail;
    if (l->router) {
        /* Fail a send to an unknown peer (EHOSTUNREACH) instead of dropping
         * it silently, and let a restarted peer with the same name take over
         * its old routing id at once. */
        if ((err = set_int(l, ZMQ_ROUTER_MANDATORY, 1, "ZMQ_ROUTER_MANDATORY", e)) != GDML_OK ||
            (err = set_int(l, ZMQ_ROUTER_HANDOVER, 1, "ZMQ_ROUTER_HANDOVER", e)) != GDML_OK)
            goto fail;
    }
    *out = l;
    return GDML_OK;
fail:
    gdml_link_close(&l);
    return err;
}

gdml_err gdml_link_bind(gdml_transport *t, const char *endpoint, gdml_link **out, gdml_errmsg *e)
{
    if (strlen(endpoint) >= ENDPOINT_MAX)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "endpoint is longer than %d bytes",
                               ENDPOINT_MAX - 1);
    gdml_link *l = NULL;
    gdml_err err = link_open(t, ZMQ_ROUTER, &l, e);
    if (err != GDML_OK)
        return err;
    if (zmq_bind(l->sock, endpoint) != 0) {
        err = gdml_errmsg_set(e, GDML_ERR_TRANSPORT, "cannot bind to '%s': %s", endpoint,
                              zmq_strerror(zmq_errno()));
        gdml_link_close(&l);
        return err;
    }
    /* Resolve "tcp://host:*" to the port the kernel picked. */
    size_t n = sizeof l->endpoint;
    if (zmq_getsockopt(l->sock, ZMQ_LAST_ENDPOINT, l->endpoint, &n) != 0)
        snprintf(l->endpoint, sizeof l->endpoint, "%s", endpoint);
    *out = l;
    return GDML_OK;
}

gdml_err gdml_link_connect(gdml_transport *t, const char *endpoint, const char *identity,
                           gdml_link **out, gdml_errmsg *e)
{
    if (strlen(endpoint) >= ENDPOINT_MAX)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "endpoint is longer than %d bytes",
                               ENDPOINT_MAX - 1);
    size_t id_len = identity ? strlen(identity) : 0;
    if (id_len == 0 || id_len > GDML_PEER_ID_MAX)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "link identity must be 1..%d bytes, not %zu",
                               GDML_PEER_ID_MAX, id_len);
    gdml_link *l = NULL;
    gdml_err err = link_open(t, ZMQ_DEALER, &l, e);
    if (err != GDML_OK)
        return err;
    if ((err = set_opt(l, ZMQ_ROUTING_ID, identity, id_len, "ZMQ_ROUTING_ID", e)) != GDML_OK)
        goto fail;
    if (zmq_connect(l->sock, endpoint) != 0) {
        err = gdml_errmsg_set(e, GDML_ERR_TRANSPORT, "cannot connect to '%s': %s", endpoint,
                              zmq_strerror(zmq_errno()));
        goto fail;
    }
    snprintf(l->endpoint, sizeof l->endpoint, "%s", endpoint);
    *out = l;
    return GDML_OK;
fail:
    gdml_link_close(&l);
    return err;
}

void gdml_link_close(gdml_link **lp)
{
    if (!lp || !*lp)
        return;
    gdml_link *l = *lp;
    *lp = NULL;
    if (l->sock) {
        zmq_close(l->sock);
        atomic_fetch_sub(&l->t->links, 1);
    }
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

void gdml_link_stats_get(const gdml_link *l, gdml_link_stats *out)
{
    *out = l->stats;
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

/* Who is on the other end, for error texts: the peer id on a ROUTER, the
 * endpoint on a DEALER (whose only peer is the server it connected to). */
static const char *who(const gdml_link *l, const gdml_peer *p, char *buf, size_t cap)
{
    if (l->router && p)
        return gdml_peer_str(p, buf, cap);
    snprintf(buf, cap, "%s", l->endpoint);
    return buf;
}

/* ---- sending ---- */

/* ZeroMQ calls this (possibly on its I/O thread) when a payload frame is done. */
static void blob_release(void *data, void *hint)
{
    (void)data;
    gdml_blob *b = hint;
    gdml_blob_unref(&b);
}

static gdml_err set_sndtimeo(gdml_link *l, int timeout_ms, gdml_errmsg *e)
{
    int v = timeout_ms < 0 ? -1 : timeout_ms;
    if (v == l->sndtimeo)
        return GDML_OK;
    gdml_err err = set_int(l, ZMQ_SNDTIMEO, v, "ZMQ_SNDTIMEO", e);
    if (err == GDML_OK)
        l->sndtimeo = v;
    return err;
}

/* Translates the failure of a message's first frame, which queues nothing. */
static gdml_err first_frame_error(const char *peer, int err, int timeout_ms, gdml_errmsg *e)
{
    switch (err) {
    case EHOSTUNREACH:
        return gdml_errmsg_set(e, GDML_ERR_NOTFOUND, "peer '%s' is not connected", peer);
    case EAGAIN:
        return gdml_errmsg_set(e, GDML_ERR_TIMEOUT,
                               "peer '%s' did not take the message within %d ms (queue full or "
                               "not connected)",
                               peer, timeout_ms);
    case EINTR:
        return gdml_errmsg_set(e, GDML_ERR_INTERRUPTED, "sending to peer '%s' was interrupted",
                               peer);
    default:
        return gdml_errmsg_set(e, GDML_ERR_TRANSPORT, "cannot send to peer '%s': %s", peer,
                               zmq_strerror(err));
    }
}

/* Sends a later frame of a message whose first frame went out. ZeroMQ does
 * not block on those; a signal can still interrupt the call before it starts. */
static int send_more(void *sock, zmq_msg_t *m, int flags)
{
    int rc;
    while ((rc = zmq_msg_send(m, sock, flags)) == -1 && zmq_errno() == EINTR)
        ;
    return rc;
}

gdml_err gdml_link_send(gdml_link *l, const gdml_peer *peer, const gdml_msg_header *h,
                        gdml_blob *const *payloads, size_t n, int timeout_ms, gdml_errmsg *e)
{
    char name[PEER_STR_MAX];
    if (l->router && (!peer || peer->len == 0 || peer->len > GDML_PEER_ID_MAX))
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "a bound link needs a peer to send to");
    who(l, peer, name, sizeof name);
    if (n != h->n_payloads || n > GDML_MSG_MAX_PAYLOADS)
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "message to '%s' has %zu payloads but its header lists %u", name, n,
                               h->n_payloads);
    gdml_msg_header hdr = *h;
    for (size_t i = 0; i < n; i++) {
        if (!payloads[i])
            return gdml_errmsg_set(e, GDML_ERR_INVALID, "message to '%s': payload %zu is NULL",
                                   name, i);
        size_t size = gdml_blob_size(payloads[i]);
        if (hdr.sizes[i] == 0)
            hdr.sizes[i] = size;
        if (hdr.sizes[i] != size)
            return gdml_errmsg_set(e, GDML_ERR_INVALID,
                                   "message to '%s': payload %zu is %zu bytes, header says %llu",
                                   name, i, size, (unsigned long long)hdr.sizes[i]);
    }
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = 0;
    if (gdml_msg_encode(&hdr, buf, sizeof buf, &len) != GDML_OK)
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "cannot encode a %s header for '%s': type, encoding, sender, text "
                               "or payload size out of range",
                               gdml_msg_type_name(hdr.type), name);

    /* Build every frame before sending any, so that nothing fails half-way. */
    zmq_msg_t frames[FRAMES_MAX];
    size_t nf = 0;
    gdml_err err = GDML_OK;
    if (zmq_msg_init_size(&frames[0], len) != 0) {
        err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "cannot allocate a header frame");
        goto out;
    }
    memcpy(zmq_msg_data(&frames[0]), buf, len);
    nf = 1;
    for (size_t i = 0; i < n; i++) {
        gdml_blob *b = gdml_blob_ref(payloads[i]);
        if (zmq_msg_init_data(&frames[nf], gdml_blob_data(b), gdml_blob_size(b), blob_release, b) !=
            0) {
            gdml_blob_unref(&b);
            err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "cannot allocate a payload frame");
            goto out;
        }
        nf++;
    }
    if ((err = set_sndtimeo(l, timeout_ms, e)) != GDML_OK)
        goto out;

    size_t next = 0;
    int rc = l->router ? zmq_send(l->sock, peer->id, peer->len, ZMQ_SNDMORE)
                       : zmq_msg_send(&frames[next++], l->sock, nf > 1 ? ZMQ_SNDMORE : 0);
    if (rc == -1) {
        err = first_frame_error(name, zmq_errno(), timeout_ms, e);
        goto out;
    }
    for (; next < nf; next++) {
        if (send_more(l->sock, &frames[next], next + 1 < nf ? ZMQ_SNDMORE : 0) == -1) {
            /* Only a connection dying under us gets here; ZeroMQ then
             * drops the partial message rather than deliver half of it. */
            err = gdml_errmsg_set(e, GDML_ERR_TRANSPORT, "message to '%s' was dropped: %s", name,
                                  zmq_strerror(zmq_errno()));
            goto out;
        }
    }
    l->stats.bytes_sent += frame_wire_bytes(len);
    for (size_t i = 0; i < n; i++)
        l->stats.bytes_sent += frame_wire_bytes(hdr.sizes[i]);
    l->stats.msgs_sent++;
out:
    /* A sent frame is left empty by ZeroMQ, so closing it is a no-op; an
     * unsent payload frame's close drops the reference taken above. */
    for (size_t i = 0; i < nf; i++)
        zmq_msg_close(&frames[i]);
    return err;
}

gdml_err gdml_link_send_raw(gdml_link *l, const gdml_peer *peer, const void *const *frames,
                            const size_t *sizes, size_t n)
{
    char name[PEER_STR_MAX];
    if (n == 0 || (l->router && (!peer || peer->len == 0)))
        return GDML_ERR_INVALID;
    who(l, peer, name, sizeof name);
    int rc = l->router ? zmq_send(l->sock, peer->id, peer->len, ZMQ_SNDMORE)
                       : zmq_send(l->sock, frames[0], sizes[0], n > 1 ? ZMQ_SNDMORE : 0);
    if (rc == -1)
        return first_frame_error(name, zmq_errno(), l->sndtimeo, NULL);
    for (size_t i = l->router ? 0 : 1; i < n; i++) {
        while ((rc = zmq_send(l->sock, frames[i], sizes[i], i + 1 < n ? ZMQ_SNDMORE : 0)) == -1 &&
               zmq_errno() == EINTR)
            ;
        if (rc == -1)
            return GDML_ERR_TRANSPORT;
    }
    for (size_t i = 0; i < n; i++)
        l->stats.bytes_sent += frame_wire_bytes(sizes[i]);
    l->stats.msgs_sent++;
    return GDML_OK;
}

/* ---- receiving ---- */

static void frames_free(struct rx_frames *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++)
        zmq_msg_close(&f->msg[i]);
    for (size_t i = 0; i < GDML_MSG_MAX_PAYLOADS; i++)
        free(f->copy[i]);
    free(f);
}

void gdml_rx_release(gdml_rx *rx)
{
    if (!rx)
        return;
    frames_free(rx->frames_);
    memset(rx, 0, sizeof *rx);
}

static gdml_err wait_error(int err, gdml_errmsg *e)
{
    if (err == EINTR)
        return gdml_errmsg_set(e, GDML_ERR_INTERRUPTED, "waiting for a message was interrupted");
    return gdml_errmsg_set(e, GDML_ERR_TRANSPORT, "cannot wait for a message: %s",
                           zmq_strerror(err));
}

/* Receives a later frame of a message whose first frame arrived. ZeroMQ
 * delivers multipart messages whole, so this does not wait. */
static int recv_more(void *sock, zmq_msg_t *m)
{
    int rc;
    while ((rc = zmq_msg_recv(m, sock, 0)) == -1 && zmq_errno() == EINTR)
        ;
    return rc;
}

/* Checks a received message against its header and fills rx. */
static gdml_err validate(struct rx_frames *f, size_t total, gdml_rx *rx, gdml_errmsg *e)
{
    if (total == 0)
        return gdml_errmsg_set(e, GDML_ERR_PROTO, "message has no header frame");
    if (total > FRAMES_MAX)
        return gdml_errmsg_set(e, GDML_ERR_PROTO, "message has %zu frames, at most %d allowed",
                               total, FRAMES_MAX);
    gdml_msg_header h;
    gdml_err err = gdml_msg_decode(zmq_msg_data(&f->msg[0]), zmq_msg_size(&f->msg[0]), &h, e);
    if (err != GDML_OK)
        return err;
    size_t n = total - 1;
    if (n != h.n_payloads)
        return gdml_errmsg_set(e, GDML_ERR_PROTO, "%s header lists %u payloads, message has %zu",
                               gdml_msg_type_name(h.type), h.n_payloads, n);
    for (size_t i = 0; i < n; i++) {
        size_t size = zmq_msg_size(&f->msg[i + 1]);
        if (size != h.sizes[i])
            return gdml_errmsg_set(
                e, GDML_ERR_PROTO, "%s payload %zu is %zu bytes, header says %llu",
                gdml_msg_type_name(h.type), i, size, (unsigned long long)h.sizes[i]);
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *data = zmq_msg_data(&f->msg[i + 1]);
        size_t size = h.sizes[i];
        if ((uintptr_t)data % PAYLOAD_ALIGN != 0) {
            if (!(f->copy[i] = malloc(size)))
                return gdml_errmsg_set(e, GDML_ERR_NOMEM, "cannot copy a %zu-byte payload", size);
            memcpy(f->copy[i], data, size);
            data = f->copy[i];
        }
        rx->payload[i] = data;
        rx->payload_size[i] = size;
    }
    rx->header = h;
    rx->n_payloads = n;
    return GDML_OK;
}

gdml_err gdml_link_recv(gdml_link *l, gdml_rx *rx, int timeout_ms, gdml_errmsg *e)
{
    memset(rx, 0, sizeof *rx);
    if (timeout_ms != 0) {
        zmq_pollitem_t item = {.socket = l->sock, .events = ZMQ_POLLIN};
        int rc = zmq_poll(&item, 1, timeout_ms < 0 ? -1 : timeout_ms);
        if (rc == -1)
            return wait_error(zmq_errno(), e);
        if (rc == 0)
            return gdml_errmsg_set(e, GDML_ERR_AGAIN, "no message within %d ms", timeout_ms);
    }
    struct rx_frames *f = calloc(1, sizeof *f);
    if (!f)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "cannot allocate frame storage");

    /* The first frame: the routing id on a ROUTER, the header on a DEALER. */
    zmq_msg_t id;
    zmq_msg_t *first = l->router ? &id : &f->msg[0];
    zmq_msg_init(first);
    if (zmq_msg_recv(first, l->sock, ZMQ_DONTWAIT) == -1) {
        int err = zmq_errno();
        zmq_msg_close(first);
        free(f);
        if (err == EAGAIN)
            return gdml_errmsg_set(e, GDML_ERR_AGAIN, "no message is waiting");
        return wait_error(err, e);
    }
    size_t total = 0; /* frames after the routing id */
    uint64_t wire = 0;
    bool more = zmq_msg_more(first);
    if (l->router) {
        size_t n = zmq_msg_size(&id);
        rx->peer.len = n < GDML_PEER_ID_MAX ? n : GDML_PEER_ID_MAX;
        memcpy(rx->peer.id, zmq_msg_data(&id), rx->peer.len);
        zmq_msg_close(&id);
    } else {
        f->n = total = 1;
        wire = frame_wire_bytes(zmq_msg_size(&f->msg[0]));
    }
    /* Read the whole message even when it has too many frames, so that the
     * next receive starts at a message boundary. */
    gdml_err err = GDML_OK;
    while (more) {
        zmq_msg_t extra;
        zmq_msg_t *m = total < FRAMES_MAX ? &f->msg[total] : &extra;
        zmq_msg_init(m);
        if (recv_more(l->sock, m) == -1) {
            err = gdml_errmsg_set(e, GDML_ERR_TRANSPORT, "cannot receive a message frame: %s",
                                  zmq_strerror(zmq_errno()));
            zmq_msg_close(m);
            frames_free(f);
            memset(rx, 0, sizeof *rx);
            return err;
        }
        more = zmq_msg_more(m);
        wire += frame_wire_bytes(zmq_msg_size(m));
        if (m == &extra)
            zmq_msg_close(m);
        else
            f->n = total + 1;
        total++;
    }
    /* Rejected messages crossed the wire too: their bytes count. */
    l->stats.bytes_received += wire;

    if ((err = validate(f, total, rx, e)) != GDML_OK) {
        char name[PEER_STR_MAX];
        gdml_peer peer = rx->peer;
        frames_free(f);
        memset(rx, 0, sizeof *rx);
        rx->peer = peer;
        l->stats.msgs_rejected++;
        gdml_errmsg_prefix(e, "from peer '%s': ", who(l, &peer, name, sizeof name));
        return err;
    }
    rx->frames_ = f;
    rx->wire_bytes = wire;
    l->stats.msgs_received++;
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
        err = wait_error(zmq_errno(), NULL);
    else if (rc == 0)
        err = GDML_ERR_AGAIN;
    else
        for (size_t i = 0; i < n; i++)
            ready[i] = (items[i].revents & ZMQ_POLLIN) != 0;
    if (items != stack_items)
        free(items);
    return err;
}
