/*
 * coord_sm.h - the global coordinator's protocol logic, as a state machine
 * with no sockets, clocks or files (action.h).
 *
 * Events in: a frame from a region (decoded, its sender's name
 * authenticated), a frame the transport refused, a timer tick, a peer the
 * transport dropped, the result of a commit, a request to stop. Actions
 * out: frames to send, connections to drop, a version to commit, the end of
 * the run. The loop around it (coordinator.c) only carries events in and
 * actions out, and table tests drive it with hostile input directly.
 *
 * What it does. Regions join with HELLO (their names must be allowed, their
 * sample counts within bounds). Each round, every joined region sends one
 * DELTA, in chunks, against a recent version (at most max_staleness behind,
 * scaled down by its staleness); when every region that is still heard from
 * has delivered (or quorum of them), the merge rule folds the deltas in, the
 * result is checked (finite, its change within a norm), evaluated, and
 * handed to the loop to commit; only once it is committed does each region
 * get GLOBAL, what it lacks of the new version, through its own downlink
 * under the budget it asked for. Nothing a region sends can stop the
 * coordinator: bad input is dropped and counted, ERROR is advisory, a
 * region whose budget is spent is stopped alone, and a silent one is not
 * waited for.
 */
#ifndef GDML_COORD_SM_H
#define GDML_COORD_SM_H

#include "action.h"
#include "dataset.h"
#include "dp.h"
#include "err.h"
#include "merge.h"
#include "model.h"
#include "msg.h"
#include "store.h"
#include "transport.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct gdml_coord gdml_coord;

typedef struct gdml_coord_config {
    gdml_layout layout;
    uint64_t model_seed;
    uint32_t regions;                     /* regions that must join before the first round */
    const char (*members)[GDML_NAME_MAX]; /* names that may join; none listed: any */
    size_t n_members;
    uint64_t rounds;           /* versions to produce */
    int64_t timeout_ms;        /* no version committed for this long: the run ends in error */
    int64_t heartbeat_ms;      /* idle links beat, and stalls are logged, this often */
    int64_t peer_timeout_ms;   /* a region silent for this long is not waited for */
    int64_t round_deadline_ms; /* a round with a delta in goes on without the rest after this
                                * long (0: it waits for every region heard from) */
    uint32_t quorum;           /* deltas a round merges with; 0: every region still heard from */
    uint64_t max_staleness;    /* deltas made further behind the current version are refused */
    double staleness_power;    /* a delta tau versions behind is scaled by (1 + tau)^-power */
    uint64_t max_samples;      /* the largest sample count a region may declare */
    double max_delta_norm;     /* a delta whose L2 norm is larger is dropped */
    double max_change_norm;    /* a merge that would move the model further is not committed */
    gdml_merge_config merge;
    /* Each region's downlink. */
    const char *encoder;
    double k_fraction, threshold;
    uint64_t min_message_bytes;
    bool curve;     /* the regions' link runs CURVE (its bytes count) */
    FILE *byte_log; /* not owned */
    /* The evaluation set (held as layout's kind trains), or NULL; evaluated
     * every eval_every versions and at the end. */
    const gdml_dataset *eval;
    uint64_t eval_every;
    uint64_t seq_base; /* first sequence number: above any a previous run used */
    /* Differential privacy on the regions' deltas, or NULL: each version
     * records the epsilon spent, and the run stops before a round would
     * pass the limit (coord_dp.c). */
    const gdml_dp_config *dp;
} gdml_coord_config;

typedef struct gdml_coord_stats {
    uint64_t version;                     /* newest committed */
    uint64_t merges, contributions_dropped;
    uint64_t rejected[GDML_REASON_COUNT]; /* frames dropped, by reason */
    uint64_t joins, rejoins;
} gdml_coord_stats;

/*
 * Makes a coordinator at version 0 (the initial model of cfg->model_seed).
 * cfg and what it points to must outlive it. GDML_ERR_INVALID with e for a
 * bad configuration (unknown model or merge rule), GDML_ERR_NOMEM.
 */
gdml_err gdml_coord_new(const gdml_coord_config *cfg, gdml_coord **out, gdml_errmsg *e);

/* Frees it. NULL-safe; clears *c. */
void gdml_coord_destroy(gdml_coord **c);

/*
 * Refuses a run whose configuration alone passes the privacy limit: in
 * sync mode every region releases one delta a round, so cfg->rounds rounds
 * spend epsilon(rounds). GDML_ERR_CONFIG with e saying how many rounds fit
 * and what noise multiplier the rounds would need. GDML_OK without DP or a
 * limit, and in quorum and async modes, where what each region releases
 * depends on the regions' speeds: those runs stop at the limit instead.
 */
gdml_err gdml_coord_check_privacy(const gdml_coord_config *cfg, gdml_errmsg *e);

/* True if the run ended because another round would pass the privacy limit. */
bool gdml_coord_privacy_stopped(const gdml_coord *c);

/* Epsilon spent so far: the most any region has (0 without DP). */
double gdml_coord_epsilon(const gdml_coord *c);

/*
 * Continues from a stored version (the store's head): its metadata
 * (sequence numbers, the regions' merged sequence numbers, the merge rule),
 * params[0..n) and the merge rule's state[0..n_state). newest is the newest
 * version stored, after which the next commit is numbered (it differs from
 * meta->version after a rollback). GDML_ERR_INVALID with e if the version
 * belongs to another model or merge rule, or its parameters are not finite.
 */
gdml_err gdml_coord_resume(gdml_coord *c, const gdml_version_meta *meta, uint64_t newest,
                           const float *params, size_t n, const float *state, size_t n_state,
                           gdml_errmsg *e);

/* Starts the clock of the run (the timeout counts from here). */
void gdml_coord_start(gdml_coord *c, int64_t now_ms);

/* A frame from a region. rx is only read. */
void gdml_coord_on_frame(gdml_coord *c, int64_t now_ms, const gdml_rx *rx);

/* A frame the transport refused (rx->reason says why, why in words). */
void gdml_coord_on_refused(gdml_coord *c, int64_t now_ms, const gdml_rx *rx, const char *why);

/* Time passed: heartbeats, timeouts, downlink sends the budget now allows. */
void gdml_coord_on_tick(gdml_coord *c, int64_t now_ms);

/* The transport dropped a connection (its peer stopped reading). */
void gdml_coord_on_dropped(gdml_coord *c, int64_t now_ms, const gdml_peer *route);

/*
 * The loop committed the pending version (err GDML_OK) or could not (why
 * says what the store said). A failed commit ends the run: the store, not a
 * peer, has failed.
 */
void gdml_coord_on_committed(gdml_coord *c, int64_t now_ms, gdml_err err, const char *why);

/* Stop early (a signal): every region is told, then the run ends. */
void gdml_coord_on_stop(gdml_coord *c, int64_t now_ms, const char *why);

/* Takes the next action; false if none. The caller releases it (action.h). */
bool gdml_coord_next_action(gdml_coord *c, gdml_action *out);

/* Milliseconds from now_ms until gdml_coord_on_tick has something to do. */
int64_t gdml_coord_next_timer(const gdml_coord *c, int64_t now_ms);

/*
 * The version a COMMIT action asks for: its metadata (the loop fills
 * time_ms and the byte counts), layout and tensors. Valid until
 * gdml_coord_on_committed.
 */
gdml_version_meta *gdml_coord_pending(gdml_coord *c, const char **layout,
                                      const gdml_store_tensor **tensors, size_t *n_tensors);

/* Counters. */
void gdml_coord_stats_get(const gdml_coord *c, gdml_coord_stats *out);

/* The regions known, for progress output: name and downlink bytes each way. */
size_t gdml_coord_region_count(const gdml_coord *c);
void gdml_coord_region_bytes(const gdml_coord *c, size_t i, const char **name, uint64_t *up,
                             uint64_t *down);

/*
 * Region i's downlink budget at now_ms, for metrics: its rate in bytes per
 * second (0: unlimited) and the bytes it lets through now
 * (GDML_BUDGET_UNLIMITED: no limit); and how many versions behind the one it
 * was merged into the region's last delta was made.
 */
void gdml_coord_region_link(gdml_coord *c, size_t i, int64_t now_ms, double *rate,
                            uint64_t *tokens, uint64_t *staleness);

/* The policy region i's controller last named ("" for a hand-picked encoder). */
const char *gdml_coord_region_policy(const gdml_coord *c, size_t i);

/* The mean training loss the last merged deltas reported (NaN before any). */
double gdml_coord_train_loss(const gdml_coord *c);

#endif
