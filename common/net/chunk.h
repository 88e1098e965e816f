/*
 * chunk.h - tensors as many bounded frames: the chunk grid, and the
 * receiver's record of which chunks of one transfer have arrived.
 *
 * A tensor of `total` elements is cut at multiples of GDML_CHUNK_ELEMS
 * (msg.h); chunk i covers [i * C, min((i + 1) * C, total)). A transfer (one
 * logical message: a model, a gradient, a delta) sends some of its chunks,
 * as many as its headers' `chunks` field says, each in its own frame with
 * the transfer's sequence number; chunks a sparse update leaves empty need
 * not be sent. Chunks may arrive in any order; a receiver applies each one
 * on arrival and knows the transfer is whole when the count is reached.
 *
 * gdml_transfer tracks one sender's current transfer: a chunk of a newer
 * transfer starts it afresh (what was left of the old one is abandoned), a
 * chunk of an older one is stale, a chunk seen already is a duplicate.
 * Pure bookkeeping, no I/O, no allocation after init.
 */
#ifndef GDML_CHUNK_H
#define GDML_CHUNK_H

#include "err.h"
#include "msg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Chunks in a tensor of total elements. */
uint64_t gdml_chunk_count(uint64_t total);

/* Elements in the chunk that starts at offset (total > offset). */
uint64_t gdml_chunk_len(uint64_t total, uint64_t offset);

typedef enum gdml_chunk_verdict {
    GDML_CHUNK_NEW,       /* accepted: apply it */
    GDML_CHUNK_DUPLICATE, /* this chunk of this transfer arrived already: ignore it */
    GDML_CHUNK_STALE,     /* it belongs to a transfer older than the current one */
    GDML_CHUNK_BAD,       /* it does not fit the tensor (e says why) */
} gdml_chunk_verdict;

typedef struct gdml_transfer {
    uint64_t seq;       /* the current transfer's sequence number; 0 before the first */
    uint64_t total;     /* its tensor's elements */
    uint64_t expected;  /* chunks it sends */
    uint64_t received;  /* distinct chunks arrived */
    uint64_t *seen;     /* one bit per chunk of the grid */
    size_t words;       /* capacity of seen */
    uint64_t abandoned; /* transfers replaced before they were whole */
} gdml_transfer;

/* Sizes the record for tensors of up to max_total elements. GDML_ERR_NOMEM. */
gdml_err gdml_transfer_init(gdml_transfer *t, uint64_t max_total);

/* Frees it. Safe on a zeroed record. */
void gdml_transfer_fini(gdml_transfer *t);

/* Forgets the current transfer, so that any next chunk starts a new one. */
void gdml_transfer_reset(gdml_transfer *t);

/*
 * Judges one chunk with header h (a decoded tensor chunk, so offset is on
 * the grid and chunks fits total) against a tensor that must have
 * want_total elements. *starts is set when the chunk opens a new transfer
 * (the receiver then clears what it assembles into). GDML_CHUNK_BAD with e
 * saying why if total differs, or a transfer's chunk count changes.
 */
gdml_chunk_verdict gdml_transfer_offer(gdml_transfer *t, const gdml_msg_header *h,
                                       uint64_t want_total, bool *starts, gdml_errmsg *e);

/* True once every chunk of the current transfer has arrived. */
bool gdml_transfer_complete(const gdml_transfer *t);

#endif
