/*
 * region_sm.h - the regional parameter server's protocol logic, as a state
 * machine with no sockets, clocks or files (action.h).
 *
 * On the LAN side (GDML_LINK_DOWN) it serves its workers: in BSP each step
 * it collects one gradient from every worker still heard from, applies
 * their sample-weighted mean, and sends the new model back; in SSP and ASP
 * it applies each gradient as it comes and sends that worker the live
 * model, unless it is too far ahead of the slowest. On the
 * WAN side (GDML_LINK_UP) it joins the coordinator once its workers have,
 * and when a sync is due sends the coordinator its delta (live model minus
 * the global model it started from) through the uplink, under its budget,
 * then folds in the GLOBAL it receives. With overlap the workers train on
 * while the delta and the GLOBAL are in flight (one delta at a time), and
 * the GLOBAL replaces only what the delta carried: live = global + the
 * progress made since the delta was sent.
 *
 * Nothing a worker sends can stop the region: bad input is dropped and
 * counted, a silent worker is not waited for, one that stops reading is
 * dropped. ERROR from the coordinator is advisory; only STOP ends the run,
 * or the region's own timeout when nothing moves at all.
 */
#ifndef GDML_REGION_SM_H
#define GDML_REGION_SM_H

#include "action.h"
#include "budget.h"
#include "dp.h"
#include "err.h"
#include "msg.h"
#include "optim.h"
#include "store.h"
#include "transport.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct gdml_region gdml_region;

/* When a region sends its delta: a table row per mode (region_wan.c). */
typedef struct gdml_sync_mode gdml_sync_mode;

/* The mode called name ("steps", "time", "budget"), or NULL. */
const gdml_sync_mode *gdml_sync_mode_find(const char *name);

typedef struct gdml_region_config {
    const char *name;
    uint32_t workers;                     /* workers that must join before training */
    const char (*members)[GDML_NAME_MAX]; /* worker names that may join; none listed: any */
    size_t n_members;
    const gdml_sync_mode *sync; /* from gdml_sync_mode_find */
    uint64_t sync_every;        /* steps mode: local steps per round */
    int64_t sync_ms;            /* time mode: ms per round */
    double learning_rate, lr_decay;
    gdml_optim_config optim; /* what a step of the live model is (optim.h) */
    bool scaffold;           /* drift correction by control variates */
    bool overlap; /* train on while a delta is in flight; GLOBAL is folded in with a correction */
    bool checkpoint; /* queue a COMMIT of the training state after each sync and GLOBAL */
    /* Early start: the layout text ("": none) and seed of the initial model
     * trained from while the coordinator's WELCOME is on its way. */
    char early_layout[GDML_LAYOUT_MAX];
    uint64_t early_seed;
    /* Inside the data center: 0 = BSP (a step is one gradient of every live
     * worker, averaged); otherwise each gradient is applied as it comes and a
     * worker more than lan_staleness gradients ahead of the slowest live one
     * waits (SSP; UINT64_MAX: never waits, ASP). */
    uint64_t lan_staleness;
    int64_t timeout_ms, heartbeat_ms, peer_timeout_ms;
    uint64_t max_worker_samples;
    double max_grad_norm;
    /* The uplink and the downlink budget it asks the coordinator for. */
    const char *encoder;
    bool auto_encoder;   /* encoder = auto: the controller chooses (region_policy.c) */
    double target_ratio; /* its budget's target compression against dense per step */
    double k_fraction, threshold;
    gdml_budget_config up_budget;
    uint64_t min_message_bytes;
    uint64_t down_rate, down_cap;
    bool curve, lan_curve; /* which links run CURVE (their bytes count) */
    FILE *byte_log;        /* not owned */
    uint64_t seq_base;     /* first sequence number: above any a previous run used */
    gdml_dp *dp;           /* differential privacy on each delta (region_dp.c), or NULL */
} gdml_region_config;

typedef struct gdml_region_stats {
    uint64_t steps, syncs, version;
    uint64_t rejected[GDML_REASON_COUNT]; /* frames dropped, by reason */
    uint64_t worker_joins, pushes;
    uint64_t lan_bytes_in, lan_bytes_out; /* counted from frames handled */
} gdml_region_stats;

/* Makes a region that has not joined yet. cfg must outlive it. */
gdml_err gdml_region_new(const gdml_region_config *cfg, gdml_region **out, gdml_errmsg *e);

/* Frees it. NULL-safe; clears *r. */
void gdml_region_destroy(gdml_region **r);

/* Starts the clock of the run. */
void gdml_region_start(gdml_region *r, int64_t now_ms);

/* A frame from a worker (link GDML_LINK_DOWN) or the coordinator (GDML_LINK_UP). */
void gdml_region_on_frame(gdml_region *r, int64_t now_ms, int link, const gdml_rx *rx);

/* A frame the transport refused. */
void gdml_region_on_refused(gdml_region *r, int64_t now_ms, int link, const gdml_rx *rx,
                            const char *why);

/* The transport dropped a worker's connection (it stopped reading). */
void gdml_region_on_dropped(gdml_region *r, int64_t now_ms, const gdml_peer *route);

/* The link to the coordinator connected again (it may have restarted): join again at once. */
void gdml_region_on_reconnected(gdml_region *r, int64_t now);

/* Time passed. */
void gdml_region_on_tick(gdml_region *r, int64_t now_ms);

/* Stop early (a signal): workers and the coordinator are told, then the run ends. */
void gdml_region_on_stop(gdml_region *r, int64_t now_ms, const char *why);

/*
 * A new budget (SIGHUP). Applied only if a useful delta could still be sent
 * under it; otherwise GDML_ERR_INVALID with e saying why, and nothing changes.
 */
gdml_err gdml_region_set_budget(gdml_region *r, const gdml_budget_config *up, uint64_t down_rate,
                                uint64_t down_cap, int64_t now_ms, gdml_errmsg *e);

/*
 * Continues from a checkpoint the loop read (region_ckpt.c): it is applied
 * once the coordinator's WELCOME says the model. Call before
 * gdml_region_start. GDML_ERR_INVALID with e if it is not this region's or
 * is damaged (the loop then starts afresh).
 */
gdml_err gdml_region_resume(gdml_region *r, const gdml_version_meta *meta, const char *layout,
                            const gdml_store_tensor *tensors, size_t n_tensors, gdml_errmsg *e);

/*
 * What a COMMIT action asks the loop to write, read from the state at now:
 * valid until the next event. Call once per COMMIT, then report with
 * gdml_region_on_checkpointed.
 */
gdml_version_meta *gdml_region_checkpoint(gdml_region *r, int64_t now, const char **layout,
                                          const gdml_store_tensor **tensors, size_t *n_tensors);

/* The loop wrote the checkpoint (GDML_OK), or could not (why): training goes on either way. */
void gdml_region_on_checkpointed(gdml_region *r, int64_t now, gdml_err err, const char *why);

/*
 * Whether a region overlaps, from server.overlap ("auto", "on", "off") and
 * whether it corrects drift: auto is on, unless SCAFFOLD is, whose
 * corrections applied to a round trained on the stale model overshoot.
 */
bool gdml_region_overlaps(const char *overlap, bool scaffold);

/* Takes the next action; false if none. */
bool gdml_region_next_action(gdml_region *r, gdml_action *out);

/* Milliseconds from now_ms until gdml_region_on_tick has something to do. */
int64_t gdml_region_next_timer(const gdml_region *r, int64_t now_ms);

void gdml_region_stats_get(const gdml_region *r, gdml_region_stats *out);

/* Uplink bytes each way, for the final line. */
void gdml_region_wan_bytes(const gdml_region *r, uint64_t *up, uint64_t *down);

/* The uplink budget at now_ms, for metrics: its rate in bytes per second (0:
 * unlimited) and the bytes it lets through now (GDML_BUDGET_UNLIMITED: no limit). */
void gdml_region_uplink_budget(gdml_region *r, int64_t now_ms, double *rate, uint64_t *tokens);

#endif
