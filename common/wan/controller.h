/*
 * controller.h - the WAN policy controller: given only a budget, chooses
 * how often a region syncs (H, its sync_every) and how its delta is encoded
 * (selector, k_fraction, quantizer), and adapts the choice from what each
 * round measures.
 *
 * It is a pure decision function in the nghttp2 manner: it is fed the
 * budget, the model size and each round's measurements (the training loss,
 * the bytes the round moved, the error-feedback residual's norm against the
 * update's, the time a local step took) and answers with a choice. It never
 * touches a socket, a clock or a codec's data, so its choices can be tested
 * exhaustively (tests/unit/test_controller.c).
 *
 * Candidates are rows of a table (controller.c), each a codec spec
 * ("selector+quantizer", checked with gdml_codec_spec_ok) and a k_fraction;
 * a new encoder becomes a candidate by adding a row. The algorithm is in
 * docs/budget.md ("The controller").
 */
#ifndef GDML_CONTROLLER_H
#define GDML_CONTROLLER_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GDML_CTL_POLICY_MAX 48 /* "topk+int4/0.03/H400" and its terminator */

typedef struct gdml_ctl gdml_ctl;

/* What the controller is given once. Rates and caps of 0 mean "none". */
typedef struct gdml_ctl_config {
    size_t n;                  /* parameters of the model */
    uint64_t h_base;           /* the configured sync_every: the shortest H it picks */
    uint64_t h_max_factor;     /* H ranges over h_base * 1, 2, 4 ... up to this factor (0: 4) */
    double up_rate, down_rate; /* bytes per second of the uplink and the downlink */
    uint64_t up_cap, down_cap; /* bytes in all of each direction */
    double target_ratio;       /* at most dense bytes per step / target_ratio (0: none) */
    size_t overhead;           /* bytes a message adds to its payload (header, framing) */
    bool drift_corrected;      /* the region corrects drift (SCAFFOLD): see gdml_ctl_new */
} gdml_ctl_config;

/* What one round measured, fed to gdml_ctl_decide. NaN: not known. */
typedef struct gdml_ctl_measure {
    double loss;                   /* the round's mean training loss */
    uint64_t bytes;                /* wire bytes the round moved, up and down */
    double residual_ratio;         /* |error-feedback residual| / |update| after the last message */
    double step_ms;                /* wall milliseconds per local step, round trips included */
    uint64_t up_spent, down_spent; /* bytes spent in all, against the caps */
} gdml_ctl_measure;

/* A choice: the codec spec, its k_fraction, and H. */
typedef struct gdml_ctl_choice {
    const char *spec; /* static storage: a row of the table */
    double k_fraction;
    uint64_t h;
    size_t level; /* its row, densest first */
} gdml_ctl_choice;

/*
 * Makes a controller for cfg, its first choice the densest row whose
 * message fits the budget at h_base (see gdml_ctl_decide).
 *
 * With drift_corrected, the control variates are derived over lr x H and a
 * dense link, so the choice keeps to dense rows and never moves H on its
 * own: under a budget it starts at the fewest bits a dense row has, at the
 * shortest H where that fits the budget's hard limits (the workers may wait
 * for tokens), and moves only denser, when the residual grows. Only when no
 * dense row fits at all does it fall back to the whole ladder.
 *
 * Returns GDML_ERR_INVALID with e if n or h_base is 0, GDML_ERR_NOMEM.
 */
gdml_err gdml_ctl_new(const gdml_ctl_config *cfg, gdml_ctl **out, gdml_errmsg *e);

/* Frees it. NULL-safe; clears *c. */
void gdml_ctl_destroy(gdml_ctl **c);

/* Applies a new budget (SIGHUP); the choice is re-judged at the next decide. */
void gdml_ctl_set_budget(gdml_ctl *c, const gdml_ctl_config *cfg);

/* The choice in force. */
gdml_ctl_choice gdml_ctl_current(const gdml_ctl *c);

/*
 * Feeds one round's measurements and decides the next choice into *out.
 * Returns true if it changed; then why[0..cap) says which inputs drove it
 * (for one log line). The choice never has a message, as estimated or as
 * last measured, larger than the budget allows (one second of the smaller
 * rate, the caps' remainder, the target ratio).
 */
bool gdml_ctl_decide(gdml_ctl *c, const gdml_ctl_measure *m, gdml_ctl_choice *out, char *why,
                     size_t cap);

/* The wire bytes a message of the current choice took: replaces its estimate. */
void gdml_ctl_note_bytes(gdml_ctl *c, uint64_t wire);

/* The bytes a message of row level is taken to need (estimate or last measured). */
uint64_t gdml_ctl_bytes(const gdml_ctl *c, size_t level);

/* Rows in the table. */
size_t gdml_ctl_levels(void);

/* Writes the choice as "spec/k/Hh" (e.g. "topk+int4/0.03/H200") into buf. */
void gdml_ctl_format(const gdml_ctl_choice *ch, char *buf, size_t cap);

/*
 * Parses what gdml_ctl_format wrote (a peer's header text): spec into
 * spec[0..cap), k and H. False, changing nothing, if it is not one, or the
 * spec is not a known encoder.
 */
bool gdml_ctl_parse(const char *text, char *spec, size_t cap, double *k, uint64_t *h);

#endif
