/*
 * test_holdout.c - a worker's validation rows (holdout.h): how many are
 * held out, that the split is the same for the same seed and another for
 * another, that held-out and training rows are disjoint and together the
 * whole shard in their order, and that a holdout of 0 changes nothing.
 */
#include "holdout.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#define DIM 3

/* n rows whose first feature is the row's index and label its index mod 10. */
static gdml_dataset make_rows(size_t n)
{
    gdml_dataset ds = {.n = n, .dim = DIM, .classes = 10};
    ds.x = malloc(n * DIM * sizeof(float));
    ds.y = malloc(n);
    cr_assert(ds.x && ds.y);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < DIM; j++)
            ds.x[i * DIM + j] = (float)i + (float)j * 0.25f;
        ds.y[i] = (uint8_t)(i % 10);
    }
    return ds;
}

/* The original index of each row of ds. */
static void indices(const gdml_dataset *ds, size_t *out)
{
    for (size_t i = 0; i < ds->n; i++) {
        size_t row = (size_t)ds->x[i * DIM];
        cr_assert_eq(ds->x[i * DIM + 2], (float)row + 0.5f, "row %zu's features were mixed", i);
        cr_assert_eq(ds->y[i], row % 10, "row %zu's label is not its own", i);
        out[i] = row;
    }
}

/*
 * Splits n rows, held as sparse rows if sparse, and returns the held-out
 * rows' original indices (malloc'd; *k of them).
 */
static size_t *split_as(size_t n, double fraction, size_t max_rows, uint64_t seed, bool sparse,
                        size_t *k)
{
    gdml_dataset ds = make_rows(n), held;
    gdml_errmsg e = {{0}};
    if (sparse)
        cr_assert_eq(gdml_dataset_sparsify(&ds, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_holdout_take(&ds, fraction, max_rows, seed, &held, &e), GDML_OK, "%s",
                 e.text);
    if (sparse) {
        cr_assert(gdml_dataset_sparse(&ds) && (held.n == 0 || gdml_dataset_sparse(&held)));
        cr_assert_eq(gdml_dataset_densify(&ds, &e), GDML_OK, "%s", e.text);
        if (held.n)
            cr_assert_eq(gdml_dataset_densify(&held, &e), GDML_OK, "%s", e.text);
    }
    cr_assert_eq(ds.n + held.n, n);
    cr_assert_eq(held.dim, DIM);
    cr_assert_eq(held.classes, 10);
    size_t *train = malloc((ds.n + 1) * sizeof *train), *hold = malloc((held.n + 1) * sizeof *hold);
    indices(&ds, train);
    indices(&held, hold);
    /* Disjoint, the whole shard, each part in the shard's order. */
    uint8_t *seen = calloc(n, 1);
    for (size_t i = 0; i < ds.n; i++) {
        cr_assert(i == 0 || train[i] > train[i - 1], "training rows out of order");
        seen[train[i]]++;
    }
    for (size_t i = 0; i < held.n; i++) {
        cr_assert(i == 0 || hold[i] > hold[i - 1], "held-out rows out of order");
        cr_assert_eq(seen[hold[i]], 0, "row %zu is held out and trained on", hold[i]);
        seen[hold[i]]++;
    }
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(seen[i], 1, "row %zu is lost", i);
    free(seen);
    free(train);
    *k = held.n;
    gdml_dataset_fini(&ds);
    gdml_dataset_fini(&held);
    return hold;
}

static size_t *split(size_t n, double fraction, size_t max_rows, uint64_t seed, size_t *k)
{
    return split_as(n, fraction, max_rows, seed, false, k);
}

Test(holdout, count_is_the_fraction_bounded_by_max_rows)
{
    cr_assert_eq(gdml_holdout_count(1000, 0.1, 512), 100);
    cr_assert_eq(gdml_holdout_count(1000, 0.1, 64), 64);
    cr_assert_eq(gdml_holdout_count(1009, 0.1, 512), 100); /* floor */
    cr_assert_eq(gdml_holdout_count(9, 0.1, 512), 0);
    cr_assert_eq(gdml_holdout_count(1000, 0.0, 512), 0);
    cr_assert_eq(gdml_holdout_count(7, 0.5, 512), 3); /* never more than the rest */
    cr_assert_eq(gdml_holdout_count(0, 0.5, 512), 0);
}

Test(holdout, the_split_is_disjoint_and_the_same_for_the_same_seed)
{
    size_t ka, kb, kc;
    size_t *a = split(5000, 0.1, 300, 7, &ka);
    size_t *b = split(5000, 0.1, 300, 7, &kb);
    size_t *c = split(5000, 0.1, 300, 8, &kc);
    cr_assert_eq(ka, 300);
    cr_assert_eq(kb, 300);
    cr_assert_eq(kc, 300);
    cr_assert_arr_eq(a, b, ka * sizeof *a, "the same seed gave another split");
    cr_assert(memcmp(a, c, ka * sizeof *a) != 0, "another seed gave the same split");
    /* Spread over the shard, not its first or last rows. */
    cr_assert_lt(a[0], 200);
    cr_assert_gt(a[ka - 1], 4800);
    free(a);
    free(b);
    free(c);
}

Test(holdout, half_of_a_small_shard_at_most)
{
    size_t k;
    size_t *h = split(11, 0.5, 512, 3, &k);
    cr_assert_eq(k, 5);
    free(h);
}

Test(holdout, none_leaves_the_shard_as_it_was)
{
    gdml_dataset ds = make_rows(100), held;
    memset(&held, 0x5a, sizeof held);
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_holdout_take(&ds, 0.0, 512, 1, &held, &e), GDML_OK);
    cr_assert_eq(ds.n, 100);
    cr_assert_eq(held.n, 0);
    cr_assert_null(held.x);
    cr_assert_null(held.y);
    for (size_t i = 0; i < 100; i++)
        cr_assert_eq(ds.x[i * DIM], (float)i);
    gdml_dataset_fini(&held); /* safe on what it returned */
    gdml_dataset_fini(&ds);
}

Test(holdout, a_fraction_out_of_range_is_refused_and_changes_nothing)
{
    gdml_dataset ds = make_rows(100), held;
    memset(&held, 0x5a, sizeof held);
    const double bad[] = {-0.1, 0.51, 1.0, __builtin_nan("")};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gdml_errmsg e = {{0}};
        cr_assert_eq(gdml_holdout_take(&ds, bad[i], 512, 1, &held, &e), GDML_ERR_INVALID);
        cr_assert(strstr(e.text, "give 0 (none) to 0.5"), "message: %s", e.text);
        cr_assert_eq(ds.n, 100);
        cr_assert_eq(held.n, (size_t)0x5a5a5a5a5a5a5a5a, "out written on failure");
    }
    gdml_dataset_fini(&ds);
}

Test(holdout, sparse_rows_are_held_out_as_dense_ones_are)
{
    size_t kd, ks;
    size_t *d = split_as(3000, 0.2, 400, 11, false, &kd);
    size_t *sp = split_as(3000, 0.2, 400, 11, true, &ks);
    cr_assert_eq(kd, 400);
    cr_assert_eq(ks, kd);
    cr_assert_arr_eq(sp, d, kd * sizeof *d, "the same seed chose other rows for sparse rows");
    free(d);
    free(sp);
}
