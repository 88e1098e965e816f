/*
 * test_region_ckpt.c - table tests of the regional parameter server's state
 * machine (server/region_sm.h): checkpoints: a restarted region resumes its own.
 * Frames from workers (GDML_LINK_DOWN) and the coordinator (GDML_LINK_UP),
 * ticks and commands go in; the actions it queues and its counters are
 * checked. No socket, no clock: time is a number the test advances
 * (region_rig.h).
 */
#include "region_rig.h"

#include "log.h"
#include "model.h"
#include "wan.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

TestSuite(region_ckpt, .init = rig_quiet, .timeout = 120);

/* ---- checkpoints ---- */

/* A copy of what a checkpoint holds, as the loop would read it back. */
typedef struct ckpt_copy {
    gdml_version_meta meta;
    char layout[GDML_LAYOUT_MAX];
    gdml_store_tensor t[GDML_STORE_MAX_TENSORS];
    float *data[GDML_STORE_MAX_TENSORS];
    size_t n;
} ckpt_copy;

static void take_checkpoint(rig *g, ckpt_copy *c)
{
    cr_assert_eq(test_count_kind(&g->acts, GDML_ACT_COMMIT), 1, "no checkpoint queued");
    const char *layout;
    const gdml_store_tensor *t;
    size_t n;
    gdml_version_meta *m = gdml_region_checkpoint(g->r, g->now, &layout, &t, &n);
    memset(c, 0, sizeof *c);
    c->meta = *m;
    snprintf(c->layout, sizeof c->layout, "%s", layout);
    for (size_t i = 0; i < n; i++) {
        c->data[i] = malloc(t[i].n * sizeof(float));
        memcpy(c->data[i], t[i].data, t[i].n * sizeof(float));
        c->t[i] = (gdml_store_tensor){.name = t[i].name, .data = c->data[i], .n = t[i].n};
    }
    c->n = n;
    gdml_region_on_checkpointed(g->r, g->now, GDML_OK, NULL);
}

static const float *ckpt_tensor(const ckpt_copy *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->t[i].name, name) == 0)
            return c->t[i].data;
    return NULL;
}

static void ckpt_free(ckpt_copy *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->data[i]);
}

Test(region_ckpt, a_restarted_region_resumes_its_checkpoint_on_top_of_the_current_model)
{
    rig g;
    rig_config(&g);
    g.cfg.overlap = true;
    g.cfg.checkpoint = true;
    rig_train(&g, SMALL);
    double *want = dup_init(&g), *anchor = dup_init(&g);
    for (unsigned step = 0; step < 3; step++) {
        step2(&g, want, step);
        if (step < 2) {
            cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_COMMIT), 0, "a checkpoint mid-round");
            clear(&g);
        }
    }
    /* After the delta: a checkpoint, with the model the delta was made from. */
    ckpt_copy c1;
    take_checkpoint(&g, &c1);
    cr_assert_str_eq(c1.meta.rule, "region");
    cr_assert_eq(c1.meta.round, 1, "syncs");
    cr_assert_eq((uint64_t)c1.meta.lr_steps, 3, "steps");
    cr_assert_str_eq(c1.meta.regions[0].name, "us-east");
    cr_assert_not_null(ckpt_tensor(&c1, "sent"), "a delta is in flight");
    cr_assert_null(ckpt_tensor(&c1, "residual"), "a dense uplink's residual is zero: not kept");
    clear(&g);
    /* Two steps on, then the GLOBAL: another checkpoint, nothing in flight. */
    double *sent = malloc(g.n * sizeof(double));
    memcpy(sent, want, g.n * sizeof(double));
    step2(&g, want, 3);
    step2(&g, want, 4);
    clear(&g);
    global_in_flight(&g, want, anchor, sent);
    ckpt_copy c2;
    take_checkpoint(&g, &c2);
    cr_assert_null(ckpt_tensor(&c2, "sent"));
    cr_assert_eq(c2.meta.version, c1.meta.version + 1);
    cr_assert_eq(c2.meta.regions[0].seq, 1, "the anchor is version 1");
    cr_assert_eq(c2.meta.regions[0].samples, 2, "two steps since the sync");
    uint64_t last_seq = c2.meta.seq;
    rig_fini(&g);

    /* Killed, restarted: the checkpoint is read before the coordinator is heard. */
    rig h;
    rig_config(&h);
    h.cfg.overlap = true;
    h.cfg.checkpoint = true;
    h.cfg.seq_base = 10; /* below the checkpoint's: the checkpoint's wins */
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_region_new(&h.cfg, &h.r, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_region_resume(h.r, &c2.meta, c2.layout, c2.t, c2.n, &e), GDML_OK, "%s",
                 e.text);
    h.now = 0;
    gdml_region_start(h.r, h.now);
    drain(&h);
    hello(&h, "w1", "r1", 600);
    hello(&h, "w2", "r2", 400);
    clear(&h);
    /* The coordinator has moved on to version 5, g5 = initial + big. */
    set_layout(&h, SMALL);
    float *g5 = gradient(h.n, 4, 4);
    coord_tensor(&h, GDML_MSG_WELCOME, SMALL, SEED, 5, g5);
    /* x = g5 + (x_c - anchor_c): its two steps since the sync stay. */
    const float *xc = ckpt_tensor(&c2, "params"), *ac = ckpt_tensor(&c2, "anchor");
    double *expect = malloc(h.n * sizeof(double));
    for (size_t i = 0; i < h.n; i++)
        expect[i] = (double)h.init[i] + g5[i] + ((double)xc[i] - ac[i]);
    assert_model(&h, GDML_MSG_WELCOME, "r1", expect, 5, 5);
    gdml_region_stats s = stats(&h);
    cr_assert_eq(s.steps, 5, "steps from the checkpoint");
    cr_assert_eq(s.syncs, 1);
    clear(&h);
    /* The round goes on from its restored clock: one more step is a sync,
     * under a sequence number above any the checkpoint used. */
    float *g1 = gradient(h.n, 1, 5), *g2 = gradient(h.n, 2, 5);
    push(&h, "w1", "r1", 5, 32, g1);
    push(&h, "w2", "r2", 5, 16, g2);
    free(g1);
    free(g2);
    const test_action *d = test_find_send(&h.acts, GDML_MSG_DELTA, "");
    cr_assert_not_null(d, "sync_every = 3: the restored round ends at step 6");
    cr_assert_gt(d->h.seq, last_seq);
    cr_assert_eq(d->h.version, 5);
    free(g5);
    free(expect);
    free(sent);
    free(want);
    free(anchor);
    ckpt_free(&c1);
    ckpt_free(&c2);
    rig_fini(&h);
}

/* Two steps of both workers under server.optimizer = momentum (0.5): the
 * velocity carries over, and a checkpoint keeps it for a restart. */
Test(region_ckpt, momentum_steps_with_velocity_and_a_checkpoint_keeps_it)
{
    rig g;
    rig_config(&g);
    g.cfg.optim = (gdml_optim_config){.kind = "momentum", .momentum = 0.5};
    g.cfg.checkpoint = true;
    rig_train(&g, SMALL);
    double *want = dup_init(&g), *v = calloc(g.n, sizeof(double));
    for (unsigned step = 0; step < 3; step++) {
        float *g1 = gradient(g.n, 1, step), *g2 = gradient(g.n, 2, step);
        push(&g, "w1", "r1", step, 32, g1);
        push(&g, "w2", "r2", step, 16, g2);
        for (size_t i = 0; i < g.n; i++) {
            double mean = (32.0 * g1[i] + 16.0 * g2[i]) / 48.0;
            v[i] = 0.5 * v[i] + mean;
            want[i] -= LR * v[i];
        }
        if (step < 2)
            assert_model(&g, GDML_MSG_MODEL, "r1", want, step + 1, 0);
        free(g1);
        free(g2);
        if (step < 2)
            clear(&g);
    }
    ckpt_copy c;
    take_checkpoint(&g, &c);
    const float *velocity = ckpt_tensor(&c, "opt_0");
    cr_assert_not_null(velocity, "the checkpoint lacks the velocity");
    cr_assert_null(ckpt_tensor(&c, "opt_1"));
    for (size_t i = 0; i < g.n; i++)
        cr_assert(fabs(velocity[i] - v[i]) < 1e-5, "velocity %zu: %g, want %g", i,
                  (double)velocity[i], v[i]);
    rig_fini(&g);
    /* Restarted on it: the next step goes on with the velocity it had. */
    rig h;
    rig_config(&h);
    h.cfg.optim = (gdml_optim_config){.kind = "momentum", .momentum = 0.5};
    h.cfg.checkpoint = true;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_region_new(&h.cfg, &h.r, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_region_resume(h.r, &c.meta, c.layout, c.t, c.n, &e), GDML_OK, "%s", e.text);
    gdml_region_start(h.r, h.now);
    drain(&h);
    hello(&h, "w1", "r1", 600);
    hello(&h, "w2", "r2", 400);
    welcome(&h, SMALL);
    clear(&h);
    float *g1 = gradient(h.n, 1, 3), *g2 = gradient(h.n, 2, 3);
    push(&h, "w1", "r1", 3, 32, g1);
    push(&h, "w2", "r2", 3, 16, g2);
    for (size_t i = 0; i < h.n; i++) {
        v[i] = 0.5 * v[i] + (32.0 * g1[i] + 16.0 * g2[i]) / 48.0;
        want[i] -= LR * v[i];
    }
    assert_model(&h, GDML_MSG_MODEL, "r1", want, 4, 0);
    free(g1);
    free(g2);
    ckpt_free(&c);
    free(want);
    free(v);
    rig_fini(&h);
}

Test(region_ckpt, a_checkpoint_of_another_region_or_model_is_not_used)
{
    rig g;
    rig_config(&g);
    g.cfg.checkpoint = true;
    rig_train(&g, SMALL);
    double *want = dup_init(&g);
    for (unsigned step = 0; step < 3; step++)
        step2(&g, want, step);
    ckpt_copy c;
    take_checkpoint(&g, &c);
    rig_fini(&g);

    rig h;
    rig_config(&h);
    h.cfg.name = "eu-west";
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_region_new(&h.cfg, &h.r, &e), GDML_OK);
    cr_assert_eq(gdml_region_resume(h.r, &c.meta, c.layout, c.t, c.n, &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "not a checkpoint of region 'eu-west'"), "%s", e.text);
    gdml_region_destroy(&h.r);

    /* This region's, but the coordinator now trains a bigger model: afresh. */
    rig_config(&h);
    cr_assert_eq(gdml_region_new(&h.cfg, &h.r, &e), GDML_OK);
    cr_assert_eq(gdml_region_resume(h.r, &c.meta, c.layout, c.t, c.n, &e), GDML_OK, "%s", e.text);
    h.now = 0;
    gdml_region_start(h.r, h.now);
    drain(&h);
    hello(&h, "w1", "r1", 600);
    hello(&h, "w2", "r2", 400);
    clear(&h);
    welcome(&h, BIG);
    double *init = dup_init(&h);
    assert_model(&h, GDML_MSG_WELCOME, "r1", init, 0, 0);
    cr_assert_eq(stats(&h).steps, 0);
    free(init);
    free(want);
    ckpt_free(&c);
    rig_fini(&h);
}
