/*
 * test_store.c - the model-version store: round trips, ordering, read-only
 * access beside a writer, persistence, damaged records, and kill -9 during
 * commits. Each test works in its own temporary directory. LMDB is used
 * directly only to plant damaged records; LMDB forbids one process opening an
 * environment twice, so the store is always closed first.
 */
#include "store.h"

#include "support.h"

#include <criterion/criterion.h>
#include <lmdb.h>

#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char *path_in(const char *dir, const char *name)
{
    size_t len = strlen(dir) + 1 + strlen(name) + 1;
    char *p = malloc(len);
    cr_assert_not_null(p);
    snprintf(p, len, "%s/%s", dir, name);
    return p;
}

static gdml_store *open_store(const char *dir, bool read_only)
{
    gdml_store *s = NULL;
    gdml_errmsg e = {{0}};
    gdml_err err = gdml_store_open(dir, read_only, &s, &e);
    cr_assert_eq(err, GDML_OK, "open %s: %s", dir, e.text);
    cr_assert_not_null(s);
    return s;
}

/* A parameter value that depends on the version and index, to catch mixed-up versions. */
static float param_value(uint64_t v, size_t i)
{
    return (float)((v * 7919u + i) % 100003u) * 0.5f - 1000.0f;
}

static void make_meta(gdml_version_meta *m, uint64_t v, uint32_t n_regions)
{
    memset(m, 0, sizeof *m);
    m->version = v;
    m->round = v * 3;
    m->time_ms = 1700000000000 + (int64_t)v;
    m->bytes_received = v << 40;
    m->bytes_sent = UINT64_MAX - v;
    m->accuracy = 0.5 + (double)v / 1000.0;
    m->loss = 1.0 / (double)(v + 1);
    m->n_regions = n_regions;
    for (uint32_t i = 0; i < n_regions; i++) {
        snprintf(m->regions[i].name, sizeof m->regions[i].name, "region-%" PRIu32, i);
        m->regions[i].seq = v * 100 + i;
        m->regions[i].samples = 60000 - i;
    }
}

/* Commits version v with n deterministic parameters; returns the commit's result. */
static gdml_err commit_version(gdml_store *s, uint64_t v, size_t n, gdml_errmsg *e)
{
    gdml_version_meta m;
    make_meta(&m, v, (uint32_t)(v % 4));
    float *p = malloc(n * sizeof *p);
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = param_value(v, i);
    char layout[GDML_LAYOUT_MAX];
    snprintf(layout, sizeof layout, "softmax:784x10+%" PRIu64, v);
    gdml_err err = gdml_store_commit(s, &m, layout, p, n, e);
    free(p);
    return err;
}

static void commit_ok(gdml_store *s, uint64_t v, size_t n)
{
    gdml_errmsg e = {{0}};
    gdml_err err = commit_version(s, v, n, &e);
    cr_assert_eq(err, GDML_OK, "commit %" PRIu64 ": %s", v, e.text);
}

/* True if version v reads back exactly as commit_version wrote it with n params. */
static bool version_whole(gdml_store *s, uint64_t v, size_t n)
{
    gdml_version_meta want, got;
    make_meta(&want, v, (uint32_t)(v % 4));
    if (gdml_store_meta(s, v, &got, NULL) != GDML_OK)
        return false;
    if (got.version != v || got.round != want.round || got.n_regions != want.n_regions ||
        got.time_ms != want.time_ms || got.bytes_sent != want.bytes_sent)
        return false;
    char layout[GDML_LAYOUT_MAX], want_layout[GDML_LAYOUT_MAX];
    snprintf(want_layout, sizeof want_layout, "softmax:784x10+%" PRIu64, v);
    float *p = NULL;
    size_t got_n = 0;
    if (gdml_store_params(s, v, layout, &p, &got_n, NULL) != GDML_OK)
        return false;
    bool ok = got_n == n && strcmp(layout, want_layout) == 0;
    for (size_t i = 0; ok && i < n; i++)
        ok = p[i] == param_value(v, i);
    free(p);
    return ok;
}

Test(store, round_trip_every_field)
{
    char *dir = gdml_test_tmpdir();
    char *sdir = path_in(dir, "a/b/store"); /* parents are created */
    gdml_store *s = open_store(sdir, false);

    gdml_version_meta m;
    make_meta(&m, 1, 3);
    m.time_ms = -5; /* the sign survives */
    m.accuracy = NAN;
    m.loss = 0.25;
    snprintf(m.regions[2].name, sizeof m.regions[2].name, "%s",
             "a-name-of-exactly-sixty-three-characters-xxxxxxxxxxxxxxxxxxxxxx");
    cr_assert_eq(strlen(m.regions[2].name), GDML_NAME_MAX - 1);
    float params[5] = {1.5f, -2.25f, 0.0f, INFINITY, 3e-38f};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_commit(s, &m, "softmax:2x2+1", params, 5, &e), GDML_OK, "%s", e.text);

    gdml_version_meta m2;
    make_meta(&m2, 2, GDML_STORE_MAX_REGIONS);
    float one = 42.0f;
    cr_assert_eq(gdml_store_commit(s, &m2, "x", &one, 1, &e), GDML_OK, "%s", e.text);

    gdml_version_meta got;
    cr_assert_eq(gdml_store_meta(s, 1, &got, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(got.version, 1);
    cr_assert_eq(got.round, m.round);
    cr_assert_eq(got.time_ms, -5);
    cr_assert_eq(got.bytes_received, m.bytes_received);
    cr_assert_eq(got.bytes_sent, m.bytes_sent);
    cr_assert(isnan(got.accuracy));
    cr_assert_eq(got.loss, 0.25);
    cr_assert_eq(got.n_regions, 3);
    for (uint32_t i = 0; i < 3; i++) {
        cr_assert_str_eq(got.regions[i].name, m.regions[i].name);
        cr_assert_eq(got.regions[i].seq, m.regions[i].seq);
        cr_assert_eq(got.regions[i].samples, m.regions[i].samples);
    }

    cr_assert_eq(gdml_store_meta(s, 2, &got, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(got.n_regions, GDML_STORE_MAX_REGIONS);
    cr_assert_eq(got.accuracy, m2.accuracy);
    for (uint32_t i = 0; i < GDML_STORE_MAX_REGIONS; i++) {
        cr_assert_str_eq(got.regions[i].name, m2.regions[i].name);
        cr_assert_eq(got.regions[i].seq, m2.regions[i].seq);
        cr_assert_eq(got.regions[i].samples, m2.regions[i].samples);
    }

    char layout[GDML_LAYOUT_MAX];
    float *p = NULL;
    size_t n = 0;
    cr_assert_eq(gdml_store_params(s, 1, layout, &p, &n, &e), GDML_OK, "%s", e.text);
    cr_assert_str_eq(layout, "softmax:2x2+1");
    cr_assert_eq(n, 5);
    cr_assert_arr_eq(p, params, sizeof params);
    free(p);
    cr_assert_eq(gdml_store_params(s, 2, layout, &p, &n, &e), GDML_OK, "%s", e.text);
    cr_assert_str_eq(layout, "x");
    cr_assert_eq(n, 1);
    cr_assert_eq(p[0], 42.0f);
    free(p);

    gdml_store_close(&s);
    cr_assert_null(s);
    free(sdir);
    gdml_test_rmtree(dir);
}

Test(store, large_params_round_trip)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = open_store(dir, false);
    size_t n = 3 * 1000 * 1000; /* 12 MB, spread over LMDB overflow pages */
    commit_ok(s, 1, n);
    commit_ok(s, 2, 7);
    cr_assert(version_whole(s, 1, n));
    cr_assert(version_whole(s, 2, 7));
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

Test(store, versions_must_increase)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = open_store(dir, false);
    commit_ok(s, 5, 10);

    gdml_errmsg e = {{0}};
    cr_assert_eq(commit_version(s, 5, 3, &e), GDML_ERR_EXISTS);
    cr_assert(strstr(e.text, "head is version 5"), "message: %s", e.text);
    cr_assert_eq(commit_version(s, 3, 3, &e), GDML_ERR_EXISTS);
    cr_assert(strstr(e.text, "version 3"), "message: %s", e.text);

    uint64_t head = 0, count = 0;
    cr_assert_eq(gdml_store_head(s, &head), GDML_OK);
    cr_assert_eq(head, 5);
    cr_assert_eq(gdml_store_count(s, &count), GDML_OK);
    cr_assert_eq(count, 1);
    cr_assert(version_whole(s, 5, 10), "version 5 was changed by a refused commit");
    gdml_version_meta m;
    cr_assert_eq(gdml_store_meta(s, 3, &m, NULL), GDML_ERR_NOTFOUND);

    commit_ok(s, 6, 10);
    cr_assert_eq(gdml_store_head(s, &head), GDML_OK);
    cr_assert_eq(head, 6);
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

Test(store, bad_records_are_refused)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = open_store(dir, false);
    gdml_version_meta m;
    float p[2] = {1, 2};
    gdml_errmsg e = {{0}};

    make_meta(&m, 1, 0);
    m.n_regions = GDML_STORE_MAX_REGIONS + 1;
    cr_assert_eq(gdml_store_commit(s, &m, "l", p, 2, &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "regions"), "message: %s", e.text);

    make_meta(&m, 1, 1);
    memset(m.regions[0].name, 'x', sizeof m.regions[0].name); /* no terminator */
    cr_assert_eq(gdml_store_commit(s, &m, "l", p, 2, &e), GDML_ERR_INVALID);

    make_meta(&m, 1, 1);
    cr_assert_eq(gdml_store_commit(s, &m, "", p, 2, &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "layout"), "message: %s", e.text);
    char long_layout[GDML_LAYOUT_MAX + 1];
    memset(long_layout, 'a', GDML_LAYOUT_MAX);
    long_layout[GDML_LAYOUT_MAX] = '\0';
    cr_assert_eq(gdml_store_commit(s, &m, long_layout, p, 2, &e), GDML_ERR_INVALID);
    long_layout[GDML_LAYOUT_MAX - 1] = '\0'; /* the longest that fits */
    cr_assert_eq(gdml_store_commit(s, &m, long_layout, p, 2, &e), GDML_OK, "%s", e.text);

    make_meta(&m, 0, 0);
    cr_assert_eq(gdml_store_commit(s, &m, "l", p, 2, &e), GDML_ERR_INVALID);
    make_meta(&m, 2, 0);
    cr_assert_eq(gdml_store_commit(s, &m, "l", p, 0, &e), GDML_ERR_INVALID);

    uint64_t count = 0;
    cr_assert_eq(gdml_store_count(s, &count), GDML_OK);
    cr_assert_eq(count, 1);
    char layout[GDML_LAYOUT_MAX];
    float *got = NULL;
    size_t n = 0;
    cr_assert_eq(gdml_store_params(s, 1, layout, &got, &n, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(strlen(layout), GDML_LAYOUT_MAX - 1);
    free(got);
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

static int count_visits(const gdml_version_meta *m, void *user)
{
    (void)m;
    ++*(int *)user;
    return 0;
}

Test(store, empty_store)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = open_store(dir, false);
    uint64_t head = 77, count = 77;
    cr_assert_eq(gdml_store_head(s, &head), GDML_ERR_NOTFOUND);
    cr_assert_eq(head, 77, "head set its out-parameter on failure");
    cr_assert_eq(gdml_store_count(s, &count), GDML_OK);
    cr_assert_eq(count, 0);
    int visits = 0;
    cr_assert_eq(gdml_store_each(s, count_visits, &visits, NULL), GDML_OK);
    cr_assert_eq(visits, 0);
    gdml_version_meta m;
    cr_assert_eq(gdml_store_meta(s, 1, &m, NULL), GDML_ERR_NOTFOUND);
    gdml_store_close(&s);

    /* A store that was only created can be opened read-only and is empty. */
    s = open_store(dir, true);
    cr_assert_eq(gdml_store_head(s, &head), GDML_ERR_NOTFOUND);
    cr_assert_eq(gdml_store_count(s, &count), GDML_OK);
    cr_assert_eq(count, 0);
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

typedef struct visit_log {
    uint64_t seen[16];
    int n;
    int stop_after;
} visit_log;

static int log_visit(const gdml_version_meta *m, void *user)
{
    visit_log *log = user;
    cr_assert_lt(log->n, 16);
    log->seen[log->n++] = m->version;
    return log->n == log->stop_after;
}

Test(store, each_in_ascending_order)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = open_store(dir, false);
    /* Across byte boundaries: little-endian keys would sort 256 before 255. */
    const uint64_t versions[] = {1, 2, 255, 256, 257, 65536, (uint64_t)1 << 40};
    size_t nv = sizeof versions / sizeof versions[0];
    for (size_t i = 0; i < nv; i++)
        commit_ok(s, versions[i], 3);

    visit_log log = {.stop_after = -1};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_each(s, log_visit, &log, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(log.n, (int)nv);
    for (size_t i = 0; i < nv; i++)
        cr_assert_eq(log.seen[i], versions[i], "visit %zu", i);

    visit_log early = {.stop_after = 2};
    cr_assert_eq(gdml_store_each(s, log_visit, &early, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(early.n, 2);
    cr_assert_eq(early.seen[1], 2);

    uint64_t head = 0, count = 0;
    cr_assert_eq(gdml_store_head(s, &head), GDML_OK);
    cr_assert_eq(head, (uint64_t)1 << 40);
    cr_assert_eq(gdml_store_count(s, &count), GDML_OK);
    cr_assert_eq(count, nv);
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

Test(store, read_only_open_of_missing_store)
{
    char *dir = gdml_test_tmpdir();
    char *missing = path_in(dir, "nope");
    gdml_store *s = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_open(missing, true, &s, &e), GDML_ERR_NOTFOUND);
    cr_assert_null(s);
    cr_assert(strstr(e.text, "no model store at") && strstr(e.text, "check --store"), "message: %s",
              e.text);
    struct stat st;
    cr_assert_neq(stat(missing, &st), 0, "a read-only open created the directory");
    /* An existing directory without a store is no store either. */
    cr_assert_eq(gdml_store_open(dir, true, &s, &e), GDML_ERR_NOTFOUND);
    cr_assert_null(s);
    free(missing);
    gdml_test_rmtree(dir);
}

Test(store, open_over_a_file_fails)
{
    char *dir = gdml_test_tmpdir();
    char *file = path_in(dir, "file");
    gdml_test_write_file(file, "not a directory\n");
    gdml_store *s = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_open(file, false, &s, &e), GDML_ERR_IO);
    cr_assert_null(s);
    cr_assert(strstr(e.text, file), "message: %s", e.text);
    free(file);
    gdml_test_rmtree(dir);
}

Test(store, close_accepts_null)
{
    gdml_store_close(NULL);
    gdml_store *s = NULL;
    gdml_store_close(&s);
    cr_assert_null(s);
}

Test(store, read_only_store_refuses_commits)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = open_store(dir, false);
    commit_ok(s, 1, 4);
    gdml_store_close(&s);
    s = open_store(dir, true);
    gdml_errmsg e = {{0}};
    cr_assert_eq(commit_version(s, 2, 4, &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "read-only"), "message: %s", e.text);
    cr_assert(version_whole(s, 1, 4));
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

Test(store, reopen_keeps_every_version)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = open_store(dir, false);
    for (uint64_t v = 1; v <= 3; v++)
        commit_ok(s, v, 100 * v);
    gdml_store_close(&s);
    cr_assert_null(s);

    s = open_store(dir, false);
    uint64_t head = 0, count = 0;
    cr_assert_eq(gdml_store_head(s, &head), GDML_OK);
    cr_assert_eq(head, 3);
    cr_assert_eq(gdml_store_count(s, &count), GDML_OK);
    cr_assert_eq(count, 3);
    for (uint64_t v = 1; v <= 3; v++)
        cr_assert(version_whole(s, v, 100 * v), "version %" PRIu64, v);
    gdml_errmsg e = {{0}};
    cr_assert_eq(commit_version(s, 3, 1, &e), GDML_ERR_EXISTS);
    commit_ok(s, 4, 1);
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

Test(store, params_of_missing_version)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = open_store(dir, false);
    commit_ok(s, 1, 4);
    char layout[GDML_LAYOUT_MAX] = "untouched";
    float *p = (float *)&layout; /* any non-NULL marker */
    size_t n = 99;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_params(s, 2, layout, &p, &n, &e), GDML_ERR_NOTFOUND);
    cr_assert(strstr(e.text, "version 2"), "message: %s", e.text);
    cr_assert_str_eq(layout, "untouched");
    cr_assert_eq(p, (float *)&layout);
    cr_assert_eq(n, 99);
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

/* Reads or writes exactly one byte on a pipe; false on EOF or error. */
static bool pipe_byte(int fd, bool write_it)
{
    char c = 'x';
    return (write_it ? write(fd, &c, 1) : read(fd, &c, 1)) == 1;
}

/*
 * The reader runs in a child process (LMDB allows one environment per
 * process): it opens read-only while the parent holds the store open for
 * writing, checks what is committed, and checks again after the parent
 * commits more. Exit codes name the step that failed.
 */
static int reader_child(const char *dir, int go_fd, int ready_fd)
{
    if (!pipe_byte(go_fd, false))
        return 10;
    gdml_store *s = NULL;
    if (gdml_store_open(dir, true, &s, NULL) != GDML_OK)
        return 11;
    uint64_t head = 0, count = 0;
    if (gdml_store_head(s, &head) != GDML_OK || head != 3)
        return 12;
    if (gdml_store_count(s, &count) != GDML_OK || count != 3)
        return 13;
    for (uint64_t v = 1; v <= 3; v++)
        if (!version_whole(s, v, 1000))
            return 14;
    if (!pipe_byte(ready_fd, true) || !pipe_byte(go_fd, false))
        return 15;
    if (gdml_store_head(s, &head) != GDML_OK || head != 4)
        return 16;
    if (!version_whole(s, 4, 1000))
        return 17;
    gdml_store_close(&s);
    return 0;
}

Test(store, read_only_beside_a_writer, .timeout = 60)
{
    char *dir = gdml_test_tmpdir();
    int go[2], ready[2];
    cr_assert_eq(pipe(go), 0);
    cr_assert_eq(pipe(ready), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(go[1]);
        close(ready[0]);
        _exit(reader_child(dir, go[0], ready[1]));
    }
    close(go[0]);
    close(ready[1]);

    gdml_store *s = open_store(dir, false);
    for (uint64_t v = 1; v <= 3; v++)
        commit_ok(s, v, 1000);
    cr_assert(pipe_byte(go[1], true));
    bool reader_ready = pipe_byte(ready[0], false);
    commit_ok(s, 4, 1000); /* while the reader keeps its environment open */
    if (reader_ready)
        cr_assert(pipe_byte(go[1], true));
    close(go[1]);
    close(ready[0]);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "reader failed at step %d",
              WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

/* Puts val under key version in the named database, with LMDB directly. */
static void raw_put(MDB_env *env, const char *db, uint64_t version, const void *data, size_t len)
{
    unsigned char k[8];
    for (int i = 0; i < 8; i++)
        k[i] = (unsigned char)(version >> (56 - 8 * i));
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, db, 0, &dbi), 0);
    MDB_val key = {8, k}, val = {len, (void *)data};
    cr_assert_eq(mdb_put(txn, dbi, &key, &val, 0), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
}

static MDB_env *raw_open(const char *dir)
{
    MDB_env *env = NULL;
    cr_assert_eq(mdb_env_create(&env), 0);
    cr_assert_eq(mdb_env_set_maxdbs(env, 8), 0);
    cr_assert_eq(mdb_env_open(env, dir, 0, 0644), 0);
    return env;
}

/* A hand-made meta record in the format docs/store.md describes. */
typedef struct rec {
    unsigned char b[512];
    size_t len;
} rec;

static void rec_u32(rec *r, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        r->b[r->len++] = (unsigned char)(v >> (8 * i));
}

static void rec_u64(rec *r, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        r->b[r->len++] = (unsigned char)(v >> (8 * i));
}

/* Format, the seven fixed fields for version, and n_regions. */
static rec rec_head(uint32_t format, uint64_t version, uint32_t n_regions)
{
    rec r = {.len = 0};
    rec_u32(&r, format);
    rec_u64(&r, version);
    for (int i = 0; i < 6; i++)
        rec_u64(&r, 0);
    rec_u32(&r, n_regions);
    return r;
}

/* One region whose name field claims name_len bytes; bytes[0..nbytes) follow. */
static void rec_region(rec *r, uint32_t name_len, const char *bytes, size_t nbytes)
{
    rec_u32(r, name_len);
    memcpy(r->b + r->len, bytes, nbytes);
    r->len += nbytes;
    rec_u64(r, 1);
    rec_u64(r, 2);
}

/* Sets the version field of a record long enough to have one. */
static void rec_set_version(rec *r, uint64_t v)
{
    for (int j = 0; j < 8; j++)
        r->b[4 + j] = (unsigned char)(v >> (8 * j));
}

Test(store, damaged_records_are_format_errors)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = open_store(dir, false);
    commit_ok(s, 1, 8);
    gdml_store_close(&s);

    /* Versions 2.. get one kind of damage each, 1 stays whole. */
    rec good = rec_head(1, 0, 1);
    rec_region(&good, 2, "eu", 2);
    rec bad[16];
    int nbad = 0;
    bad[nbad++] = (rec){.len = 0};                            /* empty */
    bad[nbad++] = (rec){.b = {1, 0, 0}, .len = 3};            /* shorter than the format */
    bad[nbad++] = rec_head(2, 0, 0);                          /* unknown format */
    bad[nbad++] = rec_head(1, 0, GDML_STORE_MAX_REGIONS + 1); /* too many regions */
    bad[nbad++] = rec_head(1, 0, 3000000000u);                /* absurd region count */
    bad[nbad] = rec_head(1, 0, 1);                            /* a name longer than the record */
    rec_region(&bad[nbad++], 0xffffffffu, "", 0);
    bad[nbad] = rec_head(1, 0, 1); /* a name too long for GDML_NAME_MAX */
    rec_region(&bad[nbad++], GDML_NAME_MAX, "", 0);
    bad[nbad] = rec_head(1, 0, 1); /* a name with a NUL inside */
    rec_region(&bad[nbad++], 2, "a\0", 2);
    bad[nbad] = rec_head(1, 0, 2); /* promises two regions, holds one */
    rec_region(&bad[nbad++], 2, "eu", 2);
    bad[nbad] = good; /* one byte short */
    bad[nbad++].len--;
    bad[nbad] = good; /* one byte too many */
    bad[nbad++].len++;
    memset(bad[nbad].b, 0xff, sizeof bad[nbad].b); /* noise */
    bad[nbad++].len = 200;
    int other_version = nbad; /* a whole record that names another version */
    bad[nbad++] = rec_head(1, 999, 0);

    MDB_env *env = raw_open(dir);
    for (int i = 0; i < nbad; i++) {
        uint64_t v = 2 + (uint64_t)i;
        /* The version field is right except where the damage is that field. */
        if (bad[i].len >= 12 && i != other_version)
            rec_set_version(&bad[i], v);
        raw_put(env, "meta", v, bad[i].b, bad[i].len);
    }
    uint64_t good_v = 2 + (uint64_t)nbad;
    rec_set_version(&good, good_v);
    raw_put(env, "meta", good_v, good.b, good.len);
    /* Damaged layout and params under versions of their own. */
    raw_put(env, "layout", 100, "ok", 2);
    raw_put(env, "params", 100, "12345", 5);
    raw_put(env, "layout", 101, "a\0b", 3);
    raw_put(env, "params", 101, "1234", 4);
    mdb_env_close(env);

    s = open_store(dir, false);
    gdml_version_meta m;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_meta(s, 1, &m, &e), GDML_OK, "%s", e.text);
    for (int i = 0; i < nbad; i++) {
        uint64_t v = 2 + (uint64_t)i;
        e.text[0] = '\0';
        cr_assert_eq(gdml_store_meta(s, v, &m, &e), GDML_ERR_FORMAT, "damage %d", i);
        cr_assert(strstr(e.text, "malformed") || strstr(e.text, "format"), "damage %d: %s", i,
                  e.text);
    }
    /* The hand-made record is what the format description says store.c reads. */
    cr_assert_eq(gdml_store_meta(s, good_v, &m, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(m.n_regions, 1);
    cr_assert_str_eq(m.regions[0].name, "eu");
    cr_assert_eq(m.regions[0].seq, 1);
    cr_assert_eq(m.regions[0].samples, 2);

    int visits = 0;
    cr_assert_eq(gdml_store_each(s, count_visits, &visits, &e), GDML_ERR_FORMAT);
    cr_assert_eq(visits, 1, "each visited past the damage");

    char layout[GDML_LAYOUT_MAX];
    float *p = NULL;
    size_t n = 0;
    cr_assert_eq(gdml_store_params(s, 100, layout, &p, &n, &e), GDML_ERR_FORMAT);
    cr_assert_eq(gdml_store_params(s, 101, layout, &p, &n, &e), GDML_ERR_FORMAT);
    cr_assert_null(p);
    cr_assert_eq(gdml_store_params(s, 1, layout, &p, &n, &e), GDML_OK, "%s", e.text);
    free(p);
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

Test(store, damaged_meta_key_is_a_format_error)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = open_store(dir, false);
    commit_ok(s, 1, 8);
    gdml_store_close(&s);

    MDB_env *env = raw_open(dir);
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    MDB_val key = {3, "\xff\xff\xff"}, val = {1, "x"};
    cr_assert_eq(mdb_put(txn, dbi, &key, &val, 0), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    s = open_store(dir, false);
    uint64_t head = 0;
    cr_assert_eq(gdml_store_head(s, &head), GDML_ERR_FORMAT);
    gdml_errmsg e = {{0}};
    cr_assert_eq(commit_version(s, 2, 1, &e), GDML_ERR_FORMAT);
    int visits = 0;
    cr_assert_eq(gdml_store_each(s, count_visits, &visits, &e), GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, "key"), "message: %s", e.text);
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

/*
 * A writer killed with SIGKILL at an arbitrary point loses nothing it
 * committed and leaves nothing half-written: the child commits 1 MB versions
 * back to back and reports each number after its commit returns; the parent
 * kills it at a varying moment inside a later commit.
 */
#define KILL_PARAMS (256 * 1024)

/* The child's parameters: a fixed pattern stamped with the version at both ends. */
static void kill_stamp(float *p, uint64_t v)
{
    p[0] = (float)v;
    p[KILL_PARAMS - 1] = (float)v;
}

static int committing_child(const char *dir, int report_fd)
{
    gdml_store *s = NULL;
    float *p = malloc(KILL_PARAMS * sizeof *p);
    if (!p || gdml_store_open(dir, false, &s, NULL) != GDML_OK)
        return 10;
    for (size_t i = 0; i < KILL_PARAMS; i++)
        p[i] = (float)i * 0.5f;
    for (uint64_t v = 1; v <= 100000; v++) {
        gdml_version_meta m;
        make_meta(&m, v, (uint32_t)(v % 4));
        kill_stamp(p, v);
        if (gdml_store_commit(s, &m, "kill", p, KILL_PARAMS, NULL) != GDML_OK)
            return 11;
        if (write(report_fd, &v, sizeof v) != (ssize_t)sizeof v)
            return 12;
    }
    return 13; /* never killed */
}

/* True if version v is the whole version the child committed. */
static bool kill_version_whole(gdml_store *s, uint64_t v)
{
    gdml_version_meta want, got;
    make_meta(&want, v, (uint32_t)(v % 4));
    if (gdml_store_meta(s, v, &got, NULL) != GDML_OK || got.round != want.round ||
        got.n_regions != want.n_regions || got.bytes_received != want.bytes_received)
        return false;
    char layout[GDML_LAYOUT_MAX];
    float *p = NULL;
    size_t n = 0;
    if (gdml_store_params(s, v, layout, &p, &n, NULL) != GDML_OK)
        return false;
    bool ok =
        n == KILL_PARAMS && strcmp(layout, "kill") == 0 && p[0] == (float)v && p[n - 1] == (float)v;
    for (size_t i = 1; ok && i + 1 < n; i++)
        ok = p[i] == (float)i * 0.5f;
    free(p);
    return ok;
}

/* One kill: the child is killed delay_us after it reports its sixth version. */
static void kill_during_commits(unsigned delay_us)
{
    char *dir = gdml_test_tmpdir();
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        _exit(committing_child(dir, fds[1]));
    }
    close(fds[1]);

    uint64_t reported[4096];
    size_t n = 0;
    uint64_t v;
    while (n < 6 && read(fds[0], &v, sizeof v) == (ssize_t)sizeof v)
        reported[n++] = v;
    usleep(delay_us);
    cr_assert_eq(kill(pid, SIGKILL), 0);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "the child ended on its own (status %d) after %zu versions", status, n);
    /* Versions reported between our last read and the kill count too. */
    while (n < 4096 && read(fds[0], &v, sizeof v) == (ssize_t)sizeof v)
        reported[n++] = v;
    close(fds[0]);
    cr_assert_geq(n, 6);

    gdml_store *s = open_store(dir, false);
    uint64_t head = 0, count = 0;
    cr_assert_eq(gdml_store_head(s, &head), GDML_OK);
    cr_assert_geq(head, reported[n - 1]);
    cr_assert_leq(head, reported[n - 1] + 1, "at most the commit in flight may also have landed");
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(reported[i], i + 1);
        cr_assert(kill_version_whole(s, reported[i]), "version %" PRIu64 " is damaged",
                  reported[i]);
    }
    if (head > reported[n - 1])
        cr_assert(kill_version_whole(s, head), "the in-flight version is partial");
    cr_assert_eq(gdml_store_count(s, &count), GDML_OK);
    cr_assert_eq(count, head);
    commit_ok(s, head + 1, 4); /* and the store takes new versions */
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

Test(store, kill_9_loses_no_committed_version, .timeout = 120)
{
    /* A commit takes about a millisecond here; the delays walk across one. */
    for (unsigned delay_us = 0; delay_us < 2000; delay_us += 50)
        kill_during_commits(delay_us);
}
