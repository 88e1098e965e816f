/*
 * region_impl.h - private to the regional server's state machine: its
 * state, and what its files share. region_sm.c takes the events and keeps
 * time, region_lan.c serves the workers (joins, pushes, pulls, models),
 * region_step.c steps on their gradients (BSP streamed, SSP, ASP),
 * region_wan.c talks to the coordinator (joining, deltas, GLOBAL),
 * region_score.c keeps the workers' held-out scores (metrics only).
 */
#ifndef GDML_REGION_IMPL_H
#define GDML_REGION_IMPL_H

#include "region_sm.h"

#include "chunk.h"
#include "codec.h"
#include "controller.h"
#include "members.h"
#include "model.h"
#include "ratelog.h"
#include "store.h"
#include "wan.h"

typedef enum region_state {
    REGION_JOINING,  /* workers joining, then the coordinator's WELCOME */
    REGION_TRAINING, /* collecting one gradient per worker for the current step */
    REGION_HOLDING,  /* a sync is due, but the uplink budget does not allow the delta yet */
    REGION_SYNCING,  /* delta sent; waiting for GLOBAL (without overlap) */
    REGION_DONE,     /* STOP: the run is over */
} region_state;

struct gdml_sync_mode {
    const char *name;
    /* True if a sync is due after a step, at now. */
    bool (*due)(const gdml_region *r, int64_t now);
    /* True if the workers wait while the budget holds the delta back (steps:
     * a round is exactly sync_every steps); false if training goes on. */
    bool hold;
};

/* A checkpoint read at start, applied once the coordinator's WELCOME is in. */
typedef struct region_restored {
    bool have;
    size_t n;
    gdml_version_meta meta;
    char layout[GDML_LAYOUT_MAX];
    float *params, *anchor, *sent, *residual, *c_local, *c_global;
    float *opt[2]; /* the optimizer's state, if it keeps any */
} region_restored;

/* Per worker, beside its member slot. */
typedef struct worker_slot {
    gdml_transfer in;   /* its gradient of the current step */
    uint64_t *counted;  /* chunks of its gradient counted this step, whatever push they came in */
    bool pushed;        /* its gradient for the current step is in */
    bool excused;       /* its gradient of this step was refused: the step goes on without it */
    bool needs_welcome; /* (re)joined: its next model comes as WELCOME */
    int64_t sent_ms;    /* last frame sent to it */
    /* SSP and ASP: gradients of it applied (its clock), and the step its model was tagged. */
    uint64_t clock, tag;
    /* Sparse kinds: the keys of its last pull, answered with the model at them. */
    gdml_transfer pull_in;
    uint32_t *keys;
    size_t n_keys, cap_keys;
    uint64_t pull_seq; /* the pull the keys came in */
    bool keys_ready;   /* the pull is whole and not answered yet */
    bool model_due;    /* a model was due before its pull was in: it goes when the pull is */
    bool weighed;      /* its batch counts toward this step's mean */
    bool streamed;     /* BSP: gets this step's model chunk by chunk (region_step.c) */
    /* Its latest held-out score (rows 0: none), of model version score_version. */
    gdml_score score;
    uint64_t score_version;
} worker_slot;

struct gdml_region {
    const gdml_region_config *cfg;
    region_state state;
    /* encoder = auto: the controller, its choice, and what it is fed (region_policy.c) */
    gdml_ctl *ctl;
    uint64_t sync_every; /* H in force: the configured one, or the controller's */
    char policy[GDML_CTL_POLICY_MAX];
    uint64_t ctl_round, ctl_bytes_mark;
    double residual_ratio;
    gdml_members workers;
    worker_slot *wslots;
    /* The model, once the coordinator's WELCOME told its layout. */
    gdml_layout layout;
    const gdml_model_ops *ops;
    char layout_text[GDML_MSG_TEXT_MAX];
    size_t n;
    float *params;        /* the live model */
    float *anchor;        /* the global model the current round started from */
    float *grad_sum;      /* this step: sum over pushes of batch * gradient */
    double *chunk_batch;  /* this step: samples that reached each chunk */
    uint64_t *chunk_done; /* BSP, streaming: chunks of this step stepped and sent already */
    uint64_t n_done;
    uint64_t stream_seq;       /* the MODEL they went out in; 0 if none this step */
    float *scratch;            /* one received tensor */
    float *c_local, *c_global; /* SCAFFOLD control variates */
    unsigned scaffold_wait;    /* SCAFFOLD: clean rounds to train uncorrected (region_wan.c) */
    float *sent;               /* overlap: the live model when the delta in flight was made */
    gdml_optim *opt;           /* how a step's gradient moves the live model */
    bool in_flight;            /* overlap: a delta is sent and its GLOBAL not yet in */
    bool welcomed;             /* the coordinator's WELCOME is in (early start trains before) */
    gdml_codec *dense;         /* all+f32, for models to the workers */
    gdml_codec *pulled;        /* sparse kinds: keys+f32, the model at a worker's keys */
    double step_batch;         /* sparse kinds: samples of this step's pushes */
    uint32_t *ent_idx;         /* sparse kinds: the entries of one received chunk */
    float *ent_val;
    uint32_t *touched; /* sparse kinds, BSP: the keys this step's pushes touched */
    size_t n_touched;
    uint64_t *touched_marks; /* a bit per key: in touched */
    gdml_wan *up;            /* the uplink */
    gdml_transfer from_coord;
    uint64_t version, step, steps_since_sync, syncs;
    uint64_t wan_seq, lan_seq;
    uint64_t delta_seq; /* the delta SYNCING waits on */
    double loss_sum, loss_weight;
    bool joined_coord; /* HELLO sent */
    uint64_t hello_samples;
    int64_t hello_ms, coord_heard_ms, coord_sent_ms, progress_ms, stall_log_ms, last_sync_ms;
    int64_t hold_until_ms;
    int exit_status;
    /* Checkpoints (region_ckpt.c). */
    uint64_t ckpt_version;
    bool ckpt_pending; /* a COMMIT is queued and not yet reported */
    gdml_version_meta ckpt_meta;
    gdml_store_tensor ckpt_tensors[8];
    size_t n_ckpt_tensors;
    region_restored restored;
    gdml_actions actions;
    gdml_ratelog *log;
    gdml_region_stats stats;
};

/* region_sm.c */
void region_reject(gdml_region *r, int64_t now, int link, const gdml_rx *rx, gdml_reason reason,
                   bool tell, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
void region_exit(gdml_region *r, int64_t now, int status, gdml_err err, const char *why);
gdml_err region_send_control(gdml_region *r, int link, const gdml_peer *to, gdml_msg_type type,
                             gdml_reason code, const char *text, int64_t now);
double region_lr(const gdml_region *r);

/* Words of a bitmap over the chunks of the largest tensor (worker_slot.counted). */
#define REGION_CHUNK_WORDS ((size_t)((GDML_MSG_MAX_ELEMS / GDML_CHUNK_ELEMS + 1 + 63) / 64))

/* SSP or ASP (server.lan_staleness > 0), not BSP. */
static inline bool region_ssp(const gdml_region *r)
{
    return r->cfg->lan_staleness > 0;
}

/* region_lan.c */
void region_on_worker(gdml_region *r, int64_t now, const gdml_rx *rx);
void region_maybe_start(gdml_region *r, int64_t now);
void region_broadcast(gdml_region *r, int64_t now);
uint64_t region_samples(const gdml_region *r);
/* The frames of u to worker slot i. */
void region_send_frames(gdml_region *r, size_t i, const gdml_wan_update *u, int64_t now);
/* The live model to worker slot i alone, with the layout if it needs it. */
void region_send_model(gdml_region *r, size_t i, int64_t now);

/* region_step.c */
void region_take_chunk(gdml_region *r, int64_t now, worker_slot *w, uint64_t c, size_t k,
                       double batch);
void region_check_step(gdml_region *r, int64_t now);
void region_scaffold_step(gdml_region *r, size_t lo, size_t len, float lr);

/* Rounds a region trains without SCAFFOLD's correction after a break in its variates. */
#define REGION_SCAFFOLD_PAUSE 5
/* Forgets what worker slot w received of its current push, for its next one. */
void region_forget_push(worker_slot *w);
/* Abandons a streamed model of this step: the step's end sends all of it. */
void region_stream_cancel(gdml_region *r);
/* The chunks of the streamed model not sent yet, once the step is over. */
gdml_err region_stream_rest(gdml_region *r, gdml_wan_update *out);

/* region_ckpt.c */
void region_checkpoint(gdml_region *r, int64_t now);
void region_apply_restored(gdml_region *r, int64_t now);
void region_restored_fini(gdml_region *r);

/* region_score.c: metrics only */
/* Keeps the score a PUSH of worker i carries, if it is one the worker may send. */
void region_take_score(gdml_region *r, int64_t now, int i, const gdml_rx *rx);
/* The sum of the live workers' latest scores of the newest version any of them scored. */
void region_score(const gdml_region *r, gdml_score *out, uint64_t *version);

/* region_dp.c: clips and noises the delta in r->scratch; false (and the
 * region leaves) if the privacy budget allows no more deltas. */
bool region_privatize(gdml_region *r, int64_t now);
/* Clears what a DELTA would say of the region's data besides the noised
 * delta: its training loss and its workers' held-out score. */
void region_dp_scrub(gdml_msg_header *h);

/* region_wan.c */
void region_on_coordinator(gdml_region *r, int64_t now, const gdml_rx *rx);
void region_hello(gdml_region *r, int64_t now);
/* Early start: makes the initial model of cfg->early_layout; false if none
 * is configured (or a checkpoint waits for the coordinator's model). */
bool region_start_early(gdml_region *r, int64_t now);
void region_after_step(gdml_region *r, int64_t now);
/* True if the step in progress can end in a sync (a timed one always can). */
bool region_sync_may_end_step(const gdml_region *r);
void region_retry_hold(gdml_region *r, int64_t now);
void region_delta_header(const gdml_region *r, gdml_msg_header *h);

/* region_policy.c: encoder = auto. Each does nothing for a hand-picked encoder. */
gdml_err region_policy_start(gdml_region *r, gdml_errmsg *e); /* once the model's size is known */
void region_policy_budget(gdml_region *r);                    /* after a new budget */
void region_policy_before_sync(gdml_region *r, int64_t now, gdml_msg_header *h);
void region_policy_after_sync(gdml_region *r, const gdml_wan_update *u);

#endif
