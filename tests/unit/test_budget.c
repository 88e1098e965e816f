/*
 * test_budget.c - the sliding-window budget: exact availability and waits on
 * hand-made histories, the cap, reconfiguration, and a simulated controller
 * whose byte log must respect the rate over every window.
 */
#include "budget.h"
#include "rng.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

static gdml_budget *make(double rate, uint64_t cap, int64_t window_ms)
{
    gdml_budget *b = NULL;
    gdml_budget_config cfg = {.rate = rate, .cap = cap, .window_ms = window_ms};
    cr_assert_eq(gdml_budget_new(&cfg, &b), GDML_OK);
    cr_assert_not_null(b);
    return b;
}

static void spend_ok(gdml_budget *b, uint64_t bytes, int64_t now_ms)
{
    cr_assert_eq(gdml_budget_spend(b, bytes, now_ms), GDML_OK, "spend %llu at %lld refused",
                 (unsigned long long)bytes, (long long)now_ms);
}

Test(budget, unlimited)
{
    gdml_budget *b = make(0, 0, 0);
    cr_assert_eq(gdml_budget_available(b, 0), GDML_BUDGET_UNLIMITED);
    cr_assert_eq(gdml_budget_wait_ms(b, UINT64_MAX, 0), 0);
    for (int i = 0; i < 1000; i++)
        spend_ok(b, UINT64_C(1) << 40, i / 10);
    cr_assert_eq(gdml_budget_spent(b), UINT64_C(1000) << 40);
    cr_assert_eq(gdml_budget_available(b, 100), GDML_BUDGET_UNLIMITED);
    cr_assert_eq(gdml_budget_wait_ms(b, UINT64_C(1) << 60, 100), 0);
    gdml_budget_config cfg = gdml_budget_get_config(b);
    cr_assert_eq(cfg.rate, 0);
    cr_assert_eq(cfg.cap, 0);
    gdml_budget_destroy(&b);
    cr_assert_null(b);
    gdml_budget_destroy(&b);
    gdml_budget_destroy(NULL);
}

Test(budget, bad_config_refused)
{
    const gdml_budget_config bad[] = {
        {.rate = -1}, {.rate = NAN}, {.rate = INFINITY}, {.rate = 1, .window_ms = -5}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        gdml_budget *b = NULL;
        cr_expect_eq(gdml_budget_new(&bad[i], &b), GDML_ERR_INVALID, "config %zu", i);
        cr_expect_null(b, "out-param set on failure");
    }
}

Test(budget, default_window_is_one_second)
{
    gdml_budget *b = make(1000, 0, 0);
    cr_assert_eq(gdml_budget_get_config(b).window_ms, 1000);
    cr_assert_eq(gdml_budget_available(b, 0), 1000);
    gdml_budget_destroy(&b);
}

Test(budget, burst_then_wait_for_the_first_send)
{
    /* 1000 B/s over 1 s: a burst of 1000 bytes passes, the next byte waits. */
    gdml_budget *b = make(1000, 0, 1000);
    cr_assert_eq(gdml_budget_available(b, 100), 1000);
    spend_ok(b, 600, 100);
    cr_assert_eq(gdml_budget_available(b, 300), 400);
    spend_ok(b, 400, 500);
    cr_assert_eq(gdml_budget_available(b, 500), 0);
    /* The first send leaves the window at 100 + 1000. */
    cr_assert_eq(gdml_budget_wait_ms(b, 1, 500), 600);
    cr_assert_eq(gdml_budget_wait_ms(b, 600, 500), 600);
    cr_assert_eq(gdml_budget_wait_ms(b, 601, 500), 1000);
    cr_assert_eq(gdml_budget_available(b, 1099), 0);
    cr_assert_eq(gdml_budget_wait_ms(b, 1, 1099), 1);
    cr_assert_eq(gdml_budget_available(b, 1100), 600);
    cr_assert_eq(gdml_budget_wait_ms(b, 600, 1100), 0);
    cr_assert_eq(gdml_budget_wait_ms(b, 601, 1100), 400);
    cr_assert_eq(gdml_budget_available(b, 1500), 1000);
    cr_assert_eq(gdml_budget_spent(b), 1000);
    gdml_budget_destroy(&b);
}

Test(budget, wait_exact_on_hand_made_history)
{
    gdml_budget *b = make(1000, 0, 1000);
    spend_ok(b, 200, 0);
    spend_ok(b, 300, 100);
    spend_ok(b, 100, 100); /* same millisecond */
    spend_ok(b, 250, 400);
    /* At 500 the window (-500, 500] holds 850. */
    cr_assert_eq(gdml_budget_available(b, 500), 150);
    cr_assert_eq(gdml_budget_wait_ms(b, 0, 500), 0);
    cr_assert_eq(gdml_budget_wait_ms(b, 150, 500), 0);
    /* 151 needs the 200 sent at 0 gone: at 1000. */
    cr_assert_eq(gdml_budget_wait_ms(b, 151, 500), 500);
    cr_assert_eq(gdml_budget_wait_ms(b, 350, 500), 500);
    /* 351..750 need the 400 sent at 100 gone too: at 1100. */
    cr_assert_eq(gdml_budget_wait_ms(b, 351, 500), 600);
    cr_assert_eq(gdml_budget_wait_ms(b, 750, 500), 600);
    /* More needs the 250 sent at 400 gone: at 1400. */
    cr_assert_eq(gdml_budget_wait_ms(b, 751, 500), 900);
    cr_assert_eq(gdml_budget_wait_ms(b, 1000, 500), 900);
    cr_assert_eq(gdml_budget_wait_ms(b, 1001, 500), -1);
    /* The window is (now - 1000, now]: a send at exactly now - 1000 is out. */
    cr_assert_eq(gdml_budget_available(b, 999), 150);
    cr_assert_eq(gdml_budget_wait_ms(b, 151, 999), 1);
    cr_assert_eq(gdml_budget_available(b, 1000), 350);
    cr_assert_eq(gdml_budget_wait_ms(b, 351, 1000), 100);
    cr_assert_eq(gdml_budget_available(b, 1100), 750);
    cr_assert_eq(gdml_budget_available(b, 1399), 750);
    cr_assert_eq(gdml_budget_available(b, 1400), 1000);
    gdml_budget_destroy(&b);
}

Test(budget, wait_exact_randomized)
{
    /* For random histories, wait_ms(x) = w means: not available at now + w - 1, available at now +
     * w. */
    gdml_rng r;
    gdml_rng_seed(&r, 7);
    for (int trial = 0; trial < 300; trial++) {
        int64_t window = 100 + (int64_t)gdml_rng_below(&r, 2000);
        double rate = 1000 + (double)gdml_rng_below(&r, 100000);
        gdml_budget *b = make(rate, 0, window);
        int64_t t = (int64_t)gdml_rng_below(&r, 5000);
        for (int i = 0; i < 20; i++) {
            t += (int64_t)gdml_rng_below(&r, (uint64_t)window / 5 + 1);
            uint64_t avail = gdml_budget_available(b, t);
            if (avail > 0)
                spend_ok(b, 1 + gdml_rng_below(&r, avail), t);
        }
        uint64_t limit = (uint64_t)(rate * (double)window / 1000);
        uint64_t want = 1 + gdml_rng_below(&r, limit);
        int64_t w = gdml_budget_wait_ms(b, want, t);
        cr_assert_geq(w, 0, "trial %d: %llu of %llu never fits", trial, (unsigned long long)want,
                      (unsigned long long)limit);
        if (w > 0)
            cr_assert_lt(gdml_budget_available(b, t + w - 1), want, "trial %d: fits before %lld",
                         trial, (long long)w);
        cr_assert_geq(gdml_budget_available(b, t + w), want, "trial %d: not there after %lld",
                      trial, (long long)w);
        cr_assert_eq(gdml_budget_wait_ms(b, limit + 1, t + w), -1);
        gdml_budget_destroy(&b);
    }
}

Test(budget, spend_refuses_unavailable_and_records_nothing)
{
    gdml_budget *b = make(1000, 0, 1000);
    spend_ok(b, 850, 0);
    cr_assert_eq(gdml_budget_spend(b, 151, 500), GDML_ERR_INVALID);
    cr_assert_eq(gdml_budget_spent(b), 850);
    cr_assert_eq(gdml_budget_available(b, 500), 150);
    cr_assert_eq(gdml_budget_wait_ms(b, 150, 500), 0);
    cr_assert_eq(gdml_budget_wait_ms(b, 151, 500), 500);
    spend_ok(b, 150, 500);
    cr_assert_eq(gdml_budget_available(b, 500), 0);
    cr_assert_eq(gdml_budget_spend(b, 1, 999), GDML_ERR_INVALID);
    /* At 1000 only the 850 has left. */
    cr_assert_eq(gdml_budget_available(b, 1000), 850);
    cr_assert_eq(gdml_budget_spent(b), 1000);
    gdml_budget_destroy(&b);
}

Test(budget, message_above_rate_times_window_never_fits)
{
    gdml_budget *b = make(1000, 0, 500); /* 500 bytes per 500 ms */
    cr_assert_eq(gdml_budget_available(b, 0), 500);
    cr_assert_eq(gdml_budget_wait_ms(b, 500, 0), 0);
    cr_assert_eq(gdml_budget_wait_ms(b, 501, 0), -1);
    cr_assert_eq(gdml_budget_spend(b, 501, 0), GDML_ERR_INVALID);
    cr_assert_eq(gdml_budget_spent(b), 0);
    spend_ok(b, 1, 0);
    cr_assert_eq(gdml_budget_wait_ms(b, 501, 10), -1);
    cr_assert_eq(gdml_budget_wait_ms(b, UINT64_MAX, 10), -1);
    gdml_budget_destroy(&b);
}

Test(budget, cap_only)
{
    gdml_budget *b = make(0, 1000, 0);
    cr_assert_eq(gdml_budget_available(b, 0), 1000);
    spend_ok(b, 600, 0);
    cr_assert_eq(gdml_budget_available(b, 1), 400);
    cr_assert_eq(gdml_budget_wait_ms(b, 400, 1), 0);
    cr_assert_eq(gdml_budget_wait_ms(b, 401, 1), -1);
    cr_assert_eq(gdml_budget_spend(b, 401, 1), GDML_ERR_INVALID);
    spend_ok(b, 400, 1);
    cr_assert_eq(gdml_budget_spent(b), 1000);
    /* The cap does not come back with time. */
    cr_assert_eq(gdml_budget_available(b, 1000000), 0);
    cr_assert_eq(gdml_budget_wait_ms(b, 1, 1000000), -1);
    cr_assert_eq(gdml_budget_wait_ms(b, 0, 1000000), 0);
    cr_assert_eq(gdml_budget_spend(b, 1, 1000000), GDML_ERR_INVALID);
    gdml_budget_destroy(&b);
}

Test(budget, cap_with_rate_never_exceeded)
{
    gdml_budget *b = make(1000, 2500, 1000);
    uint64_t total = 0;
    for (int64_t t = 0; t < 10000; t += 100) {
        uint64_t avail = gdml_budget_available(b, t);
        cr_assert_leq(avail, 2500 - total);
        if (avail > 0) {
            spend_ok(b, avail, t);
            total += avail;
        }
        cr_assert_leq(gdml_budget_spent(b), 2500);
    }
    cr_assert_eq(total, 2500);
    cr_assert_eq(gdml_budget_wait_ms(b, 1, 10000), -1);
    cr_assert_eq(gdml_budget_available(b, 20000), 0);
    gdml_budget_destroy(&b);

    /* Whichever binds first decides: the rate here, then the cap. */
    b = make(1000, 1500, 1000);
    spend_ok(b, 1000, 0);
    cr_assert_eq(gdml_budget_wait_ms(b, 500, 0), 1000);
    cr_assert_eq(gdml_budget_wait_ms(b, 501, 0), -1);
    cr_assert_eq(gdml_budget_available(b, 1000), 500);
    gdml_budget_destroy(&b);
}

Test(budget, reconfigure_keeps_history)
{
    gdml_budget *b = make(1000, 0, 1000);
    spend_ok(b, 800, 0);
    cr_assert_eq(gdml_budget_available(b, 100), 200);

    gdml_budget_reconfigure(b, &(gdml_budget_config){.rate = 900});
    cr_assert_eq(gdml_budget_available(b, 100), 100);
    /* Below what the window already holds: nothing until the send leaves. */
    gdml_budget_reconfigure(b, &(gdml_budget_config){.rate = 500});
    cr_assert_eq(gdml_budget_available(b, 100), 0);
    cr_assert_eq(gdml_budget_wait_ms(b, 1, 100), 900);
    cr_assert_eq(gdml_budget_spend(b, 1, 100), GDML_ERR_INVALID);
    gdml_budget_reconfigure(b, &(gdml_budget_config){.rate = 2000});
    cr_assert_eq(gdml_budget_available(b, 100), 1200);
    cr_assert_eq(gdml_budget_spent(b), 800);
    gdml_budget_config cfg = gdml_budget_get_config(b);
    cr_assert_eq(cfg.rate, 2000);
    cr_assert_eq(cfg.window_ms, 1000);

    /* A longer window with the same rate: more room, same history. */
    gdml_budget_reconfigure(b, &(gdml_budget_config){.rate = 1000, .window_ms = 2000});
    cr_assert_eq(gdml_budget_available(b, 100), 1200);
    cr_assert_eq(gdml_budget_available(b, 1999), 1200);
    cr_assert_eq(gdml_budget_available(b, 2000), 2000);

    /* A cap below what was spent: nothing more, ever. */
    spend_ok(b, 300, 2000);
    gdml_budget_reconfigure(b, &(gdml_budget_config){.rate = 1000, .cap = 1000});
    cr_assert_eq(gdml_budget_spent(b), 1100);
    cr_assert_eq(gdml_budget_available(b, 5000), 0);
    cr_assert_eq(gdml_budget_wait_ms(b, 1, 5000), -1);
    gdml_budget_destroy(&b);
}

Test(budget, equal_and_backward_times_stay_safe)
{
    gdml_budget *b = make(1000, 0, 1000);
    for (int i = 0; i < 10; i++)
        spend_ok(b, 100, 500);
    cr_assert_eq(gdml_budget_available(b, 500), 0);
    cr_assert_eq(gdml_budget_wait_ms(b, 1, 500), 1000);
    /* A clock read that lags the last send: the bytes still count. */
    cr_assert_eq(gdml_budget_available(b, 400), 0);
    cr_assert_eq(gdml_budget_spend(b, 1, 400), GDML_ERR_INVALID);
    cr_assert_eq(gdml_budget_wait_ms(b, 1, 400), 1100);
    cr_assert_eq(gdml_budget_available(b, 1500), 1000);
    spend_ok(b, 100, 2000);
    spend_ok(b, 100, 1900); /* counted at 2000, no earlier */
    cr_assert_eq(gdml_budget_wait_ms(b, 1000, 2000), 1000);
    cr_assert_eq(gdml_budget_available(b, 2899), 800);
    cr_assert_eq(gdml_budget_available(b, 2900), 800);
    cr_assert_eq(gdml_budget_available(b, 3000), 1000);
    gdml_budget_destroy(&b);
}

typedef struct logged {
    int64_t t;
    uint64_t bytes;
} logged;

/* The bytes of log[0..len) (in time order) in (t - window, t]. */
static uint64_t window_sum(const logged *log, size_t len, int64_t t, int64_t window)
{
    uint64_t sum = 0;
    for (size_t i = len; i-- > 0 && log[i].t > t - window;)
        if (log[i].t <= t)
            sum += log[i].bytes;
    return sum;
}

Test(budget, controller_under_a_tight_budget)
{
    /*
     * Eight senders offer about six times the rate: each draws a message of
     * 1..3000 bytes and, at random times, asks the budget; it sends when the
     * bytes are available and otherwise retries when wait_ms says (by then
     * another sender may have taken them). From the log, every window
     * (t - 1 s, t] must hold at most rate * 1 s, and the link must be busy.
     */
    enum { senders = 8 };
    const double rate = 10000;
    const int64_t window = 1000, run_ms = 120000;
    gdml_budget *b = make(rate, 0, window);
    gdml_rng r;
    gdml_rng_seed(&r, 2024);

    int64_t next[senders];
    uint64_t size[senders];
    for (int s = 0; s < senders; s++) {
        next[s] = (int64_t)gdml_rng_below(&r, 400);
        size[s] = 1 + gdml_rng_below(&r, 3000);
    }
    size_t cap = 1024, len = 0;
    logged *log = malloc(cap * sizeof(*log));
    cr_assert_not_null(log);

    for (;;) {
        int s = 0;
        for (int i = 1; i < senders; i++)
            if (next[i] < next[s])
                s = i;
        int64_t t = next[s];
        if (t >= run_ms)
            break;
        uint64_t avail = gdml_budget_available(b, t);
        uint64_t want = (uint64_t)rate - window_sum(log, len, t, window);
        cr_assert_eq(avail, want, "at %lld available %llu, log says %llu", (long long)t,
                     (unsigned long long)avail, (unsigned long long)want);
        int64_t w = gdml_budget_wait_ms(b, size[s], t);
        cr_assert_eq(w == 0, size[s] <= avail, "at %lld: wait %lld for %llu of %llu", (long long)t,
                     (long long)w, (unsigned long long)size[s], (unsigned long long)avail);
        if (w > 0) {
            next[s] = t + w;
            continue;
        }
        cr_assert_eq(w, 0);
        spend_ok(b, size[s], t);
        if (len == cap) {
            cap *= 2;
            log = realloc(log, cap * sizeof(*log));
            cr_assert_not_null(log);
        }
        log[len++] = (logged){.t = t, .bytes = size[s]};
        size[s] = 1 + gdml_rng_below(&r, 3000);
        next[s] = t + (int64_t)gdml_rng_below(&r, 400);
    }

    uint64_t total = 0, most = 0;
    for (size_t i = 0; i < len; i++) {
        total += log[i].bytes;
        uint64_t in_window = window_sum(log, len, log[i].t, window);
        if (in_window > most)
            most = in_window;
        cr_assert_leq(in_window, (uint64_t)rate, "window ending %lld holds %llu bytes",
                      (long long)log[i].t, (unsigned long long)in_window);
    }
    cr_assert_eq(total, gdml_budget_spent(b));
    double throughput = (double)total / ((double)run_ms / 1000);
    cr_assert_geq(throughput, 0.8 * rate, "throughput %.0f B/s of %.0f", throughput, rate);
    cr_assert_leq(throughput, rate * (1 + (double)window / (double)run_ms));
    cr_log_info("%zu sends, %.0f B/s of %.0f, fullest window %llu", len, throughput, rate,
                (unsigned long long)most);
    free(log);
    gdml_budget_destroy(&b);
}

/* What wait_ms must say for x bytes at t, worked out from the log. */
static int64_t reference_wait(const logged *log, size_t len, int64_t t, int64_t window,
                              uint64_t limit, uint64_t x)
{
    if (x > limit)
        return -1;
    uint64_t sum = window_sum(log, len, t, window);
    for (size_t i = 0; sum + x > limit; i++) {
        cr_assert_lt(i, len);
        if (log[i].t > t - window) {
            sum -= log[i].bytes;
            if (sum + x <= limit)
                return log[i].t + window - t;
        }
    }
    return 0;
}

Test(budget, many_sends_per_window)
{
    /*
     * 5000 bytes per 100 ms. Sparse sends first, so that old ones expire and
     * the ring's start moves, then a send nearly every millisecond, which makes
     * the ring grow while it wraps. Every answer is checked against the log.
     */
    const int64_t window = 100;
    const uint64_t limit = 5000;
    gdml_budget *b = make(50000, 0, window);
    gdml_rng r;
    gdml_rng_seed(&r, 99);
    size_t len = 0;
    logged *log = malloc(20000 * sizeof(*log));
    cr_assert_not_null(log);
    for (int64_t t = 0; t < 6000; t += t < 1000 ? 7 : 1 + (int64_t)gdml_rng_below(&r, 2)) {
        uint64_t want = limit - window_sum(log, len, t, window);
        cr_assert_eq(gdml_budget_available(b, t), want, "at %lld", (long long)t);
        uint64_t x = 1 + gdml_rng_below(&r, 120);
        int64_t w = gdml_budget_wait_ms(b, x, t);
        cr_assert_eq(w, reference_wait(log, len, t, window, limit, x), "at %lld, %llu bytes",
                     (long long)t, (unsigned long long)x);
        if (w == 0) {
            spend_ok(b, x, t);
            cr_assert_lt(len, 20000);
            log[len++] = (logged){.t = t, .bytes = x};
        }
    }
    cr_assert_gt(len, 3000);
    free(log);
    gdml_budget_destroy(&b);
}
