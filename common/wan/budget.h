/*
 * budget.h - the byte budget of one WAN link direction.
 *
 * A budget allows `rate` bytes per second over any window of `window_ms`
 * (1000 by default) and, optionally, `cap` bytes in all. It is a token bucket
 * whose tokens each come back exactly one window after they were spent: the
 * bytes sent in the trailing window (t - window, t] plus a new message must
 * not exceed rate * window. Unlike a classic bucket of depth D, which lets
 * D + rate bytes through in one second, this guarantees the rate over every
 * window, which is what an operator's "bytes per second" means and what the
 * benchmark checks from the byte log.
 *
 * Times are milliseconds on one monotonic clock, given by the caller, so the
 * budget is deterministic to test. Reconfiguring keeps the history and the
 * bytes spent (SIGHUP reloads do not reset a link's budget).
 */
#ifndef GDML_BUDGET_H
#define GDML_BUDGET_H

#include "err.h"

#include <stdint.h>

#define GDML_BUDGET_UNLIMITED UINT64_MAX

typedef struct gdml_budget gdml_budget;

typedef struct gdml_budget_config {
    double rate;       /* bytes per second; 0 = unlimited */
    uint64_t cap;      /* bytes in all; 0 = no cap */
    int64_t window_ms; /* the window the rate holds over; 0 = 1000 */
} gdml_budget_config;

gdml_err gdml_budget_new(const gdml_budget_config *cfg, gdml_budget **out);
void gdml_budget_destroy(gdml_budget **b);

/* Applies a new rate, cap or window; history and spent bytes are kept. */
void gdml_budget_reconfigure(gdml_budget *b, const gdml_budget_config *cfg);

/* Bytes that may be sent at now_ms (GDML_BUDGET_UNLIMITED if no rate and no cap). */
uint64_t gdml_budget_available(gdml_budget *b, int64_t now_ms);

/*
 * Milliseconds from now_ms until `bytes` are available (0 if they are now),
 * or -1 if they never will be (above rate * window, or beyond the cap).
 */
int64_t gdml_budget_wait_ms(gdml_budget *b, uint64_t bytes, int64_t now_ms);

/*
 * Records `bytes` sent at now_ms. Returns GDML_ERR_INVALID (and records
 * nothing) if they were not available: callers check first, and this check
 * is what makes "never more than the budget" hold.
 */
gdml_err gdml_budget_spend(gdml_budget *b, uint64_t bytes, int64_t now_ms);

/* Bytes spent in all. */
uint64_t gdml_budget_spent(const gdml_budget *b);

/* Bytes spent in the trailing window at now_ms (what a checkpoint keeps). */
uint64_t gdml_budget_in_window(gdml_budget *b, int64_t now_ms);

/*
 * Continues a budget from a checkpoint: `spent` in all, and `in_window`
 * bytes counted as spent at now_ms. The window's bytes are taken as just
 * spent, which can only make the next window stricter, never looser, than
 * the one the checkpoint was taken in. Replaces the history.
 */
void gdml_budget_restore(gdml_budget *b, uint64_t spent, uint64_t in_window, int64_t now_ms);

/* The configuration in force. */
gdml_budget_config gdml_budget_get_config(const gdml_budget *b);

#endif
