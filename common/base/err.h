/*
 * err.h - gdml's error codes and the message buffer that carries details.
 *
 * Every gdml function that can fail returns a gdml_err (GDML_OK is 0) and sets
 * its out-parameters only on success. Functions whose failure a user must act
 * on also take a gdml_errmsg *, filled with one readable sentence that names
 * what went wrong and where (file:line, peer, field). A NULL gdml_errmsg * is
 * always accepted and means "the caller does not want the text".
 *
 * Library error codes (errno, LMDB, ZeroMQ, zlib, msgpack) are translated into
 * these at the edge of the one module that wraps each library.
 */
#ifndef GDML_ERR_H
#define GDML_ERR_H

#include <stddef.h>

typedef enum gdml_err {
    GDML_OK = 0,
    GDML_ERR_NOMEM,       /* an allocation failed */
    GDML_ERR_IO,          /* a file could not be read or written */
    GDML_ERR_INVALID,     /* an argument or value is out of its allowed range */
    GDML_ERR_CONFIG,      /* a configuration file or flag is wrong */
    GDML_ERR_FORMAT,      /* a file or record is malformed (IDX, store record) */
    GDML_ERR_PROTO,       /* a message is malformed or unexpected */
    GDML_ERR_VERSION,     /* a message speaks another protocol version */
    GDML_ERR_NOTFOUND,    /* the thing asked for does not exist */
    GDML_ERR_TIMEOUT,     /* a peer did not answer in time */
    GDML_ERR_AGAIN,       /* nothing is ready yet; try again later */
    GDML_ERR_STORE,       /* the LMDB store failed */
    GDML_ERR_TRANSPORT,   /* a ZeroMQ call failed */
    GDML_ERR_INTERRUPTED, /* a signal asked the process to stop */
    GDML_ERR_EXISTS,      /* the thing to create exists already */
    GDML_ERR_NOSPACE,     /* the disk is full */
} gdml_err;

/* Returns a short, static description of err ("out of memory", ...). */
const char *gdml_strerror(gdml_err err);

#define GDML_ERRMSG_MAX 512

/* One readable sentence describing the last failure. Caller-owned storage. */
typedef struct gdml_errmsg {
    char text[GDML_ERRMSG_MAX];
} gdml_errmsg;

/*
 * Formats a message into e (printf-style) and returns code, so that callers
 * can write `return gdml_errmsg_set(e, GDML_ERR_IO, "cannot open %s", p);`.
 * e may be NULL, in which case only code is returned.
 */
gdml_err gdml_errmsg_set(gdml_errmsg *e, gdml_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the message already in e with printf-style context. NULL-safe. */
void gdml_errmsg_prefix(gdml_errmsg *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
