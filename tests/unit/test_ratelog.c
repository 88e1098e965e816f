/*
 * test_ratelog.c - rate-limited, counted log lines (ratelog.h): the first
 * event of a (peer, reason) pair is written, the rest of its interval only
 * counted, a summary line with the count follows the interval, and a flood
 * from many peers stays a handful of lines per interval while the total
 * counts every event. The lines are read back from stderr, redirected to a
 * temporary file for the test.
 */
#include "log.h"
#include "ratelog.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- capturing stderr ---- */

typedef struct capture {
    FILE *file;
    int saved;
} capture;

static void capture_start(capture *c)
{
    fflush(stderr);
    c->file = tmpfile();
    cr_assert_not_null(c->file);
    c->saved = dup(2);
    cr_assert_geq(c->saved, 0);
    cr_assert_geq(dup2(fileno(c->file), 2), 0);
}

/* Restores stderr and returns what was written to it (malloc'd). */
static char *capture_end(capture *c)
{
    fflush(stderr);
    cr_assert_geq(dup2(c->saved, 2), 0);
    close(c->saved);
    /* dup2 shares the file offset: the end is what was written. */
    cr_assert_eq(fseek(c->file, 0, SEEK_END), 0);
    long size = ftell(c->file);
    cr_assert_geq(size, 0);
    rewind(c->file);
    char *text = calloc((size_t)size + 1, 1);
    cr_assert_not_null(text);
    cr_assert_eq(fread(text, 1, (size_t)size, c->file), (size_t)size);
    fclose(c->file);
    return text;
}

static size_t count_lines(const char *text)
{
    size_t n = 0;
    for (; *text; text++)
        n += *text == '\n';
    return n;
}

static size_t count_of(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/*
 * The events the lines account for: 1 per detail line, N per summary line
 * ("suppressed of=... count=N ...").
 */
static unsigned long long events_in(const char *text)
{
    unsigned long long sum = 0;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        cr_assert_not_null(end, "an unterminated log line");
        const char *more = strstr(line, " suppressed ");
        const char *count = strstr(line, " count=");
        if (more && more < end) {
            cr_assert(count && count < end, "a summary without its count: %.*s", (int)(end - line),
                      line);
            sum += strtoull(count + 7, NULL, 10);
        } else {
            sum++;
        }
        line = end + 1;
    }
    return sum;
}

static gdml_ratelog *make(int64_t interval_ms, size_t max_pairs)
{
    gdml_ratelog *r = NULL;
    cr_assert_eq(gdml_ratelog_new(interval_ms, max_pairs, &r), GDML_OK);
    return r;
}

static void init(void)
{
    gdml_log_init("ratelog-test", NULL, GDML_LOG_INFO, GDML_LOG_TEXT);
}

TestSuite(ratelog, .init = init);

/* ---- tests ---- */

Test(ratelog, new_refuses_a_useless_table_and_destroy_is_null_safe)
{
    gdml_ratelog *r = NULL;
    cr_assert_eq(gdml_ratelog_new(0, 8, &r), GDML_ERR_INVALID);
    cr_assert_eq(gdml_ratelog_new(-5, 8, &r), GDML_ERR_INVALID);
    cr_assert_eq(gdml_ratelog_new(1000, 1, &r), GDML_ERR_INVALID);
    cr_assert_null(r);
    r = make(1000, 2);
    cr_assert_eq(gdml_ratelog_total(r), 0);
    cr_assert_eq(gdml_ratelog_lines(r), 0);
    gdml_ratelog_destroy(&r);
    cr_assert_null(r);
    gdml_ratelog_destroy(&r);
    gdml_ratelog_destroy(NULL);
}

Test(ratelog, the_first_event_is_logged_and_the_rest_counted)
{
    gdml_ratelog *r = make(1000, 8);
    capture c;
    capture_start(&c);
    for (int i = 0; i < 5; i++)
        gdml_ratelog_note(r, i, GDML_LOG_WARN, "rejected", "us-east", "stale step", "step=%d", i);
    uint64_t after_stale = gdml_ratelog_lines(r);
    gdml_ratelog_note(r, 10, GDML_LOG_WARN, "rejected", "us-east", "duplicate", "seq=%d", 9);
    gdml_ratelog_note(r, 20, GDML_LOG_WARN, "rejected", "eu-west", "stale step", "step=%d", 1);
    gdml_ratelog_note(r, 30, GDML_LOG_WARN, "rejected", "eu-west", "stale step", "step=%d", 2);
    uint64_t before_flush = gdml_ratelog_lines(r);
    gdml_ratelog_flush(r, 999); /* no interval has ended */
    uint64_t early = gdml_ratelog_lines(r);
    gdml_ratelog_flush(r, 1000); /* us-east's pairs have */
    uint64_t at_1000 = gdml_ratelog_lines(r);
    gdml_ratelog_flush(r, 1030); /* and eu-west's */
    uint64_t at_1030 = gdml_ratelog_lines(r);
    /* A new interval: its first event is logged again. */
    gdml_ratelog_note(r, 1100, GDML_LOG_WARN, "rejected", "us-east", "stale step", "step=%d", 99);
    char *text = capture_end(&c);

    cr_assert_eq(after_stale, 1, "five events of one pair in one interval: one line");
    cr_assert_eq(before_flush, 3, "one line per pair");
    cr_assert_eq(early, before_flush, "a summary before the interval ended");
    cr_assert_eq(at_1000, 4,
                 "us-east's 4 suppressed 'stale step' events: one summary line; its "
                 "'duplicate' had none to summarize");
    cr_assert_eq(at_1030, 5);
    cr_assert_eq(gdml_ratelog_lines(r), 6);
    cr_assert_eq(gdml_ratelog_total(r), 9);
    cr_assert_eq(count_lines(text), gdml_ratelog_lines(r), "%s", text);
    cr_assert(strstr(text, "WARN  ratelog-test rejected peer=us-east reason=\"stale step\" step=0\n"), "%s", text);
    cr_assert(strstr(text, "rejected peer=us-east reason=duplicate seq=9\n"), "%s", text);
    cr_assert(strstr(text, "rejected peer=eu-west reason=\"stale step\" step=1\n"), "%s", text);
    cr_assert_null(strstr(text, "step=2\n"), "a counted event was written: %s", text);
    cr_assert_null(strstr(text, "step=3\n"), "a counted event was written: %s", text);
    cr_assert(strstr(text, "suppressed of=rejected peer=us-east reason=\"stale step\" count=4 interval_ms=1000\n"), "%s", text);
    cr_assert(strstr(text, "suppressed of=rejected peer=eu-west reason=\"stale step\" count=1 interval_ms=1000\n"), "%s", text);
    cr_assert(strstr(text, "rejected peer=us-east reason=\"stale step\" step=99\n"), "%s", text);
    cr_assert_eq(events_in(text), gdml_ratelog_total(r), "%s", text);
    free(text);
    gdml_ratelog_destroy(&r);
}

Test(ratelog, a_note_after_the_interval_writes_the_summary_first)
{
    gdml_ratelog *r = make(500, 4);
    capture c;
    capture_start(&c);
    for (int i = 0; i < 3; i++)
        gdml_ratelog_note(r, i, GDML_LOG_ERROR, "rejected", "w0", "bounds", "value=%d", i);
    gdml_ratelog_note(r, 600, GDML_LOG_ERROR, "rejected", "w0", "bounds", "value=%d", 600);
    char *text = capture_end(&c);
    const char *summary = strstr(text, "suppressed of=rejected peer=w0 reason=bounds count=2 interval_ms=500\n");
    const char *again = strstr(text, "rejected peer=w0 reason=bounds value=600\n");
    cr_assert(summary && again && summary < again, "%s", text);
    cr_assert_eq(gdml_ratelog_lines(r), 3);
    free(text);
    gdml_ratelog_destroy(&r);
}

Test(ratelog, events_above_the_level_are_counted_but_not_written)
{
    gdml_log_init(NULL, NULL, GDML_LOG_WARN, GDML_LOG_TEXT);
    gdml_ratelog *r = make(1000, 4);
    capture c;
    capture_start(&c);
    for (int i = 0; i < 10; i++)
        gdml_ratelog_note(r, i, GDML_LOG_DEBUG, "rejected", "w0", "stale step", "step=%d", i);
    gdml_ratelog_flush(r, 5000);
    char *text = capture_end(&c);
    cr_assert_str_empty(text);
    cr_assert_eq(gdml_ratelog_lines(r), 0);
    cr_assert_eq(gdml_ratelog_total(r), 10);
    free(text);
    gdml_ratelog_destroy(&r);
}

Test(ratelog, a_flood_from_many_peers_stays_a_few_lines_an_interval)
{
    enum { PEERS = 100, INTERVALS = 5, PAIRS = 4 };
    gdml_ratelog *r = make(1000, PAIRS);
    capture c;
    capture_start(&c);
    uint64_t lines_before = 0, most = 0;
    for (int t = 0; t < INTERVALS * 1000; t += 10) {
        for (int p = 0; p < PEERS; p++) {
            char peer[16];
            snprintf(peer, sizeof peer, "w%d", p);
            gdml_ratelog_note(r, t, GDML_LOG_WARN, "rejected", peer, "stale step", "at=%d", t);
        }
        if (t % 1000 == 990) { /* the end of an interval */
            uint64_t lines = gdml_ratelog_lines(r);
            if (lines - lines_before > most)
                most = lines - lines_before;
            lines_before = lines;
        }
    }
    gdml_ratelog_flush(r, INTERVALS * 1000 + 1000);
    char *text = capture_end(&c);
    uint64_t total = (uint64_t)PEERS * INTERVALS * 100;
    cr_assert_eq(gdml_ratelog_total(r), total);
    /* At most a detail and a summary per pair of the table in an interval. */
    cr_assert_leq(most, 2 * PAIRS, "%llu lines in one interval", (unsigned long long)most);
    cr_assert_leq(gdml_ratelog_lines(r), 2 * PAIRS * (INTERVALS + 1));
    cr_assert_eq(count_lines(text), gdml_ratelog_lines(r));
    /* One reason: every event is a detail line or counted in a summary. */
    cr_assert_eq(events_in(text), total, "%s", text);
    cr_assert_geq(count_of(text, " peer=(others) "), INTERVALS, "%s", text);
    /* The shared entry counts the 97 other peers' events: 97 * 100 - 1 a interval. */
    cr_assert(strstr(text, "suppressed of=rejected peer=(others) reason=\"stale step\" count=9699 "), "%s", text);
    free(text);

    /* A second reason finds the table full: still counted in the total. */
    uint64_t lines = gdml_ratelog_lines(r);
    for (int p = 0; p < PEERS; p++) {
        char peer[16];
        snprintf(peer, sizeof peer, "w%d", p);
        gdml_ratelog_note(r, 10000, GDML_LOG_WARN, "rejected", peer, "stale step", NULL);
        gdml_ratelog_note(r, 10000, GDML_LOG_WARN, "rejected", peer, "duplicate", NULL);
    }
    cr_assert_eq(gdml_ratelog_total(r), total + 2 * PEERS);
    cr_assert_leq(gdml_ratelog_lines(r) - lines, PAIRS);
    gdml_ratelog_destroy(&r);
}
