/*
 * procs.h - starting and supervising the child processes of a local job:
 * each child's output goes to its own log file (one child's stdout may come
 * back through a pipe instead), children that exit are noticed at once, a
 * child can be started again with the arguments it was first given, and a
 * failed job stops every child instead of leaving it running.
 */
#ifndef GDML_PROCS_H
#define GDML_PROCS_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct gdml_proc {
    char name[96]; /* "server us-east" */
    char log_path[4096];
    pid_t pid;  /* 0 once reaped */
    int status; /* exit status once reaped: 0..255, or 128 + signal */
    bool exited;
    int stdout_fd; /* read end of its stdout, or -1 */
    char **argv;   /* owned copy of what it was started with, for restarts */
    bool pipe_stdout;
    unsigned restarts;     /* how many times it was started again */
    unsigned backoff_step; /* restarts since it last ran long enough to count as healthy */
    int64_t started_ms;    /* when it was last started (gdml_now_ms) */
    int64_t restart_at_ms; /* when a restart is due, or 0 */
} gdml_proc;

/*
 * Starts argv[0] (a path) with stderr, and stdout unless pipe_stdout, appended
 * to log_path; with pipe_stdout, p->stdout_fd reads its stdout. Returns
 * GDML_ERR_IO if the log cannot be opened or fork fails.
 */
gdml_err gdml_proc_start(gdml_proc *p, const char *name, char *const argv[], const char *log_path,
                         bool pipe_stdout, gdml_errmsg *e);

/*
 * Starts p again with the arguments it was last given, its output appended
 * to the same log (a new pipe if it had one; the old one is closed).
 */
gdml_err gdml_proc_restart(gdml_proc *p, gdml_errmsg *e);

/* The argument after flag in p's arguments becomes value, for its next start. */
gdml_err gdml_proc_set_arg(gdml_proc *p, const char *flag, const char *value, gdml_errmsg *e);

/* Frees what gdml_proc_start kept (the process itself is not touched). */
void gdml_proc_fini(gdml_proc *p);

/* Reaps exited children without blocking; returns one that exited, or NULL. */
gdml_proc *gdml_procs_reap(gdml_proc *procs, size_t n);

/* Waits up to timeout_ms for all to exit; returns true if they all did. */
bool gdml_procs_wait_all(gdml_proc *procs, size_t n, int timeout_ms);

/* SIGTERM to every running child, then SIGKILL to those alive after grace_ms. */
void gdml_procs_stop_all(gdml_proc *procs, size_t n, int grace_ms);

/* Copies up to the last `lines` lines of p's log into buf, each indented. */
void gdml_proc_log_tail(const gdml_proc *p, int lines, char *buf, size_t cap);

#endif
