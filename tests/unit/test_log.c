/*
 * test_log.c - the log line formatter (log.h, logfmt.c): text lines quote
 * only what must be quoted and escape inside quotes; JSON lines escape
 * quotes, backslashes, control characters and bytes that are not UTF-8, keep
 * numbers as numbers and non-finite floats as null, and stay one valid JSON
 * object however long the values are. A small strict JSON checker below
 * reads every JSON line back.
 */
#include "log.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- a strict JSON checker (RFC 8259), enough to read a log line back ---- */

typedef struct jp {
    const char *p, *end;
    int depth;
} jp;

static bool j_value(jp *j);

static void j_ws(jp *j)
{
    while (j->p < j->end && strchr(" \t\r\n", *j->p))
        j->p++;
}

static bool j_hex4(jp *j)
{
    for (int i = 0; i < 4; i++, j->p++)
        if (j->p >= j->end || !strchr("0123456789abcdefABCDEF", *j->p))
            return false;
    return true;
}

/* A string: no raw control characters, only JSON's escapes. */
static bool j_string(jp *j)
{
    if (j->p >= j->end || *j->p != '"')
        return false;
    for (j->p++; j->p < j->end; j->p++) {
        unsigned char c = (unsigned char)*j->p;
        if (c == '"') {
            j->p++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\') {
            j->p++;
            if (j->p >= j->end)
                return false;
            if (*j->p == 'u') {
                j->p++;
                if (!j_hex4(j))
                    return false;
                j->p--;
            } else if (!strchr("\"\\/bfnrt", *j->p)) {
                return false;
            }
        }
    }
    return false;
}

static bool j_number(jp *j)
{
    const char *s = j->p;
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p < j->end && *j->p == '0')
        j->p++;
    else if (j->p < j->end && *j->p >= '1' && *j->p <= '9')
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    else
        return false;
    if (j->p < j->end && *j->p == '.') {
        const char *d = ++j->p;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
        if (j->p == d)
            return false;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        const char *d = j->p;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
        if (j->p == d)
            return false;
    }
    return j->p > s;
}

static bool j_word(jp *j, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0)
        return false;
    j->p += n;
    return true;
}

static bool j_object(jp *j)
{
    j->p++; /* '{' */
    j_ws(j);
    if (j->p < j->end && *j->p == '}')
        return j->p++, true;
    for (;;) {
        j_ws(j);
        if (!j_string(j))
            return false;
        j_ws(j);
        if (j->p >= j->end || *j->p++ != ':')
            return false;
        if (!j_value(j))
            return false;
        j_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        return j->p < j->end && *j->p++ == '}';
    }
}

static bool j_value(jp *j)
{
    j_ws(j);
    if (j->p >= j->end || ++j->depth > 16)
        return false;
    bool ok;
    switch (*j->p) {
    case '{': ok = j_object(j); break;
    case '"': ok = j_string(j); break;
    case 'n': ok = j_word(j, "null"); break;
    case 't': ok = j_word(j, "true"); break;
    case 'f': ok = j_word(j, "false"); break;
    default: ok = j_number(j); break;
    }
    j->depth--;
    return ok;
}

/* True if line (with its newline) is exactly one JSON object and a newline. */
static bool json_line_ok(const char *line)
{
    size_t n = strlen(line);
    if (n < 2 || line[n - 1] != '\n' || memchr(line, '\n', n - 1))
        return false;
    jp j = {.p = line, .end = line + n - 1};
    j_ws(&j);
    if (j.p >= j.end || *j.p != '{' || !j_value(&j))
        return false;
    j_ws(&j);
    return j.p == j.end;
}

/* ---- helpers ---- */

static void set_format(gdml_log_format f)
{
    gdml_log_init("server", "us-east", GDML_LOG_DEBUG, f);
}

/* The line of one event with the given fields, built in l. */
#define LINE(l, event, ...)                                                                        \
    (gdml_log_begin((l), GDML_LOG_INFO, (event)), gdml_log_fields((l), __VA_ARGS__),              \
     gdml_log_end(l))

/* The part of a text line after "TS LEVEL role[name] " (the event and fields). */
static const char *text_body(const char *line)
{
    const char *p = strstr(line, "server[us-east] ");
    cr_assert_not_null(p, "no role and name in: %s", line);
    return p + strlen("server[us-east] ");
}

/* ---- the JSON checker itself must be able to fail ---- */

Test(log, the_json_checker_refuses_what_is_not_json)
{
    cr_assert(json_line_ok("{\"a\":1,\"b\":\"x\\n\",\"c\":null,\"d\":-0.5e3}\n"));
    cr_assert_not(json_line_ok("{\"a\":1,}\n"));
    cr_assert_not(json_line_ok("{\"a\":nan}\n"));
    cr_assert_not(json_line_ok("{\"a\":\"x\ty\"}\n"), "a raw tab in a string");
    cr_assert_not(json_line_ok("{\"a\":\"\\x01\"}\n"));
    cr_assert_not(json_line_ok("{\"a\":007}\n"));
    cr_assert_not(json_line_ok("{\"a\":1}"), "no newline");
    cr_assert_not(json_line_ok("{\"a\":1}{}\n"));
}

/* ---- text ---- */

Test(log, a_text_line_has_time_level_role_name_event_and_fields)
{
    set_format(GDML_LOG_TEXT);
    gdml_log_line l;
    const char *line = LINE(&l, "commit", "version=%llu round=%u accuracy=%.4f", 3ULL, 3u, 0.81234);
    int y, mo, d, h, mi, s, ms;
    cr_assert_eq(sscanf(line, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ ", &y, &mo, &d, &h, &mi, &s, &ms), 7,
                 "%s", line);
    cr_assert(strstr(line, "Z INFO  server[us-east] commit "), "%s", line);
    cr_assert_str_eq(text_body(line), "commit version=3 round=3 accuracy=0.8123\n");
}

Test(log, a_line_without_a_name_shows_the_role_alone)
{
    gdml_log_init("coordinator", NULL, GDML_LOG_INFO, GDML_LOG_TEXT);
    gdml_log_line l;
    gdml_log_begin(&l, GDML_LOG_WARN, "region_silent");
    const char *line = gdml_log_end(&l);
    cr_assert(strstr(line, "Z WARN  coordinator region_silent\n"), "%s", line);
}

Test(log, text_quotes_only_values_that_need_it)
{
    set_format(GDML_LOG_TEXT);
    gdml_log_line l;
    const char *line = LINE(&l, "e", "a=%s b=%s c=%s d=%s e=%s f=%s", "plain", "two words", "",
                            "k=v", "caf\xc3\xa9", "tab\there");
    cr_assert_str_eq(text_body(line),
                     "e a=plain b=\"two words\" c=\"\" d=\"k=v\" e=caf\xc3\xa9 f=\"tab\\there\"\n");
}

Test(log, text_escapes_quotes_backslashes_controls_and_bad_bytes_inside_quotes)
{
    set_format(GDML_LOG_TEXT);
    gdml_log_line l;
    const char *line = LINE(&l, "e", "why=%s", "say \"hi\"\\ \n\x01\xff");
    cr_assert_str_eq(text_body(line), "e why=\"say \\\"hi\\\"\\\\ \\n\\x01\\xff\"\n");
    cr_assert_eq(strchr(line, '\n'), line + strlen(line) - 1, "one newline, at the end: %s", line);
}

Test(log, literal_values_percent_and_precision)
{
    set_format(GDML_LOG_TEXT);
    gdml_log_line l;
    const char *line = LINE(&l, "e", "state=joined share=%d%% name=%.3s", 40, "abcdef");
    cr_assert_str_eq(text_body(line), "e state=joined share=40% name=abc\n");
}

/* ---- JSON ---- */

Test(log, a_json_line_is_one_object_with_the_required_keys)
{
    set_format(GDML_LOG_JSON);
    gdml_log_line l;
    const char *line = LINE(&l, "commit", "version=%llu accuracy=%.4f", 7ULL, 0.5);
    cr_assert(json_line_ok(line), "%s", line);
    cr_assert_eq(strncmp(line, "{\"ts\":\"", 7), 0, "%s", line);
    cr_assert(strstr(line, "\",\"level\":\"info\",\"role\":\"server\",\"name\":\"us-east\","
                           "\"event\":\"commit\",\"version\":7,\"accuracy\":0.5000}\n"),
              "%s", line);
}

Test(log, json_escapes_quotes_backslashes_and_control_characters)
{
    set_format(GDML_LOG_JSON);
    gdml_log_line l;
    const char *line = LINE(&l, "e", "why=%s", "a\"b\\c\nd\re\tf\x01g\x1fh\x7f");
    cr_assert(json_line_ok(line), "%s", line);
    cr_assert(strstr(line, "\"why\":\"a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u001fh\\u007f\"}"), "%s",
              line);
}

Test(log, json_keeps_utf8_and_replaces_bytes_that_are_not)
{
    set_format(GDML_LOG_JSON);
    gdml_log_line l;
    /* é, €, U+1F600; then a lone continuation byte, a cut sequence, an overlong '/'. */
    const char *line = LINE(&l, "e", "ok=%s bad=%s", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80",
                            "\x80|\xe2\x82|\xc0\xaf");
    cr_assert(json_line_ok(line), "%s", line);
    cr_assert(strstr(line, "\"ok\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\""), "%s", line);
    cr_assert(strstr(line, "\"bad\":\"\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\""), "%s", line);
}

Test(log, json_types_numbers_strings_and_non_finite_floats)
{
    set_format(GDML_LOG_JSON);
    gdml_log_line l;
    const char *line = LINE(&l, "e", "i=%d u=%zu f=%.3f g=%g n=%f inf=%f hex=%x pad=%05d plus=%+d "
                            "w=%6d s=%s word=yes",
                            -4, (size_t)12, 1.5, 1e-7, NAN, -INFINITY, 255u, 12, 3, 42, "12");
    cr_assert(json_line_ok(line), "%s", line);
    cr_assert(strstr(line, "\"i\":-4,\"u\":12,\"f\":1.500,\"g\":1e-07,\"n\":null,\"inf\":null,"
                           "\"hex\":\"ff\",\"pad\":\"00012\",\"plus\":3,\"w\":42,\"s\":\"12\","
                           "\"word\":\"yes\"}"),
              "%s", line);
}

Test(log, the_field_builder_writes_strings_and_integers)
{
    set_format(GDML_LOG_JSON);
    gdml_log_line l;
    gdml_log_begin(&l, GDML_LOG_ERROR, "exit");
    gdml_log_int(&l, "status", 130);
    gdml_log_str(&l, "why", "stopped \"by\" a signal");
    gdml_log_str(&l, "none", NULL);
    const char *line = gdml_log_end(&l);
    cr_assert(json_line_ok(line), "%s", line);
    cr_assert(strstr(line, "\"level\":\"error\""), "%s", line);
    cr_assert(strstr(line, "\"status\":130,\"why\":\"stopped \\\"by\\\" a signal\",\"none\":\"(null)\"}"),
              "%s", line);
}

/* ---- bounds ---- */

Test(log, a_value_longer_than_a_line_is_cut_and_the_line_stays_valid)
{
    static char big[3 * GDML_LOG_LINE_MAX];
    for (size_t i = 0; i < sizeof big - 1; i++)
        big[i] = "ab\"\\\n\xc3\xa9"[i % 7]; /* escapes and a two-byte character, to cut inside */
    big[sizeof big - 1] = '\0';
    for (int f = GDML_LOG_TEXT; f <= GDML_LOG_JSON; f++) {
        set_format((gdml_log_format)f);
        gdml_log_line l;
        const char *line = LINE(&l, "e", "a=%d why=%s after=%d", 1, big, 2);
        size_t n = strlen(line);
        cr_assert_leq(n, GDML_LOG_LINE_MAX);
        cr_assert_geq(n, GDML_LOG_LINE_MAX - 64, "a cut value should fill the line");
        cr_assert_eq(strchr(line, '\n'), line + n - 1, "one newline, at the end");
        cr_assert_null(strstr(line, "after"), "fields after the cut are left out");
        if (f == GDML_LOG_JSON) {
            cr_assert(json_line_ok(line), "%s", line);
            cr_assert(strstr(line, ",\"truncated\":true}\n"), "%s", line + n - 40);
        } else {
            cr_assert(strstr(line, "\" truncated=true\n"), "%s", line + n - 40);
        }
    }
}

Test(log, many_fields_past_the_bound_leave_whole_fields_only)
{
    set_format(GDML_LOG_JSON);
    gdml_log_line l;
    gdml_log_begin(&l, GDML_LOG_INFO, "e");
    for (int i = 0; i < 1000; i++)
        gdml_log_fields(&l, "field_with_a_long_name=%d", i);
    const char *line = gdml_log_end(&l);
    cr_assert(json_line_ok(line), "%s", line);
    cr_assert(strstr(line, ",\"truncated\":true}\n"));
    cr_assert_leq(strlen(line), GDML_LOG_LINE_MAX);
}

/* ---- writing ---- */

Test(log, an_event_is_written_to_stderr_as_one_line_and_gated_by_level)
{
    gdml_log_init("worker", "r1.w1", GDML_LOG_INFO, GDML_LOG_JSON);
    fflush(stderr);
    FILE *tmp = tmpfile();
    cr_assert_not_null(tmp);
    int saved = dup(2);
    cr_assert_geq(dup2(fileno(tmp), 2), 0);
    gdml_info("first_model", "version=%u step=%u", 2u, 0u);
    gdml_debug("holdout_score", "version=%u", 2u); /* above the threshold: not written */
    gdml_log_event(GDML_LOG_WARN, "reconnect", NULL);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    char line[GDML_LOG_LINE_MAX + 2];
    int n = 0;
    while (fgets(line, sizeof line, tmp)) {
        cr_assert(json_line_ok(line), "%s", line);
        cr_assert(strstr(line, "\"role\":\"worker\",\"name\":\"r1.w1\""), "%s", line);
        cr_assert(n != 0 || strstr(line, "\"event\":\"first_model\",\"version\":2,\"step\":0}"),
                  "%s", line);
        cr_assert(n != 1 || strstr(line, "\"level\":\"warn\",\"role\""), "%s", line);
        n++;
    }
    fclose(tmp);
    cr_assert_eq(n, 2, "the DEBUG line was written, or a line was lost");
}

Test(log, formats_and_levels_parse)
{
    cr_assert_eq(gdml_log_format_parse("text"), GDML_LOG_TEXT);
    cr_assert_eq(gdml_log_format_parse("json"), GDML_LOG_JSON);
    cr_assert_eq(gdml_log_format_parse("JSON"), -1);
    cr_assert_eq(gdml_log_level_parse("warn"), GDML_LOG_WARN);
    cr_assert_eq(gdml_log_level_parse("verbose"), -1);
}
