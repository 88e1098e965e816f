/*
 * transport_impl.h - private to the transport module (transport.c, curve.c,
 * guard.c): the ZAP handler and the backlog guard, the two threads a
 * transport may run beside the program's own. Each thread owns its sockets;
 * they share only the locked allow-lists and the atomic byte counters here.
 */
#ifndef GDML_TRANSPORT_IMPL_H
#define GDML_TRANSPORT_IMPL_H

#include "curve.h"
#include "err.h"

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

#endif
