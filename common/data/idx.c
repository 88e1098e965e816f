/*
 * idx.c - IDX files through zlib's gz* interface, which reads plain and
 * gzip-compressed files alike. The data are read with one large buffer and a
 * single read loop straight into the result, so the 26 MB Fashion-MNIST
 * training images load in a fraction of a second.
 */
#include "idx.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define IDX_TYPE_U8 0x08
#define IDX_MAX_DIMS 4
#define IDX_HEADER_MAX (4 + 4 * IDX_MAX_DIMS)
#define GZ_BUFFER (256u * 1024u)
/* The first piece of the data read before the buffer grows. */
#define IDX_FIRST ((size_t)16 << 20)
/* gzread and gzwrite take an unsigned count; move at most this much per call. */
#define GZ_CHUNK (1u << 30)

/*
 * Reads up to len bytes into buf; *got says how many arrived. Returns
 * GDML_OK also at end of file (then *got < len); a read or decompression
 * failure is GDML_ERR_IO or GDML_ERR_FORMAT with e naming path.
 */
static gdml_err gz_read_all(gzFile f, const char *path, uint8_t *buf, size_t len, size_t *got,
                            gdml_errmsg *e)
{
    size_t done = 0;
    while (done < len) {
        size_t want = len - done < GZ_CHUNK ? len - done : GZ_CHUNK;
        int n = gzread(f, buf + done, (unsigned)want);
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        if (n == 0)
            break;
        int code;
        const char *msg = gzerror(f, &code);
        /* zlib reports a gzip stream cut short as Z_BUF_ERROR: that is a short file. */
        if (code == Z_BUF_ERROR)
            break;
        if (code == Z_ERRNO)
            return gdml_errmsg_set(e, GDML_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
        return gdml_errmsg_set(e, GDML_ERR_FORMAT, "'%s': corrupt gzip data (%s)", path, msg);
    }
    *got = done;
    return GDML_OK;
}

gdml_err gdml_idx_read(const char *path, gdml_idx *out, gdml_errmsg *e)
{
    gdml_err err = GDML_OK;
    uint8_t *data = NULL;
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) {
        int saved = errno;
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot open '%s': %s", path,
                               saved ? strerror(saved) : "out of memory");
    }
    gzbuffer(f, GZ_BUFFER);

    uint8_t head[4];
    size_t got = 0;
    err = gz_read_all(f, path, head, sizeof head, &got, e);
    if (err)
        goto out;
    if (got < sizeof head) {
        err = gdml_errmsg_set(e, GDML_ERR_FORMAT,
                              "'%s': not an IDX file: it ends after %zu of 4 header bytes", path,
                              got);
        goto out;
    }
    if (head[0] != 0 || head[1] != 0) {
        err = gdml_errmsg_set(e, GDML_ERR_FORMAT,
                              "'%s': not an IDX file: bad magic 0x%02x%02x (expected 0x0000)", path,
                              head[0], head[1]);
        goto out;
    }
    if (head[2] != IDX_TYPE_U8) {
        err = gdml_errmsg_set(e, GDML_ERR_FORMAT,
                              "'%s': IDX element type 0x%02x is not supported (only unsigned "
                              "bytes, 0x08)",
                              path, head[2]);
        goto out;
    }
    uint32_t ndim = head[3];
    if (ndim < 1 || ndim > IDX_MAX_DIMS) {
        err = gdml_errmsg_set(e, GDML_ERR_FORMAT,
                              "'%s': IDX file has %u dimensions; supported are 1 to %d", path, ndim,
                              IDX_MAX_DIMS);
        goto out;
    }

    uint8_t raw[4 * IDX_MAX_DIMS];
    err = gz_read_all(f, path, raw, 4 * ndim, &got, e);
    if (err)
        goto out;
    if (got < 4 * ndim) {
        err = gdml_errmsg_set(e, GDML_ERR_FORMAT,
                              "'%s': file ends after %zu of %u dimension header bytes", path, got,
                              4 * ndim);
        goto out;
    }
    uint32_t dims[IDX_MAX_DIMS] = {0};
    size_t size = 1;
    for (uint32_t i = 0; i < ndim; i++) {
        const uint8_t *b = raw + 4 * i;
        dims[i] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        if (dims[i] == 0) {
            err = gdml_errmsg_set(e, GDML_ERR_FORMAT, "'%s': dimension %u of the IDX file is 0",
                                  path, i);
            goto out;
        }
        if (size > SIZE_MAX / dims[i]) {
            err = gdml_errmsg_set(e, GDML_ERR_FORMAT,
                                  "'%s': IDX dimensions are too large for memory", path);
            goto out;
        }
        size *= dims[i];
    }

    /* The header is only a claim: memory grows with the data actually read,
     * so a damaged header cannot make the reader take more than the file holds. */
    got = 0;
    for (size_t cap = 0; got == cap && cap < size;) {
        size_t next = cap ? (cap > size / 2 ? size : 2 * cap) : (size < IDX_FIRST ? size : IDX_FIRST);
        uint8_t *grown = realloc(data, next);
        if (!grown) {
            err = gdml_errmsg_set(e, GDML_ERR_NOMEM,
                                  "'%s': cannot allocate %zu bytes for its data", path, next);
            goto out;
        }
        data = grown;
        size_t more = 0;
        if ((err = gz_read_all(f, path, data + cap, next - cap, &more, e)))
            goto out;
        got = cap + more;
        cap = next;
    }
    if (got < size) {
        err = gdml_errmsg_set(e, GDML_ERR_FORMAT, "'%s': file ends after %zu of %zu data bytes",
                              path, got, size);
        goto out;
    }

    out->ndim = ndim;
    memcpy(out->dims, dims, sizeof out->dims);
    out->data = data;
    out->size = size;
    data = NULL;
out:
    free(data);
    gzclose(f);
    return err;
}

/* Encodes idx's header into h; returns its length. */
static size_t encode_header(const gdml_idx *idx, uint8_t h[IDX_HEADER_MAX])
{
    h[0] = 0;
    h[1] = 0;
    h[2] = IDX_TYPE_U8;
    h[3] = (uint8_t)idx->ndim;
    for (uint32_t i = 0; i < idx->ndim; i++) {
        uint32_t d = idx->dims[i];
        h[4 + 4 * i] = (uint8_t)(d >> 24);
        h[5 + 4 * i] = (uint8_t)(d >> 16);
        h[6 + 4 * i] = (uint8_t)(d >> 8);
        h[7 + 4 * i] = (uint8_t)d;
    }
    return 4 + 4 * (size_t)idx->ndim;
}

/* Checks that idx is writable: 1 to 4 non-zero dimensions whose product is size. */
static gdml_err check_shape(const gdml_idx *idx, const char *path, gdml_errmsg *e)
{
    if (idx->ndim < 1 || idx->ndim > IDX_MAX_DIMS)
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "cannot write '%s': %u dimensions; IDX supports 1 to %d", path,
                               idx->ndim, IDX_MAX_DIMS);
    size_t size = 1;
    for (uint32_t i = 0; i < idx->ndim; i++) {
        if (idx->dims[i] == 0 || size > SIZE_MAX / idx->dims[i])
            return gdml_errmsg_set(e, GDML_ERR_INVALID,
                                   "cannot write '%s': dimension %u is 0 or too large", path, i);
        size *= idx->dims[i];
    }
    if (size != idx->size || (size > 0 && !idx->data))
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "cannot write '%s': dimensions give %zu bytes but data holds %zu",
                               path, size, idx->size);
    return GDML_OK;
}

static bool ends_with_gz(const char *path)
{
    size_t n = strlen(path);
    return n >= 3 && strcmp(path + n - 3, ".gz") == 0;
}

static gdml_err write_gz(const char *path, const uint8_t *head, size_t head_len,
                         const gdml_idx *idx, gdml_errmsg *e)
{
    gzFile f = gzopen(path, "wb6");
    if (!f)
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot create '%s': %s", path,
                               errno ? strerror(errno) : "out of memory");
    gzbuffer(f, GZ_BUFFER);
    bool ok = gzwrite(f, head, (unsigned)head_len) == (int)head_len;
    for (size_t done = 0; ok && done < idx->size;) {
        size_t n = idx->size - done < GZ_CHUNK ? idx->size - done : GZ_CHUNK;
        ok = gzwrite(f, idx->data + done, (unsigned)n) == (int)n;
        done += n;
    }
    int saved = errno;
    int rc = gzclose(f);
    if (!ok || rc != Z_OK)
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot write '%s': %s", path,
                               saved ? strerror(saved) : "compression failed");
    return GDML_OK;
}

static gdml_err write_plain(const char *path, const uint8_t *head, size_t head_len,
                            const gdml_idx *idx, gdml_errmsg *e)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
    bool ok =
        fwrite(head, 1, head_len, f) == head_len && fwrite(idx->data, 1, idx->size, f) == idx->size;
    int saved = errno;
    if (fclose(f) != 0 && ok) {
        ok = false;
        saved = errno;
    }
    if (!ok)
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot write '%s': %s", path, strerror(saved));
    return GDML_OK;
}

gdml_err gdml_idx_write(const char *path, const gdml_idx *idx, gdml_errmsg *e)
{
    gdml_err err = check_shape(idx, path, e);
    if (err)
        return err;
    uint8_t head[IDX_HEADER_MAX];
    size_t head_len = encode_header(idx, head);
    errno = 0;
    if (ends_with_gz(path))
        return write_gz(path, head, head_len, idx, e);
    return write_plain(path, head, head_len, idx, e);
}

size_t gdml_idx_file_size(const gdml_idx *idx)
{
    return 4 + 4 * (size_t)idx->ndim + idx->size;
}

void gdml_idx_fini(gdml_idx *idx)
{
    if (!idx)
        return;
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}
