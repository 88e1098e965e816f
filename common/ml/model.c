/*
 * model.c - the table of model kinds, layout text and evaluation.
 *
 * Each kind lives in its own file behind a gdml_model_ops table (softmax.c, mlp.c,
 * sparselr.c);
 * this file only knows the list of kinds, so adding one is one row in kinds[].
 */
#include "model.h"
#include "model_impl.h"
#include "util.h"

#include <assert.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const gdml_model_ops *const kinds[] = {
    &gdml_softmax_ops,
    &gdml_mlp_ops,
    &gdml_sparselr_ops,
};

#define KIND_COUNT (sizeof kinds / sizeof kinds[0])

/* Bounds of a layout. Labels and predictions are uint8_t, hence 256 classes. */
#define LAYOUT_MAX_INPUTS 100000000u
#define LAYOUT_MIN_CLASSES 2u
#define LAYOUT_MAX_CLASSES 256u
#define LAYOUT_MAX_WIDTH 65536u
#define LAYOUT_SYNTAX "expected '<kind> <inputs> <classes>', or '<kind> <inputs> <w1,w2,...> <classes>'"

/* Rows per loss_grad/predict call in gdml_model_evaluate, and the scratch
 * they may take: a wide model gets fewer rows, so that evaluating never holds
 * more than this beside the model (1024 rows of a 131072-wide MLP would
 * take 1 GiB). */
#define EVAL_CHUNK_ROWS 1024
#define EVAL_SCRATCH_MAX_BYTES ((size_t)64 << 20)

const gdml_model_ops *gdml_model_find(const char *kind)
{
    assert(kind);
    for (size_t i = 0; i < KIND_COUNT; i++)
        if (strcmp(kinds[i]->kind, kind) == 0)
            return kinds[i];
    return NULL;
}

/* Writes the known kinds as "a, b, c" into buf (for error messages). */
static void list_kinds(char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < KIND_COUNT && used < cap; i++) {
        int w = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", kinds[i]->kind);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * Splits text at blanks into at most max tokens (start, length). Returns the
 * number found, which is max + 1 if there were more than max.
 */
static size_t split_tokens(const char *text, const char **start, size_t *len, size_t max)
{
    size_t count = 0;
    const char *p = text;
    for (;;) {
        while (is_blank(*p))
            p++;
        if (*p == '\0')
            return count;
        if (count == max)
            return max + 1;
        start[count] = p;
        while (*p && !is_blank(*p))
            p++;
        len[count] = (size_t)(p - start[count]);
        count++;
    }
}

/* Parses a decimal token of len digits into *out if it lies in [min, max]. */
static bool parse_bounded(const char *tok, size_t len, uint32_t min, uint32_t max, uint32_t *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (tok[i] < '0' || tok[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(tok[i] - '0');
        if (v > max)
            return false;
    }
    if (len == 0 || v < min)
        return false;
    *out = (uint32_t)v;
    return true;
}

/* Parses the hidden widths "256,128" of tok[0..len) into l. */
static gdml_err parse_hidden(const char *text, const char *tok, size_t len, gdml_layout *l,
                             gdml_errmsg *e)
{
    const char *p = tok, *end = tok + len;
    while (p <= end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t n = (size_t)((comma ? comma : end) - p);
        if (l->n_hidden == GDML_MAX_HIDDEN)
            return gdml_errmsg_set(e, GDML_ERR_FORMAT, "layout '%.200s': at most %d hidden layers",
                                   text, GDML_MAX_HIDDEN);
        if (!parse_bounded(p, n, 1, LAYOUT_MAX_WIDTH, &l->hidden[l->n_hidden]))
            return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                                   "layout '%.200s': each hidden width must be a whole number "
                                   "from 1 to %u, got '%.*s'",
                                   text, LAYOUT_MAX_WIDTH, (int)n, p);
        l->n_hidden++;
        if (!comma)
            break;
        p = comma + 1;
    }
    return GDML_OK;
}

gdml_err gdml_layout_parse(const char *text, gdml_layout *out, gdml_errmsg *e)
{
    assert(text && out);
    const char *tok[4];
    size_t len[4];
    size_t count = split_tokens(text, tok, len, 4);
    if (count != 3 && count != 4)
        return gdml_errmsg_set(e, GDML_ERR_FORMAT, "layout '%.200s': " LAYOUT_SYNTAX, text);
    size_t last = count - 1; /* classes; hidden widths, if any, before it */

    gdml_layout l;
    memset(&l, 0, sizeof l);
    char known[128];
    list_kinds(known, sizeof known);
    if (len[0] >= sizeof l.kind)
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "layout '%.200s': unknown model kind '%.*s' (known: %s)", text,
                               (int)len[0], tok[0], known);
    memcpy(l.kind, tok[0], len[0]);
    const gdml_model_ops *ops = gdml_model_find(l.kind);
    if (!ops)
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "layout '%.200s': unknown model kind '%s' (known: %s)", text, l.kind,
                               known);
    if (ops->hidden != (count == 4))
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               ops->hidden ? "layout '%.200s': a '%s' model names its hidden "
                                             "layers, e.g. '%s 784 256,128 10'"
                                           : "layout '%.200s': a '%s' model has no hidden layers, "
                                             "e.g. '%s 784 10'",
                               text, l.kind, l.kind);
    if (!parse_bounded(tok[1], len[1], 1, LAYOUT_MAX_INPUTS, &l.inputs))
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "layout '%.200s': inputs must be a whole number from 1 to %u, "
                               "got '%.*s'",
                               text, LAYOUT_MAX_INPUTS, (int)len[1], tok[1]);
    if (count == 4) {
        gdml_err err = parse_hidden(text, tok[2], len[2], &l, e);
        if (err)
            return err;
    }
    if (!parse_bounded(tok[last], len[last], LAYOUT_MIN_CLASSES, LAYOUT_MAX_CLASSES, &l.classes))
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "layout '%.200s': classes must be a whole number from %u to %u "
                               "(labels are 8-bit), got '%.*s'",
                               text, LAYOUT_MIN_CLASSES, LAYOUT_MAX_CLASSES, (int)len[last],
                               tok[last]);
    if (ops->max_classes && l.classes > ops->max_classes)
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "layout '%.200s': a '%s' model tells at most %u classes apart, "
                               "e.g. '%s %u %u'",
                               text, l.kind, ops->max_classes, l.kind, l.inputs, ops->max_classes);
    *out = l;
    return GDML_OK;
}

gdml_err gdml_layout_make(const char *kind, uint32_t inputs, const char *hidden, uint32_t classes,
                          gdml_layout *out, gdml_errmsg *e)
{
    char text[256]; /* what is too long for a layout is refused by the parse */
    snprintf(text, sizeof text, "%.15s %" PRIu32 "%s%.150s %" PRIu32, kind, inputs,
             *hidden ? " " : "", hidden, classes);
    return gdml_layout_parse(text, out, e);
}

void gdml_layout_format(const gdml_layout *l, char *buf, size_t cap)
{
    assert(l && (buf || cap == 0));
    /* kind need not be NUL-terminated when it fills the whole array. */
    char hidden[GDML_MAX_HIDDEN * 12 + 2] = "";
    size_t used = 0;
    for (uint32_t i = 0; i < l->n_hidden && i < GDML_MAX_HIDDEN; i++)
        used += (size_t)snprintf(hidden + used, sizeof hidden - used, "%s%" PRIu32,
                                 i ? "," : " ", l->hidden[i]);
    snprintf(buf, cap, "%.*s %" PRIu32 "%s %" PRIu32, (int)strnlen(l->kind, sizeof l->kind),
             l->kind, l->inputs, hidden, l->classes);
}

/* The ops of l's kind if l is sane, else NULL. */
static const gdml_model_ops *layout_ops(const gdml_layout *l)
{
    if (!memchr(l->kind, '\0', sizeof l->kind))
        return NULL;
    const gdml_model_ops *ops = gdml_model_find(l->kind);
    if (!ops || ops->hidden != (l->n_hidden > 0) || l->n_hidden > GDML_MAX_HIDDEN)
        return NULL;
    return ops;
}

gdml_err gdml_model_evaluate(const gdml_layout *l, const float *params, const float *x,
                             const uint8_t *y, size_t n, double *accuracy, double *loss)
{
    assert(l && params && accuracy && loss);
    const gdml_model_ops *ops = layout_ops(l);
    if (!ops || ops->sparse || n == 0)
        return GDML_ERR_INVALID;

    /* One block: scratch floats for a chunk, then the chunk's predictions. */
    size_t chunk = n < EVAL_CHUNK_ROWS ? n : EVAL_CHUNK_ROWS;
    size_t per_row = ops->scratch_count(l, 1) * sizeof(float) + 1;
    if (chunk > 1 && chunk * per_row > EVAL_SCRATCH_MAX_BYTES)
        chunk = EVAL_SCRATCH_MAX_BYTES / per_row ? EVAL_SCRATCH_MAX_BYTES / per_row : 1;
    size_t nscratch = ops->scratch_count(l, chunk);
    if (nscratch > (SIZE_MAX - chunk) / sizeof(float))
        return GDML_ERR_NOMEM;
    float *scratch = malloc(nscratch * sizeof(float) + chunk);
    if (!scratch)
        return GDML_ERR_NOMEM;
    uint8_t *pred = (uint8_t *)(scratch + nscratch);

    double loss_sum = 0.0;
    size_t correct = 0;
    for (size_t start = 0; start < n; start += chunk) {
        size_t rows = n - start < chunk ? n - start : chunk;
        const float *xc = x + start * l->inputs;
        loss_sum += ops->loss_grad(l, params, xc, y + start, rows, NULL, scratch) * (double)rows;
        ops->predict(l, params, xc, rows, pred, scratch);
        for (size_t i = 0; i < rows; i++)
            correct += pred[i] == y[start + i];
    }
    free(scratch);
    *accuracy = (double)correct / (double)n;
    *loss = loss_sum / (double)n;
    return GDML_OK;
}

gdml_err gdml_model_evaluate_set(const gdml_layout *l, const float *params,
                                 const gdml_dataset *d, double *accuracy, double *loss)
{
    assert(l && params && d && accuracy && loss);
    const gdml_model_ops *ops = layout_ops(l);
    if (!ops || d->n == 0 || ops->sparse != gdml_dataset_sparse(d))
        return GDML_ERR_INVALID;
    if (!ops->sparse)
        return gdml_model_evaluate(l, params, d->x, d->y, d->n, accuracy, loss);
    uint8_t *pred = malloc(EVAL_CHUNK_ROWS);
    if (!pred)
        return GDML_ERR_NOMEM;
    double loss_sum = 0.0;
    size_t correct = 0;
    gdml_csr all = gdml_dataset_csr(d);
    for (size_t start = 0; start < d->n; start += EVAL_CHUNK_ROWS) {
        size_t rows = d->n - start < EVAL_CHUNK_ROWS ? d->n - start : EVAL_CHUNK_ROWS;
        gdml_csr part = {.ptr = all.ptr + start, .idx = all.idx, .val = all.val};
        loss_sum += ops->loss_grad_csr(l, params, part, d->y + start, rows, NULL) * (double)rows;
        ops->predict_csr(l, params, part, rows, pred);
        for (size_t i = 0; i < rows; i++)
            correct += pred[i] == d->y[start + i];
    }
    free(pred);
    *accuracy = (double)correct / (double)d->n;
    *loss = loss_sum / (double)d->n;
    return GDML_OK;
}

void gdml_model_keys(const gdml_layout *l, gdml_csr rows, size_t n, uint64_t *marks,
                     uint32_t *keys, size_t *count)
{
    size_t m = 0;
    for (size_t k = rows.ptr[0]; k < rows.ptr[n]; k++) {
        uint32_t j = rows.idx[k];
        uint64_t bit = 1ull << (j % 64);
        if (!(marks[j / 64] & bit)) {
            marks[j / 64] |= bit;
            keys[m++] = j;
        }
    }
    gdml_sort_u32(keys, m);
    for (size_t i = 0; i < m; i++)
        marks[keys[i] / 64] &= ~(1ull << (keys[i] % 64));
    keys[m++] = l->inputs; /* the bias: every row touches it */
    *count = m;
}

gdml_err gdml_layout_check_data(const gdml_layout *l, size_t inputs, unsigned classes,
                                const char *what, gdml_errmsg *e)
{
    if (inputs == l->inputs && classes <= l->classes)
        return GDML_OK;
    char layout[64];
    gdml_layout_format(l, layout, sizeof layout);
    return gdml_errmsg_set(e, GDML_ERR_INVALID,
                           "'%s' has %zu inputs and %u classes; the model '%s' takes %u inputs "
                           "and knows %u classes",
                           what, inputs, classes, layout, l->inputs, l->classes);
}
