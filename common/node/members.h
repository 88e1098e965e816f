/*
 * members.h - the peers a state machine serves (a coordinator's regions, a
 * regional server's workers): who may join, who has, through which
 * connection, what each declared, and when each was last heard from.
 *
 * A member's name is the one its key authenticated (transport.h); its route
 * is the connection it last joined through. Only a HELLO moves a member to
 * a new route, so a stale connection of a restarted peer is told to join
 * again rather than believed. Slots keep their index for the life of the
 * table, so a state machine can keep per-member arrays beside it.
 */
#ifndef GDML_MEMBERS_H
#define GDML_MEMBERS_H

#include "names.h"
#include "transport.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum gdml_member_state {
    GDML_MEMBER_FREE = 0, /* an empty slot */
    GDML_MEMBER_JOINED,   /* joined and heard from lately */
    GDML_MEMBER_SILENT,   /* joined, but silent past the timeout: nobody waits for it */
    GDML_MEMBER_LEFT,     /* said LEAVE, or its connection was dropped */
    GDML_MEMBER_STOPPED,  /* told to stop (its budget is spent): it stays out */
} gdml_member_state;

typedef struct gdml_member {
    char name[GDML_NAME_MAX];
    gdml_member_state state;
    gdml_peer route;
    uint64_t samples; /* what its HELLO declared */
    int64_t joined_ms, heard_ms;
} gdml_member;

typedef struct gdml_members {
    gdml_member *slots;
    size_t cap, used;
    /* Names allowed to join (empty: any valid name while slots last). */
    char (*allowed)[GDML_NAME_MAX];
    size_t n_allowed;
} gdml_members;

/* A table of cap slots; allowed[0..n_allowed) are copied. GDML_ERR_NOMEM. */
gdml_err gdml_members_init(gdml_members *m, size_t cap, const char (*allowed)[GDML_NAME_MAX],
                           size_t n_allowed);

void gdml_members_fini(gdml_members *m);

/* The slot of name, or -1. */
int gdml_members_find(const gdml_members *m, const char *name);

/* True if name may join (it is listed, or the list is empty). */
bool gdml_members_allowed(const gdml_members *m, const char *name);

/* A new slot for name (which must not have one), or -1 if every slot is used. */
int gdml_members_add(gdml_members *m, const char *name);

/* True if member i is joined, or silent, and rx came through its route. */
bool gdml_members_route_ok(const gdml_members *m, int i, const gdml_peer *route);

/* The member whose route is this connection, or -1. */
int gdml_members_by_route(const gdml_members *m, const gdml_peer *route);

/*
 * The member that route belongs to leaves (its connection was dropped):
 * returns its slot if it was joined or silent (now LEFT), else -1.
 */
int gdml_members_drop_route(gdml_members *m, const gdml_peer *route);

/* Members in state. */
size_t gdml_members_count(const gdml_members *m, gdml_member_state state);

#endif
