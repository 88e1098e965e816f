/*
 * synth.c - the synthetic sparse data set of synth.h, streamed row by row
 * through zlib so that a file of any size takes memory for the weights only.
 */
#include "synth.h"

#include "rng.h"
#include "util.h"

#include <errno.h>
#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Weights and rows come from two streams of the seed, so either can change alone. */
static void seed_stream(gdml_rng *r, uint64_t seed, uint64_t stream)
{
    gdml_rng_seed(r, seed * 0x9E3779B97F4A7C15ull + stream);
}

gdml_err gdml_synth_weights(const gdml_synth_options *opt, float *w)
{
    gdml_rng r;
    seed_stream(&r, opt->seed, 1);
    for (uint64_t j = 0; j < opt->features; j++)
        w[j] = (float)gdml_rng_normal(&r);
    return GDML_OK;
}

/* nnz distinct feature numbers from 0, sorted. */
static void draw_features(gdml_rng *r, const gdml_synth_options *opt, uint32_t *idx)
{
    for (uint32_t k = 0; k < opt->nnz;) {
        uint32_t j = (uint32_t)gdml_rng_below(r, opt->features);
        bool seen = false;
        for (uint32_t q = 0; q < k && !seen; q++)
            seen = idx[q] == j;
        if (!seen)
            idx[k++] = j;
    }
    gdml_sort_u32(idx, opt->nnz);
}

static gdml_err write_error(const char *path, gzFile f, gdml_errmsg *e)
{
    int code = 0;
    const char *msg = f ? gzerror(f, &code) : "";
    bool full = errno == ENOSPC;
    return gdml_errmsg_set(e, full ? GDML_ERR_NOSPACE : GDML_ERR_IO, "cannot write '%s': %s", path,
                           code == Z_ERRNO || !f ? strerror(errno) : msg);
}

static gdml_err write_model(const char *path, const float *w, uint64_t n, gdml_errmsg *e)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return write_error(path, NULL, e);
    for (uint64_t j = 0; j < n; j++)
        fprintf(f, "%.9g\n", w[j]);
    if (fclose(f) != 0)
        return write_error(path, NULL, e);
    return GDML_OK;
}

gdml_err gdml_synth_write(const char *path, const char *model_path, const gdml_synth_options *opt,
                          gdml_synth_result *out, gdml_errmsg *e)
{
    if (opt->samples == 0 || opt->features == 0 || opt->features > UINT32_MAX || opt->nnz == 0 ||
        opt->nnz > opt->features || opt->nnz > 1000 || !(opt->noise >= 0))
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "synthetic data needs samples >= 1, features 1..%u, nnz 1..features "
                               "(at most 1000) and noise >= 0",
                               UINT32_MAX);
    float *w = malloc(opt->features * sizeof *w);
    uint32_t *idx = malloc(opt->nnz * sizeof *idx);
    char *line = malloc((size_t)opt->nnz * 14 + 8);
    if (!w || !idx || !line) {
        free(w);
        free(idx);
        free(line);
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for %llu weights",
                               (unsigned long long)opt->features);
    }
    gdml_synth_weights(opt, w);
    size_t len = strlen(path);
    bool gz = len > 3 && strcmp(path + len - 3, ".gz") == 0;
    errno = 0;
    gzFile f = gzopen(path, gz ? "wb6" : "wbT");
    gdml_err err = f ? GDML_OK : write_error(path, NULL, e);
    gdml_synth_result res = {0};
    gdml_rng r;
    seed_stream(&r, opt->seed, 2);
    double scale = 1.0 / sqrt((double)opt->nnz);
    uint64_t right = 0;
    for (uint64_t i = 0; !err && i < opt->samples; i++) {
        draw_features(&r, opt, idx);
        double m = 0;
        for (uint32_t k = 0; k < opt->nnz; k++)
            m += w[idx[k]];
        m *= scale;
        int label = m + opt->noise * gdml_rng_normal(&r) > 0;
        res.positives += (uint64_t)label;
        right += (uint64_t)(label == (m > 0));
        size_t n = (size_t)sprintf(line, "%d", label);
        for (uint32_t k = 0; k < opt->nnz; k++)
            n += (size_t)sprintf(line + n, " %u:1", idx[k] + 1);
        line[n++] = '\n';
        if (gzwrite(f, line, (unsigned)n) != (int)n)
            err = write_error(path, f, e);
        res.bytes += n;
    }
    if (f && gzclose(f) != Z_OK && !err)
        err = write_error(path, NULL, e);
    if (!err && model_path)
        err = write_model(model_path, w, opt->features, e);
    if (!err && out) {
        res.true_accuracy = (double)right / (double)opt->samples;
        *out = res;
    }
    free(w);
    free(idx);
    free(line);
    return err;
}
