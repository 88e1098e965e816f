/*
 * test_controller.c - the WAN policy controller's choices, from simulated
 * measurements: dense under a loose budget, sparser, lower-bit or longer H
 * under a tight one, denser when the residual grows, sparser when loss per
 * byte stalls, and never a message larger than the budget; with drift
 * correction, dense rows at a fixed H, denser only when the residual grows.
 */
#include "controller.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#define N 7850 /* softmax regression on Fashion-MNIST */

static gdml_ctl *make_as(double rate, double ratio, bool drift_corrected)
{
    gdml_ctl_config cfg = {.n = N,
                           .h_base = 100,
                           .up_rate = rate,
                           .down_rate = rate,
                           .target_ratio = ratio,
                           .overhead = 100,
                           .drift_corrected = drift_corrected};
    gdml_ctl *c = NULL;
    gdml_errmsg e;
    cr_assert_eq(gdml_ctl_new(&cfg, &c, &e), GDML_OK, "%s", e.text);
    return c;
}

static gdml_ctl *make(double rate, double ratio)
{
    return make_as(rate, ratio, false);
}

static gdml_ctl_measure round_of(double loss, double residual, double step_ms)
{
    return (gdml_ctl_measure){
        .loss = loss, .bytes = 10000, .residual_ratio = residual, .step_ms = step_ms};
}

Test(controller, a_loose_budget_sends_dense_at_the_configured_h)
{
    gdml_ctl *c = make(0, 0);
    gdml_ctl_choice ch = gdml_ctl_current(c);
    cr_assert_str_eq(ch.spec, "dense");
    cr_assert_eq(ch.h, 100);
    /* Falling loss and an empty residual: nothing to change, no budget to save. */
    for (int i = 0; i < 20; i++) {
        gdml_ctl_measure m = round_of(1.0 / (1 + i), 0, 1);
        cr_assert_not(gdml_ctl_decide(c, &m, &ch, NULL, 0));
    }
    cr_assert_str_eq(ch.spec, "dense");
    gdml_ctl_destroy(&c);
    cr_assert_null(c);
}

Test(controller, a_tight_budget_picks_sparser_lower_bit_or_longer_h)
{
    gdml_ctl *loose = make(1e9, 0), *mid = make(20000, 0), *tight = make(1500, 0);
    gdml_ctl_measure m = round_of(1.0, 0, 1.0);
    gdml_ctl_choice a, b, t;
    gdml_ctl_decide(loose, &m, &a, NULL, 0);
    gdml_ctl_decide(mid, &m, &b, NULL, 0);
    gdml_ctl_decide(tight, &m, &t, NULL, 0);
    cr_assert_str_eq(a.spec, "dense");
    cr_assert_gt(b.level, a.level, "20 kB/s: %s", b.spec);
    cr_assert_gt(t.level, b.level, "1.5 kB/s: %s", t.spec);
    cr_assert(strstr(t.spec, "topk") != NULL, "1.5 kB/s sends a subset, not %s", t.spec);
    cr_assert_leq(gdml_ctl_bytes(tight, t.level), 1500);
    /* So tight that nothing fits without waiting at H: a longer H. */
    gdml_ctl *tiny = make(300, 0);
    m.step_ms = 0.02;
    gdml_ctl_decide(tiny, &m, &t, NULL, 0);
    cr_assert_gt(t.h, 100, "H %llu", (unsigned long long)t.h);
    gdml_ctl_destroy(&loose);
    gdml_ctl_destroy(&mid);
    gdml_ctl_destroy(&tight);
    gdml_ctl_destroy(&tiny);
}

Test(controller, a_target_ratio_bounds_bytes_per_step)
{
    gdml_ctl *c = make(0, 8);
    gdml_ctl_choice ch = gdml_ctl_current(c);
    cr_assert_leq((double)gdml_ctl_bytes(c, ch.level) / (double)ch.h,
                  (double)gdml_ctl_bytes(c, 0) / (100 * 8.0));
    cr_assert_neq(ch.level, 0);
    gdml_ctl_destroy(&c);
}

Test(controller, a_growing_residual_sends_more)
{
    gdml_ctl *c = make(3000, 0);
    gdml_ctl_choice ch, first = gdml_ctl_current(c);
    gdml_ctl_measure m = round_of(1.0, 0.2, 10);
    gdml_ctl_decide(c, &m, &first, NULL, 0);
    char why[256] = "";
    bool moved = false;
    for (int i = 0; i < 10 && !moved; i++) {
        m = round_of(1.0 - 0.01 * i, 3.0, 10);
        moved = gdml_ctl_decide(c, &m, &ch, why, sizeof why);
    }
    cr_assert(moved, "a residual 3x the update never moved %s", first.spec);
    cr_assert(ch.level < first.level || ch.h > first.h, "%s/H%llu after %s/H%llu", ch.spec,
              (unsigned long long)ch.h, first.spec, (unsigned long long)first.h);
    cr_assert(strstr(why, "residual") != NULL, "why: %s", why);
    gdml_ctl_destroy(&c);
}

Test(controller, stalled_loss_per_byte_moves_sparser_and_hysteresis_holds)
{
    gdml_ctl *c = make(1e6, 0);
    gdml_ctl_choice ch, first;
    gdml_ctl_measure m = round_of(2.0, 0.1, 1);
    gdml_ctl_decide(c, &m, &first, NULL, 0);
    double loss = 2.0;
    int changes = 0, last_change = -100, min_gap = 100;
    size_t level = first.level;
    for (int i = 0; i < 40; i++) {
        loss -= i < 3 ? 0.3 : 0.0001; /* fast progress, then a stall */
        m = round_of(loss, 0.1, 1);
        if (gdml_ctl_decide(c, &m, &ch, NULL, 0)) {
            cr_assert_gt(ch.level, level, "a stall moved denser: %s", ch.spec);
            level = ch.level;
            if (i - last_change < min_gap)
                min_gap = i - last_change;
            last_change = i;
            changes++;
        }
    }
    cr_assert_gt(changes, 0, "a stalled loss never moved the choice");
    cr_assert_geq(min_gap, 4, "changes %d rounds apart: no hysteresis", min_gap);
    gdml_ctl_destroy(&c);
}

Test(controller, never_a_message_above_the_budget)
{
    const double rates[] = {600, 1500, 3000, 9000, 40000};
    unsigned seed = 1;
    for (size_t r = 0; r < sizeof rates / sizeof *rates; r++) {
        gdml_ctl *c = make(rates[r], 0);
        gdml_ctl_choice ch = gdml_ctl_current(c);
        for (int i = 0; i < 200; i++) {
            seed = seed * 1103515245u + 12345u;
            gdml_ctl_measure m = round_of(1.0 + (double)(seed % 100) / 100, (seed >> 8) % 5,
                                          (double)((seed >> 16) % 50) / 10);
            gdml_ctl_decide(c, &m, &ch, NULL, 0);
            if (ch.level + 1 < gdml_ctl_levels() || gdml_ctl_bytes(c, ch.level) <= rates[r])
                cr_assert_leq(gdml_ctl_bytes(c, ch.level), rates[r], "%s at %.0f B/s", ch.spec,
                              rates[r]);
            gdml_ctl_note_bytes(c, gdml_ctl_bytes(c, ch.level) * 9 / 10);
        }
        gdml_ctl_destroy(&c);
    }
}

/* One more pseudo-random round: any loss, residual under the update, step times 0.1-5 ms. */
static gdml_ctl_measure noisy_round(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return round_of(1.0 + (double)(*seed % 100) / 100, (double)((*seed >> 8) % 90) / 100,
                    0.1 + (double)((*seed >> 16) % 50) / 10);
}

Test(controller, drift_corrected_keeps_the_fewest_dense_bits_and_h_whatever_the_step_time)
{
    /* 6,000 B/s: int4 fits a second of it, int2 is the fewest bits a dense row has. */
    gdml_ctl *c = make_as(6000, 0, true);
    gdml_ctl_choice ch = gdml_ctl_current(c);
    cr_assert_str_eq(ch.spec, "int2");
    cr_assert_eq(ch.h, 100);
    unsigned seed = 7;
    for (int i = 0; i < 200; i++) {
        gdml_ctl_measure m = noisy_round(&seed);
        cr_assert_not(gdml_ctl_decide(c, &m, &ch, NULL, 0), "round %d moved to %s/H%llu", i,
                      ch.spec, (unsigned long long)ch.h);
    }
    gdml_ctl_destroy(&c);
    /* Without a budget there is nothing to save: dense f32, as without drift correction. */
    c = make_as(0, 0, true);
    ch = gdml_ctl_current(c);
    cr_assert_str_eq(ch.spec, "dense");
    cr_assert_eq(ch.h, 100);
    gdml_ctl_destroy(&c);
}

Test(controller, drift_corrected_moves_denser_on_a_growing_residual_and_never_back)
{
    gdml_ctl *c = make_as(6000, 0, true);
    gdml_ctl_choice ch, first = gdml_ctl_current(c);
    char why[256] = "";
    int moved_at = -1;
    for (int i = 0; i < 10 && moved_at < 0; i++) {
        gdml_ctl_measure m = round_of(1.0 - 0.01 * i, 3.0, 1);
        if (gdml_ctl_decide(c, &m, &ch, why, sizeof why))
            moved_at = i;
    }
    cr_assert_geq(moved_at, 0, "a residual 3x the update never moved %s", first.spec);
    cr_assert_str_eq(ch.spec, "int4", "after int2: %s (%s)", ch.spec, why);
    cr_assert_eq(ch.h, first.h, "H moved: %llu", (unsigned long long)ch.h);
    cr_assert(strstr(why, "residual") != NULL, "why: %s", why);
    /* int8 does not fit a second of 6,000 B/s: a residual still high keeps int4. */
    for (int i = 0; i < 20; i++) {
        gdml_ctl_measure m = round_of(0.9, 3.0, 1);
        gdml_ctl_decide(c, &m, &ch, NULL, 0);
        cr_assert_str_eq(ch.spec, "int4");
    }
    /* A stalled loss and an empty residual never take it back to int2. */
    for (int i = 0; i < 40; i++) {
        gdml_ctl_measure m = round_of(0.9 - 1e-6 * i, 0, 1);
        gdml_ctl_decide(c, &m, &ch, NULL, 0);
        cr_assert_str_eq(ch.spec, "int4");
    }
    gdml_ctl_destroy(&c);
}

Test(controller, drift_corrected_lengthens_h_or_goes_sparse_only_when_the_budget_forces_it)
{
    /* A target ratio of 32 leaves int2 too many bytes per step at H = 100: H doubles. */
    gdml_ctl *c = make_as(0, 32, true);
    gdml_ctl_choice ch = gdml_ctl_current(c);
    cr_assert_str_eq(ch.spec, "int2");
    cr_assert_gt(ch.h, 100);
    cr_assert_leq((double)gdml_ctl_bytes(c, ch.level) / (double)ch.h,
                  (double)gdml_ctl_bytes(c, 0) / (100 * 32.0));
    gdml_ctl_destroy(&c);
    /* 600 B/s: no dense row fits a second of it; the whole ladder, within it. */
    c = make_as(600, 0, true);
    ch = gdml_ctl_current(c);
    cr_assert(strstr(ch.spec, "topk") != NULL, "600 B/s: %s", ch.spec);
    cr_assert_leq(gdml_ctl_bytes(c, ch.level), 600);
    gdml_ctl_destroy(&c);
    /* An uplink cap running out: the last rounds go sparse, within what is left. */
    gdml_ctl_config cfg = {.n = N,
                           .h_base = 100,
                           .up_rate = 6000,
                           .down_rate = 6000,
                           .up_cap = 100000,
                           .overhead = 100,
                           .drift_corrected = true};
    gdml_errmsg e;
    cr_assert_eq(gdml_ctl_new(&cfg, &c, &e), GDML_OK, "%s", e.text);
    gdml_ctl_measure m = round_of(1.0, 0.1, 1);
    m.up_spent = 100000 - 1000;
    cr_assert(gdml_ctl_decide(c, &m, &ch, NULL, 0));
    cr_assert_leq(gdml_ctl_bytes(c, ch.level), 1000, "%s with 1000 B left", ch.spec);
    gdml_ctl_destroy(&c);
}

Test(controller, a_policy_round_trips_and_hostile_text_is_refused)
{
    gdml_ctl_choice ch = {.spec = "topk+int4", .k_fraction = 0.03, .h = 200};
    char buf[GDML_CTL_POLICY_MAX], spec[32];
    gdml_ctl_format(&ch, buf, sizeof buf);
    cr_assert_str_eq(buf, "topk+int4/0.03/H200");
    double k;
    uint64_t h;
    cr_assert(gdml_ctl_parse(buf, spec, sizeof spec, &k, &h));
    cr_assert_str_eq(spec, "topk+int4");
    cr_assert_float_eq(k, 0.03, 1e-12);
    cr_assert_eq(h, 200);
    const char *bad[] = {
        "", "nope/0.1/H1", "topk/2/H5", "topk/0.1/H0", "topk/0.1/H5 x", "keys+f32/0.1/H5"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_not(gdml_ctl_parse(bad[i], spec, sizeof spec, &k, &h), "'%s'", bad[i]);
}
