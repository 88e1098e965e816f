/*
 * merge.c - the coordinator's merge rules, one row each in a table of
 * operations. Every rule works one coordinate at a time: it combines the
 * regions' deltas at that coordinate in double (no scratch buffer, and no
 * float rounding in the weighted sum), updates its state there and adds the
 * step to the global model.
 */
#include "merge.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct merge_ops {
    const char *name;
    /* The step is lr times the weighted average of the deltas (SCAFFOLD's normaliser holds). */
    bool plain_average;
    /* The rule keeps state_per_param * n floats of state (velocity, moments). */
    size_t state_per_param;
    /* Checks the hyperparameters the rule uses; the rule name and lr are checked already. */
    gdml_err (*check)(const gdml_merge_config *cfg, gdml_errmsg *e);
    void (*apply)(gdml_merge *m, float *global, const float *const *deltas, const double *weights,
                  size_t count);
} merge_ops;

struct gdml_merge {
    const merge_ops *ops;
    gdml_merge_config cfg; /* cfg.rule points at ops->name, not the caller's string */
    size_t n;
    float *state;
};

/* Returns 1 / sum of weights, checking that each is positive and finite. */
static double inverse_weight(const double *weights, size_t count)
{
    double total = 0;
    for (size_t i = 0; i < count; i++) {
        assert(weights[i] > 0 && isfinite(weights[i]));
        total += weights[i];
    }
    assert(total > 0 && isfinite(total));
    return 1.0 / total;
}

/* The weighted average of the deltas at coordinate j. */
static double avg_at(const float *const *deltas, const double *weights, size_t count,
                     double inv_total, size_t j)
{
    double acc = 0;
    for (size_t i = 0; i < count; i++)
        acc += weights[i] * (double)deltas[i][j];
    return acc * inv_total;
}

static void apply_fedavg(gdml_merge *m, float *global, const float *const *deltas,
                         const double *weights, size_t count)
{
    double inv = inverse_weight(weights, count);
    for (size_t j = 0; j < m->n; j++)
        global[j] = (float)(global[j] + m->cfg.lr * avg_at(deltas, weights, count, inv, j));
}

/* sum does not read the weights. */
static void apply_sum(gdml_merge *m, float *global, const float *const *deltas,
                      const double *weights, size_t count)
{
    (void)weights;
    for (size_t j = 0; j < m->n; j++) {
        double acc = 0;
        for (size_t i = 0; i < count; i++)
            acc += deltas[i][j];
        global[j] = (float)(global[j] + m->cfg.lr * acc);
    }
}

static void apply_fedavgm(gdml_merge *m, float *global, const float *const *deltas,
                          const double *weights, size_t count)
{
    double inv = inverse_weight(weights, count);
    double mu = m->cfg.momentum, lr = m->cfg.lr;
    float *v = m->state;
    for (size_t j = 0; j < m->n; j++) {
        double vj = mu * v[j] + avg_at(deltas, weights, count, inv, j);
        v[j] = (float)vj;
        global[j] = (float)(global[j] + lr * vj);
    }
}

static void apply_nesterov(gdml_merge *m, float *global, const float *const *deltas,
                           const double *weights, size_t count)
{
    double inv = inverse_weight(weights, count);
    double mu = m->cfg.momentum, lr = m->cfg.lr;
    float *v = m->state;
    for (size_t j = 0; j < m->n; j++) {
        double avg = avg_at(deltas, weights, count, inv, j);
        double vj = mu * v[j] + avg;
        v[j] = (float)vj;
        global[j] = (float)(global[j] + lr * (mu * vj + avg));
    }
}

static void apply_adam(gdml_merge *m, float *global, const float *const *deltas,
                       const double *weights, size_t count)
{
    double inv = inverse_weight(weights, count);
    double b1 = m->cfg.beta1, b2 = m->cfg.beta2, eps = m->cfg.epsilon, lr = m->cfg.lr;
    float *mom = m->state, *sq = m->state + m->n;
    for (size_t j = 0; j < m->n; j++) {
        double avg = avg_at(deltas, weights, count, inv, j);
        double mj = b1 * mom[j] + (1 - b1) * avg;
        double sj = b2 * sq[j] + (1 - b2) * avg * avg;
        mom[j] = (float)mj;
        sq[j] = (float)sj;
        global[j] = (float)(global[j] + lr * mj / (sqrt(sj) + eps));
    }
}

/* Written so that NaN is out of range. */
static bool in_unit(double x)
{
    return x >= 0 && x < 1;
}

static gdml_err check_none(const gdml_merge_config *cfg, gdml_errmsg *e)
{
    (void)cfg;
    (void)e;
    return GDML_OK;
}

static gdml_err check_momentum(const gdml_merge_config *cfg, gdml_errmsg *e)
{
    if (!in_unit(cfg->momentum))
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "merge rule %s: momentum %g is outside [0, 1)",
                               cfg->rule, cfg->momentum);
    return GDML_OK;
}

static gdml_err check_adam(const gdml_merge_config *cfg, gdml_errmsg *e)
{
    if (!in_unit(cfg->beta1))
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "merge rule adam: beta1 %g is outside [0, 1)",
                               cfg->beta1);
    if (!in_unit(cfg->beta2))
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "merge rule adam: beta2 %g is outside [0, 1)",
                               cfg->beta2);
    if (!(cfg->epsilon > 0 && isfinite(cfg->epsilon)))
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "merge rule adam: epsilon %g must be positive and finite",
                               cfg->epsilon);
    return GDML_OK;
}

static const merge_ops rules[] = {
    {.name = "fedavg", .plain_average = true, .state_per_param = 0, .check = check_none, .apply = apply_fedavg},
    {.name = "sum", .state_per_param = 0, .check = check_none, .apply = apply_sum},
    {.name = "fedavgm", .state_per_param = 1, .check = check_momentum, .apply = apply_fedavgm},
    {.name = "nesterov", .state_per_param = 1, .check = check_momentum, .apply = apply_nesterov},
    {.name = "adam", .state_per_param = 2, .check = check_adam, .apply = apply_adam},
};

#define RULE_COUNT (sizeof(rules) / sizeof(rules[0]))

static const merge_ops *find_rule(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < RULE_COUNT; i++)
        if (strcmp(rules[i].name, name) == 0)
            return &rules[i];
    return NULL;
}

bool gdml_merge_rule_ok(const char *rule)
{
    return find_rule(rule) != NULL;
}

/* Fills e with "unknown merge rule" and the known ones, from the table. */
static gdml_err unknown_rule(const char *rule, gdml_errmsg *e)
{
    char known[128] = "";
    size_t len = 0;
    for (size_t i = 0; i < RULE_COUNT && len < sizeof(known); i++) {
        int w = snprintf(known + len, sizeof(known) - len, "%s%s", i ? ", " : "", rules[i].name);
        if (w < 0)
            break;
        len += (size_t)w;
    }
    return gdml_errmsg_set(e, GDML_ERR_INVALID, "unknown merge rule \"%s\" (known: %s)",
                           rule ? rule : "(none)", known);
}

gdml_err gdml_merge_new(const gdml_merge_config *cfg, size_t n, gdml_merge **out, gdml_errmsg *e)
{
    const merge_ops *ops = find_rule(cfg->rule);
    if (!ops)
        return unknown_rule(cfg->rule, e);
    if (!(cfg->lr > 0 && isfinite(cfg->lr)))
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "merge rule %s: lr %g must be positive and finite", ops->name,
                               cfg->lr);
    gdml_err err = ops->check(cfg, e);
    if (err != GDML_OK)
        return err;

    if (ops->state_per_param > 0 && n > SIZE_MAX / sizeof(float) / ops->state_per_param)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "merge rule %s: no memory for %zu parameters",
                               ops->name, n);
    gdml_merge *m = calloc(1, sizeof(*m));
    if (!m)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "merge rule %s: out of memory", ops->name);
    m->ops = ops;
    m->cfg = *cfg;
    m->cfg.rule = ops->name;
    m->n = n;
    size_t state = ops->state_per_param * n;
    if (state > 0) {
        m->state = calloc(state, sizeof(float));
        if (!m->state) {
            free(m);
            return gdml_errmsg_set(e, GDML_ERR_NOMEM,
                                   "merge rule %s: no memory for the state of %zu parameters",
                                   ops->name, n);
        }
    }
    *out = m;
    return GDML_OK;
}

void gdml_merge_destroy(gdml_merge **mp)
{
    if (!mp || !*mp)
        return;
    free((*mp)->state);
    free(*mp);
    *mp = NULL;
}

void gdml_merge_apply(gdml_merge *m, float *global, const float *const *deltas,
                      const double *weights, size_t count)
{
    assert(count >= 1);
    /* With no parameters there is no state either: its pointer is NULL. */
    if (m->n == 0)
        return;
    m->ops->apply(m, global, deltas, weights, count);
}

float *gdml_merge_state(gdml_merge *m, size_t *n)
{
    *n = m->ops->state_per_param * m->n;
    return m->state;
}

const char *gdml_merge_rule(const gdml_merge *m)
{
    return m->ops->name;
}

double gdml_merge_scaffold_scale(const gdml_merge *m)
{
    return m->ops->plain_average ? m->cfg.lr : 0.0;
}
