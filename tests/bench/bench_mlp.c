/*
 * bench_mlp.c - how fast one worker computes MLP gradients, against what
 * OpenBLAS sgemm does on this machine, in one run (issue 8).
 *
 *   build/tests/bench/bench_mlp [--images F] [--labels F] [--model LAYOUT]
 *       [--batches 64,256] [--threads 1,N] [--reps 7] [--samples 32768] [--out F]
 *
 * The gradient is the worker's: the model table's loss_grad for the layout
 * (default "mlp 784 256,128 10") on consecutive minibatches of the data set
 * that gdml_dataset_load_idx loads, timed as the worker times it (without
 * the copy of the minibatch). In the same run gdml_sgemm (cblas_sgemm behind
 * argument asserts) is timed on a 1024^3 square, taken as this machine's
 * sgemm peak, and on every GEMM shape the gradient runs, which tells how
 * much of a step the GEMMs take and how fast each shape goes.
 *
 * FLOPs counted: 2*m*n*k for each GEMM that mlp.c runs for one gradient, and
 * nothing else (bias, ReLU, softmax and the bias gradient are O(batch *
 * widths) and left out). For a layer of fan_in x fan_out on a batch of n:
 * the forward Z = A W, the weight gradient dW = A^T dZ and, above the first
 * layer, the gradient of the layer below, dA = dZ W^T, each 2 n fan_in
 * fan_out: 6 n sum(fan_in * fan_out) less 2 n inputs * hidden[0].
 *
 * Threads: every gdml program calls gdml_tensor_set_threads(1) at start
 * (common/app/program.c) whatever OPENBLAS_NUM_THREADS says, so 1 thread is
 * the worker's figure; by default the run adds OpenBLAS's own default
 * (OPENBLAS_NUM_THREADS, else the online CPUs) for comparison. The reps of
 * one thread count interleave the peak and the batch sizes, so a noisy
 * neighbour hits all alike. Figures are medians over the reps; a fraction of
 * peak is the median of each rep's ratio.
 */
#include "dataset.h"
#include "model.h"
#include "tensor.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_DIR "/usr/share/datasets/fashion-mnist/"
#define MAX_LIST 4
#define MAX_REPS 25
#define MAX_SHAPES (3 * (GDML_MAX_HIDDEN + 1))
#define PEAK_SIDE 1024
#define SHAPE_MIN_US 20000 /* each GEMM shape runs for at least this long per rep */
#define PEAK_MIN_US 250000 /* and the square, whose one call takes some 20 ms, this long */
#define WARMUP_SAMPLES 4096

typedef struct options {
    const char *images, *labels, *model, *out;
    size_t batches[MAX_LIST], n_batches;
    size_t threads[MAX_LIST], n_threads;
    uint64_t reps, samples;
} options;

/* One GEMM as gdml_sgemm takes it: C (m x n) = op(A) (m x k) op(B) (k x n). */
typedef struct gemm_shape {
    const char *op; /* "forward", "dW" or "dA" */
    size_t layer;   /* 1 for the layer on the inputs */
    bool ta, tb;
    size_t m, n, k;
} gemm_shape;

typedef struct gemm_bufs {
    float *a, *b, *c;
} gemm_bufs;

/* The worker's gradient on one data set, walking it minibatch by minibatch. */
typedef struct grad_bench {
    const gdml_model_ops *ops;
    gdml_layout layout;
    const gdml_dataset *data;
    float *params, *grad, *scratch;
    size_t cursor;   /* first row of the next minibatch */
    double loss_sum; /* kept so that a broken model shows, as a non-finite sum */
} grad_bench;

typedef struct batch_result {
    size_t batch, n_shapes;
    gemm_shape shapes[MAX_SHAPES];
    double flops; /* per gradient */
    double step_us[MAX_REPS], gemm_us[MAX_REPS], fraction[MAX_REPS];
    double shape_us[MAX_SHAPES][MAX_REPS];
} batch_result;

typedef struct setting_result {
    size_t threads;
    double peak_us[MAX_REPS];
    batch_result batch[MAX_LIST];
} setting_result;

static const gemm_shape peak_shape = {"square", 0, false, false, PEAK_SIDE, PEAK_SIDE, PEAK_SIDE};

/* ---- numbers ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, size_t n)
{
    double s[MAX_REPS];
    memcpy(s, v, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static double shape_flops(const gemm_shape *s)
{
    return 2.0 * (double)s->m * (double)s->n * (double)s->k;
}

static double gflops(double flops, double us)
{
    return flops / (us * 1e3);
}

/* ---- the GEMMs of one gradient ---- */

/* d[0..L] = the widths of l, inputs to classes; returns L, the layer count. */
static size_t widths(const gdml_layout *l, size_t *d)
{
    d[0] = l->inputs;
    for (uint32_t i = 0; i < l->n_hidden; i++)
        d[i + 1] = l->hidden[i];
    d[l->n_hidden + 1] = l->classes;
    return l->n_hidden + 1;
}

/*
 * The GEMMs mlp_loss_grad runs on a batch of n, in its order: the forward
 * layer by layer, then from the top down dW and (but for the first layer)
 * dA. This mirrors common/ml/mlp.c; if that changes, change this.
 */
static size_t gradient_shapes(const gdml_layout *l, size_t n, gemm_shape *out)
{
    size_t d[GDML_MAX_HIDDEN + 2], layers = widths(l, d), count = 0;
    for (size_t k = 0; k < layers; k++)
        out[count++] = (gemm_shape){"forward", k + 1, false, false, n, d[k + 1], d[k]};
    for (size_t k = layers; k-- > 0;) {
        out[count++] = (gemm_shape){"dW", k + 1, true, false, d[k], d[k + 1], n};
        if (k > 0)
            out[count++] = (gemm_shape){"dA", k + 1, false, true, n, d[k], d[k + 1]};
    }
    return count;
}

static void fill(float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        v[i] = 0.01f * (float)(i % 97) - 0.48f;
}

/* Buffers large enough for every shape in shapes[0..n) and the peak square. */
static bool gemm_bufs_init(gemm_bufs *g, const gemm_shape *shapes, size_t n)
{
    size_t a = (size_t)PEAK_SIDE * PEAK_SIDE, b = a, c = a;
    for (size_t i = 0; i < n; i++) {
        const gemm_shape *s = &shapes[i];
        a = s->m * s->k > a ? s->m * s->k : a;
        b = s->k * s->n > b ? s->k * s->n : b;
        c = s->m * s->n > c ? s->m * s->n : c;
    }
    g->a = malloc(a * sizeof(float));
    g->b = malloc(b * sizeof(float));
    g->c = malloc(c * sizeof(float));
    if (!g->a || !g->b || !g->c)
        return false;
    fill(g->a, a);
    fill(g->b, b);
    fill(g->c, c);
    return true;
}

static void gemm_bufs_fini(gemm_bufs *g)
{
    free(g->a);
    free(g->b);
    free(g->c);
}

static void run_gemm(const gemm_shape *s, const gemm_bufs *g)
{
    size_t lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
    gdml_sgemm(s->ta, s->tb, s->m, s->n, s->k, 1.0f, g->a, lda, g->b, ldb, 0.0f, g->c, s->n);
}

/* Microseconds per call of shape s over at least min_us, after one call to warm the caches. */
static double time_gemm(const gemm_shape *s, const gemm_bufs *g, int64_t min_us)
{
    run_gemm(s, g);
    int64_t t0 = gdml_now_us(), elapsed;
    size_t calls = 0;
    do {
        run_gemm(s, g);
        calls++;
    } while ((elapsed = gdml_now_us() - t0) < min_us);
    return (double)elapsed / (double)calls;
}

/* ---- the worker's gradient ---- */

static gdml_err grad_bench_init(grad_bench *gb, const char *model, const gdml_dataset *data,
                                const char *images, size_t max_batch, gdml_errmsg *e)
{
    *gb = (grad_bench){.data = data};
    if (gdml_layout_parse(model, &gb->layout, e))
        return GDML_ERR_CONFIG;
    if (!(gb->ops = gdml_model_find(gb->layout.kind)))
        return gdml_errmsg_set(e, GDML_ERR_CONFIG, "this build has no '%s' model", gb->layout.kind);
    if (strcmp(gb->layout.kind, "mlp") != 0)
        return gdml_errmsg_set(e, GDML_ERR_CONFIG,
                               "--model '%s': this benchmark counts the FLOPs of an mlp only",
                               model);
    if (gdml_layout_check_data(&gb->layout, data->dim, data->classes, images, e))
        return GDML_ERR_CONFIG;
    if (max_batch > data->n)
        return gdml_errmsg_set(e, GDML_ERR_CONFIG, "a batch of %zu is more than the %zu rows",
                               max_batch, data->n);
    size_t params = gb->ops->param_count(&gb->layout);
    gb->params = malloc(params * sizeof(float));
    gb->grad = malloc(params * sizeof(float));
    gb->scratch = malloc(gb->ops->scratch_count(&gb->layout, max_batch) * sizeof(float));
    if (!gb->params || !gb->grad || !gb->scratch)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for %zu parameters", params);
    gb->ops->init(&gb->layout, gb->params, 1);
    return GDML_OK;
}

static void grad_bench_fini(grad_bench *gb)
{
    free(gb->params);
    free(gb->grad);
    free(gb->scratch);
}

/* One gradient on the next batch rows, from the start again at the end. */
static void grad_step(grad_bench *gb, size_t batch)
{
    const gdml_dataset *d = gb->data;
    if (gb->cursor + batch > d->n)
        gb->cursor = 0;
    gb->loss_sum += gb->ops->loss_grad(&gb->layout, gb->params, d->x + gb->cursor * d->dim,
                                       d->y + gb->cursor, batch, gb->grad, gb->scratch);
    gb->cursor += batch;
}

/* Microseconds per gradient, over steps gradients. */
static double time_steps(grad_bench *gb, size_t batch, size_t steps)
{
    int64_t t0 = gdml_now_us();
    for (size_t i = 0; i < steps; i++)
        grad_step(gb, batch);
    return (double)(gdml_now_us() - t0) / (double)steps;
}

/* ---- one thread count ---- */

static size_t steps_for(uint64_t samples, size_t batch)
{
    size_t steps = (size_t)(samples / batch);
    return steps ? steps : 1;
}

static void batch_result_init(batch_result *r, const gdml_layout *l, size_t batch)
{
    r->batch = batch;
    r->n_shapes = gradient_shapes(l, batch, r->shapes);
    r->flops = 0;
    for (size_t i = 0; i < r->n_shapes; i++)
        r->flops += shape_flops(&r->shapes[i]);
}

/* Rep number rep of one batch size: the gradient, then each of its GEMMs alone. */
static void batch_rep(batch_result *r, size_t rep, grad_bench *gb, const gemm_bufs *g,
                      uint64_t samples, double peak_gflops)
{
    r->step_us[rep] = time_steps(gb, r->batch, steps_for(samples, r->batch));
    r->gemm_us[rep] = 0;
    for (size_t i = 0; i < r->n_shapes; i++) {
        r->shape_us[i][rep] = time_gemm(&r->shapes[i], g, SHAPE_MIN_US);
        r->gemm_us[rep] += r->shape_us[i][rep];
    }
    r->fraction[rep] = gflops(r->flops, r->step_us[rep]) / peak_gflops;
}

static void run_setting(setting_result *r, size_t threads, const options *o, grad_bench *gb,
                        const gemm_bufs *g)
{
    gdml_tensor_set_threads((int)threads);
    r->threads = threads;
    for (size_t b = 0; b < o->n_batches; b++) {
        batch_result_init(&r->batch[b], &gb->layout, o->batches[b]);
        time_steps(gb, o->batches[b], steps_for(WARMUP_SAMPLES, o->batches[b]));
    }
    time_gemm(&peak_shape, g, PEAK_MIN_US);
    for (size_t rep = 0; rep < o->reps; rep++) {
        r->peak_us[rep] = time_gemm(&peak_shape, g, PEAK_MIN_US);
        double peak = gflops(shape_flops(&peak_shape), r->peak_us[rep]);
        for (size_t b = 0; b < o->n_batches; b++)
            batch_rep(&r->batch[b], rep, gb, g, o->samples, peak);
    }
}

/* ---- output ---- */

static double peak_gflops(const setting_result *s, size_t reps)
{
    return gflops(shape_flops(&peak_shape), median(s->peak_us, reps));
}

static void print_table(const setting_result *s, size_t n, const options *o, size_t rows)
{
    bool busy = false;
    printf("%s on %zu rows, %.0f FLOPs per sample (the gradient's GEMMs); median of %llu reps "
           "of %llu samples\n",
           o->model, rows, s[0].batch[0].flops / (double)s[0].batch[0].batch,
           (unsigned long long)o->reps, (unsigned long long)o->samples);
    printf("%7s %6s %11s %9s %12s %9s %14s\n", "threads", "batch", "samples/s", "GFLOP/s",
           "sgemm peak", "of peak", "GEMMs of step");
    for (size_t t = 0; t < n; t++)
        for (size_t b = 0; b < o->n_batches; b++) {
            const batch_result *r = &s[t].batch[b];
            double step = median(r->step_us, o->reps);
            busy |= median(r->fraction, o->reps) > 1.0;
            printf("%7zu %6zu %11.0f %9.1f %12.1f %8.1f%% %13.0f%%\n", s[t].threads, r->batch,
                   (double)r->batch * 1e6 / step, gflops(r->flops, step),
                   peak_gflops(&s[t], o->reps), 100 * median(r->fraction, o->reps),
                   100 * median(r->gemm_us, o->reps) / step);
        }
    if (busy)
        printf("(more than 100%% of peak: other processes slowed the peak's runs; rerun on a "
               "quieter machine or with more --reps)\n");
}

static void print_shapes(const setting_result *s, size_t n, const options *o)
{
    printf("\nEach GEMM alone (gdml_sgemm, C = op(A) op(B), m x n x k), GFLOP/s and us per call\n");
    for (size_t t = 0; t < n; t++)
        for (size_t b = 0; b < o->n_batches; b++) {
            const batch_result *r = &s[t].batch[b];
            printf("threads %zu, batch %zu:\n", s[t].threads, r->batch);
            for (size_t i = 0; i < r->n_shapes; i++) {
                const gemm_shape *g = &r->shapes[i];
                double us = median(r->shape_us[i], o->reps);
                printf("  %-7s layer %zu  %c%c %4zu x %4zu x %4zu %8.1f GFLOP/s %9.1f us\n", g->op,
                       g->layer, g->ta ? 'T' : 'N', g->tb ? 'T' : 'N', g->m, g->n, g->k,
                       gflops(shape_flops(g), us), us);
            }
        }
}

static void json_batch(FILE *f, const batch_result *r, const options *o)
{
    double step = median(r->step_us, o->reps), gemm = median(r->gemm_us, o->reps);
    fprintf(f,
            "        {\"batch\": %zu, \"samples_per_s\": %.1f, \"gflops\": %.2f, "
            "\"fraction_of_peak\": %.4f,\n         \"step_us\": %.1f, \"gemm_only_us\": %.1f, "
            "\"gemm_share_of_step\": %.4f,\n         \"gemms\": [",
            r->batch, (double)r->batch * 1e6 / step, gflops(r->flops, step),
            median(r->fraction, o->reps), step, gemm, gemm / step);
    for (size_t i = 0; i < r->n_shapes; i++) {
        const gemm_shape *g = &r->shapes[i];
        double us = median(r->shape_us[i], o->reps);
        fprintf(f,
                "%s\n           {\"op\": \"%s\", \"layer\": %zu, \"trans\": \"%c%c\", \"m\": %zu, "
                "\"n\": %zu, \"k\": %zu, \"us\": %.1f, \"gflops\": %.2f}",
                i ? "," : "", g->op, g->layer, g->ta ? 'T' : 'N', g->tb ? 'T' : 'N', g->m, g->n,
                g->k, us, gflops(shape_flops(g), us));
    }
    fprintf(f, "]}");
}

static void json_settings(FILE *f, const setting_result *s, size_t n, const options *o)
{
    fprintf(f, "  \"settings\": [");
    for (size_t t = 0; t < n; t++) {
        fprintf(f,
                "%s\n    {\"threads\": %zu, \"worker_setting\": %s, "
                "\"sgemm_peak_gflops\": %.2f,\n     \"batches\": [\n",
                t ? "," : "", s[t].threads, s[t].threads == 1 ? "true" : "false",
                peak_gflops(&s[t], o->reps));
        for (size_t b = 0; b < o->n_batches; b++) {
            json_batch(f, &s[t].batch[b], o);
            fprintf(f, "%s\n", b + 1 < o->n_batches ? "," : "");
        }
        fprintf(f, "     ]}");
    }
    fprintf(f, "\n  ]\n");
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static gdml_err write_json(const setting_result *s, size_t n, const options *o, size_t rows,
                           gdml_errmsg *e)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for the JSON");
    const char *env = getenv("OPENBLAS_NUM_THREADS");
    const batch_result *first = &s[0].batch[0];
    fprintf(f,
            "{\n  \"bench\": \"bench_mlp\",\n  \"model\": \"%s\",\n  \"images\": \"%s\",\n"
            "  \"rows\": %zu,\n  \"cpus_online\": %ld,\n  \"openblas_num_threads_env\": %s%s%s,\n"
            "  \"worker_threads\": 1,\n  \"reps\": %llu,\n  \"samples_per_rep\": %llu,\n"
            "  \"flops_per_sample\": %.0f,\n  \"flops_counted\": \"2*m*n*k per GEMM of "
            "mlp_loss_grad: per layer forward A W and dW = A^T dZ, and dA = dZ W^T for every "
            "layer but the first; bias, ReLU and softmax not counted\",\n"
            "  \"peak\": \"gdml_sgemm (cblas_sgemm) NN %dx%dx%d\",\n",
            o->model, base_name(o->images), rows, sysconf(_SC_NPROCESSORS_ONLN), env ? "\"" : "",
            env ? env : "null", env ? "\"" : "", (unsigned long long)o->reps,
            (unsigned long long)o->samples, first->flops / (double)first->batch, PEAK_SIDE,
            PEAK_SIDE, PEAK_SIDE);
    json_settings(f, s, n, o);
    fprintf(f, "}\n");
    fclose(f);
    gdml_err err = gdml_write_file_atomic(o->out, text, len, e);
    free(text);
    if (err)
        gdml_errmsg_prefix(e, "run from the repository root or pass --out: ");
    return err;
}

/* ---- command line ---- */

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_mlp [--images F] [--labels F] [--model LAYOUT] [--batches 64,256]\n"
            "                 [--threads 1,N] [--reps 7] [--samples 32768] [--out F]\n"
            "  defaults: the Fashion-MNIST training files in " DEFAULT_DIR ",\n"
            "  \"mlp 784 256,128 10\", threads 1 (the worker's) and OpenBLAS's default,\n"
            "  --out docs/bench/mlp_compute.json\n");
}

/* Parses "64,256" into out; false unless 1 to MAX_LIST numbers, each 1 to limit. */
static bool parse_list(const char *s, size_t *out, size_t *n, uint64_t limit)
{
    char buf[128];
    if (strlen(s) >= sizeof buf)
        return false;
    snprintf(buf, sizeof buf, "%s", s);
    *n = 0;
    for (char *save = NULL, *p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        uint64_t v;
        if (*n == MAX_LIST || !gdml_parse_u64(p, &v) || v == 0 || v > limit)
            return false;
        out[(*n)++] = (size_t)v;
    }
    return *n > 0;
}

/* OpenBLAS's own thread count: OPENBLAS_NUM_THREADS, else the online CPUs. */
static size_t default_threads(void)
{
    uint64_t v;
    const char *env = getenv("OPENBLAS_NUM_THREADS");
    if (env && gdml_parse_u64(env, &v) && v >= 1 && v <= 1024)
        return (size_t)v;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 1 ? (size_t)cpus : 1;
}

static void default_options(options *o)
{
    *o = (options){.images = DEFAULT_DIR "train-images-idx3-ubyte.gz",
                   .labels = DEFAULT_DIR "train-labels-idx1-ubyte.gz",
                   .model = "mlp 784 256,128 10",
                   .out = "docs/bench/mlp_compute.json",
                   .batches = {64, 256},
                   .n_batches = 2,
                   .threads = {1},
                   .n_threads = 1,
                   .reps = 7,
                   .samples = 32768};
    size_t d = default_threads();
    if (d > 1)
        o->threads[o->n_threads++] = d;
}

/* One "--flag value" pair into o; false if the flag is unknown or the value wrong. */
static bool parse_flag(options *o, const char *flag, const char *v)
{
    if (!strcmp(flag, "--images"))
        o->images = v;
    else if (!strcmp(flag, "--labels"))
        o->labels = v;
    else if (!strcmp(flag, "--model"))
        o->model = v;
    else if (!strcmp(flag, "--out"))
        o->out = v;
    else if (!strcmp(flag, "--batches"))
        return parse_list(v, o->batches, &o->n_batches, 1 << 16);
    else if (!strcmp(flag, "--threads"))
        return parse_list(v, o->threads, &o->n_threads, 1024);
    else if (!strcmp(flag, "--reps"))
        return gdml_parse_u64(v, &o->reps) && o->reps >= 1 && o->reps <= MAX_REPS;
    else if (!strcmp(flag, "--samples"))
        return gdml_parse_u64(v, &o->samples) && o->samples >= 1;
    else
        return false;
    return true;
}

static bool parse_args(options *o, int argc, char **argv)
{
    default_options(o);
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 == argc || !parse_flag(o, argv[i], argv[i + 1])) {
            fprintf(stderr, "bench_mlp: bad or incomplete option '%s'\n", argv[i]);
            return false;
        }
    }
    return true;
}

static size_t largest(const size_t *v, size_t n)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        m = v[i] > m ? v[i] : m;
    return m;
}

/* Runs every thread count and reports; returns the exit status. */
static int bench(const options *o, const gdml_dataset *data)
{
    gdml_errmsg e = {{0}};
    grad_bench gb;
    gemm_bufs g = {0};
    setting_result *s = calloc(o->n_threads, sizeof *s);
    int status = 1;
    if (grad_bench_init(&gb, o->model, data, o->images, largest(o->batches, o->n_batches), &e)) {
        fprintf(stderr, "bench_mlp: %s\n", e.text);
        goto out;
    }
    gemm_shape shapes[MAX_SHAPES];
    size_t n = gradient_shapes(&gb.layout, largest(o->batches, o->n_batches), shapes);
    if (!s || !gemm_bufs_init(&g, shapes, n)) {
        fprintf(stderr, "bench_mlp: out of memory for the GEMM buffers\n");
        goto out;
    }
    for (size_t t = 0; t < o->n_threads; t++)
        run_setting(&s[t], o->threads[t], o, &gb, &g);
    if (!isfinite(gb.loss_sum)) {
        fprintf(stderr, "bench_mlp: the loss is not finite; the model or the data is broken\n");
        goto out;
    }
    print_table(s, o->n_threads, o, data->n);
    print_shapes(s, o->n_threads, o);
    if (write_json(s, o->n_threads, o, data->n, &e)) {
        fprintf(stderr, "bench_mlp: %s\n", e.text);
        goto out;
    }
    printf("\nwrote %s\n", o->out);
    status = 0;
out:
    gemm_bufs_fini(&g);
    grad_bench_fini(&gb);
    free(s);
    return status;
}

int main(int argc, char **argv)
{
    options o;
    if (!parse_args(&o, argc, argv)) {
        usage();
        return 2;
    }
    gdml_dataset data = {0};
    gdml_errmsg e = {{0}};
    if (gdml_dataset_load_idx(o.images, o.labels, 0, 1, &data, &e)) {
        fprintf(stderr,
                "bench_mlp: %s\n(pass --images and --labels: the Fashion-MNIST training files, "
                "plain or .gz)\n",
                e.text);
        return 1;
    }
    int status = bench(&o, &data);
    gdml_dataset_fini(&data);
    return status;
}
