/*
 * test_region_scaffold.c - table tests of the regional server's SCAFFOLD
 * control variates (server/region_wan.c): the correction is on once a round
 * has derived them, and off for REGION_SCAFFOLD_PAUSE clean rounds after a
 * break in the derivation (a trained model in a WELCOME, a GLOBAL spanning
 * more than one round, or one that does not answer the region's delta).
 * What is observed is the model the workers are sent, against plain SGD
 * computed by the rig (region_rig.h).
 */
#include "region_rig.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

TestSuite(region_scaffold, .timeout = 120);

/* How far the model sent to r1 in this batch of actions is from plain SGD's. */
static double off_sgd(const rig *g, const double *want)
{
    float *got = malloc(g->n * sizeof(float));
    gdml_msg_header h;
    cr_assert_gt(sent_tensor(g, GDML_MSG_MODEL, "r1", got, &h), 0, "no model to r1");
    double worst = 0;
    for (size_t i = 0; i < g->n; i++)
        worst = fmax(worst, fabs((double)got[i] - want[i]));
    free(got);
    return worst;
}

/* One round (sync_every = 3 steps): the largest departure from SGD the workers saw; the DELTA goes.
 */
static double one_round(rig *g, double *want, unsigned *step)
{
    double worst = 0;
    for (int k = 0; k < 3; k++) {
        clear(g);
        step2(g, want, (*step)++);
        if (k < 2) /* after the third the sync is due: the workers wait for GLOBAL */
            worst = fmax(worst, off_sgd(g, want));
    }
    cr_assert_eq(test_count_sends(&g->acts, GDML_MSG_DELTA, ""), 1, "no DELTA after a round");
    clear(g);
    return worst;
}

/* The coordinator's GLOBAL of version v: the model becomes the anchor moved by a change. */
static void global(rig *g, double *want, double *anchor, uint64_t v)
{
    float *change = gradient(g->n, 9, (unsigned)v);
    g->now += 10;
    coord_tensor(g, GDML_MSG_GLOBAL, NULL, 0, v, change);
    for (size_t i = 0; i < g->n; i++)
        want[i] = anchor[i] = anchor[i] + change[i];
    free(change);
    cr_assert_eq(stats(g).version, v);
}

#define PLAIN 1e-6     /* no correction: SGD's model to float rounding */
#define CORRECTED 1e-4 /* the variates moved it */

/* Rounds after GLOBALs from..to, none skipped: each must be uncorrected or corrected. */
static void rounds_after(rig *g, double *want, double *anchor, unsigned *step, uint64_t from,
                         uint64_t to, bool corrected)
{
    for (uint64_t v = from; v <= to; v++) {
        global(g, want, anchor, v);
        double off = one_round(g, want, step);
        if (corrected)
            cr_assert_gt(off, CORRECTED, "not corrected after version %llu", (unsigned long long)v);
        else
            cr_assert_lt(off, PLAIN, "corrected after version %llu, %.3g from SGD",
                         (unsigned long long)v, off);
    }
}

/* A region with SCAFFOLD, overlap off, its two workers joined and welcomed. */
static void scaffold_rig(rig *g)
{
    rig_config(g);
    g->cfg.scaffold = true;
    g->cfg.overlap = false;
    rig_train(g, SMALL);
}

/* Broken at version v (its GLOBAL or WELCOME just in): the round on it and
 * those after the next PAUSE - 1 GLOBALs are plain; the PAUSE-th clean
 * GLOBAL gives the global variate again. */
static void paused_then_back(rig *g, double *want, double *anchor, unsigned *step, uint64_t v,
                             const char *what)
{
    cr_assert_lt(one_round(g, want, step), PLAIN, "corrected after %s", what);
    rounds_after(g, want, anchor, step, v + 1, v + REGION_SCAFFOLD_PAUSE - 1, false);
    rounds_after(g, want, anchor, step, v + REGION_SCAFFOLD_PAUSE, v + REGION_SCAFFOLD_PAUSE, true);
}

/* Each test: a fresh SCAFFOLD region, its first rounds corrected; then what it says. */
static rig g;
static double *want, *anchor;
static unsigned step;

static void start(void)
{
    rig_quiet();
    scaffold_rig(&g);
    want = dup_init(&g);
    anchor = dup_init(&g);
    step = 0;
    cr_assert_lt(one_round(&g, want, &step), PLAIN, "variates before any round");
    rounds_after(&g, want, anchor, &step, 1, 2, true);
}

static void stop(void)
{
    free(want);
    free(anchor);
    rig_fini(&g);
}

Test(region_scaffold, a_fault_free_run_corrects_every_round_after_the_first, .init = start,
     .fini = stop)
{
    rounds_after(&g, want, anchor, &step, 3, 3 * REGION_SCAFFOLD_PAUSE, true);
}

Test(region_scaffold, a_trained_model_in_a_welcome_pauses_the_correction, .init = start,
     .fini = stop)
{
    /* The coordinator restarted: a trained model arrives whole, version 5. */
    float *model = gradient(g.n, 8, 5);
    g.now += 10;
    coord_tensor(&g, GDML_MSG_WELCOME, SMALL, SEED, 5, model);
    for (size_t i = 0; i < g.n; i++)
        want[i] = anchor[i] = (double)g.init[i] + model[i];
    free(model);
    paused_then_back(&g, want, anchor, &step, 5, "a WELCOME of version 5");
}

Test(region_scaffold, a_global_that_skips_a_version_pauses_the_correction, .init = start,
     .fini = stop)
{
    /* Rounds this region missed: version 4 after 2. */
    global(&g, want, anchor, 4);
    paused_then_back(&g, want, anchor, &step, 4, "a GLOBAL spanning 2 rounds");
}

Test(region_scaffold, a_global_that_does_not_answer_its_delta_pauses_the_correction, .init = start,
     .fini = stop)
{
    /* Asynchronous merging: another region's delta, merged alone, while this one trains. */
    global(&g, want, anchor, 3);
    clear(&g);
    global(&g, want, anchor, 4);
    paused_then_back(&g, want, anchor, &step, 4, "an unasked-for GLOBAL");
}
