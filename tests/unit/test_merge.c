/*
 * test_merge.c - each merge rule against numbers worked out by hand, over two
 * rounds so that the state (velocity, Adam moments) matters, and the
 * configuration checks.
 *
 * The shared case: n = 3, global g0 = [0.5, 1, -1], two regions with weights
 * 1 and 3, lr 0.5.
 *   round 1: d1 = [1, -2, 4], d2 = [5, 2, 0]
 *            avg = ([1, -2, 4] + 3 [5, 2, 0]) / 4 = [16, 4, 4] / 4 = [4, 1, 1]
 *            sum = [6, 0, 4]
 *   round 2: d1 = [2, 0, -4], d2 = [-2, 4, 0]
 *            avg = ([2, 0, -4] + 3 [-2, 4, 0]) / 4 = [-4, 12, -4] / 4 = [-1, 3, -1]
 *            sum = [0, 4, -4]
 */
#include "codec.h"
#include "merge.h"
#include "rng.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#define N 3

static const float round1[2][N] = {{1, -2, 4}, {5, 2, 0}};
static const float round2[2][N] = {{2, 0, -4}, {-2, 4, 0}};
static const double weights[2] = {1, 3};

static gdml_merge *make(const gdml_merge_config *cfg, size_t n)
{
    gdml_merge *m = NULL;
    gdml_errmsg e = {{0}};
    gdml_err err = gdml_merge_new(cfg, n, &m, &e);
    cr_assert_eq(err, GDML_OK, "gdml_merge_new(%s): %s", cfg->rule, e.text);
    cr_assert_not_null(m);
    return m;
}

static void apply_round(gdml_merge *m, float *g, const float rows[2][N], const double *w)
{
    const float *deltas[2] = {rows[0], rows[1]};
    gdml_merge_apply(m, g, deltas, w, 2);
}

static void expect(const float *got, const double *want, const char *what)
{
    for (int j = 0; j < N; j++)
        cr_expect(fabs(got[j] - want[j]) <= 1e-5 * (1 + fabs(want[j])),
                  "%s: g[%d] = %.9g, want %.9g", what, j, got[j], want[j]);
}

/* Runs the shared two rounds and checks g after each. */
static void two_rounds(const gdml_merge_config *cfg, const double want1[N], const double want2[N])
{
    gdml_merge *m = make(cfg, N);
    float g[N] = {0.5f, 1, -1};
    apply_round(m, g, round1, weights);
    expect(g, want1, "round 1");
    apply_round(m, g, round2, weights);
    expect(g, want2, "round 2");
    gdml_merge_destroy(&m);
    cr_assert_null(m);
}

Test(merge, fedavg_by_hand)
{
    /* g1 = g0 + 0.5 [4, 1, 1]; g2 = g1 + 0.5 [-1, 3, -1] */
    const double want1[N] = {2.5, 1.5, -0.5};
    const double want2[N] = {2.0, 3.0, -1.0};
    two_rounds(&(gdml_merge_config){.rule = "fedavg", .lr = 0.5}, want1, want2);
}

Test(merge, sum_by_hand)
{
    /* g1 = g0 + 0.5 [6, 0, 4]; g2 = g1 + 0.5 [0, 4, -4] */
    const double want1[N] = {3.5, 1.0, 1.0};
    const double want2[N] = {3.5, 3.0, -1.0};
    two_rounds(&(gdml_merge_config){.rule = "sum", .lr = 0.5}, want1, want2);
}

Test(merge, fedavgm_by_hand)
{
    /*
     * v1 = [4, 1, 1];                           g1 = g0 + 0.5 v1 = [2.5, 1.5, -0.5]
     * v2 = 0.9 [4, 1, 1] + [-1, 3, -1] = [2.6, 3.9, -0.1]
     *                                           g2 = g1 + 0.5 v2 = [3.8, 3.45, -0.55]
     */
    const double want1[N] = {2.5, 1.5, -0.5};
    const double want2[N] = {3.8, 3.45, -0.55};
    two_rounds(&(gdml_merge_config){.rule = "fedavgm", .lr = 0.5, .momentum = 0.9}, want1, want2);
}

Test(merge, nesterov_by_hand)
{
    /*
     * v1 = [4, 1, 1];  step1 = 0.9 v1 + avg1 = [7.6, 1.9, 1.9]
     *                  g1 = g0 + 0.5 step1 = [4.3, 1.95, -0.05]
     * v2 = [2.6, 3.9, -0.1];  step2 = 0.9 v2 + avg2 = [1.34, 6.51, -1.09]
     *                  g2 = g1 + 0.5 step2 = [4.97, 5.205, -0.595]
     */
    const double want1[N] = {4.3, 1.95, -0.05};
    const double want2[N] = {4.97, 5.205, -0.595};
    two_rounds(&(gdml_merge_config){.rule = "nesterov", .lr = 0.5, .momentum = 0.9}, want1, want2);
}

Test(merge, adam_by_hand)
{
    /*
     * beta1 0.9, beta2 0.99, epsilon 1e-3.
     * m1 = 0.1 [4, 1, 1] = [0.4, 0.1, 0.1];  s1 = 0.01 [16, 1, 1] = [0.16, 0.01, 0.01]
     *   m1 / (sqrt(s1) + eps) = [0.4/0.401, 0.1/0.101, 0.1/0.101]
     *                         = [0.997506234, 0.990099010, 0.990099010]
     *   g1 = g0 + 0.5 * that = [0.998753117, 1.495049505, -0.504950495]
     * m2 = 0.9 m1 + 0.1 [-1, 3, -1] = [0.26, 0.39, -0.01]
     * s2 = 0.99 s1 + 0.01 [1, 9, 1] = [0.1684, 0.0999, 0.0199]
     *   sqrt(s2) + eps = [0.411365..., 0.317069..., 0.142067...]
     *   g2 = g1 + 0.5 m2 / (sqrt(s2) + eps) = [1.314773639, 2.110056406, -0.540145068]
     */
    const double want1[N] = {0.998753117, 1.495049505, -0.504950495};
    const double want2[N] = {1.314773639, 2.110056406, -0.540145068};
    two_rounds(
        &(gdml_merge_config){
            .rule = "adam", .lr = 0.5, .beta1 = 0.9, .beta2 = 0.99, .epsilon = 1e-3},
        want1, want2);
}

Test(merge, fedavg_lr_one_is_weighted_mean)
{
    enum { n = 257, regions = 4 };
    static float d[regions][n];
    const double w[regions] = {10, 250, 3.5, 60000};
    const float *deltas[regions];
    for (int i = 0; i < regions; i++) {
        for (int j = 0; j < n; j++)
            d[i][j] = (float)sin(0.37 * j + 1.3 * i) * (float)(i + 1);
        deltas[i] = d[i];
    }
    gdml_merge *m = make(&(gdml_merge_config){.rule = "fedavg", .lr = 1}, n);
    float g[n] = {0};
    gdml_merge_apply(m, g, deltas, w, regions);
    double total = 0;
    for (int i = 0; i < regions; i++)
        total += w[i];
    for (int j = 0; j < n; j++) {
        double mean = 0;
        for (int i = 0; i < regions; i++)
            mean += w[i] * d[i][j];
        mean /= total;
        cr_assert(fabs(g[j] - mean) <= 1e-6 * (1 + fabs(mean)), "g[%d] = %.9g, mean %.9g", j, g[j],
                  mean);
    }
    gdml_merge_destroy(&m);
}

Test(merge, single_region_fedavg_adds_its_delta)
{
    gdml_merge *m = make(&(gdml_merge_config){.rule = "fedavg", .lr = 1}, N);
    float g[N] = {1, 2, 3};
    const float d[N] = {0.25f, -0.5f, 1};
    const float *deltas[1] = {d};
    gdml_merge_apply(m, g, deltas, (const double[]){42}, 1);
    const double want[N] = {1.25, 1.5, 4};
    expect(g, want, "one region");
    gdml_merge_destroy(&m);
}

Test(merge, sum_ignores_weights)
{
    gdml_merge *a = make(&(gdml_merge_config){.rule = "sum", .lr = 0.5}, N);
    gdml_merge *b = make(&(gdml_merge_config){.rule = "sum", .lr = 0.5}, N);
    float ga[N] = {0.5f, 1, -1}, gb[N] = {0.5f, 1, -1};
    apply_round(a, ga, round1, weights);
    apply_round(b, gb, round1, (const double[]){7, 0.001});
    cr_assert_eq(memcmp(ga, gb, sizeof(ga)), 0, "weights changed the sum");
    gdml_merge_destroy(&a);
    gdml_merge_destroy(&b);
}

Test(merge, zero_momentum_is_fedavg)
{
    const char *rules[] = {"fedavgm", "nesterov"};
    for (int r = 0; r < 2; r++) {
        gdml_merge *avg = make(&(gdml_merge_config){.rule = "fedavg", .lr = 0.5}, N);
        gdml_merge *mom = make(&(gdml_merge_config){.rule = rules[r], .lr = 0.5}, N);
        float ga[N] = {0.5f, 1, -1}, gm[N] = {0.5f, 1, -1};
        apply_round(avg, ga, round1, weights);
        apply_round(mom, gm, round1, weights);
        apply_round(avg, ga, round2, weights);
        apply_round(mom, gm, round2, weights);
        for (int j = 0; j < N; j++)
            cr_expect_float_eq(gm[j], ga[j], 1e-6, "%s with momentum 0, g[%d]", rules[r], j);
        gdml_merge_destroy(&avg);
        gdml_merge_destroy(&mom);
    }
}

Test(merge, rule_names)
{
    const char *known[] = {"fedavg", "sum", "fedavgm", "nesterov", "adam"};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        cr_expect(gdml_merge_rule_ok(known[i]), "%s", known[i]);
    cr_expect_not(gdml_merge_rule_ok("FedAvg"));
    cr_expect_not(gdml_merge_rule_ok("average"));
    cr_expect_not(gdml_merge_rule_ok(""));
    cr_expect_not(gdml_merge_rule_ok(NULL));
}

/* Expects cfg to be refused with GDML_ERR_INVALID, a message holding want, and *out untouched. */
static void refused(const gdml_merge_config *cfg, const char *want)
{
    gdml_merge *m = (gdml_merge *)&m; /* any non-NULL value: it must survive */
    gdml_merge *before = m;
    gdml_errmsg e = {{0}};
    gdml_err err = gdml_merge_new(cfg, N, &m, &e);
    cr_expect_eq(err, GDML_ERR_INVALID, "rule %s: got %d (%s)", cfg->rule ? cfg->rule : "NULL", err,
                 e.text);
    cr_expect_eq(m, before, "out-param set on failure");
    cr_expect(strstr(e.text, want) != NULL, "message \"%s\" lacks \"%s\"", e.text, want);
    /* A NULL message buffer is accepted. */
    cr_expect_eq(gdml_merge_new(cfg, N, &m, NULL), GDML_ERR_INVALID);
}

Test(merge, bad_configs_refused)
{
    const char *known = "fedavg, sum, fedavgm, nesterov, adam";
    refused(&(gdml_merge_config){.rule = "average", .lr = 1}, known);
    refused(&(gdml_merge_config){.rule = "average", .lr = 1}, "average");
    refused(&(gdml_merge_config){.rule = NULL, .lr = 1}, known);
    refused(&(gdml_merge_config){.rule = "fedavg", .lr = 0}, "lr");
    refused(&(gdml_merge_config){.rule = "sum", .lr = -1}, "lr");
    refused(&(gdml_merge_config){.rule = "fedavg", .lr = NAN}, "lr");
    refused(&(gdml_merge_config){.rule = "fedavg", .lr = INFINITY}, "lr");
    refused(&(gdml_merge_config){.rule = "fedavgm", .lr = 1, .momentum = 1}, "momentum");
    refused(&(gdml_merge_config){.rule = "nesterov", .lr = 1, .momentum = -0.1}, "momentum");
    refused(&(gdml_merge_config){.rule = "nesterov", .lr = 1, .momentum = NAN}, "momentum");
    const gdml_merge_config adam = {
        .rule = "adam", .lr = 1, .beta1 = 0.9, .beta2 = 0.99, .epsilon = 1e-8};
    gdml_merge_config c = adam;
    c.beta1 = 1;
    refused(&c, "beta1");
    c = adam;
    c.beta1 = -0.5;
    refused(&c, "beta1");
    c = adam;
    c.beta2 = 1.5;
    refused(&c, "beta2");
    c = adam;
    c.epsilon = 0;
    refused(&c, "epsilon");
    c = adam;
    c.epsilon = -1e-8;
    refused(&c, "epsilon");
}

Test(merge, unused_hyperparameters_not_checked)
{
    /* A config file sets only what its rule uses; the rest stay 0. */
    const char *rules[] = {"fedavg", "sum"};
    for (int r = 0; r < 2; r++) {
        gdml_merge *m = make(&(gdml_merge_config){.rule = rules[r], .lr = 1, .momentum = 5}, N);
        gdml_merge_destroy(&m);
    }
    gdml_merge *m = make(&(gdml_merge_config){.rule = "fedavgm", .lr = 1, .epsilon = 0}, N);
    gdml_merge_destroy(&m);
}

Test(merge, rule_string_not_kept)
{
    char name[] = "adam";
    gdml_merge *m = make(
        &(gdml_merge_config){.rule = name, .lr = 0.5, .beta1 = 0.9, .beta2 = 0.99, .epsilon = 1e-3},
        N);
    memcpy(name, "xxxx", 4);
    float g[N] = {0.5f, 1, -1};
    apply_round(m, g, round1, weights);
    const double want1[N] = {0.998753117, 1.495049505, -0.504950495};
    expect(g, want1, "after the caller's string changed");
    gdml_merge_destroy(&m);
}

Test(merge, destroy_null_safe)
{
    gdml_merge_destroy(NULL);
    gdml_merge *m = NULL;
    gdml_merge_destroy(&m);
    cr_assert_null(m);
}

Test(merge, zero_parameters)
{
    gdml_merge *m = make(
        &(gdml_merge_config){.rule = "adam", .lr = 1, .beta1 = 0.9, .beta2 = 0.9, .epsilon = 1}, 0);
    float g[1] = {7};
    const float *deltas[1] = {g};
    gdml_merge_apply(m, g, deltas, (const double[]){1}, 1);
    cr_assert_eq(g[0], 7);
    gdml_merge_destroy(&m);
}

/* ---- the outer step on compressed deltas ---- */

#define OUTER_N 512
#define OUTER_REGIONS 4
#define OUTER_ROUNDS 300

/*
 * Runs Nesterov (DiLoCo's outer step) on the same regional deltas twice: as
 * they are, and as topk+int4 at 10 % decodes them, with error feedback or
 * without. Returns the largest |g_compressed - g_exact| over the rounds and,
 * in *res_max, the largest |mean residual| seen.
 */
static double outer_gap(bool feedback, double *res_max)
{
    gdml_merge_config cfg = {.rule = "nesterov", .lr = 0.7, .momentum = 0.9};
    gdml_merge *exact = make(&cfg, OUTER_N), *lossy = make(&cfg, OUTER_N);
    static float g_exact[OUTER_N], g_lossy[OUTER_N], u[OUTER_REGIONS][OUTER_N],
        dec[OUTER_REGIONS][OUTER_N], res[OUTER_REGIONS][OUTER_N];
    memset(g_exact, 0, sizeof g_exact);
    memset(g_lossy, 0, sizeof g_lossy);
    memset(res, 0, sizeof res);
    gdml_codec *c[OUTER_REGIONS];
    for (int r = 0; r < OUTER_REGIONS; r++) {
        gdml_errmsg e;
        cr_assert_eq(gdml_codec_new("topk+int4", OUTER_N, 1, &c[r], &e), GDML_OK, "%s", e.text);
    }
    gdml_rng rng;
    gdml_rng_seed(&rng, 11);
    static uint8_t buf[8192];
    gdml_codec_params p = {.k = OUTER_N / 10};
    double w[OUTER_REGIONS] = {1, 2, 3, 4}, gap = 0;
    *res_max = 0;
    for (int t = 0; t < OUTER_ROUNDS; t++) {
        for (int r = 0; r < OUTER_REGIONS; r++) {
            /* A region's pull (its own sign per entry, non-IID) plus noise. */
            for (int i = 0; i < OUTER_N; i++)
                u[r][i] = (float)(1e-3 * ((i + r) % 3 - 1) + 1e-3 * gdml_rng_normal(&rng));
            size_t len;
            if (!feedback)
                memset(res[r], 0, sizeof res[r]);
            cr_assert_eq(gdml_codec_encode_ef(c[r], u[r], res[r], &p, buf, sizeof buf, &len),
                         GDML_OK);
            cr_assert_eq(gdml_codec_decode(buf, len, dec[r], OUTER_N, NULL), GDML_OK);
        }
        const float *du[OUTER_REGIONS], *dd[OUTER_REGIONS];
        for (int r = 0; r < OUTER_REGIONS; r++) {
            du[r] = u[r];
            dd[r] = dec[r];
        }
        gdml_merge_apply(exact, g_exact, du, w, OUTER_REGIONS);
        gdml_merge_apply(lossy, g_lossy, dd, w, OUTER_REGIONS);
        for (int i = 0; i < OUTER_N; i++) {
            double mean_res = 0;
            for (int r = 0; r < OUTER_REGIONS; r++)
                mean_res += w[r] * res[r][i] / 10.0;
            *res_max = fmax(*res_max, fabs(mean_res));
            gap = fmax(gap, fabs((double)g_lossy[i] - g_exact[i]));
        }
    }
    for (int r = 0; r < OUTER_REGIONS; r++)
        gdml_codec_destroy(&c[r]);
    gdml_merge_destroy(&exact);
    gdml_merge_destroy(&lossy);
    return gap;
}

/*
 * Nesterov is linear in the deltas, and with error feedback the decoded
 * deltas sum to the true ones minus the residual. Its response to a unit
 * delta sums to at most lr (1 + mu / (1 - mu)) <= lr / (1 - mu), so the
 * compressed global model stays within 2 lr / (1 - mu) x the largest mean
 * residual of the exact one, whatever the number of rounds: momentum does not
 * amplify what compression leaves out. Without error feedback the gap grows
 * with the rounds and passes that bound.
 */
Test(merge, nesterov_on_error_feedback_deltas_tracks_the_exact_outer_step)
{
    double res_max, bound_ef, res_none;
    double gap = outer_gap(true, &res_max);
    bound_ef = 2 * 0.7 / (1 - 0.9) * res_max;
    cr_assert_gt(res_max, 0, "the residual never held anything: the test compresses nothing");
    cr_assert_leq(gap, bound_ef * 1.01 + 1e-5, "gap %.6g above the bound %.6g", gap, bound_ef);
    double gap_none = outer_gap(false, &res_none);
    cr_assert_gt(gap_none, bound_ef, "without error feedback the gap %.6g should pass %.6g",
                 gap_none, bound_ef);
}
