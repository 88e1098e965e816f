/*
 * msg.h - the gdml wire message, protocol version 2: one ZeroMQ frame that
 * holds a msgpack header and, right after it, the payload bytes it announces.
 *
 * One frame, never a multipart message: ZeroMQ bounds the size of a frame
 * (ZMQ_MAXMSGSIZE) but buffers every frame of a multipart message before the
 * program sees any, so a message of one bounded frame is what keeps a peer
 * from making this process hold more than it allows. Tensors of any size
 * travel as many such frames, one chunk each (chunk.h). docs/protocol.md is
 * the full description; this module (msg.c, msg_decode.c) is the only one
 * that touches msgpack.
 *
 * Decoding is strict: the protocol version is checked first, every field
 * must have the right type and lie within its bounds, the header must be
 * followed by exactly the payload bytes it announces, and unknown keys are
 * skipped (so a later minor revision can add fields). A peer speaking
 * protocol 1 is told so in a message protocol 1 can read
 * (gdml_msg_encode_v1_refusal).
 */
#ifndef GDML_MSG_H
#define GDML_MSG_H

#include "blob.h"
#include "err.h"
#include "names.h"
#include "score.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GDML_PROTO_VERSION 2
#define GDML_MSG_TEXT_MAX 256
/* An encoded header never exceeds this; a frame whose header is longer is refused. */
#define GDML_MSG_HEADER_MAX 1024
/* Tensors travel in chunks of this many elements, at offsets that are
 * multiples of it (chunk.h). */
#define GDML_CHUNK_ELEMS ((uint64_t)1 << 18)
/* The largest payload of one frame: one chunk of a tensor, as the codec
 * writes it at worst (chunk.h sizes it). */
#define GDML_MSG_PAYLOAD_MAX ((size_t)2 << 20)
/* The largest frame any peer may send; ZeroMQ drops a peer that sends more. */
#define GDML_FRAME_MAX (GDML_MSG_HEADER_MAX + GDML_MSG_PAYLOAD_MAX)

typedef enum gdml_msg_type {
    GDML_MSG_HELLO = 1, /* join or rejoin: count = samples held, version = model version held */
    GDML_MSG_WELCOME,   /* reply to HELLO: text = layout, count = model seed; chunks: the model */
    GDML_MSG_PUSH,      /* worker->server: gradient chunks of one batch; count = batch size */
    GDML_MSG_MODEL,     /* server->worker: parameter chunks after a step */
    GDML_MSG_DELTA,     /* region->coordinator: delta chunks of one round; count = samples */
    GDML_MSG_GLOBAL,    /* coordinator->region: chunks of the change of the global model */
    GDML_MSG_STOP,      /* training is over: finish and exit cleanly */
    GDML_MSG_ERROR,     /* advisory: the sender refused something; code and text say what */
    GDML_MSG_HEARTBEAT, /* "still here": version and step say where the sender is */
    GDML_MSG_LEAVE,     /* the sender leaves for good */
    GDML_MSG_PULL,      /* worker->server: send me the model (chunks: the keys, if sparse) */
    GDML_MSG_TYPE_MAX = GDML_MSG_PULL,
} gdml_msg_type;

typedef enum gdml_encoding {
    GDML_ENC_NONE = 0,  /* no payload */
    GDML_ENC_CODEC = 2, /* a codec payload (codec.h): one chunk, dense or sparse */
    GDML_ENC_MAX = GDML_ENC_CODEC,
} gdml_encoding;

/*
 * Why a message was refused: the code of an ERROR, and the key under which
 * every receiver counts what it drops.
 */
typedef enum gdml_reason {
    GDML_REASON_NONE = 0,
    GDML_REASON_MALFORMED,  /* the frame did not decode */
    GDML_REASON_VERSION,    /* another protocol version */
    GDML_REASON_MULTIPART,  /* more than one frame */
    GDML_REASON_IDENTITY,   /* 'from' is not the name the peer's key has */
    GDML_REASON_NOT_MEMBER, /* the sender has not joined (send HELLO) */
    GDML_REASON_NOT_ALLOWED, /* the sender may not join (no slot, or not in the member list) */
    GDML_REASON_UNEXPECTED, /* this type is not accepted here, or not now */
    GDML_REASON_STALE,      /* names a step or version that is no longer current */
    GDML_REASON_DUPLICATE,  /* already received */
    GDML_REASON_BOUNDS,     /* a count, size or scalar outside what the sender may send */
    GDML_REASON_NONFINITE,  /* NaN or infinity where a number is needed */
    GDML_REASON_TENSOR,     /* a chunk that does not fit the tensor it belongs to */
    GDML_REASON_NORM,       /* an update larger than the configured norm */
    GDML_REASON_LAYOUT,     /* the model layout differs */
    GDML_REASON_BUDGET,     /* the link's budget cannot carry it */
    GDML_REASON_SLOW,       /* the peer stopped reading what it was sent */
    GDML_REASON_COUNT,
} gdml_reason;

typedef struct gdml_msg_header {
    uint32_t proto; /* GDML_PROTO_VERSION */
    gdml_msg_type type;
    char sender[GDML_NAME_MAX]; /* the name the sender claims; the key's name decides */
    uint64_t seq;               /* per-sender sequence number, from 1; chunks of one tensor share it */
    uint64_t version;           /* model version the message refers to */
    uint64_t step;              /* local step or global round */
    uint64_t count;             /* samples, batch size or seed (see the type) */
    double metric;              /* e.g. training loss; NaN when none */
    gdml_reason code;           /* ERROR: why */
    uint64_t acked;             /* HELLO, WELCOME: highest seq of the other side's already applied */
    /* A tensor chunk (encoding CODEC): elements [offset, offset + n) of a
     * tensor of `total` elements, n from the codec payload; the transfer
     * sends `chunks` chunks in all. */
    gdml_encoding encoding;
    uint64_t offset, total, chunks;
    uint64_t plen; /* payload bytes after the header */
    /* Optional (0 = not sent): the budget the sender asks its peer to keep on
     * the way back: a region's downlink bytes per second and bytes in all. */
    uint64_t down_rate, down_cap;
    /* Optional (0 = not sent): the learning rate times the local steps a
     * DELTA's round took; in GLOBAL, the sample-weighted mean over regions. */
    double lr_steps;
    /* Optional (val.rows 0 = not sent): how the model of val_version (at
     * most `version`) does on the sender's held-out rows. PUSH: the
     * worker's holdout; DELTA: the sum over the region's workers. Metrics
     * only. */
    gdml_score val;
    uint64_t val_version;
    char text[GDML_MSG_TEXT_MAX]; /* layout, error text; may be empty */
} gdml_msg_header;

/* Bounds the decoder enforces on every message, whatever its type. */
#define GDML_MSG_MAX_U48 ((uint64_t)1 << 48) /* seq, version, step, count, acked, rates, val.rows  \
                                              */
#define GDML_MSG_MAX_ELEMS ((uint64_t)UINT32_MAX) /* offset + n and total of a tensor */
#define GDML_MSG_MAX_LR_STEPS 1e12

/* What a header field holds on the wire. */
typedef enum gdml_field_kind {
    GDML_FIELD_UINT,   /* an unsigned integer of at most `max` */
    GDML_FIELD_FLOAT,  /* a double (`max` is its 8 bytes) */
    GDML_FIELD_STRING, /* text of at most `max` bytes */
} gdml_field_kind;

/* One field of the header's schema. */
typedef struct gdml_msg_field {
    const char *key; /* its msgpack key */
    gdml_field_kind kind;
    uint64_t max;        /* UINT: the largest value; STRING: the most bytes; FLOAT: 8 */
    size_t offset, size; /* the member of gdml_msg_header it is decoded into */
} gdml_msg_field;

/*
 * The header's schema: every field, *n of them. The decoder reads fields
 * through it and skips any other key unread; the encoder writes only these
 * keys. Static storage.
 */
const gdml_msg_field *gdml_msg_schema(size_t *n);

/* Called for each key of a header: its bytes and the bytes its value takes on the wire. */
typedef void (*gdml_msg_key_fn)(const char *key, size_t key_len, size_t value_bytes, void *user);

/*
 * Lists the keys of the header at the start of frame[0..len) through fn,
 * in wire order, whatever they are (an audit of what a frame carries).
 * GDML_ERR_PROTO with e if the frame does not start with a msgpack map
 * with string keys of at most GDML_MSG_HEADER_MAX bytes.
 */
gdml_err gdml_msg_each_key(const uint8_t *frame, size_t len, gdml_msg_key_fn fn, void *user,
                           gdml_errmsg *e);

/* Zeroes h and sets proto, type, sender (truncated to fit) and metric = NaN. */
void gdml_msg_header_init(gdml_msg_header *h, gdml_msg_type type, const char *sender);

/*
 * Encodes h into buf[0..cap) and stores the length in *len. Returns
 * GDML_ERR_INVALID if h is inconsistent (bad type, a field out of bounds)
 * or GDML_ERR_NOMEM if cap is too small (GDML_MSG_HEADER_MAX always suffices).
 */
gdml_err gdml_msg_encode(const gdml_msg_header *h, uint8_t *buf, size_t cap, size_t *len);

/*
 * Decodes and validates the header at the start of frame[0..len), and the
 * payload after it: *payload points into frame and holds h->plen bytes.
 * Returns GDML_ERR_VERSION if the frame speaks another protocol version
 * (*other_proto, if not NULL, gets it), GDML_ERR_PROTO for truncated or
 * garbage frames, missing or mistyped fields, out-of-range values, or a
 * payload length that differs from plen; e names the field. *h is written
 * only on success.
 */
gdml_err gdml_msg_decode(const uint8_t *frame, size_t len, gdml_msg_header *h,
                         const uint8_t **payload, uint32_t *other_proto, gdml_errmsg *e);

/*
 * A frame to send: a blob with room for the header in front of a payload of
 * up to payload_cap bytes. Write the payload at gdml_frame_payload, then
 * seal the frame with its header. Once sealed and sent, it is immutable and
 * may go to many peers at once.
 */
gdml_err gdml_frame_new(size_t payload_cap, gdml_blob **out);

/* Where the payload of a frame made by gdml_frame_new goes. */
uint8_t *gdml_frame_payload(gdml_blob *frame);

/*
 * Encodes h (with plen = payload_len, encoding NONE if 0) right in front of
 * the payload and sets the blob's view to the whole frame. GDML_ERR_INVALID
 * as gdml_msg_encode, or if payload_len exceeds the frame's capacity.
 */
gdml_err gdml_frame_seal(gdml_blob *frame, gdml_msg_header *h, size_t payload_len);

/* A sealed frame of h and no payload, in one call. */
gdml_err gdml_frame_header_only(gdml_msg_header *h, gdml_blob **out);

/*
 * Encodes, into buf[0..cap), the ERROR a protocol-1 peer can decode, with
 * text saying what to do. GDML_ERR_NOMEM if cap is too small (256 + text).
 */
gdml_err gdml_msg_encode_v1_refusal(const char *text, uint8_t *buf, size_t cap, size_t *len);

/* "HELLO", "PUSH", ...; "UNKNOWN" for other values. */
const char *gdml_msg_type_name(gdml_msg_type type);

/* "malformed", "stale", ... for counters and logs; "unknown" for other values. */
const char *gdml_reason_name(gdml_reason reason);

/*
 * Writes "malformed 5, stale 2" for the non-zero counts[0..GDML_REASON_COUNT)
 * into buf ("none" if every count is 0).
 */
void gdml_reason_counts(const uint64_t *counts, char *buf, size_t cap);

/* True if a message of this type carries tensor chunks. */
bool gdml_msg_type_has_tensor(gdml_msg_type type);

#endif
