/*
 * test_launch_progress.c - gdml-launch's progress (launch_progress.c): which
 * style a terminal gets, the coordinator's lines parsed, the plain line byte
 * for byte, and the live display: its escapes, its fields, each region's
 * state (joining, connected, stalled, restarting), the redraw limit, lines
 * scrolled above it, and NO_COLOR.
 */
#include "launch_progress.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char names[3][GDML_NAME_MAX] = {"us-east", "eu-west", "ap-south"};

#define V1                                                                                         \
    "round=1 version=1 accuracy=0.700000 loss=0.900000 train_loss=1.000000 "                       \
    "wan_up=100000 wan_down=90000 regions=3 links=us-east:40000:30000,eu-west:30000:"              \
    "30000,ap-south:30000:30000 val_acc=0.650000 val_loss=1.000000 val_regions=3 "                 \
    "merged=us-east,eu-west,ap-south"

typedef struct sink {
    FILE *f;
    char *buf;
    size_t len;
} sink;

static void start(gdml_progress *pg, sink *s, gdml_progress_style style, gdml_config *cfg)
{
    gdml_config_defaults(cfg);
    cfg->coordinator.rounds = 10;
    s->f = open_memstream(&s->buf, &s->len);
    gdml_progress_init(pg, cfg, names, 3, style, s->f, 0);
    gdml_progress_set_raw(pg, 25200000, 13660000);
}

static void stop(gdml_progress *pg, sink *s)
{
    gdml_progress_fini(pg);
    fclose(s->f);
    free(s->buf);
}

static void version_line(char *out, size_t cap, int v, const char *merged)
{
    snprintf(out, cap,
             "round=%d version=%d accuracy=0.8 loss=0.5 train_loss=0.6 wan_up=%d wan_down=%d "
             "regions=3 links=us-east:%d:1,eu-west:%d:1,ap-south:%d:1 val_acc=nan val_loss=nan "
             "val_regions=0 merged=%s",
             v, v, v * 1000, v * 1000, v * 300, v * 300, v * 300, merged);
}

Test(progress, style_follows_the_terminal)
{
    cr_assert_eq(gdml_progress_style_for("auto", true, "xterm"), GDML_PROGRESS_LIVE);
    cr_assert_eq(gdml_progress_style_for("auto", false, "xterm"), GDML_PROGRESS_PLAIN);
    cr_assert_eq(gdml_progress_style_for("auto", true, "dumb"), GDML_PROGRESS_PLAIN);
    cr_assert_eq(gdml_progress_style_for("auto", true, NULL), GDML_PROGRESS_PLAIN);
    cr_assert_eq(gdml_progress_style_for("auto", true, ""), GDML_PROGRESS_PLAIN);
    cr_assert_eq(gdml_progress_style_for("live", false, NULL), GDML_PROGRESS_LIVE);
    cr_assert_eq(gdml_progress_style_for("plain", true, "xterm"), GDML_PROGRESS_PLAIN);
}

Test(progress, plain_prints_the_line_scripts_parse)
{
    gdml_progress pg;
    sink s;
    gdml_config cfg;
    start(&pg, &s, GDML_PROGRESS_PLAIN, &cfg);
    cr_assert_eq(gdml_progress_on_line(&pg, V1, 1000), GDML_PROGRESS_VERSION);
    cr_assert_eq(gdml_progress_on_line(&pg, "something else", 1000), GDML_PROGRESS_OTHER);
    gdml_progress_tick(&pg, NULL, 0, 5000); /* draws nothing in plain */
    fflush(s.f);
    cr_assert_str_eq(s.buf,
                     "version    1  test accuracy 0.7000  cross-DC     0.19 MB (up 0.10, "
                     "down 0.09)  raw data 25.20 MB (gzip 13.66 MB)  val 0.650 (3 regions)\n");
    cr_assert_eq(pg.version, 1);
    cr_assert_float_eq(pg.accuracy, 0.7, 1e-9);
    cr_assert_eq(pg.regions[0].up, 40000);
    cr_assert_eq(pg.regions[2].down, 30000);
    cr_assert_eq(pg.regions[1].last_delta, 1);
    cr_assert_null(strchr(s.buf, '\033'));
    cr_assert_eq(gdml_progress_log_stream(&pg), s.f, "plain lines go straight out");
    cr_assert_eq(gdml_progress_on_line(&pg,
                                       "done versions=1 wan_up=5 wan_down=6 links=us-east:"
                                       "7:8 store=x",
                                       2000),
                 GDML_PROGRESS_DONE);
    cr_assert_eq(pg.wan_up, 5);
    cr_assert_eq(pg.regions[0].down, 8);
    stop(&pg, &s);
}

Test(progress, a_line_without_validation_has_no_val)
{
    gdml_progress pg;
    sink s;
    gdml_config cfg;
    start(&pg, &s, GDML_PROGRESS_PLAIN, &cfg);
    char line[1024];
    version_line(line, sizeof line, 2, "us-east");
    gdml_progress_on_line(&pg, line, 1000);
    fflush(s.f);
    cr_assert(strstr(s.buf, "(gzip 13.66 MB)\n"), "%s", s.buf);
    cr_assert_null(strstr(s.buf, "val "), "%s", s.buf);
    stop(&pg, &s);
}

Test(progress, live_draws_fields_and_states_in_place)
{
    unsetenv("NO_COLOR");
    gdml_progress pg;
    sink s;
    gdml_config cfg;
    start(&pg, &s, GDML_PROGRESS_LIVE, &cfg);
    gdml_proc procs[3] = {{.name = "server us-east", .pid = 10},
                          {.name = "server eu-west", .pid = 0, .restart_at_ms = 900},
                          {.name = "worker us-east.w0", .pid = 11}};
    char line[1024];
    for (int v = 1; v <= 4; v++) {
        version_line(line, sizeof line, v, v == 1 ? "us-east,eu-west,ap-south" : "us-east");
        cr_assert_eq(gdml_progress_on_line(&pg, line, v * 1000), GDML_PROGRESS_VERSION);
    }
    gdml_progress_tick(&pg, procs, 3, 5000);
    fflush(s.f);
    cr_assert_null(strstr(s.buf, "version    1"), "no plain lines in live: %s", s.buf);
    cr_assert(strstr(s.buf, "\033[J"), "clears below: %s", s.buf);
    cr_assert(strstr(s.buf, "version 4, round 4 of 10"), "%s", s.buf);
    cr_assert(strstr(s.buf, "test accuracy 0.8000"), "%s", s.buf);
    cr_assert(strstr(s.buf, "raw data 25.20 MB"), "%s", s.buf);
    cr_assert(strstr(s.buf, "budget: up dense"), "%s", s.buf);
    cr_assert(strstr(s.buf, "\033[32m  us-east      connected  1/2"), "%s", s.buf);
    cr_assert(strstr(s.buf, "\033[31m  eu-west      restarting"), "%s", s.buf);
    cr_assert(strstr(s.buf, "\033[33m  ap-south     stalled"), "v1 then 3 without: %s", s.buf);
    cr_assert_eq(pg.regions[0].last_delta, 4);
    cr_assert_eq(pg.regions[2].last_delta, 1);
    cr_assert_eq(pg.regions[2].state, GDML_REGION_STALLED);

    /* Redraws move up over what they drew, and come no faster than the limit. */
    size_t before = s.len;
    version_line(line, sizeof line, 5, "us-east");
    gdml_progress_on_line(&pg, line, 5100);
    gdml_progress_tick(&pg, procs, 3, 5100);
    fflush(s.f);
    cr_assert_eq(s.len, before, "redrawn %d ms after the last", 100);
    gdml_progress_tick(&pg, procs, 3, 5000 + GDML_PROGRESS_REDRAW_MS);
    fflush(s.f);
    cr_assert(s.len > before);
    char up[16];
    snprintf(up, sizeof up, "\033[%dA", pg.drawn_lines);
    cr_assert(strstr(s.buf + before, up), "no cursor-up of %d lines", pg.drawn_lines);

    /* A line printed meanwhile scrolls above the display. */
    fprintf(gdml_progress_log_stream(&pg), "gdml-launch: server eu-west died\n");
    before = s.len;
    gdml_progress_tick(&pg, procs, 3, 6000);
    fflush(s.f);
    char *died = strstr(s.buf + before, "server eu-west died");
    char *panel = strstr(s.buf + before, "gdml-launch  running");
    cr_assert(died && panel && died < panel, "%s", s.buf + before);

    gdml_progress_finish(&pg, true, 7000);
    fflush(s.f);
    cr_assert(strstr(s.buf, "finished in 7.0 s"), "%s", s.buf);
    cr_assert_eq(pg.drawn_lines, 0, "the last display stays");
    stop(&pg, &s);
}

Test(progress, no_color_keeps_the_escapes_that_move_but_not_colours)
{
    setenv("NO_COLOR", "1", 1);
    gdml_progress pg;
    sink s;
    gdml_config cfg;
    start(&pg, &s, GDML_PROGRESS_LIVE, &cfg);
    gdml_progress_on_line(&pg, V1, 1000);
    gdml_progress_finish(&pg, true, 2000);
    fflush(s.f);
    cr_assert(strstr(s.buf, "\033[J"));
    cr_assert_null(strstr(s.buf, "\033[3"), "a colour: %s", s.buf);
    cr_assert_null(strstr(s.buf, "\033[1m"), "bold: %s", s.buf);
    cr_assert(strstr(s.buf, "  us-east      connected"), "%s", s.buf);
    unsetenv("NO_COLOR");
    stop(&pg, &s);
}

Test(progress, budget_in_words)
{
    gdml_progress pg;
    sink s;
    gdml_config cfg;
    gdml_config_defaults(&cfg);
    snprintf(cfg.server.encoder, sizeof cfg.server.encoder, "topk+int8");
    cfg.server.sync_every = 25;
    cfg.budget.up_bytes_per_s = 6000;
    s.f = open_memstream(&s.buf, &s.len);
    gdml_progress_init(&pg, &cfg, names, 3, GDML_PROGRESS_LIVE, s.f, 0);
    cr_assert(strstr(pg.budget, "up topk+int8, H 25 steps, 6000 B/s; down dense, unlimited"), "%s",
              pg.budget);
    /* The rate in use against the budget, over a second or more. */
    char line[1024];
    version_line(line, sizeof line, 10, "us-east"); /* us-east up 3000 bytes at 1.5 s */
    gdml_progress_on_line(&pg, line, 1500);
    cr_assert_float_eq(pg.regions[0].up_rate, 2000.0, 1e-6);
    gdml_progress_finish(&pg, true, 2000);
    fflush(s.f);
    cr_assert(strstr(s.buf, "2000 (33%)"), "%s", s.buf);
    stop(&pg, &s);
}

static void saving_for(uint64_t up, uint64_t down, uint64_t raw, uint64_t gzip, char *buf,
                       size_t cap)
{
    gdml_progress pg;
    sink s;
    gdml_config cfg;
    start(&pg, &s, GDML_PROGRESS_PLAIN, &cfg);
    gdml_progress_set_raw(&pg, raw, gzip);
    pg.wan_up = up;
    pg.wan_down = down;
    gdml_progress_saving(&pg, buf, cap);
    stop(&pg, &s);
}

Test(progress, saving_in_one_sentence)
{
    char buf[512];
    /* The main job's figures: 0.28 MB against 25.20 (13.66 gzipped). */
    saving_for(150000, 133000, 25200000, 13660000, buf, sizeof buf);
    cr_assert_str_eq(buf, "89.0x fewer bytes crossed data-center boundaries than copying the raw "
                          "data to one data center would have moved: 0.28 MB against 25.20 MB "
                          "(48.3x fewer than its 13.66 MB gzipped).");
    /* Dense deltas every step: more than the data itself. */
    saving_for(20000000, 20000000, 25200000, 13660000, buf, sizeof buf);
    cr_assert(strncmp(buf, "1.6x more bytes crossed", 23) == 0, "%s", buf);
    cr_assert(strstr(buf, "(2.9x more than its 13.66 MB gzipped)."), "%s", buf);
    saving_for(0, 0, 25200000, 13660000, buf, sizeof buf);
    cr_assert(strncmp(buf, "No bytes crossed", 16) == 0, "%s", buf);
    saving_for(1000, 0, 0, 0, buf, sizeof buf);
    cr_assert(strstr(buf, "the raw data was not measured"), "%s", buf);
    /* One sentence, one line. */
    cr_assert_null(strchr(buf, '\n'));
}

Test(progress, a_restarted_coordinators_bytes_add_to_what_it_counted_before)
{
    gdml_progress pg;
    sink s;
    gdml_config cfg;
    start(&pg, &s, GDML_PROGRESS_PLAIN, &cfg);
    char line[512];
    version_line(line, sizeof line, 5, "us-east");
    gdml_progress_on_line(&pg, line, 1000);
    cr_assert_eq(pg.wan_up, 5000);
    cr_assert_eq(pg.regions[0].up, 1500);
    /* A new coordinator process counts from 0 again. */
    gdml_progress_on_coordinator_restart(&pg);
    version_line(line, sizeof line, 1, "us-east");
    gdml_progress_on_line(&pg, line, 2000);
    cr_assert_eq(pg.wan_up, 6000, "%llu", (unsigned long long)pg.wan_up);
    cr_assert_eq(pg.wan_down, 6000);
    cr_assert_eq(pg.regions[0].up, 1800, "%llu", (unsigned long long)pg.regions[0].up);
    cr_assert_eq(pg.regions[2].up, 1800);
    /* And its last line too. */
    gdml_progress_on_line(&pg, "done versions=7 wan_up=2000 wan_down=2500", 3000);
    cr_assert_eq(pg.wan_up, 7000);
    cr_assert_eq(pg.wan_down, 7500);
    stop(&pg, &s);
}
