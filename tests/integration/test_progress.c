/*
 * test_progress.c - what gdml-launch shows, on short real jobs: under a
 * pseudo-terminal the live display (its escapes and fields) and then the
 * final lines; without a terminal the plain lines, with no escape byte; with
 * TERM=dumb plain lines on a terminal too. And gdml-report, which the
 * launcher runs at the end: valid PNG plots, data files with a row per
 * version and bytes that add up to the byte logs, its status and message
 * when gnuplot is missing or the run directory is not one, and a launcher
 * that goes on without gnuplot.
 */
#include "../support.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS "4"

/* argv for the main job of ROUNDS rounds in run_dir, plus extra (NULL-ended). */
static void job_argv(char **argv, const char *run_dir, const char *extra)
{
    size_t k = 0;
    argv[k++] = gdml_test_program("gdml-launch");
    argv[k++] = "--config";
    argv[k++] = gdml_test_source_path("config/local-job.ini");
    argv[k++] = "--run-dir";
    argv[k++] = (char *)run_dir;
    argv[k++] = "--set";
    argv[k++] = "coordinator.rounds=" ROUNDS;
    if (extra) {
        argv[k++] = "--progress";
        argv[k++] = (char *)extra;
    }
    argv[k] = NULL;
}

/*
 * Runs argv on a new pseudo-terminal (100 columns) with TERM=term and, if
 * path is given, PATH=path; returns its exit status and what it wrote
 * (malloc'd, \r removed, in *out).
 */
static int run_on_pty(char **argv, const char *term, const char *path, char **out)
{
    struct winsize ws = {.ws_row = 40, .ws_col = 100};
    int master;
    pid_t pid = forkpty(&master, NULL, NULL, &ws);
    cr_assert_neq(pid, -1, "forkpty: %s", strerror(errno));
    if (pid == 0) {
        setenv("TERM", term, 1);
        unsetenv("NO_COLOR");
        if (path)
            setenv("PATH", path, 1);
        execv(argv[0], argv);
        _exit(127);
    }
    size_t len = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    time_t deadline = time(NULL) + 240;
    for (;;) {
        struct pollfd p = {.fd = master, .events = POLLIN};
        if (poll(&p, 1, 1000) <= 0) {
            if (time(NULL) > deadline) {
                kill(pid, SIGKILL);
                break;
            }
            continue;
        }
        if (len + 4096 > cap)
            buf = realloc(buf, cap *= 2);
        ssize_t n = read(master, buf + len, 4096);
        if (n <= 0)
            break; /* EIO: every writer of the terminal is gone */
        len += (size_t)n;
    }
    close(master);
    int status;
    waitpid(pid, &status, 0);
    size_t w = 0;
    for (size_t r = 0; r < len; r++)
        if (buf[r] != '\r')
            buf[w++] = buf[r];
    buf[w] = '\0';
    *out = buf;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void assert_ends_with_saving(const char *out, const char *run_dir)
{
    char named[4400];
    snprintf(named, sizeof named, "\nsummary: %s/summary.json\n\n", run_dir);
    const char *last = strstr(out, named);
    cr_assert_not_null(last, "it does not name summary.json:\n%s", out);
    last += strlen(named);
    double fewer = 0;
    int used = 0;
    cr_assert(sscanf(last,
                     "%lfx fewer bytes crossed data-center boundaries than copying the raw "
                     "data%n",
                     &fewer, &used) == 1 &&
                  used > 0 && fewer > 1,
              "the last line does not give the saving:\n%s", last);
    cr_assert(strstr(out, "\ndone in "), "%s", out);
}

Test(progress, live_display_under_a_terminal, .timeout = 300)
{
    if (!gdml_test_have_fashion_mnist())
        cr_skip_test("dataset-fashion-mnist is not installed");
    char *dir = gdml_test_tmpdir(), run_dir[4200], *argv[16], *out;
    snprintf(run_dir, sizeof run_dir, "%s/run", dir);
    job_argv(argv, run_dir, NULL); /* auto: a terminal gets the live display */
    int rc = run_on_pty(argv, "xterm", NULL, &out);
    cr_assert_eq(rc, 0, "exited %d:\n%s", rc, out);
    cr_assert(strstr(out, "\033[J"), "no clear-below escape:\n%s", out);
    cr_assert(strstr(out, "A\r\033[J") || strstr(out, "A\033[J"), "never redrawn in place:\n%s",
              out);
    cr_assert(strstr(out, "\033[32m"), "no colour:\n%s", out);
    cr_assert(strstr(out, "version " ROUNDS ", round " ROUNDS " of " ROUNDS), "%s", out);
    cr_assert(strstr(out, "finished in"), "%s", out);
    cr_assert(strstr(out, "  test accuracy 0."), "%s", out);
    cr_assert(strstr(out, "validation 0."), "%s", out);
    cr_assert(strstr(out, "  cross-DC "), "%s", out);
    cr_assert(strstr(out, "raw data 25.20 MB"), "%s", out);
    cr_assert(strstr(out, "  budget: up "), "%s", out);
    const char *regions[] = {"us-east", "eu-west", "ap-south"};
    for (int r = 0; r < 3; r++) {
        char row[64];
        snprintf(row, sizeof row, "  %-12s connected  2/2      v" ROUNDS, regions[r]);
        cr_assert(strstr(out, row), "no '%s':\n%s", row, out);
    }
    cr_assert_null(strstr(out, "version    1  test accuracy"), "plain lines in live:\n%s", out);
    cr_assert(strstr(out, "plot: "), "%s", out);
    assert_ends_with_saving(out, run_dir);
    free(out);
    gdml_test_rmtree(dir);
}

/* The 8 bytes every PNG file starts with. */
static bool is_png(const char *path)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char head[8];
    FILE *f = fopen(path, "rb");
    bool ok = f && fread(head, 1, 8, f) == 8 && memcmp(head, sig, 8) == 0;
    if (f)
        fclose(f);
    return ok;
}

/* Sum of the bytes column of a byte log's rows that match direction (and peer, unless NULL). */
static unsigned long long log_bytes(const char *path, const char *peer, const char *dir)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    char line[512], p[64], d[8];
    unsigned long long sum = 0, bytes;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "%*d,%63[^,],%7[^,],%*[^,],%llu", p, d, &bytes) == 3 &&
            strcmp(d, dir) == 0 && (!peer || strcmp(p, peer) == 0))
            sum += bytes;
    fclose(f);
    return sum;
}

Test(progress, plain_lines_without_a_terminal_and_the_report, .timeout = 300)
{
    if (!gdml_test_have_fashion_mnist())
        cr_skip_test("dataset-fashion-mnist is not installed");
    char *dir = gdml_test_tmpdir(), run_dir[4200], *argv[16], *out;
    snprintf(run_dir, sizeof run_dir, "%s/run", dir);
    job_argv(argv, run_dir, NULL);
    int rc = gdml_test_run(argv, 240, &out);
    cr_assert_eq(rc, 0, "exited %d:\n%s", rc, out);
    cr_assert_null(strchr(out, '\033'), "an escape byte without a terminal:\n%s", out);
    cr_assert_eq(gdml_test_count_lines(out, "version "), 4, "%s", out);
    cr_assert(strstr(out, "version    1  test accuracy 0."), "%s", out);
    assert_ends_with_saving(out, run_dir);

    /* The plots it names exist and are PNG images. */
    const char *plots[] = {"accuracy-time", "accuracy-bytes", "region-bytes", "budget"};
    for (int i = 0; i < 4; i++) {
        char path[4400], line[4500];
        snprintf(path, sizeof path, "%s/plots/%s.png", run_dir, plots[i]);
        snprintf(line, sizeof line, "plot: %s\n", path);
        cr_assert(strstr(out, line), "'%s' not named:\n%s", line, out);
        cr_assert(is_png(path), "%s is not a PNG image", path);
    }
    /* accuracy.dat: one row per version; budget.dat: the bytes of the byte logs. */
    char path[4400];
    snprintf(path, sizeof path, "%s/plots/accuracy.dat", run_dir);
    char *acc = gdml_test_read_file(path);
    cr_assert_not_null(acc);
    cr_assert_eq(gdml_test_count_lines(acc, "#"), 1);
    for (int v = 1; v <= 4; v++) {
        char row[16];
        snprintf(row, sizeof row, "%d ", v);
        cr_assert(strstr(acc, row), "no row for version %d:\n%s", v, acc);
    }
    int rows = 0;
    for (const char *p = acc; (p = strchr(p, '\n')); p++)
        rows++;
    cr_assert_eq(rows, 5, "header and 4 versions:\n%s", acc);
    snprintf(path, sizeof path, "%s/plots/budget.dat", run_dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char line[512], region[64] = "";
    unsigned long long up_sum = 0, down_sum = 0, eu_up = 0, eu_down = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long s, up, down;
        if (sscanf(line, "# region %63[^:]", region) == 1)
            continue;
        if (sscanf(line, "%llu %llu %*f %llu", &s, &up, &down) == 3) {
            up_sum += up;
            down_sum += down;
            if (strcmp(region, "eu-west") == 0) {
                eu_up += up;
                eu_down += down;
            }
        }
    }
    fclose(f);
    char coord_log[4400], eu_log[4400];
    snprintf(coord_log, sizeof coord_log, "%s/logs/bytes-coordinator.csv", run_dir);
    snprintf(eu_log, sizeof eu_log, "%s/logs/bytes-eu-west.csv", run_dir);
    cr_assert_eq(down_sum, log_bytes(coord_log, NULL, "down"));
    cr_assert_eq(eu_down, log_bytes(coord_log, "eu-west", "down"));
    cr_assert_eq(eu_up, log_bytes(eu_log, NULL, "up"));
    /* The main job's top-k (10 %) at 2 bits: at least 785 entries of 2 bits a region and round. */
    cr_assert(up_sum > 3 * 4 * 785 / 4, "up %llu: less than a delta a region and round", up_sum);
    free(acc);
    free(out);

    /* Without gnuplot: status 1, and the message says what to install. */
    char *report = gdml_test_program("gdml-report");
    char *sh = "/bin/sh", script[9000];
    snprintf(script, sizeof script, "PATH=/nonexistent exec %s %s", report, run_dir);
    rc = gdml_test_run((char *[]){sh, "-c", script, NULL}, 60, &out);
    cr_assert_eq(rc, 1, "exited %d: %s", rc, out);
    cr_assert(strstr(out, "gnuplot is not installed") && strstr(out, "gnuplot-nox"), "%s", out);
    free(out);
    /* Not a run directory: status 4, naming what is missing. */
    rc = gdml_test_run((char *[]){report, dir, NULL}, 60, &out);
    cr_assert_eq(rc, 4, "exited %d: %s", rc, out);
    cr_assert(strstr(out, "rounds.csv") && strstr(out, "not a whole run directory"), "%s", out);
    free(out);
    rc = gdml_test_run((char *[]){report, NULL}, 60, &out);
    cr_assert_eq(rc, 2, "exited %d: %s", rc, out);
    free(out);
    rc = gdml_test_run((char *[]){report, "--help", NULL}, 60, &out);
    cr_assert(rc == 0 && strstr(out, "usage: gdml-report RUN_DIR"), "%d: %s", rc, out);
    free(out);
    rc = gdml_test_run((char *[]){report, "--version", NULL}, 60, &out);
    cr_assert(rc == 0 && strstr(out, "gdml-report 0."), "%d: %s", rc, out);
    free(out);
    free(report);
    gdml_test_rmtree(dir);
}

Test(progress, dumb_terminal_plain_lines_and_no_gnuplot, .timeout = 300)
{
    if (!gdml_test_have_fashion_mnist())
        cr_skip_test("dataset-fashion-mnist is not installed");
    char *dir = gdml_test_tmpdir(), run_dir[4200], *argv[16], *out;
    snprintf(run_dir, sizeof run_dir, "%s/run", dir);
    job_argv(argv, run_dir, "auto");
    /* No gnuplot in PATH: the launcher warns and still finishes. */
    int rc = run_on_pty(argv, "dumb", "/nonexistent", &out);
    cr_assert_eq(rc, 0, "exited %d:\n%s", rc, out);
    cr_assert_null(strchr(out, '\033'), "an escape byte on a dumb terminal:\n%s", out);
    cr_assert_eq(gdml_test_count_lines(out, "version "), 4, "%s", out);
    cr_assert(strstr(out, "gdml-launch: warning: no plots"), "%s", out);
    cr_assert(strstr(out, "gnuplot is not installed"), "%s", out);
    assert_ends_with_saving(out, run_dir);
    free(out);

    /* --progress plain on a capable terminal: plain too. */
    snprintf(run_dir, sizeof run_dir, "%s/run2", dir);
    job_argv(argv, run_dir, "plain");
    rc = run_on_pty(argv, "xterm", NULL, &out);
    cr_assert_eq(rc, 0, "exited %d:\n%s", rc, out);
    cr_assert_null(strchr(out, '\033'), "an escape byte with --progress plain:\n%s", out);
    cr_assert_eq(gdml_test_count_lines(out, "version "), 4, "%s", out);
    free(out);
    gdml_test_rmtree(dir);
}
