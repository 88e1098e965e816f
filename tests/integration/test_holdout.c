/*
 * test_holdout.c - the regions' held-out validation, end to end on the real
 * programs: workers hold out part of their shards, score each version on
 * it, and every stored version carries each region's score, which the
 * coordinator's log and progress line and gdml-models show; and fake
 * regions whose scores are out of bounds or do not decode get them refused,
 * with nothing of them in the store and their deltas merged as usual.
 */
#define _GNU_SOURCE
#include "../peer_support.h"
#include "../support.h"

#include "store.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUNDS 4
#define N_PARAMS 7850 /* softmax 784 x 10 */
#define HOLDOUT_ROWS 300

static const char *const regions[] = {"r1", "r2"};

/* The store of cluster c, open read-only. */
static gdml_store *open_store(const tp_cluster *c)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/store", c->dir);
    gdml_store_options so = {.read_only = true};
    gdml_store *s = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_open(dir, &so, &s, &e), GDML_OK, "%s", e.text);
    return s;
}

/* Runs gdml-models with args on the store of c; returns what it printed (malloc'd). */
static char *models(const tp_cluster *c, const char *cmd, const char *arg)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/store", c->dir);
    char *path = gdml_test_program("gdml-models"), *out = NULL;
    char *argv[] = {
        path, (char *)cmd, (char *)(arg ? arg : "--store"), arg ? "--store" : dir, arg ? dir : NULL,
        NULL};
    int rc = gdml_test_run(argv, 30, &out);
    cr_assert_eq(rc, 0, "gdml-models %s exited %d:\n%s", cmd, rc, out);
    free(path);
    return out;
}

Test(holdout, a_real_job_stores_every_regions_validation_and_logs_it, .timeout = 180)
{
    if (!gdml_test_have_fashion_mnist())
        cr_skip_test("dataset-fashion-mnist is not installed");
    tp_cluster c;
    tp_cluster_init(&c, true);
    tp_proc coord, server[2], worker[2];
    char rounds[8];
    snprintf(rounds, sizeof rounds, "%d", ROUNDS);
    tp_start_coordinator(
        &c, &coord, regions, 2, NULL,
        (const char *[]){"--regions", "2", "--rounds", rounds, "--timeout-ms", "40000", NULL});
    char *ep[2];
    for (int i = 0; i < 2; i++) {
        ep[i] = tp_start_server(&c, &server[i], regions[i],
                                (const char *[]){"--workers", "1", "--sync-every", "10", NULL});
        char name[16];
        snprintf(name, sizeof name, "%s.w0", regions[i]);
        /* Half of the test set each: 5000 rows, 0.2 of which is capped at 300. */
        tp_start_worker(&c, &worker[i], name, ep[i], i, 2,
                        (const char *[]){"--holdout", "0.2", "--holdout-rows", "300", NULL});
    }
    cr_assert_eq(gdml_test_wait(coord.pid, 120), 0, "coordinator failed; see %s", coord.log);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(gdml_test_wait(server[i].pid, 30), 0, "server failed; see %s", server[i].log);
        cr_assert_eq(gdml_test_wait(worker[i].pid, 30), 0, "worker failed; see %s", worker[i].log);
        cr_assert_eq(tp_count_lines(worker[i].log, " holdout=300", NULL), 1,
                     "see %s", worker[i].log);
        free(ep[i]);
    }

    /* Every version carries both regions' scores of the version it was made from. */
    gdml_store *s = open_store(&c);
    double first = 0, last = 0;
    for (uint64_t v = 1; v <= ROUNDS; v++) {
        gdml_version_meta m;
        cr_assert_eq(gdml_store_meta(s, v, &m, NULL), GDML_OK, "version %llu is missing",
                     (unsigned long long)v);
        for (int i = 0; i < 2; i++) {
            const gdml_region_part *p = gdml_test_region_part(&m, regions[i]);
            cr_assert_eq(p->val.rows, HOLDOUT_ROWS, "version %llu, %s: %llu rows",
                         (unsigned long long)v, regions[i], (unsigned long long)p->val.rows);
            cr_assert_leq(p->val_version, m.parent, "a score of a version not yet made");
            cr_assert(p->val.correct <= p->val.rows);
            cr_assert(isfinite(p->val.loss) && p->val.loss > 0 && p->val.loss < 10,
                      "version %llu, %s: loss %g", (unsigned long long)v, regions[i], p->val.loss);
        }
        gdml_score total;
        cr_assert_eq(gdml_store_meta_score(&m, &total), 2);
        double acc = gdml_score_accuracy(&total);
        cr_assert(acc >= 0 && acc <= 1);
        if (v == 1)
            first = acc;
        last = acc;
    }
    gdml_store_close(&s);
    /* Version 1 reports the initial model (about one in ten right); training beats it. */
    cr_assert_lt(first, 0.3, "the initial model scored %.4f", first);
    cr_assert_gt(last, 0.55, "the last scored version reached only %.4f", last);

    /* The log's commit lines and the progress lines say it. */
    cr_assert_eq(tp_count_lines(coord.log, " commit version=", " val_accuracy=0."), ROUNDS, "see %s", coord.log);
    cr_assert_eq(tp_count_lines(coord.log, " commit version=", " val_regions=2"), ROUNDS, "see %s",
                 coord.log);
    cr_assert_eq(tp_count_lines(coord.log, " val_acc=", "val_regions=2"), ROUNDS, "see %s", coord.log);

    /* gdml-models lists and shows them per region. */
    char *out = models(&c, "list", NULL);
    cr_assert(strstr(out, "val_acc") && strstr(out, " r1#") && strstr(out, " r2#"), "%s", out);
    for (uint64_t v = 1; v <= ROUNDS; v++) {
        char row[32];
        snprintf(row, sizeof row, "\n%7llu  ", (unsigned long long)v);
        const char *line = strstr(out, row), *end = line ? strchr(line + 1, '\n') : NULL;
        cr_assert(line && end, "no row of version %llu:\n%s", (unsigned long long)v, out);
        const char *r2 = strstr(line, " r2#"), *score = strstr(line, ":0.");
        cr_assert(r2 && r2 < end && score && score < end, "version %llu has no scores:\n%s",
                  (unsigned long long)v, out);
    }
    free(out);
    out = models(&c, "show", "latest");
    cr_assert(strstr(out, "\"validation\": {\"accuracy\": 0.") && strstr(out, "\"regions\": 2}"),
              "%s", out);
    cr_assert(strstr(out, "\"val_rows\": 300, \"val_correct\": "), "%s", out);
    free(out);
    tp_cluster_fini(&c);
}

/* ---- fake regions ---- */

/* Joins fake regions r1 (1000 samples) and r2 (3000); returns the version they hold. */
static uint64_t join(tp_peer *p, tp_cluster *c)
{
    static const uint64_t samples[] = {1000, 3000};
    uint64_t version = 0;
    for (int i = 0; i < 2; i++) {
        tp_peer_connect(&p[i], c, c->coord_ep, regions[i], regions[i], "coordinator");
        tp_peer_send(&p[i], GDML_MSG_HELLO, 0, samples[i]);
    }
    for (int i = 0; i < 2; i++) {
        gdml_msg_header h;
        bool welcomed = false;
        for (int t = 0; t < 100 && !welcomed; t++)
            welcomed = tp_peer_recv(&p[i], 100, &h) && h.type == GDML_MSG_WELCOME;
        cr_assert(welcomed, "region %s got no WELCOME", regions[i]);
        version = h.version;
    }
    return version;
}

/* A frame that decodes to nothing: a HEARTBEAT whose 'vloss' is NaN. */
static void send_nan_score(tp_peer *p)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_HEARTBEAT, p->name);
    h.seq = ++p->seq;
    h.val = (gdml_score){.rows = 10, .correct = 5, .loss = 0.5};
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_OK);
    /* 0.5 as msgpack writes it: float64, big-endian. */
    static const uint8_t half[] = {0xcb, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0};
    uint8_t *at = memmem(buf, len, half, sizeof half);
    cr_assert_not_null(at);
    at[1] = 0x7f;
    at[2] = 0xf8; /* a quiet NaN */
    const void *frames[] = {buf};
    size_t sizes[] = {len};
    cr_assert_eq(gdml_link_send_raw(p->link, NULL, frames, sizes, 1), GDML_OK);
}

Test(holdout, a_fake_regions_bad_scores_are_refused_and_never_stored, .timeout = 60)
{
    tp_cluster c;
    tp_cluster_init(&c, true);
    tp_proc coord;
    tp_start_coordinator(
        &c, &coord, regions, 2, NULL,
        (const char *[]){"--regions", "2", "--rounds", "2", "--timeout-ms", "20000", NULL});
    tp_peer p[2];
    uint64_t version = join(p, &c);
    static float d[N_PARAMS];
    for (int round = 0; round < 2; round++) {
        send_nan_score(&p[1]);
        for (int i = 0; i < 2; i++) {
            for (size_t k = 0; k < N_PARAMS; k++)
                d[k] = 0.01f * sinf((float)k * 0.37f * (float)(i + 1) + (float)round);
            gdml_msg_header h;
            gdml_msg_header_init(&h, GDML_MSG_DELTA, regions[i]);
            h.version = version;
            h.count = i ? 3000 : 1000;
            h.lr_steps = 1.0;
            /* r1 is honest; r2 claims more held-out rows than its 3000 samples. */
            h.val = i ? (gdml_score){.rows = 3001, .correct = 3001, .loss = 0.01}
                      : (gdml_score){.rows = 200, .correct = 150, .loss = 0.7};
            h.val_version = version;
            tp_peer_send_tensor(&p[i], &h, d, N_PARAMS);
        }
        for (int i = 0; i < 2; i++) {
            gdml_msg_header h;
            bool global = false, stop = false;
            for (int t = 0; t < 100 && !global && !stop; t++)
                if (tp_peer_recv(&p[i], 100, &h)) {
                    global = h.type == GDML_MSG_GLOBAL;
                    stop = h.type == GDML_MSG_STOP;
                }
            cr_assert(global || stop, "region %s got neither GLOBAL nor STOP; see %s", regions[i],
                      coord.log);
            if (global)
                version = h.version;
        }
    }
    cr_assert_eq(gdml_test_wait(coord.pid, 30), 0, "coordinator failed; see %s", coord.log);
    for (int i = 0; i < 2; i++)
        tp_peer_close(&p[i]);

    /* Both deltas were merged in both versions; only r1's score is stored. */
    gdml_store *s = open_store(&c);
    for (uint64_t v = 1; v <= 2; v++) {
        gdml_version_meta m;
        cr_assert_eq(gdml_store_meta(s, v, &m, NULL), GDML_OK);
        const gdml_region_part *r1 = gdml_test_region_part(&m, "r1"),
                               *r2 = gdml_test_region_part(&m, "r2");
        cr_assert_eq(r1->samples, 1000);
        cr_assert_eq(r2->samples, 3000, "r2's delta was not merged");
        cr_assert_eq(r1->val.rows, 200);
        cr_assert_eq(r1->val.correct, 150);
        cr_assert_eq(r1->val_version, v - 1);
        cr_assert_eq(r2->val.rows, 0, "r2's score out of bounds was stored");
        gdml_score total;
        cr_assert_eq(gdml_store_meta_score(&m, &total), 1);
    }
    gdml_store_close(&s);
    /* Each refusal is logged, naming r2 and why, at a bounded rate. */
    cr_assert_geq(tp_count_lines(coord.log, "r2", "out of bounds"), 1, "see %s", coord.log);
    cr_assert_geq(tp_count_lines(coord.log, "r2", "malformed"), 1, "see %s", coord.log);
    cr_assert_eq(tp_count_lines(coord.log, " val_acc=", "val_regions=1"), 2, "see %s", coord.log);
    tp_cluster_fini(&c);
}
