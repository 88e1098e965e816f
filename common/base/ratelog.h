/*
 * ratelog.h - log lines about what peers send, rate-limited and counted.
 *
 * A hostile or broken peer must not be able to fill a disk with our own
 * warnings. The first event of a (peer, reason) pair in an interval is
 * logged at once, with its details; later ones in the same interval are only
 * counted, and gdml_ratelog_flush writes one summary line per pair for each
 * interval that had any (event "suppressed" with of=EVENT peer=x reason=stale
 * count=4999). Peers beyond the
 * table's capacity share one entry, "(others)", so the table is bounded
 * too. Times come from the caller, so a state machine can use one and stay
 * free of clocks.
 */
#ifndef GDML_RATELOG_H
#define GDML_RATELOG_H

#include "err.h"
#include "log.h"

#include <stddef.h>
#include <stdint.h>

typedef struct gdml_ratelog gdml_ratelog;

/* A table of up to max_pairs (peer, reason) pairs, one line each per interval_ms. */
gdml_err gdml_ratelog_new(int64_t interval_ms, size_t max_pairs, gdml_ratelog **out);

/* Frees it; writes nothing. NULL-safe; clears *r. */
void gdml_ratelog_destroy(gdml_ratelog **r);

/*
 * Counts one event of `reason` (a static string, compared by content) from
 * peer. If it is the first of its pair in the current interval, writes the
 * line `event peer=<peer> reason=<reason>` and then the fields (a log.h fields
 * format, or NULL) at level; otherwise only counts it. event is static too.
 */
void gdml_ratelog_note(gdml_ratelog *r, int64_t now_ms, gdml_log_level level, const char *event,
                       const char *peer, const char *reason, const char *fields, ...)
    __attribute__((format(printf, 7, 8)));

/* Writes the summary lines of every interval that has ended by now_ms. */
void gdml_ratelog_flush(gdml_ratelog *r, int64_t now_ms);

/* Events noted in all, logged or not. */
uint64_t gdml_ratelog_total(const gdml_ratelog *r);

/* Lines written so far (details and summaries). */
uint64_t gdml_ratelog_lines(const gdml_ratelog *r);

#endif
