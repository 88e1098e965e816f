/*
 * log.h - one-line, leveled logging to stderr.
 *
 * Lines look like `2026-11-22T02:50:01.123Z coordinator INFO round 3 committed`.
 * The macros test the level before formatting, so a disabled DEBUG line costs
 * one comparison. Logging is the one piece of process-wide state in gdml: it is
 * set once by main() through gdml_log_init() and only read afterwards.
 */
#ifndef GDML_LOG_H
#define GDML_LOG_H

typedef enum gdml_log_level {
    GDML_LOG_ERROR = 0,
    GDML_LOG_WARN,
    GDML_LOG_INFO,
    GDML_LOG_DEBUG,
} gdml_log_level;

/* Sets the name printed on every line (e.g. "server us-east") and the level. */
void gdml_log_init(const char *name, gdml_log_level level);

/* Parses "error", "warn", "info" or "debug"; returns -1 for anything else. */
int gdml_log_level_parse(const char *s);

/* The current threshold; lines above it are not formatted. */
gdml_log_level gdml_log_threshold(void);

/* Writes one line. Use the macros below, which check the level first. */
void gdml_log_write(gdml_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define GDML_LOG(level, ...)                                                                       \
    do {                                                                                           \
        if ((level) <= gdml_log_threshold())                                                       \
            gdml_log_write((level), __VA_ARGS__);                                                  \
    } while (0)

#define gdml_error(...) GDML_LOG(GDML_LOG_ERROR, __VA_ARGS__)
#define gdml_warn(...) GDML_LOG(GDML_LOG_WARN, __VA_ARGS__)
#define gdml_info(...) GDML_LOG(GDML_LOG_INFO, __VA_ARGS__)
#define gdml_debug(...) GDML_LOG(GDML_LOG_DEBUG, __VA_ARGS__)

#endif
