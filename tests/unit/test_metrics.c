/* test_metrics.c - the metrics registry and its exposition text (metrics.h), without HTTP. */
#include "metrics.h"
#include "metrics_catalog.h"
#include "msg.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const gdml_metric_def defs[] = {
    {"t_bytes_total",
     GDML_METRIC_COUNTER,
     GDML_ROLE_SERVER,
     {"link", "direction"},
     "bytes, by link"},
    {"t_version",
     GDML_METRIC_GAUGE,
     GDML_ROLE_SERVER | GDML_ROLE_WORKER,
     {NULL},
     "a help with a \\ and\na newline"},
    {"t_worker_only", GDML_METRIC_GAUGE, GDML_ROLE_WORKER, {NULL}, "not the server's"},
};

static gdml_metrics *make(const char *const *consts, size_t max_series)
{
    gdml_metrics *m = NULL;
    gdml_errmsg e;
    cr_assert_eq(gdml_metrics_new(defs, 3, GDML_ROLE_SERVER, max_series, consts, &m, &e), GDML_OK,
                 "%s", e.text);
    return m;
}

static char *render(const gdml_metrics *m)
{
    size_t cap = gdml_metrics_render_bound(m);
    char *buf = malloc(cap);
    cr_assert(buf);
    size_t n = gdml_metrics_render(m, buf, cap);
    cr_assert_eq(strlen(buf), n);
    return buf;
}

Test(metrics, exact_exposition_text)
{
    const char *consts[] = {"role", "server", NULL};
    gdml_metrics *m = make(consts, 8);
    const char *v1[] = {"us-east", "up"}, *v2[] = {"us-east", "down"};
    gdml_metric_count(gdml_metrics_series(m, "t_bytes_total", v1), 1234);
    gdml_metric_count(gdml_metrics_series(m, "t_bytes_total", v2), 0.5);
    gdml_metric_set(gdml_metrics_plain(m, "t_version"), 7);
    char *text = render(m);
    cr_assert_str_eq(text,
                     "# HELP t_bytes_total bytes, by link\n"
                     "# TYPE t_bytes_total counter\n"
                     "t_bytes_total{role=\"server\",link=\"us-east\",direction=\"up\"} 1234\n"
                     "t_bytes_total{role=\"server\",link=\"us-east\",direction=\"down\"} 0.5\n"
                     "# HELP t_version a help with a \\\\ and\\na newline\n"
                     "# TYPE t_version gauge\n"
                     "t_version{role=\"server\"} 7\n");
    free(text);
    gdml_metrics_destroy(&m);
    cr_assert_null(m);
}

Test(metrics, families_of_other_roles_are_left_out)
{
    gdml_metrics *m = make(NULL, 4);
    cr_assert_null(gdml_metrics_plain(m, "t_worker_only"));
    char *text = render(m);
    cr_assert_null(strstr(text, "t_worker_only"));
    cr_assert(strstr(text, "# TYPE t_version gauge\n")); /* HELP and TYPE, with no series yet */
    free(text);
    gdml_metrics_destroy(&m);
}

Test(metrics, label_values_are_escaped)
{
    gdml_metrics *m = make(NULL, 4);
    const char *v[] = {"a\"b\\c\nd", "up"};
    gdml_metric_set(gdml_metrics_series(m, "t_bytes_total", v), 1);
    char *text = render(m);
    cr_assert(strstr(text, "t_bytes_total{link=\"a\\\"b\\\\c\\nd\",direction=\"up\"} 1\n"), "%s",
              text);
    free(text);
    gdml_metrics_destroy(&m);
}

Test(metrics, counters_never_go_down)
{
    gdml_metrics *m = make(NULL, 4);
    const char *v[] = {"x", "up"};
    gdml_metric *c = gdml_metrics_series(m, "t_bytes_total", v);
    gdml_metric_count(c, 10);
    gdml_metric_count(c, 4); /* a running total that was reset must not lower it */
    cr_assert_eq(gdml_metric_value(c), 10);
    gdml_metric_add(c, -3);
    cr_assert_eq(gdml_metric_value(c), 10);
    gdml_metric_add(c, 2.5);
    cr_assert_eq(gdml_metric_value(c), 12.5);
    cr_assert_eq(gdml_metrics_series(m, "t_bytes_total", v), c, "the same labels, the same series");
    gdml_metrics_destroy(&m);
}

Test(metrics, special_and_large_values)
{
    gdml_metrics *m = make(NULL, 4);
    gdml_metric *g = gdml_metrics_plain(m, "t_version");
    gdml_metric_set(g, NAN);
    char *text = render(m);
    cr_assert(strstr(text, "t_version NaN\n"), "%s", text);
    free(text);
    gdml_metric_set(g, INFINITY);
    text = render(m);
    cr_assert(strstr(text, "t_version +Inf\n"), "%s", text);
    free(text);
    gdml_metric_set(g, 9007199254740992.0); /* 2^53: every byte count up to it is exact */
    text = render(m);
    cr_assert(strstr(text, "t_version 9007199254740992\n"), "%s", text);
    free(text);
    gdml_metric_set(g, 0.1);
    text = render(m);
    cr_assert(strstr(text, "t_version 0.1\n"), "%s", text);
    free(text);
    gdml_metrics_destroy(&m);
}

Test(metrics, series_are_bounded_and_render_fits_its_bound)
{
    gdml_metrics *m = make(NULL, 3);
    char name[GDML_METRIC_LABEL_MAX + 10];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    const char *v1[] = {name, "\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\""},
               *v2[] = {"b", "up"}, *v3[] = {"c", "up"};
    cr_assert_not_null(gdml_metrics_series(m, "t_bytes_total", v1));
    cr_assert_not_null(gdml_metrics_series(m, "t_bytes_total", v2));
    cr_assert_not_null(gdml_metrics_plain(m, "t_version"));
    cr_assert_null(gdml_metrics_series(m, "t_bytes_total", v3), "past max_series: refused");
    gdml_metric_set(gdml_metrics_plain(m, "t_version"), -1.2345678901234567e-300);
    size_t bound = gdml_metrics_render_bound(m);
    char *buf = malloc(bound + 64);
    memset(buf, 'X', bound + 64);
    size_t n = gdml_metrics_render(m, buf, bound);
    cr_assert_lt(n, bound);
    cr_assert_eq(buf[n], '\0');
    cr_assert_eq(buf[n - 1], '\n');
    cr_assert_eq(buf[bound], 'X', "nothing written past the bound");
    /* A small buffer gets whole lines only. */
    size_t cut = gdml_metrics_render(m, buf, 60);
    cr_assert_lt(cut, 60);
    cr_assert(cut == 0 || buf[cut - 1] == '\n');
    free(buf);
    gdml_metrics_destroy(&m);
}

Test(metrics, bad_definitions_are_refused)
{
    gdml_metrics *m = NULL;
    gdml_errmsg e;
    gdml_metric_def bad_counter = {"t_bytes", GDML_METRIC_COUNTER, 1, {NULL}, "x"};
    cr_assert_eq(gdml_metrics_new(&bad_counter, 1, 1, 4, NULL, &m, &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "_total"), "%s", e.text);
    gdml_metric_def bad_name = {"t-bytes", GDML_METRIC_GAUGE, 1, {NULL}, "x"};
    cr_assert_eq(gdml_metrics_new(&bad_name, 1, 1, 4, NULL, &m, &e), GDML_ERR_INVALID);
    gdml_metric_def bad_label = {"t_g", GDML_METRIC_GAUGE, 1, {"__x"}, "x"};
    cr_assert_eq(gdml_metrics_new(&bad_label, 1, 1, 4, NULL, &m, &e), GDML_ERR_INVALID);
    gdml_metric_def twice[] = {{"t_g", GDML_METRIC_GAUGE, 1, {NULL}, "x"},
                               {"t_g", GDML_METRIC_GAUGE, 1, {NULL}, "y"}};
    cr_assert_eq(gdml_metrics_new(twice, 2, 1, 4, NULL, &m, &e), GDML_ERR_INVALID);
    cr_assert_null(m);
}

Test(metrics, null_registry_is_a_no_op)
{
    gdml_metrics *m = NULL;
    cr_assert_null(gdml_metrics_plain(m, "t_version"));
    gdml_metric_set(NULL, 1);
    gdml_metric_count(NULL, 1);
    cr_assert(isnan(gdml_metric_value(NULL)));
    gdml_metrics_count_reasons(NULL, (uint64_t[GDML_REASON_COUNT]){0});
    gdml_metrics_destroy(&m);
    gdml_metrics_destroy(NULL);
}

Test(metrics, the_catalogue_is_valid_and_every_role_has_metrics)
{
    unsigned roles[] = {GDML_ROLE_COORDINATOR, GDML_ROLE_SERVER, GDML_ROLE_WORKER};
    for (size_t r = 0; r < 3; r++) {
        gdml_metrics *m = NULL;
        gdml_errmsg e;
        cr_assert_eq(gdml_metrics_new(gdml_metric_catalog, gdml_metric_catalog_n, roles[r], 64,
                                      NULL, &m, &e),
                     GDML_OK, "%s", e.text);
        char *text = render(m);
        cr_assert(strstr(text, "# TYPE gdml_build_info gauge\n"));
        free(text);
        gdml_metrics_destroy(&m);
    }
    for (size_t i = 0; i < gdml_metric_catalog_n; i++)
        cr_assert(strncmp(gdml_metric_catalog[i].name, "gdml_", 5) == 0, "%s",
                  gdml_metric_catalog[i].name);
}

Test(metrics, rejected_messages_by_reason)
{
    gdml_metrics *m = NULL;
    gdml_errmsg e;
    cr_assert_eq(gdml_metrics_new(gdml_metric_catalog, gdml_metric_catalog_n, GDML_ROLE_WORKER, 64,
                                  NULL, &m, &e),
                 GDML_OK);
    uint64_t counts[GDML_REASON_COUNT] = {0};
    counts[GDML_REASON_NOT_MEMBER] = 3;
    gdml_metrics_count_reasons(m, counts);
    char *text = render(m);
    cr_assert(strstr(text, "gdml_rejected_messages_total{reason=\"not_a_member\"} 3\n"), "%s",
              text);
    cr_assert_null(strstr(text, "reason=\"stale\""), "no series for a reason that did not happen");
    free(text);
    gdml_metrics_destroy(&m);
}
