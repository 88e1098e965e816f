/*
 * blob.c - reference-counted byte buffers. One allocation holds the count,
 * the size and the bytes; the bytes start one cache line in, so they are
 * 64-byte aligned like the allocation itself.
 */
#include "blob.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BLOB_ALIGN 64

struct gdml_blob {
    atomic_size_t refs;
    size_t size;
    size_t view_off, view_len; /* what a send puts on the wire */
};

/* Where the bytes start: the header rounded up to the alignment. */
#define BLOB_HEADER ((sizeof(struct gdml_blob) + BLOB_ALIGN - 1) / BLOB_ALIGN * BLOB_ALIGN)

gdml_err gdml_blob_new(size_t size, gdml_blob **out)
{
    if (size > SIZE_MAX - BLOB_HEADER - BLOB_ALIGN)
        return GDML_ERR_NOMEM;
    /* aligned_alloc wants a size that is a multiple of the alignment. */
    size_t total = (BLOB_HEADER + size + BLOB_ALIGN - 1) / BLOB_ALIGN * BLOB_ALIGN;
    gdml_blob *b = aligned_alloc(BLOB_ALIGN, total);
    if (!b)
        return GDML_ERR_NOMEM;
    atomic_init(&b->refs, 1);
    b->size = size;
    b->view_off = 0;
    b->view_len = size;
    *out = b;
    return GDML_OK;
}

gdml_err gdml_blob_copy(const void *data, size_t size, gdml_blob **out)
{
    gdml_blob *b = NULL;
    gdml_err err = gdml_blob_new(size, &b);
    if (err != GDML_OK)
        return err;
    if (size > 0)
        memcpy(gdml_blob_data(b), data, size);
    *out = b;
    return GDML_OK;
}

void *gdml_blob_data(gdml_blob *b)
{
    return (unsigned char *)b + BLOB_HEADER;
}

size_t gdml_blob_size(const gdml_blob *b)
{
    return b->size;
}

void gdml_blob_set_view(gdml_blob *b, size_t offset, size_t len)
{
    assert(offset <= b->size && len <= b->size - offset);
    b->view_off = offset;
    b->view_len = len;
}

const void *gdml_blob_view(const gdml_blob *b, size_t *len)
{
    *len = b->view_len;
    return (const unsigned char *)b + BLOB_HEADER + b->view_off;
}

gdml_blob *gdml_blob_ref(gdml_blob *b)
{
    /* Taking a reference needs no ordering: the caller already holds one. */
    size_t old = atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    assert(old > 0);
    (void)old;
    return b;
}

void gdml_blob_unref(gdml_blob **bp)
{
    if (!bp || !*bp)
        return;
    gdml_blob *b = *bp;
    *bp = NULL;
    /* Release so that this thread's writes happen before the free; the last
     * owner's acquire fence makes everyone's writes visible to it. */
    size_t old = atomic_fetch_sub_explicit(&b->refs, 1, memory_order_release);
    assert(old > 0);
    if (old == 1) {
        atomic_thread_fence(memory_order_acquire);
        free(b);
    }
}
