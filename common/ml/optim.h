/*
 * optim.h - how a regional server turns its workers' mean gradient into a
 * step of its live model: pluggable optimizers behind one table.
 *
 * With g the mean gradient over the step's batches and lr the learning rate:
 *
 *   sgd       x -= lr * g
 *   momentum  v = mu * v + g;  x -= lr * v                    (heavy ball)
 *   adam      m = beta1 * m + (1 - beta1) * g
 *             s = beta2 * s + (1 - beta2) * g^2
 *             x -= lr * (m / (1 - beta1^t)) / (sqrt(s / (1 - beta2^t)) + epsilon)
 *                                                            (Kingma and Ba 2015)
 *
 * A step may cover the whole model (BSP) or one chunk of it (SSP and ASP
 * apply each chunk of a gradient as it arrives): the state is per entry, so
 * a step of a range touches only that range's state. t counts the steps
 * the caller took (the region's step, from 1).
 */
#ifndef GDML_OPTIM_H
#define GDML_OPTIM_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gdml_optim gdml_optim;

typedef struct gdml_optim_config {
    const char *kind;             /* "sgd", "momentum", "adam" */
    double momentum;              /* momentum: [0, 1) */
    double beta1, beta2, epsilon; /* adam: [0, 1), [0, 1), > 0 */
} gdml_optim_config;

/* True if kind names an optimizer. */
bool gdml_optim_kind_ok(const char *kind);

/*
 * Makes an optimizer for n parameters with its state at zero. GDML_ERR_INVALID
 * with e for an unknown kind (e lists the known) or a hyperparameter out of
 * range; GDML_ERR_NOMEM.
 */
gdml_err gdml_optim_new(const gdml_optim_config *cfg, size_t n, gdml_optim **out, gdml_errmsg *e);

void gdml_optim_destroy(gdml_optim **o);

/* One step of x[lo..lo+len) along gradient g[0..len) (of that range), at lr, the t-th step. */
void gdml_optim_step(gdml_optim *o, size_t lo, size_t len, const float *g, float lr, uint64_t t,
                     float *x);

/*
 * The state, for a checkpoint: *count tensors of n floats each (0 for sgd,
 * 1 for momentum's velocity, 2 for adam's moments), state[i] writable so
 * that a restored checkpoint can be copied back.
 */
float *const *gdml_optim_state(gdml_optim *o, size_t *count);

#endif
