/*
 * test_optim.c - the regional server's optimizers: each step against the
 * formula worked by hand, a step of one range leaving the rest alone, the
 * state a checkpoint keeps, bad hyperparameters refused, and each reaching
 * the minimum of a quadratic.
 */
#include "optim.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

static gdml_optim *make(const char *kind)
{
    gdml_optim_config c = {.kind = kind, .momentum = 0.5, .beta1 = 0.9, .beta2 = 0.99,
                           .epsilon = 1e-8};
    gdml_optim *o = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_optim_new(&c, 4, &o, &e), GDML_OK, "%s", e.text);
    return o;
}

Test(optim, sgd_steps_against_the_gradient_and_keeps_no_state)
{
    gdml_optim *o = make("sgd");
    float x[4] = {1, 2, 3, 4}, g[4] = {1, -1, 0.5f, 0};
    gdml_optim_step(o, 0, 4, g, 0.1f, 1, x);
    float want[4] = {0.9f, 2.1f, 2.95f, 4};
    for (int i = 0; i < 4; i++)
        cr_assert_float_eq(x[i], want[i], 1e-6);
    size_t n;
    gdml_optim_state(o, &n);
    cr_assert_eq(n, 0);
    gdml_optim_destroy(&o);
    cr_assert_null(o);
}

Test(optim, momentum_accumulates_velocity)
{
    gdml_optim *o = make("momentum");
    float x[4] = {0}, g[4] = {1, 2, -1, 0};
    gdml_optim_step(o, 0, 4, g, 0.1f, 1, x); /* v = g; x = -0.1 g */
    gdml_optim_step(o, 0, 4, g, 0.1f, 2, x); /* v = 0.5 g + g; x = -0.1 g - 0.15 g */
    for (int i = 0; i < 4; i++)
        cr_assert_float_eq(x[i], -0.25f * g[i], 1e-6, "entry %d: %g", i, (double)x[i]);
    size_t n;
    float *const *s = gdml_optim_state(o, &n);
    cr_assert_eq(n, 1);
    cr_assert_float_eq(s[0][1], 3.0f, 1e-6, "velocity %g", (double)s[0][1]);
    gdml_optim_destroy(&o);
}

Test(optim, adam_is_bias_corrected_from_the_first_step)
{
    gdml_optim *o = make("adam");
    float x[4] = {0}, g[4] = {0.001f, -100, 3, 0};
    /* Step 1: m^ = g, s^ = g^2, so each entry moves by lr * sign(g). */
    gdml_optim_step(o, 0, 4, g, 0.01f, 1, x);
    float want1[4] = {-0.01f, 0.01f, -0.01f, 0};
    for (int i = 0; i < 4; i++)
        cr_assert_float_eq(x[i], want1[i], 1e-5, "entry %d: %g", i, (double)x[i]);
    /* Step 2 with gradient 2g, worked by hand for entry 2. */
    float g2[4] = {0.002f, -200, 6, 0};
    gdml_optim_step(o, 0, 4, g2, 0.01f, 2, x);
    double m = 0.9 * (0.1 * 3) + 0.1 * 6, s = 0.99 * (0.01 * 9) + 0.01 * 36;
    double mh = m / (1 - 0.81), sh = s / (1 - 0.9801);
    double want = -0.01 - 0.01 * mh / (sqrt(sh) + 1e-8);
    cr_assert(fabs(x[2] - want) < 1e-6, "entry 2: %.7f, by hand %.7f", (double)x[2], want);
    size_t n;
    gdml_optim_state(o, &n);
    cr_assert_eq(n, 2);
    gdml_optim_destroy(&o);
}

Test(optim, a_step_of_one_range_leaves_the_rest_and_its_state_alone)
{
    const char *kinds[] = {"sgd", "momentum", "adam"};
    for (size_t k = 0; k < 3; k++) {
        gdml_optim *o = make(kinds[k]);
        float x[4] = {1, 1, 1, 1}, g[2] = {1, 1};
        gdml_optim_step(o, 2, 2, g, 0.1f, 1, x + 2);
        cr_assert(x[0] == 1 && x[1] == 1, "%s moved entries outside the range", kinds[k]);
        cr_assert(x[2] < 1 && x[3] < 1, "%s did not move the range", kinds[k]);
        size_t n;
        float *const *s = gdml_optim_state(o, &n);
        for (size_t t = 0; t < n; t++)
            cr_assert(s[t][0] == 0 && s[t][1] == 0 && s[t][2] != 0,
                      "%s: state %zu outside the range changed, or inside did not", kinds[k], t);
        gdml_optim_destroy(&o);
    }
}

Test(optim, bad_kinds_and_hyperparameters_are_refused)
{
    struct {
        gdml_optim_config c;
        const char *says;
    } cases[] = {
        {{.kind = "rmsprop"}, "optimizer 'rmsprop' is not known (known: sgd, momentum, adam)"},
        {{.kind = NULL}, "is not known"},
        {{.kind = "momentum", .momentum = 1.0}, "momentum 1 is not in [0, 1)"},
        {{.kind = "momentum", .momentum = -0.1}, "is not in [0, 1)"},
        {{.kind = "adam", .beta1 = 1.0, .beta2 = 0.9, .epsilon = 1e-8}, "adam needs beta1"},
        {{.kind = "adam", .beta1 = 0.9, .beta2 = 0.9, .epsilon = 0}, "epsilon > 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gdml_optim *o = (gdml_optim *)&cases; /* must be cleared */
        gdml_errmsg e = {{0}};
        cr_assert_eq(gdml_optim_new(&cases[i].c, 4, &o, &e), GDML_ERR_INVALID, "case %zu", i);
        cr_assert_null(o, "case %zu", i);
        cr_assert(strstr(e.text, cases[i].says), "case %zu: '%s' lacks '%s'", i, e.text,
                  cases[i].says);
    }
    cr_assert(gdml_optim_kind_ok("adam") && !gdml_optim_kind_ok("Adam"));
}

Test(optim, each_reaches_the_minimum_of_a_quadratic)
{
    const char *kinds[] = {"sgd", "momentum", "adam"};
    const float c[4] = {3, -2, 0.5f, 10};
    for (size_t k = 0; k < 3; k++) {
        gdml_optim *o = make(kinds[k]);
        float x[4] = {0}, g[4];
        for (uint64_t t = 1; t <= 3000; t++) {
            for (int i = 0; i < 4; i++)
                g[i] = 2 * (x[i] - c[i]); /* the gradient of |x - c|^2 */
            gdml_optim_step(o, 0, 4, g, kinds[k][0] == 'a' ? 0.05f : 0.1f, t, x);
        }
        for (int i = 0; i < 4; i++)
            cr_assert(fabsf(x[i] - c[i]) < 1e-2f, "%s: entry %d at %g, the minimum at %g",
                      kinds[k], i, (double)x[i], (double)c[i]);
        gdml_optim_destroy(&o);
    }
}
