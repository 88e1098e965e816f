/*
 * report_tool.c - gdml-report RUN_DIR: a run's figures as plots.
 *
 * From rounds.csv and logs/bytes-*.csv (report_data.h) it writes, into
 * RUN_DIR/plots/, the data files gnuplot reads (accuracy.dat, bytes.dat,
 * budget.dat), the script that draws them (report.gp), and runs gnuplot on
 * it: accuracy against time and against cross-DC MB, each region's bytes
 * over time, and each link's bytes per second against its budget. PNG when
 * gnuplot has its png terminal, SVG otherwise. It prints one line per plot.
 *
 * Exit statuses (docs/operations.md): 0 done; 1 gnuplot is missing or
 * failed; 2 bad command line; 4 the run directory lacks rounds.csv or
 * logs/bytes-coordinator.csv, or one of them is malformed.
 */
#include "program.h"
#include "report_data.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define PLOT_COUNT 4
static const char *const plot_names[PLOT_COUNT] = {"accuracy-time", "accuracy-bytes",
                                                   "region-bytes", "budget"};

static int usage(FILE *to)
{
    fprintf(to, "usage: gdml-report RUN_DIR\n"
                "Draws a run's figures with gnuplot into RUN_DIR/plots/: accuracy against time "
                "and against\ncross-DC MB, each region's WAN bytes, and each link's bytes per "
                "second against its budget.\nExit status: 0 done, 1 gnuplot missing or failed, "
                "2 bad usage, 4 run directory incomplete.\n");
    return to == stdout ? 0 : 2;
}

static FILE *open_out(const char *dir, const char *name, char *path, gdml_errmsg *e)
{
    snprintf(path, PATH_MAX, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        gdml_errmsg_set(e, GDML_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    return f;
}

static gdml_err close_out(FILE *f, const char *path, gdml_errmsg *e)
{
    if (fclose(f) != 0)
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    return GDML_OK;
}

/* accuracy.dat: one row per version; bytes.dat and budget.dat: a block per region. */
static gdml_err write_data(const char *dir, const gdml_report_round *rounds, size_t n_rounds,
                           const gdml_report_bytes *b, gdml_errmsg *e)
{
    char path[PATH_MAX];
    FILE *f = open_out(dir, "accuracy.dat", path, e);
    if (!f)
        return GDML_ERR_IO;
    fprintf(f, "# version elapsed_s accuracy cross_dc_mb\n");
    for (size_t i = 0; i < n_rounds; i++)
        fprintf(f, "%llu %.3f %.6f %.6f\n", (unsigned long long)rounds[i].version,
                rounds[i].elapsed_s, rounds[i].accuracy,
                (double)(rounds[i].wan_up + rounds[i].wan_down) / 1e6);
    gdml_err err = close_out(f, path, e);
    if (err || !(f = open_out(dir, "bytes.dat", path, e)))
        return err ? err : GDML_ERR_IO;
    for (size_t l = 0; l < b->n_links; l++) {
        const gdml_report_link *k = &b->links[l];
        fprintf(f, "%s# region %s: second up_mb down_mb (so far)\n", l ? "\n\n" : "", k->region);
        uint64_t up = 0, down = 0;
        for (size_t s = 0; s < k->seconds; s++) {
            up += k->up[s];
            down += k->down[s];
            fprintf(f, "%zu %.6f %.6f\n", s + 1, (double)up / 1e6, (double)down / 1e6);
        }
    }
    if ((err = close_out(f, path, e)) || !(f = open_out(dir, "budget.dat", path, e)))
        return err ? err : GDML_ERR_IO;
    for (size_t l = 0; l < b->n_links; l++) {
        const gdml_report_link *k = &b->links[l];
        fprintf(f, "%s# region %s: second up_bytes up_budget down_bytes down_budget\n",
                l ? "\n\n" : "", k->region);
        for (size_t s = 0; s < k->seconds; s++)
            fprintf(f, "%zu %llu %.0f %llu %.0f\n", s, (unsigned long long)k->up[s], k->up_rate[s],
                    (unsigned long long)k->down[s], k->down_rate[s]);
    }
    return close_out(f, path, e);
}

/* Runs argv[0] from PATH with stdout and stderr into log (or nowhere); its status, or -1. */
static int run(char *const argv[], const char *log)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log ? log : "/dev/null",
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The gnuplot script: one plot per output file, reading the data files above. */
static gdml_err write_script(const char *dir, const char *ext, const gdml_report_bytes *b,
                             char *script, gdml_errmsg *e)
{
    FILE *f = open_out(dir, "report.gp", script, e);
    if (!f)
        return GDML_ERR_IO;
    bool png = strcmp(ext, "png") == 0;
    fprintf(f, "# Written by gdml-report; run again with: gnuplot report.gp (in this folder)\n");
    fprintf(f, "set terminal %s size 900,%s\n", png ? "png" : "svg", "500");
    fprintf(f, "cd '%s'\nset grid\nset key bottom right\n", dir);
    fprintf(f,
            "set output 'accuracy-time.%s'\nset title 'Global model: test accuracy over time'\n"
            "set xlabel 'seconds since the launcher started'\nset ylabel 'test accuracy'\n"
            "plot 'accuracy.dat' using 2:3 with linespoints title 'test accuracy'\n",
            ext);
    fprintf(f,
            "set output 'accuracy-bytes.%s'\n"
            "set title 'Global model: test accuracy against cross-DC traffic'\n"
            "set xlabel 'cross-DC MB so far (up + down)'\n"
            "plot 'accuracy.dat' using 4:3 with linespoints title 'test accuracy'\n",
            ext);
    fprintf(f,
            "set output 'region-bytes.%s'\nset title 'WAN bytes per region (so far)'\n"
            "set xlabel 'seconds since the first WAN message'\nset ylabel 'MB'\n"
            "set key top left\nplot ",
            ext);
    for (size_t l = 0; l < b->n_links; l++)
        fprintf(f,
                "%s'bytes.dat' index %zu using 1:2 with lines lw 2 lc %zu title '%s up', "
                "'bytes.dat' index %zu using 1:3 with lines dt 2 lc %zu title '%s down'",
                l ? ", \\\n     " : "", l, l + 1, b->links[l].region, l, l + 1, b->links[l].region);
    fprintf(f, "%s\n", b->n_links ? "" : "NaN notitle");
    /* One panel per link: bytes in each second against the budget of that second. */
    size_t panels = b->n_links ? b->n_links : 1;
    fprintf(f, "set terminal %s size 900,%zu\nset output 'budget.%s'\n", png ? "png" : "svg",
            260 * panels, ext);
    fprintf(f, "set multiplot layout %zu,1 title 'Budget use: bytes per second per link'\n",
            panels);
    fprintf(f, "set xlabel 'seconds since the first WAN message'\nset ylabel 'bytes/s'\n"
               "set key top right\n");
    for (size_t l = 0; l < b->n_links; l++) {
        const gdml_report_link *k = &b->links[l];
        char up[64], down[64];
        snprintf(up, sizeof up, k->up_budget > 0 ? "up budget" : "up budget: unlimited");
        snprintf(down, sizeof down, k->down_budget > 0 ? "down budget" : "down budget: unlimited");
        fprintf(f,
                "set title '%s'\nplot 'budget.dat' index %zu using 1:2 with steps lw 2 title "
                "'up', '' index %zu using 1:4 with steps title 'down', "
                "'' index %zu using 1:($3 > 0 ? $3 : NaN) with lines dt 2 lw 2 title '%s', "
                "'' index %zu using 1:($5 > 0 ? $5 : NaN) with lines dt 3 title '%s'\n",
                k->region, l, l, l, up, l, down);
    }
    if (!b->n_links)
        fprintf(f, "set title 'no WAN messages logged'\nplot NaN notitle\n");
    fprintf(f, "unset multiplot\n");
    return close_out(f, script, e);
}

static gdml_err report(const char *run_dir, gdml_errmsg *e)
{
    /* Room for the names appended to the run directory's path. */
    char path[PATH_MAX], plots[PATH_MAX - 64], logs[PATH_MAX], script[PATH_MAX], log[PATH_MAX];
    struct stat st;
    if (strlen(run_dir) >= sizeof plots - 8)
        return gdml_errmsg_set(e, GDML_ERR_CONFIG, "the run directory's path is too long");
    if (stat(run_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return gdml_errmsg_set(e, GDML_ERR_CONFIG,
                               "'%s' is not a directory: give a run "
                               "directory (gdml-launch's, under runs/)",
                               run_dir);
    gdml_report_round *rounds = NULL;
    size_t n_rounds = 0;
    gdml_report_bytes bytes = {0};
    snprintf(path, sizeof path, "%s/rounds.csv", run_dir);
    snprintf(logs, sizeof logs, "%s/logs", run_dir);
    snprintf(plots, sizeof plots, "%s/plots", run_dir);
    gdml_err err = gdml_report_read_rounds(path, &rounds, &n_rounds, e);
    if (!err)
        err = gdml_report_read_bytes(logs, &bytes, e);
    if (err == GDML_ERR_NOTFOUND) {
        char what[GDML_ERRMSG_MAX]; /* e's text is rewritten below */
        snprintf(what, sizeof what, "%s", e->text);
        err = gdml_errmsg_set(e, GDML_ERR_FORMAT,
                              "%s; '%s' is not a whole run directory (gdml-launch writes "
                              "rounds.csv and logs/bytes-*.csv)",
                              what, run_dir);
    }
    if (!err && n_rounds == 0)
        err = gdml_errmsg_set(e, GDML_ERR_FORMAT, "'%s' has no version yet: nothing to plot", path);
    if (!err)
        err = gdml_mkdir_p(plots, e);
    if (!err)
        err = write_data(plots, rounds, n_rounds, &bytes, e);
    /* gnuplot-nox has the png terminal (libgd); a build without it gets SVG. */
    const char *ext = "png";
    if (!err) {
        char *probe[] = {"gnuplot", "-e", "set terminal png", NULL};
        int rc = run(probe, NULL);
        if (rc < 0)
            err = gdml_errmsg_set(e, GDML_ERR_IO,
                                  "gnuplot is not installed (or not in PATH): install it, "
                                  "e.g. apt-get install gnuplot-nox; the data files are in %s",
                                  plots);
        else if (rc != 0)
            ext = "svg";
    }
    if (!err)
        err = write_script(plots, ext, &bytes, script, e);
    if (!err) {
        snprintf(log, sizeof log, "%s/gnuplot.log", plots);
        char *argv[] = {"gnuplot", script, NULL};
        int rc = run(argv, log);
        if (rc != 0)
            err = gdml_errmsg_set(e, GDML_ERR_IO, "gnuplot %s exited with status %d; see %s",
                                  script, rc, log);
    }
    for (int i = 0; !err && i < PLOT_COUNT; i++) {
        snprintf(path, sizeof path, "%s/%s.%s", plots, plot_names[i], ext);
        if (stat(path, &st) != 0 || st.st_size == 0)
            err = gdml_errmsg_set(e, GDML_ERR_IO, "gnuplot wrote no %s; see %s", path, log);
        else
            printf("plot: %s\n", path);
    }
    free(rounds);
    gdml_report_bytes_fini(&bytes);
    return err;
}

int main(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
        return usage(stdout);
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("gdml-report %s\n", GDML_VERSION);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-')
        return usage(stderr);
    gdml_errmsg e = {0};
    gdml_err err = report(argv[1], &e);
    if (err)
        fprintf(stderr, "gdml-report: %s\n", e.text);
    return gdml_exit_status(err);
}
