/*
 * test_dp.c - differential privacy on regional deltas, through gdml-launch
 * on the main job: a job within its privacy limit records epsilon with
 * every version and reports it per round and in the summary; an
 * asynchronous job stops cleanly before any region would pass the limit;
 * a synchronous job whose rounds alone would pass it refuses to start,
 * saying what would fit. Under DP the regions send no held-out scores.
 */
#include "../support.h"

#include "dp.h"
#include "store.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The privacy settings every test here runs with: epsilon 12 at 1e-5 allows 4 releases. */
static const gdml_dp_config dp = {
    .clip = 1, .noise_multiplier = 1, .delta = 1e-5, .epsilon_limit = 12};

/*
 * Runs the main job in dir/run (its path into run_dir[4200]) with privacy on
 * and an extra --set override (or NULL); *out gets what it printed. Returns
 * its exit status.
 */
static int run_job(const char *dir, const char *rounds, const char *more, char *run_dir, char **out)
{
    char log[4200];
    snprintf(run_dir, 4200, "%s/run", dir);
    snprintf(log, sizeof log, "%s/run.out", dir);
    char *path = gdml_test_program("gdml-launch");
    char *ini = gdml_test_source_path("config/local-job.ini");
    char set_rounds[64];
    snprintf(set_rounds, sizeof set_rounds, "coordinator.rounds=%s", rounds);
    char *argv[32] = {path,
                      "--config",
                      ini,
                      "--run-dir",
                      (char *)run_dir,
                      "--set",
                      set_rounds,
                      "--set",
                      "privacy.dp=on",
                      "--set",
                      "privacy.clip=1",
                      "--set",
                      "privacy.noise_multiplier=1",
                      "--set",
                      "privacy.epsilon=12",
                      "--set",
                      "privacy.seed=3"};
    size_t k = 17;
    if (more) {
        argv[k++] = "--set";
        argv[k++] = (char *)more;
    }
    argv[k] = NULL;
    int rc = gdml_test_wait(gdml_test_spawn(argv, log), 240);
    *out = gdml_test_read_file(log);
    cr_assert_not_null(*out);
    free(path);
    free(ini);
    return rc;
}

/* Checks every stored version's epsilon: recorded, never falling, the last the summary's. */
static uint64_t check_store(const char *run_dir, double summary_eps)
{
    char store[4300];
    snprintf(store, sizeof store, "%s/store", run_dir);
    gdml_store *s;
    gdml_store_options so = {.read_only = true};
    cr_assert_eq(gdml_store_open(store, &so, &s, NULL), GDML_OK);
    uint64_t n = 0;
    cr_assert_eq(gdml_store_count(s, &n, NULL), GDML_OK);
    double prev = 0;
    for (uint64_t v = 1; v <= n; v++) {
        gdml_version_meta m;
        cr_assert_eq(gdml_store_meta(s, v, &m, NULL), GDML_OK);
        cr_assert_eq(m.dp_delta, 1e-5, "version %llu: delta %g", (unsigned long long)v, m.dp_delta);
        cr_assert(m.epsilon > 0 && m.epsilon >= prev && m.epsilon <= dp.epsilon_limit,
                  "version %llu: epsilon %g after %g", (unsigned long long)v, m.epsilon, prev);
        prev = m.epsilon;
        /* The regions' held-out scores are exact figures of their data: not sent under DP. */
        gdml_score val;
        cr_assert_eq(gdml_store_meta_score(&m, &val), 0, "version %llu has held-out scores",
                     (unsigned long long)v);
    }
    cr_assert_float_eq(prev, summary_eps, 1e-5);
    gdml_store_close(&s);
    return n;
}

Test(dp, a_job_within_its_limit_reports_epsilon_every_round, .timeout = 300)
{
    if (!gdml_test_have_fashion_mnist())
        cr_skip_test("dataset-fashion-mnist is not installed");
    char *dir = gdml_test_tmpdir();
    char run[4200], path[4300];
    char *out = NULL;
    int rc = run_job(dir, "4", NULL, run, &out);
    cr_assert_eq(rc, 0, "the job exited %d:\n%s", rc, out);
    /* Each version line says what was spent: with every region in every
     * round, version v is v releases of each. */
    for (int v = 1; v <= 4; v++) {
        char want[64];
        snprintf(want, sizeof want, "eps=%.3f", gdml_dp_epsilon(&dp, (uint64_t)v));
        cr_assert(strstr(out, want), "no '%s' in:\n%s", want, out);
    }
    cr_assert(strstr(out, "differential privacy: epsilon"), "%s", out);
    snprintf(path, sizeof path, "%s/summary.json", run);
    char *json = gdml_test_read_file(path);
    cr_assert_not_null(json);
    double eps = gdml_test_json_number(json, "epsilon");
    cr_assert_float_eq(eps, gdml_dp_epsilon(&dp, 4), 1e-5, "summary epsilon %g", eps);
    cr_assert(strstr(json, "\"stopped_at_limit\": false"), "%s", json);
    cr_assert_eq(check_store(run, eps), 4);
    /* The models tool shows it. */
    char store[4300];
    snprintf(store, sizeof store, "%s/store", run);
    char *models = gdml_test_program("gdml-models");
    char *shown = NULL;
    cr_assert_eq(gdml_test_run((char *[]){models, "show", "2", "--store", store, NULL}, 30, &shown),
                 0);
    char want[96];
    snprintf(want, sizeof want, "\"privacy\": {\"epsilon\": %.6f, \"delta\": 1e-05}",
             gdml_dp_epsilon(&dp, 2));
    cr_assert(strstr(shown, want), "no '%s' in:\n%s", want, shown);
    free(shown);
    cr_assert_eq(gdml_test_run((char *[]){models, "list", "--store", store, NULL}, 30, &shown), 0);
    snprintf(want, sizeof want, "%8.4f ", gdml_dp_epsilon(&dp, 4));
    cr_assert(strstr(shown, " eps ") && strstr(shown, want), "no eps %s in:\n%s", want, shown);
    free(shown);
    free(models);
    free(json);
    free(out);
    gdml_test_rmtree(dir);
}

Test(dp, an_async_job_stops_before_a_region_passes_the_limit, .timeout = 300)
{
    if (!gdml_test_have_fashion_mnist())
        cr_skip_test("dataset-fashion-mnist is not installed");
    char *dir = gdml_test_tmpdir();
    char run[4200], path[4300];
    char *out = NULL;
    /* Asynchronous: each version merges one delta, so how many each region
     * releases depends on its speed, and only the run can stop it. */
    int rc = run_job(dir, "40", "coordinator.consistency=async", run, &out);
    cr_assert_eq(rc, 0, "a job stopped by its privacy budget ends cleanly; exited %d:\n%s", rc,
                 out);
    cr_assert(strstr(out, "stopped before the next round would pass privacy.epsilon"), "%s", out);
    snprintf(path, sizeof path, "%s/summary.json", run);
    char *json = gdml_test_read_file(path);
    cr_assert_not_null(json);
    cr_assert(strstr(json, "\"stopped_at_limit\": true"), "%s", json);
    /* It stopped exactly when the most active region had released what fits. */
    uint64_t fit = gdml_dp_max_releases(&dp, 1000);
    double eps = gdml_test_json_number(json, "epsilon");
    cr_assert_eq(fit, 4);
    cr_assert_float_eq(eps, gdml_dp_epsilon(&dp, fit), 1e-5, "stopped at epsilon %g", eps);
    uint64_t versions = check_store(run, eps);
    cr_assert(versions >= fit && versions < 40, "%llu versions", (unsigned long long)versions);
    snprintf(path, sizeof path, "%s/logs/coordinator.log", run);
    char *clog = gdml_test_read_file(path);
    cr_assert(clog && strstr(clog, "privacy budget: another round would take epsilon"), "%s", clog);
    free(clog);
    free(json);
    free(out);
    gdml_test_rmtree(dir);
}

Test(dp, a_sync_job_whose_rounds_pass_the_limit_refuses_to_start, .timeout = 120)
{
    if (!gdml_test_have_fashion_mnist())
        cr_skip_test("dataset-fashion-mnist is not installed");
    char *dir = gdml_test_tmpdir();
    char run[4200], path[4300];
    char *out = NULL;
    int rc = run_job(dir, "40", NULL, run, &out);
    cr_assert_neq(rc, 0, "a job that would pass its privacy limit ran:\n%s", out);
    cr_assert(strstr(out, "coordinator exited with status 2"), "%s", out);
    snprintf(path, sizeof path, "%s/logs/coordinator.log", run);
    char *clog = gdml_test_read_file(path);
    char want[160];
    snprintf(want, sizeof want, "coordinator.rounds = 40 would spend epsilon %.4g",
             gdml_dp_epsilon(&dp, 40));
    cr_assert(clog && strstr(clog, want), "no '%s' in:\n%s", want, clog);
    cr_assert(strstr(clog, "Give coordinator.rounds = 4 or fewer"), "%s", clog);
    free(clog);
    free(out);
    gdml_test_rmtree(dir);
}
