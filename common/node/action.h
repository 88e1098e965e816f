/*
 * action.h - what a gdml state machine asks its event loop to do.
 *
 * The coordinator's and the regional server's protocol logic are state
 * machines in the manner of nghttp2: they are fed events (a decoded,
 * authenticated frame; a timer; the result of a commit) and queue actions,
 * which the loop takes one at a time and carries out. A state machine never
 * touches a socket, a clock or a file, so tests drive it with any sequence
 * of events and check the actions it queues.
 */
#ifndef GDML_ACTION_H
#define GDML_ACTION_H

#include "blob.h"
#include "err.h"
#include "transport.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum gdml_action_kind {
    GDML_ACT_SEND = 1, /* send frame on link, to peer (a bound link's connection) */
    GDML_ACT_DROP,     /* close peer's connection on link */
    GDML_ACT_COMMIT,   /* write the state machine's pending version; report the result */
    GDML_ACT_EXIT,     /* the run is over: exit with status, text says why */
} gdml_action_kind;

/* The links a state machine talks on. */
enum { GDML_LINK_DOWN = 0 /* the bound side: workers or regions */, GDML_LINK_UP = 1 };

typedef struct gdml_action {
    gdml_action_kind kind;
    int link;         /* GDML_LINK_DOWN or GDML_LINK_UP */
    gdml_peer peer;   /* SEND and DROP on the bound link */
    gdml_blob *frame; /* SEND: the sealed frame; the action owns this reference */
    int status;       /* EXIT: the process's exit status */
    gdml_err err;     /* EXIT: the error that ended the run, or GDML_OK */
    char text[GDML_ERRMSG_MAX]; /* EXIT: why, for the log */
} gdml_action;

/* A FIFO of actions. Zero-initialised storage is an empty queue. */
typedef struct gdml_actions {
    gdml_action *q;
    size_t head, n, cap;
} gdml_actions;

/* Queues a; on success the queue owns a->frame. GDML_ERR_NOMEM (the caller keeps it). */
gdml_err gdml_actions_push(gdml_actions *a, const gdml_action *act);

/* Queues a SEND of frame (the queue takes its own reference). */
gdml_err gdml_actions_send(gdml_actions *a, int link, const gdml_peer *peer, gdml_blob *frame);

/* Takes the oldest action; false if none. The caller owns out->frame. */
bool gdml_actions_pop(gdml_actions *a, gdml_action *out);

/* Actions waiting. */
size_t gdml_actions_count(const gdml_actions *a);

/* Drops every queued action and frees the queue. */
void gdml_actions_fini(gdml_actions *a);

/* Frees what one popped action holds. */
void gdml_action_release(gdml_action *act);

#endif
