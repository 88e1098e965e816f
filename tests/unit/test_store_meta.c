/*
 * test_store_meta.c - the store's metadata records and the regions'
 * held-out scores in them: a version with scores round-trips them (record
 * format 3), one without is written in format 2 as before, a format-2
 * record written byte by byte the way earlier builds wrote it still reads,
 * a record of a format this build does not know is refused in words, a
 * malformed score is refused at commit, and the scores of a version add up
 * as score.h says.
 */
#include "../support.h"

#include "checksum.h"
#include "store.h"

#include <criterion/criterion.h>
#include <lmdb.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const float params[4] = {0.5f, -1.0f, 2.0f, 0.25f};

static gdml_store *open_store(const char *dir)
{
    gdml_store *s = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_open(dir, NULL, &s, &e), GDML_OK, "%s", e.text);
    return s;
}

/* Version v with three regions; with scores, two of them report one. */
static void make_meta(gdml_version_meta *m, uint64_t v, bool scores)
{
    memset(m, 0, sizeof *m);
    m->version = v;
    m->parent = v - 1;
    m->round = v;
    m->time_ms = 1700000000000;
    m->bytes_received = 1234;
    m->bytes_sent = 5678;
    m->accuracy = 0.75;
    m->loss = 0.5;
    m->seq = 99;
    m->lr_steps = 2.5;
    snprintf(m->rule, sizeof m->rule, "average");
    m->n_regions = 3;
    static const char *const names[] = {"us-east", "eu-west", "ap-south"};
    for (uint32_t i = 0; i < 3; i++) {
        snprintf(m->regions[i].name, sizeof m->regions[i].name, "%s", names[i]);
        m->regions[i].seq = 100 + i;
        m->regions[i].samples = 1000 * (i + 1);
    }
    if (scores) {
        m->regions[0].val = (gdml_score){.rows = 512, .correct = 400, .loss = 0.625};
        m->regions[0].val_version = v - 1;
        m->regions[2].val = (gdml_score){.rows = 256, .correct = 0, .loss = 3.0};
        m->regions[2].val_version = v - 1;
    }
}

static void commit(gdml_store *s, const gdml_version_meta *m)
{
    gdml_store_tensor t = {"params", params, 4};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_commit(s, m, "softmax 1 2", &t, 1, &e), GDML_OK, "%s", e.text);
}

/* The "meta" database of the store at dir, with LMDB directly. */
typedef struct raw_meta {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    unsigned char key[8];
} raw_meta;

static void raw_open(raw_meta *r, const char *dir, bool write, uint64_t v)
{
    cr_assert_eq(mdb_env_create(&r->env), 0);
    cr_assert_eq(mdb_env_set_maxdbs(r->env, 8), 0);
    cr_assert_eq(mdb_env_open(r->env, dir, write ? 0 : MDB_RDONLY, 0644), 0);
    cr_assert_eq(mdb_txn_begin(r->env, NULL, write ? 0 : MDB_RDONLY, &r->txn), 0);
    cr_assert_eq(mdb_dbi_open(r->txn, "meta", 0, &r->dbi), 0);
    for (int i = 0; i < 8; i++)
        r->key[i] = (unsigned char)(v >> (8 * (7 - i)));
}

/* The first word of version v's record: its format. */
static uint32_t raw_format(const char *dir, uint64_t v)
{
    raw_meta r;
    raw_open(&r, dir, false, v);
    MDB_val key = {8, r.key}, val;
    cr_assert_eq(mdb_get(r.txn, r.dbi, &key, &val), 0);
    const unsigned char *p = val.mv_data;
    uint32_t format =
        (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    mdb_txn_abort(r.txn);
    mdb_env_close(r.env);
    return format;
}

/* Replaces version v's record with rec[0..len) plus its CRC-32. */
static void put_record(const char *dir, uint64_t v, unsigned char *rec, size_t len)
{
    uint32_t crc = gdml_crc32(0, rec, len);
    for (int i = 0; i < 4; i++)
        rec[len + i] = (unsigned char)(crc >> (8 * i));
    raw_meta r;
    raw_open(&r, dir, true, v);
    MDB_val key = {8, r.key}, val = {len + 4, rec};
    cr_assert_eq(mdb_put(r.txn, r.dbi, &key, &val, 0), 0);
    cr_assert_eq(mdb_txn_commit(r.txn), 0);
    mdb_env_close(r.env);
}

/* Commits version 1 of make_meta into a new store at dir, reads it back
 * into *got (checksums verified) and returns its record's format. */
static uint32_t commit_and_read(const char *dir, bool scores, gdml_version_meta *m,
                                gdml_version_meta *got)
{
    gdml_store *s = open_store(dir);
    make_meta(m, 1, scores);
    commit(s, m);
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_meta(s, 1, got, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_store_verify(s, NULL, NULL, &e), GDML_OK, "%s", e.text);
    gdml_store_close(&s);
    return raw_format(dir, 1);
}

/* A little-endian writer for records made by hand. */
typedef struct rec {
    unsigned char b[4096];
    size_t n;
} rec;

static void le(rec *r, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        r->b[r->n++] = (unsigned char)(v >> (8 * i));
}

static void f64(rec *r, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    le(r, bits, 8);
}

static void str(rec *r, const char *s)
{
    le(r, strlen(s), 1);
    memcpy(r->b + r->n, s, strlen(s));
    r->n += strlen(s);
}

/* Version 1 as a build before held-out scores wrote it: format 2, byte by byte. */
static void old_record(rec *r, uint32_t format)
{
    r->n = 0;
    le(r, format, 4);
    le(r, 1, 8);                       /* version */
    le(r, 0, 8);                       /* parent */
    le(r, 1, 8);                       /* round */
    le(r, (uint64_t)1700000000000, 8); /* time_ms */
    le(r, 1234, 8);                    /* bytes received */
    le(r, 5678, 8);                    /* bytes sent */
    f64(r, 0.75);                      /* accuracy */
    f64(r, 0.5);                       /* loss */
    le(r, 99, 8);                      /* seq */
    f64(r, 2.5);                       /* lr_steps */
    str(r, "average");
    le(r, 2, 4);
    str(r, "us-east");
    le(r, 100, 8);
    le(r, 1000, 8);
    str(r, "eu-west");
    le(r, 101, 8);
    le(r, 0, 8);
    le(r, 1, 4);
    str(r, "params");
    le(r, 4, 8);
    le(r, gdml_crc32(0, params, sizeof params), 4);
}

Test(store_meta, scores_round_trip_in_format_3)
{
    char *dir = gdml_test_tmpdir();
    gdml_version_meta m, got;
    cr_assert_eq(commit_and_read(dir, true, &m, &got), 3);
    cr_assert_eq(got.n_regions, 3);
    for (uint32_t i = 0; i < 3; i++) {
        cr_assert_str_eq(got.regions[i].name, m.regions[i].name);
        cr_assert_eq(got.regions[i].samples, m.regions[i].samples);
        cr_assert_eq(got.regions[i].val.rows, m.regions[i].val.rows);
        cr_assert_eq(got.regions[i].val.correct, m.regions[i].val.correct);
        cr_assert_eq(got.regions[i].val.loss, m.regions[i].val.loss);
        cr_assert_eq(got.regions[i].val_version, m.regions[i].val_version);
    }
    cr_assert_eq(got.accuracy, 0.75);
    cr_assert_str_eq(got.rule, "average");
    cr_assert_eq(got.n_tensors, 1);
    gdml_test_rmtree(dir);
}

Test(store_meta, privacy_figures_round_trip_in_format_4)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = open_store(dir);
    gdml_version_meta m, got;
    make_meta(&m, 1, false);
    m.epsilon = 3.25;
    m.dp_delta = 1e-5;
    commit(s, &m);
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_meta(s, 1, &got, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(got.epsilon, 3.25);
    cr_assert_eq(got.dp_delta, 1e-5);
    cr_assert_eq(got.n_regions, m.n_regions);
    cr_assert_str_eq(got.regions[1].name, m.regions[1].name);
    cr_assert_eq(gdml_store_verify(s, NULL, NULL, &e), GDML_OK, "%s", e.text);
    /* Figures that are not a privacy spent are refused at commit. */
    const double bad[][2] = {{NAN, 1e-5}, {-1, 1e-5}, {1, 1.5}, {INFINITY, 1e-5}};
    for (size_t i = 0; i < 4; i++) {
        make_meta(&m, 2, false);
        m.epsilon = bad[i][0];
        m.dp_delta = bad[i][1];
        gdml_store_tensor t = {"params", params, 4};
        cr_assert_eq(gdml_store_commit(s, &m, "softmax 1 2", &t, 1, &e), GDML_ERR_INVALID,
                     "figures %zu were committed", i);
        cr_assert(strstr(e.text, "privacy figures"), "message: %s", e.text);
    }
    gdml_store_close(&s);
    cr_assert_eq(raw_format(dir, 1), 4);
    /* Without DP (dp_delta 0) a version is written as before. */
    gdml_test_rmtree(dir);
    dir = gdml_test_tmpdir();
    cr_assert_eq(commit_and_read(dir, false, &m, &got), 2);
    cr_assert_eq(got.dp_delta, 0);
    cr_assert_eq(got.epsilon, 0);
    gdml_test_rmtree(dir);
}

Test(store_meta, a_version_without_scores_is_written_as_before)
{
    char *dir = gdml_test_tmpdir();
    gdml_version_meta m, got;
    cr_assert_eq(commit_and_read(dir, false, &m, &got), 2,
                 "a version without scores is not written in format 2");
    for (uint32_t i = 0; i < 3; i++)
        cr_assert_eq(got.regions[i].val.rows, 0);
    cr_assert_eq(got.n_regions, 3);
    gdml_test_rmtree(dir);
}

/* A store at dir whose version 1 has old_record(format) for its record
 * (its layout and tensor committed as usual), open. */
static gdml_store *store_with_old_record(const char *dir, uint32_t format)
{
    gdml_store *s = open_store(dir);
    gdml_version_meta m;
    make_meta(&m, 1, true);
    commit(s, &m);
    gdml_store_close(&s);
    rec r;
    old_record(&r, format);
    put_record(dir, 1, r.b, r.n);
    return open_store(dir);
}

Test(store_meta, a_format_2_record_of_an_earlier_build_reads)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = store_with_old_record(dir, 2);
    gdml_version_meta m, got;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_meta(s, 1, &got, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(got.version, 1);
    cr_assert_eq(got.round, 1);
    cr_assert_eq(got.time_ms, 1700000000000);
    cr_assert_eq(got.bytes_received, 1234);
    cr_assert_eq(got.bytes_sent, 5678);
    cr_assert_eq(got.accuracy, 0.75);
    cr_assert_eq(got.seq, 99);
    cr_assert_eq(got.lr_steps, 2.5);
    cr_assert_str_eq(got.rule, "average");
    cr_assert_eq(got.n_regions, 2);
    cr_assert_str_eq(got.regions[1].name, "eu-west");
    cr_assert_eq(got.regions[1].seq, 101);
    cr_assert_eq(got.regions[0].val.rows, 0);
    cr_assert_eq(got.regions[1].val.rows, 0);
    gdml_score total;
    cr_assert_eq(gdml_store_meta_score(&got, &total), 0);
    cr_assert_eq(gdml_store_verify(s, NULL, NULL, &e), GDML_OK, "%s", e.text);
    /* The next version, with scores, goes beside it. */
    make_meta(&m, 2, true);
    commit(s, &m);
    cr_assert_eq(gdml_store_meta(s, 2, &got, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(got.regions[0].val.rows, 512);
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

Test(store_meta, a_record_of_an_unknown_format_is_refused_in_words)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = store_with_old_record(dir, 5);
    gdml_version_meta got;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_meta(s, 1, &got, &e), GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, "version 1") && strstr(e.text, "format this build does not read"),
              "message: %s", e.text);
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

Test(store_meta, a_malformed_score_is_refused_at_commit)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = open_store(dir);
    const gdml_score bad[] = {{.rows = 10, .correct = 11, .loss = 0.5},
                              {.rows = 10, .correct = 1, .loss = NAN},
                              {.rows = 10, .correct = 1, .loss = -1.0},
                              {.rows = 0, .correct = 0, .loss = 0.5}};
    gdml_store_tensor t = {"params", params, 4};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gdml_version_meta m;
        make_meta(&m, 1, true);
        m.regions[1].val = bad[i];
        gdml_errmsg e = {{0}};
        cr_assert_eq(gdml_store_commit(s, &m, "softmax 1 2", &t, 1, &e), GDML_ERR_INVALID,
                     "score %zu was committed", i);
        cr_assert(strstr(e.text, "region 1's held-out score"), "message: %s", e.text);
    }
    uint64_t n = 9;
    cr_assert_eq(gdml_store_count(s, &n, NULL), GDML_OK);
    cr_assert_eq(n, 0);
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

Test(store_meta, scores_add_up_by_rows)
{
    gdml_version_meta m;
    make_meta(&m, 5, true);
    gdml_score total;
    cr_assert_eq(gdml_store_meta_score(&m, &total), 2);
    cr_assert_eq(total.rows, 768);
    cr_assert_eq(total.correct, 400);
    cr_assert_float_eq(total.loss, (0.625 * 512 + 3.0 * 256) / 768, 1e-12);
    cr_assert_float_eq(gdml_score_accuracy(&total), 400.0 / 768.0, 1e-12);
    gdml_score none = {0};
    cr_assert(isnan(gdml_score_accuracy(&none)));
    gdml_score_add(&none, &(gdml_score){0});
    cr_assert_eq(none.rows, 0);
    cr_assert_eq(none.loss, 0.0);
}
