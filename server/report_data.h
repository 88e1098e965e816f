/*
 * report_data.h - gdml-report's reading of a run directory: rounds.csv (one
 * row per global version) and the byte logs (logs/bytes-*.csv, every WAN
 * message), aggregated into what its plots draw. No plotting here, so that
 * the parsing and the sums are tested on their own.
 */
#ifndef GDML_REPORT_DATA_H
#define GDML_REPORT_DATA_H

#include "err.h"
#include "names.h"

#include <stddef.h>
#include <stdint.h>

/* One row of rounds.csv. */
typedef struct gdml_report_round {
    uint64_t version;
    double elapsed_s;          /* since the launcher started */
    double accuracy, loss;     /* NaN when the version was not scored */
    uint64_t wan_up, wan_down; /* cross-DC bytes so far */
} gdml_report_round;

/*
 * Reads rounds.csv at path into *out (malloc'd, *n rows). GDML_ERR_NOTFOUND
 * if there is no such file, GDML_ERR_FORMAT (with the line) for a header or
 * row that is not rounds.csv's.
 */
gdml_err gdml_report_read_rounds(const char *path, gdml_report_round **out, size_t *n,
                                 gdml_errmsg *e);

/* One region's WAN link, second by second from the first message of the run. */
typedef struct gdml_report_link {
    char region[GDML_NAME_MAX];
    size_t seconds;              /* length of the arrays below */
    uint64_t *up, *down;         /* bytes in each second (up: region to coordinator) */
    double *up_rate, *down_rate; /* the budget in force then (B/s; 0: unlimited) */
    uint64_t up_total, down_total;
    double up_budget, down_budget; /* the largest budget the logs show; 0: unlimited */
} gdml_report_link;

typedef struct gdml_report_bytes {
    int64_t t0_ms;           /* the first message's monotonic time */
    gdml_report_link *links; /* in the order the coordinator's log first names them */
    size_t n_links;
} gdml_report_bytes;

/*
 * Reads logs_dir/bytes-coordinator.csv (each region's downlink: what the
 * coordinator sent it, under its downlink budget) and each region's
 * logs_dir/bytes-REGION.csv when there is one (its uplink and uplink budget;
 * without it the uplink comes from the coordinator's log, budget unknown).
 * GDML_ERR_NOTFOUND without the coordinator's log, GDML_ERR_FORMAT for a
 * malformed one (file and line).
 */
gdml_err gdml_report_read_bytes(const char *logs_dir, gdml_report_bytes *out, gdml_errmsg *e);

void gdml_report_bytes_fini(gdml_report_bytes *b);

#endif
