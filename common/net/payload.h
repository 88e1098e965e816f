/*
 * payload.h - moving float32 tensors in and out of gdml messages.
 *
 * Received payload bytes may sit at any alignment inside ZeroMQ's receive
 * buffer, so tensors are copied out with memcpy, after their encoding, size
 * and values have been checked: a delta or gradient holding NaN or infinity
 * is refused rather than merged into a model.
 */
#ifndef GDML_PAYLOAD_H
#define GDML_PAYLOAD_H

#include "blob.h"
#include "err.h"
#include "msg.h"
#include "transport.h"

#include <stddef.h>

/*
 * Copies payload `index` of rx into dst[0..n) after checking that the message
 * is dense float32, the payload exists, holds exactly n floats, and that all
 * are finite. Returns GDML_ERR_PROTO with e naming the message, the peer and
 * the fault; dst's contents are then unspecified (use a scratch buffer).
 */
gdml_err gdml_payload_read_f32(const gdml_rx *rx, size_t index, float *dst, size_t n,
                               gdml_errmsg *e);

/*
 * Sends h with one dense float32 payload, the blob b (which must no longer be
 * written). Sets h's encoding, payload count and size. The caller keeps its
 * reference to b.
 */
gdml_err gdml_payload_send_f32(gdml_link *l, const gdml_peer *peer, gdml_msg_header *h,
                               gdml_blob *b, int timeout_ms, gdml_errmsg *e);

/* Allocates a blob holding a copy of src[0..n). */
gdml_err gdml_payload_blob_f32(const float *src, size_t n, gdml_blob **out);

#endif
