/*
 * support.h - helpers for gdml's Criterion tests: private temporary
 * directories, paths to the built programs, and running a program to
 * completion with its output captured. Every test gets its own directory and
 * lets the kernel pick ports, so tests run in parallel safely.
 */
#ifndef GDML_TEST_SUPPORT_H
#define GDML_TEST_SUPPORT_H

#include "store.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Creates a fresh directory under $TMPDIR (or /tmp); returns its malloc'd path. */
char *gdml_test_tmpdir(void);

/* Removes a directory tree made by gdml_test_tmpdir and frees the path. */
void gdml_test_rmtree(char *dir);

/* Path of a built program ("gdml-coordinator") in $GDML_BUILD_DIR; malloc'd. */
char *gdml_test_program(const char *name);

/* Path of a file in the source tree ("config/region.ini"); malloc'd. */
char *gdml_test_source_path(const char *rel);

/* True if the Fashion-MNIST package files are installed. */
bool gdml_test_have_fashion_mnist(void);

/* Path of a Fashion-MNIST file ("train-images-idx3-ubyte.gz"); static storage. */
const char *gdml_test_fashion(const char *file);

/*
 * Runs argv (argv[0] a path) with stdout and stderr captured into *out
 * (malloc'd, NUL-terminated), waiting at most timeout_s; kills it on timeout.
 * Returns the exit status (0..255), 128+signal if killed by a signal, -1 on
 * timeout or failure to start.
 */
int gdml_test_run(char *const argv[], int timeout_s, char **out);

/* Starts argv in the background with stdout+stderr appended to log_path. */
pid_t gdml_test_spawn(char *const argv[], const char *log_path);

/* Waits for pid at most timeout_s; returns as gdml_test_run does (kills on timeout). */
int gdml_test_wait(pid_t pid, int timeout_s);

/* Reads a whole file (malloc'd, NUL-terminated) or NULL. */
char *gdml_test_read_file(const char *path);

/* Waits up to timeout_s for path to exist and returns its contents (trimmed), or NULL. */
char *gdml_test_wait_file(const char *path, int timeout_s);

/* Waits up to timeout_s for the file at path to contain needle. */
bool gdml_test_wait_for_text(const char *path, const char *needle, int timeout_s);

/* The number after "key": in a JSON text (summary.json); asserts the key is there. */
double gdml_test_json_number(const char *json, const char *key);

/* Region `name`'s part of version m's metadata; fails the test if m lacks it. */
const gdml_region_part *gdml_test_region_part(const gdml_version_meta *m, const char *name);

/* How many lines of text start with prefix. */
int gdml_test_count_lines(const char *text, const char *prefix);

/* Writes text to path; asserts on failure. */
void gdml_test_write_file(const char *path, const char *text);

#endif
