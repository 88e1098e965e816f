/*
 * msg.h - the gdml wire header: what every message says about itself.
 *
 * A gdml message is one ZeroMQ multipart message: frame 0 is this header,
 * encoded as a msgpack map; frames 1..n are raw payloads (tensors), whose byte
 * sizes the header lists. docs/protocol.md is the full description. This is
 * the only module that touches msgpack.
 *
 * Decoding is strict: the protocol version is checked first, every required
 * field must be present with the right type and within bounds, the whole
 * buffer must be consumed, and unknown keys are skipped (so that a newer
 * minor revision can add fields). Nothing in a header is trusted before
 * gdml_msg_decode returns GDML_OK.
 */
#ifndef GDML_MSG_H
#define GDML_MSG_H

#include "names.h"
#include "err.h"

#include <stddef.h>
#include <stdint.h>

#define GDML_PROTO_VERSION 1
#define GDML_MSG_MAX_PAYLOADS 8
#define GDML_MSG_TEXT_MAX 256
/* An encoded header never exceeds this; a longer frame 0 is rejected unread. */
#define GDML_MSG_HEADER_MAX 2048
/* Largest payload frame accepted (bigger tensors travel in chunks). */
#define GDML_MSG_PAYLOAD_MAX ((uint64_t)1 << 31)

typedef enum gdml_msg_type {
    GDML_MSG_HELLO = 1, /* worker->server, server->coordinator: join; count = samples held */
    GDML_MSG_WELCOME,   /* reply to HELLO; text = model layout; payload 0 = parameters */
    GDML_MSG_PUSH,      /* worker->server: gradient of one batch; count = batch size */
    GDML_MSG_MODEL,     /* server->worker: parameters after a step */
    GDML_MSG_DELTA,     /* server->coordinator: model delta of one round; count = samples */
    GDML_MSG_GLOBAL,    /* coordinator->server: the merged global model */
    GDML_MSG_STOP,      /* training is over: finish and exit cleanly */
    GDML_MSG_ERROR,     /* the sender refuses something; text says what */
    GDML_MSG_TYPE_MAX = GDML_MSG_ERROR,
} gdml_msg_type;

typedef enum gdml_encoding {
    GDML_ENC_NONE = 0,      /* no payload */
    GDML_ENC_DENSE_F32 = 1, /* little-endian float32 array, one per payload frame */
    GDML_ENC_CODEC = 2,     /* a codec payload (codec.h): sparse and/or quantized */
    GDML_ENC_MAX = GDML_ENC_CODEC,
} gdml_encoding;

typedef struct gdml_msg_header {
    uint32_t proto; /* GDML_PROTO_VERSION */
    gdml_msg_type type;
    char sender[GDML_NAME_MAX]; /* region or worker name, NUL-terminated */
    uint64_t seq;               /* per-sender sequence number, from 1 */
    uint64_t version;           /* model version the message refers to */
    uint64_t step;              /* local step or global round */
    uint64_t count;             /* samples or batch size (see the type) */
    double metric;              /* e.g. training loss; NaN when none */
    gdml_encoding encoding;
    uint32_t n_payloads;                   /* 0..GDML_MSG_MAX_PAYLOADS */
    uint64_t sizes[GDML_MSG_MAX_PAYLOADS]; /* byte size of each payload frame */
    char text[GDML_MSG_TEXT_MAX];          /* layout, error text; may be empty */
    /* Optional (0 = not sent): the budget the sender asks its peer to keep on
     * the way back: a region's downlink bytes per second and bytes in all. */
    uint64_t down_rate, down_cap;
    /* Optional (0 = not sent): the learning rate times the local steps a
     * DELTA's round took; in GLOBAL, the sample-weighted mean over regions. */
    double lr_steps;
} gdml_msg_header;

/* Zeroes h and sets proto, type, sender (truncated to fit) and metric = NaN. */
void gdml_msg_header_init(gdml_msg_header *h, gdml_msg_type type, const char *sender);

/*
 * Encodes h into buf[0..cap) and stores the length in *len. Returns
 * GDML_ERR_INVALID if h is inconsistent (bad type, too many payloads) or
 * GDML_ERR_NOMEM if cap is too small (GDML_MSG_HEADER_MAX always suffices).
 */
gdml_err gdml_msg_encode(const gdml_msg_header *h, uint8_t *buf, size_t cap, size_t *len);

/*
 * Decodes and validates a header. Returns GDML_ERR_VERSION if proto differs
 * from GDML_PROTO_VERSION, GDML_ERR_PROTO for truncated, garbage, trailing
 * bytes, missing or mistyped fields, out-of-range values; e names the field.
 * *h is written only on success.
 */
gdml_err gdml_msg_decode(const uint8_t *buf, size_t len, gdml_msg_header *h, gdml_errmsg *e);

/* "HELLO", "PUSH", ...; "UNKNOWN" for other values. */
const char *gdml_msg_type_name(gdml_msg_type type);

#endif
