/*
 * metrics_catalog.c - the table of every metric gdml exports (see
 * metrics_catalog.h). Names follow Prometheus's conventions: gdml_ first,
 * the unit (_bytes, _seconds, _ratio) last, and _total after it on a
 * counter. direction is "up" (toward the coordinator) or "down" (away from
 * it) on every link, WAN or LAN.
 */
#include "metrics_catalog.h"

#include "budget.h"
#include "msg.h"

#include <math.h>
#include <stdio.h>

#define C GDML_ROLE_COORDINATOR
#define S GDML_ROLE_SERVER
#define W GDML_ROLE_WORKER
#define COUNTER GDML_METRIC_COUNTER
#define GAUGE GDML_METRIC_GAUGE

// clang-format off
const gdml_metric_def gdml_metric_catalog[] = {
    {"gdml_build_info", GAUGE, C | S | W, {"version"},
     "always 1; the gdml version of this process as a label"},
    {"gdml_global_version", GAUGE, C | S | W, {NULL},
     "the global model version: the newest committed (coordinator), trained against (server) or "
     "held (worker)"},
    {"gdml_wan_bytes_total", COUNTER, C | S, {"link", "direction"},
     "bytes on the WAN link of region `link`, counted from the frames on the wire (CURVE "
     "included), what a cloud bill charges"},
    {"gdml_lan_bytes_total", COUNTER, S | W, {"direction"},
     "bytes between a regional server and its workers, inside the data center"},
    {"gdml_budget_tokens_bytes", GAUGE, C | S, {"link", "direction"},
     "bytes the link's budget lets through now (its rate over the trailing second, less what was "
     "sent in it, within the total cap); no series while the link is unlimited"},
    {"gdml_budget_rate_bytes_per_second", GAUGE, C | S, {"link", "direction"},
     "the link's budget in bytes per second (0: unlimited)"},
    {"gdml_round_duration_seconds", GAUGE, C, {NULL},
     "wall time of the last round: from the commit before it to its own"},
    {"gdml_merges_total", COUNTER, C, {NULL}, "merges of regional deltas into a new version"},
    {"gdml_contributions_dropped_total", COUNTER, C, {NULL},
     "regional deltas left out of a merge (their norm, or the merge's change, was too large)"},
    {"gdml_staleness_versions", GAUGE, C, {"region"},
     "versions the region's last delta was made behind the version it was merged into"},
    {"gdml_rejected_messages_total", COUNTER, C | S | W, {"reason"},
     "messages dropped, by reason (docs/security.md); none is fatal"},
    {"gdml_joins_total", COUNTER, C | S, {NULL},
     "peers that joined: regions at the coordinator, workers at a regional server"},
    {"gdml_reconnects_total", COUNTER, C | S | W, {NULL},
     "rejoins: a region joining the coordinator again (coordinator), reconnects to the "
     "coordinator (server) or to the server (worker)"},
    {"gdml_accuracy_ratio", GAUGE, C | W, {"dataset"},
     "accuracy from 0 to 1 of the newest scored version: dataset test (the coordinator's test "
     "set) or validation (held-out rows of the regions' own data)"},
    {"gdml_loss", GAUGE, C | W, {"dataset"},
     "mean cross-entropy: dataset test, validation, or train (the loss the deltas or the last "
     "batch reported)"},
    {"gdml_steps_total", COUNTER, S, {NULL}, "optimizer steps of the region's live model"},
    {"gdml_syncs_total", COUNTER, S, {NULL}, "deltas the region sent to the coordinator"},
    {"gdml_pushes_total", COUNTER, S | W, {NULL},
     "gradients pushed by workers (received, at a server; sent, at a worker)"},
    {"gdml_samples_total", COUNTER, W, {NULL}, "training samples the worker computed gradients of"},
    {"gdml_samples_per_second", GAUGE, W, {NULL},
     "training samples per second over the last few seconds"},
    {"gdml_compute_seconds_total", COUNTER, W, {NULL},
     "seconds spent computing gradients (against wall time: the worker's utilization)"},
};
// clang-format on

const size_t gdml_metric_catalog_n = sizeof gdml_metric_catalog / sizeof gdml_metric_catalog[0];

void gdml_metric_reason_label(unsigned reason, char *buf, size_t cap)
{
    /* msg.c's words, as a label value: "not a member" -> "not_a_member". */
    snprintf(buf, cap, "%s", gdml_reason_name((gdml_reason)reason));
    for (char *p = buf; *p; p++)
        if (*p == ' ')
            *p = '_';
}

void gdml_metrics_count_reasons(gdml_metrics *m, const uint64_t *counts)
{
    for (unsigned r = 1; m && r < GDML_REASON_COUNT; r++) {
        if (!counts[r])
            continue; /* a series per reason that happened keeps scrapes short */
        char label[GDML_METRIC_LABEL_MAX];
        gdml_metric_reason_label(r, label, sizeof label);
        const char *values[] = {label};
        gdml_metric_count(gdml_metrics_series(m, "gdml_rejected_messages_total", values),
                          (double)counts[r]);
    }
}

void gdml_metrics_wan_link(gdml_metrics *m, const char *link, uint64_t up, uint64_t down,
                           const char *budgeted, double rate, uint64_t tokens)
{
    if (!m)
        return;
    const char *v_up[] = {link, "up"}, *v_down[] = {link, "down"}, *v_budget[] = {link, budgeted};
    gdml_metric_count(gdml_metrics_series(m, "gdml_wan_bytes_total", v_up), (double)up);
    gdml_metric_count(gdml_metrics_series(m, "gdml_wan_bytes_total", v_down), (double)down);
    gdml_metric_set(gdml_metrics_series(m, "gdml_budget_rate_bytes_per_second", v_budget), rate);
    if (tokens != GDML_BUDGET_UNLIMITED)
        gdml_metric_set(gdml_metrics_series(m, "gdml_budget_tokens_bytes", v_budget),
                        (double)tokens);
}

gdml_metric *gdml_metrics_plain(gdml_metrics *m, const char *name)
{
    return gdml_metrics_series(m, name, NULL);
}

void gdml_metrics_score(gdml_metrics *m, const char *dataset, double accuracy, double loss)
{
    const char *values[] = {dataset};
    if (m && !isnan(accuracy))
        gdml_metric_set(gdml_metrics_series(m, "gdml_accuracy_ratio", values), accuracy);
    if (m && !isnan(loss))
        gdml_metric_set(gdml_metrics_series(m, "gdml_loss", values), loss);
}
