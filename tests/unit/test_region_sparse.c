/*
 * test_region_sparse.c - table tests of the regional parameter server's state
 * machine (server/region_sm.h): sparse models pulled and pushed by key, held-out scores, and
 * differential privacy. Frames from workers (GDML_LINK_DOWN) and the coordinator (GDML_LINK_UP),
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

TestSuite(region_sparse, .init = rig_quiet, .timeout = 120);

/* ---- sparse models: pull and push by key ---- */

#define SPARSE "sparselr 600000 2" /* 600001 parameters: three chunks, the bias in the last */

/* A PULL from name naming keys; returns its seq. */
static uint64_t pull(rig *g, const char *name, const char *route, const uint32_t *keys, size_t nk)
{
    gdml_codec *c = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_codec_new("keys+none", g->n, 0, &c, &e), GDML_OK, "%s", e.text);
    float *zero = calloc(g->n, sizeof(float));
    cr_assert_not_null(zero);
    gdml_codec_params p = {.keys = keys, .n_keys = nk};
    size_t k;
    cr_assert_eq(gdml_codec_select(c, zero, &p, &k), GDML_OK);
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_PULL, name);
    h.seq = g->seq++;
    gdml_wan_update u;
    cr_assert_eq(gdml_codec_frames(c, &h, zero, NULL, false, &u, &e), GDML_OK, "%s", e.text);
    for (size_t i = 0; i < u.n_frames; i++)
        feed(g, GDML_LINK_DOWN, u.frames[i], name, route);
    gdml_wan_update_fini(&u);
    gdml_codec_destroy(&c);
    free(zero);
    return h.seq;
}

/* The MODEL sent to route: exactly the entries keys[0..nk) with values want, answering pull seq. */
static void assert_pulled(const rig *g, const char *route, uint64_t seq, const uint32_t *keys,
                          const double *want, size_t nk)
{
    float *got = calloc(g->n, sizeof(float));
    cr_assert_not_null(got);
    size_t frames = 0, entries = 0;
    for (size_t i = 0; i < g->acts.n; i++) {
        const test_action *a = &g->acts.a[i];
        if (a->act.kind != GDML_ACT_SEND || a->h.type != GDML_MSG_MODEL || !sent_to(a, route))
            continue;
        cr_assert_eq(a->h.acked, seq, "MODEL answers pull %llu, not %llu",
                     (unsigned long long)a->h.acked, (unsigned long long)seq);
        gdml_errmsg e = {{0}};
        cr_assert_eq(gdml_wan_decode_chunk(&a->h, a->payload, got, "the region", &e), GDML_OK, "%s",
                     e.text);
        entries += gdml_codec_payload_k(a->payload, (size_t)a->h.plen);
        frames++;
    }
    cr_assert_gt(frames, 0, "no MODEL to '%s'", route);
    cr_assert_eq(entries, nk, "the MODEL holds %zu entries, the pull named %zu", entries, nk);
    for (size_t j = 0; j < nk; j++)
        cr_assert_float_eq(got[keys[j]], want[j], 1e-6, "key %u: %g, expected %g", keys[j],
                           (double)got[keys[j]], want[j]);
    free(got);
}

Test(region_sparse, a_sparse_model_is_pulled_by_key_and_stepped_over_every_sample)
{
    rig g;
    rig_config(&g);
    rig_open(&g);
    hello(&g, "w1", "r1", 600);
    hello(&g, "w2", "r2", 400);
    welcome(&g, SPARSE);
    const test_action *w = test_find_send(&g.acts, GDML_MSG_WELCOME, "r1");
    cr_assert_not_null(w);
    cr_assert_eq(w->h.encoding, GDML_ENC_NONE, "a sparse model's WELCOME carries no tensor");
    cr_assert_str_eq(w->h.text, SPARSE);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, "r1"), 0);
    clear(&g);

    /* Each pulls its first batch's keys and gets the (zero) model at them alone. */
    const uint32_t k1[] = {5, 300000, 600000}, k2[] = {5, 7, 600000};
    const double zeros[] = {0, 0, 0};
    uint64_t s1 = pull(&g, "w1", "r1", k1, 3);
    assert_pulled(&g, "r1", s1, k1, zeros, 3);
    uint64_t s2 = pull(&g, "w2", "r2", k2, 3);
    assert_pulled(&g, "r2", s2, k2, zeros, 3);
    clear(&g);

    /* Gradients at their keys; chunk 1 is touched by w1 alone. */
    float *g1 = calloc(g.n, sizeof(float)), *g2 = calloc(g.n, sizeof(float));
    cr_assert(g1 && g2);
    g1[5] = 1, g1[300000] = 2, g1[600000] = 0.5f;
    g2[5] = -1, g2[7] = 3, g2[600000] = 0.5f;
    push(&g, "w1", "r1", 0, 60, g1);
    push(&g, "w2", "r2", 0, 40, g2);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, "r1"), 0,
                 "no model before the next pull");

    /* The step's mean is over all 100 samples, in every chunk: key 300000
     * moves by 0.5 x 60 x 2 / 100, not by 0.5 x 2 as a mean over chunk 1's
     * samples alone would have it. */
    const uint32_t next[] = {5, 7, 300000, 600000};
    const double want[] = {-LR * (60 - 40) / 100.0, -LR * 120 / 100.0, -LR * 120 / 100.0,
                           -LR * 50 / 100.0};
    uint64_t s3 = pull(&g, "w1", "r1", next, 4);
    assert_pulled(&g, "r1", s3, next, want, 4);
    const test_action *m = test_find_send(&g.acts, GDML_MSG_MODEL, "r1");
    cr_assert_eq(m->h.step, 1);
    clear(&g);
    free(g1);
    free(g2);
    rig_fini(&g);
}

/* ---- held-out scores: metrics only ---- */

/* A push of step from name whose header carries a held-out score of version. */
static void push_scored(rig *g, const char *name, const char *route, uint64_t step,
                        uint64_t version, gdml_score val, const float *grad)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_PUSH, name);
    h.seq = g->seq++;
    h.step = step;
    h.count = 32;
    h.version = version;
    h.val = val;
    h.val_version = val.rows ? version : 0;
    size_t nf;
    gdml_blob **f = test_tensor_frames(&h, grad, g->n, NULL, &nf);
    for (size_t i = 0; i < nf; i++)
        feed(g, GDML_LINK_DOWN, f[i], name, route);
    test_frames_free(f, nf);
}

/* Three steps of both workers; w1 and w2 send the scores given (of version). */
static void scored_round(rig *g, unsigned round, uint64_t version, const gdml_score *s1,
                         const gdml_score *s2)
{
    for (unsigned k = 0; k < 3; k++) {
        unsigned step = round * 3 + k;
        float *g1 = gradient(g->n, 1, step), *g2 = gradient(g->n, 2, step);
        g->now += 10;
        push_scored(g, "w1", "r1", step, version, s1[k], g1);
        push_scored(g, "w2", "r2", step, version, s2[k], g2);
        free(g1);
        free(g2);
    }
}

Test(region_sparse, the_delta_carries_the_sum_of_its_workers_newest_scores)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL); /* w1 declared 600 samples, w2 400 */
    const gdml_score a = {100, 80, 0.5}, b = {50, 20, 2.0}, too_many = {401, 10, 1.0};
    /* w2's second score claims more rows than its HELLO's samples: ignored, its gradient used. */
    scored_round(&g, 0, 0, (gdml_score[]){a, a, a}, (gdml_score[]){b, too_many, b});
    gdml_region_stats s = stats(&g);
    cr_assert_eq(s.rejected[GDML_REASON_BOUNDS], 1);
    cr_assert_eq(s.pushes, 6, "a push with a bad score was not used");
    cr_assert_eq(s.steps, 3);
    cr_assert_null(test_find_send(&g.acts, GDML_MSG_ERROR, "r2"), "a bad metric is not argued");
    float *delta = calloc(g.n, sizeof(float));
    gdml_msg_header dh;
    cr_assert_eq(sent_tensor(&g, GDML_MSG_DELTA, "", delta, &dh), 1);
    cr_assert_eq(dh.val.rows, 150);
    cr_assert_eq(dh.val.correct, 100);
    cr_assert_float_eq(dh.val.loss, (0.5 * 100 + 2.0 * 50) / 150, 1e-12);
    cr_assert_eq(dh.val_version, 0);
    clear(&g);

    /* Version 1: only w1 scores it; w2's score of version 0 is older and not summed. */
    float *change = gradient(g.n, 9, 0);
    coord_tensor(&g, GDML_MSG_GLOBAL, NULL, 0, 1, change);
    clear(&g);
    const gdml_score c = {100, 90, 0.25}, none = {0};
    scored_round(&g, 1, 1, (gdml_score[]){c, c, c}, (gdml_score[]){none, none, none});
    cr_assert_eq(sent_tensor(&g, GDML_MSG_DELTA, "", delta, &dh), 1);
    cr_assert_eq(dh.version, 1);
    cr_assert_eq(dh.val.rows, 100);
    cr_assert_eq(dh.val.correct, 90);
    cr_assert_float_eq(dh.val.loss, 0.25, 1e-12);
    cr_assert_eq(dh.val_version, 1);
    clear(&g);

    /* Version 2: nobody scored it yet (a delta that goes the moment its version
     * comes): the DELTA carries the newest scores there are, of version 1.
     * w2 claims a score of version 5, which it was never sent: ignored. */
    coord_tensor(&g, GDML_MSG_GLOBAL, NULL, 0, 2, change);
    clear(&g);
    float *g2 = gradient(g.n, 2, 6);
    push_scored(&g, "w2", "r2", 6, 5, b, g2);
    free(g2);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_BOUNDS], 2);
    cr_assert_eq(stats(&g).pushes, 13, "a push with a score of a future version was not used");
    float *g1 = gradient(g.n, 1, 6);
    push_scored(&g, "w1", "r1", 6, 2, none, g1);
    free(g1);
    for (unsigned k = 1; k < 3; k++) {
        float *a1 = gradient(g.n, 1, 6 + k), *a2 = gradient(g.n, 2, 6 + k);
        push_scored(&g, "w1", "r1", 6 + k, 2, none, a1);
        push_scored(&g, "w2", "r2", 6 + k, 2, none, a2);
        free(a1);
        free(a2);
    }
    cr_assert_eq(sent_tensor(&g, GDML_MSG_DELTA, "", delta, &dh), 1);
    cr_assert_eq(dh.version, 2);
    cr_assert_eq(dh.val.rows, 100);
    cr_assert_eq(dh.val_version, 1);
    free(change);
    free(delta);
    rig_fini(&g);
}

/* ---- differential privacy (region_dp.c) ---- */

Test(region_sparse, dp_clips_and_noises_each_delta_and_sends_none_past_the_limit)
{
    rig g;
    rig_config(&g);
    /* A clip far below the raw delta's norm, noise small against it, and a
     * limit that allows exactly two deltas. */
    gdml_dp_config dc = {.clip = 0.002, .noise_multiplier = 1e-3, .delta = 1e-5, .seed = 9};
    dc.epsilon_limit = gdml_dp_epsilon(&dc, 2);
    gdml_dp *dp = NULL;
    cr_assert_eq(gdml_dp_new(&dc, "us-east", &dp, NULL), GDML_OK);
    g.cfg.dp = dp;
    rig_train(&g, SMALL);
    double *want = dup_init(&g);
    for (unsigned round = 0; round < 3; round++) {
        for (unsigned k = 0; k < 3; k++)
            step2(&g, want, round * 3 + k);
        if (round == 2) {
            cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 0,
                         "a third delta would pass the limit, and went out");
            const test_action *x = exit_action(&g);
            cr_assert_not_null(x, "the region does not leave at its privacy limit");
            cr_assert_eq(x->act.status, 0);
            cr_assert(strstr(x->act.text, "privacy budget spent"), "%s", x->act.text);
            break;
        }
        float *delta = calloc(g.n, sizeof(float));
        gdml_msg_header dh;
        cr_assert_eq(sent_tensor(&g, GDML_MSG_DELTA, "", delta, &dh), 1, "round %u: no DELTA",
                     round);
        double sq = 0, raw = 0;
        for (size_t i = 0; i < g.n; i++)
            sq += (double)delta[i] * delta[i];
        for (size_t i = 0; i < g.n; i++) {
            double d = want[i] - g.init[i];
            raw += d * d;
        }
        /* norm^2 = clip^2 + the noise's n (z clip)^2, give or take */
        double expect = sqrt(dc.clip * dc.clip + g.n * pow(dc.noise_multiplier * dc.clip, 2));
        cr_assert(round > 0 || sqrt(raw) > 10 * dc.clip,
                  "the raw delta (norm %g) is not above the clip", sqrt(raw));
        cr_assert(fabs(sqrt(sq) - expect) < 0.1 * expect, "round %u: DELTA norm %g, want ~%g",
                  round, sqrt(sq), expect);
        cr_assert(isnan(dh.metric), "the training loss went out under DP: %g", dh.metric);
        cr_assert_eq(dh.val.rows, 0);
        free(delta);
        clear(&g);
        /* GLOBAL of nothing: the model goes back to the anchor. */
        float *zero = calloc(g.n, sizeof(float));
        g.now += 10;
        coord_tensor(&g, GDML_MSG_GLOBAL, NULL, 0, round + 1, zero);
        for (size_t i = 0; i < g.n; i++)
            want[i] = g.init[i];
        free(zero);
        clear(&g);
    }
    free(want);
    rig_fini(&g);
    gdml_dp_destroy(&dp);
}
