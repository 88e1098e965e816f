/*
 * msg_impl.h - private to the wire message module (msg.c encodes,
 * msg_decode.c decodes): the header's fields, the schema table, and the
 * checks both sides share, so that nothing sent is refused on arrival.
 */
#ifndef GDML_MSG_IMPL_H
#define GDML_MSG_IMPL_H

#include "msg.h"

/* The header's fields, in the order they are encoded ("proto" first). */
enum field {
    F_PROTO,
    F_TYPE,
    F_FROM,
    F_SEQ,
    F_VER,
    F_STEP,
    F_COUNT,
    F_METRIC,
    F_CODE,
    F_ACKED,
    F_ENC,
    F_OFFSET,
    F_TOTAL,
    F_CHUNKS,
    F_PLEN,
    F_DRATE,
    F_DCAP,
    F_LRSTEPS,
    F_VROWS,
    F_VOK,
    F_VLOSS,
    F_VVER,
    F_TEXT,
    F_COUNT_OF_FIELDS,
};

/* The schema (msg.c): every field's key, kind, bound and place in the header. */
extern const gdml_msg_field gdml_msg_fields[F_COUNT_OF_FIELDS];

/* A field's key, for messages. */
#define field_key(f) (gdml_msg_fields[f].key)

/* Checks a sender name of len bytes: empty (not sent), or short and printable. */
gdml_err gdml_msg_check_sender(const char *s, size_t len, gdml_errmsg *e);

/* "header field 'KEY': V is above MAX", as GDML_ERR_PROTO. */
gdml_err gdml_msg_too_big(enum field f, uint64_t v, uint64_t max, gdml_errmsg *e);

/* Checks the fields of a filled header against each other and their bounds. */
gdml_err gdml_msg_check_values(const gdml_msg_header *h, gdml_errmsg *e);

#endif
