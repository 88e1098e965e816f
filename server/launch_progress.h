/*
 * launch_progress.h - what gdml-launch shows while a job runs.
 *
 * It reads the coordinator's progress lines (docs/operations.md, "Progress
 * output") and shows them in one of two styles:
 *   plain  one line per global version, the format scripts and tests parse;
 *   live   a display redrawn in place on a terminal (ANSI escapes, at most
 *          GDML_PROGRESS_REDRAW_MS apart): version, test and validation
 *          accuracy, cross-DC MB against the raw data's, the budget in use,
 *          and each region's state, last merged delta and bytes.
 * Lines that others print meanwhile (the supervisor's deaths and restarts)
 * go through gdml_progress_log_stream, so that they scroll above the display
 * instead of tearing it.
 */
#ifndef GDML_LAUNCH_PROGRESS_H
#define GDML_LAUNCH_PROGRESS_H

#include "config.h"
#include "names.h"
#include "procs.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define GDML_PROGRESS_MAX_REGIONS 64
#define GDML_PROGRESS_REDRAW_MS 250
/* A region that has not had a delta merged for this many versions is stalled. */
#define GDML_PROGRESS_STALL_VERSIONS 3

typedef enum { GDML_PROGRESS_PLAIN, GDML_PROGRESS_LIVE } gdml_progress_style;

/* What became of a region, for the live display. */
typedef enum {
    GDML_REGION_JOINING,    /* no delta of it merged yet */
    GDML_REGION_CONNECTED,  /* its deltas are being merged */
    GDML_REGION_STALLED,    /* none merged for GDML_PROGRESS_STALL_VERSIONS versions */
    GDML_REGION_RESTARTING, /* its server died and waits to be started again */
} gdml_region_state;

typedef struct gdml_progress_region {
    char name[GDML_NAME_MAX];
    uint64_t up, down;           /* WAN bytes the coordinator received from it and sent to it */
    uint64_t up_base, down_base; /* what earlier coordinator processes of the run counted */
    uint64_t last_delta;         /* newest version that merged a delta of it; 0: none */
    double up_rate;   /* bytes/s from it over the last second or more; <0: not yet known */
    uint64_t rate_up; /* up at rate_ms */
    int64_t rate_ms;
    gdml_region_state state;      /* as last drawn */
    bool server_restarting;       /* its server died and a restart is due */
    unsigned workers_up, workers; /* its workers running, and in all */
} gdml_progress_region;

typedef struct gdml_progress {
    gdml_progress_style style;
    bool color;
    FILE *out; /* stdout */
    int64_t start_ms, last_draw_ms;
    bool dirty;
    int drawn_lines; /* lines of the live display now on the screen */
    /* Lines printed through log_stream, and how much of them is shown. */
    FILE *log;
    char *log_buf;
    size_t log_len, log_shown;

    uint64_t rounds; /* coordinator.rounds: the versions a run makes */
    uint64_t raw_bytes, raw_gzip_bytes;
    char budget[256];        /* the budget in use, in words */
    uint64_t budget_up_rate; /* budget.up_bytes_per_s; 0: unlimited */

    bool done; /* the coordinator's last line is in */
    uint64_t round, version, wan_up, wan_down, versions_reported;
    uint64_t wan_up_base, wan_down_base; /* what earlier coordinator processes counted */
    double accuracy, loss, train_loss, best_accuracy;
    double val_acc;
    unsigned val_regions;
    double epsilon, dp_delta; /* privacy spent ("eps="); dp_delta 0 without DP */
    bool privacy_stop;        /* the privacy budget ended the run */
    char policies[256];       /* encoder = auto: "  policy a:topk+int4/0.1/H100 ...", or "" */
    gdml_progress_region regions[GDML_PROGRESS_MAX_REGIONS];
    int n_regions;
} gdml_progress;

/*
 * The style for mode ("auto", "live" or "plain", launch.progress): auto is
 * live when stdout is a terminal and $TERM is set and not "dumb".
 */
gdml_progress_style gdml_progress_style_for(const char *mode, bool is_tty, const char *term);

/*
 * Starts pg for a job of cfg over the regions names[0..n) (in launch.regions
 * order), printing to out in style. Colour is used only in the live style,
 * and not when $NO_COLOR is set. The live style needs gdml_progress_fini.
 */
void gdml_progress_init(gdml_progress *pg, const gdml_config *cfg, char (*names)[GDML_NAME_MAX],
                        int n, gdml_progress_style style, FILE *out, int64_t now_ms);

/* Frees what the live style kept. */
void gdml_progress_fini(gdml_progress *pg);

/* What the raw data would have moved, for the lines and the display. */
void gdml_progress_set_raw(gdml_progress *pg, uint64_t raw_bytes, uint64_t raw_gzip_bytes);

/*
 * The run's saving, in one sentence (no newline) for the launcher's last
 * line: how many times fewer bytes crossed data-center boundaries than
 * copying the raw data to one data center would have moved, plain and
 * gzipped; or how many times more, when training moved more.
 */
void gdml_progress_saving(const gdml_progress *pg, char *buf, size_t cap);

/*
 * The coordinator was restarted: its byte counters start again at 0, so
 * what it counted so far becomes the base its new counts are added to.
 */
void gdml_progress_on_coordinator_restart(gdml_progress *pg);

/* Where to print lines while the job runs: out, or (live) a buffer shown above the display. */
FILE *gdml_progress_log_stream(gdml_progress *pg);

enum { GDML_PROGRESS_OTHER, GDML_PROGRESS_VERSION, GDML_PROGRESS_DONE };

/*
 * One line of the coordinator's stdout (without its newline). Returns
 * GDML_PROGRESS_VERSION for a committed version (then pg's version, accuracy,
 * loss, wan_up and wan_down are that version's; the plain style has printed
 * its line), GDML_PROGRESS_DONE for its last line, GDML_PROGRESS_OTHER else.
 */
int gdml_progress_on_line(gdml_progress *pg, const char *line, int64_t now_ms);

/*
 * Updates each region's state from the launcher's children (their names are
 * "server NAME" and "worker NAME.wI") and, in the live style, redraws the
 * display if something changed and GDML_PROGRESS_REDRAW_MS have passed (or
 * a second, to keep the clock moving).
 */
void gdml_progress_tick(gdml_progress *pg, const gdml_proc *procs, size_t n_procs, int64_t now_ms);

/*
 * The job is over. With redraw (it finished), the live display is drawn a
 * last time and stays on the screen; without (it failed, and an error was
 * printed below it), it is left as it is. Lines still buffered are printed.
 */
void gdml_progress_finish(gdml_progress *pg, bool redraw, int64_t now_ms);

/* The state's word in the display ("connected", ...). */
const char *gdml_region_state_name(gdml_region_state s);

#endif
