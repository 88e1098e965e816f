/*
 * test_region_coord.c - table tests of the regional parameter server's state
 * machine (server/region_sm.h): the coordinator's side, the uplink budget, and time.
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

TestSuite(region_coord, .init = rig_quiet, .timeout = 120);

/* ---- the coordinator's side ---- */

Test(region_coord, coordinator_error_is_advisory_not_member_rejoins)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL); /* HELLO upstream at t = 0 */
    g.now = 100;
    coord_control(&g, GDML_MSG_ERROR, GDML_REASON_STALE, "delta 3 is stale");
    cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_EXIT), 0, "ERROR is advisory");
    cr_assert_eq(g.acts.n, 0);
    g.now = 1500;
    coord_control(&g, GDML_MSG_ERROR, GDML_REASON_NOT_MEMBER, "send HELLO first");
    cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_EXIT), 0);
    const test_action *up = test_find_send(&g.acts, GDML_MSG_HELLO, "");
    cr_assert_not_null(up, "NOT_MEMBER from the coordinator: join again");
    cr_assert_eq(up->h.count, 1000);
    cr_assert_eq(up->h.code, GDML_REASON_NONE);
    cr_assert_str_eq(up->h.text, SMALL, "a HELLO after WELCOME names the layout it holds");
    clear(&g);
    /* Training goes on. */
    float *g1 = gradient(g.n, 1, 0), *g2 = gradient(g.n, 2, 0);
    push(&g, "w1", "r1", 0, 32, g1);
    push(&g, "w2", "r2", 0, 16, g2);
    double *want = dup_init(&g);
    sgd2(want, g.n, g1, 32, g2, 16);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 1, 0);
    free(g1);
    free(g2);
    free(want);
    rig_fini(&g);
}

Test(region_coord, global_before_welcome_is_unexpected)
{
    rig g;
    rig_config(&g);
    rig_open(&g);
    hello(&g, "w1", "r1", 600);
    hello(&g, "w2", "r2", 400);
    clear(&g);
    set_layout(&g, SMALL);
    float *change = gradient(g.n, 9, 0);
    coord_tensor(&g, GDML_MSG_GLOBAL, NULL, 0, 1, change);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_UNEXPECTED], 1);
    cr_assert_eq(g.acts.n, 0, "no reply to the coordinator, no model to the workers");
    cr_assert_eq(stats(&g).version, 0);
    /* The WELCOME that follows still starts the run from the initial model. */
    welcome(&g, SMALL);
    double *want = dup_init(&g);
    assert_model(&g, GDML_MSG_WELCOME, "r1", want, 0, 0);
    free(change);
    free(want);
    rig_fini(&g);
}

Test(region_coord, unexpected_types_from_either_side_counted)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    const gdml_msg_type from_worker[] = {GDML_MSG_WELCOME, GDML_MSG_MODEL, GDML_MSG_DELTA,
                                         GDML_MSG_GLOBAL, GDML_MSG_STOP};
    const gdml_msg_type from_coord[] = {GDML_MSG_HELLO, GDML_MSG_PUSH, GDML_MSG_MODEL,
                                        GDML_MSG_DELTA, GDML_MSG_PULL, GDML_MSG_LEAVE};
    size_t nw = sizeof from_worker / sizeof from_worker[0];
    size_t nc = sizeof from_coord / sizeof from_coord[0];
    for (size_t i = 0; i < nw; i++)
        feed_control(&g, GDML_LINK_DOWN, from_worker[i], "w1", "r1", 0, 1);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_UNEXPECTED], nw);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_ERROR, "r1"), nw);
    for (size_t i = 0; i < g.acts.n; i++)
        cr_assert_eq(g.acts.a[i].h.code, GDML_REASON_UNEXPECTED);
    clear(&g);
    for (size_t i = 0; i < nc; i++)
        feed_control(&g, GDML_LINK_UP, from_coord[i], "coordinator", "", 0, 1);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_UNEXPECTED], nw + nc);
    cr_assert_eq(g.acts.n, 0, "the coordinator is not argued with");
    /* Nothing else changed: the step goes on. */
    float *g1 = gradient(g.n, 1, 0), *g2 = gradient(g.n, 2, 0);
    push(&g, "w1", "r1", 0, 32, g1);
    push(&g, "w2", "r2", 0, 16, g2);
    double *want = dup_init(&g);
    sgd2(want, g.n, g1, 32, g2, 16);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 1, 0);
    free(g1);
    free(g2);
    free(want);
    rig_fini(&g);
}

/* ---- the uplink budget ---- */

/* The wire bytes of the first DELTA with no budget. */
static uint64_t probe_delta_wire(void)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    for (unsigned k = 0; k < 3; k++) {
        float *g1 = gradient(g.n, 1, k), *g2 = gradient(g.n, 2, k);
        g.now += 10;
        push(&g, "w1", "r1", k, 32, g1);
        push(&g, "w2", "r2", k, 16, g2);
        free(g1);
        free(g2);
    }
    uint64_t wire = 0;
    for (size_t i = 0; i < g.n_up; i++)
        if (g.up[i].type == GDML_MSG_DELTA)
            wire += g.up[i].wire;
    cr_assert_gt(wire, 0);
    rig_fini(&g);
    return wire;
}

/* Three steps from step `from`, 10 ms apart; the expected model follows. */
static void three_steps(rig *g, unsigned from, double *want)
{
    for (unsigned k = from; k < from + 3; k++)
        step2(g, want, k);
}

/* The holding test's loop: workers push whenever a model comes. */
typedef struct hold_run {
    uint64_t step, deltas, globals, model_after_global;
    int64_t delta_at;
    bool pending_global;
    float *change;
} hold_run;

/* Takes what the region queued: checks it, and answers as the workers would. */
static void hold_handle(hold_run *h, rig *g)
{
    for (;;) {
        const test_action *x = exit_action(g);
        cr_assert_null(x, "the run ended at %lld ms: %s", (long long)g->now, x ? x->act.text : "");
        if (test_count_sends(&g->acts, GDML_MSG_DELTA, "")) {
            cr_assert_eq(h->step % 3, 0, "a DELTA after step %llu", (unsigned long long)h->step);
            cr_assert_eq(h->deltas, h->step / 3 - 1, "DELTA %llu after step %llu",
                         (unsigned long long)h->deltas + 1, (unsigned long long)h->step);
            h->deltas++;
            h->delta_at = g->now;
            h->pending_global = true;
        }
        const test_action *m = test_find_send(&g->acts, GDML_MSG_MODEL, "r1");
        if (!m) {
            clear(g);
            return;
        }
        cr_assert_eq(m->h.step, h->step, "MODEL of step %llu, expected %llu",
                     (unsigned long long)m->h.step, (unsigned long long)h->step);
        if (h->step % 3 == 0) {
            cr_assert_eq(h->globals, h->step / 3, "MODEL of step %llu before GLOBAL %llu",
                         (unsigned long long)h->step, (unsigned long long)h->step / 3);
            h->model_after_global++;
        }
        clear(g);
        float *g1 = gradient(g->n, 1, (unsigned)h->step),
              *g2 = gradient(g->n, 2, (unsigned)h->step);
        push(g, "w1", "r1", h->step, 32, g1);
        push(g, "w2", "r2", h->step, 16, g2);
        free(g1);
        free(g2);
        h->step++;
    }
}

Test(region_coord, holding_until_budget_allows_delta_never_above_rate)
{
    uint64_t dw = probe_delta_wire();
    /* One delta (and a HELLO) fit a window, two deltas do not. */
    double rate = (double)(2 * dw - 1);
    rig g;
    rig_config(&g);
    g.cfg.up_budget.rate = rate;
    rig_train(&g, SMALL);
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_region_set_budget(g.r, &g.cfg.up_budget, 0, 0, 0, &e), GDML_OK,
                 "a rate of %.0f B/s carries a %llu-byte delta: %s", rate, (unsigned long long)dw,
                 e.text);
    double *want = dup_init(&g), *anchor = dup_init(&g);
    three_steps(&g, 0, want); /* t = 10..30 */
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 1, "the first delta fits at once");
    clear(&g);
    float *change = gradient(g.n, 9, 0);
    g.now += 10;
    coord_tensor(&g, GDML_MSG_GLOBAL, NULL, 0, 1, change);
    for (size_t i = 0; i < g.n; i++)
        want[i] = anchor[i] = anchor[i] + change[i];
    free(change);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 3, 1);
    clear(&g);
    three_steps(&g, 3, want); /* t = 50..70: the first delta is still in the window */
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 0,
                 "a second delta within the second of the first: over the budget");
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 4,
                 "only steps 4 and 5: the workers hold at 6");
    cr_assert_eq(g.r->state, REGION_HOLDING);
    clear(&g);
    int64_t due = g.r->hold_until_ms;
    cr_assert_gt(due, g.now);
    cr_assert_leq(due, 30 + 1000, "the first delta leaves the window at 1030, due %lld",
                  (long long)due);
    int64_t wait = gdml_region_next_timer(g.r, g.now);
    cr_assert(wait > 0 && wait <= due - g.now, "next timer in %lld ms, the hold ends in %lld",
              (long long)wait, (long long)(due - g.now));
    for (int64_t t = g.now + 10; t < due; t += 10)
        tick(&g, t);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 0);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0, "the workers wait");
    cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_EXIT), 0, "waiting for the budget is progress");
    tick(&g, due);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 1, "the budget allows it now");
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0, "the workers wait for GLOBAL");
    float *delta = calloc(g.n, sizeof(float));
    gdml_msg_header dh;
    cr_assert_eq(sent_tensor(&g, GDML_MSG_DELTA, "", delta, &dh), 1);
    cr_assert_eq(dh.version, 1);
    cr_assert_float_eq(dh.lr_steps, LR * 3, 1e-9);
    double *wd = malloc(g.n * sizeof(double));
    for (size_t i = 0; i < g.n; i++)
        wd[i] = want[i] - anchor[i];
    assert_close(delta, wd, g.n, "DELTA");
    free(delta);
    free(wd);
    free(anchor);
    clear(&g);

    /* Rounds go on: workers push when a model comes, the coordinator answers
     * every delta; nothing upstream may exceed the rate in any 1 s window. */
    hold_run h = {.step = 6, .deltas = 2, .globals = 1, .delta_at = g.now, .pending_global = true};
    h.change = calloc(g.n, sizeof(float));
    for (int64_t t = g.now + 10; t <= 8000; t += 10) {
        g.now = t;
        if (h.pending_global && t >= h.delta_at + 20) {
            coord_tensor(&g, GDML_MSG_GLOBAL, NULL, 0, ++h.globals, h.change);
            h.pending_global = false;
            hold_handle(&h, &g);
        }
        tick(&g, t);
        hold_handle(&h, &g);
    }
    uint64_t deltas = h.deltas, model_after_global = h.model_after_global;
    free(h.change);
    cr_assert_geq(deltas, 4, "only %llu deltas in 8 s", (unsigned long long)deltas);
    cr_assert_geq(model_after_global, 3);
    /* Every trailing 1 s window, over everything sent upstream. */
    uint64_t limit = (uint64_t)rate;
    for (size_t i = 0; i < g.n_up; i++) {
        uint64_t sum = 0;
        for (size_t j = 0; j <= i; j++)
            if (g.up[j].t > g.up[i].t - 1000)
                sum += g.up[j].wire;
        cr_assert_leq(sum, limit,
                      "%llu bytes upstream in the second up to %lld ms; the rate is %llu",
                      (unsigned long long)sum, (long long)g.up[i].t, (unsigned long long)limit);
    }
    free(want);
    rig_fini(&g);
}

Test(region_coord, set_budget_refuses_budget_no_delta_fits)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    gdml_budget_config tiny = {.rate = 10};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_region_set_budget(g.r, &tiny, 777, 888, g.now, &e), GDML_ERR_INVALID);
    cr_assert_neq(e.text[0], '\0', "the refusal says why");
    cr_assert(strstr(e.text, "bytes_per_s") != NULL, "'%s' names the key to change", e.text);
    cr_assert_float_eq(gdml_wan_budget(g.r->up).rate, 0.0, 1e-12, "the old budget stays");
    cr_assert_eq(g.cfg.down_rate, 0, "the asked-for downlink stays too");
    cr_assert_eq(g.cfg.down_cap, 0);
    /* And it works as before: the delta goes at once. */
    for (unsigned k = 0; k < 3; k++) {
        float *g1 = gradient(g.n, 1, k), *g2 = gradient(g.n, 2, k);
        g.now += 10;
        push(&g, "w1", "r1", k, 32, g1);
        push(&g, "w2", "r2", k, 16, g2);
        free(g1);
        free(g2);
    }
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 1);
    /* A usable one is taken. */
    gdml_budget_config ok = {.rate = 100000};
    cr_assert_eq(gdml_region_set_budget(g.r, &ok, 777, 888, g.now, &e), GDML_OK, "%s", e.text);
    cr_assert_float_eq(gdml_wan_budget(g.r->up).rate, 100000.0, 1e-9);
    cr_assert_eq(g.cfg.down_rate, 777);
    rig_fini(&g);
}

/* ---- time ---- */

Test(region_coord, timeout_names_the_worker_it_waits_for)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    float *g1 = gradient(g.n, 1, 0);
    g.now = 10;
    push(&g, "w1", "r1", 0, 32, g1);
    for (int64_t t = 500; t <= 10000; t += 500) {
        g.now = t;
        feed_control(&g, GDML_LINK_DOWN, GDML_MSG_HEARTBEAT, "w2", "r2", 0, 0);
        tick(&g, t);
        cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_EXIT), 0, "exit at %lld ms: %s",
                     (long long)t, exit_action(&g) ? exit_action(&g)->act.text : "");
        clear(&g);
    }
    tick(&g, 10001);
    const test_action *x = exit_action(&g);
    cr_assert_not_null(x, "no progress for timeout_ms: the run ends");
    cr_assert_eq(x->act.status, 3);
    cr_assert_eq(x->act.err, GDML_ERR_TIMEOUT);
    cr_assert(strstr(x->act.text, "'w2'") != NULL, "'%s' names w2", x->act.text);
    cr_assert(strstr(x->act.text, "'w1'") == NULL, "'%s' names w1, which pushed", x->act.text);
    cr_assert(strstr(x->act.text, "step 0") != NULL, "'%s' names the step", x->act.text);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_STOP, "r2"), 1);
    free(g1);
    rig_fini(&g);
}

Test(region_coord, timeout_while_joining_says_what_is_missing)
{
    rig g;
    rig_config(&g);
    rig_open(&g);
    hello(&g, "w1", "r1", 600);
    for (int64_t t = 1000; t <= 10000; t += 1000) {
        g.now = t;
        feed_control(&g, GDML_LINK_DOWN, GDML_MSG_HEARTBEAT, "w1", "r1", 0, 0);
        tick(&g, t);
    }
    cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_EXIT), 0);
    tick(&g, 10001);
    const test_action *x = exit_action(&g);
    cr_assert_not_null(x);
    cr_assert_eq(x->act.status, 3);
    cr_assert(strstr(x->act.text, "1 of 2 workers") != NULL, "'%s'", x->act.text);
    cr_assert(strstr(x->act.text, "no model from the coordinator") != NULL, "'%s'", x->act.text);
    rig_fini(&g);
}

Test(region_coord, timeout_names_workers_gone_silent)
{
    /* Nobody pushes and both workers fall silent: the region waits for them,
     * and its last word should say so. */
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    for (int64_t t = 500; t <= 10000; t += 500)
        tick(&g, t);
    clear(&g);
    tick(&g, 10001);
    const test_action *x = exit_action(&g);
    cr_assert_not_null(x);
    cr_assert_eq(x->act.status, 3);
    cr_assert(strstr(x->act.text, "w1") != NULL && strstr(x->act.text, "w2") != NULL,
              "'%s' does not name the workers it waits for", x->act.text);
    rig_fini(&g);
}

Test(region_coord, stop_by_signal_leaves_and_stops_workers)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    g.now = 50;
    gdml_region_on_stop(g.r, g.now, "stopped by a signal");
    drain(&g);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_LEAVE, ""), 1);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_STOP, "r1"), 1);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_STOP, "r2"), 1);
    const test_action *x = exit_action(&g);
    cr_assert_not_null(x);
    cr_assert_eq(x->act.status, 130);
    cr_assert_eq(x->act.err, GDML_ERR_INTERRUPTED);
    cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_EXIT), 1);
    clear(&g);
    gdml_region_on_stop(g.r, g.now, "again");
    drain(&g);
    cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_EXIT), 0, "the run ends once");
    rig_fini(&g);
}

Test(region_coord, heartbeats_on_idle_links)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL); /* everything sent at t = 0 */
    tick(&g, 999);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, NULL), 0);
    tick(&g, 1000);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, "r1"), 1);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, "r2"), 1);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, ""), 1);
    const test_action *hb = test_find_send(&g.acts, GDML_MSG_HEARTBEAT, "r1");
    cr_assert_str_eq(hb->h.sender, "us-east");
    cr_assert_eq(hb->h.step, 0);
    clear(&g);
    g.now = 1500;
    feed_control(&g, GDML_LINK_DOWN, GDML_MSG_HEARTBEAT, "w1", "r1", 0, 0);
    feed_control(&g, GDML_LINK_DOWN, GDML_MSG_HEARTBEAT, "w2", "r2", 0, 0);
    tick(&g, 1500);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, NULL), 0, "not before 1 s");
    tick(&g, 2000);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, "r1"), 1);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, "r2"), 1);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, ""), 1);
    clear(&g);
    /* A model sent is as good as a heartbeat on the LAN. */
    float *g1 = gradient(g.n, 1, 0), *g2 = gradient(g.n, 2, 0);
    g.now = 2500;
    push(&g, "w1", "r1", 0, 32, g1);
    push(&g, "w2", "r2", 0, 16, g2);
    clear(&g);
    tick(&g, 3000);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, "r1"), 0);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, "r2"), 0);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, ""), 1);
    tick(&g, 3500);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, "r1"), 1);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, "r2"), 1);
    cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_EXIT), 0);
    free(g1);
    free(g2);
    rig_fini(&g);
}
