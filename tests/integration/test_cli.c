/*
 * test_cli.c - the real programs' command lines: --help and --version, bad
 * configuration refused with file, line and key, flags overriding files,
 * and the split and models tools on real data.
 */
#include "../support.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const programs[] = {"gdml-coordinator", "gdml-server", "gdml-worker",
                                       "gdml-split",       "gdml-models", "gdml-launch"};

Test(cli, help_and_version_for_every_program)
{
    for (size_t i = 0; i < sizeof programs / sizeof *programs; i++) {
        char *path = gdml_test_program(programs[i]);
        char *out = NULL;
        int rc = gdml_test_run((char *[]){path, "--help", NULL}, 10, &out);
        cr_assert_eq(rc, 0, "%s --help exited %d:\n%s", programs[i], rc, out);
        cr_assert(strstr(out, "Usage:"), "%s --help has no usage line:\n%s", programs[i], out);
        cr_assert(strstr(out, "--config"), "%s --help does not mention --config", programs[i]);
        free(out);
        rc = gdml_test_run((char *[]){path, "--version", NULL}, 10, &out);
        cr_assert_eq(rc, 0);
        cr_assert(strstr(out, programs[i]) && strstr(out, "0."), "%s --version printed: %s",
                  programs[i], out);
        free(out);
        free(path);
    }
}

Test(cli, bad_value_in_file_names_file_line_key_and_range)
{
    char *dir = gdml_test_tmpdir();
    char ini[4096];
    snprintf(ini, sizeof ini, "%s/bad.ini", dir);
    gdml_test_write_file(ini, "; a region\n[server]\nname = us-east\nsync_every = ten\n");
    char *path = gdml_test_program("gdml-server");
    char *out = NULL;
    int rc = gdml_test_run((char *[]){path, "--config", ini, NULL}, 10, &out);
    cr_assert_eq(rc, 2, "exit %d:\n%s", rc, out);
    cr_assert(strstr(out, "bad.ini:4"), "no file:line in: %s", out);
    cr_assert(strstr(out, "sync_every"), "no key in: %s", out);
    cr_assert(strstr(out, "1..1000000"), "no allowed range in: %s", out);
    free(out);
    free(path);
    gdml_test_rmtree(dir);
}

Test(cli, a_model_or_optimizer_that_cannot_work_is_refused_with_the_remedy)
{
    struct {
        const char *program;
        const char *args[8];
        const char *says;
    } cases[] = {
        {"gdml-coordinator", {"--set", "model.kind=mlp", NULL}, "hidden = 256,128"},
        {"gdml-coordinator",
         {"--set", "model.kind=softmax", "--set", "model.hidden=64", NULL},
         "no hidden layers"},
        {"gdml-server",
         {"--name", "us-east", "--set", "model.kind=mlp", "--set", "model.hidden=0", NULL},
         "each hidden width must be a whole number from 1 to 65536, got '0'"},
        {"gdml-server",
         {"--name", "us-east", "--drift-correction", "scaffold", "--optimizer", "adam", NULL},
         "with optimizer = adam set drift_correction = none, or optimizer = sgd"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *path = gdml_test_program(cases[i].program);
        char *argv[10] = {path};
        for (size_t k = 0; cases[i].args[k]; k++)
            argv[k + 1] = (char *)cases[i].args[k];
        char *out = NULL;
        int rc = gdml_test_run(argv, 10, &out);
        cr_assert_eq(rc, 2, "case %zu exited %d:\n%s", i, rc, out);
        cr_assert(strstr(out, cases[i].says), "case %zu: no '%s' in:\n%s", i, cases[i].says, out);
        free(out);
        free(path);
    }
}

Test(cli, unknown_key_is_refused_not_ignored)
{
    char *dir = gdml_test_tmpdir();
    char ini[4096];
    snprintf(ini, sizeof ini, "%s/typo.ini", dir);
    gdml_test_write_file(ini, "[coordinator]\nrounds = 3\nregoins = 2\n");
    char *path = gdml_test_program("gdml-coordinator");
    char *out = NULL;
    int rc = gdml_test_run((char *[]){path, "--config", ini, NULL}, 10, &out);
    cr_assert_eq(rc, 2, "exit %d:\n%s", rc, out);
    cr_assert(strstr(out, "typo.ini:3") && strstr(out, "regoins"), "got: %s", out);
    free(out);
    free(path);
    gdml_test_rmtree(dir);
}

Test(cli, bad_flag_value_and_unknown_flag)
{
    char *path = gdml_test_program("gdml-coordinator");
    char *out = NULL;
    int rc = gdml_test_run((char *[]){path, "--rounds", "0", NULL}, 10, &out);
    cr_assert_eq(rc, 2);
    cr_assert(strstr(out, "--rounds") && strstr(out, "rounds"), "got: %s", out);
    free(out);
    rc = gdml_test_run((char *[]){path, "--no-such-flag", "1", NULL}, 10, &out);
    cr_assert_eq(rc, 2);
    cr_assert(strstr(out, "--no-such-flag") && strstr(out, "--help"), "got: %s", out);
    free(out);
    free(path);
}

Test(cli, worker_requires_its_data_and_says_so)
{
    char *path = gdml_test_program("gdml-worker");
    char *out = NULL;
    int rc = gdml_test_run((char *[]){path, "--name", "w0", NULL}, 10, &out);
    cr_assert_eq(rc, 2, "exit %d:\n%s", rc, out);
    cr_assert(strstr(out, "images"), "got: %s", out);
    free(out);
    free(path);
}

Test(cli, worker_reports_missing_data_file)
{
    char *path = gdml_test_program("gdml-worker");
    char *out = NULL;
    int rc = gdml_test_run((char *[]){path, "--name", "w0", "--images", "/nonexistent/images",
                                      "--labels", "/nonexistent/labels", NULL},
                           10, &out);
    cr_assert_eq(rc, 1, "exit %d:\n%s", rc, out);
    cr_assert(strstr(out, "/nonexistent/images"), "got: %s", out);
    free(out);
    free(path);
}

Test(cli, flag_overrides_file_value)
{
    /* The file sets an endpoint that cannot be bound; the flag replaces it, so the
     * coordinator starts, writes its endpoint file, and then times out quickly. */
    char *dir = gdml_test_tmpdir();
    char ini[4096], store[4096], ep[4096];
    snprintf(ini, sizeof ini, "%s/c.ini", dir);
    snprintf(store, sizeof store, "%s/store", dir);
    snprintf(ep, sizeof ep, "%s/ep", dir);
    gdml_test_write_file(ini, "[coordinator]\nlisten = tcp://192.0.2.1:1\ntimeout_ms = 300\n");
    char *path = gdml_test_program("gdml-coordinator");
    char *out = NULL;
    int rc = gdml_test_run((char *[]){path, "--listen", "tcp://127.0.0.1:*", "--config", ini,
                                      "--store", store, "--endpoint-file", ep, "--curve", "off",
                                      NULL},
                           20, &out);
    cr_assert_eq(rc, 3, "expected the timeout status 3, got %d:\n%s", rc, out);
    cr_assert(strstr(out, "only 0 of 3 regions joined"), "got: %s", out);
    char *endpoint = gdml_test_read_file(ep);
    cr_assert(endpoint && strncmp(endpoint, "tcp://127.0.0.1:", 16) == 0, "endpoint: %s", endpoint);
    free(endpoint);
    free(out);
    free(path);
    gdml_test_rmtree(dir);
}

Test(cli, models_tool_on_missing_store)
{
    char *dir = gdml_test_tmpdir();
    char store[4096];
    snprintf(store, sizeof store, "%s/none", dir);
    char *path = gdml_test_program("gdml-models");
    char *out = NULL;
    int rc = gdml_test_run((char *[]){path, "list", "--store", store, NULL}, 10, &out);
    cr_assert_eq(rc, 1, "exit %d:\n%s", rc, out);
    cr_assert(strstr(out, store), "error does not name the store: %s", out);
    free(out);
    free(path);
    gdml_test_rmtree(dir);
}

Test(cli, split_tool_writes_each_region)
{
    if (!gdml_test_have_fashion_mnist())
        cr_skip_test("dataset-fashion-mnist is not installed");
    char *dir = gdml_test_tmpdir();
    char *path = gdml_test_program("gdml-split");
    char *out = NULL;
    char images[512], labels[512];
    snprintf(images, sizeof images, "%s", gdml_test_fashion("t10k-images-idx3-ubyte.gz"));
    snprintf(labels, sizeof labels, "%s", gdml_test_fashion("t10k-labels-idx1-ubyte.gz"));
    int rc = gdml_test_run((char *[]){path, dir, "--regions", "a,b", "--alpha", "0.3",
                                      "--train-images", images, "--train-labels", labels, NULL},
                           60, &out);
    cr_assert_eq(rc, 0, "exit %d:\n%s", rc, out);
    unsigned long long total = 0, samples;
    for (const char *line = out; (line = strchr(line, '\n')); line++) {
        char name[64];
        if (sscanf(line + 1, "%63s %llu", name, &samples) == 2 &&
            (strcmp(name, "a") == 0 || strcmp(name, "b") == 0))
            total += samples;
    }
    cr_assert_eq(total, 10000, "regions hold %llu samples, not 10000:\n%s", total, out);
    char file[4200];
    snprintf(file, sizeof file, "%s/a/train-labels-idx1-ubyte", dir);
    char *content = gdml_test_read_file(file);
    cr_assert_not_null(content, "%s was not written", file);
    free(content);
    free(out);
    free(path);
    gdml_test_rmtree(dir);
}

Test(cli, gdml_synth_writes_what_it_says_and_refuses_bad_flags)
{
    char *dir = gdml_test_tmpdir();
    char data[4200];
    snprintf(data, sizeof data, "%s/s.svm.gz", dir);
    char *path = gdml_test_program("gdml-synth");
    char *out = NULL;
    int rc = gdml_test_run((char *[]){path, "--help", NULL}, 10, &out);
    cr_assert(rc == 0 && strstr(out, "usage: gdml-synth"), "%s", out);
    free(out);
    rc = gdml_test_run((char *[]){path, "--version", NULL}, 10, &out);
    cr_assert(rc == 0 && strstr(out, "gdml-synth 0."), "%s", out);
    free(out);
    rc = gdml_test_run((char *[]){path, data, "--samples", "500", "--features", "1000", "--nnz",
                                  "4", NULL},
                       30, &out);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, "wrote 500 rows of 4 of 1000 features") &&
                  strstr(out, "true model accuracy 0."),
              "%s", out);
    free(out);
    struct stat st;
    cr_assert(stat(data, &st) == 0 && st.st_size > 100);
    const char *bad[][3] = {{"--nnz", "abc", "is not a whole number"},
                            {"--nnz", "2000", "nnz 1..features"},
                            {"--colour", "red", "unknown option '--colour'"}};
    for (size_t i = 0; i < 3; i++) {
        rc = gdml_test_run((char *[]){path, data, (char *)bad[i][0], (char *)bad[i][1], NULL}, 10,
                           &out);
        cr_assert_eq(rc, 2, "%s %s exited %d: %s", bad[i][0], bad[i][1], rc, out);
        cr_assert(strstr(out, bad[i][2]), "%s", out);
        free(out);
    }
    free(path);
    gdml_test_rmtree(dir);
}

Test(cli, a_worker_on_a_malformed_csv_file_exits_naming_file_and_line)
{
    char *dir = gdml_test_tmpdir();
    char csv[4200];
    snprintf(csv, sizeof csv, "%s/train.csv", dir);
    gdml_test_write_file(csv, "label,a,b\n1,0.5,0.25\n0,0.5\n");
    char *path = gdml_test_program("gdml-worker");
    char *out = NULL;
    int rc = gdml_test_run(
        (char *[]){path, "--name", "w0", "--data", csv, "--set", "security.curve=off", NULL}, 10,
        &out);
    cr_assert_eq(rc, 4, "exit %d:\n%s", rc, out);
    cr_assert(strstr(out, "train.csv:3: 2 fields, but the header has 3"), "%s", out);
    free(out);
    /* Both a CSV file and an IDX pair: refused before anything is read. */
    rc = gdml_test_run((char *[]){path, "--name", "w0", "--data", csv, "--images", "i.gz",
                                  "--labels", "l.gz", NULL},
                       10, &out);
    cr_assert_eq(rc, 2, "exit %d:\n%s", rc, out);
    cr_assert(strstr(out, "[worker] data and images are both set"), "%s", out);
    free(out);
    free(path);
    gdml_test_rmtree(dir);
}
