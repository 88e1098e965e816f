/*
 * test_store.c - the model store as the programs use it: a truncated, a
 * zeroed, an empty and a bit-flipped store are refused by gdml-coordinator
 * and gdml-models with exit status 4 and a message naming the file, never a
 * SIGBUS; a map that starts too small grows; a rolled-back store resumes
 * from the version it was rolled back to; and a coordinator killed with
 * SIGKILL and restarted continues FedAdam's moments exactly: its versions
 * are bit for bit those of a run that was never interrupted.
 */
#define _GNU_SOURCE
#include "../peer_support.h"
#include "../support.h"

#include "model.h"
#include "store.h"

#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define N_PARAMS 7850 /* softmax 784 x 10, the default model */

static void store_dir(const tp_cluster *c, char *out, size_t cap)
{
    snprintf(out, cap, "%s/store", c->dir);
}

/* A store of `versions` versions of the default model, written through the store API. */
static void make_store(const tp_cluster *c, int versions, float fill)
{
    char dir[4200];
    store_dir(c, dir, sizeof dir);
    gdml_store *s = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_open(dir, NULL, &s, &e), GDML_OK, "%s", e.text);
    static float params[N_PARAMS];
    for (int v = 1; v <= versions; v++) {
        for (size_t i = 0; i < N_PARAMS; i++)
            params[i] = fill + (float)v + (float)i * 1e-6f;
        gdml_version_meta m;
        memset(&m, 0, sizeof m);
        m.version = (uint64_t)v;
        m.parent = (uint64_t)v - 1;
        m.round = (uint64_t)v;
        m.accuracy = m.loss = NAN;
        snprintf(m.rule, sizeof m.rule, "fedavg");
        gdml_store_tensor t = {.name = "params", .data = params, .n = N_PARAMS};
        cr_assert_eq(gdml_store_commit(s, &m, "softmax 784 10", &t, 1, &e), GDML_OK, "%s",
                     e.text);
    }
    gdml_store_close(&s);
}

static char *data_file(const tp_cluster *c)
{
    char *p = NULL;
    cr_assert(asprintf(&p, "%s/store/data.mdb", c->dir) > 0);
    return p;
}

/*
 * Runs gdml-coordinator on the store, and gdml-models verify (and list, when
 * the damage is in the file itself rather than in one version's tensor);
 * all must refuse it with status 4.
 */
static void refused(tp_cluster *c, const char *needle, bool whole_file)
{
    char dir[4200];
    store_dir(c, dir, sizeof dir);
    char *coord = gdml_test_program("gdml-coordinator"), *models = gdml_test_program("gdml-models");
    char *out = NULL;
    int rc = gdml_test_run((char *[]){coord, "--store", dir, "--curve", "off", "--listen",
                                      "tcp://127.0.0.1:*", "--timeout-ms", "2000", NULL},
                           20, &out);
    cr_assert_eq(rc, 4, "the coordinator should refuse the store with status 4, got %d:\n%s", rc,
                 out);
    cr_assert(strstr(out, "data.mdb") && strstr(out, needle),
              "the refusal does not name the file and say '%s':\n%s", needle, out);
    free(out);
    const char *cmds[] = {"verify", "list"};
    for (int i = 0; i < (whole_file ? 2 : 1); i++) {
        rc = gdml_test_run((char *[]){models, (char *)cmds[i], "--store", dir, NULL}, 20, &out);
        cr_assert_eq(rc, 4, "gdml-models %s should exit 4, got %d:\n%s", cmds[i], rc, out);
        free(out);
    }
    free(coord);
    free(models);
}

Test(store, a_truncated_store_is_refused_not_a_sigbus, .timeout = 60)
{
    tp_cluster c;
    tp_cluster_init(&c, false);
    make_store(&c, 30, 0.5f);
    char *f = data_file(&c);
    struct stat st;
    cr_assert_eq(stat(f, &st), 0);
    cr_assert_eq(truncate(f, st.st_size / 2), 0);
    refused(&c, "truncated", true);
    free(f);
    tp_cluster_fini(&c);
}

Test(store, a_zeroed_store_is_refused, .timeout = 60)
{
    tp_cluster c;
    tp_cluster_init(&c, false);
    make_store(&c, 5, 0.5f);
    char *f = data_file(&c);
    struct stat st;
    cr_assert_eq(stat(f, &st), 0);
    FILE *out = fopen(f, "r+");
    for (off_t i = 0; i < st.st_size; i++)
        fputc(0, out);
    fclose(out);
    refused(&c, "not an LMDB model store", true);
    free(f);
    tp_cluster_fini(&c);
}

Test(store, an_empty_data_file_is_not_taken_for_a_new_store, .timeout = 60)
{
    tp_cluster c;
    tp_cluster_init(&c, false);
    make_store(&c, 2, 0.5f);
    char *f = data_file(&c);
    cr_assert_eq(truncate(f, 0), 0);
    refused(&c, "too short", true);
    free(f);
    tp_cluster_fini(&c);
}

Test(store, a_flipped_bit_in_the_parameters_is_found_and_never_resumed_from, .timeout = 60)
{
    tp_cluster c;
    tp_cluster_init(&c, false);
    make_store(&c, 3, 0.25f);
    /* Find the bytes of the newest version's first parameter, 0.25f, and flip one bit. */
    char *f = data_file(&c);
    char *bytes = gdml_test_read_file(f);
    struct stat st;
    cr_assert_eq(stat(f, &st), 0);
    float want = 0.25f + 3.0f + 1e-6f * 1000; /* version 3, the head */
    uint8_t pattern[4];
    memcpy(pattern, &want, 4);
    uint8_t *at = memmem(bytes, (size_t)st.st_size, pattern, 4);
    cr_assert_not_null(at, "the parameters are not in the data file");
    long off = (long)(at - (uint8_t *)bytes);
    free(bytes);
    FILE *out = fopen(f, "r+");
    fseek(out, off, SEEK_SET);
    fputc(pattern[0] ^ 0x10, out);
    fclose(out);
    refused(&c, "damaged", false);
    /* export of that version is refused too, and writes nothing. */
    char dir[4200], npy[4300];
    store_dir(&c, dir, sizeof dir);
    snprintf(npy, sizeof npy, "%s/out.npy", c.dir);
    char *models = gdml_test_program("gdml-models"), *out_text = NULL;
    int rc = gdml_test_run((char *[]){models, "export", "latest", npy, "--store", dir, NULL}, 20,
                           &out_text);
    cr_assert_eq(rc, 4, "export of a damaged version should exit 4, got %d:\n%s", rc, out_text);
    cr_assert_neq(access(npy, F_OK), 0, "export wrote a file from damaged parameters");
    free(out_text);
    free(models);
    free(f);
    tp_cluster_fini(&c);
}

Test(store, a_map_that_is_too_small_grows_and_the_job_finishes, .timeout = 120)
{
    if (!gdml_test_have_fashion_mnist())
        cr_skip_test("dataset-fashion-mnist is not installed");
    char *dir = gdml_test_tmpdir(), run[4200], config[4200];
    snprintf(run, sizeof run, "%s/run", dir);
    char *launch = gdml_test_program("gdml-launch");
    char *cfg = gdml_test_source_path("config/local-job.ini");
    snprintf(config, sizeof config, "%s", cfg);
    char *out = NULL;
    int rc = gdml_test_run((char *[]){launch, "--config", config, "--run-dir", run, "--set",
                                      "store.map_mb=1", "--set", "coordinator.rounds=60", NULL},
                           100, &out);
    cr_assert_eq(rc, 0, "the job failed:\n%s", out);
    char log[4300];
    snprintf(log, sizeof log, "%s/logs/coordinator.log", run);
    cr_assert(tp_count_lines(log, "store_map_grown", "to_mib="), "the map never grew; see %s", log);
    char summary[4300];
    snprintf(summary, sizeof summary, "%s/summary.json", run);
    char *json = gdml_test_read_file(summary);
    cr_assert_eq(gdml_test_json_number(json, "versions_stored"), 60);
    free(json);
    free(out);
    free(launch);
    free(cfg);
    gdml_test_rmtree(dir);
}

/* ---- fake regions with scripted deltas ---- */

typedef struct region_pair {
    tp_peer p[2];
    uint64_t seq[2];
    uint64_t version;
} region_pair;

static const char *const names[] = {"r1", "r2"};
static const uint64_t samples[] = {1000, 3000};

/* Connects both fake regions and waits for their WELCOMEs. */
static void join(region_pair *rp, tp_cluster *c)
{
    for (int i = 0; i < 2; i++) {
        uint64_t seq = rp->seq[i];
        tp_peer_connect(&rp->p[i], c, c->coord_ep, names[i], names[i], "coordinator");
        if (seq)
            rp->p[i].seq = seq;
        tp_peer_send(&rp->p[i], GDML_MSG_HELLO, 0, samples[i]);
    }
    for (int i = 0; i < 2; i++) {
        gdml_msg_header h;
        bool welcomed = false;
        for (int t = 0; t < 100 && !welcomed; t++)
            welcomed = tp_peer_recv(&rp->p[i], 100, &h) && h.type == GDML_MSG_WELCOME;
        cr_assert(welcomed, "region %s got no WELCOME", names[i]);
        rp->version = h.version;
    }
}

static void leave(region_pair *rp)
{
    for (int i = 0; i < 2; i++) {
        rp->seq[i] = rp->p[i].seq;
        tp_peer_close(&rp->p[i]);
    }
}

/* One round: both regions send their scripted delta for `round`, then wait for GLOBAL. */
static void play_round(region_pair *rp, int round)
{
    static float d[N_PARAMS];
    for (int i = 0; i < 2; i++) {
        for (size_t k = 0; k < N_PARAMS; k++)
            d[k] = 0.01f * sinf((float)k * 0.37f * (float)(i + 1) + (float)round);
        gdml_msg_header h;
        gdml_msg_header_init(&h, GDML_MSG_DELTA, names[i]);
        h.version = rp->version;
        h.count = samples[i];
        h.lr_steps = 1.0;
        h.metric = 1.0;
        tp_peer_send_tensor(&rp->p[i], &h, d, N_PARAMS);
    }
    for (int i = 0; i < 2; i++) {
        gdml_msg_header h;
        bool global = false, stop = false;
        for (int t = 0; t < 100 && !global && !stop; t++)
            if (tp_peer_recv(&rp->p[i], 100, &h)) {
                global = h.type == GDML_MSG_GLOBAL;
                stop = h.type == GDML_MSG_STOP; /* the last round ends with STOP */
            }
        cr_assert(global || stop, "region %s got neither GLOBAL nor STOP", names[i]);
        if (global)
            rp->version = h.version;
    }
}

static const char *const adam_args[] = {"--regions", "2", "--rounds", "6", "--merge", "adam",
                                        "--server-lr", "0.01", NULL};

/* Reads tensor name of version v of the store in c. */
static float *read_tensor(tp_cluster *c, uint64_t v, const char *name, size_t *n)
{
    char dir[4200];
    store_dir(c, dir, sizeof dir);
    gdml_store_options so = {.read_only = true};
    gdml_store *s = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_open(dir, &so, &s, &e), GDML_OK, "%s", e.text);
    float *t = NULL;
    cr_assert_eq(gdml_store_tensor_read(s, v, name, &t, n, &e), GDML_OK, "%s", e.text);
    gdml_store_close(&s);
    return t;
}

Test(store, a_killed_coordinator_continues_fedadam_exactly, .timeout = 180)
{
    /* Uninterrupted: six rounds. */
    tp_cluster a;
    tp_cluster_init(&a, true);
    tp_proc ca;
    tp_start_coordinator(&a, &ca, names, 2, NULL, adam_args);
    region_pair ra;
    memset(&ra, 0, sizeof ra);
    join(&ra, &a);
    for (int r = 1; r <= 6; r++)
        play_round(&ra, r);
    cr_assert_eq(gdml_test_wait(ca.pid, 20), 0, "see %s", ca.log);
    leave(&ra);

    /* Interrupted: three rounds, SIGKILL, a restart on the same store and port, three more. */
    tp_cluster b;
    tp_cluster_init(&b, true);
    tp_proc cb;
    tp_start_coordinator(&b, &cb, names, 2, NULL, adam_args);
    char listen[256];
    snprintf(listen, sizeof listen, "%s", b.coord_ep);
    region_pair rb;
    memset(&rb, 0, sizeof rb);
    join(&rb, &b);
    for (int r = 1; r <= 3; r++)
        play_round(&rb, r);
    kill(cb.pid, SIGKILL);
    gdml_test_wait(cb.pid, 10);
    leave(&rb);
    tp_start_coordinator(&b, &cb, names, 2, listen, adam_args);
    cr_assert(gdml_test_wait_for_text(cb.log, " resume version=3 ", 10), "see %s", cb.log);
    join(&rb, &b);
    cr_assert_eq(rb.version, 3, "the restarted coordinator sent version %llu, not 3",
                 (unsigned long long)rb.version);
    for (int r = 4; r <= 6; r++)
        play_round(&rb, r);
    cr_assert_eq(gdml_test_wait(cb.pid, 20), 0, "see %s", cb.log);
    leave(&rb);

    const char *tensors[] = {"params", "merge_state"};
    for (int t = 0; t < 2; t++) {
        size_t na, nb;
        float *x = read_tensor(&a, 6, tensors[t], &na), *y = read_tensor(&b, 6, tensors[t], &nb);
        cr_assert_eq(na, nb);
        cr_assert_eq(memcmp(x, y, na * sizeof(float)), 0,
                     "version 6's %s differs between the interrupted and the uninterrupted run",
                     tensors[t]);
        free(x);
        free(y);
    }
    tp_cluster_fini(&a);
    tp_cluster_fini(&b);
}

Test(store, a_rollback_makes_the_next_resume_start_from_that_version, .timeout = 120)
{
    tp_cluster c;
    tp_cluster_init(&c, true);
    tp_proc coord;
    const char *args[] = {"--regions", "2", "--rounds", "4", NULL};
    tp_start_coordinator(&c, &coord, names, 2, NULL, args);
    region_pair rp;
    memset(&rp, 0, sizeof rp);
    join(&rp, &c);
    for (int r = 1; r <= 4; r++)
        play_round(&rp, r);
    cr_assert_eq(gdml_test_wait(coord.pid, 20), 0, "see %s", coord.log);
    leave(&rp);
    char dir[4200];
    store_dir(&c, dir, sizeof dir);
    char *models = gdml_test_program("gdml-models"), *out = NULL;
    int rc = gdml_test_run((char *[]){models, "rollback", "2", "--store", dir, NULL}, 20, &out);
    cr_assert_eq(rc, 0, "rollback failed:\n%s", out);
    free(out);
    /* Two more rounds from version 2: versions 5 and 6, whose parents are 2 and 5. */
    const char *more[] = {"--regions", "2", "--rounds", "4", NULL};
    tp_start_coordinator(&c, &coord, names, 2, NULL, more);
    join(&rp, &c);
    cr_assert_eq(rp.version, 2, "resumed at %llu, not 2", (unsigned long long)rp.version);
    for (int r = 3; r <= 4; r++)
        play_round(&rp, r);
    cr_assert_eq(gdml_test_wait(coord.pid, 20), 0, "see %s", coord.log);
    leave(&rp);
    gdml_store_options so = {.read_only = true};
    gdml_store *s = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_open(dir, &so, &s, &e), GDML_OK, "%s", e.text);
    uint64_t count = 0;
    gdml_store_count(s, &count, &e);
    cr_assert_eq(count, 6, "history was lost: %llu versions", (unsigned long long)count);
    gdml_version_meta m;
    cr_assert_eq(gdml_store_meta(s, 5, &m, &e), GDML_OK);
    cr_assert_eq(m.parent, 2);
    cr_assert_eq(m.round, 3);
    gdml_store_close(&s);
    free(models);
    tp_cluster_fini(&c);
}
