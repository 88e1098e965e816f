/*
 * supervisor.h - what gdml-launch does when one of its children dies, and
 * its chaos option that kills children on purpose.
 *
 * A child that dies is started again, with the arguments it was first given,
 * after a backoff that doubles with each quick death in a row (to 10 s; a
 * child that ran 10 s counts as healthy again), up to a limit per child; past the limit, or when it
 * exits with a status that a restart cannot mend (2: its configuration is wrong; 4: its store is
 * damaged), the job fails. Chaos kills a random running child with SIGKILL
 * at random intervals, for demos, tests and the punisher soak. Every death
 * and restart is printed as one line and kept for summary.json.
 */
#ifndef GDML_SUPERVISOR_H
#define GDML_SUPERVISOR_H

#include "err.h"
#include "procs.h"
#include "rng.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define GDML_SUPERVISOR_MAX_EVENTS 1024
#define GDML_RESTART_BACKOFF_MAX_MS 10000
#define GDML_RESTART_HEALTHY_MS                                                                    \
    10000 /* a child that ran this long restarts without backoff growth */

/* Roles chaos may kill, as a mask. */
enum { GDML_ROLE_COORDINATOR = 1, GDML_ROLE_SERVER = 2, GDML_ROLE_WORKER = 4 };

typedef struct gdml_supervisor_config {
    unsigned restart_limit; /* restarts per child; 0: a death fails the job */
    int64_t backoff_ms;     /* before its first restart */
    int64_t chaos_every_ms; /* mean interval between kills; 0: no chaos */
    unsigned chaos_kills;   /* kills in all */
    unsigned chaos_roles;   /* GDML_ROLE_* mask */
    uint64_t chaos_seed;
} gdml_supervisor_config;

/* One death, and when the child was started again (0: it was not). */
typedef struct gdml_supervisor_event {
    char name[96];
    int64_t died_ms, restarted_ms; /* since the supervisor started */
    int status;                    /* as gdml_proc.status */
    bool chaos;                    /* killed by chaos */
} gdml_supervisor_event;

typedef struct gdml_supervisor {
    gdml_supervisor_config cfg;
    gdml_proc *procs;
    size_t n_procs;
    int64_t start_ms, next_chaos_ms;
    unsigned kills;
    bool finishing; /* the job is ending: nothing is restarted or killed */
    gdml_rng rng;
    FILE *out; /* one line per death and restart */
    gdml_supervisor_event events[GDML_SUPERVISOR_MAX_EVENTS];
    size_t n_events;
} gdml_supervisor;

/* The GDML_ROLE_* of a child called name ("coordinator", "server X", "worker Y"). */
unsigned gdml_role_of(const char *name);

/* The mask for a comma list of role names; false if one is unknown. */
bool gdml_roles_parse(const char *list, unsigned *mask);

/* True if a child that exited with status may be helped by a restart. */
bool gdml_restart_may_help(int status);

/* The wait before a child's restart number `restarts` (0 for its first). */
int64_t gdml_restart_backoff_ms(int64_t base_ms, unsigned restarts);

void gdml_supervisor_init(gdml_supervisor *s, const gdml_supervisor_config *cfg, gdml_proc *procs,
                          size_t n_procs, FILE *out, int64_t now_ms);

/* The children array grew (more were started); n_procs is its new length. */
void gdml_supervisor_track(gdml_supervisor *s, gdml_proc *procs, size_t n_procs);

/*
 * Child p exited (reaped). Schedules its restart and returns GDML_OK, or
 * returns an error saying why the job must stop. A child that exited 0, or
 * any child once the job is finishing, is left alone.
 */
gdml_err gdml_supervisor_on_exit(gdml_supervisor *s, gdml_proc *p, int64_t now_ms, gdml_errmsg *e);

/* Restarts that are due, and chaos's next kill if it is due. */
gdml_err gdml_supervisor_tick(gdml_supervisor *s, int64_t now_ms, gdml_errmsg *e);

/* From now on nothing is restarted or killed (the job is ending). */
void gdml_supervisor_finish(gdml_supervisor *s);

#endif
