/*
 * sm_support.h - helpers for the state machines' table tests: frames made
 * as a peer would make them, handed to a state machine as received frames
 * (no socket), and the actions it queued, collected and decoded.
 */
#ifndef GDML_TEST_SM_SUPPORT_H
#define GDML_TEST_SM_SUPPORT_H

#include "action.h"
#include "msg.h"
#include "transport.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A received frame as the transport hands it over: rx owns a copy of frame's bytes. */
typedef struct test_rx {
    gdml_rx rx;
    uint8_t *bytes;
} test_rx;

/* Fills t from a sealed frame, as if peer `route` authenticated as `name` sent it. */
void test_rx_from(test_rx *t, gdml_blob *frame, const char *name, const char *route);
void test_rx_fini(test_rx *t);

/* A header-only frame of type from name (seq, version, step, count as given). */
gdml_blob *test_control(gdml_msg_type type, const char *name, uint64_t seq, uint64_t version,
                        uint64_t step, uint64_t count);

/*
 * The frames of tensor x[0..n) as message h (dense f32 unless spec names
 * another encoder): *n_frames of them, malloc'd array of references.
 */
gdml_blob **test_tensor_frames(gdml_msg_header *h, const float *x, size_t n, const char *spec,
                               size_t *n_frames);
void test_frames_free(gdml_blob **frames, size_t n);

/* One action, with its frame's header decoded when it is a SEND. */
typedef struct test_action {
    gdml_action act;
    gdml_msg_header h;    /* SEND: the frame's header */
    const uint8_t *payload;
} test_action;

/* The actions a state machine queued, in order. */
typedef struct test_actions {
    test_action *a;
    size_t n, cap;
} test_actions;

void test_actions_add(test_actions *t, gdml_action *act);
void test_actions_clear(test_actions *t);

/* How many SENDs of type there are (to route, if not NULL; route "" = the upstream link). */
size_t test_count_sends(const test_actions *t, gdml_msg_type type, const char *route);

/* The first SEND of type (to route, if not NULL), or NULL. */
const test_action *test_find_send(const test_actions *t, gdml_msg_type type, const char *route);

/* How many actions of kind there are. */
size_t test_count_kind(const test_actions *t, gdml_action_kind kind);

/* A route (peer id) from a string. */
gdml_peer test_route(const char *s);

#endif
