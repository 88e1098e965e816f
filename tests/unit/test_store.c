/*
 * test_store.c - the model-version store (format 2): round trips of every
 * field and of tensors larger than one chunk, ordering and refusals,
 * read-only access (beside a writer, and under an address-space limit),
 * damaged data files and records, map growth and its limit, a full disk,
 * retention, rollback, and kill -9 during commits.
 *
 * Each test works in its own temporary directory. LMDB allows one process
 * one environment per file, so a store is always closed before the test
 * damages its file or looks into it with LMDB directly, and second openers
 * run in forked children. Damage is planted in data.mdb by finding the bytes
 * of a distinctive value the test committed and flipping one bit.
 */
#define _GNU_SOURCE /* memmem, unshare */
#include "store.h"

#include "checksum.h"
#include "support.h"

#include <criterion/criterion.h>
#include <lmdb.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB ((uint64_t)1 << 20)
#define GIB ((uint64_t)1 << 30)

/* ---- helpers ---- */

static char *path_in(const char *dir, const char *name)
{
    size_t len = strlen(dir) + 1 + strlen(name) + 1;
    char *p = malloc(len);
    cr_assert_not_null(p);
    snprintf(p, len, "%s/%s", dir, name);
    return p;
}

static gdml_store *open_with(const char *dir, const gdml_store_options *opts)
{
    gdml_store *s = NULL;
    gdml_errmsg e = {{0}};
    gdml_err err = gdml_store_open(dir, opts, &s, &e);
    cr_assert_eq(err, GDML_OK, "open %s: %s", dir, e.text);
    cr_assert_not_null(s);
    return s;
}

static gdml_store *open_rw(const char *dir)
{
    return open_with(dir, NULL);
}

static gdml_store *open_ro(const char *dir)
{
    gdml_store_options o = {.read_only = true};
    return open_with(dir, &o);
}

static off_t file_size(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "stat %s: %s", path, strerror(errno));
    return st.st_size;
}

/* A parameter value that depends on the version and index, to catch mixed-up versions. */
static float param_value(uint64_t v, size_t i)
{
    return (float)((v * 7919u + i) % 100003u) * 0.5f - 1000.0f;
}

/* The second tensor's values: unlike any parameter. */
static float extra_value(uint64_t v, size_t i)
{
    return (float)v * 1e-3f - (float)i * 0.25f;
}

static void make_meta(gdml_version_meta *m, uint64_t v, uint32_t n_regions)
{
    memset(m, 0, sizeof *m);
    m->version = v;
    m->parent = v - 1;
    m->round = v * 3 + 1;
    m->time_ms = 1700000000000 + (int64_t)v;
    m->bytes_received = v << 40 | 7;
    m->bytes_sent = UINT64_MAX - v;
    m->accuracy = 0.5 + (double)v / 1000.0;
    m->loss = 1.0 / (double)(v + 1);
    m->seq = v * 11 + 2;
    m->lr_steps = (double)v * 100.5;
    snprintf(m->rule, sizeof m->rule, "%s", v % 2 ? "nesterov" : "average");
    m->n_regions = n_regions;
    for (uint32_t i = 0; i < n_regions; i++) {
        snprintf(m->regions[i].name, sizeof m->regions[i].name, "region-%" PRIu32, i);
        m->regions[i].seq = v * 100 + i;
        m->regions[i].samples = 60000 - i;
    }
}

static void make_layout(char layout[GDML_LAYOUT_MAX], uint64_t v)
{
    snprintf(layout, GDML_LAYOUT_MAX, "softmax:784x10+%" PRIu64, v);
}

/*
 * Commits version v: "params" of n floats and, when n_extra > 0, "momentum"
 * of n_extra floats, all from param_value / extra_value. Returns the commit's
 * result.
 */
static gdml_err commit_version(gdml_store *s, uint64_t v, size_t n, size_t n_extra, gdml_errmsg *e)
{
    gdml_version_meta m;
    make_meta(&m, v, (uint32_t)(v % 4));
    float *p = malloc(n * sizeof *p);
    float *x = malloc((n_extra ? n_extra : 1) * sizeof *x);
    cr_assert(p && x);
    for (size_t i = 0; i < n; i++)
        p[i] = param_value(v, i);
    for (size_t i = 0; i < n_extra; i++)
        x[i] = extra_value(v, i);
    char layout[GDML_LAYOUT_MAX];
    make_layout(layout, v);
    gdml_store_tensor t[2] = {{"params", p, n}, {"momentum", x, n_extra}};
    gdml_err err = gdml_store_commit(s, &m, layout, t, n_extra ? 2 : 1, e);
    free(p);
    free(x);
    return err;
}

static void commit_ok(gdml_store *s, uint64_t v, size_t n, size_t n_extra)
{
    gdml_errmsg e = {{0}};
    gdml_err err = commit_version(s, v, n, n_extra, &e);
    cr_assert_eq(err, GDML_OK, "commit %" PRIu64 ": %s", v, e.text);
}

/* True if tensor name of v reads back as n values of fn(v, i). */
static bool tensor_whole(gdml_store *s, uint64_t v, const char *name, size_t n,
                         float (*fn)(uint64_t, size_t))
{
    float *p = NULL;
    size_t got = 0;
    if (gdml_store_tensor_read(s, v, name, &p, &got, NULL) != GDML_OK)
        return false;
    bool ok = got == n;
    for (size_t i = 0; ok && i < n; i++)
        ok = p[i] == fn(v, i);
    free(p);
    return ok;
}

/* True if version v reads back exactly as commit_version wrote it (usable in children). */
static bool version_whole(gdml_store *s, uint64_t v, size_t n, size_t n_extra)
{
    gdml_version_meta want, got;
    make_meta(&want, v, (uint32_t)(v % 4));
    if (gdml_store_meta(s, v, &got, NULL) != GDML_OK)
        return false;
    if (got.version != v || got.parent != want.parent || got.round != want.round ||
        got.time_ms != want.time_ms || got.bytes_received != want.bytes_received ||
        got.bytes_sent != want.bytes_sent || got.accuracy != want.accuracy ||
        got.loss != want.loss || got.seq != want.seq || got.lr_steps != want.lr_steps ||
        strcmp(got.rule, want.rule) != 0 || got.n_regions != want.n_regions)
        return false;
    for (uint32_t i = 0; i < want.n_regions; i++)
        if (strcmp(got.regions[i].name, want.regions[i].name) != 0 ||
            got.regions[i].seq != want.regions[i].seq ||
            got.regions[i].samples != want.regions[i].samples)
            return false;
    if (got.n_tensors != (n_extra ? 2u : 1u) || strcmp(got.tensors[0].name, "params") != 0 ||
        got.tensors[0].n != n)
        return false;
    if (n_extra && (strcmp(got.tensors[1].name, "momentum") != 0 || got.tensors[1].n != n_extra))
        return false;
    char layout[GDML_LAYOUT_MAX], want_layout[GDML_LAYOUT_MAX];
    make_layout(want_layout, v);
    if (gdml_store_layout(s, v, layout, NULL) != GDML_OK || strcmp(layout, want_layout) != 0)
        return false;
    if (!tensor_whole(s, v, "params", n, param_value))
        return false;
    return !n_extra || tensor_whole(s, v, "momentum", n_extra, extra_value);
}

/* Versions gdml_store_each visited, in order. */
typedef struct seen {
    uint64_t v[64];
    size_t n;
    size_t stop_after; /* 0: never stop */
    bool fields_ok;    /* every visited meta has the fields make_meta gave it */
} seen;

static int collect(const gdml_version_meta *m, void *user)
{
    seen *c = user;
    gdml_version_meta want;
    make_meta(&want, m->version, (uint32_t)(m->version % 4));
    if (m->round != want.round || m->n_regions != want.n_regions || m->seq != want.seq)
        c->fields_ok = false;
    if (c->n < 64)
        c->v[c->n] = m->version;
    c->n++;
    return c->stop_after && c->n >= c->stop_after;
}

static seen list_versions(gdml_store *s)
{
    seen c = {.fields_ok = true};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_each(s, collect, &c, &e), GDML_OK, "each: %s", e.text);
    return c;
}

static unsigned char *read_all(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    size_t n = (size_t)file_size(path);
    unsigned char *b = malloc(n ? n : 1);
    cr_assert_not_null(b);
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, b + got, n - got, (off_t)got);
        cr_assert_gt(r, 0, "read %s: %s", path, strerror(errno));
        got += (size_t)r;
    }
    close(fd);
    *len = n;
    return b;
}

/*
 * Flips bit `bit` of the byte `at` bytes past every occurrence of needle in
 * the file at path (an earlier copy of a page may hold the same bytes).
 * Returns how many occurrences it changed.
 */
static size_t flip_everywhere(const char *path, const void *needle, size_t len, size_t at, int bit)
{
    size_t n = 0, flipped = 0;
    unsigned char *b = read_all(path, &n);
    for (unsigned char *p = memmem(b, n, needle, len); p;
         p = memmem(p + 1, n - (size_t)(p + 1 - b), needle, len)) {
        size_t off = (size_t)(p - b) + at;
        cr_assert_lt(off, n);
        b[off] ^= (unsigned char)(1u << bit);
        flipped++;
    }
    int fd = open(path, O_WRONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pwrite(fd, b, n, 0), (ssize_t)n);
    cr_assert_eq(fsync(fd), 0);
    close(fd);
    free(b);
    return flipped;
}

/* Counts the "tensor" database's chunks per version (v < 64) with LMDB directly. */
static size_t raw_tensor_chunks(const char *dir, size_t per_version[64])
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_cursor *cur = NULL;
    MDB_val key, val;
    cr_assert_eq(mdb_env_create(&env), 0);
    cr_assert_eq(mdb_env_set_maxdbs(env, 8), 0);
    cr_assert_eq(mdb_env_open(env, dir, MDB_RDONLY, 0644), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, "tensor", 0, &dbi), 0);
    cr_assert_eq(mdb_cursor_open(txn, dbi, &cur), 0);
    memset(per_version, 0, 64 * sizeof per_version[0]);
    size_t total = 0;
    for (int rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        cr_assert_eq(key.mv_size, 13);
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
            v = v << 8 | ((const unsigned char *)key.mv_data)[i];
        if (v < 64)
            per_version[v]++;
        total++;
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return total;
}

/* ---- round trips ---- */

Test(store, round_trip_every_field)
{
    char *dir = gdml_test_tmpdir();
    char *sdir = path_in(dir, "a/b/store"); /* parents are created */
    gdml_store *s = open_rw(sdir);

    gdml_version_meta m;
    make_meta(&m, 1, GDML_STORE_MAX_REGIONS);
    m.parent = 0;
    m.time_ms = -5; /* the sign survives */
    m.accuracy = NAN;
    m.loss = 0.25;
    m.lr_steps = -1e300;
    snprintf(m.rule, sizeof m.rule, "%s", "fifteen-chars-x");
    cr_assert_eq(strlen(m.rule), GDML_STORE_RULE_MAX - 1);
    memset(m.regions[2].name, 'n', GDML_NAME_MAX - 1);
    m.regions[2].name[GDML_NAME_MAX - 1] = '\0';
    m.n_tensors = 7; /* the caller's tensor list is ignored: commit fills it */
    snprintf(m.tensors[0].name, sizeof m.tensors[0].name, "bogus");

    /* Bit patterns that must survive as bits: NaN with a payload, -0, denormal, inf. */
    const uint32_t bits[] = {0x7fc00001u, 0x80000000u, 0x00000001u, 0x7f800000u,
                             0xff7fffffu, 0x3fc00000u, 0xc0100000u};
    float params[7], mom[3] = {1.0f, -2.0f, 1e-30f};
    memcpy(params, bits, sizeof params);
    gdml_store_tensor t[2] = {{"params", params, 7}, {"m.v_1-x", mom, 3}};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_commit(s, &m, "softmax:2x2+1", t, 2, &e), GDML_OK, "%s", e.text);

    gdml_version_meta got;
    cr_assert_eq(gdml_store_meta(s, 1, &got, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(got.version, 1);
    cr_assert_eq(got.parent, 0);
    cr_assert_eq(got.round, m.round);
    cr_assert_eq(got.time_ms, -5);
    cr_assert_eq(got.bytes_received, m.bytes_received);
    cr_assert_eq(got.bytes_sent, m.bytes_sent);
    cr_assert(isnan(got.accuracy));
    cr_assert_eq(got.loss, 0.25);
    cr_assert_eq(got.seq, m.seq);
    cr_assert_eq(got.lr_steps, -1e300);
    cr_assert_str_eq(got.rule, "fifteen-chars-x");
    cr_assert_eq(got.n_regions, GDML_STORE_MAX_REGIONS);
    for (uint32_t i = 0; i < GDML_STORE_MAX_REGIONS; i++) {
        cr_assert_str_eq(got.regions[i].name, m.regions[i].name);
        cr_assert_eq(got.regions[i].seq, m.regions[i].seq);
        cr_assert_eq(got.regions[i].samples, m.regions[i].samples);
    }
    cr_assert_eq(got.n_tensors, 2);
    cr_assert_str_eq(got.tensors[0].name, "params");
    cr_assert_eq(got.tensors[0].n, 7);
    cr_assert_eq(got.tensors[0].crc32, gdml_crc32(0, params, sizeof params));
    cr_assert_str_eq(got.tensors[1].name, "m.v_1-x");
    cr_assert_eq(got.tensors[1].n, 3);
    cr_assert_eq(got.tensors[1].crc32, gdml_crc32(0, mom, sizeof mom));

    char layout[GDML_LAYOUT_MAX];
    cr_assert_eq(gdml_store_layout(s, 1, layout, &e), GDML_OK, "%s", e.text);
    cr_assert_str_eq(layout, "softmax:2x2+1");

    float *p = NULL;
    size_t n = 0;
    cr_assert_eq(gdml_store_tensor_read(s, 1, "params", &p, &n, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(n, 7);
    cr_assert_arr_eq(p, params, sizeof params, "params are not bit for bit");
    free(p);
    cr_assert_eq(gdml_store_tensor_read(s, 1, "m.v_1-x", &p, &n, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(n, 3);
    cr_assert_arr_eq(p, mom, sizeof mom);
    free(p);

    /* Absent tensors and versions are NOTFOUND and leave the out-params alone. */
    p = (float *)layout;
    n = 99;
    cr_assert_eq(gdml_store_tensor_read(s, 1, "anchor", &p, &n, &e), GDML_ERR_NOTFOUND);
    cr_assert(strstr(e.text, "anchor"), "message: %s", e.text);
    cr_assert_eq(gdml_store_tensor_read(s, 2, "params", &p, &n, &e), GDML_ERR_NOTFOUND);
    cr_assert(strstr(e.text, "version 2"), "message: %s", e.text);
    cr_assert_eq(p, (float *)layout);
    cr_assert_eq(n, 99);
    cr_assert_eq(gdml_store_meta(s, 2, &got, &e), GDML_ERR_NOTFOUND);
    cr_assert_eq(gdml_store_layout(s, 2, layout, &e), GDML_ERR_NOTFOUND);

    /* A version with no regions and the rest as make_meta writes them. */
    commit_ok(s, 2, 1000, 10);
    cr_assert(version_whole(s, 2, 1000, 10));

    gdml_store_close(&s);
    cr_assert_null(s);
    gdml_store_close(&s); /* NULL-safe */
    gdml_store_close(NULL);
    free(sdir);
    gdml_test_rmtree(dir);
}

Test(store, tensor_larger_than_a_chunk_round_trips)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = open_rw(dir);
    size_t n = 2500000; /* 2.5 chunks of 1 Mi floats */
    commit_ok(s, 1, n, 1500000);
    cr_assert(version_whole(s, 1, n, 1500000));

    /* The whole tensor's CRC is the CRC of all its bytes, across chunks. */
    float *want = malloc(n * sizeof *want);
    cr_assert_not_null(want);
    for (size_t i = 0; i < n; i++)
        want[i] = param_value(1, i);
    gdml_version_meta m;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_meta(s, 1, &m, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(m.tensors[0].crc32, gdml_crc32(0, want, n * sizeof *want));
    float *p = NULL;
    size_t got = 0;
    cr_assert_eq(gdml_store_tensor_read(s, 1, "params", &p, &got, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(got, n);
    cr_assert(memcmp(p, want, n * sizeof *want) == 0, "not bit for bit");
    free(p);
    free(want);

    uint64_t checked = 0, bad = 9;
    cr_assert_eq(gdml_store_verify(s, &checked, &bad, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(checked, 1);
    cr_assert_eq(bad, 0);
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

Test(store, versions_only_grow)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = open_rw(dir);
    gdml_errmsg e = {{0}};
    commit_ok(s, 1, 8, 0);
    commit_ok(s, 2, 8, 0);
    cr_assert_eq(commit_version(s, 2, 8, 0, &e), GDML_ERR_EXISTS);
    cr_assert(strstr(e.text, "version 2") && strstr(e.text, "newest is 2"), "message: %s", e.text);
    cr_assert_eq(commit_version(s, 1, 8, 0, &e), GDML_ERR_EXISTS);
    commit_ok(s, 5, 8, 0); /* gaps are allowed */
    cr_assert_eq(commit_version(s, 4, 8, 0, &e), GDML_ERR_EXISTS);
    gdml_store_close(&s);

    s = open_rw(dir); /* and after a reopen */
    cr_assert_eq(commit_version(s, 5, 8, 0, &e), GDML_ERR_EXISTS);
    uint64_t count = 0;
    cr_assert_eq(gdml_store_count(s, &count, &e), GDML_OK);
    cr_assert_eq(count, 3);
    cr_assert(version_whole(s, 2, 8, 0), "a refused commit changed version 2");
    commit_ok(s, 6, 8, 0);
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

Test(store, invalid_commits_are_refused)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = open_rw(dir);
    commit_ok(s, 1, 4, 0);
    float p[4] = {1, 2, 3, 4};
    gdml_version_meta m;
    gdml_errmsg e = {{0}};

    make_meta(&m, 2, 1);
    gdml_store_tensor no_params[1] = {{"momentum", p, 4}};
    cr_assert_eq(gdml_store_commit(s, &m, "x", no_params, 1, &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "params"), "message: %s", e.text);

    gdml_store_tensor ok[1] = {{"params", p, 4}};
    cr_assert_eq(gdml_store_commit(s, &m, "", ok, 1, &e), GDML_ERR_INVALID, "empty layout");
    char long_layout[GDML_LAYOUT_MAX + 1];
    memset(long_layout, 'l', GDML_LAYOUT_MAX);
    long_layout[GDML_LAYOUT_MAX] = '\0';
    cr_assert_eq(gdml_store_commit(s, &m, long_layout, ok, 1, &e), GDML_ERR_INVALID);
    cr_assert_eq(gdml_store_commit(s, &m, "x", ok, 0, &e), GDML_ERR_INVALID, "no tensors");
    gdml_store_tensor empty[1] = {{"params", p, 0}};
    cr_assert_eq(gdml_store_commit(s, &m, "x", empty, 1, &e), GDML_ERR_INVALID, "empty tensor");
    gdml_store_tensor nine[GDML_STORE_MAX_TENSORS + 1];
    for (size_t i = 0; i < GDML_STORE_MAX_TENSORS + 1; i++)
        nine[i] = (gdml_store_tensor){i ? "t" : "params", p, 4};
    cr_assert_eq(gdml_store_commit(s, &m, "x", nine, GDML_STORE_MAX_TENSORS + 1, &e),
                 GDML_ERR_INVALID, "too many tensors");
    gdml_store_tensor long_name[2] = {{"params", p, 4}, {"a-tensor-name-of-thirty-two-char", p, 4}};
    cr_assert_eq(strlen(long_name[1].name), GDML_STORE_TENSOR_NAME_MAX);
    cr_assert_eq(gdml_store_commit(s, &m, "x", long_name, 2, &e), GDML_ERR_INVALID);

    m.n_regions = GDML_STORE_MAX_REGIONS + 1;
    cr_assert_eq(gdml_store_commit(s, &m, "x", ok, 1, &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "regions"), "message: %s", e.text);
    make_meta(&m, 2, 1);
    memset(m.regions[0].name, 'r', GDML_NAME_MAX); /* no NUL within GDML_NAME_MAX */
    cr_assert_eq(gdml_store_commit(s, &m, "x", ok, 1, &e), GDML_ERR_INVALID);

    make_meta(&m, 0, 0);
    cr_assert_eq(gdml_store_commit(s, &m, "x", ok, 1, &e), GDML_ERR_INVALID, "version 0");

    uint64_t count = 0, newest = 0;
    cr_assert_eq(gdml_store_count(s, &count, &e), GDML_OK);
    cr_assert_eq(count, 1, "a refused commit left a version");
    cr_assert_eq(gdml_store_newest(s, &newest, &e), GDML_OK);
    cr_assert_eq(newest, 1);
    gdml_store_close(&s);

    s = open_ro(dir);
    make_meta(&m, 2, 1);
    cr_assert_eq(gdml_store_commit(s, &m, "x", ok, 1, &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "read-only"), "message: %s", e.text);
    cr_assert_eq(gdml_store_rollback(s, 1, &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "read-only"), "message: %s", e.text);
    cr_assert(version_whole(s, 1, 4, 0));
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

/*
 * Two tensors of one name: the second could never be read back (reads find
 * the first), so the record is bad and the commit must be refused.
 */
Test(store, duplicate_tensor_names_are_refused)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = open_rw(dir);
    float a[2] = {1, 2}, b[3] = {3, 4, 5};
    gdml_version_meta m;
    make_meta(&m, 1, 0);
    gdml_store_tensor t[3] = {{"params", a, 2}, {"anchor", b, 3}, {"anchor", a, 2}};
    gdml_errmsg e = {{0}};
    gdml_err err = gdml_store_commit(s, &m, "x", t, 3, &e);
    float *p = NULL;
    size_t n = 0;
    gdml_err read = err ? GDML_OK : gdml_store_tensor_read(s, 1, "anchor", &p, &n, NULL);
    free(p);
    gdml_store_close(&s);
    gdml_test_rmtree(dir); /* before the assertions: this one fails until fixed */
    if (err == GDML_OK) {
        cr_assert_eq(read, GDML_OK);
        cr_assert_fail("a version with two 'anchor' tensors was committed; reading 'anchor' "
                       "gives %zu floats, the second 'anchor' is unreachable",
                       n);
    }
    cr_assert_eq(err, GDML_ERR_INVALID, "%s", e.text);
}

Test(store, head_newest_count_and_each)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = open_rw(dir);
    gdml_errmsg e = {{0}};
    uint64_t head = 0, newest = 0, count = 9;
    cr_assert_eq(gdml_store_head(s, &head, &e), GDML_ERR_NOTFOUND);
    cr_assert_eq(gdml_store_newest(s, &newest, &e), GDML_ERR_NOTFOUND);
    cr_assert_eq(gdml_store_count(s, &count, &e), GDML_OK);
    cr_assert_eq(count, 0);
    seen c = list_versions(s);
    cr_assert_eq(c.n, 0);

    const uint64_t vs[] = {1, 2, 3, 7, 300};
    for (size_t i = 0; i < 5; i++) {
        commit_ok(s, vs[i], 16, 0);
        cr_assert_eq(gdml_store_head(s, &head, &e), GDML_OK);
        cr_assert_eq(head, vs[i]);
        cr_assert_eq(gdml_store_newest(s, &newest, &e), GDML_OK);
        cr_assert_eq(newest, vs[i]);
        cr_assert_eq(gdml_store_count(s, &count, &e), GDML_OK);
        cr_assert_eq(count, i + 1);
    }
    c = list_versions(s);
    cr_assert_eq(c.n, 5);
    cr_assert(c.fields_ok);
    for (size_t i = 0; i < 5; i++)
        cr_assert_eq(c.v[i], vs[i], "visit %zu", i);

    seen stop = {.stop_after = 2, .fields_ok = true};
    cr_assert_eq(gdml_store_each(s, collect, &stop, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(stop.n, 2, "each went on after the callback asked it to stop");
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

Test(store, reopen_keeps_every_version)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = open_rw(dir);
    for (uint64_t v = 1; v <= 3; v++)
        commit_ok(s, v, 100 * v, v);
    gdml_store_close(&s);

    s = open_rw(dir);
    uint64_t head = 0, count = 0;
    cr_assert_eq(gdml_store_head(s, &head, NULL), GDML_OK);
    cr_assert_eq(head, 3);
    cr_assert_eq(gdml_store_count(s, &count, NULL), GDML_OK);
    cr_assert_eq(count, 3);
    for (uint64_t v = 1; v <= 3; v++)
        cr_assert(version_whole(s, v, 100 * v, v), "version %" PRIu64, v);
    commit_ok(s, 4, 1, 0);
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

/* ---- read-only ---- */

Test(store, read_only_open_of_a_missing_store_is_notfound)
{
    char *dir = gdml_test_tmpdir();
    char *missing = path_in(dir, "nothing-here");
    gdml_store_options ro = {.read_only = true};
    gdml_store *s = (gdml_store *)dir; /* untouched on failure */
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_open(missing, &ro, &s, &e), GDML_ERR_NOTFOUND);
    cr_assert(strstr(e.text, missing), "message: %s", e.text);
    cr_assert_eq(s, (gdml_store *)dir);
    cr_assert_neq(access(missing, F_OK), 0, "a read-only open created the directory");
    /* An existing directory without a store is missing too, and stays empty. */
    cr_assert_eq(gdml_store_open(dir, &ro, &s, &e), GDML_ERR_NOTFOUND);
    char *data = path_in(dir, "data.mdb");
    cr_assert_neq(access(data, F_OK), 0);
    free(data);
    free(missing);
    gdml_test_rmtree(dir);
}

Test(store, read_only_maps_only_the_file)
{
    char *dir = gdml_test_tmpdir();
    char *data = path_in(dir, "data.mdb");
    gdml_store_options big = {.map_bytes = 8 * GIB};
    gdml_store *s = open_with(dir, &big);
    cr_assert_eq(gdml_store_map_bytes(s), 8 * GIB);
    for (uint64_t v = 1; v <= 3; v++)
        commit_ok(s, v, 100000, 10);
    gdml_store_close(&s);

    uint64_t file = (uint64_t)file_size(data);
    s = open_ro(dir);
    uint64_t map = gdml_store_map_bytes(s);
    cr_assert_geq(map, file, "map %" PRIu64 " < file %" PRIu64, map, file);
    cr_assert_leq(map, file + MIB, "map %" PRIu64 " for a file of %" PRIu64, map, file);
    for (uint64_t v = 1; v <= 3; v++)
        cr_assert(version_whole(s, v, 100000, 10), "version %" PRIu64, v);
    gdml_store_close(&s);

    /* Also when the reader asks for a big map itself. */
    gdml_store_options ro_big = {.read_only = true, .map_bytes = 8 * GIB};
    s = open_with(dir, &ro_big);
    cr_assert_leq(gdml_store_map_bytes(s), file + MIB);
    gdml_store_close(&s);
    free(data);
    gdml_test_rmtree(dir);
}

/* Exit codes name the step that failed. */
static int limited_reader_child(const char *dir)
{
    struct rlimit lim = {GIB, GIB};
    if (setrlimit(RLIMIT_AS, &lim) != 0)
        return 10;
    /* The limit bites: the writer's 8 GiB of address space cannot be had now. */
    void *big = mmap(NULL, 8 * GIB, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (big != MAP_FAILED)
        return 11;
    gdml_store_options ro = {.read_only = true};
    gdml_store *s = NULL;
    if (gdml_store_open(dir, &ro, &s, NULL) != GDML_OK)
        return 12;
    uint64_t count = 0, head = 0;
    if (gdml_store_count(s, &count, NULL) != GDML_OK || count != 3)
        return 13;
    if (gdml_store_head(s, &head, NULL) != GDML_OK || head != 3)
        return 14;
    seen c = {.fields_ok = true};
    if (gdml_store_each(s, collect, &c, NULL) != GDML_OK || c.n != 3 || !c.fields_ok ||
        c.v[0] != 1 || c.v[2] != 3)
        return 15;
    for (uint64_t v = 1; v <= 3; v++)
        if (!version_whole(s, v, 50000, 0))
            return 16;
    gdml_store_close(&s);
    /* A reader that asks for a big map still maps only the file. */
    gdml_store_options ro_big = {.read_only = true, .map_bytes = 8 * GIB};
    if (gdml_store_open(dir, &ro_big, &s, NULL) != GDML_OK)
        return 17;
    if (!version_whole(s, 3, 50000, 0))
        return 18;
    gdml_store_close(&s);
    return 0;
}

Test(store, read_only_open_works_under_an_address_space_limit, .timeout = 30)
{
    char *dir = gdml_test_tmpdir();
    gdml_store_options big = {.map_bytes = 8 * GIB};
    gdml_store *s = open_with(dir, &big);
    for (uint64_t v = 1; v <= 3; v++)
        commit_ok(s, v, 50000, 0);
    gdml_store_close(&s); /* the child inherits no map */

    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        _exit(limited_reader_child(dir));
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "the reader died of signal %d",
              WIFSIGNALED(status) ? WTERMSIG(status) : -1);
    cr_assert_eq(WEXITSTATUS(status), 0, "the reader under RLIMIT_AS failed at step %d",
                 WEXITSTATUS(status));
    gdml_test_rmtree(dir);
}

/* Reads or writes exactly one byte on a pipe; false on EOF or error. */
static bool pipe_byte(int fd, bool write_it)
{
    char c = 'x';
    return (write_it ? write(fd, &c, 1) : read(fd, &c, 1)) == 1;
}

/*
 * The reader runs in a child process: it opens read-only while the parent
 * holds the store open for writing, checks what is committed, and checks
 * again after the parent commits a version that grows the file past the
 * reader's map. Exit codes name the step that failed.
 */
#define BESIDE_N 1000
#define BESIDE_BIG (1u << 20)

static int reader_child(const char *dir, int go_fd, int ready_fd)
{
    if (!pipe_byte(go_fd, false))
        return 10;
    gdml_store_options ro = {.read_only = true};
    gdml_store *s = NULL;
    if (gdml_store_open(dir, &ro, &s, NULL) != GDML_OK)
        return 11;
    uint64_t head = 0, count = 0;
    if (gdml_store_head(s, &head, NULL) != GDML_OK || head != 3)
        return 12;
    if (gdml_store_count(s, &count, NULL) != GDML_OK || count != 3)
        return 13;
    for (uint64_t v = 1; v <= 3; v++)
        if (!version_whole(s, v, BESIDE_N, 0))
            return 14;
    if (!pipe_byte(ready_fd, true) || !pipe_byte(go_fd, false))
        return 15;
    if (gdml_store_head(s, &head, NULL) != GDML_OK || head != 4)
        return 16;
    if (!version_whole(s, 4, BESIDE_BIG, 0))
        return 17;
    for (uint64_t v = 1; v <= 3; v++)
        if (!version_whole(s, v, BESIDE_N, 0))
            return 18;
    gdml_store_close(&s);
    return 0;
}

Test(store, read_only_beside_a_writer, .timeout = 60)
{
    char *dir = gdml_test_tmpdir();
    int go[2], ready[2];
    cr_assert_eq(pipe(go), 0);
    cr_assert_eq(pipe(ready), 0);
    /* Fork first: LMDB environments must not cross a fork. */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(go[1]);
        close(ready[0]);
        _exit(reader_child(dir, go[0], ready[1]));
    }
    close(go[0]);
    close(ready[1]);
    gdml_store *s = open_rw(dir);
    for (uint64_t v = 1; v <= 3; v++)
        commit_ok(s, v, BESIDE_N, 0);

    cr_assert(pipe_byte(go[1], true));
    bool reader_ready = pipe_byte(ready[0], false);
    commit_ok(s, 4, BESIDE_BIG, 0); /* 4 MiB: past the reader's map */
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

/*
 * A reader that followed a writer's growth reports the map it now uses:
 * store.h says gdml_store_map_bytes is "the map size in use now".
 */
static int growing_reader_child(const char *dir, int go_fd, int ready_fd, int out_fd)
{
    if (!pipe_byte(go_fd, false))
        return 9;
    gdml_store_options ro = {.read_only = true};
    gdml_store *s = NULL;
    if (gdml_store_open(dir, &ro, &s, NULL) != GDML_OK)
        return 10;
    uint64_t before = gdml_store_map_bytes(s);
    if (!pipe_byte(ready_fd, true) || !pipe_byte(go_fd, false))
        return 11;
    if (!version_whole(s, 2, BESIDE_BIG * 2, 0))
        return 12;
    uint64_t after[2] = {before, gdml_store_map_bytes(s)};
    if (write(out_fd, after, sizeof after) != (ssize_t)sizeof after)
        return 13;
    gdml_store_close(&s);
    return 0;
}

Test(store, read_only_map_bytes_follows_a_growing_file, .timeout = 60)
{
    char *dir = gdml_test_tmpdir();
    char *data = path_in(dir, "data.mdb");
    int go[2], ready[2], out[2];
    cr_assert_eq(pipe(go), 0);
    cr_assert_eq(pipe(ready), 0);
    cr_assert_eq(pipe(out), 0);
    pid_t pid = fork(); /* before any environment is open */
    cr_assert_geq(pid, 0);
    if (pid == 0)
        _exit(growing_reader_child(dir, go[0], ready[1], out[1]));
    gdml_store *s = open_rw(dir);
    commit_ok(s, 1, BESIDE_N, 0);
    cr_assert(pipe_byte(go[1], true));
    cr_assert(pipe_byte(ready[0], false), "the reader did not open");
    commit_ok(s, 2, BESIDE_BIG * 2, 0); /* 8 MiB */
    cr_assert(pipe_byte(go[1], true));
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "reader failed at step %d",
              WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    uint64_t maps[2] = {0, 0};
    cr_assert_eq(read(out[0], maps, sizeof maps), (ssize_t)sizeof maps);
    uint64_t file = (uint64_t)file_size(data);
    gdml_store_close(&s);
    free(data);
    gdml_test_rmtree(dir); /* before the assertions: this one fails until fixed */
    cr_assert_lt(maps[0], file, "the reader's first map already covered the grown file");
    cr_assert_geq(maps[1], file,
                  "after following the writer the reader maps at least the %" PRIu64
                  "-byte file, but gdml_store_map_bytes still says %" PRIu64,
                  file, maps[1]);
}

/* ---- damaged data files ---- */

/* Opens dir read-only and writable; both must be GDML_ERR_FORMAT naming data.mdb. */
static void assert_both_opens_refuse(const char *dir, const char *data, const char *what)
{
    for (int ro = 0; ro < 2; ro++) {
        gdml_store_options o = {.read_only = ro};
        gdml_store *s = NULL;
        gdml_errmsg e = {{0}};
        gdml_err err = gdml_store_open(dir, &o, &s, &e);
        cr_assert_eq(err, GDML_ERR_FORMAT, "%s, %s open: %d (%s)", what,
                     ro ? "read-only" : "writable", err, e.text);
        cr_assert_null(s);
        cr_assert(strstr(e.text, data), "%s: the message does not name the file: %s", what, e.text);
    }
}

Test(store, empty_data_file_is_a_format_error)
{
    char *dir = gdml_test_tmpdir();
    char *data = path_in(dir, "data.mdb");
    gdml_test_write_file(data, "");
    assert_both_opens_refuse(dir, data, "empty file");
    cr_assert_eq(file_size(data), 0, "the empty file was taken for a new store");
    free(data);
    gdml_test_rmtree(dir);
}

/* A store of five versions, closed; returns data.mdb's size. */
static off_t make_closed_store(const char *dir, const char *data)
{
    gdml_store *s = open_rw(dir);
    for (uint64_t v = 1; v <= 5; v++)
        commit_ok(s, v, 50000, 100);
    gdml_store_close(&s);
    return file_size(data);
}

Test(store, truncated_data_file_is_a_format_error_not_a_sigbus)
{
    char *dir = gdml_test_tmpdir();
    char *data = path_in(dir, "data.mdb");
    off_t size = make_closed_store(dir, data);
    cr_assert_gt(size, 64 * 1024);
    /* Half, one page short, and just the two meta pages plus one. */
    const off_t cuts[] = {size / 2, size - 4096, 3 * 4096};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        cr_assert_eq(truncate(data, cuts[i]), 0);
        char what[64];
        snprintf(what, sizeof what, "truncated to %lld bytes", (long long)cuts[i]);
        assert_both_opens_refuse(dir, data, what);
        gdml_errmsg e = {{0}};
        gdml_store *s = NULL;
        gdml_store_options ro = {.read_only = true};
        gdml_store_open(dir, &ro, &s, &e);
        cr_assert(strstr(e.text, "truncated"), "message: %s", e.text);
    }
    free(data);
    gdml_test_rmtree(dir);
}

Test(store, zeroed_data_file_is_a_format_error)
{
    char *dir = gdml_test_tmpdir();
    char *data = path_in(dir, "data.mdb");
    off_t size = make_closed_store(dir, data);
    void *zeros = calloc(1, (size_t)size);
    cr_assert_not_null(zeros);
    int fd = open(data, O_WRONLY);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pwrite(fd, zeros, (size_t)size, 0), (ssize_t)size);
    close(fd);
    free(zeros);
    assert_both_opens_refuse(dir, data, "zeroed file");
    cr_assert_eq(file_size(data), size);
    free(data);
    gdml_test_rmtree(dir);
}

Test(store, data_file_that_is_not_lmdb_is_a_format_error)
{
    char *dir = gdml_test_tmpdir();
    char *data = path_in(dir, "data.mdb");
    char *text = malloc(64 * 1024 + 1);
    cr_assert_not_null(text);
    for (size_t i = 0; i < 64 * 1024; i++)
        text[i] = (char)('a' + i % 26);
    text[64 * 1024] = '\0';
    gdml_test_write_file(data, text);
    free(text);
    assert_both_opens_refuse(dir, data, "a text file");
    free(data);
    gdml_test_rmtree(dir);
}

/* A distinctive float pattern nothing else in the file holds. */
static float marked_value(uint64_t v, size_t i)
{
    (void)v;
    uint32_t bits = 0x4b000000u + (uint32_t)i * 2654435761u % 0x007fffffu;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

#define MARKED_N 4096

Test(store, flipped_bit_in_params_is_caught)
{
    char *dir = gdml_test_tmpdir();
    char *data = path_in(dir, "data.mdb");
    gdml_store *s = open_rw(dir);
    commit_ok(s, 1, MARKED_N, 10);
    /* Version 2: params of the marked pattern, and a second tensor. */
    float *p = malloc(MARKED_N * sizeof *p), x[10];
    cr_assert_not_null(p);
    for (size_t i = 0; i < MARKED_N; i++)
        p[i] = marked_value(2, i);
    for (size_t i = 0; i < 10; i++)
        x[i] = extra_value(2, i);
    gdml_version_meta m;
    make_meta(&m, 2, 2);
    gdml_store_tensor t[2] = {{"params", p, MARKED_N}, {"momentum", x, 10}};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_commit(s, &m, "marked", t, 2, &e), GDML_OK, "%s", e.text);
    commit_ok(s, 3, MARKED_N, 10);
    gdml_store_close(&s);

    /* Flip bit 3 of float 100's second byte, inside the stored parameters. */
    size_t flipped = flip_everywhere(data, p, 64, 100 * sizeof(float) + 1, 3);
    cr_assert_eq(flipped, 1, "the parameter pattern occurs %zu times in data.mdb", flipped);

    s = open_rw(dir);
    float *got = (float *)dir;
    size_t n = 77;
    cr_assert_eq(gdml_store_tensor_read(s, 2, "params", &got, &n, &e), GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, "version 2") && strstr(e.text, "'params'") &&
                  strstr(e.text, "chunk 0"),
              "message: %s", e.text);
    cr_assert_eq(got, (float *)dir, "out-params set on failure");
    cr_assert_eq(n, 77);
    /* The rest of version 2 and the other versions are whole. */
    cr_assert_eq(gdml_store_tensor_read(s, 2, "momentum", &got, &n, &e), GDML_OK, "%s", e.text);
    cr_assert_arr_eq(got, x, sizeof x);
    free(got);
    cr_assert(version_whole(s, 1, MARKED_N, 10));
    cr_assert(version_whole(s, 3, MARKED_N, 10));
    gdml_version_meta meta2;
    cr_assert_eq(gdml_store_meta(s, 2, &meta2, &e), GDML_OK, "meta is not damaged: %s", e.text);

    uint64_t checked = 0, bad = 0;
    e.text[0] = '\0';
    cr_assert_eq(gdml_store_verify(s, &checked, &bad, &e), GDML_ERR_FORMAT);
    cr_assert_eq(checked, 3);
    cr_assert_eq(bad, 1);
    cr_assert(strstr(e.text, "version 2") && strstr(e.text, "params"), "message: %s", e.text);

    uint64_t head = 0;
    cr_assert_eq(gdml_store_rollback(s, 2, &e), GDML_ERR_FORMAT, "rolled back onto damage");
    cr_assert(strstr(e.text, "version 2"), "message: %s", e.text);
    cr_assert_eq(gdml_store_head(s, &head, &e), GDML_OK);
    cr_assert_eq(head, 3, "a refused rollback moved the head");
    cr_assert_eq(gdml_store_rollback(s, 1, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_store_head(s, &head, &e), GDML_OK);
    cr_assert_eq(head, 1);
    gdml_store_close(&s);

    /* A read-only open sees the same damage. */
    s = open_ro(dir);
    cr_assert_eq(gdml_store_tensor_read(s, 2, "params", &got, &n, &e), GDML_ERR_FORMAT);
    cr_assert_eq(gdml_store_verify(s, &checked, &bad, &e), GDML_ERR_FORMAT);
    cr_assert_eq(bad, 1);
    gdml_store_close(&s);
    free(p);
    free(data);
    gdml_test_rmtree(dir);
}

Test(store, flipped_bit_in_a_meta_record_is_caught)
{
    char *dir = gdml_test_tmpdir();
    char *data = path_in(dir, "data.mdb");
    gdml_store *s = open_rw(dir);
    gdml_version_meta m;
    make_meta(&m, 1, 3);
    const double accuracy = 0.8765432101234567;
    m.accuracy = accuracy;
    float p[16];
    for (size_t i = 0; i < 16; i++)
        p[i] = param_value(1, i);
    gdml_store_tensor t[1] = {{"params", p, 16}};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_commit(s, &m, "meta-flip", t, 1, &e), GDML_OK, "%s", e.text);
    commit_ok(s, 2, 16, 0);
    gdml_store_close(&s);

    /* The double is stored little-endian; flip a low mantissa bit. */
    unsigned char bytes[8];
    memcpy(bytes, &accuracy, sizeof bytes);
    size_t flipped = flip_everywhere(data, bytes, sizeof bytes, 0, 0);
    cr_assert_geq(flipped, 1, "the accuracy's bytes are not in data.mdb");

    s = open_rw(dir);
    gdml_version_meta got;
    memset(&got, 0xab, sizeof got);
    cr_assert_eq(gdml_store_meta(s, 1, &got, &e), GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, "version 1") && strstr(e.text, "checksum"), "message: %s", e.text);
    cr_assert_eq(got.version, 0xabababababababab, "out-param set on failure");
    cr_assert(version_whole(s, 2, 16, 0));
    float *r = NULL;
    size_t n = 0;
    cr_assert_eq(gdml_store_tensor_read(s, 1, "params", &r, &n, &e), GDML_ERR_FORMAT);
    seen c = {.fields_ok = true};
    cr_assert_eq(gdml_store_each(s, collect, &c, &e), GDML_ERR_FORMAT);
    cr_assert_eq(c.n, 0, "each visited the damaged version");
    uint64_t checked = 0, bad = 0;
    cr_assert_eq(gdml_store_verify(s, &checked, &bad, &e), GDML_ERR_FORMAT);
    cr_assert_eq(checked, 2);
    cr_assert_eq(bad, 1);
    cr_assert(strstr(e.text, "version 1"), "message: %s", e.text);
    cr_assert_eq(gdml_store_rollback(s, 1, &e), GDML_ERR_FORMAT);
    gdml_store_close(&s);
    free(data);
    gdml_test_rmtree(dir);
}

/* ---- map growth, map limit, full disk ---- */

#define BIG_N ((size_t)1 << 20) /* 1 Mi floats: 4 MiB, one chunk */

Test(store, map_grows_on_demand, .timeout = 30)
{
    char *dir = gdml_test_tmpdir();
    char *data = path_in(dir, "data.mdb");
    gdml_store_options o = {.map_bytes = MIB};
    gdml_store *s = open_with(dir, &o);
    cr_assert_eq(gdml_store_map_bytes(s), MIB);
    uint64_t prev = MIB;
    for (uint64_t v = 1; v <= 5; v++) {
        commit_ok(s, v, BIG_N, 0);
        uint64_t map = gdml_store_map_bytes(s);
        uint64_t need = v * BIG_N * sizeof(float);
        cr_assert_geq(map, prev, "the map shrank");
        cr_assert_geq(map, need, "version %" PRIu64 ": map %" PRIu64 " < data %" PRIu64, v, map,
                      need);
        cr_assert_geq(map, (uint64_t)file_size(data));
        cr_assert_leq(map, 4 * need, "the map grew by more than doubling");
        prev = map;
    }
    cr_assert_gt(prev, 16 * MIB);
    for (uint64_t v = 1; v <= 5; v++)
        cr_assert(version_whole(s, v, BIG_N, 0), "version %" PRIu64, v);
    gdml_store_close(&s);

    s = open_with(dir, &o); /* a smaller map than the file asks for is enough */
    cr_assert_geq(gdml_store_map_bytes(s), (uint64_t)file_size(data));
    commit_ok(s, 6, BIG_N, 0);
    cr_assert(version_whole(s, 6, BIG_N, 0));
    gdml_store_close(&s);
    free(data);
    gdml_test_rmtree(dir);
}

Test(store, map_limit_is_nospace, .timeout = 30)
{
    char *dir = gdml_test_tmpdir();
    gdml_store_options o = {.map_bytes = MIB, .max_map_bytes = 8 * MIB};
    gdml_store *s = open_with(dir, &o);
    commit_ok(s, 1, BIG_N, 0);
    gdml_errmsg e = {{0}};
    cr_assert_eq(commit_version(s, 2, BIG_N, 0, &e), GDML_ERR_NOSPACE);
    cr_assert(strstr(e.text, "store.max_map_gb"), "message: %s", e.text);
    cr_assert_eq(gdml_store_map_bytes(s), 8 * MIB, "the map grew past max_map_bytes");
    uint64_t count = 0;
    cr_assert_eq(gdml_store_count(s, &count, &e), GDML_OK);
    cr_assert_eq(count, 1);
    cr_assert(version_whole(s, 1, BIG_N, 0));
    commit_ok(s, 2, 1000, 0); /* what still fits goes in */
    cr_assert(version_whole(s, 2, 1000, 0));
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

/*
 * A version larger than one write transaction's worth (16 chunks) goes in
 * several: one that fills the map halfway leaves no trace, and the space its
 * committed chunks took is free again for the next commit.
 */
Test(store, a_version_cut_short_leaves_nothing_and_its_space_is_reused, .timeout = 60)
{
    char *dir = gdml_test_tmpdir();
    gdml_store_options o = {.map_bytes = MIB, .max_map_bytes = 72 * MIB};
    gdml_store *s = open_with(dir, &o);
    commit_ok(s, 1, 1000, 0);
    gdml_errmsg e = {{0}};
    cr_assert_eq(commit_version(s, 2, 20 * BIG_N, 0, &e), GDML_ERR_NOSPACE, "%s", e.text);
    uint64_t count = 0, newest = 0;
    cr_assert_eq(gdml_store_count(s, &count, NULL), GDML_OK);
    cr_assert_eq(count, 1);
    cr_assert_eq(gdml_store_newest(s, &newest, NULL), GDML_OK);
    cr_assert_eq(newest, 1);
    /* LMDB reuses what a transaction freed two transactions later; then 16
     * chunks fit only if the 16 the failed commit wrote were freed. */
    commit_ok(s, 2, 1000, 0);
    commit_ok(s, 3, 16 * BIG_N, 0);
    cr_assert(version_whole(s, 3, 16 * BIG_N, 0));
    cr_assert(version_whole(s, 2, 1000, 0));
    cr_assert(version_whole(s, 1, 1000, 0));
    uint64_t bad = 1;
    cr_assert_eq(gdml_store_verify(s, NULL, &bad, NULL), GDML_OK);
    cr_assert_eq(bad, 0);
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

/* Exit codes: 77 cannot set up the tmpfs; others name the step that failed. */
static int full_disk_child(const char *dir, int msg_fd)
{
    if (unshare(CLONE_NEWNS) != 0)
        return 77;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return 77;
    if (mount("gdml-test", dir, "tmpfs", 0, "size=3m") != 0)
        return 77;
    gdml_store *s = NULL;
    gdml_errmsg e = {{0}};
    if (gdml_store_open(dir, NULL, &s, &e) != GDML_OK) {
        dprintf(msg_fd, "open: %s", e.text);
        return 10;
    }
    gdml_err err = GDML_OK;
    uint64_t committed = 0;
    for (uint64_t v = 1; v <= 100; v++) {
        if ((err = commit_version(s, v, 64 * 1024, 1000, &e)))
            break;
        committed = v;
    }
    dprintf(msg_fd, "after %" PRIu64 " versions: %s", committed, e.text);
    if (err == GDML_OK)
        return 11;
    if (err != GDML_ERR_NOSPACE)
        return 12;
    if (!strstr(e.text, "full") || strstr(e.text, "Input/output"))
        return 13;
    if (committed < 2)
        return 14;
    for (uint64_t v = 1; v <= committed; v++)
        if (!version_whole(s, v, 64 * 1024, 1000))
            return 15;
    gdml_store_close(&s);
    gdml_store_options ro = {.read_only = true};
    if (gdml_store_open(dir, &ro, &s, &e) != GDML_OK)
        return 16;
    uint64_t count = 0, head = 0;
    if (gdml_store_count(s, &count, NULL) != GDML_OK || count != committed ||
        gdml_store_head(s, &head, NULL) != GDML_OK || head != committed)
        return 17;
    for (uint64_t v = 1; v <= committed; v++)
        if (!version_whole(s, v, 64 * 1024, 1000))
            return 18;
    uint64_t bad = 1;
    if (gdml_store_verify(s, NULL, &bad, NULL) != GDML_OK || bad != 0)
        return 19;
    gdml_store_close(&s);
    return 0;
}

Test(store, full_disk_is_nospace, .timeout = 30)
{
    if (geteuid() != 0)
        cr_skip_test("needs root to mount a small tmpfs");
    char *dir = gdml_test_tmpdir();
    int msg[2];
    cr_assert_eq(pipe(msg), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(msg[0]);
        _exit(full_disk_child(dir, msg[1]));
    }
    close(msg[1]);
    char text[1024] = "";
    size_t len = 0;
    ssize_t r;
    while (len < sizeof text - 1 && (r = read(msg[0], text + len, sizeof text - 1 - len)) > 0)
        len += (size_t)r;
    text[len] = '\0';
    close(msg[0]);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "the child died of signal %d",
              WIFSIGNALED(status) ? WTERMSIG(status) : -1);
    int rc = WEXITSTATUS(status);
    if (rc == 77) {
        gdml_test_rmtree(dir);
        cr_skip_test("cannot unshare a mount namespace or mount a tmpfs here");
    }
    cr_assert_eq(rc, 0, "full disk: step %d failed; %s", rc, text);
    gdml_test_rmtree(dir);
}

/* ---- retention ---- */

Test(store, retention_keeps_last_and_every)
{
    char *dir = gdml_test_tmpdir();
    gdml_store_options o = {.keep_last = 3, .keep_every = 5};
    gdml_store *s = open_with(dir, &o);
    for (uint64_t v = 1; v <= 12; v++)
        commit_ok(s, v, 1000, 200);
    seen c = list_versions(s);
    const uint64_t kept[] = {5, 10, 11, 12};
    cr_assert_eq(c.n, 4, "%zu versions remain", c.n);
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(c.v[i], kept[i], "remaining %zu is %" PRIu64, i, c.v[i]);
    uint64_t count = 0, head = 0;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_store_count(s, &count, &e), GDML_OK);
    cr_assert_eq(count, 4);
    cr_assert_eq(gdml_store_head(s, &head, &e), GDML_OK);
    cr_assert_eq(head, 12);
    for (uint64_t v = 1; v <= 12; v++) {
        bool keep = v == 5 || v >= 10;
        if (keep) {
            cr_assert(version_whole(s, v, 1000, 200), "kept version %" PRIu64, v);
            continue;
        }
        gdml_version_meta m;
        char layout[GDML_LAYOUT_MAX];
        float *p = NULL;
        size_t n = 0;
        cr_assert_eq(gdml_store_meta(s, v, &m, &e), GDML_ERR_NOTFOUND, "version %" PRIu64, v);
        cr_assert_eq(gdml_store_layout(s, v, layout, &e), GDML_ERR_NOTFOUND);
        cr_assert_eq(gdml_store_tensor_read(s, v, "params", &p, &n, &e), GDML_ERR_NOTFOUND);
        cr_assert_eq(gdml_store_rollback(s, v, &e), GDML_ERR_NOTFOUND);
    }
    uint64_t checked = 0, bad = 9;
    cr_assert_eq(gdml_store_verify(s, &checked, &bad, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(checked, 4);
    cr_assert_eq(bad, 0);
    gdml_store_close(&s);

    /* The deleted versions' tensor chunks are gone from the file's database. */
    size_t per[64];
    size_t total = raw_tensor_chunks(dir, per);
    for (uint64_t v = 1; v <= 12; v++)
        cr_assert_eq(per[v], (v == 5 || v >= 10) ? 2u : 0u, "version %" PRIu64 " has %zu chunks", v,
                     per[v]);
    cr_assert_eq(total, 8);
    gdml_test_rmtree(dir);
}

Test(store, retention_reuses_space, .timeout = 60)
{
    char *dir = gdml_test_tmpdir();
    char *data = path_in(dir, "data.mdb");
    gdml_store_options o = {.keep_last = 3};
    gdml_store *s = open_with(dir, &o);
    const size_t n = 16 * 1024; /* 64 KiB a version */
    for (uint64_t v = 1; v <= 200; v++)
        commit_ok(s, v, n, 0);
    uint64_t count = 0;
    cr_assert_eq(gdml_store_count(s, &count, NULL), GDML_OK);
    cr_assert_eq(count, 3);
    for (uint64_t v = 198; v <= 200; v++)
        cr_assert(version_whole(s, v, n, 0));
    gdml_store_close(&s);
    off_t size = file_size(data);
    off_t version_bytes = (off_t)(n * sizeof(float));
    cr_assert_lt(size, 20 * version_bytes,
                 "data.mdb is %lld bytes after 200 versions of %lld with keep_last 3",
                 (long long)size, (long long)version_bytes);
    free(data);
    gdml_test_rmtree(dir);
}

/* ---- rollback ---- */

Test(store, rollback_moves_the_head_until_the_next_commit)
{
    char *dir = gdml_test_tmpdir();
    gdml_store *s = open_rw(dir);
    for (uint64_t v = 1; v <= 5; v++)
        commit_ok(s, v, 32, 0);
    gdml_errmsg e = {{0}};
    uint64_t head = 0, newest = 0, count = 0;
    cr_assert_eq(gdml_store_rollback(s, 3, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_store_head(s, &head, &e), GDML_OK);
    cr_assert_eq(head, 3);
    cr_assert_eq(gdml_store_newest(s, &newest, &e), GDML_OK);
    cr_assert_eq(newest, 5);
    cr_assert_eq(gdml_store_count(s, &count, &e), GDML_OK);
    cr_assert_eq(count, 5, "a rollback deleted versions");
    gdml_store_close(&s);

    s = open_ro(dir); /* the rollback is durable and seen by readers */
    cr_assert_eq(gdml_store_head(s, &head, &e), GDML_OK);
    cr_assert_eq(head, 3);
    gdml_store_close(&s);

    s = open_rw(dir);
    cr_assert_eq(gdml_store_rollback(s, 9, &e), GDML_ERR_NOTFOUND);
    cr_assert(strstr(e.text, "version 9"), "message: %s", e.text);
    cr_assert_eq(gdml_store_rollback(s, 0, &e), GDML_ERR_NOTFOUND);
    cr_assert_eq(gdml_store_head(s, &head, &e), GDML_OK);
    cr_assert_eq(head, 3, "a refused rollback moved the head");

    /* Versions still grow from the newest; the next one names 3 as its parent. */
    gdml_version_meta m;
    make_meta(&m, 3, 0);
    float p[4] = {0};
    gdml_store_tensor t[1] = {{"params", p, 4}};
    cr_assert_eq(gdml_store_commit(s, &m, "x", t, 1, &e), GDML_ERR_EXISTS);
    make_meta(&m, 6, 1);
    m.parent = 3;
    cr_assert_eq(gdml_store_commit(s, &m, "x", t, 1, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_store_head(s, &head, &e), GDML_OK);
    cr_assert_eq(head, 6, "the commit did not clear the rollback");
    cr_assert_eq(gdml_store_newest(s, &newest, &e), GDML_OK);
    cr_assert_eq(newest, 6);
    gdml_version_meta got;
    cr_assert_eq(gdml_store_meta(s, 6, &got, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(got.parent, 3);

    /* Rolling back to the newest, and again to another, works as often as asked. */
    cr_assert_eq(gdml_store_rollback(s, 1, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_store_rollback(s, 6, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_store_head(s, &head, &e), GDML_OK);
    cr_assert_eq(head, 6);
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

/* ---- kill -9 ---- */

/*
 * A writer killed with SIGKILL at an arbitrary point loses nothing it
 * committed and leaves nothing half-written: the child commits 1 MB versions
 * back to back and reports each number after its commit returns; the parent
 * kills it at a varying moment inside a later commit.
 */
#define KILL_PARAMS (256 * 1024)

static int committing_child(const char *dir, int report_fd)
{
    gdml_store *s = NULL;
    if (gdml_store_open(dir, NULL, &s, NULL) != GDML_OK)
        return 10;
    for (uint64_t v = 1; v <= 100000; v++) {
        if (commit_version(s, v, KILL_PARAMS, 100, NULL) != GDML_OK)
            return 11;
        if (write(report_fd, &v, sizeof v) != (ssize_t)sizeof v)
            return 12;
    }
    return 13; /* never killed */
}

/* One kill: the child is killed delay_us after it reports its fourth version. */
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
    while (n < 4 && read(fds[0], &v, sizeof v) == (ssize_t)sizeof v)
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
    cr_assert_geq(n, 4);

    gdml_store *s = open_rw(dir);
    uint64_t head = 0, count = 0;
    cr_assert_eq(gdml_store_head(s, &head, NULL), GDML_OK);
    cr_assert_geq(head, reported[n - 1]);
    cr_assert_leq(head, reported[n - 1] + 1, "at most the commit in flight may also have landed");
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(reported[i], i + 1);
        cr_assert(version_whole(s, reported[i], KILL_PARAMS, 100), "version %" PRIu64 " is damaged",
                  reported[i]);
    }
    if (head > reported[n - 1])
        cr_assert(version_whole(s, head, KILL_PARAMS, 100), "the in-flight version is partial");
    cr_assert_eq(gdml_store_count(s, &count, NULL), GDML_OK);
    cr_assert_eq(count, head);
    uint64_t bad = 1;
    cr_assert_eq(gdml_store_verify(s, NULL, &bad, NULL), GDML_OK);
    cr_assert_eq(bad, 0);
    commit_ok(s, head + 1, 4, 0); /* and the store takes new versions */
    gdml_store_close(&s);
    gdml_test_rmtree(dir);
}

Test(store, kill_9_loses_no_committed_version, .timeout = 60)
{
    /* A commit takes a few milliseconds here; the delays walk across one. */
    for (unsigned delay_us = 0; delay_us < 4000; delay_us += 500)
        kill_during_commits(delay_us);
}
