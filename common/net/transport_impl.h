/*
 * transport_impl.h - private to the transport module: the link itself
 * (transport.c sets it up, transport_send.c sends, transport_recv.c
 * receives), and the ZAP handler (curve.c) and backlog guard (guard.c), the
 * two threads a transport may run beside the program's own. Each thread
 * owns its sockets; they share only the locked allow-lists and the atomic
 * byte counters here.
 */
#ifndef GDML_TRANSPORT_IMPL_H
#define GDML_TRANSPORT_IMPL_H

#include "curve.h"
#include "err.h"
#include "transport.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- ZAP (curve.c) ---- */

typedef struct zap_handler zap_handler;

/* Starts the ZAP handler of ZeroMQ context ctx (its inproc REP socket). */
gdml_err zap_start(void *ctx, zap_handler **out, gdml_errmsg *e);

/* Stops it and joins its thread. NULL-safe; clears *z. */
void zap_stop(zap_handler **z);

/*
 * Registers allow (taking a reference) under a new ZAP domain and writes the
 * domain's name into domain[cap]: the link sets it as its ZMQ_ZAP_DOMAIN.
 */
gdml_err zap_add_domain(zap_handler *z, gdml_curve_allow *allow, char *domain, size_t cap,
                        gdml_errmsg *e);

/* Gives a closed link's domain back (its allow-list reference is dropped). */
void zap_remove_domain(zap_handler *z, const char *domain);

/* ---- the backlog guard (guard.c) ---- */

typedef struct guard guard;

/* Starts the guard thread of context ctx. */
gdml_err guard_start(void *ctx, guard **out, gdml_errmsg *e);

/* Stops it and joins its thread. Every watched socket must be unwatched first. NULL-safe. */
void guard_stop(guard **g);

/*
 * Watches the connections of sock (which must not be bound or connected
 * yet): each one is cut off once its unread backlog passes max_backlog.
 * Called on the socket's own thread; returns once the guard listens, so no
 * connection is missed. *watch_id names the watch for guard_unwatch.
 */
gdml_err guard_watch(guard *g, void *sock, uint64_t max_backlog, const char *what, int *watch_id,
                     gdml_errmsg *e);

/* Stops watching (before the socket closes). Called on the socket's own thread. */
void guard_unwatch(guard *g, void *sock, int watch_id);

/* Records that the program read `bytes` wire bytes from connection fd. */
void guard_consumed(guard *g, int fd, uint64_t bytes);

/* Cuts off connection fd now (a peer the program drops). */
void guard_cut(guard *g, int fd);

/* Connections of a watch cut off for their backlog so far. */
uint64_t guard_cutoffs(guard *g, int watch_id);

/* CURVE handshakes of a watch that failed (a wrong key on either side). */
uint64_t guard_handshake_failures(guard *g, int watch_id);

/* TCP connections a connecting socket has made: more than one means it reconnected. */
uint64_t guard_connects(guard *g, int watch_id);

/* ---- links (transport.c, transport_send.c, transport_recv.c) ---- */

#define ENDPOINT_MAX 512
/* gdml_peer_str output: every byte escaped as \xNN in the worst case. */
#define PEER_STR_MAX (GDML_PEER_ID_MAX * 4 + 1)

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
    uint64_t connects_seen; /* connections gdml_link_reconnected has reported */
    gdml_curve_allow *allow;
    gdml_link_stats stats;
    outbox *boxes; /* ROUTER: one per peer with frames waiting; DEALER: boxes[0] */
    size_t n_boxes, cap_boxes;
    route *routes;
    size_t n_routes;
    gdml_peer *dropped; /* peers dropped, not yet taken */
    size_t n_dropped, cap_dropped;
};

/* Frees a link's outboxes (and the frames in them), routes and drop reports. */
void link_free_queues(gdml_link *l);

/* The route of peer p on a bound link, or NULL. */
route *link_find_route(gdml_link *l, const gdml_peer *p);

/* Remembers that peer p was heard on connection fd at time now. */
void link_note_route(gdml_link *l, const gdml_peer *p, int fd, int64_t now);

/* The peer (bound link) or endpoint (connecting link) for messages, in buf. */
const char *link_who(const gdml_link *l, const gdml_peer *p, char *buf, size_t cap);

#endif
