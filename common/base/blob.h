/*
 * blob.h - a reference-counted, immutable-once-shared byte buffer.
 *
 * Tensors travel as blobs so that the transport can hand them to ZeroMQ
 * without copying (zmq_msg_init_data) and one buffer can go to many peers:
 * each send takes a reference and ZeroMQ's I/O thread drops it when the bytes
 * are on the wire. Rule: once a blob has been given to a send, nobody writes
 * to it again; make a new blob for the next version of the data.
 * The count is atomic because the last reference may drop on another thread.
 */
#ifndef GDML_BLOB_H
#define GDML_BLOB_H

#include "err.h"

#include <stddef.h>

typedef struct gdml_blob gdml_blob;

/* Allocates a blob of size bytes (contents undefined) with one reference. */
gdml_err gdml_blob_new(size_t size, gdml_blob **out);

/* Allocates a blob holding a copy of data[0..size). */
gdml_err gdml_blob_copy(const void *data, size_t size, gdml_blob **out);

/* The blob's bytes, 64-byte aligned; writable only while not yet shared. */
void *gdml_blob_data(gdml_blob *b);
size_t gdml_blob_size(const gdml_blob *b);

/*
 * The part of the blob a send puts on the wire: by default all of it. A
 * message frame is built with room for its header in front of the payload
 * (msg.h), and its view is set to where the header starts, once encoded.
 */
void gdml_blob_set_view(gdml_blob *b, size_t offset, size_t len);
const void *gdml_blob_view(const gdml_blob *b, size_t *len);

/* Takes one more reference and returns b. */
gdml_blob *gdml_blob_ref(gdml_blob *b);

/* Drops the caller's reference, frees on the last, clears *b. NULL-safe. */
void gdml_blob_unref(gdml_blob **b);

#endif
