/*
 * metrics_catalog.h - every metric gdml exports: one table, so that a name,
 * its type, labels and help are written once. Each program registers the
 * rows of its role (metrics_http.h), `--metrics-names` prints them, and
 * docs/operations.md and docker/grafana-dashboard.json are checked against
 * them (tests/metrics/check_names.py).
 */
#ifndef GDML_METRICS_CATALOG_H
#define GDML_METRICS_CATALOG_H

#include "metrics.h"

#include <stdint.h>

extern const gdml_metric_def gdml_metric_catalog[];
extern const size_t gdml_metric_catalog_n;

/* Writes the label value of a reason code's name ("not a member" -> "not_a_member"). */
void gdml_metric_reason_label(unsigned reason, char *buf, size_t cap);

/*
 * Raises gdml_rejected_messages_total{reason} to counts[r] for each reason r
 * (of GDML_REASON_COUNT) that has any: a program's running totals by reason.
 */
void gdml_metrics_count_reasons(gdml_metrics *m, const uint64_t *counts);

/*
 * One WAN link's figures: gdml_wan_bytes_total{link, direction} both ways,
 * and the budget of direction budgeted ("up" or "down"): its rate and, while
 * it has a limit (tokens != GDML_BUDGET_UNLIMITED), its tokens.
 */
void gdml_metrics_wan_link(gdml_metrics *m, const char *link, uint64_t up, uint64_t down,
                           const char *budgeted, double rate, uint64_t tokens);

/* The series of a family without labels (NULL as gdml_metrics_series). */
gdml_metric *gdml_metrics_plain(gdml_metrics *m, const char *name);

/* Sets gdml_accuracy_ratio and gdml_loss of dataset (test, validation, train); NaN leaves it. */
void gdml_metrics_score(gdml_metrics *m, const char *dataset, double accuracy, double loss);

#endif
