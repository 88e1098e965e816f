/*
 * test_region_workers.c - table tests of the regional parameter server's state
 * machine (server/region_sm.h): the workers: joining, pushes refused or ignored, norms, chunks,
 * silent and restarted workers. Frames from workers (GDML_LINK_DOWN) and the coordinator
 * (GDML_LINK_UP), ticks and commands go in; the actions it queues and its counters are checked. No
 * socket, no clock: time is a number the test advances (region_rig.h).
 */
#include "region_rig.h"

#include "log.h"
#include "model.h"
#include "wan.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

TestSuite(region_workers, .init = rig_quiet, .timeout = 120);

/* ---- joining ---- */

Test(region_workers, member_list_admits_listed_refuses_others)
{
    rig g;
    rig_config(&g);
    snprintf(g.members[0], GDML_NAME_MAX, "w1");
    snprintf(g.members[1], GDML_NAME_MAX, "w2");
    g.cfg.members = (const char(*)[GDML_NAME_MAX])g.members;
    g.cfg.n_members = 2;
    rig_open(&g);

    hello(&g, "mallory", "r3", 500);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_NOT_ALLOWED], 1);
    const test_action *err = test_find_send(&g.acts, GDML_MSG_ERROR, "r3");
    cr_assert_not_null(err, "the refused worker is told why");
    cr_assert_eq(err->h.code, GDML_REASON_NOT_ALLOWED);
    cr_assert_eq(stats(&g).worker_joins, 0);
    clear(&g);

    hello(&g, "w1", "r1", 600);
    hello(&g, "mallory", "r4", 500); /* a second try does not take a slot either */
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HELLO, ""), 0);
    hello(&g, "w2", "r2", 400);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_NOT_ALLOWED], 2);
    cr_assert_eq(stats(&g).worker_joins, 2);
    const test_action *up = test_find_send(&g.acts, GDML_MSG_HELLO, "");
    cr_assert_not_null(up, "both listed workers joined: HELLO upstream");
    cr_assert_eq(up->h.count, 1000);
    clear(&g);
    welcome(&g, SMALL);
    double *want = dup_init(&g);
    assert_model(&g, GDML_MSG_WELCOME, "r1", want, 0, 0);
    assert_model(&g, GDML_MSG_WELCOME, "r2", want, 0, 0);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_WELCOME, "r4"), 0);
    free(want);
    rig_fini(&g);
}

Test(region_workers, hello_sample_count_out_of_bounds_does_not_join)
{
    rig g;
    rig_config(&g);
    rig_open(&g);
    hello(&g, "w1", "r1", 0);
    hello(&g, "w1", "r1", 100001);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_BOUNDS], 2);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_ERROR, "r1"), 2);
    for (size_t i = 0; i < g.acts.n; i++)
        cr_assert_eq(g.acts.a[i].h.code, GDML_REASON_BOUNDS);
    cr_assert_eq(stats(&g).worker_joins, 0);
    clear(&g);

    hello(&g, "w2", "r2", 100000); /* the largest allowed */
    cr_assert_eq(stats(&g).worker_joins, 1);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HELLO, ""), 0,
                 "the refused w1 counted as one of the two workers");
    /* A PUSH from the refused worker: it is no member. */
    feed_control(&g, GDML_LINK_DOWN, GDML_MSG_HEARTBEAT, "w1", "r1", 0, 0);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_NOT_MEMBER], 1);
    clear(&g);
    hello(&g, "w1", "r1", 1);
    const test_action *up = test_find_send(&g.acts, GDML_MSG_HELLO, "");
    cr_assert_not_null(up);
    cr_assert_eq(up->h.count, 100001, "the refused declarations were not counted");
    rig_fini(&g);
}

/* ---- pushes that are refused or ignored ---- */

Test(region_workers, push_before_hello_is_not_member)
{
    rig g;
    rig_config(&g);
    rig_open(&g);
    set_layout(&g, SMALL);
    float *g1 = gradient(g.n, 1, 0);
    push(&g, "w1", "r1", 0, 32, g1);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_NOT_MEMBER], 1);
    const test_action *err = test_find_send(&g.acts, GDML_MSG_ERROR, "r1");
    cr_assert_not_null(err, "the stranger is told to send HELLO");
    cr_assert_eq(err->h.code, GDML_REASON_NOT_MEMBER);
    cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_SEND), 1);
    cr_assert_eq(stats(&g).pushes, 0);
    cr_assert_eq(stats(&g).worker_joins, 0);
    free(g1);
    rig_fini(&g);
}

Test(region_workers, push_from_known_name_on_other_route_is_not_member)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    float *g1 = gradient(g.n, 1, 0), *g2 = gradient(g.n, 2, 0), *bad = gradient(g.n, 5, 5);
    push(&g, "w1", "r9", 0, 32, bad);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_NOT_MEMBER], 1);
    const test_action *err = test_find_send(&g.acts, GDML_MSG_ERROR, "r9");
    cr_assert_not_null(err, "the other route is answered");
    cr_assert_eq(err->h.code, GDML_REASON_NOT_MEMBER);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_ERROR, "r1"), 0);
    cr_assert_eq(stats(&g).pushes, 0);
    clear(&g);
    /* The real w1 and w2 make the step: the impostor's gradient is not in it. */
    push(&g, "w1", "r1", 0, 32, g1);
    push(&g, "w2", "r2", 0, 16, g2);
    double *want = dup_init(&g);
    sgd2(want, g.n, g1, 32, g2, 16);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 1, 0);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, "r9"), 0);
    free(g1);
    free(g2);
    free(bad);
    free(want);
    rig_fini(&g);
}

Test(region_workers, push_for_wrong_step_is_stale_and_step_undisturbed)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    float *g1 = gradient(g.n, 1, 0), *g2 = gradient(g.n, 2, 0), *bad = gradient(g.n, 5, 5);
    push(&g, "w1", "r1", 5, 32, bad);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_STALE], 1);
    const test_action *err = test_find_send(&g.acts, GDML_MSG_ERROR, "r1");
    cr_assert_not_null(err);
    cr_assert_eq(err->h.code, GDML_REASON_STALE);
    cr_assert_eq(stats(&g).steps, 0);
    clear(&g);
    push(&g, "w2", "r2", 0, 16, g2);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0,
                 "w1's stale push did not count as its gradient");
    push(&g, "w1", "r1", 0, 32, g1);
    double *want = dup_init(&g);
    sgd2(want, g.n, g1, 32, g2, 16);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 1, 0);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 1, 0);
    cr_assert_eq(stats(&g).steps, 1);
    cr_assert_eq(stats(&g).pushes, 2);
    clear(&g);
    /* A push for the step just done is stale too. */
    push(&g, "w1", "r1", 0, 32, bad);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_STALE], 2);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0);
    free(g1);
    free(g2);
    free(bad);
    free(want);
    rig_fini(&g);
}

Test(region_workers, second_push_for_same_step_ignored)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    float *g1 = gradient(g.n, 1, 0), *g2 = gradient(g.n, 2, 0), *again = gradient(g.n, 7, 3);
    push(&g, "w1", "r1", 0, 32, g1);
    push(&g, "w1", "r1", 0, 32, again); /* a new transfer, same step */
    push(&g, "w1", "r1", 0, 32, g1);    /* and the first once more */
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0,
                 "w1's repeated pushes did not stand in for w2's");
    cr_assert_eq(stats(&g).pushes, 1);
    push(&g, "w2", "r2", 0, 16, g2);
    double *want = dup_init(&g);
    sgd2(want, g.n, g1, 32, g2, 16);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 1, 0);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 1, 0);
    cr_assert_eq(stats(&g).pushes, 2);
    cr_assert_eq(stats(&g).steps, 1);
    free(g1);
    free(g2);
    free(again);
    free(want);
    rig_fini(&g);
}

Test(region_workers, restarted_multichunk_push_counts_worker_once)
{
    /* w1 sends chunk 0 of its push, then sends the same gradient again as
     * a new transfer (it got its model again and pushed again). Each chunk's
     * mean must use w1 once. */
    rig g;
    rig_config(&g);
    rig_train(&g, BIG);
    cr_assert_eq(gdml_chunk_count(g.n), 3);
    float *g1 = gradient(g.n, 1, 0), *g2 = gradient(g.n, 2, 0);
    size_t nf;
    gdml_blob **first = push_frames(&g, "w1", 0, 30, g1, &nf);
    cr_assert_eq(nf, 3);
    feed(&g, GDML_LINK_DOWN, first[0], "w1", "r1");
    test_frames_free(first, nf);
    push(&g, "w1", "r1", 0, 30, g1);
    push(&g, "w2", "r2", 0, 10, g2);
    double *want = dup_init(&g);
    sgd2(want, g.n, g1, 30, g2, 10);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 1, 0);
    free(g1);
    free(g2);
    free(want);
    rig_fini(&g);
}

Test(region_workers, push_count_above_declared_samples_is_bounds)
{
    /* One row per weight a push may not have: its HELLO declared 600 samples. */
    const uint64_t counts[] = {(uint64_t)1 << 40, 601, 0};
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        rig g;
        rig_config(&g);
        rig_train(&g, SMALL);
        float *g1 = gradient(g.n, 1, 0);
        push(&g, "w1", "r1", 0, counts[c], g1);
        cr_assert_eq(stats(&g).rejected[GDML_REASON_BOUNDS], 1, "count %llu",
                     (unsigned long long)counts[c]);
        const test_action *err = test_find_send(&g.acts, GDML_MSG_ERROR, "r1");
        cr_assert_not_null(err, "count %llu: w1 is told", (unsigned long long)counts[c]);
        cr_assert_eq(err->h.code, GDML_REASON_BOUNDS);
        cr_assert_eq(stats(&g).pushes, 0);
        cr_assert_eq(stats(&g).steps, 0);
        cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0);
        free(g1);
        rig_fini(&g);
    }
}

/* ---- norms ---- */

static float *huge(size_t n)
{
    float *x = malloc(n * sizeof(float));
    cr_assert_not_null(x);
    for (size_t i = 0; i < n; i++)
        x[i] = (i % 2 ? -1e30f : 1e30f);
    return x;
}

Test(region_workers, huge_gradient_dropped_as_norm_params_stay_finite)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    float *h = huge(g.n), *g2 = gradient(g.n, 2, 0);
    push(&g, "w1", "r1", 0, 32, h);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_NORM], 1);
    const test_action *err = test_find_send(&g.acts, GDML_MSG_ERROR, "r1");
    cr_assert_not_null(err);
    cr_assert_eq(err->h.code, GDML_REASON_NORM);
    cr_assert_eq(stats(&g).pushes, 0);
    push(&g, "w2", "r2", 0, 16, g2);
    /* Whenever the step completes (at once, or once w1 is gone), it is w2's alone. */
    gdml_region_on_dropped(g.r, g.now, &(gdml_peer){0});
    gdml_peer r1 = test_route("r1");
    if (test_count_sends(&g.acts, GDML_MSG_MODEL, "r2") == 0) {
        gdml_region_on_dropped(g.r, g.now, &r1);
        drain(&g);
    }
    double *want = dup_init(&g);
    sgd1(want, g.n, g2, 16);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 1, 0);
    cr_assert_eq(stats(&g).steps, 1);
    free(h);
    free(g2);
    free(want);
    rig_fini(&g);
}

Test(region_workers, norm_refused_worker_is_excused_for_the_step)
{
    /* A worker whose gradient is refused still beats, so it never goes silent:
     * the step goes on at once without it, and the next step waits for it again. */
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    float *h = huge(g.n), *g2 = gradient(g.n, 2, 0);
    g.now = 100;
    push(&g, "w1", "r1", 0, 32, h);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0);
    push(&g, "w2", "r2", 0, 16, g2);
    double *want = dup_init(&g);
    sgd1(want, g.n, g2, 16);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 1, 0);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 1, 0);
    clear(&g);
    push(&g, "w2", "r2", 1, 16, g2);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0,
                 "step 1 did not wait for the excused worker of step 0");
    free(h);
    free(g2);
    free(want);
    rig_fini(&g);
}

Test(region_workers, a_step_whose_every_gradient_is_refused_is_not_taken)
{
    /* Nothing was learned: the step would only bring the sync closer. Each
     * refused worker is sent the same step's model again, and the step is
     * taken when a gradient gets through. */
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    float *h = huge(g.n), *g1 = gradient(g.n, 1, 0);
    push(&g, "w1", "r1", 0, 32, h);
    push(&g, "w2", "r2", 0, 16, h);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_NORM], 2);
    cr_assert_eq(stats(&g).steps, 0, "a step with no gradient in was taken");
    uint64_t tag;
    cr_assert(model_to(&g, "r1", &tag), "w1 was not sent the model again");
    cr_assert_eq(tag, 0);
    cr_assert(model_to(&g, "r2", &tag), "w2 was not sent the model again");
    cr_assert_eq(tag, 0);
    double *want = dup_init(&g);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 0, 0);
    clear(&g);
    /* Their next tries at step 0 are taken as new pushes. */
    push(&g, "w1", "r1", 0, 32, g1);
    push(&g, "w2", "r2", 0, 16, h);
    cr_assert_eq(stats(&g).steps, 1);
    sgd1(want, g.n, g1, 32);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 1, 0);
    free(h);
    free(g1);
    free(want);
    rig_fini(&g);
}

Test(region_workers, ssp_a_worker_whose_gradients_are_refused_does_not_hold_the_others)
{
    rig g;
    rig_config(&g);
    g.cfg.lan_staleness = 1;
    g.cfg.sync_every = 100;
    rig_train(&g, SMALL);
    float *h = huge(g.n);
    double *want = dup_init(&g);
    uint64_t tag;
    for (unsigned k = 0; k < 6; k++) {
        float *a = gradient(g.n, 1, k);
        push(&g, "w2", "r2", k, 16, h);
        cr_assert(model_to(&g, "r2", &tag), "w2 was not sent the model after a refusal at %u", k);
        cr_assert_eq(tag, k + 1, "a refused gradient still moves its worker's clock");
        push(&g, "w1", "r1", k, 32, a);
        apply(want, g.n, a);
        cr_assert(model_to(&g, "r1", &tag),
                  "w1 was held at %u by a worker whose gradients "
                  "are refused",
                  k);
        cr_assert_eq(tag, k + 1);
        free(a);
        clear(&g);
    }
    cr_assert_eq(stats(&g).steps, 6);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_NORM], 6);
    push(&g, "w1", "r1", 6, 32, h); /* w1's own refusal: nothing applied */
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 7, 0);
    free(h);
    free(want);
    rig_fini(&g);
}

/* ---- chunks ---- */

Test(region_workers, multichunk_gradient_out_of_order_with_duplicate)
{
    rig g;
    rig_config(&g);
    rig_train(&g, BIG);
    cr_assert_eq(gdml_chunk_count(g.n), 3);
    float *g1 = gradient(g.n, 1, 0), *g2 = gradient(g.n, 2, 0);
    size_t n1, n2;
    gdml_blob **f1 = push_frames(&g, "w1", 0, 30, g1, &n1);
    gdml_blob **f2 = push_frames(&g, "w2", 0, 10, g2, &n2);
    cr_assert_eq(n1, 3);
    cr_assert_eq(n2, 3);
    feed(&g, GDML_LINK_DOWN, f1[2], "w1", "r1");
    feed(&g, GDML_LINK_DOWN, f2[0], "w2", "r2");
    feed(&g, GDML_LINK_DOWN, f1[0], "w1", "r1");
    feed(&g, GDML_LINK_DOWN, f1[0], "w1", "r1"); /* duplicate */
    cr_assert_eq(stats(&g).rejected[GDML_REASON_DUPLICATE], 1);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_ERROR, NULL), 0,
                 "a duplicate chunk is dropped quietly");
    feed(&g, GDML_LINK_DOWN, f2[2], "w2", "r2");
    feed(&g, GDML_LINK_DOWN, f2[1], "w2", "r2");
    /* Chunks 0 and 2 were in from both, so they went out streamed; chunk 1 waits for w1. */
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, "r1"), 2,
                 "the chunks both workers had were stepped and sent before w1's last chunk");
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, "r2"), 2);
    cr_assert_eq(stats(&g).steps, 0, "the step is not over");
    feed(&g, GDML_LINK_DOWN, f1[1], "w1", "r1");
    double *want = dup_init(&g);
    sgd2(want, g.n, g1, 30, g2, 10);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 1, 0);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 1, 0);
    cr_assert_eq(stats(&g).pushes, 2);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, "r1"), 3);
    test_frames_free(f1, n1);
    test_frames_free(f2, n2);
    free(g1);
    free(g2);
    free(want);
    rig_fini(&g);
}

Test(region_workers, worker_dies_mid_push_per_chunk_weights)
{
    rig g;
    rig_config(&g);
    rig_train(&g, BIG);
    float *g1 = gradient(g.n, 1, 0), *g2 = gradient(g.n, 2, 0);
    size_t n1;
    gdml_blob **f1 = push_frames(&g, "w1", 0, 30, g1, &n1);
    cr_assert_eq(n1, 3);
    feed(&g, GDML_LINK_DOWN, f1[0], "w1", "r1");
    feed(&g, GDML_LINK_DOWN, f1[2], "w1", "r1");
    push(&g, "w2", "r2", 0, 10, g2);
    /* Chunks 0 and 2 are in from both: streamed to both; chunk 1 waits for w1. */
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, "r1"), 2);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, "r2"), 2);
    gdml_peer r1 = test_route("r1");
    gdml_region_on_dropped(g.r, g.now, &r1);
    drain(&g);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_SLOW], 1);
    /* Chunks 0 and 2: both workers; chunk 1: w2 alone. */
    double *want = dup_init(&g);
    const float *both[2] = {g1, g2};
    double bb[2] = {30, 10};
    const float *one[1] = {g2};
    double b1[1] = {10};
    size_t c = (size_t)GDML_CHUNK_ELEMS;
    sgd_range(want, 0, c, both, bb, 2);
    sgd_range(want, c, 2 * c, one, b1, 1);
    sgd_range(want, 2 * c, g.n, both, bb, 2);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 1, 0);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, "r1"), 2,
                 "the dropped w1 is sent nothing more");
    cr_assert_eq(stats(&g).steps, 1);
    test_frames_free(f1, n1);
    free(g1);
    free(g2);
    free(want);
    rig_fini(&g);
}

/* w1 pushes all of step `step`; w2 its chunk 0 alone: the chunk both have. */
static void push_all_and_chunk0(rig *g, unsigned step, float *g1, float *g2, gdml_blob ***f2,
                                size_t *n2)
{
    push(g, "w1", "r1", step, 30, g1);
    *f2 = push_frames(g, "w2", step, 10, g2, n2);
    feed(g, GDML_LINK_DOWN, (*f2)[0], "w2", "r2");
}

/* A region of BIG training its first step: chunk 0 is in from both and streamed. */
typedef struct streamed {
    rig g;
    float *g1, *g2;
    gdml_blob **f2;
    size_t n2;
} streamed;

static void stream_chunk0(streamed *s)
{
    rig_config(&s->g);
    rig_train(&s->g, BIG);
    s->g1 = gradient(s->g.n, 1, 0);
    s->g2 = gradient(s->g.n, 2, 0);
    push_all_and_chunk0(&s->g, 0, s->g1, s->g2, &s->f2, &s->n2);
    cr_assert_eq(test_count_sends(&s->g.acts, GDML_MSG_MODEL, "r1"), 1, "chunk 0 streamed");
    cr_assert_eq(test_count_sends(&s->g.acts, GDML_MSG_MODEL, "r2"), 1, "chunk 0 streamed");
}

static void streamed_fini(streamed *s)
{
    test_frames_free(s->f2, s->n2);
    free(s->g1);
    free(s->g2);
    rig_fini(&s->g);
}

Test(region_workers, a_step_that_ends_in_a_sync_is_not_streamed)
{
    rig g;
    rig_config(&g); /* a sync every 3 steps */
    rig_train(&g, BIG);
    double *want = dup_init(&g);
    step2(&g, want, 0);
    step2(&g, want, 1);
    clear(&g);
    float *g1 = gradient(g.n, 1, 2), *g2 = gradient(g.n, 2, 2);
    gdml_blob **f2;
    size_t n2;
    push_all_and_chunk0(&g, 2, g1, g2, &f2, &n2);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0,
                 "the sync may change the model before the workers get it");
    feed(&g, GDML_LINK_DOWN, f2[1], "w2", "r2");
    feed(&g, GDML_LINK_DOWN, f2[2], "w2", "r2");
    cr_assert_eq(stats(&g).syncs, 1);
    test_frames_free(f2, n2);
    free(g1);
    free(g2);
    free(want);
    rig_fini(&g);
}

Test(region_workers, a_coordinator_message_mid_step_sends_the_whole_model_anew)
{
    streamed s;
    stream_chunk0(&s);
    rig *g = &s.g;
    coord_control(g, GDML_MSG_ERROR, GDML_REASON_STALE, "a delta it had already");
    clear(g);
    feed(g, GDML_LINK_DOWN, s.f2[1], "w2", "r2");
    feed(g, GDML_LINK_DOWN, s.f2[2], "w2", "r2");
    double *want = dup_init(g);
    sgd2(want, g->n, s.g1, 30, s.g2, 10);
    /* One new transfer of all three chunks, not the rest of the abandoned one. */
    assert_model(g, GDML_MSG_MODEL, "r1", want, 1, 0);
    assert_model(g, GDML_MSG_MODEL, "r2", want, 1, 0);
    cr_assert_eq(test_count_sends(&g->acts, GDML_MSG_MODEL, "r1"), 3);
    free(want);
    streamed_fini(&s);
}

Test(region_workers, a_worker_that_rejoins_mid_stream_gets_a_whole_model)
{
    streamed s;
    stream_chunk0(&s);
    rig *g = &s.g;
    hello(g, "w2", "r3", 400); /* w2 restarted: a new route, the live model as WELCOME */
    cr_assert_eq(test_count_sends(&g->acts, GDML_MSG_WELCOME, "r3"), 3);
    clear(g);
    float *again = gradient(g->n, 2, 1);
    push(g, "w2", "r3", 0, 10, again);
    /* Chunk 0 was stepped already: w2's new chunk 0 is not added to it. Chunks 1
     * and 2 are w1's and w2's second push. */
    double *want = dup_init(g);
    size_t c = (size_t)GDML_CHUNK_ELEMS;
    const float *first[2] = {s.g1, s.g2}, *second[2] = {s.g1, again};
    double bb[2] = {30, 10};
    sgd_range(want, 0, c, first, bb, 2);
    sgd_range(want, c, g->n, second, bb, 2);
    assert_model(g, GDML_MSG_MODEL, "r3", want, 1, 0);
    cr_assert_eq(test_count_sends(&g->acts, GDML_MSG_MODEL, "r3"), 3,
                 "its model is whole, not the rest of a stream it did not get");
    /* w1 got chunk 0 streamed, and now the rest of that one transfer. */
    cr_assert_eq(test_count_sends(&g->acts, GDML_MSG_MODEL, "r1"), 2);
    free(again);
    free(want);
    streamed_fini(&s);
}

/* ---- silent, dropped and restarted workers ---- */

Test(region_workers, silent_worker_not_waited_for_then_joined_again)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL); /* all at t = 0 */
    float *g1 = gradient(g.n, 1, 0);
    g.now = 2000;
    push(&g, "w1", "r1", 0, 32, g1);
    tick(&g, 3000);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0, "w2 is not silent yet");
    clear(&g);
    tick(&g, 3001);
    double *want = dup_init(&g);
    sgd1(want, g.n, g1, 32);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 1, 0);
    cr_assert_eq(stats(&g).steps, 1);
    clear(&g);
    free(g1);

    /* w2 speaks again: it is awaited again. */
    g.now = 3100;
    feed_control(&g, GDML_LINK_DOWN, GDML_MSG_HEARTBEAT, "w2", "r2", 0, 0);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_NOT_MEMBER], 0);
    float *a = gradient(g.n, 1, 1), *b = gradient(g.n, 2, 1);
    push(&g, "w1", "r1", 1, 32, a);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0,
                 "w2 is heard from again, so the step waits for it");
    push(&g, "w2", "r2", 1, 16, b);
    sgd2(want, g.n, a, 32, b, 16);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 2, 0);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 2, 0);
    free(a);
    free(b);
    free(want);
    rig_fini(&g);
}

Test(region_workers, rejoin_mid_training_gets_welcome_with_live_model)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    float *g1 = gradient(g.n, 1, 0), *g2 = gradient(g.n, 2, 0);
    push(&g, "w1", "r1", 0, 32, g1);
    push(&g, "w2", "r2", 0, 16, g2);
    double *want = dup_init(&g);
    sgd2(want, g.n, g1, 32, g2, 16);
    clear(&g);
    /* w1 restarts: a new connection, and more samples than before. */
    hello(&g, "w1", "r1b", 900);
    assert_model(&g, GDML_MSG_WELCOME, "r1b", want, 1, 0);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_WELCOME, "r2"), 0);
    cr_assert_eq(stats(&g).worker_joins, 3);
    const test_action *up = test_find_send(&g.acts, GDML_MSG_HELLO, "");
    cr_assert_not_null(up, "more samples than the coordinator was told: HELLO again");
    cr_assert_eq(up->h.count, 1300);
    clear(&g);
    /* Its old connection is no longer believed. */
    float *a = gradient(g.n, 1, 1), *b = gradient(g.n, 2, 1);
    push(&g, "w1", "r1", 1, 32, b);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_NOT_MEMBER], 1);
    cr_assert_not_null(test_find_send(&g.acts, GDML_MSG_ERROR, "r1"));
    push(&g, "w1", "r1b", 1, 32, a);
    push(&g, "w2", "r2", 1, 16, b);
    sgd2(want, g.n, a, 32, b, 16);
    assert_model(&g, GDML_MSG_MODEL, "r1b", want, 2, 0);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 2, 0);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, "r1"), 0);
    free(g1);
    free(g2);
    free(a);
    free(b);
    free(want);
    rig_fini(&g);
}

Test(region_workers, rejoin_after_push_counts_worker_once)
{
    /* w1 pushes, restarts before the step is done, gets its WELCOME (the same
     * model) and pushes the same gradient again: the step uses w1 once. */
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    float *g1 = gradient(g.n, 1, 0), *g2 = gradient(g.n, 2, 0);
    push(&g, "w1", "r1", 0, 32, g1);
    hello(&g, "w1", "r1b", 600);
    double *want = dup_init(&g);
    assert_model(&g, GDML_MSG_WELCOME, "r1b", want, 0, 0);
    push(&g, "w1", "r1b", 0, 32, g1);
    push(&g, "w2", "r2", 0, 16, g2);
    sgd2(want, g.n, g1, 32, g2, 16);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 1, 0);
    free(g1);
    free(g2);
    free(want);
    rig_fini(&g);
}
