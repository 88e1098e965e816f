/*
 * program.h - the main() shared by gdml's long-running programs: parse the
 * command line, set up logging, signals and BLAS threads, run, and turn the
 * result into an exit status:
 *   0    done
 *   1    failed (the log's last line says why)
 *   2    bad usage or configuration (the file, key and what is allowed)
 *   3    timed out: nothing moved for the configured timeout (who it waited for)
 *   4    a file it needs is damaged, truncated or not what it should be (the
 *        model store, a data set, a key file), or the disk is full
 *   130  stopped by a signal (SIGINT or SIGTERM), after a clean shutdown
 * docs/operations.md lists them too.
 */
#ifndef GDML_PROGRAM_H
#define GDML_PROGRAM_H

#include "config.h"
#include "err.h"

typedef gdml_err (*gdml_run_fn)(const gdml_config *cfg, gdml_errmsg *e);

/* The exit status for what ended a run (the table above). */
int gdml_exit_status(gdml_err err);

/* Parses argv for program p and calls run; returns the exit status. */
int gdml_main(const gdml_program *p, int argc, char **argv, gdml_run_fn run);

/*
 * Reads the configuration again as gdml_main first did: defaults, the
 * --config file as it is now, then the command line's overrides. For SIGHUP
 * reloads; only valid while gdml_main runs. GDML_ERR_CONFIG with e on a bad
 * file (the caller keeps its old configuration then).
 */
gdml_err gdml_program_reload(gdml_config *out, gdml_errmsg *e);

#endif
