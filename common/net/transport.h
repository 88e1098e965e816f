/*
 * transport.h - gdml's links: ZeroMQ ROUTER (binding side) and DEALER
 * (connecting side) sockets that send and receive whole gdml messages and
 * count every byte they move. This is the only module that touches ZeroMQ.
 *
 * Sending: frame 0 is the encoded header; each payload blob follows as its
 * own frame, handed to ZeroMQ without copying (the transport takes a blob
 * reference and ZeroMQ releases it). If gdml_link_send fails, nothing was
 * queued and the caller still holds its references.
 *
 * Receiving: gdml_link_recv reads one whole multipart message and validates
 * it: the header must decode, the number of payload frames and each frame's
 * size must equal what the header says. A message that fails is dropped,
 * and the error text names the peer ("from peer 'us-east': ...") so that the
 * caller can log it and carry on.
 *
 * Byte accounting counts what ZMTP puts on the wire for each frame: its bytes
 * plus the frame header (2 bytes up to 255 bytes of body, 9 above). The
 * ROUTER's routing-id envelope is local and is not counted.
 *
 * One link belongs to one thread.
 */
#ifndef GDML_TRANSPORT_H
#define GDML_TRANSPORT_H

#include "blob.h"
#include "err.h"
#include "msg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gdml_transport gdml_transport; /* one per process: the ZeroMQ context */
typedef struct gdml_link gdml_link;           /* one socket */

#define GDML_PEER_ID_MAX 255

/* A peer as a ROUTER sees it: its routing id (the DEALER's name). */
typedef struct gdml_peer {
    uint8_t id[GDML_PEER_ID_MAX];
    size_t len;
} gdml_peer;

typedef struct gdml_link_stats {
    uint64_t bytes_sent, bytes_received; /* wire bytes, see above */
    uint64_t msgs_sent, msgs_received;   /* whole messages */
    uint64_t msgs_rejected;              /* received and dropped as invalid */
} gdml_link_stats;

/* One received message. Payload pointers are valid until gdml_rx_release. */
typedef struct gdml_rx {
    gdml_peer peer; /* empty on a DEALER */
    gdml_msg_header header;
    size_t n_payloads;
    const uint8_t *payload[GDML_MSG_MAX_PAYLOADS];
    size_t payload_size[GDML_MSG_MAX_PAYLOADS];
    uint64_t wire_bytes; /* bytes this message took on the wire */
    void *frames_;       /* private: the transport's frame storage */
} gdml_rx;

gdml_err gdml_transport_new(gdml_transport **out, gdml_errmsg *e);
void gdml_transport_destroy(gdml_transport **t);

/*
 * Opens a ROUTER bound to endpoint ("tcp://127.0.0.1:*" picks a free port).
 * Returns GDML_ERR_TRANSPORT with e saying why (address in use, bad endpoint).
 */
gdml_err gdml_link_bind(gdml_transport *t, const char *endpoint, gdml_link **out, gdml_errmsg *e);

/*
 * Opens a DEALER with routing id `identity` connected to endpoint. ZeroMQ
 * connects in the background and reconnects on its own.
 */
gdml_err gdml_link_connect(gdml_transport *t, const char *endpoint, const char *identity,
                           gdml_link **out, gdml_errmsg *e);

/* Closes the link; queued messages are dropped after a short linger. NULL-safe. */
void gdml_link_close(gdml_link **l);

/* Writes the endpoint the link is bound or connected to, with the real port. */
gdml_err gdml_link_endpoint(const gdml_link *l, char *buf, size_t cap);

/*
 * Sends a header and n payload blobs (n must equal h->n_payloads and each
 * blob's size h->sizes[i]; the transport fills sizes itself if they are 0).
 * peer is required on a ROUTER and ignored on a DEALER. Blocks at most
 * timeout_ms if the peer's queue is full (-1: forever). Returns
 * GDML_ERR_TIMEOUT, GDML_ERR_NOTFOUND (a ROUTER's peer is gone) or
 * GDML_ERR_TRANSPORT.
 */
gdml_err gdml_link_send(gdml_link *l, const gdml_peer *peer, const gdml_msg_header *h,
                        gdml_blob *const *payloads, size_t n, int timeout_ms, gdml_errmsg *e);

/*
 * Receives one message, waiting at most timeout_ms (0: do not wait; -1:
 * forever). Returns GDML_ERR_AGAIN if none came, GDML_ERR_PROTO or
 * GDML_ERR_VERSION if one came and was rejected (rx->peer is set, e names
 * peer and fault), GDML_ERR_INTERRUPTED if a signal interrupted the wait.
 * On GDML_OK the caller must gdml_rx_release(rx).
 */
gdml_err gdml_link_recv(gdml_link *l, gdml_rx *rx, int timeout_ms, gdml_errmsg *e);

/* Frees what rx holds and zeroes it. Safe on a zeroed or released rx. */
void gdml_rx_release(gdml_rx *rx);

/*
 * Waits until one of links[0..n) has a message or timeout_ms passes
 * (-1: forever); sets ready[i]. Returns GDML_ERR_AGAIN on timeout,
 * GDML_ERR_INTERRUPTED on a signal.
 */
gdml_err gdml_link_poll(gdml_link *const *links, size_t n, int timeout_ms, bool *ready);

/* Copies the link's counters. */
void gdml_link_stats_get(const gdml_link *l, gdml_link_stats *out);

/* Writes a printable form of the peer id into buf (non-printable bytes as \xNN). */
const char *gdml_peer_str(const gdml_peer *p, char *buf, size_t cap);

/* True if two peers have the same id. */
bool gdml_peer_eq(const gdml_peer *a, const gdml_peer *b);

/*
 * Sends raw frames exactly as given, with no header check. For tests that
 * inject garbage, wrong versions and truncated messages; never used by the
 * programs themselves.
 */
gdml_err gdml_link_send_raw(gdml_link *l, const gdml_peer *peer, const void *const *frames,
                            const size_t *sizes, size_t n);

#endif
