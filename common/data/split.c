/*
 * split.c - dealing a training set out to regions, IID or with Dirichlet
 * label skew, and writing each region's part as IDX files. The only source of
 * randomness is a gdml_rng seeded from the caller's seed, so a split is
 * reproducible anywhere.
 */
#define ZLIB_CONST
#include "split.h"

#include "rng.h"
#include "util.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define SPLIT_MAX_TRIES 1000
#define SPLIT_MIN_SAMPLES 10
#define SPLIT_MAX_CLASSES 256
#define IMAGES_FILE "train-images-idx3-ubyte"
#define LABELS_FILE "train-labels-idx1-ubyte"

int gdml_split_mode_parse(const char *s)
{
    if (strcmp(s, "iid") == 0)
        return GDML_SPLIT_IID;
    if (strcmp(s, "dirichlet") == 0)
        return GDML_SPLIT_DIRICHLET;
    return -1;
}

/* IID: shuffle all indices and deal them round-robin, so sizes differ by at most one. */
static gdml_err assign_iid(size_t n, unsigned regions, gdml_rng *rng, uint32_t *out, gdml_errmsg *e)
{
    uint32_t *perm = malloc(n * sizeof *perm);
    if (!perm)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "cannot allocate a permutation of %zu samples",
                               n);
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    gdml_rng_shuffle_u32(rng, perm, n);
    for (size_t k = 0; k < n; k++)
        out[perm[k]] = (uint32_t)(k % regions);
    free(perm);
    return GDML_OK;
}

/*
 * One Dirichlet draw: for each class, shuffles that class's indices
 * (order[start[c]..start[c+1])), draws proportions over the regions and cuts
 * the shuffled list at the rounded cumulative proportions, so every sample is
 * assigned. Adds each region's share to size[].
 */
static void draw_dirichlet(const size_t *start, unsigned classes, unsigned regions, double alpha,
                           gdml_rng *rng, uint32_t *order, double *p, size_t *size, uint32_t *out)
{
    memset(size, 0, regions * sizeof *size);
    for (unsigned c = 0; c < classes; c++) {
        size_t m = start[c + 1] - start[c];
        if (m == 0)
            continue;
        uint32_t *slice = order + start[c];
        gdml_rng_shuffle_u32(rng, slice, m);
        gdml_rng_dirichlet(rng, alpha, p, regions);
        double cum = 0.0;
        size_t lo = 0;
        for (unsigned r = 0; r < regions; r++) {
            cum += p[r];
            size_t hi = m;
            if (r + 1 < regions) {
                double cut = floor(cum * (double)m + 0.5);
                hi = cut < (double)lo ? lo : cut > (double)m ? m : (size_t)cut;
            }
            for (size_t k = lo; k < hi; k++)
                out[slice[k]] = r;
            size[r] += hi - lo;
            lo = hi;
        }
    }
}

/* Dirichlet label skew, redrawn until every region has enough samples. */
static gdml_err assign_dirichlet(const uint8_t *labels, size_t n, unsigned classes,
                                 unsigned regions, double alpha, gdml_rng *rng, uint32_t *out,
                                 gdml_errmsg *e)
{
    gdml_err err = GDML_OK;
    size_t start[SPLIT_MAX_CLASSES + 1] = {0};
    uint32_t *order = malloc(n * sizeof *order);
    double *p = malloc(regions * sizeof *p);
    size_t *size = malloc(regions * sizeof *size);
    if (!order || !p || !size) {
        err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "cannot allocate a split of %zu samples", n);
        goto out;
    }
    /* Counting sort by label: order holds each class's indices, ascending. */
    for (size_t i = 0; i < n; i++)
        start[labels[i] + 1]++;
    for (unsigned c = 0; c < classes; c++)
        start[c + 1] += start[c];
    size_t fill[SPLIT_MAX_CLASSES];
    memcpy(fill, start, sizeof fill);
    for (size_t i = 0; i < n; i++)
        order[fill[labels[i]]++] = (uint32_t)i;

    size_t need = n / regions < SPLIT_MIN_SAMPLES ? n / regions : SPLIT_MIN_SAMPLES;
    for (int t = 0; t < SPLIT_MAX_TRIES; t++) {
        draw_dirichlet(start, classes, regions, alpha, rng, order, p, size, out);
        bool ok = true;
        for (unsigned r = 0; r < regions && ok; r++)
            ok = size[r] >= need;
        if (ok)
            goto out;
    }
    err = gdml_errmsg_set(e, GDML_ERR_INVALID,
                          "no Dirichlet(alpha=%g) split of %zu samples in %d tries gave each of "
                          "%u regions at least %zu samples; raise alpha or use fewer regions",
                          alpha, n, SPLIT_MAX_TRIES, regions, need);
out:
    free(order);
    free(p);
    free(size);
    return err;
}

gdml_err gdml_split_assign(const uint8_t *labels, size_t n, unsigned classes, unsigned regions,
                           gdml_split_mode mode, double alpha, uint64_t seed, uint32_t *region_of,
                           gdml_errmsg *e)
{
    if (regions == 0)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "a split needs at least one region");
    if (classes == 0 || classes > SPLIT_MAX_CLASSES)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "split: %u classes; allowed are 1 to %d",
                               classes, SPLIT_MAX_CLASSES);
    if (mode != GDML_SPLIT_IID && mode != GDML_SPLIT_DIRICHLET)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "split: unknown mode %d", (int)mode);
    if (mode == GDML_SPLIT_DIRICHLET && !(alpha > 0.0 && isfinite(alpha)))
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "split: Dirichlet alpha %g must be a positive number", alpha);
    if (n < regions)
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "split: %zu samples cannot give each of %u regions a sample", n,
                               regions);
    if (n > UINT32_MAX)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "split: %zu samples; at most %u are supported",
                               n, (unsigned)UINT32_MAX);
    for (size_t i = 0; i < n; i++)
        if (labels[i] >= classes)
            return gdml_errmsg_set(e, GDML_ERR_INVALID,
                                   "split: sample %zu has label %u, not below %u classes", i,
                                   labels[i], classes);

    /* Work in a buffer so that region_of is untouched on failure. */
    uint32_t *out = malloc(n * sizeof *out);
    if (!out)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "cannot allocate a split of %zu samples", n);
    gdml_rng rng;
    gdml_rng_seed(&rng, seed);
    gdml_err err = mode == GDML_SPLIT_IID
                       ? assign_iid(n, regions, &rng, out, e)
                       : assign_dirichlet(labels, n, classes, regions, alpha, &rng, out, e);
    if (!err)
        memcpy(region_of, out, n * sizeof *out);
    free(out);
    return err;
}

/* Writes the IDX header gdml_idx_write puts before idx's data (at most 20 bytes) into h. */
static size_t idx_header(const gdml_idx *idx, uint8_t *h)
{
    h[0] = 0;
    h[1] = 0;
    h[2] = 0x08;
    h[3] = (uint8_t)idx->ndim;
    for (uint32_t i = 0; i < idx->ndim; i++) {
        h[4 + 4 * i] = (uint8_t)(idx->dims[i] >> 24);
        h[5 + 4 * i] = (uint8_t)(idx->dims[i] >> 16);
        h[6 + 4 * i] = (uint8_t)(idx->dims[i] >> 8);
        h[7 + 4 * i] = (uint8_t)idx->dims[i];
    }
    return 4 + 4 * (size_t)idx->ndim;
}

/*
 * Streams region r's rows of src (rows of them; src's other dimensions kept)
 * through a gzip deflate at level 6 - what gzopen "wb6" would write for that
 * part's file - and returns the compressed size without keeping the output.
 * Rows are gathered straight from src into a staging buffer, so no copy of
 * the part is needed. Returns a zlib code (Z_OK on success).
 */
static int gzip_gather_size(const gdml_idx *src, uint32_t rows, const uint32_t *region_of,
                            uint32_t r, uint8_t *stage, size_t stage_len, uint64_t *size)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    int rc = deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    if (rc != Z_OK)
        return rc;
    gdml_idx part = *src;
    part.dims[0] = rows;
    size_t n = src->dims[0], row = src->size / n;
    size_t fill = idx_header(&part, stage);
    uint8_t sink[64 * 1024];
    uint64_t total = 0;
    size_t i = 0;
    for (;;) {
        /* Top up the staging buffer with whole rows of region r. */
        for (; i < n && stage_len - fill >= row; i++)
            if (region_of[i] == r) {
                memcpy(stage + fill, src->data + i * row, row);
                fill += row;
            }
        int flush = i == n ? Z_FINISH : Z_NO_FLUSH;
        z.next_in = stage;
        z.avail_in = (uInt)fill;
        do {
            z.next_out = sink;
            z.avail_out = sizeof sink;
            rc = deflate(&z, flush);
            total += sizeof sink - z.avail_out;
        } while (z.avail_out == 0);
        fill = 0;
        if (flush == Z_FINISH)
            break;
    }
    deflateEnd(&z);
    if (rc != Z_STREAM_END)
        return rc == Z_OK ? Z_BUF_ERROR : rc;
    *size = total;
    return Z_OK;
}

/*
 * Counting gzip bytes is the slow part of a split (deflate runs at tens of
 * MB/s), and regions are independent, so a few threads take regions from a
 * shared counter. They only read the source arrays; each writes nothing but
 * its own region's slots in gzip_bytes and rc. This is a fork-join over
 * read-only data, so no messages are needed between the threads.
 */
typedef struct gzip_work {
    const gdml_idx *images, *labels;
    const uint32_t *region_of;
    const size_t *counts;
    unsigned regions;
    atomic_uint next;
    uint64_t *gzip_bytes; /* [regions] */
    int *rc;              /* [regions], zlib codes */
} gzip_work;

static void *gzip_worker(void *arg)
{
    gzip_work *w = arg;
    /* The staging buffer must hold an IDX header plus at least one image row. */
    size_t row = w->images->size / w->images->dims[0];
    size_t stage_len = 256 * 1024 > row + 20 ? 256 * 1024 : row + 20;
    uint8_t *stage = malloc(stage_len);
    for (unsigned r; (r = atomic_fetch_add(&w->next, 1)) < w->regions;) {
        if (!stage) {
            w->rc[r] = Z_MEM_ERROR;
            continue;
        }
        uint64_t gz_img = 0, gz_lab = 0;
        uint32_t rows = (uint32_t)w->counts[r];
        int rc = gzip_gather_size(w->images, rows, w->region_of, r, stage, stage_len, &gz_img);
        if (rc == Z_OK)
            rc = gzip_gather_size(w->labels, rows, w->region_of, r, stage, stage_len, &gz_lab);
        w->rc[r] = rc;
        w->gzip_bytes[r] = gz_img + gz_lab;
    }
    free(stage);
    return NULL;
}

/* Fills parts[r].gzip_bytes for every region, on up to one thread per CPU. */
static gdml_err gzip_parts(const gdml_idx *images, const gdml_idx *labels,
                           const uint32_t *region_of, const size_t *counts, unsigned regions,
                           gdml_split_part *parts, gdml_errmsg *e)
{
    gdml_err err = GDML_OK;
    gzip_work w = {.images = images,
                   .labels = labels,
                   .region_of = region_of,
                   .counts = counts,
                   .regions = regions};
    atomic_init(&w.next, 0);
    w.gzip_bytes = calloc(regions, sizeof *w.gzip_bytes);
    w.rc = calloc(regions, sizeof *w.rc);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned extra = cpus > 1 ? (unsigned)(cpus < 16 ? cpus : 16) - 1 : 0;
    extra = extra < regions ? extra : regions - 1;
    pthread_t threads[15];
    unsigned started = 0;
    if (!w.gzip_bytes || !w.rc) {
        err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "split: cannot allocate %u gzip counts", regions);
        goto out;
    }
    /* If a thread cannot start, the calling thread simply takes more regions. */
    while (started < extra && pthread_create(&threads[started], NULL, gzip_worker, &w) == 0)
        started++;
    gzip_worker(&w);
    for (unsigned t = 0; t < started; t++)
        pthread_join(threads[t], NULL);
    for (unsigned r = 0; r < regions; r++) {
        if (w.rc[r] != Z_OK) {
            err = gdml_errmsg_set(e, w.rc[r] == Z_MEM_ERROR ? GDML_ERR_NOMEM : GDML_ERR_IO,
                                  "split: counting gzip bytes of region '%s' failed (zlib %d)",
                                  parts[r].name, w.rc[r]);
            goto out;
        }
        parts[r].gzip_bytes = w.gzip_bytes[r];
    }
out:
    free(w.gzip_bytes);
    free(w.rc);
    return err;
}

/* True if name can be a directory under dir: non-empty, one path component. */
static bool name_ok(const char *name)
{
    if (!memchr(name, '\0', GDML_NAME_MAX) || !*name || strchr(name, '/'))
        return false;
    return strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

/* Checks split_write's arguments; counts[r] receives region r's sample count. */
static gdml_err check_write_args(const gdml_idx *images, const gdml_idx *labels,
                                 const uint32_t *region_of, char (*names)[GDML_NAME_MAX],
                                 unsigned regions, size_t *counts, gdml_errmsg *e)
{
    if (regions == 0)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "a split needs at least one region");
    if (labels->ndim != 1 || images->ndim < 1 || images->dims[0] != labels->dims[0])
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "split: images (%u dimensions, %u rows) and labels (%u dimensions, "
                               "%u rows) do not match",
                               images->ndim, images->dims[0], labels->ndim, labels->dims[0]);
    for (unsigned r = 0; r < regions; r++) {
        if (!name_ok(names[r]))
            return gdml_errmsg_set(e, GDML_ERR_INVALID,
                                   "split: region %u's name is not a valid directory name", r);
        for (unsigned q = 0; q < r; q++)
            if (strcmp(names[q], names[r]) == 0)
                return gdml_errmsg_set(e, GDML_ERR_INVALID,
                                       "split: region name '%s' is given twice", names[r]);
    }
    memset(counts, 0, regions * sizeof *counts);
    for (size_t i = 0; i < labels->dims[0]; i++) {
        if (region_of[i] >= regions)
            return gdml_errmsg_set(e, GDML_ERR_INVALID,
                                   "split: sample %zu is assigned to region %u of %u", i,
                                   region_of[i], regions);
        counts[region_of[i]]++;
    }
    for (unsigned r = 0; r < regions; r++)
        if (counts[r] == 0)
            return gdml_errmsg_set(e, GDML_ERR_INVALID,
                                   "split: region '%s' has no samples; an IDX file cannot be empty",
                                   names[r]);
    return GDML_OK;
}

/* Writes idx as dir/name/file. */
static gdml_err write_part_file(const char *dir, const char *name, const char *file,
                                const gdml_idx *idx, gdml_errmsg *e)
{
    char path[GDML_PATH_MAX + 2 * GDML_NAME_MAX];
    if (snprintf(path, sizeof path, "%s/%s/%s", dir, name, file) >= (int)sizeof path)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "split: path '%s/%s/%s' is too long", dir, name,
                               file);
    return gdml_idx_write(path, idx, e);
}

gdml_err gdml_split_write(const gdml_idx *images, const gdml_idx *labels, const uint32_t *region_of,
                          char (*names)[GDML_NAME_MAX], unsigned regions, const char *dir, int gzip,
                          gdml_split_part *parts, gdml_errmsg *e)
{
    gdml_err err = GDML_OK;
    size_t n = labels->dims[0];
    size_t *counts = malloc((regions ? regions : 1) * sizeof *counts);
    gdml_split_part *done = calloc(regions ? regions : 1, sizeof *done);
    uint8_t *img_buf = NULL, *lab_buf = NULL;
    if (!counts || !done) {
        err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "split: cannot allocate %u parts", regions);
        goto out;
    }
    err = check_write_args(images, labels, region_of, names, regions, counts, e);
    if (err)
        goto out;
    size_t row = images->size / n;
    size_t most = 0;
    for (unsigned r = 0; r < regions; r++)
        most = counts[r] > most ? counts[r] : most;
    img_buf = malloc(most * row);
    lab_buf = malloc(most);
    if (!img_buf || !lab_buf) {
        err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "split: cannot allocate %zu rows of %zu bytes",
                              most, row);
        goto out;
    }

    for (unsigned r = 0; r < regions; r++) {
        gdml_split_part *part = &done[r];
        snprintf(part->name, sizeof part->name, "%s", names[r]);
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (region_of[i] != r)
                continue;
            memcpy(img_buf + k * row, images->data + i * row, row);
            lab_buf[k++] = labels->data[i];
            part->per_class[labels->data[i]]++;
        }
        part->samples = k;
        /* Views over the buffers, with the source's image dimensions but k rows. */
        gdml_idx img = *images, lab = *labels;
        img.dims[0] = lab.dims[0] = (uint32_t)k;
        img.data = img_buf;
        img.size = k * row;
        lab.data = lab_buf;
        lab.size = k;

        char sub[GDML_PATH_MAX + GDML_NAME_MAX];
        if (snprintf(sub, sizeof sub, "%s/%s", dir, names[r]) >= (int)sizeof sub) {
            err = gdml_errmsg_set(e, GDML_ERR_INVALID, "split: path '%s/%s' is too long", dir,
                                  names[r]);
            goto out;
        }
        err = gdml_mkdir_p(sub, e);
        if (!err)
            err = write_part_file(dir, names[r], IMAGES_FILE, &img, e);
        if (!err)
            err = write_part_file(dir, names[r], LABELS_FILE, &lab, e);
        if (err)
            goto out;
        part->raw_bytes = gdml_idx_file_size(&img) + gdml_idx_file_size(&lab);
    }
    if (gzip) {
        err = gzip_parts(images, labels, region_of, counts, regions, done, e);
        if (err)
            goto out;
    }
    memcpy(parts, done, regions * sizeof *parts);
out:
    free(counts);
    free(done);
    free(img_buf);
    free(lab_buf);
    return err;
}

gdml_err gdml_split_files(const char *images_path, const char *labels_path,
                          char (*names)[GDML_NAME_MAX], unsigned regions, gdml_split_mode mode,
                          double alpha, uint64_t seed, const char *dir, gdml_split_part *parts,
                          size_t *n_samples, gdml_errmsg *e)
{
    gdml_idx images = {0}, labels = {0};
    uint32_t *region_of = NULL;
    gdml_err err = gdml_idx_read(images_path, &images, e);
    if (!err)
        err = gdml_idx_read(labels_path, &labels, e);
    if (err)
        goto out;
    if (images.ndim != 3 || labels.ndim != 1 || images.dims[0] != labels.dims[0]) {
        err = gdml_errmsg_set(e, GDML_ERR_FORMAT,
                              "'%s' and '%s' are not an images file and a labels file of the "
                              "same length",
                              images_path, labels_path);
        goto out;
    }
    size_t n = labels.dims[0];
    if (!(region_of = malloc(n * sizeof *region_of))) {
        err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for %zu samples", n);
        goto out;
    }
    unsigned classes = 0;
    for (size_t i = 0; i < n; i++)
        if (labels.data[i] >= classes)
            classes = labels.data[i] + 1u;
    if ((err = gdml_split_assign(labels.data, n, classes, regions, mode, alpha, seed, region_of,
                                 e)) ||
        (err = gdml_split_write(&images, &labels, region_of, names, regions, dir, 1, parts, e)))
        goto out;
    *n_samples = n;
out:
    gdml_idx_fini(&images);
    gdml_idx_fini(&labels);
    free(region_of);
    return err;
}
