/*
 * launch_summary.c - the end of a gdml-launch run: summary.json, the summary
 * it prints, the plots (gdml-report, run as a child) and, last, the run's
 * saving in one sentence.
 */
#include "launch_impl.h"

#include "store.h"
#include "util.h"

#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

extern char **environ;

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static gdml_err write_summary(launch *L, uint64_t versions, double wall, const char *path,
                              gdml_errmsg *e)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    const gdml_config *cfg = L->cfg;
    fprintf(f, "{\n  \"final_accuracy\": %.6f,\n  \"final_loss\": %.6f,\n", L->prog.accuracy,
            L->prog.loss);
    fprintf(f, "  \"wall_seconds\": %.3f,\n", wall);
    fprintf(f, "  \"start_unix_ms\": %lld,\n", (long long)L->start_wall_ms);
    fprintf(f, "  \"wan_bytes_up\": %llu,\n  \"wan_bytes_down\": %llu,\n",
            (unsigned long long)L->prog.wan_up, (unsigned long long)L->prog.wan_down);
    fprintf(f, "  \"raw_data_bytes\": %llu,\n  \"raw_data_gzip_bytes\": %llu,\n",
            (unsigned long long)L->raw_bytes, (unsigned long long)L->raw_gzip_bytes);
    fprintf(f, "  \"central_region\": ");
    json_string(f, L->names[L->central]);
    fprintf(f, ",\n  \"versions_stored\": %llu,\n  \"versions_reported\": %llu,\n",
            (unsigned long long)versions, (unsigned long long)L->prog.versions_reported);
    fprintf(f, "  \"regions\": %d,\n  \"workers\": %lld,\n", L->n_regions,
            (long long)(L->n_regions * cfg->launch.workers));
    fprintf(f, "  \"links\": [");
    for (int i = 0; i < L->prog.n_regions; i++) {
        fprintf(f, "%s\n    {\"region\": ", i ? "," : "");
        json_string(f, L->prog.regions[i].name);
        fprintf(f, ", \"bytes_up\": %llu, \"bytes_down\": %llu}",
                (unsigned long long)L->prog.regions[i].up,
                (unsigned long long)L->prog.regions[i].down);
    }
    fprintf(f, "\n  ],\n");
    fprintf(f, "  \"split\": ");
    json_string(f, cfg->launch.split);
    fprintf(f, ",\n  \"alpha\": %g,\n  \"seed\": %lld,\n", cfg->launch.alpha,
            (long long)cfg->launch.seed);
    if (L->prog.dp_delta > 0)
        fprintf(f,
                "  \"privacy\": {\"epsilon\": %.6f, \"delta\": %g, \"clip\": %g, "
                "\"noise_multiplier\": %g, \"epsilon_limit\": %g, \"stopped_at_limit\": %s},\n",
                L->prog.epsilon, L->prog.dp_delta, cfg->privacy.clip, cfg->privacy.noise_multiplier,
                cfg->privacy.epsilon, L->prog.privacy_stop ? "true" : "false");
    fprintf(f, "  \"chaos_kills\": %u,\n  \"deaths\": [", L->sup.kills);
    for (size_t i = 0; i < L->sup.n_events; i++) {
        const gdml_supervisor_event *ev = &L->sup.events[i];
        fprintf(f, "%s\n    {\"process\": ", i ? "," : "");
        json_string(f, ev->name);
        fprintf(f,
                ", \"status\": %d, \"chaos\": %s, \"died_s\": %.3f, \"restarted_s\": ", ev->status,
                ev->chaos ? "true" : "false", (double)ev->died_ms / 1000.0);
        if (ev->restarted_ms)
            fprintf(f, "%.3f}", (double)ev->restarted_ms / 1000.0);
        else
            fprintf(f, "null}");
    }
    fprintf(f, "\n  ],\n");
    fprintf(f, "  \"store\": ");
    json_string(f, L->store_dir);
    fprintf(f, ",\n  \"run_dir\": ");
    json_string(f, L->run_dir);
    fprintf(f, "\n}\n");
    if (fclose(f) != 0)
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    return GDML_OK;
}

/*
 * Runs gdml-report on the run, which prints the plots it wrote. A report
 * that fails (gnuplot not installed, say) is a warning: the run's data is
 * all there.
 */
void launch_report(const launch *L)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/gdml-report", L->bin_dir);
    char *argv[] = {path, (char *)L->run_dir, NULL};
    fflush(stdout);
    pid_t pid;
    int status = 0;
    if (posix_spawn(&pid, path, NULL, NULL, argv, environ) != 0) {
        status = -1;
    } else {
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    if (status != 0)
        fprintf(stderr,
                "gdml-launch: warning: no plots (%s %s failed; it says why above); "
                "the run's store, logs and rounds.csv are unaffected\n",
                path, L->run_dir);
}

gdml_err launch_summarize(launch *L, gdml_errmsg *e)
{
    double wall = (double)(gdml_now_ms() - L->start_ms) / 1000.0;
    gdml_store *store = NULL;
    uint64_t versions = 0;
    gdml_store_options so = {.read_only = true};
    gdml_err err = gdml_store_open(L->store_dir, &so, &store, e);
    if (!err)
        err = gdml_store_count(store, &versions, e);
    gdml_store_close(&store);
    if (err)
        return err;
    char path[PATH_MAX];
    if ((err = path_join(path, L->run_dir, "summary.json", e)) ||
        (err = write_summary(L, versions, wall, path, e)))
        return err;
    uint64_t wan = L->prog.wan_up + L->prog.wan_down;
    printf("\ndone in %.1f s: test accuracy %.4f after %llu global versions\n", wall,
           L->prog.accuracy, (unsigned long long)L->prog.version);
    printf("cross-DC traffic %.2f MB (up %.2f, down %.2f); the raw data is %.2f MB (%.2f MB "
           "gzipped)\n",
           mb(wan), mb(L->prog.wan_up), mb(L->prog.wan_down), mb(L->raw_bytes),
           mb(L->raw_gzip_bytes));
    for (int i = 0; i < L->prog.n_regions; i++)
        printf("  %-12s up %.3f MB, down %.3f MB\n", L->prog.regions[i].name,
               mb(L->prog.regions[i].up), mb(L->prog.regions[i].down));
    if (L->prog.dp_delta > 0)
        printf("differential privacy: epsilon %.3f at delta %g per region%s\n", L->prog.epsilon,
               L->prog.dp_delta,
               L->prog.privacy_stop ? "; stopped before the next round would pass privacy.epsilon"
                                    : "");
    printf("model versions: %llu in %s (list them: %s/gdml-models list --store %s)\n",
           (unsigned long long)versions, L->store_dir, L->bin_dir, L->store_dir);
    launch_report(L);
    printf("summary: %s\n", path);
    char saving[512];
    gdml_progress_saving(&L->prog, saving, sizeof saving);
    printf("\n%s\n", saving);
    return GDML_OK;
}
