/*
 * test_store_audit.c - the store's history audit: gaps in the version
 * numbers and deltas merged twice are found and named; a clean history,
 * including a region that sat out rounds or restarted with a higher
 * sequence number, passes.
 */
#include "../support.h"

#include "store.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

typedef struct contrib {
    const char *region;
    uint64_t seq, samples;
} contrib;

static void commit(gdml_store *s, uint64_t v, const contrib *c, size_t n)
{
    gdml_version_meta m;
    memset(&m, 0, sizeof m);
    m.version = v;
    m.parent = v - 1;
    m.round = v;
    snprintf(m.rule, sizeof m.rule, "fedavg");
    m.n_regions = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        snprintf(m.regions[i].name, sizeof m.regions[i].name, "%s", c[i].region);
        m.regions[i].seq = c[i].seq;
        m.regions[i].samples = c[i].samples;
    }
    float params[2] = {1, 2};
    gdml_store_tensor t = {"params", params, 2};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_commit(s, &m, "softmax:1x1+1", &t, 1, &e), GDML_OK, "%s", e.text);
}

static gdml_store *open_store(char *dir)
{
    gdml_store *s;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_open(dir, NULL, &s, &e), GDML_OK, "%s", e.text);
    return s;
}

Test(store_audit, a_clean_history_passes)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = open_store(dir);
    commit(s, 1, (contrib[]){{"a", 10, 5}, {"b", 20, 5}}, 2);
    /* b sits out a round: its seq stays, its weight is 0. */
    commit(s, 2, (contrib[]){{"a", 11, 5}, {"b", 20, 0}}, 2);
    /* b restarted: a far higher sequence number. */
    commit(s, 3, (contrib[]){{"a", 12, 5}, {"b", 90000, 5}}, 2);
    gdml_store_audit a;
    cr_assert_eq(gdml_store_audit_history(s, &a, NULL), GDML_OK);
    cr_assert_eq(a.versions, 3);
    cr_assert_eq(a.first, 1);
    cr_assert_eq(a.last, 3);
    cr_assert_eq(a.missing, 0);
    cr_assert_eq(a.contributions, 5);
    cr_assert_eq(a.double_merges, 0);
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

Test(store_audit, a_delta_merged_twice_is_named)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = open_store(dir);
    commit(s, 1, (contrib[]){{"a", 10, 5}, {"b", 20, 5}}, 2);
    commit(s, 2, (contrib[]){{"a", 11, 5}, {"b", 21, 5}}, 2);
    commit(s, 3, (contrib[]){{"a", 12, 5}, {"b", 21, 5}}, 2); /* b's delta 21 again */
    commit(s, 4, (contrib[]){{"a", 11, 5}, {"b", 22, 5}}, 2); /* a's goes backwards */
    gdml_store_audit a;
    cr_assert_eq(gdml_store_audit_history(s, &a, NULL), GDML_OK);
    cr_assert_eq(a.double_merges, 2);
    cr_assert_eq(a.double_version, 3);
    cr_assert_str_eq(a.double_region, "b");
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

Test(store_audit, missing_versions_are_counted)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = open_store(dir);
    commit(s, 2, (contrib[]){{"a", 1, 5}}, 1);
    commit(s, 3, (contrib[]){{"a", 2, 5}}, 1);
    commit(s, 7, (contrib[]){{"a", 3, 5}}, 1);
    gdml_store_audit a;
    cr_assert_eq(gdml_store_audit_history(s, &a, NULL), GDML_OK);
    cr_assert_eq(a.first, 2);
    cr_assert_eq(a.last, 7);
    cr_assert_eq(a.missing, 3);
    cr_assert_eq(a.double_merges, 0);
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

Test(store_audit, an_empty_store_has_no_history)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = open_store(dir);
    gdml_store_audit a;
    memset(&a, 0xff, sizeof a);
    cr_assert_eq(gdml_store_audit_history(s, &a, NULL), GDML_OK);
    cr_assert_eq(a.versions, 0);
    cr_assert_eq(a.missing, 0);
    cr_assert_eq(a.double_merges, 0);
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}
