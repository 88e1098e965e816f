/*
 * test_config.c - the key table, INI loading and its error messages, the
 * cross-key checks, and the command line (flags, --set, --config, --help).
 * Every test gets its own temporary directory (Criterion runs them in parallel).
 */
#include "config.h"
#include "log.h"
#include "support.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *tmp;

static void setup(void)
{
    tmp = gdml_test_tmpdir();
}

static void teardown(void)
{
    gdml_test_rmtree(tmp);
    tmp = NULL;
}

TestSuite(config, .init = setup, .fini = teardown);

/* Writes text to <tmp>/name and returns the path (static storage, one per name). */
static const char *ini_named(const char *name, const char *text)
{
    static char paths[4][1024];
    static int next;
    char *path = paths[next++ % 4];
    snprintf(path, sizeof paths[0], "%s/%s", tmp, name);
    gdml_test_write_file(path, text);
    return path;
}

static const char *ini(const char *text)
{
    return ini_named("test.ini", text);
}

/* Asserts that loading text fails with GDML_ERR_CONFIG, cfg untouched, and
 * the message holding every one of the NULL-terminated needles. */
__attribute__((sentinel)) static void expect_refused(const char *text, ...)
{
    gdml_config cfg, before;
    gdml_config_defaults(&cfg);
    before = cfg;
    gdml_errmsg e = {{0}};
    gdml_err err = gdml_config_load(&cfg, ini(text), &e);
    cr_assert_eq(err, GDML_ERR_CONFIG, "expected a refusal of:\n%s", text);
    cr_assert(memcmp(&cfg, &before, sizeof cfg) == 0, "a refused file changed the config");
    va_list ap;
    va_start(ap, text);
    for (const char *s; (s = va_arg(ap, const char *));)
        cr_expect(strstr(e.text, s), "message lacks '%s': %s", s, e.text);
    va_end(ap);
}

/* ---- defaults and good files ----------------------------------------- */

Test(config, defaults_are_the_documented_ones)
{
    gdml_config c;
    memset(&c, 0xab, sizeof c);
    gdml_config_defaults(&c);
    cr_assert_str_eq(c.log.level, "info");
    cr_assert_str_eq(c.model.kind, "softmax");
    cr_assert_eq(c.model.inputs, 784);
    cr_assert_eq(c.model.classes, 10);
    cr_assert_str_eq(c.coordinator.listen, "tcp://0.0.0.0:7070");
    cr_assert_str_eq(c.coordinator.store, "gdml-store");
    cr_assert_eq(c.coordinator.rounds, 30);
    cr_assert_str_eq(c.coordinator.eval_images, "");
    cr_assert_str_eq(c.server.name, "");
    cr_assert_str_eq(c.server.coordinator, "tcp://127.0.0.1:7070");
    cr_assert_eq(c.server.sync_every, 50);
    cr_assert_float_eq(c.server.learning_rate, 0.1, 1e-12);
    cr_assert_str_eq(c.worker.server, "tcp://127.0.0.1:7071");
    cr_assert_eq(c.worker.batch_size, 64);
    cr_assert_eq(c.worker.shard_count, 1);
    cr_assert_float_eq(c.worker.holdout, 0.1, 1e-12);
    cr_assert_eq(c.worker.holdout_rows, 256);
    cr_assert_str_eq(c.launch.regions, "us-east,eu-west,ap-south");
    cr_assert_str_eq(c.launch.split, "dirichlet");
    cr_assert_float_eq(c.launch.alpha, 0.5, 1e-12);
    cr_assert_eq(c.launch.seed, 42);
    cr_assert_str_eq(c.launch.test_labels,
                     "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz");
    cr_assert_eq(gdml_config_log_level(&c), GDML_LOG_INFO);
}

Test(config, good_file_sets_every_type)
{
    gdml_config c;
    gdml_config_defaults(&c);
    gdml_errmsg e = {{0}};
    const char *path = ini("# a comment\r\n"
                           "; another\n"
                           "[log]\n"
                           "level = debug\n"
                           "\n"
                           "[server]\n"
                           "    name = us-east          ; indented, with a comment\n"
                           "    sync_every=10\n"
                           "learning_rate = 2.5e-2\r\n"
                           "listen = tcp://*:9000\n"
                           "sync_every = 20\n"
                           "[model]\n"
                           "seed = 9223372036854775807\n"
                           "[server]\n"
                           "workers = 4");
    cr_assert_eq(gdml_config_load(&c, path, &e), GDML_OK, "%s", e.text);
    cr_assert_str_eq(c.log.level, "debug");
    cr_assert_eq(gdml_config_log_level(&c), GDML_LOG_DEBUG);
    cr_assert_str_eq(c.server.name, "us-east");
    cr_assert_eq(c.server.sync_every, 20, "a later value of a key wins");
    cr_assert_float_eq(c.server.learning_rate, 0.025, 1e-12);
    cr_assert_str_eq(c.server.listen, "tcp://*:9000");
    cr_assert_eq(c.model.seed, INT64_MAX);
    cr_assert_eq(c.server.workers, 4, "a section may appear twice");
    cr_assert_eq(c.server.timeout_ms, 60000, "keys not in the file keep their value");
}

Test(config, set_takes_values_from_code_with_origin)
{
    gdml_config c;
    gdml_config_defaults(&c);
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_config_set(&c, "launch", "split", "iid", "test", &e), GDML_OK);
    cr_assert_str_eq(c.launch.split, "iid");
    cr_assert_eq(gdml_config_set(&c, "launch", "alpha", "1000000", "test", &e), GDML_OK);
    cr_assert_float_eq(c.launch.alpha, 1e6, 1e-6);
    cr_assert_eq(gdml_config_set(&c, "worker", "shard_index", "-1", "here", &e), GDML_ERR_CONFIG);
    cr_assert_str_eq(e.text, "here: [worker] shard_index = \"-1\": out of range; allowed: "
                             "integer 0..1023");
}

/* ---- refused values --------------------------------------------------- */

Test(config, refuses_int_that_is_not_a_number)
{
    expect_refused("[server]\nname = a\nsync_every = ten\n", "test.ini:3:", "[server] sync_every",
                   "\"ten\"", "not an integer", "allowed: integer 1..1000000", NULL);
}

Test(config, refuses_int_with_trailing_junk)
{
    expect_refused("[worker]\nbatch_size = 10x\n", "test.ini:2:", "batch_size", "not an integer",
                   "1..65536", NULL);
    expect_refused("[worker]\nbatch_size = 1 0\n", "test.ini:2:", "not an integer", NULL);
}

Test(config, refuses_int_overflow_and_out_of_bounds)
{
    expect_refused("[model]\nseed = 99999999999999999999\n", "test.ini:2:", "[model] seed",
                   "out of range", "0..9223372036854775807", NULL);
    expect_refused("[model]\nseed = -1\n", "test.ini:2:", "out of range", NULL);
    expect_refused("\n\n[coordinator]\nrounds = 1000001\n", "test.ini:4:", "rounds", "out of range",
                   "1..1000000", NULL);
    expect_refused("[model]\nclasses = 257\n", "test.ini:2:", "out of range", "2..256", NULL);
    expect_refused("[worker]\nbatch_size =\n", "test.ini:2:", "\"\"", "not an integer", NULL);
}

Test(config, refuses_reals_nan_inf_junk_and_out_of_bounds)
{
    expect_refused("[server]\nlearning_rate = nan\n", "test.ini:2:", "learning_rate",
                   "not a finite number", "> 0 and <= 100", NULL);
    expect_refused("[launch]\nalpha = inf\n", "test.ini:2:", "[launch] alpha", "not a finite",
                   NULL);
    expect_refused("[launch]\nalpha = 1e999\n", "test.ini:2:", "out of range", NULL);
    expect_refused("[server]\nlearning_rate = 0\n", "test.ini:2:", "out of range",
                   "number > 0 and <= 100", NULL);
    expect_refused("[server]\nlearning_rate = 0.1.2\n", "test.ini:2:", "not a number", NULL);
}

Test(config, a_holdout_of_0_turns_it_off_and_above_half_is_refused)
{
    gdml_config cfg;
    gdml_config_defaults(&cfg);
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_config_load(&cfg, ini("[worker]\nholdout = 0\n"), &e), GDML_OK, "%s", e.text);
    cr_assert_eq(cfg.worker.holdout, 0.0);
    cr_assert_eq(gdml_config_load(&cfg, ini("[worker]\nholdout = 0.5\n"), &e), GDML_OK, "%s",
                 e.text);
    cr_assert_eq(cfg.worker.holdout, 0.5);
    expect_refused("[worker]\nholdout = 0.6\n", "test.ini:2:", "[worker] holdout", "out of range",
                   "number >= 0 and <= 0.5", NULL);
    expect_refused("[worker]\nholdout = -0.1\n", "test.ini:2:", "out of range", NULL);
    expect_refused("[worker]\nholdout_rows = 0\n", "test.ini:2:", "holdout_rows", NULL);
}

Test(config, refuses_enum_value_not_listed)
{
    expect_refused("[log]\nlevel = verbose\n", "test.ini:2:", "[log] level = \"verbose\"",
                   "allowed: one of error, warn, info, debug", NULL);
    expect_refused("[launch]\nsplit = IID\n", "test.ini:2:", "one of iid, dirichlet", NULL);
}

Test(config, refuses_strings_too_long_or_with_control_characters)
{
    char text[256];
    snprintf(text, sizeof text, "[worker]\nname = %s\n",
             "a123456789012345678901234567890123456789012345678901234567890123");
    expect_refused(text, "test.ini:2:", "[worker] name", "too long (64 bytes)", NULL);
    expect_refused("[coordinator]\nstore = a\tb\n", "test.ini:2:", "store = \"a\\x09b\"",
                   "control character 0x09", "at most 1023 bytes", NULL);

    gdml_config c;
    gdml_config_defaults(&c);
    gdml_errmsg e;
    char path[1100];
    memset(path, 'p', sizeof path - 1);
    path[sizeof path - 1] = '\0';
    cr_assert_eq(gdml_config_set(&c, "worker", "images", path, "--images", &e), GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "too long (1099 bytes)"), "%s", e.text);
    cr_assert(strstr(e.text, "..."), "a long value is cut in the message: %s", e.text);
}

Test(config, refuses_bad_endpoints_names_and_region_lists)
{
    expect_refused("[server]\nlisten = localhost:7071\n", "test.ini:2:", "[server] listen",
                   "not a ZeroMQ endpoint", "tcp://HOST:PORT", NULL);
    expect_refused("[server]\nname = us east\n", "test.ini:2:", "not a valid name",
                   "A-Z a-z 0-9 . _ -", NULL);
    expect_refused("[launch]\nregions = a,b,a\n", "test.ini:2:", "'a' is repeated",
                   "1..64 distinct names", NULL);
    expect_refused("[launch]\nregions = a,,b\n", "test.ini:2:", "name 2 of the list is empty",
                   NULL);
}

Test(config, refuses_unknown_keys_and_sections)
{
    expect_refused("[server]\nname = a\nsync_evry = 10\n",
                   "test.ini:3:", "[server] unknown key 'sync_evry'",
                   "keys in [server]: name, listen, coordinator, workers, sync_every", NULL);
    expect_refused(
        "[log]\nlevel = info\n[serve]\nname = a\n", "test.ini:4:", "unknown section [serve]",
        "sections: log, data, model, coordinator, merge, server, security, net, store, metrics, budget, privacy, worker, launch", NULL);
    expect_refused("rounds = 3\n", "test.ini:1:", "'rounds' comes before any [section]", NULL);
}

Test(config, refuses_lines_inih_cannot_parse)
{
    expect_refused("[server]\nname = a\n[worker\n", "test.ini:3:", "cannot parse this line", NULL);
    expect_refused("[server]\nname\n", "test.ini:2:", "expected [section], key = value", NULL);
}

Test(config, refuses_overlong_line_without_losing_count)
{
    char text[600];
    snprintf(text, sizeof text, "[coordinator]\nstore = /%0400d\nrounds = zero\n", 0);
    expect_refused(text, "test.ini:2:", "line is 409 characters long", "--set", NULL);
}

Test(config, reports_the_first_of_several_errors)
{
    expect_refused("[server]\nworkers = 0\n[nope\nsync_every = x\n", "test.ini:2:", "workers",
                   NULL);
    expect_refused("[server]\n[nope\nworkers = 0\n", "test.ini:2:", "cannot parse", NULL);
}

Test(config, missing_file_is_an_io_error)
{
    gdml_config c;
    gdml_config_defaults(&c);
    gdml_errmsg e = {{0}};
    char path[1024];
    snprintf(path, sizeof path, "%s/absent.ini", tmp);
    cr_assert_eq(gdml_config_load(&c, path, &e), GDML_ERR_IO);
    cr_assert(strstr(e.text, "cannot read config file '"), "%s", e.text);
    cr_assert(strstr(e.text, "absent.ini': No such file or directory"), "%s", e.text);
    cr_assert(strstr(e.text, "--config"), "%s", e.text);
    /* A directory opens but cannot be read. */
    cr_assert_eq(gdml_config_load(&c, tmp, &e), GDML_ERR_IO);
    cr_assert(strstr(e.text, "cannot read config file"), "%s", e.text);
}

Test(config, an_empty_file_is_refused_not_taken_for_every_default)
{
    gdml_config c;
    gdml_config_defaults(&c);
    gdml_errmsg e = {{0}};
    char path[1024];
    snprintf(path, sizeof path, "%s/empty.ini", tmp);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fclose(f);
    cr_assert_eq(gdml_config_load(&c, path, &e), GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "empty.ini' is empty"), "%s", e.text);
}

Test(config, write_reads_back_the_same_values)
{
    gdml_config c, back;
    gdml_config_defaults(&c);
    gdml_errmsg e = {{0}};
    static const char *const changes[][3] = {
        {"log", "level", "warn"},          {"model", "seed", "9223372036854775807"},
        {"server", "name", "eu-west"},     {"server", "learning_rate", "0.30000000000000004"},
        {"worker", "images", "/d/a;b#c"},  {"launch", "alpha", "1e-300"},
        {"launch", "regions", "a, b,c"},   {"coordinator", "eval_images", "x"},
        {"coordinator", "eval_labels", ""}};
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++)
        cr_assert_eq(gdml_config_set(&c, changes[i][0], changes[i][1], changes[i][2], "t", &e),
                     GDML_OK, "%s", e.text);
    char path[1024];
    snprintf(path, sizeof path, "%s/job.ini", tmp);
    cr_assert_eq(gdml_config_write(&c, path, &e), GDML_OK, "%s", e.text);
    /* Zero is out of range for many keys: every key must come from the file. */
    memset(&back, 0, sizeof back);
    cr_assert_eq(gdml_config_load(&back, path, &e), GDML_OK, "%s", e.text);
    cr_assert_str_eq(back.log.level, "warn");
    cr_assert_eq(back.model.seed, INT64_MAX);
    cr_assert_str_eq(back.server.name, "eu-west");
    cr_assert(back.server.learning_rate == c.server.learning_rate, "reals are written exactly");
    cr_assert(back.launch.alpha == 1e-300);
    cr_assert_str_eq(back.worker.images, "/d/a;b#c");
    cr_assert_str_eq(back.launch.regions, "a, b,c");
    cr_assert_str_eq(back.coordinator.eval_labels, "");
    cr_assert_eq(back.worker.batch_size, 64, "unchanged keys are written too");
    cr_assert_str_eq(back.launch.train_images, c.launch.train_images);
    /* Written again, the values give the same file: nothing was lost on the way. */
    char again[1024];
    snprintf(again, sizeof again, "%s/again.ini", tmp);
    cr_assert_eq(gdml_config_write(&back, again, &e), GDML_OK, "%s", e.text);
    char *first = gdml_test_read_file(path), *second = gdml_test_read_file(again);
    cr_assert_str_eq(first, second);
    cr_assert(strstr(first, "[server]\nname = eu-west\n"), "%s", first);
    free(first);
    free(second);
}

Test(config, write_refuses_what_would_not_read_back)
{
    gdml_config c;
    gdml_config_defaults(&c);
    gdml_errmsg e = {{0}};
    char path[1024];
    snprintf(path, sizeof path, "%s/job.ini", tmp);
    strcpy(c.launch.run_dir, "/runs/a ;b");
    cr_assert_eq(gdml_config_write(&c, path, &e), GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "[launch] run_dir"), "%s", e.text);
    cr_assert(strstr(e.text, "comment"), "%s", e.text);
    memset(c.launch.run_dir, 'r', 300);
    c.launch.run_dir[300] = '\0';
    cr_assert_eq(gdml_config_write(&c, path, &e), GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "too long for a config file line"), "%s", e.text);
    gdml_config_defaults(&c);
    c.server.workers = 0;
    cr_assert_eq(gdml_config_write(&c, path, &e), GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "[server] workers = \"0\": out of range"), "%s", e.text);
    cr_assert_null(gdml_test_read_file(path), "nothing is written on error");
}

/* ---- cross-key checks ------------------------------------------------- */

static const char *const all_sections[] = {"log",    "model",  "coordinator", "server",
                                           "worker", "launch", NULL};

static gdml_config good_config(void)
{
    gdml_config c;
    gdml_config_defaults(&c);
    strcpy(c.server.name, "us-east");
    strcpy(c.worker.name, "w0");
    strcpy(c.worker.images, "img.gz");
    strcpy(c.worker.labels, "lbl.gz");
    return c;
}

Test(config, check_accepts_a_complete_config)
{
    gdml_config c = good_config();
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_config_check(&c, all_sections, &e), GDML_OK, "%s", e.text);
    gdml_config_defaults(&c);
    const char *const coordinator_only[] = {"log", "model", "coordinator", NULL};
    cr_assert_eq(gdml_config_check(&c, coordinator_only, &e), GDML_OK,
                 "sections not named are not checked: %s", e.text);
}

Test(config, check_refuses_missing_required_keys)
{
    gdml_config c = good_config();
    gdml_errmsg e = {{0}};
    c.worker.labels[0] = '\0';
    cr_assert_eq(gdml_config_check(&c, all_sections, &e), GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "[worker] has no training data"), "%s", e.text);
    cr_assert(strstr(e.text, "--images FILE --labels FILE"), "says how to set it: %s", e.text);
    cr_assert(strstr(e.text, "--data FILE"), "names the CSV/LIBSVM way too: %s", e.text);
    /* One CSV or LIBSVM file in place of the pair; both at once are refused. */
    c.worker.images[0] = '\0';
    strcpy(c.worker.data, "train.csv.gz");
    cr_assert_eq(gdml_config_check(&c, all_sections, &e), GDML_OK, "%s", e.text);
    strcpy(c.worker.images, "i.gz");
    cr_assert_eq(gdml_config_check(&c, all_sections, &e), GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "[worker] data and images are both set"), "%s", e.text);
    c = good_config();
    strcpy(c.coordinator.eval_data, "test.svm");
    strcpy(c.coordinator.eval_images, "t.gz");
    strcpy(c.coordinator.eval_labels, "l.gz");
    cr_assert_eq(gdml_config_check(&c, all_sections, &e), GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "eval_data and eval_images are both set"), "%s", e.text);
    c = good_config();
    c.server.name[0] = '\0';
    cr_assert_eq(gdml_config_check(&c, all_sections, &e), GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "[server] name is required"), "%s", e.text);
}

Test(config, check_refuses_shard_index_not_below_count)
{
    gdml_config c = good_config();
    gdml_errmsg e = {{0}};
    c.worker.shard_index = 2;
    c.worker.shard_count = 2;
    cr_assert_eq(gdml_config_check(&c, all_sections, &e), GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "shard_index = 2 is not below shard_count = 2"), "%s", e.text);
    c.worker.shard_index = 1;
    cr_assert_eq(gdml_config_check(&c, all_sections, &e), GDML_OK, "%s", e.text);
}

Test(config, check_wants_both_eval_files_or_neither)
{
    gdml_config c = good_config();
    gdml_errmsg e = {{0}};
    strcpy(c.coordinator.eval_labels, "t10k-labels.gz");
    cr_assert_eq(gdml_config_check(&c, all_sections, &e), GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "eval_labels is set but eval_images is empty"), "%s", e.text);
    strcpy(c.coordinator.eval_images, "t10k-images.gz");
    cr_assert_eq(gdml_config_check(&c, all_sections, &e), GDML_OK, "%s", e.text);
}

Test(config, check_refuses_repeated_regions_bad_names_and_endpoints)
{
    gdml_config c = good_config();
    gdml_errmsg e = {{0}};
    strcpy(c.launch.regions, "us-east,eu-west,us-east");
    cr_assert_eq(gdml_config_check(&c, all_sections, &e), GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "[launch] regions"), "%s", e.text);
    cr_assert(strstr(e.text, "'us-east' is repeated"), "%s", e.text);

    c = good_config();
    strcpy(c.worker.name, "w/0");
    cr_assert_eq(gdml_config_check(&c, all_sections, &e), GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "[worker] name = \"w/0\": not a valid name"), "%s", e.text);

    c = good_config();
    strcpy(c.worker.server, "udp://x");
    cr_assert_eq(gdml_config_check(&c, all_sections, &e), GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "[worker] server"), "%s", e.text);
    cr_assert(strstr(e.text, "--server ENDPOINT"), "%s", e.text);
}

Test(config, names_follow_the_rule)
{
    cr_assert(gdml_name_ok("us-east"));
    cr_assert(gdml_name_ok("A.b_c-9"));
    cr_assert(
        gdml_name_ok("x23456789012345678901234567890123456789012345678901234567890123"));
    cr_assert_not(gdml_name_ok(""));
    cr_assert_not(gdml_name_ok("a b"));
    cr_assert_not(gdml_name_ok("a/b"));
    cr_assert_not(gdml_name_ok("caf\xc3\xa9"));
    cr_assert_not(
        gdml_name_ok("x234567890123456789012345678901234567890123456789012345678901234"));
}

Test(config, split_names_trims_and_refuses_without_writing)
{
    char names[3][GDML_NAME_MAX];
    int n = -1;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_config_split_names("us-east, eu-west ,ap", names, 3, &n, &e), GDML_OK);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(names[0], "us-east");
    cr_assert_str_eq(names[1], "eu-west");
    cr_assert_str_eq(names[2], "ap");
    n = -1;
    cr_assert_eq(gdml_config_split_names("a,b,c,d", names, 3, &n, &e), GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "more than 3 names"), "%s", e.text);
    cr_assert_eq(gdml_config_split_names("", names, 3, &n, &e), GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "empty"), "%s", e.text);
    cr_assert_eq(gdml_config_split_names("a,b,", names, 3, &n, &e), GDML_ERR_CONFIG);
    cr_assert_eq(n, -1, "n is set only on success");
}

/* ---- help and docs ---------------------------------------------------- */

static char *print_keys_text(const char *const *sections)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/keys.txt", tmp);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    if (sections)
        gdml_config_print_keys(sections, f);
    else
        gdml_config_print_markdown(f);
    fclose(f);
    return gdml_test_read_file(path);
}

Test(config, print_keys_lists_only_the_named_sections)
{
    const char *const sections[] = {"server", "launch", NULL};
    char *text = print_keys_text(sections);
    cr_assert(strstr(text, "  --sync-every N      server.sync_every (default 50; 1..1000000): "
                           "local steps between syncs\n"),
              "%s", text);
    cr_assert(strstr(text, "server.name (required;"), "%s", text);
    cr_assert(strstr(text, "launch.split (default dirichlet; iid/dirichlet)"), "%s", text);
    cr_assert_null(strstr(text, "coordinator.rounds"), "%s", text);
    /* --workers sets server.workers here; launch.workers is left to --set. */
    cr_assert(strstr(text, "  --workers N         server.workers"), "%s", text);
    cr_assert(strstr(text, "                      launch.workers"), "%s", text);
    free(text);
}

Test(config, docs_hold_the_generated_tables)
{
    char *md = print_keys_text(NULL);
    cr_assert(strstr(md, "## [server]\n\n| key | type | default | allowed | flag | meaning |\n"));
    cr_assert(strstr(md, "| `sync_every` | integer | `50` | 1..1000000 | `--sync-every` | "
                         "local steps between syncs |\n"),
              "%s", md);
    char *path = gdml_test_source_path("docs/config.md");
    char *doc = gdml_test_read_file(path);
    cr_assert_not_null(doc, "cannot read %s", path);
    cr_assert(strstr(doc, md), "docs/config.md is out of date: regenerate its tables with "
                               "'meson compile -C <build> config-doc'");
    free(doc);
    free(path);
    free(md);
}

/* ---- command line ----------------------------------------------------- */

static const char *const coordinator_sections[] = {"log", "model", "coordinator", NULL};
static const char *const server_sections[] = {"log", "model", "server", NULL};
static const char *const worker_sections[] = {"log", "model", "worker", NULL};
static const gdml_program coordinator = {"gdml-coordinator", "merges the regions' models",
                                         "[options]", coordinator_sections, 0};
static const gdml_program server = {"gdml-server", "runs one region", "[options]", server_sections, 0};
static const gdml_program worker = {"gdml-worker", "trains on one shard", "[options]",
                                    worker_sections, 0};

typedef struct cli_result {
    gdml_err err;
    gdml_config cfg;
    gdml_errmsg e;
    int positional[3];
    int n_positional;
    bool exit_now;
} cli_result;

/* Parses argv (NULL-terminated) for p over the defaults. */
static cli_result parse(const gdml_program *p, char **argv)
{
    cli_result r = {.n_positional = -1};
    gdml_config_defaults(&r.cfg);
    int argc = 0;
    while (argv[argc])
        argc++;
    r.err =
        gdml_cli_parse(p, argc, argv, &r.cfg, r.positional, 3, &r.n_positional, &r.exit_now, &r.e);
    return r;
}

#define ARGV(...) ((char *[]){__VA_ARGS__, NULL})

Test(config, flags_override_the_file_in_any_order)
{
    char *path = (char *)ini("[coordinator]\nrounds = 5\nregions = 2\n");
    cli_result r = parse(&coordinator, ARGV("gdml-coordinator", "--rounds", "7", "--config", path));
    cr_assert_eq(r.err, GDML_OK, "%s", r.e.text);
    cr_assert_eq(r.cfg.coordinator.rounds, 7);
    cr_assert_eq(r.cfg.coordinator.regions, 2, "the file still applies");
    r = parse(&coordinator, ARGV("gdml-coordinator", "--config", path, "--rounds=8"));
    cr_assert_eq(r.err, GDML_OK, "%s", r.e.text);
    cr_assert_eq(r.cfg.coordinator.rounds, 8);
    cr_assert_not(r.exit_now);
    cr_assert_eq(r.n_positional, 0);
}

Test(config, set_overrides_any_key_and_later_wins)
{
    cli_result r = parse(&coordinator, ARGV("gdml-coordinator", "--set", "model.inputs=100",
                                            "--rounds", "3", "--set=coordinator.rounds=9"));
    cr_assert_eq(r.err, GDML_OK, "%s", r.e.text);
    cr_assert_eq(r.cfg.model.inputs, 100);
    cr_assert_eq(r.cfg.coordinator.rounds, 9);

    r = parse(&coordinator, ARGV("gdml-coordinator", "--set", "model.inputs"));
    cr_assert_eq(r.err, GDML_ERR_CONFIG);
    cr_assert(strstr(r.e.text, "--set takes SECTION.KEY=VALUE"), "%s", r.e.text);
    r = parse(&coordinator, ARGV("gdml-coordinator", "--set", "server.workers=3"));
    cr_assert_eq(r.err, GDML_OK, "--set reaches sections the program does not read: %s", r.e.text);
    cr_assert_eq(r.cfg.server.workers, 3);
    r = parse(&coordinator, ARGV("gdml-coordinator", "--set", "serve.workers=3"));
    cr_assert_eq(r.err, GDML_ERR_CONFIG);
    cr_assert(strstr(r.e.text, "--set: unknown section [serve]"), "%s", r.e.text);
    r = parse(&coordinator, ARGV("gdml-coordinator", "--set", "model.input=3"));
    cr_assert_eq(r.err, GDML_ERR_CONFIG);
    cr_assert(strstr(r.e.text, "--set: [model] unknown key 'input'"), "%s", r.e.text);
}

Test(config, flag_errors_name_the_flag)
{
    cli_result r = parse(&coordinator, ARGV("gdml-coordinator", "--rounds", "0"));
    cr_assert_eq(r.err, GDML_ERR_CONFIG);
    cr_assert_str_eq(r.e.text, "--rounds: [coordinator] rounds = \"0\": out of range; allowed: "
                               "integer 1..1000000");
    char *path = (char *)ini("[coordinator]\nrounds = x\n");
    r = parse(&coordinator, ARGV("gdml-coordinator", "--config", path));
    cr_assert_eq(r.err, GDML_ERR_CONFIG);
    cr_assert(strstr(r.e.text, "test.ini:2: [coordinator] rounds"), "%s", r.e.text);
}

Test(config, unknown_and_foreign_flags_are_refused)
{
    cli_result r = parse(&coordinator, ARGV("gdml-coordinator", "--bogus", "1"));
    cr_assert_eq(r.err, GDML_ERR_CONFIG);
    cr_assert_str_eq(r.e.text,
                     "unknown option '--bogus'; run 'gdml-coordinator --help' for the options");
    r = parse(&server, ARGV("gdml-server", "--name", "a", "--rounds", "3"));
    cr_assert_eq(r.err, GDML_ERR_CONFIG);
    cr_assert(strstr(r.e.text, "unknown option '--rounds'"), "%s", r.e.text);
    cr_assert(strstr(r.e.text, "coordinator.rounds, which gdml-server does not read"), "%s",
              r.e.text);
}

Test(config, shared_flag_sets_the_programs_own_key)
{
    cli_result r = parse(&server, ARGV("gdml-server", "--name", "r1", "--listen", "tcp://*:9"));
    cr_assert_eq(r.err, GDML_OK, "%s", r.e.text);
    cr_assert_str_eq(r.cfg.server.listen, "tcp://*:9");
    cr_assert_str_eq(r.cfg.coordinator.listen, "tcp://0.0.0.0:7070");
    r = parse(&coordinator, ARGV("gdml-coordinator", "--listen=ipc:///tmp/x"));
    cr_assert_eq(r.err, GDML_OK, "%s", r.e.text);
    cr_assert_str_eq(r.cfg.coordinator.listen, "ipc:///tmp/x");
    cr_assert_str_eq(r.cfg.server.listen, "tcp://0.0.0.0:7071");
}

Test(config, flags_without_values_and_double_config_are_refused)
{
    cli_result r = parse(&coordinator, ARGV("gdml-coordinator", "--rounds"));
    cr_assert_eq(r.err, GDML_ERR_CONFIG);
    cr_assert_str_eq(r.e.text, "--rounds needs a value: --rounds N");
    r = parse(&coordinator, ARGV("gdml-coordinator", "--store", "--rounds", "3"));
    cr_assert_eq(r.err, GDML_ERR_CONFIG);
    cr_assert(strstr(r.e.text, "--store needs a value"), "%s", r.e.text);
    char *path = (char *)ini("[coordinator]\n");
    r = parse(&coordinator, ARGV("gdml-coordinator", "--config", path, "--config", path));
    cr_assert_eq(r.err, GDML_ERR_CONFIG);
    cr_assert(strstr(r.e.text, "--config given twice"), "%s", r.e.text);
    r = parse(&coordinator, ARGV("gdml-coordinator", "--config", "/nonexistent/gdml.ini"));
    cr_assert_eq(r.err, GDML_ERR_CONFIG);
    cr_assert(strstr(r.e.text, "cannot read config file '/nonexistent/gdml.ini'"), "%s", r.e.text);
}

Test(config, check_runs_on_the_programs_sections)
{
    cli_result r = parse(&worker, ARGV("gdml-worker", "--name", "w0", "--labels", "l.gz"));
    cr_assert_eq(r.err, GDML_ERR_CONFIG);
    cr_assert(strstr(r.e.text, "[worker] has no training data"), "%s", r.e.text);
    cr_assert(strstr(r.e.text, "--images FILE"), "%s", r.e.text);
    r = parse(&worker, ARGV("gdml-worker", "--name", "w0", "--labels", "l", "--images", "i",
                            "--shard-index", "3", "--shard-count", "3"));
    cr_assert_eq(r.err, GDML_ERR_CONFIG);
    cr_assert(strstr(r.e.text, "shard_index = 3 is not below shard_count = 3"), "%s", r.e.text);
}

Test(config, positional_arguments_are_collected)
{
    cli_result r = parse(&coordinator,
                         ARGV("gdml-models", "show", "--rounds", "4", "7", "--", "--not-a-flag"));
    cr_assert_eq(r.err, GDML_OK, "%s", r.e.text);
    cr_assert_eq(r.n_positional, 3);
    cr_assert_eq(r.positional[0], 1);
    cr_assert_eq(r.positional[1], 4);
    cr_assert_eq(r.positional[2], 6);
    cr_assert_eq(r.cfg.coordinator.rounds, 4);
    r = parse(&coordinator, ARGV("gdml-models", "a", "b", "c", "d"));
    cr_assert_eq(r.err, GDML_ERR_CONFIG);
    cr_assert(strstr(r.e.text, "unexpected argument 'd'"), "%s", r.e.text);
}

/* Runs parse with stdout sent to a file; returns what it printed (malloc'd). */
static char *parse_output(const gdml_program *p, char **argv, cli_result *r)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/stdout.txt", tmp);
    fflush(stdout);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert(fd >= 0);
    int saved = dup(STDOUT_FILENO);
    dup2(fd, STDOUT_FILENO);
    close(fd);
    *r = parse(p, argv);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    return gdml_test_read_file(path);
}

Test(config, help_prints_usage_and_keys_and_asks_to_exit)
{
    cli_result r;
    char *out = parse_output(&server, ARGV("gdml-server", "--bogus", "-h"), &r);
    cr_assert_eq(r.err, GDML_OK, "%s", r.e.text);
    cr_assert(r.exit_now);
    cr_assert(strstr(out, "Usage: gdml-server [options]\nruns one region\n"), "%s", out);
    cr_assert(strstr(out, "--config FILE"), "%s", out);
    cr_assert(strstr(out, "--set SECTION.KEY=VALUE"), "%s", out);
    cr_assert(strstr(out, "--version"), "%s", out);
    cr_assert(strstr(out, "  --sync-every N      server.sync_every (default 50; 1..1000000)"), "%s",
              out);
    cr_assert(strstr(out, "log.level"), "%s", out);
    cr_assert_null(strstr(out, "worker.batch_size"), "%s", out);
    free(out);
}

Test(config, version_prints_name_and_version)
{
    cli_result r;
    char *out = parse_output(&worker, ARGV("gdml-worker", "--version"), &r);
    cr_assert_eq(r.err, GDML_OK);
    cr_assert(r.exit_now);
    cr_assert_str_eq(out, "gdml-worker " GDML_VERSION "\n");
    free(out);
    out = parse_output(&worker, ARGV("gdml-worker", "--", "--version"), &r);
    cr_assert_not(r.exit_now, "after --, --version is an argument");
    free(out);
}
