/*
 * launch_impl.h - what gdml-launch's files share: the run's state, and the
 * end-of-run summary (launch_summary.c) that launch.c calls.
 */
#ifndef GDML_LAUNCH_IMPL_H
#define GDML_LAUNCH_IMPL_H

#include "config.h"
#include "err.h"
#include "launch_progress.h"
#include "procs.h"
#include "split.h"
#include "supervisor.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define MAX_REGIONS 64
#define MAX_PROCS (1 + MAX_REGIONS + MAX_REGIONS * 64)
#define STARTUP_TIMEOUT_MS 20000
#define SHUTDOWN_TIMEOUT_MS 15000
/* How long children told to stop get before they are killed: longer than any
 * program's own bound on SIGTERM (docs/operations.md, "Stopping"), so a
 * server's last checkpoint is never cut short. */
#define STOP_GRACE_MS 8000

typedef struct launch {
    const gdml_config *cfg;
    int64_t start_ms, start_wall_ms;
    char bin_dir[PATH_MAX];
    char run_dir[PATH_MAX];
    char job_ini[PATH_MAX];
    char store_dir[PATH_MAX];
    char names[MAX_REGIONS][GDML_NAME_MAX];
    int n_regions;
    gdml_split_part parts[MAX_REGIONS];
    int central; /* region that would receive everyone's raw data */
    uint64_t raw_bytes, raw_gzip_bytes;
    gdml_proc procs[MAX_PROCS];
    size_t n_procs;
    char line[8192]; /* coordinator stdout not yet split into lines */
    size_t line_len;
    gdml_progress prog; /* what the coordinator reported, and how it is shown */
    FILE *rounds;       /* rounds.csv */
    bool wan_curve, lan_curve;
    char coord_key[PATH_MAX], coord_pub[PATH_MAX], coord_allow[PATH_MAX];
    char region_key[MAX_REGIONS][PATH_MAX], region_pub[MAX_REGIONS][PATH_MAX];
    char region_allow[MAX_REGIONS][PATH_MAX];
    bool resume;
    /* rounds.csv's last row before this launch (a resumed run): its rows go on from there. */
    int64_t rounds_ms_base;
    uint64_t rounds_up_base, rounds_down_base;
    gdml_supervisor sup;
} launch;

static inline double mb(uint64_t bytes)
{
    return (double)bytes / 1e6;
}

static inline gdml_err path_join(char *out, const char *a, const char *b, gdml_errmsg *e)
{
    if (snprintf(out, PATH_MAX, "%s/%s", a, b) >= PATH_MAX)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "path '%s/%s' is too long", a, b);
    return GDML_OK;
}

/* Writes summary.json, prints the summary, draws the plots and prints the saving, last. */
gdml_err launch_summarize(launch *L, gdml_errmsg *e);

/* Runs gdml-report on the run; a report that fails is a warning. */
void launch_report(const launch *L);

#endif
