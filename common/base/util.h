/*
 * util.h - small process-level helpers shared by the programs: clocks,
 * directories, atomic file writes, and the stop flag that SIGINT/SIGTERM set.
 */
#ifndef GDML_UTIL_H
#define GDML_UTIL_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Milliseconds on a monotonic clock (for timeouts and durations). */
int64_t gdml_now_ms(void);

/* Microseconds on the same clock (for measuring short work). */
int64_t gdml_now_us(void);

/* Milliseconds since the Unix epoch (for timestamps that are stored). */
int64_t gdml_wall_ms(void);

/*
 * Makes freed memory serve the next allocation instead of going back to the
 * kernel (glibc; elsewhere it does nothing). Call once at start. Tensors
 * travel in frames of about a megabyte, allocated for each message and
 * freed once sent or read; with glibc's defaults each came from a fresh
 * mapping or a trimmed heap, and every page of every frame page-faulted.
 * Blocks of 4 MiB or more (models, data sets) are still mapped on their own
 * and returned when freed; the heap keeps up to 1 GiB free, never more than
 * the process held at its peak.
 */
void gdml_keep_freed_memory(void);

/* Creates dir and its missing parents (mode 0755). GDML_ERR_IO with e on failure. */
gdml_err gdml_mkdir_p(const char *dir, gdml_errmsg *e);

/*
 * Writes data[0..len) to path through a temporary file and rename(2), so that
 * a reader sees either the old file or the whole new one.
 */
gdml_err gdml_write_file_atomic(const char *path, const void *data, size_t len, gdml_errmsg *e);

/*
 * Writes endpoint and a newline to path, atomically, so that a launcher or a
 * script can learn the port a program bound ("tcp://127.0.0.1:*"). Does
 * nothing if path is empty (no endpoint file was asked for).
 */
gdml_err gdml_write_endpoint_file(const char *path, const char *endpoint, gdml_errmsg *e);

/*
 * Installs SIGINT and SIGTERM handlers that set the stop flag, a SIGHUP
 * handler that sets the reload flag (without SA_RESTART, so blocking waits
 * return early), and ignores SIGPIPE.
 */
void gdml_signals_install(void);

/* True once SIGINT or SIGTERM has arrived. */
bool gdml_stop_requested(void);

/* True if SIGHUP arrived since the last call (which clears it). */
bool gdml_reload_requested(void);

/* Parses a whole unsigned decimal number; false on anything else or overflow. */
bool gdml_parse_u64(const char *s, uint64_t *out);

/* Sorts n unsigned 32-bit numbers ascending (feature indices, keys). */
void gdml_sort_u32(uint32_t *v, size_t n);

#endif
