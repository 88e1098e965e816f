/*
 * log.c - the process's log settings and the start, end and write of a line
 * (log.h). How values are quoted, escaped and typed is logfmt.c's.
 */
#include "log.h"

#include "logfmt.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char log_role[32] = "gdml";
static char log_name[96] = "";
static gdml_log_level log_level = GDML_LOG_INFO;
static gdml_log_format log_format = GDML_LOG_TEXT;

static const char *const level_text[] = {"ERROR", "WARN", "INFO", "DEBUG"};
static const char *const level_json[] = {"error", "warn", "info", "debug"};

void gdml_log_init(const char *role, const char *name, gdml_log_level level,
                   gdml_log_format format)
{
    if (role)
        snprintf(log_role, sizeof log_role, "%s", role);
    snprintf(log_name, sizeof log_name, "%s", name ? name : "");
    log_level = level;
    log_format = format;
}

int gdml_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_json[i]) == 0)
            return i;
    return -1;
}

int gdml_log_format_parse(const char *s)
{
    if (strcmp(s, "text") == 0)
        return GDML_LOG_TEXT;
    if (strcmp(s, "json") == 0)
        return GDML_LOG_JSON;
    return -1;
}

gdml_log_level gdml_log_threshold(void)
{
    return log_level;
}

void gdml_log_begin(gdml_log_line *l, gdml_log_level level, const char *event)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[64];
    snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);

    l->len = 0;
    l->truncated = l->ended = false;
    l->format = log_format;
    l->buf[0] = '\0';
    if (l->format == GDML_LOG_JSON) {
        gdml_logfmt_put(l, "{\"ts\":\"", 7);
        gdml_logfmt_put(l, stamp, strlen(stamp));
        gdml_logfmt_put(l, "\",\"level\":\"", 11);
        gdml_logfmt_put(l, level_json[level], strlen(level_json[level]));
        gdml_logfmt_put(l, "\"", 1);
        gdml_log_str(l, "role", log_role);
        if (*log_name)
            gdml_log_str(l, "name", log_name);
        gdml_log_str(l, "event", event);
        return;
    }
    /* Text: "TS LEVEL role[name] event"; the level padded so that roles line up. */
    char head[192];
    int n = snprintf(head, sizeof head, "%s %-5s %s%s%s%s %s", stamp, level_text[level], log_role,
                     *log_name ? "[" : "", log_name, *log_name ? "]" : "", event);
    if (n > 0)
        gdml_logfmt_put(l, head, (size_t)n < sizeof head ? (size_t)n : sizeof head - 1);
}

const char *gdml_log_end(gdml_log_line *l)
{
    if (l->ended)
        return l->buf;
    gdml_logfmt_close(l);
    l->ended = true;
    return l->buf;
}

void gdml_log_emit(gdml_log_line *l)
{
    gdml_log_end(l);
    /* One write(2) per line: lines of processes sharing a file stay whole. */
    fflush(stderr);
    ssize_t w = write(2, l->buf, l->len);
    (void)w; /* nowhere left to report a failure to log */
}

void gdml_log_event(gdml_log_level level, const char *event, const char *fields, ...)
{
    gdml_log_line l;
    gdml_log_begin(&l, level, event);
    if (fields) {
        va_list ap;
        va_start(ap, fields);
        gdml_log_vfields(&l, fields, ap);
        va_end(ap);
    }
    gdml_log_emit(&l);
}
