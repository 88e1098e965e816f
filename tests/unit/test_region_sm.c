/*
 * test_region_sm.c - table tests of the regional parameter server's state
 * machine (server/region_sm.h): the run as it should go, overlap, early start, and SSP and ASP
 * inside the data center. Frames from workers (GDML_LINK_DOWN) and the coordinator (GDML_LINK_UP),
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

TestSuite(region_sm, .init = rig_quiet, .timeout = 120);

/* ---- the run as it should go ---- */

Test(region_sm, full_flow_join_train_sync_global_stop)
{
    rig g;
    rig_config(&g);
    rig_open(&g);

    g.now = 1;
    hello(&g, "w1", "r1", 600);
    cr_assert_eq(g.acts.n, 0, "one of two workers joined: nothing to do yet");
    g.now = 2;
    hello(&g, "w2", "r2", 400);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HELLO, ""), 1, "HELLO upstream");
    const test_action *up = test_find_send(&g.acts, GDML_MSG_HELLO, "");
    cr_assert_eq(up->h.count, 1000, "HELLO upstream declares %llu samples, expected 600 + 400",
                 (unsigned long long)up->h.count);
    cr_assert_str_eq(up->h.sender, "us-east");
    cr_assert_gt(up->h.seq, 1000, "sequence numbers start above seq_base");
    cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_SEND), 1);
    clear(&g);

    g.now = 3;
    welcome(&g, SMALL);
    double *want = dup_init(&g);
    assert_model(&g, GDML_MSG_WELCOME, "r1", want, 0, 0);
    assert_model(&g, GDML_MSG_WELCOME, "r2", want, 0, 0);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_WELCOME, NULL), 2);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HELLO, ""), 0);
    cr_assert_eq(stats(&g).worker_joins, 2);
    clear(&g);

    double *anchor = dup_init(&g);
    for (unsigned round = 0; round < 2; round++) {
        for (unsigned k = 0; k < 3; k++) {
            unsigned step = round * 3 + k;
            float *g1 = gradient(g.n, 1, step), *g2 = gradient(g.n, 2, step);
            g.now += 10;
            push(&g, "w1", "r1", step, 32, g1);
            cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0,
                         "step %u done with one of two gradients", step);
            push(&g, "w2", "r2", step, 16, g2);
            sgd2(want, g.n, g1, 32, g2, 16);
            free(g1);
            free(g2);
            if (k < 2) {
                assert_model(&g, GDML_MSG_MODEL, "r1", want, step + 1, round);
                assert_model(&g, GDML_MSG_MODEL, "r2", want, step + 1, round);
                cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 0);
                clear(&g);
                continue;
            }
            /* sync_every steps: the delta goes up, the workers wait for GLOBAL. */
            cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0,
                         "a MODEL went out before the round's GLOBAL");
            cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 1);
            float *delta = calloc(g.n, sizeof(float));
            gdml_msg_header dh;
            cr_assert_eq(sent_tensor(&g, GDML_MSG_DELTA, "", delta, &dh), 1);
            cr_assert_eq(dh.count, 1000, "DELTA weighs %llu samples", (unsigned long long)dh.count);
            cr_assert_eq(dh.version, round, "DELTA from version %llu, expected %u",
                         (unsigned long long)dh.version, round);
            cr_assert_eq(dh.step, round + 1, "DELTA of sync %llu, expected %u",
                         (unsigned long long)dh.step, round + 1);
            cr_assert_float_eq(dh.lr_steps, LR * 3, 1e-9);
            double *wd = malloc(g.n * sizeof(double));
            for (size_t i = 0; i < g.n; i++)
                wd[i] = want[i] - anchor[i];
            assert_close(delta, wd, g.n, "DELTA");
            free(wd);
            free(delta);
            gdml_region_stats s = stats(&g);
            cr_assert_eq(s.steps, step + 1);
            cr_assert_eq(s.syncs, round + 1);
            cr_assert_eq(s.pushes, 2 * (step + 1));
            clear(&g);

            /* GLOBAL: the model is the anchor plus the global change. */
            float *change = gradient(g.n, 9, round);
            g.now += 10;
            coord_tensor(&g, GDML_MSG_GLOBAL, NULL, 0, round + 1, change);
            for (size_t i = 0; i < g.n; i++)
                want[i] = anchor[i] = anchor[i] + change[i];
            free(change);
            assert_model(&g, GDML_MSG_MODEL, "r1", want, step + 1, round + 1);
            assert_model(&g, GDML_MSG_MODEL, "r2", want, step + 1, round + 1);
            cr_assert_eq(stats(&g).version, round + 1);
            cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 0);
            clear(&g);
        }
    }

    g.now += 10;
    coord_control(&g, GDML_MSG_STOP, GDML_REASON_NONE, "the coordinator was stopped by a signal");
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_STOP, "r1"), 1);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_STOP, "r2"), 1);
    /* The workers are told the coordinator's reason, not "training complete". */
    cr_assert_str_eq(test_find_send(&g.acts, GDML_MSG_STOP, "r1")->h.text,
                     "the coordinator was stopped by a signal");
    const test_action *x = exit_action(&g);
    cr_assert_not_null(x, "STOP from the coordinator ends the run");
    cr_assert_eq(x->act.status, 0);
    cr_assert_eq(x->act.err, GDML_OK);
    cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_EXIT), 1);
    clear(&g);
    /* Over: nothing more comes out. */
    float *g1 = gradient(g.n, 1, 6);
    push(&g, "w1", "r1", 6, 32, g1);
    tick(&g, g.now + 5000);
    cr_assert_eq(g.acts.n, 0);
    free(g1);
    free(want);
    free(anchor);
    rig_fini(&g);
}

/* ---- overlap: training goes on while the delta and GLOBAL are in flight ---- */

static void assert_delta(const rig *g, const double *want, const double *anchor, uint64_t version)
{
    float *delta = calloc(g->n, sizeof(float));
    gdml_msg_header dh;
    cr_assert_eq(sent_tensor(g, GDML_MSG_DELTA, "", delta, &dh), 1, "no DELTA");
    cr_assert_eq(dh.version, version, "DELTA against version %llu, expected %llu",
                 (unsigned long long)dh.version, (unsigned long long)version);
    double *wd = malloc(g->n * sizeof(double));
    for (size_t i = 0; i < g->n; i++)
        wd[i] = want[i] - anchor[i];
    assert_close(delta, wd, g->n, "DELTA");
    free(wd);
    free(delta);
}

/* A WELCOME of version v, the initial model plus a change, while training:
 * the expected anchor and live model move by that change. */
static void welcome_again(rig *g, uint64_t v, double *want, double *anchor)
{
    float *change = gradient(g->n, 9, 0);
    coord_tensor(g, GDML_MSG_WELCOME, SMALL, SEED, v, change);
    for (size_t i = 0; i < g->n; i++) {
        anchor[i] += change[i];
        want[i] += change[i];
    }
    free(change);
}

/* Early start: the workers train on [model]'s initial parameters at once. */
static void rig_early(rig *g)
{
    rig_config(g);
    snprintf(g->cfg.early_layout, sizeof g->cfg.early_layout, "%s", SMALL);
    g->cfg.early_seed = SEED;
    rig_open(g);
    hello(g, "w1", "r1", 600);
    hello(g, "w2", "r2", 400);
    set_layout(g, SMALL);
}

Test(region_sm, early_start_trains_before_the_welcome_and_its_first_sync_waits_for_it)
{
    rig g;
    rig_early(&g);
    const test_action *h = test_find_send(&g.acts, GDML_MSG_HELLO, "");
    cr_assert_not_null(h);
    cr_assert_str_empty(h->h.text, "its HELLO claims the coordinator's model: '%s'", h->h.text);
    double *want = dup_init(&g), *anchor = dup_init(&g);
    assert_model(&g, GDML_MSG_WELCOME, "r1", want, 0, 0);
    assert_model(&g, GDML_MSG_WELCOME, "r2", want, 0, 0);
    clear(&g);
    step2(&g, want, 0);
    step2(&g, want, 1);
    clear(&g);
    step2(&g, want, 2); /* the sync is due: it waits for the coordinator's model */
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 0);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0, "the workers went on");
    clear(&g);
    /* Version 0 of the same seed: the three steps go on top of it. */
    float *zero = calloc(g.n, sizeof(float));
    coord_tensor(&g, GDML_MSG_WELCOME, SMALL, SEED, 0, zero);
    free(zero);
    assert_delta(&g, want, anchor, 0);
    free(want);
    free(anchor);
    rig_fini(&g);
}

Test(region_sm, early_steps_are_dropped_when_the_coordinator_sends_a_trained_model)
{
    /* A resumed job: steps taken from the initial model say nothing about
     * version 5, so the round starts afresh from it. */
    rig g;
    rig_early(&g);
    double *want = dup_init(&g), *anchor = dup_init(&g), *ignored = dup_init(&g);
    clear(&g);
    step2(&g, ignored, 0);
    step2(&g, ignored, 1);
    welcome_again(&g, 5, want, anchor);
    clear(&g);
    step2(&g, want, 2);
    step2(&g, want, 3);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 0, "a sync after 2 steps of 3");
    step2(&g, want, 4);
    assert_delta(&g, want, anchor, 5);
    free(want);
    free(anchor);
    free(ignored);
    rig_fini(&g);
}

Test(region_sm, early_start_on_another_layout_than_the_coordinators_is_a_config_error)
{
    rig g;
    rig_early(&g);
    clear(&g);
    set_layout(&g, BIG);
    float *zero = calloc(g.n, sizeof(float));
    coord_tensor(&g, GDML_MSG_WELCOME, BIG, SEED, 0, zero);
    const test_action *x = exit_action(&g);
    cr_assert_not_null(x, "the region trains on a layout the coordinator does not");
    cr_assert_eq(x->act.status, 2);
    cr_assert(strstr(x->act.text, "early_start"), "the error names no remedy: %s", x->act.text);
    free(zero);
    rig_fini(&g);
}

Test(region_sm, a_welcome_while_training_keeps_the_progress_since_the_sync)
{
    /* The coordinator restarted on a newer version (or answered a HELLO that
     * declared more samples): the two steps since the last sync stay, on top
     * of the model it sends, and the sync still comes after three steps. */
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    double *want = dup_init(&g), *anchor = dup_init(&g);
    step2(&g, want, 0);
    step2(&g, want, 1);
    clear(&g);
    welcome_again(&g, 5, want, anchor);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 0);
    step2(&g, want, 2);
    assert_delta(&g, want, anchor, 5);
    free(want);
    free(anchor);
    rig_fini(&g);
}

Test(region_sm, overlap_auto_is_on_unless_scaffold_corrects_drift)
{
    cr_assert(gdml_region_overlaps("auto", false));
    cr_assert_not(gdml_region_overlaps("auto", true), "auto turns overlap off under SCAFFOLD");
    cr_assert(gdml_region_overlaps("on", true), "an explicit on is kept, with a warning");
    cr_assert(gdml_region_overlaps("on", false));
    cr_assert_not(gdml_region_overlaps("off", false));
    cr_assert_not(gdml_region_overlaps("off", true));
}

Test(region_sm, overlap_trains_on_and_global_keeps_the_progress_since_the_delta)
{
    rig g;
    rig_config(&g);
    g.cfg.overlap = true;
    rig_train(&g, SMALL);
    double *want = dup_init(&g), *anchor = dup_init(&g);
    for (unsigned step = 0; step < 3; step++) {
        step2(&g, want, step);
        if (step < 2)
            clear(&g);
    }
    /* The delta goes up, and the workers get the next model at once. */
    assert_delta(&g, want, anchor, 0);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 3, 0);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 3, 0);
    double *sent = malloc(g.n * sizeof(double));
    memcpy(sent, want, g.n * sizeof(double));
    clear(&g);

    /* Two more steps while the delta is in flight. */
    step2(&g, want, 3);
    step2(&g, want, 4);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 0);
    clear(&g);

    /* GLOBAL: x = g + (x - x_sent), with g = anchor + change. */
    global_in_flight(&g, want, anchor, sent);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0,
                 "GLOBAL mid-step sends no model: the step in progress goes on");
    cr_assert_eq(stats(&g).version, 1);
    clear(&g);

    /* The step finishes on the corrected model; the next sync (step 6) is
     * against version 1 and carries everything since the first delta. */
    step2(&g, want, 5);
    assert_delta(&g, want, anchor, 1);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 6, 1);
    clear(&g);
    free(sent);
    free(want);
    free(anchor);
    rig_fini(&g);
}

Test(region_sm, overlap_waits_for_the_global_when_the_next_sync_comes_first)
{
    rig g;
    rig_config(&g);
    g.cfg.overlap = true;
    rig_train(&g, SMALL);
    double *want = dup_init(&g), *anchor = dup_init(&g);
    for (unsigned step = 0; step < 3; step++)
        step2(&g, want, step);
    double *sent = malloc(g.n * sizeof(double));
    memcpy(sent, want, g.n * sizeof(double));
    clear(&g);
    for (unsigned step = 3; step < 6; step++)
        step2(&g, want, step);
    /* The second sync is due with the first still in flight: one delta at
     * a time, and the workers wait. */
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 0, "two deltas in flight");
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, "r1"), 2,
                 "steps 4 and 5 got models; step 6 must wait");
    clear(&g);
    /* A push for the step the workers wait at is not taken meanwhile. */
    float *g1 = gradient(g.n, 1, 6);
    push(&g, "w1", "r1", 6, 32, g1);
    free(g1);
    cr_assert_eq(stats(&g).steps, 6);
    clear(&g);

    global_in_flight(&g, want, anchor, sent);
    /* At once: the next delta (against version 1) and the model. */
    assert_delta(&g, want, anchor, 1);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 6, 1);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 6, 1);
    gdml_region_stats s = stats(&g);
    cr_assert_eq(s.syncs, 2);
    cr_assert_eq(s.version, 1);
    clear(&g);
    free(sent);
    free(want);
    free(anchor);
    rig_fini(&g);
}

/* ---- SSP and ASP inside the data center ---- */

Test(region_sm, ssp_applies_each_gradient_and_holds_a_worker_too_far_ahead)
{
    rig g;
    rig_config(&g);
    g.cfg.lan_staleness = 1;
    g.cfg.sync_every = 100;
    rig_train(&g, SMALL);
    double *want = dup_init(&g);
    uint64_t tag;
    float *a0 = gradient(g.n, 1, 0), *a1 = gradient(g.n, 1, 1), *b0 = gradient(g.n, 2, 0);
    /* w1's first gradient: applied alone, and w1 (1 ahead) gets the model at once. */
    push(&g, "w1", "r1", 0, 32, a0);
    apply(want, g.n, a0);
    cr_assert(model_to(&g, "r1", &tag), "w1 is 1 ahead, within the bound: no wait");
    cr_assert_eq(tag, 1);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 1, 0);
    cr_assert_eq(stats(&g).steps, 0, "the step is the slowest worker's clock");
    clear(&g);
    /* Its second: 2 ahead of w2, so it waits. */
    push(&g, "w1", "r1", 1, 32, a1);
    apply(want, g.n, a1);
    cr_assert_not(model_to(&g, "r1", &tag), "w1 is 2 ahead: it must wait");
    clear(&g);
    /* w2's first moves the step to 1: both get the model, each with its own tag. */
    push(&g, "w2", "r2", 0, 16, b0);
    apply(want, g.n, b0);
    cr_assert_eq(stats(&g).steps, 1);
    cr_assert(model_to(&g, "r2", &tag));
    cr_assert_eq(tag, 1);
    cr_assert(model_to(&g, "r1", &tag), "the slowest caught up: w1 goes on");
    cr_assert_eq(tag, 2);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 1, 0);
    clear(&g);
    /* A push tagged with an old step is stale. */
    push(&g, "w2", "r2", 0, 16, b0);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_STALE], 1);
    free(a0);
    free(a1);
    free(b0);
    free(want);
    rig_fini(&g);
}

Test(region_sm, asp_never_holds_a_worker_and_syncs_on_the_slowest_clock)
{
    rig g;
    rig_config(&g);
    g.cfg.lan_staleness = UINT64_MAX;
    g.cfg.sync_every = 2;
    rig_train(&g, SMALL);
    uint64_t tag;
    for (unsigned k = 0; k < 5; k++) { /* w1 runs five ahead, never held */
        float *a = gradient(g.n, 1, k);
        push(&g, "w1", "r1", k, 32, a);
        free(a);
        cr_assert(model_to(&g, "r1", &tag), "ASP held w1 at %u", k);
        cr_assert_eq(tag, k + 1);
        cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 0, "no step yet: no sync");
        clear(&g);
    }
    for (unsigned k = 0; k < 2; k++) { /* w2's two gradients make two steps: a sync */
        float *b = gradient(g.n, 2, k);
        push(&g, "w2", "r2", k, 16, b);
        free(b);
    }
    cr_assert_eq(stats(&g).steps, 2);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 1, "sync_every = 2 steps");
    rig_fini(&g);
}

Test(region_sm, ssp_a_worker_that_goes_silent_is_not_waited_for)
{
    rig g;
    rig_config(&g);
    g.cfg.lan_staleness = 1;
    g.cfg.sync_every = 100;
    rig_train(&g, SMALL);
    uint64_t tag;
    float *a = gradient(g.n, 1, 0);
    push(&g, "w1", "r1", 0, 32, a);
    clear(&g);
    push(&g, "w1", "r1", 1, 32, a);
    cr_assert_not(model_to(&g, "r1", &tag));
    clear(&g);
    /* w2 falls silent (w1 keeps beating): the step is w1's clock now, and w1 is released. */
    for (int k = 0; k < 5; k++) {
        g.now += 1000;
        feed_control(&g, GDML_LINK_DOWN, GDML_MSG_HEARTBEAT, "w1", "r1", 0, 0);
        tick(&g, g.now);
    }
    cr_assert(model_to(&g, "r1", &tag), "w1 waits on a silent worker");
    cr_assert_eq(tag, 2);
    free(a);
    rig_fini(&g);
}
