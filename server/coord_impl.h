/*
 * coord_impl.h - private to the coordinator's state machine: its state, and
 * the functions its three files share. coord_sm.c takes the events,
 * coord_round.c merges, commits and keeps time, coord_down.c sends each
 * region what it needs through its downlink.
 */
#ifndef GDML_COORD_IMPL_H
#define GDML_COORD_IMPL_H

#include "coord_sm.h"

#include "controller.h"

#include "chunk.h"
#include "members.h"
#include "ratelog.h"
#include "wan.h"

#include <stdarg.h>

typedef enum coord_phase {
    COORD_WAITING,    /* for the first regions to join */
    COORD_COLLECTING, /* the current round's deltas */
    COORD_COMMITTING, /* the loop is committing the merged version */
    COORD_FINISHING,  /* STOP is going out; then EXIT */
} coord_phase;

/* Per region, beside its member slot (same index). */
typedef struct coord_slot {
    uint64_t merged_seq; /* highest sequence number merged: re-sends are ignored */
    /* This round's delta. */
    gdml_transfer in;
    float *delta;
    bool has_delta;
    uint64_t delta_seq, delta_samples;
    double delta_loss, delta_lr_steps, delta_norm;
    uint64_t delta_tau;   /* versions it was made behind the one it is merged into */
    gdml_score delta_val; /* metrics only: its workers' held-out score of delta_val_version */
    uint64_t delta_val_version;
    /* The downlink. */
    gdml_wan *down;
    float *view;           /* the global model as this region holds it */
    uint64_t view_version; /* the version of it (0 until its WELCOME is sent) */
    gdml_msg_type pending; /* WELCOME or GLOBAL waiting for budget; 0 if none */
    int64_t retry_ms;      /* when the pending message may fit the budget */
    int64_t sent_ms;       /* last frame sent: idle links beat */
    bool stop_pending;     /* FINISHING: its STOP has not gone yet */
    bool excused;          /* its delta of this round was refused: the round goes on without it */
    uint64_t releases;     /* whole deltas received from it in this run (privacy spent) */
    char policy[GDML_CTL_POLICY_MAX]; /* its controller's choice, from its DELTA's text */
} coord_slot;

/* One ERROR recently sent, so that a flood of bad frames is not answered in kind. */
typedef struct told {
    bool used;
    gdml_peer route;
    gdml_reason reason;
    int64_t at_ms;
} told;

#define COORD_TOLD 64

struct gdml_coord {
    const gdml_coord_config *cfg;
    const gdml_model_ops *ops;
    size_t n;
    char layout_text[GDML_LAYOUT_MAX];
    coord_phase phase;
    gdml_members members;
    coord_slot *slots;
    gdml_merge *merge;
    float *global;         /* the newest committed version */
    float *next;           /* the merged version being committed; between commits,
                              the update being sent down (one copy of the model less) */
    float *state_backup;   /* the merge state before a merge, to undo it */
    uint64_t version;      /* the version regions train against; 0 = the initial model */
    uint64_t next_version; /* the number the next commit gets (versions only grow) */
    uint64_t round;        /* rounds behind the current version */
    double pending_lr_steps, pending_loss; /* of the version being committed */
    uint64_t seq;                          /* sequence number of our last message */
    double lr_steps;                       /* last round's sample-weighted mean lr * local steps */
    uint64_t scaffold_quiet_until; /* GLOBALs up to this version carry no lr * H (coord_down.c) */
    double train_loss;
    bool resumed;
    int64_t progress_ms;  /* last commit, or the start */
    int64_t stall_log_ms; /* last "waiting for" line */
    int64_t finish_deadline_ms;
    int exit_status;
    gdml_err exit_err;
    char exit_text[GDML_ERRMSG_MAX];
    gdml_actions actions;
    gdml_ratelog *log;
    gdml_coord_stats stats;
    told told[COORD_TOLD];
    size_t told_next;
    uint64_t dp_base; /* releases before a resume: the resumed version's round */
    bool dp_stopped;  /* the privacy limit ended the run */
    /* The version being committed. */
    gdml_version_meta commit_meta;
    gdml_store_tensor commit_tensors[2];
    size_t n_commit_tensors;
};

/* coord_down.c */
gdml_err coord_slot_init(gdml_coord *c, coord_slot *s, const char *name, int index, gdml_errmsg *e);
void coord_slot_fini(coord_slot *s);
void coord_follow_policy(gdml_coord *c, coord_slot *s, const char *name, const gdml_msg_header *h);
gdml_err coord_down_budget(gdml_coord *c, coord_slot *s, const gdml_msg_header *from, int64_t now,
                           gdml_errmsg *e);
void coord_welcome(gdml_coord *c, coord_slot *s, int64_t now);
void coord_flush_down(gdml_coord *c, int64_t now);
void coord_tell(gdml_coord *c, int64_t now, const gdml_peer *route, gdml_reason reason,
                const char *why);
bool coord_send_control(gdml_coord *c, int i, gdml_msg_type type, const char *text, int64_t now);

/* coord_dp.c */
double coord_dp_epsilon(const gdml_coord *c, uint64_t more);
bool coord_dp_stop(gdml_coord *c, int64_t now);

/* coord_round.c */
void coord_try_merge(gdml_coord *c, int64_t now);
void coord_finish(gdml_coord *c, int64_t now, int status, gdml_err err, const char *why);

#endif
