/*
 * region_rig.h - the rig of the regional server's state-machine tests
 * (test_region_*.c): one region, the clock the test advances, the frames a
 * test peer feeds it and what it queued in answer, and the models the
 * tests expect, computed independently of the region.
 */
#ifndef GDML_TEST_REGION_RIG_H
#define GDML_TEST_REGION_RIG_H

#include "region_impl.h"
#include "region_sm.h"

#include "sm_support.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMALL "softmax 4 3"    /* 15 parameters: one chunk */
#define BIG "softmax 300000 2" /* 600002 parameters: three chunks */
#define SEED 7
#define LR 0.5
#define UP_MAX 4096

typedef struct up_frame {
    int64_t t;
    uint64_t wire;
    gdml_msg_type type;
} up_frame;

typedef struct rig {
    gdml_region_config cfg;
    char members[4][GDML_NAME_MAX];
    gdml_region *r;
    test_actions acts; /* what the region queued since the last clear */
    int64_t now;
    uint64_t seq; /* the next sequence number a test peer uses */
    gdml_layout layout;
    size_t n;
    float *init;         /* the initial model of SEED */
    up_frame up[UP_MAX]; /* every frame sent upstream, never cleared */
    size_t n_up;
} rig;

/* The suites' init: the region logs errors only. */
void rig_quiet(void);
/* A region (us-east) of 2 workers, BSP, a sync every 3 steps, SGD at LR, dense deltas, no budget.
 */
void rig_config(rig *g);
/* Takes what the region queued into g->acts, noting every frame sent upstream. */
void drain(rig *g);
/* Makes and starts the region of g->cfg (rig_config, then a test's changes) at time 0. */
void rig_open(rig *g);
/* Frees the region and everything the rig holds. */
void rig_fini(rig *g);
/* Forgets the actions taken so far. */
void clear(rig *g);
/* Hands the region one frame, as received from name through route. */
void feed(rig *g, int link, gdml_blob *frame, const char *name, const char *route);
/* A frame without a tensor (HELLO, HEARTBEAT, LEAVE...) from name through route. */
void feed_control(rig *g, int link, gdml_msg_type type, const char *name, const char *route,
                  uint64_t step, uint64_t count);
/* Moves the clock to t and ticks the region. */
void tick(rig *g, int64_t t);
/* Worker name joins through route, declaring samples. */
void hello(rig *g, const char *name, const char *route, uint64_t samples);
/* A worker's gradient for step, weighing batch: its frames, one per chunk. */
gdml_blob **push_frames(rig *g, const char *name, uint64_t step, uint64_t batch, const float *grad,
                        size_t *nf);
/* Worker name pushes its gradient for step, all its chunks in order. */
void push(rig *g, const char *name, const char *route, uint64_t step, uint64_t batch,
          const float *grad);
/* A tensor from the coordinator (WELCOME, GLOBAL), all its chunks. */
void coord_tensor(rig *g, gdml_msg_type type, const char *text, uint64_t count, uint64_t version,
                  const float *x);
/* A control frame from the coordinator (STOP, ERROR, BUDGET...). */
void coord_control(rig *g, gdml_msg_type type, gdml_reason code, const char *text);
/* The layout, and the initial model of SEED made by the model's own init. */
void set_layout(rig *g, const char *text);
/* The coordinator's WELCOME: layout text, seed SEED, version 0, zero change. */
void welcome(rig *g, const char *text);
/* True if action a is a SEND to route ("" = upstream). */
bool sent_to(const test_action *a, const char *route);
/*
 * Decodes the SENDs of type to route (route "" = upstream) into out[0..n),
 * checking that they are one transfer covering the tensor exactly once;
 * returns how many frames there were (0: none) and the first one's header.
 */
size_t sent_tensor(const rig *g, gdml_msg_type type, const char *route, float *out,
                   gdml_msg_header *first);
/* Fails unless got[i] is within float rounding of want[i], for every i. */
void assert_close(const float *got, const double *want, size_t n, const char *what);
/* The model sent to route as type: exactly expected, in one transfer. */
void assert_model(const rig *g, gdml_msg_type type, const char *route, const double *want,
                  uint64_t step, uint64_t version);
/* The initial model, in double: what the tests move by hand. */
double *dup_init(const rig *g);
/* Expected SGD step on chunk range [lo, hi) over the pushes given. */
void sgd_range(double *p, size_t lo, size_t hi, const float *const *grads, const double *batches,
               size_t k);
/* Expected SGD step over the whole model of two pushes (gradient, batch). */
void sgd2(double *p, size_t n, const float *g1, double b1, const float *g2, double b2);
/* Expected SGD step over the whole model of one push. */
void sgd1(double *p, size_t n, const float *g1, double b1);
/* A deterministic gradient, different per worker w and step k, |g| <= 0.05. */
float *gradient(size_t n, unsigned w, unsigned k);
/* The region's EXIT action, or NULL if it queued none. */
const test_action *exit_action(const rig *g);
/* The region's counters. */
gdml_region_stats stats(const rig *g);
/* Two workers join (w1: 600 samples via r1, w2: 400 via r2) and the coordinator welcomes. */
void rig_train(rig *g, const char *layout);
/* One BSP step of both workers, the expected model moved along. */
void step2(rig *g, double *want, unsigned step);
/* The coordinator's GLOBAL of version 1 while a delta made from `sent` is in
 * flight: the expected live model becomes g + (x - sent), g = anchor + change. */
void global_in_flight(rig *g, double *want, double *anchor, const double *sent);
/* The model sent to route in this batch of actions, with its step tag; false if none. */
bool model_to(const rig *g, const char *route, uint64_t *tag);
/* SSP and ASP: one gradient, a mean over its batch, applied by SGD at LR. */
void apply(double *want, size_t n, const float *grad);

#endif
