/*
 * wan.h - one direction of a WAN link under a communication budget.
 *
 * The regional server uses one for its uplink; the coordinator one per
 * region for that region's downlink. Each holds:
 *   - an encoder (codec.h) and its error-feedback residual, so that what a
 *     message did not carry is added to the next one;
 *   - a budget (budget.h): bytes per second over any 1 s window, and a cap;
 *   - the byte counters and, optionally, a byte log: one CSV line per message
 *     (`mono_ms,peer,direction,type,bytes,rate`), which the benchmark
 *     reads to check that no window exceeded the budget.
 *
 * Updates are sent with error feedback: e = u + residual; the controller picks
 * the number of entries k so that the whole message (header, payload and ZMTP
 * framing, exactly as counted on the wire) fits the bytes available now, and
 * residual = e - decode(message). A message is sent only if it is useful: the
 * budget has at least min_message_bytes free, or the message at its full size
 * (k_fraction of the model, or the whole of it for a dense encoder) fits.
 * Otherwise nothing is sent and the caller tries again later.
 */
#ifndef GDML_WAN_H
#define GDML_WAN_H

#include "budget.h"
#include "err.h"
#include "msg.h"
#include "transport.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct gdml_wan gdml_wan;

typedef struct gdml_wan_config {
    const char *encoder;        /* codec spec, e.g. "topk+int8" */
    double k_fraction;          /* entries a sparse encoder sends at most, of n */
    double threshold;           /* significance filter threshold */
    gdml_budget_config budget;  /* rate 0 = unlimited, cap 0 = none */
    uint64_t min_message_bytes; /* smallest update worth sending */
    const char *peer;           /* the other end, for logs ("us-east", "coordinator") */
    const char *direction;      /* "up" or "down", for logs */
    FILE *byte_log;             /* shared CSV byte log, or NULL; not owned */
} gdml_wan_config;

/*
 * Opens the byte log at path for writing and writes its CSV header; *out is
 * NULL (and nothing is opened) if path is empty. GDML_ERR_IO naming the path
 * if it cannot be written. The caller fcloses it after the links using it.
 */
gdml_err gdml_wan_log_open(const char *path, FILE **out, gdml_errmsg *e);

/*
 * Makes a link direction with its budget; control messages can be sent at
 * once. Updates need gdml_wan_start, once the model's size is known.
 * Returns GDML_ERR_NOMEM.
 */
gdml_err gdml_wan_new(const gdml_wan_config *cfg, gdml_wan **out, gdml_errmsg *e);

/*
 * Makes the encoder for models of n parameters (residual zero). Returns
 * GDML_ERR_INVALID (e says why) for a bad encoder spec, GDML_ERR_NOMEM.
 * Calling it again with the same n does nothing.
 */
gdml_err gdml_wan_start(gdml_wan *w, size_t n, uint64_t seed, gdml_errmsg *e);

/* Frees it. NULL-safe; clears *w. */
void gdml_wan_destroy(gdml_wan **w);

/* Applies a new budget (SIGHUP, or a region's HELLO); spent bytes and history stay. */
void gdml_wan_set_budget(gdml_wan *w, const gdml_budget_config *budget);

/*
 * Applies a new budget only if a useful message with header h could still
 * ever be sent under it; otherwise keeps the old one and returns
 * GDML_ERR_INVALID with e saying why. Before gdml_wan_start there is no
 * model size to judge by, and the budget is applied as it is.
 */
gdml_err gdml_wan_try_budget(gdml_wan *w, const gdml_budget_config *budget,
                             const gdml_msg_header *h, gdml_errmsg *e);

/* The error-feedback residual, n floats, for the caller to seed or reset. */
float *gdml_wan_residual(gdml_wan *w);

/*
 * Sends update u[0..n) as message h (the caller sets type, sender, seq,
 * version, step, count, metric; encoding and sizes are set here). With
 * applied == NULL the link keeps the error-feedback residual itself (the
 * uplink: e = u + residual). Otherwise the caller tracks what the receiver
 * holds: decode(message) is added to applied[0..n) and u should be "what the
 * receiver lacks" (the downlink: u = global - view, view += decoded).
 * ref is the current parameter vector, for the significance filter (may be
 * NULL otherwise). Returns GDML_ERR_AGAIN, sending nothing and changing
 * nothing, when the budget does not allow a useful message at now_ms (see
 * gdml_wan_wait_ms for when it will); a failed send changes nothing but h's
 * encoding and sizes.
 * On GDML_OK, *sent_k (if not NULL) holds the entries sent.
 */
gdml_err gdml_wan_send_update(gdml_wan *w, gdml_link *l, const gdml_peer *peer, gdml_msg_header *h,
                              const float *u, const float *ref, float *applied, int64_t now_ms,
                              size_t *sent_k, gdml_errmsg *e);

/*
 * Milliseconds from now_ms until gdml_wan_send_update can send a useful
 * message with header h (the one it refused), 0 if it can now, or -1 if it
 * never can (the smallest useful message is larger than one window's budget,
 * or the cap is spent); e then says which key to change.
 */
int64_t gdml_wan_wait_ms(gdml_wan *w, const gdml_msg_header *h, int64_t now_ms, gdml_errmsg *e);

/*
 * Sends a message without payload (HELLO, STOP, ERROR), counted against the
 * budget. Waits for tokens (sleeping) at most timeout_ms; GDML_ERR_TIMEOUT if
 * they do not come.
 */
gdml_err gdml_wan_send_control(gdml_wan *w, gdml_link *l, const gdml_peer *peer,
                               const gdml_msg_header *h, int timeout_ms, gdml_errmsg *e);

/* Counts a received message and writes it to the byte log. */
void gdml_wan_note_received(gdml_wan *w, const gdml_rx *rx, int64_t now_ms);

/*
 * Decodes the update carried by rx (a GDML_ENC_CODEC payload) into
 * out[0..n). GDML_ERR_PROTO with e naming the peer if it is malformed.
 */
gdml_err gdml_wan_decode(const gdml_rx *rx, float *out, size_t n, gdml_errmsg *e);

/* Wire bytes sent and received through this link direction. */
uint64_t gdml_wan_bytes_sent(const gdml_wan *w);
uint64_t gdml_wan_bytes_received(const gdml_wan *w);

/* Bytes one message with header h and payload sizes takes on the wire. */
uint64_t gdml_wan_wire_bytes(const gdml_msg_header *h);

#endif
