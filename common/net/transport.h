/*
 * transport.h - gdml's links: ZeroMQ ROUTER (binding side) and DEALER
 * (connecting side) sockets that move whole gdml frames (msg.h), never
 * block, authenticate peers with CURVE, bound what any peer can make this
 * process hold, and count every byte. The transport module (transport.c,
 * curve.c, guard.c) is the only code that touches ZeroMQ.
 *
 * Names. On a CURVE link a peer's name is the name its public key has in the
 * link's allow-list (curve.h), checked by a ZAP handler during the handshake:
 * a peer without an allowed key never gets a message in or out. A header
 * whose 'from' differs from that name is refused. On a plain link (inside a
 * trusted data center, by configuration) the name is what 'from' says.
 *
 * Sending never blocks. gdml_link_send hands a sealed frame to ZeroMQ if the
 * peer's queue (ZMQ_SNDHWM frames) has room, and otherwise keeps it in the
 * link's outbox for that peer; gdml_link_flush retries. A bound link drops a
 * peer whose outbox has not moved for drop_after_ms: the peer is reported by
 * gdml_link_next_dropped and its connection is closed, and no other peer is
 * delayed by it. Frames are blobs (blob.h) sent without copying; one sealed
 * frame may go to many peers.
 *
 * Bounded memory. ZeroMQ drops a peer that announces a frame above
 * GDML_FRAME_MAX before allocating it (ZMQ_MAXMSGSIZE). A frame is a whole
 * message; a peer sending more than one frame per message is refused. But
 * ZeroMQ buffers every frame of a multipart message until its last one, so
 * a peer could still pile up frames it never ends: a guard thread watches
 * each connection's TCP byte count against what this process has read from
 * it, and cuts off a connection whose unread backlog passes max_backlog.
 *
 * Byte accounting counts what crosses the wire for each frame: the ZMTP
 * frame (its body and 2 or 9 bytes of framing) and, on CURVE links, the 33
 * bytes of each encrypted MESSAGE command. Refused frames count too.
 *
 * One link belongs to one thread.
 */
#ifndef GDML_TRANSPORT_H
#define GDML_TRANSPORT_H

#include "blob.h"
#include "curve.h"
#include "err.h"
#include "msg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gdml_transport gdml_transport; /* one per process: the ZeroMQ context */
typedef struct gdml_link gdml_link;           /* one socket */

#define GDML_PEER_ID_MAX 255

/* A connection as a ROUTER sees it: the routing id ZeroMQ gave it. A peer
 * that reconnects gets a new one. */
typedef struct gdml_peer {
    uint8_t id[GDML_PEER_ID_MAX];
    size_t len;
} gdml_peer;

typedef struct gdml_link_options {
    /* This side's key pair; NULL for a plain link. */
    const gdml_curve_key *key;
    /* Connecting with CURVE: the server's public key, and the name it has
     * (the name in its key file): what its frames are from. */
    const uint8_t *server_key;
    const char *server_name;
    /* Binding with CURVE: who may connect, and under which names. The link
     * keeps a reference; gdml_curve_allow_replace changes it live. */
    gdml_curve_allow *allow;
    /* Unread bytes a connection may have in flight to us before it is cut
     * off; 0 means GDML_LINK_DEFAULT_BACKLOG. */
    uint64_t max_backlog;
    /* A peer whose outbox has not moved for this long is dropped; 0 means
     * GDML_LINK_DEFAULT_DROP_MS. */
    int64_t drop_after_ms;
    /* A connection that carries nothing back for this long, not even
     * ZeroMQ's own PING, is closed, and a connecting link reconnects; a link
     * that lost its peer to a partition finds it again as soon as the
     * network heals, instead of after TCP's retransmission backoff. 0: no
     * heartbeats. */
    int64_t dead_after_ms;
} gdml_link_options;

#define GDML_LINK_DEFAULT_BACKLOG ((uint64_t)64 << 20)
/* The smallest bound that holds what a legitimate peer has in flight: the
 * frames ZeroMQ queues, the kernel's buffer and the frame being decoded. */
#define GDML_LINK_MIN_BACKLOG ((uint64_t)32 << 20)
#define GDML_LINK_DEFAULT_DROP_MS 10000

typedef struct gdml_link_stats {
    uint64_t bytes_sent, bytes_received; /* wire bytes, see above */
    uint64_t frames_sent, frames_received;
    uint64_t frames_rejected; /* received and dropped as invalid */
    uint64_t frames_queued;   /* waiting in outboxes now */
    uint64_t peers_dropped;   /* for not reading, or by request */
    uint64_t backlog_cutoffs; /* connections the guard cut off */
    uint64_t auth_refused;    /* CURVE handshakes the allow-list refused */
    uint64_t connects; /* a connecting link: TCP connections made; more than one: it reconnected */
} gdml_link_stats;

/* One received frame. payload is valid until gdml_rx_release. */
typedef struct gdml_rx {
    gdml_peer peer;           /* the connection; empty on a DEALER */
    char name[GDML_NAME_MAX]; /* the peer's authenticated or claimed name */
    bool authenticated;       /* name comes from its CURVE key */
    gdml_msg_header header;
    const uint8_t *payload;               /* header.plen bytes */
    uint64_t wire_bytes;                  /* bytes this frame took on the wire */
    gdml_reason reason;                   /* why it was refused, when gdml_link_recv says so */
    _Alignas(8) unsigned char frame_[64]; /* private: the ZeroMQ message */
    bool held_;
} gdml_rx;

gdml_err gdml_transport_new(gdml_transport **out, gdml_errmsg *e);

/* Every link must be closed first. NULL-safe; clears *t. */
void gdml_transport_destroy(gdml_transport **t);

/*
 * Opens a ROUTER bound to endpoint ("tcp://127.0.0.1:*" picks a free port).
 * With opts->key and opts->allow, the link is a CURVE server. Returns
 * GDML_ERR_TRANSPORT with e saying why (address in use, bad endpoint).
 */
gdml_err gdml_link_bind(gdml_transport *t, const char *endpoint, const gdml_link_options *opts,
                        gdml_link **out, gdml_errmsg *e);

/*
 * Opens a DEALER connected to endpoint; ZeroMQ connects in the background
 * and reconnects on its own. With opts->key and opts->server_key, the link
 * is a CURVE client.
 */
gdml_err gdml_link_connect(gdml_transport *t, const char *endpoint, const gdml_link_options *opts,
                           gdml_link **out, gdml_errmsg *e);

/* Closes the link; what is queued is dropped after a short linger. NULL-safe. */
void gdml_link_close(gdml_link **l);

/* Writes the endpoint the link is bound or connected to, with the real port. */
gdml_err gdml_link_endpoint(const gdml_link *l, char *buf, size_t cap);

/* True if the link runs CURVE. */
bool gdml_link_curve(const gdml_link *l);

/*
 * Sends a sealed frame to peer (required on a ROUTER, ignored on a DEALER).
 * The link takes its own reference; the caller keeps its own. Never blocks.
 * Returns GDML_ERR_NOTFOUND if a ROUTER's peer is not connected, and
 * GDML_ERR_AGAIN if its outbox is full (the frame is not queued; the peer is
 * then about to be dropped).
 */
gdml_err gdml_link_send(gdml_link *l, const gdml_peer *peer, gdml_blob *frame, gdml_errmsg *e);

/*
 * Moves what waits in the outboxes into ZeroMQ, and drops (bound links) the
 * peers whose outbox has not moved for drop_after_ms. Returns the
 * milliseconds until it should run again, or -1 if nothing waits.
 */
int64_t gdml_link_flush(gdml_link *l, int64_t now_ms);

/* Takes the next peer dropped since the last call; false if none. */
bool gdml_link_next_dropped(gdml_link *l, gdml_peer *out);

/* Closes one peer's connection and discards its outbox (bound links). */
void gdml_link_disconnect(gdml_link *l, const gdml_peer *peer);

/*
 * Receives one frame if one is waiting; never blocks. Returns GDML_OK with
 * *rx to release; GDML_ERR_AGAIN if nothing is waiting; GDML_ERR_PROTO or
 * GDML_ERR_VERSION if one came and was refused (rx->peer, rx->name if known
 * and rx->reason are set, e names peer and fault; a protocol-1 peer has
 * been told what to do). Nothing is held after an error.
 */
gdml_err gdml_link_recv(gdml_link *l, gdml_rx *rx, gdml_errmsg *e);

/* Frees what rx holds. Safe on a released or refused rx. */
void gdml_rx_release(gdml_rx *rx);

/*
 * Waits until one of links[0..n) has a frame or timeout_ms passes
 * (-1: forever); sets ready[i]. Returns GDML_ERR_AGAIN on timeout,
 * GDML_ERR_INTERRUPTED on a signal.
 */
gdml_err gdml_link_poll(gdml_link *const *links, size_t n, int timeout_ms, bool *ready);

/* Copies the link's counters. */
void gdml_link_stats_get(const gdml_link *l, gdml_link_stats *out);

/*
 * True once for each connection a connecting link made after its first: the
 * peer may have restarted and forgotten us, and a new connection is a new
 * route to it anyway, so the caller joins again.
 */
bool gdml_link_reconnected(gdml_link *l);

/* Bytes a frame of frame_len bytes takes on the wire, with or without CURVE. */
uint64_t gdml_wire_bytes(size_t frame_len, bool curve);

/* Writes a printable form of the peer id into buf (non-printable bytes as \xNN). */
const char *gdml_peer_str(const gdml_peer *p, char *buf, size_t cap);

/* True if two peers have the same id. */
bool gdml_peer_eq(const gdml_peer *a, const gdml_peer *b);

/*
 * Sends raw frames as one (multipart, if n > 1) message, unchecked. For tests
 * that inject garbage and hostile messages; never used by the programs.
 */
gdml_err gdml_link_send_raw(gdml_link *l, const gdml_peer *peer, const void *const *frames,
                            const size_t *sizes, size_t n);

#endif
