/*
 * merge.h - how the coordinator folds the regions' deltas into the global
 * model: pluggable rules behind one table of operations.
 *
 * Each round, region i sends delta_i (its model minus the global model it
 * started from) with weight w_i (its samples). With avg = sum w_i delta_i /
 * sum w_i, sum = sum delta_i, and lr the server learning rate:
 *
 *   fedavg    g += lr * avg                                  (McMahan et al. 2017)
 *   sum       g += lr * sum                                  (Gaia / ASP style)
 *   fedavgm   v = momentum * v + avg;  g += lr * v           (Hsu et al. 2019)
 *   nesterov  v = momentum * v + avg;  g += lr * (momentum * v + avg)
 *                                                            (DiLoCo's outer step)
 *   adam      m = beta1 * m + (1 - beta1) * avg
 *             s = beta2 * s + (1 - beta2) * avg^2
 *             g += lr * m / (sqrt(s) + epsilon)              (FedAdam, Reddi et al. 2021)
 *
 * (A delta is already a descent direction: the rules add it, where papers
 * that speak of the pseudo-gradient -avg subtract.)
 */
#ifndef GDML_MERGE_H
#define GDML_MERGE_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct gdml_merge gdml_merge;

typedef struct gdml_merge_config {
    const char *rule;             /* "fedavg", "sum", "fedavgm", "nesterov", "adam" */
    double lr;                    /* server learning rate, > 0 */
    double momentum;              /* fedavgm, nesterov: [0, 1) */
    double beta1, beta2, epsilon; /* adam: [0, 1), [0, 1), > 0 */
} gdml_merge_config;

/*
 * Makes a merger for models of n parameters, with its state (velocity, Adam
 * moments) at zero. GDML_ERR_INVALID with e for an unknown rule (e lists the
 * known ones) or an out-of-range hyperparameter; GDML_ERR_NOMEM.
 */
gdml_err gdml_merge_new(const gdml_merge_config *cfg, size_t n, gdml_merge **out, gdml_errmsg *e);

/* Frees the merger. NULL-safe; clears *m. */
void gdml_merge_destroy(gdml_merge **m);

/* True if rule names a known merge rule. */
bool gdml_merge_rule_ok(const char *rule);

/*
 * Applies one round to global[0..n): deltas[0..count) each of n floats, with
 * weights[0..count) (> 0; only fedavg-style averages use them). count >= 1.
 */
void gdml_merge_apply(gdml_merge *m, float *global, const float *const *deltas,
                      const double *weights, size_t count);

/*
 * The rule's state (velocity, Adam moments): *n floats (0 for stateless
 * rules, and then the pointer may be NULL). The caller may read it to store
 * it, or write it to resume.
 */
float *gdml_merge_state(gdml_merge *m, size_t *n);

/* The rule's name, as the table spells it ("fedavg", ...). */
const char *gdml_merge_rule(const gdml_merge *m);

/*
 * What the mean of the regions' lr * local steps is scaled by for SCAFFOLD's
 * global control variate: the server learning rate for a rule whose step is
 * the plain weighted average of the deltas (fedavg), 0 for the rules whose
 * step is not (momentum, Adam, sum), which turns the correction off.
 */
double gdml_merge_scaffold_scale(const gdml_merge *m);

#endif
