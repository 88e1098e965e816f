/*
 * optim.c - the regional server's optimizers (optim.h): one row per kind
 * in kinds[], each a step function over a range and the number of state
 * tensors it keeps.
 */
#include "optim.h"

#include "tensor.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STATE 2

struct gdml_optim {
    const struct kind *kind;
    gdml_optim_config cfg;
    size_t n;
    float *state[MAX_STATE];
};

typedef void (*step_fn)(gdml_optim *o, size_t lo, size_t len, const float *g, float lr,
                        uint64_t t, float *x);

struct kind {
    const char *name;
    size_t states;
    step_fn step;
};

static void sgd_step(gdml_optim *o, size_t lo, size_t len, const float *g, float lr, uint64_t t,
                     float *x)
{
    (void)o, (void)lo, (void)t;
    gdml_saxpy(len, -lr, g, x);
}

static void momentum_step(gdml_optim *o, size_t lo, size_t len, const float *g, float lr,
                          uint64_t t, float *x)
{
    (void)t;
    float *v = o->state[0] + lo;
    gdml_sscal(len, (float)o->cfg.momentum, v);
    gdml_saxpy(len, 1.0f, g, v);
    gdml_saxpy(len, -lr, v, x);
}

static void adam_step(gdml_optim *o, size_t lo, size_t len, const float *g, float lr, uint64_t t,
                      float *x)
{
    float *m = o->state[0] + lo, *s = o->state[1] + lo;
    double b1 = o->cfg.beta1, b2 = o->cfg.beta2;
    double steps = (double)(t ? t : 1);
    float c1 = (float)(1.0 / (1.0 - pow(b1, steps))), c2 = (float)(1.0 / (1.0 - pow(b2, steps)));
    float eps = (float)o->cfg.epsilon;
    for (size_t i = 0; i < len; i++) {
        m[i] = (float)b1 * m[i] + (float)(1.0 - b1) * g[i];
        s[i] = (float)b2 * s[i] + (float)(1.0 - b2) * g[i] * g[i];
        x[i] -= lr * (m[i] * c1) / (sqrtf(s[i] * c2) + eps);
    }
}

static const struct kind kinds[] = {
    {"sgd", 0, sgd_step},
    {"momentum", 1, momentum_step},
    {"adam", 2, adam_step},
};

#define KIND_COUNT (sizeof kinds / sizeof kinds[0])

static const struct kind *find(const char *name)
{
    for (size_t i = 0; name && i < KIND_COUNT; i++)
        if (strcmp(kinds[i].name, name) == 0)
            return &kinds[i];
    return NULL;
}

bool gdml_optim_kind_ok(const char *kind)
{
    return find(kind) != NULL;
}

static bool unit(double v)
{
    return v >= 0.0 && v < 1.0;
}

gdml_err gdml_optim_new(const gdml_optim_config *cfg, size_t n, gdml_optim **out, gdml_errmsg *e)
{
    assert(cfg && out);
    *out = NULL;
    const struct kind *k = find(cfg->kind);
    if (!k)
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "optimizer '%s' is not known (known: sgd, momentum, adam)",
                               cfg->kind ? cfg->kind : "");
    if (k->step == momentum_step && !unit(cfg->momentum))
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "momentum %g is not in [0, 1)", cfg->momentum);
    if (k->step == adam_step &&
        (!unit(cfg->beta1) || !unit(cfg->beta2) || !(cfg->epsilon > 0.0)))
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "adam needs beta1 and beta2 in [0, 1) and epsilon > 0; got %g, "
                               "%g, %g",
                               cfg->beta1, cfg->beta2, cfg->epsilon);
    gdml_optim *o = calloc(1, sizeof *o);
    if (!o)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory");
    o->kind = k;
    o->cfg = *cfg;
    o->n = n;
    for (size_t i = 0; i < k->states; i++)
        if (!(o->state[i] = calloc(n ? n : 1, sizeof(float)))) {
            gdml_optim_destroy(&o);
            return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for %zu parameters", n);
        }
    *out = o;
    return GDML_OK;
}

void gdml_optim_destroy(gdml_optim **o)
{
    if (!o || !*o)
        return;
    for (size_t i = 0; i < MAX_STATE; i++)
        free((*o)->state[i]);
    free(*o);
    *o = NULL;
}

void gdml_optim_step(gdml_optim *o, size_t lo, size_t len, const float *g, float lr, uint64_t t,
                     float *x)
{
    assert(o && lo + len <= o->n);
    o->kind->step(o, lo, len, g, lr, t, x);
}

float *const *gdml_optim_state(gdml_optim *o, size_t *count)
{
    *count = o->kind->states;
    return o->state;
}
