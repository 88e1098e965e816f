/*
 * region_ckpt.c - the regional server's checkpoint: what a restarted server
 * needs to carry on where it was, kept in its own LMDB store (store.h) by
 * the loop around the state machine.
 *
 * A checkpoint is taken after every delta the region sends and after every
 * GLOBAL it folds in, so a crash loses at most the steps since the newer of
 * the two, and once more when the region stops, however it stops. It holds the live model, the anchor (the global model the round
 * started from), the live model when the delta in flight was made (if one
 * is), the uplink's error-feedback residual (unless it is all zero, as a
 * dense uplink's always is: absent, it is zero), the SCAFFOLD control variates,
 * the clocks and the uplink budget's window. It is written as one store
 * version, its record used so:
 *
 *   version, parent   checkpoint numbers (1, 2, ...)
 *   rule              "region" (never taken for a coordinator's store)
 *   round             syncs sent         seq        the last uplink sequence number
 *   lr_steps          steps trained      regions[0] name, anchor's global version (seq),
 *   bytes_sent        budget spent                  steps since the last sync (samples)
 *   bytes_received    budget spent in its window
 *   tensors           params, anchor; residual (if not zero); sent (a delta in flight);
 *                     c_local, c_global (SCAFFOLD); opt_0, opt_1 (the
 *                     optimizer's state: momentum's velocity, adam's moments)
 *
 * Restarted, the region joins again and the coordinator's WELCOME brings
 * the current global model g. The region then continues from g plus the
 * local progress the checkpoint holds: x = g + (x_c - base), base being the
 * model the delta in flight was made from, or else the anchor. Whatever of
 * that progress a merged delta already carried is in g, so nothing is
 * counted twice; a delta lost with the crash is lost, as one refused for
 * staleness would be.
 */
#include "region_impl.h"

#include "log.h"
#include "tensor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CKPT_RULE "region"

static void add_tensor(gdml_region *r, const char *name, const float *data)
{
    r->ckpt_tensors[r->n_ckpt_tensors++] =
        (gdml_store_tensor){.name = name, .data = data, .n = r->n};
}

void region_checkpoint(gdml_region *r, int64_t now)
{
    (void)now;
    if (!r->cfg->checkpoint || r->n == 0 || r->ckpt_pending)
        return;
    /* The state is read when the loop writes it, after the event that
     * queued this: one consistent state, whatever else the event changed. */
    gdml_action act = {.kind = GDML_ACT_COMMIT};
    if (!gdml_actions_push(&r->actions, &act))
        r->ckpt_pending = true;
}

gdml_version_meta *gdml_region_checkpoint(gdml_region *r, int64_t now, const char **layout,
                                          const gdml_store_tensor **tensors, size_t *n_tensors)
{
    gdml_version_meta *m = &r->ckpt_meta;
    memset(m, 0, sizeof *m);
    m->version = ++r->ckpt_version;
    m->parent = m->version - 1;
    m->round = r->syncs;
    m->seq = r->wan_seq;
    m->lr_steps = (double)r->step;
    m->accuracy = m->loss = NAN;
    snprintf(m->rule, sizeof m->rule, CKPT_RULE);
    gdml_wan_budget_state(r->up, now, &m->bytes_sent, &m->bytes_received);
    m->n_regions = 1;
    snprintf(m->regions[0].name, sizeof m->regions[0].name, "%s", r->cfg->name);
    m->regions[0].seq = r->version;
    m->regions[0].samples = r->steps_since_sync;
    r->n_ckpt_tensors = 0;
    add_tensor(r, "params", r->params);
    add_tensor(r, "anchor", r->anchor);
    if (!gdml_wan_residual_zero(r->up))
        add_tensor(r, "residual", gdml_wan_residual(r->up));
    if (r->in_flight)
        add_tensor(r, "sent", r->sent);
    if (r->c_local) {
        add_tensor(r, "c_local", r->c_local);
        add_tensor(r, "c_global", r->c_global);
    }
    size_t n_opt;
    float *const *opt = gdml_optim_state(r->opt, &n_opt);
    static const char *const opt_names[] = {"opt_0", "opt_1"};
    for (size_t i = 0; i < n_opt && i < 2; i++)
        add_tensor(r, opt_names[i], opt[i]);
    *layout = r->layout_text;
    *tensors = r->ckpt_tensors;
    *n_tensors = r->n_ckpt_tensors;
    return m;
}

void gdml_region_on_checkpointed(gdml_region *r, int64_t now, gdml_err err, const char *why)
{
    r->ckpt_pending = false;
    if (err) /* recovery gets worse, training does not stop */
        gdml_ratelog_note(r->log, now, GDML_LOG_WARN, "checkpoint_failed", "checkpoint",
                          "not written", "checkpoint=%llu why=%s",
                          (unsigned long long)r->ckpt_meta.version, why ? why : gdml_strerror(err));
}

static void free_restored(gdml_region *r)
{
    region_restored *x = &r->restored;
    free(x->params);
    free(x->anchor);
    free(x->sent);
    free(x->residual);
    free(x->c_local);
    free(x->c_global);
    free(x->opt[0]);
    free(x->opt[1]);
    memset(x, 0, sizeof *x);
}

void region_restored_fini(gdml_region *r)
{
    free_restored(r);
}

gdml_err gdml_region_resume(gdml_region *r, const gdml_version_meta *meta, const char *layout,
                            const gdml_store_tensor *tensors, size_t n_tensors, gdml_errmsg *e)
{
    if (strcmp(meta->rule, CKPT_RULE) != 0 || meta->n_regions != 1 ||
        strcmp(meta->regions[0].name, r->cfg->name) != 0)
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "checkpoint %llu is not a checkpoint of region '%s'",
                               (unsigned long long)meta->version, r->cfg->name);
    free_restored(r);
    region_restored *x = &r->restored;
    float **slots[] = {&x->params,  &x->anchor,   &x->residual, &x->sent,
                       &x->c_local, &x->c_global, &x->opt[0],   &x->opt[1]};
    const char *names[] = {"params",  "anchor",   "residual", "sent",
                           "c_local", "c_global", "opt_0",    "opt_1"};
    size_t n = 0;
    for (size_t t = 0; t < n_tensors; t++)
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
            if (strcmp(tensors[t].name, names[k]) != 0)
                continue;
            if (n && tensors[t].n != n) {
                free_restored(r);
                return gdml_errmsg_set(e, GDML_ERR_INVALID,
                                       "checkpoint %llu: tensors of "
                                       "different sizes",
                                       (unsigned long long)meta->version);
            }
            n = tensors[t].n;
            if (!(*slots[k] = malloc(n * sizeof(float)))) {
                free_restored(r);
                return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory");
            }
            memcpy(*slots[k], tensors[t].data, n * sizeof(float));
        }
    if (!x->params || !x->anchor || (!x->c_local != !x->c_global)) {
        free_restored(r);
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "checkpoint %llu lacks a tensor",
                               (unsigned long long)meta->version);
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x->params[i]) || !isfinite(x->anchor[i])) {
            free_restored(r);
            return gdml_errmsg_set(e, GDML_ERR_INVALID,
                                   "checkpoint %llu holds a model that is not finite",
                                   (unsigned long long)meta->version);
        }
    x->have = true;
    x->n = n;
    x->meta = *meta;
    snprintf(x->layout, sizeof x->layout, "%s", layout);
    r->ckpt_version = meta->version;
    if (meta->seq > r->wan_seq)
        r->wan_seq = meta->seq;
    return GDML_OK;
}

void region_apply_restored(gdml_region *r, int64_t now)
{
    region_restored *x = &r->restored;
    if (!x->have)
        return;
    if (x->n != r->n || strcmp(x->layout, r->layout_text) != 0 ||
        (x->c_local != NULL) != (r->c_local != NULL)) {
        gdml_warn("checkpoint_mismatch", "checkpoint=%llu layout=%s scaffold=%s training=%s",
                  (unsigned long long)x->meta.version, x->layout,
                  x->c_local && !r->c_local ? "yes" : "no", r->layout_text);
        free_restored(r);
        return;
    }
    /* x = g + (x_c - base): the local progress the merged model lacks. */
    const float *base = x->sent ? x->sent : x->anchor;
    gdml_saxpy(r->n, 1.0f, x->params, r->params);
    gdml_saxpy(r->n, -1.0f, base, r->params);
    if (x->residual) /* absent: zero, as the link starts */
        memcpy(gdml_wan_residual(r->up), x->residual, r->n * sizeof(float));
    if (r->c_local) {
        memcpy(r->c_local, x->c_local, r->n * sizeof(float));
        memcpy(r->c_global, x->c_global, r->n * sizeof(float));
    }
    size_t n_opt, had = (x->opt[0] != NULL) + (x->opt[1] != NULL);
    float *const *opt = gdml_optim_state(r->opt, &n_opt);
    if (had == n_opt)
        for (size_t i = 0; i < n_opt; i++)
            memcpy(opt[i], x->opt[i], r->n * sizeof(float));
    else
        gdml_warn("checkpoint_optimizer_reset", "checkpoint=%llu had=%zu optimizer=%s keeps=%zu",
                  (unsigned long long)x->meta.version, had, r->cfg->optim.kind, n_opt);
    r->step = (uint64_t)x->meta.lr_steps;
    r->syncs = x->meta.round;
    r->steps_since_sync = x->meta.regions[0].samples;
    gdml_wan_budget_restore(r->up, x->meta.bytes_sent, x->meta.bytes_received, now);
    gdml_info("resume", "checkpoint=%llu step=%llu syncs=%llu version=%llu trained_from=%llu",
              (unsigned long long)x->meta.version, (unsigned long long)r->step,
              (unsigned long long)r->syncs, (unsigned long long)r->version,
              (unsigned long long)x->meta.regions[0].seq);
    free_restored(r);
}
