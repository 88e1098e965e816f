/*
 * test_shutdown.c - SIGTERM to a running job (gdml-launch, which passes it
 * on to every child) stops each program with status 130 within the bound
 * docs/operations.md gives, and leaves a final checkpoint in every store:
 * the coordinator's newest version is the last it committed, and each
 * regional server's newest checkpoint holds every step it trained, taken
 * after the signal. A store that only checkpointed at syncs would lose the
 * steps since the last one. The launcher still draws the run's plots.
 */
#include "../support.h"

#include "store.h"
#include "util.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const regions[] = {"us-east", "eu-west", "ap-south"};

/* The number after the last `key` in a file (a log line's field), or -1. */
static long long last_field(const char *path, const char *key)
{
    char *text = gdml_test_read_file(path);
    cr_assert_not_null(text, "cannot read %s", path);
    long long value = -1;
    for (const char *p = text; (p = strstr(p, key)); p += strlen(key))
        value = strtoll(p + strlen(key), NULL, 10);
    free(text);
    return value;
}

static void open_store(const char *dir, gdml_store **s, gdml_version_meta *newest)
{
    gdml_store_options so = {.read_only = true};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_open(dir, &so, s, &e), GDML_OK, "%s", e.text);
    uint64_t v;
    cr_assert_eq(gdml_store_newest(*s, &v, &e), GDML_OK, "%s: %s", dir, e.text);
    cr_assert_eq(gdml_store_meta(*s, v, newest, &e), GDML_OK, "%s: %s", dir, e.text);
    cr_assert_eq(gdml_store_verify(*s, NULL, NULL, &e), GDML_OK, "%s: %s", dir, e.text);
}

/* A program stops on its own signal (status 130), or, when the one upstream
 * of it took the same signal first, on the STOP that one sends down, which
 * says why. */
static void assert_exit_logged(const char *path)
{
    char *log = gdml_test_read_file(path);
    cr_assert_not_null(log, "cannot read %s", path);
    cr_assert(strstr(log, "exit status=130 why=\"stopped by a signal\"") ||
                  strstr(log, "stop why=\"the coordinator was stopped by a signal\"") ||
                  strstr(log, "stop why=\"the regional server was stopped by a signal\""),
              "%s does not say it stopped on the signal:\n%s", path, log);
    free(log);
}

Test(shutdown, sigterm_leaves_a_final_checkpoint_in_every_store, .timeout = 180)
{
    if (!gdml_test_have_fashion_mnist())
        cr_skip_test("dataset-fashion-mnist is not installed");
    char *dir = gdml_test_tmpdir();
    char run[4200], out[4300], coord_log[4300];
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(out, sizeof out, "%s/launch.out", dir);
    snprintf(coord_log, sizeof coord_log, "%s/logs/coordinator.log", run);
    char *launch = gdml_test_program("gdml-launch");
    char *ini = gdml_test_source_path("config/local-job.ini");
    char *argv[] = {
        launch,       "--config", ini, "--run-dir", run, "--set", "coordinator.rounds=100000",
        "--progress", "plain",    NULL};
    pid_t pid = gdml_test_spawn(argv, out);
    cr_assert(gdml_test_wait_for_text(out, "version    5 ", 120),
              "the job did not reach version 5; see %s", out);

    int64_t signalled_ms = gdml_wall_ms();
    int64_t t0 = gdml_now_ms();
    cr_assert_eq(kill(pid, SIGTERM), 0);
    int rc = gdml_test_wait(pid, 30);
    int64_t took_ms = gdml_now_ms() - t0;
    cr_assert_eq(rc, 130, "gdml-launch should exit 130 on SIGTERM, got %d; see %s", rc, out);
    /* docs/operations.md: a program exits within 6 s of SIGTERM, gdml-launch within 8 s. */
    cr_assert_lt(took_ms, 8000, "the job took %lld ms to stop", (long long)took_ms);

    /* The coordinator's store: its newest version is the last one it committed. */
    char path[4400];
    snprintf(path, sizeof path, "%s/store", run);
    gdml_store *s;
    gdml_version_meta m;
    open_store(path, &s, &m);
    long long committed = last_field(coord_log, " commit version=");
    cr_assert_geq(committed, 5, "no commit in %s", coord_log);
    cr_assert_eq((long long)m.version, committed,
                 "the store's newest version is %llu; the coordinator last committed %lld",
                 (unsigned long long)m.version, committed);
    gdml_store_close(&s);
    assert_exit_logged(coord_log);

    /* Each region's store: a checkpoint written after the signal, holding
     * every step the server says it trained. */
    for (size_t i = 0; i < sizeof regions / sizeof *regions; i++) {
        char log[4400];
        snprintf(log, sizeof log, "%s/logs/server-%s.log", run, regions[i]);
        snprintf(path, sizeof path, "%s/checkpoints/%s", run, regions[i]);
        open_store(path, &s, &m);
        long long steps = last_field(log, " done steps=");
        cr_assert_gt(steps, 0, "%s does not report its steps at exit", log);
        cr_assert_eq((long long)m.lr_steps, steps,
                     "%s's last checkpoint (%llu) holds %.0f steps; the server trained %lld",
                     regions[i], (unsigned long long)m.version, m.lr_steps, steps);
        cr_assert_geq(m.time_ms, signalled_ms,
                      "%s's last checkpoint was written %lld ms before the signal", regions[i],
                      (long long)(signalled_ms - m.time_ms));
        gdml_store_close(&s);
        assert_exit_logged(log);
        for (int w = 0; w < 2; w++) {
            snprintf(log, sizeof log, "%s/logs/worker-%s.w%d.log", run, regions[i], w);
            assert_exit_logged(log);
        }
    }
    /* The launcher drew the plots of what was trained and says how to go on. */
    char *text = gdml_test_read_file(out);
    cr_assert(strstr(text, "plots/accuracy-time.png") && strstr(text, "--resume on"),
              "no plots or no way on after the signal:\n%s", text);
    free(text);
    free(launch);
    free(ini);
    gdml_test_rmtree(dir);
}
