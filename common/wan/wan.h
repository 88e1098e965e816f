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
 * It does no I/O on the network: it turns an update into sealed frames
 * (msg.h), one per chunk of the tensor (chunk.h), and the caller sends them.
 * The budget is spent when the frames are made, so a state machine that
 * makes them can be sure it never sends more than the budget allows.
 *
 * Updates are sent with error feedback: e = u + residual; the controller picks
 * the number of entries k so that the whole message (every chunk's header,
 * payload and ZMTP framing, and CURVE's overhead on a CURVE link, exactly as
 * counted on the wire) fits the bytes available now, and residual = e -
 * decode(message). A message is made only if it is useful: the budget has at
 * least min_message_bytes free, or the message at its full size (k_fraction
 * of the model, or the whole of it for a dense encoder) fits. Otherwise
 * nothing is made and the caller tries again later (gdml_wan_wait_ms).
 */
#ifndef GDML_WAN_H
#define GDML_WAN_H

#include "blob.h"
#include "budget.h"
#include "chunk.h"
#include "codec.h"
#include "err.h"
#include "msg.h"

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
    bool curve;                 /* the link runs CURVE, whose bytes count too */
} gdml_wan_config;

/* An update made into frames: send each, in order, then gdml_wan_update_fini. */
typedef struct gdml_wan_update {
    gdml_blob **frames;
    size_t n_frames;
    size_t k;      /* entries the encoder sent */
    uint64_t wire; /* bytes the frames take on the wire */
    /* Uplink (error feedback kept by the link): |u| and the new |residual|; 0 otherwise. */
    double update_norm, residual_norm;
} gdml_wan_update;

/*
 * Opens the byte log at path for writing and writes its CSV header; *out is
 * NULL (and nothing is opened) if path is empty. GDML_ERR_IO naming the path
 * if it cannot be written. The caller fcloses it after the links using it.
 */
gdml_err gdml_wan_log_open(const char *path, FILE **out, gdml_errmsg *e);

/*
 * Makes a link direction with its budget; control frames can be admitted
 * at once. Updates need gdml_wan_start, once the model's size is known.
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

/*
 * Changes the encoder (selector+quantizer) and k_fraction while running: the
 * knobs a controller turns per link. The error-feedback residual stays, so
 * what earlier messages left out is still owed and the next message, in the
 * new encoding, carries it; the budget and counters stay too. seed seeds
 * randk's draws. Before gdml_wan_start it only records them. On
 * GDML_ERR_INVALID (a spec that is no encoder, k_fraction outside (0, 1]) or
 * GDML_ERR_NOMEM the old encoder stays, and e says why.
 */
gdml_err gdml_wan_set_encoder(gdml_wan *w, const char *spec, double k_fraction, uint64_t seed,
                              gdml_errmsg *e);

/* The encoder in force, "selector+quantizer" once started, else as configured. */
const char *gdml_wan_encoder(const gdml_wan *w);

/* The seed the link was started with (randk's draws), for an encoder switched to later. */
uint64_t gdml_wan_seed(const gdml_wan *w);

/* Applies a new budget; spent bytes and history stay. */
void gdml_wan_set_budget(gdml_wan *w, const gdml_budget_config *budget);

/*
 * Applies a new budget only if a useful message with header h could still
 * ever be sent under it; otherwise keeps the old one and returns
 * GDML_ERR_INVALID with e saying why. Before gdml_wan_start there is no
 * model size to judge by, and the budget is applied as it is.
 */
gdml_err gdml_wan_try_budget(gdml_wan *w, const gdml_budget_config *budget,
                             const gdml_msg_header *h, int64_t now_ms, gdml_errmsg *e);

/* The budget in force. */
gdml_budget_config gdml_wan_budget(const gdml_wan *w);

/* The budget's bytes spent in all and in the trailing window, for a checkpoint. */
void gdml_wan_budget_state(gdml_wan *w, int64_t now_ms, uint64_t *spent, uint64_t *in_window);

/* Continues the budget from a checkpoint (gdml_budget_restore). */
void gdml_wan_budget_restore(gdml_wan *w, uint64_t spent, uint64_t in_window, int64_t now_ms);

/* The error-feedback residual, n floats, for the caller to seed or reset. */
float *gdml_wan_residual(gdml_wan *w);

/* True if the residual is all zero, as an exact encoder's (dense f32) always is. */
bool gdml_wan_residual_zero(gdml_wan *w);

/* The model size the link was started with (0 before gdml_wan_start). */
size_t gdml_wan_size(const gdml_wan *w);

/*
 * Makes update u[0..n) into the frames of message h (the caller sets type,
 * sender, seq, version, step, count, metric; encoding, chunk fields and
 * sizes are set here). With applied == NULL the link keeps the
 * error-feedback residual itself (the uplink: e = u + residual). Otherwise
 * the caller tracks what the receiver holds: decode(message) is added to
 * applied[0..n) and u should be "what the receiver lacks" (the downlink:
 * u = global - view, view += decoded). ref is the current parameter vector,
 * for the significance filter (may be NULL otherwise). Returns
 * GDML_ERR_AGAIN, making nothing and changing nothing, when the budget does
 * not allow a useful message at now_ms (see gdml_wan_wait_ms).
 */
gdml_err gdml_wan_encode_update(gdml_wan *w, gdml_msg_header *h, const float *u, const float *ref,
                                float *applied, int64_t now_ms, gdml_wan_update *out,
                                gdml_errmsg *e);

/*
 * Makes x[0..n) (n: the codec's size), as codec c has just selected it
 * (gdml_codec_select), into the sealed frames of message h, one per chunk
 * that holds entries (every chunk, for a dense codec). decoded, if not NULL,
 * gets what the receiver will decode (it may be x). No budget: for the LAN,
 * and for gdml_wan_encode_update.
 */
gdml_err gdml_codec_frames(gdml_codec *c, gdml_msg_header *h, const float *x, float *decoded,
                           bool curve, gdml_wan_update *out, gdml_errmsg *e);

/*
 * Chunk i of x[0..n) as one sealed frame of message h, for a dense codec
 * (one frame per chunk of the grid, as gdml_codec_frames makes them): for
 * sending a tensor chunk by chunk, each as soon as it is ready. Checks the
 * chunk is finite (GDML_ERR_INVALID if not), sets h's encoding, total,
 * chunks and offset, and adds the frame's wire bytes to *wire.
 */
gdml_err gdml_codec_dense_frame(gdml_codec *c, gdml_msg_header *h, const float *x, uint64_t i,
                                bool curve, gdml_blob **out, uint64_t *wire);

/* Drops the frames' references. Safe on a zeroed update. */
void gdml_wan_update_fini(gdml_wan_update *u);

/*
 * Milliseconds from now_ms until gdml_wan_encode_update can make a useful
 * message with header h, 0 if it can now, or -1 if it never can (the
 * smallest useful message is larger than one window's budget, or the cap is
 * spent); e then says which key to change.
 */
int64_t gdml_wan_wait_ms(gdml_wan *w, const gdml_msg_header *h, int64_t now_ms, gdml_errmsg *e);

/*
 * A frame without a tensor (HELLO, HEARTBEAT, STOP, ERROR) of frame_len
 * bytes: if the budget has its wire bytes now, spends them, logs it and
 * returns 0; otherwise returns the milliseconds until it would (the caller
 * sends it then), or -1 if it never will.
 */
int64_t gdml_wan_admit(gdml_wan *w, gdml_msg_type type, size_t frame_len, int64_t now_ms);

/* Counts a received frame's wire bytes and writes it to the byte log. */
void gdml_wan_note_received(gdml_wan *w, gdml_msg_type type, uint64_t wire_bytes, int64_t now_ms);

/* Bytes the budget lets through at now_ms (GDML_BUDGET_UNLIMITED: no rate, no cap). */
uint64_t gdml_wan_available(gdml_wan *w, int64_t now_ms);

/* Wire bytes made for sending and received through this link direction. */
uint64_t gdml_wan_bytes_sent(const gdml_wan *w);
uint64_t gdml_wan_bytes_received(const gdml_wan *w);

/* True if the cap is set and spent so far that not even a control frame fits. */
bool gdml_wan_cap_spent(const gdml_wan *w);

/*
 * Decodes chunk payload[0..len) of a tensor into out[offset..offset + m),
 * m = gdml_chunk_len(total, offset), for a message of type `type` from
 * `from`. GDML_ERR_PROTO with e naming the peer if it is malformed.
 */
gdml_err gdml_wan_decode_chunk(const gdml_msg_header *h, const uint8_t *payload, float *out,
                               const char *from, gdml_errmsg *e);

/*
 * Takes one chunk of a tensor of n elements from `from`, judged by the
 * sender's transfer record t (chunk.h), and decodes it into dst[offset..).
 * When the chunk opens a new transfer and clear is set, dst[0..n) is zeroed
 * first (chunks a sparse update skips decode to nothing). Returns
 * GDML_REASON_NONE when the chunk was taken (*complete tells whether the
 * tensor is now whole), or why it was not: GDML_REASON_DUPLICATE,
 * GDML_REASON_STALE, or GDML_REASON_TENSOR with e saying what is wrong (a
 * chunk that does not decode abandons its transfer).
 */
gdml_reason gdml_tensor_receive(gdml_transfer *t, const gdml_msg_header *h, const uint8_t *payload,
                                float *dst, size_t n, bool clear, const char *from, bool *complete,
                                gdml_errmsg *e);

/*
 * As gdml_tensor_receive, but the chunk's entries are decoded as entries
 * (gdml_codec_decode_entries): their indices, made absolute (offset added),
 * into idx, their values into val, at most cap, and their count into
 * *count. For sparse models, whose chunks hold few entries of many.
 */
gdml_reason gdml_tensor_receive_entries(gdml_transfer *t, const gdml_msg_header *h,
                                        const uint8_t *payload, size_t n, const char *from,
                                        uint32_t *idx, float *val, size_t cap, size_t *count,
                                        bool *complete, gdml_errmsg *e);

#endif
