/*
 * log.h - one line per event on stderr, as text or as JSON.
 *
 * Every line names an event and carries its figures as key=value fields:
 *
 *   text: 2026-11-22T02:50:01.123Z INFO coordinator commit version=3 round=3 accuracy=0.8123
 *         2026-11-22T02:50:01.130Z WARN server[us-east] worker_silent worker=r1.w2 ms=5012
 *   json: {"ts":"2026-11-22T02:50:01.123Z","level":"info","role":"coordinator",
 *          "event":"commit","version":3,"round":3,"accuracy":0.8123}
 *
 * A call site reads as the event and a printf format of its fields:
 *
 *   gdml_info("commit", "version=%llu round=%llu accuracy=%.4f", v, r, acc);
 *
 * The fields format is space-separated `key=%conv` (or `key=word`) pairs; the
 * compiler checks it as a printf format. Each value is formatted on its own,
 * so a %s value with spaces or quotes is quoted in text and escaped in JSON,
 * and numbers stay numbers in JSON (%x and %s are strings; a float that is
 * not finite is null). Width or precision given as `*` is not supported.
 * Keys ts, level, role, name and event are the line's own; fields must not
 * use them.
 *
 * The macros test the level before formatting, so a disabled DEBUG line costs
 * one comparison. Logging is the one piece of process-wide state in gdml: it is
 * set once by main() through gdml_log_init() and only read afterwards.
 */
#ifndef GDML_LOG_H
#define GDML_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum gdml_log_level {
    GDML_LOG_ERROR = 0,
    GDML_LOG_WARN,
    GDML_LOG_INFO,
    GDML_LOG_DEBUG,
} gdml_log_level;

typedef enum gdml_log_format {
    GDML_LOG_TEXT = 0,
    GDML_LOG_JSON,
} gdml_log_format;

/*
 * Sets who writes (role "coordinator", "server", "worker"; name the region or
 * worker, or NULL/"" for none), the level and the format. Strings are copied.
 */
void gdml_log_init(const char *role, const char *name, gdml_log_level level,
                   gdml_log_format format);

/* Parses "error", "warn", "info" or "debug"; returns -1 for anything else. */
int gdml_log_level_parse(const char *s);

/* Parses "text" or "json"; returns -1 for anything else. */
int gdml_log_format_parse(const char *s);

/* The current threshold; lines above it are not formatted. */
gdml_log_level gdml_log_threshold(void);

/* The longest line written, newline included; longer ones lose fields and say truncated. */
#define GDML_LOG_LINE_MAX 4096

/*
 * One line being built, in caller-owned storage (the field builder beneath
 * the macros; ratelog.c uses it to prefix fields of its own). begin, then any
 * fields, then end (which closes the line) or emit (end and write to stderr).
 */
typedef struct gdml_log_line {
    char buf[GDML_LOG_LINE_MAX + 1];
    size_t len;
    gdml_log_format format;
    bool truncated, ended;
} gdml_log_line;

/* Starts a line: the timestamp, level, role, name and event. */
void gdml_log_begin(gdml_log_line *l, gdml_log_level level, const char *event);

/* Adds a string field (quoted or escaped as the format needs; NULL is written as "(null)"). */
void gdml_log_str(gdml_log_line *l, const char *key, const char *value);

/* Adds an integer field. */
void gdml_log_int(gdml_log_line *l, const char *key, long long value);

/* Adds the fields of a `key=%conv ...` format (see the top of this file). */
void gdml_log_fields(gdml_log_line *l, const char *fields, ...)
    __attribute__((format(printf, 2, 3)));
void gdml_log_vfields(gdml_log_line *l, const char *fields, va_list ap);

/* Closes the line (newline included) and returns its text, owned by l. */
const char *gdml_log_end(gdml_log_line *l);

/* Closes the line and writes it to stderr in one write, so processes do not interleave. */
void gdml_log_emit(gdml_log_line *l);

/* Writes one event (fields may be NULL). Use the macros below, which check the level first. */
void gdml_log_event(gdml_log_level level, const char *event, const char *fields, ...)
    __attribute__((format(printf, 3, 4)));

#define GDML_LOG(level, ...)                                                                       \
    do {                                                                                           \
        if ((level) <= gdml_log_threshold())                                                       \
            gdml_log_event((level), __VA_ARGS__);                                                  \
    } while (0)

/* gdml_info(event, fields, ...): e.g. gdml_info("worker_join", "worker=%s", name). */
#define gdml_error(...) GDML_LOG(GDML_LOG_ERROR, __VA_ARGS__)
#define gdml_warn(...) GDML_LOG(GDML_LOG_WARN, __VA_ARGS__)
#define gdml_info(...) GDML_LOG(GDML_LOG_INFO, __VA_ARGS__)
#define gdml_debug(...) GDML_LOG(GDML_LOG_DEBUG, __VA_ARGS__)

#endif
