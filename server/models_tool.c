/*
 * models_tool.c - gdml-models: the operator's view of the model store.
 *
 *   gdml-models list   --store DIR            one line per stored version, with the
 *                                             regions' held-out accuracy
 *   gdml-models show   --store DIR VERSION    one version's metadata as JSON
 *   gdml-models export --store DIR VERSION FILE.npy (a sparse model: or FILE as text)
 *   gdml-models eval   --store DIR VERSION [--eval-images F --eval-labels F | --eval-data F]
 *   gdml-models verify --store DIR            checks every checksum of every version, and
 *                                             the history: no version missing, no delta
 *                                             merged twice
 *   gdml-models rollback --store DIR VERSION  the next resume starts from VERSION
 *
 * VERSION is a number or "latest" (the version the next resume starts
 * from). Exit statuses are the programs' (program.h): 4 means the store is
 * damaged. export writes a NumPy .npy file of
 * float32: for softmax, shape (inputs + 1, classes), the last row being the
 * bias, so that `x @ W[:-1] + W[-1]` gives the logits; for an mlp, one flat
 * vector, layer after layer: W (fan_in x fan_out, row-major), then its bias.
 * A sparse model (sparselr) goes to a FILE not named .npy as text, its
 * non-zero weights alone (write_sparse); to FILE.npy as the dense vector of
 * its weights, then the bias.
 */
#include "config.h"
#include "dataset.h"
#include "log.h"
#include "model.h"
#include "store.h"
#include "program.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const sections[] = {"coordinator", "data", "store", "log", NULL};

static const gdml_program program = {
    .name = "gdml-models",
    .summary = "Lists, shows, exports (.npy), evaluates, verifies and rolls back the model "
               "versions in a store.",
    .usage = "list | show VERSION | export VERSION FILE[.npy] | eval VERSION | verify | "
             "rollback VERSION  --store DIR",
    .sections = sections,
};

static void format_time(int64_t ms, char *buf, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int print_row(const gdml_version_meta *m, void *user)
{
    (void)user;
    char when[32];
    format_time(m->time_ms, when, sizeof when);
    gdml_score val;
    gdml_store_meta_score(m, &val);
    printf("%7llu  %7llu  %5llu  %s  %8.4f  %8.4f  %12llu  %12llu  %8.4f ",
           (unsigned long long)m->version, (unsigned long long)m->parent,
           (unsigned long long)m->round, when, m->accuracy, m->loss,
           (unsigned long long)m->bytes_received, (unsigned long long)m->bytes_sent,
           gdml_score_accuracy(&val));
    if (m->dp_delta > 0)
        printf("%8.4f ", m->epsilon);
    else
        printf("%8s ", "-");
    for (uint32_t i = 0; i < m->n_regions; i++) {
        const gdml_region_part *p = &m->regions[i];
        printf(" %s#%llu", p->name, (unsigned long long)p->seq);
        if (p->val.rows)
            printf(":%.4f", gdml_score_accuracy(&p->val));
    }
    printf("\n");
    return 0;
}

/* The history audit's findings; GDML_ERR_STORE if a delta was merged twice. */
static gdml_err print_history(gdml_store *s, gdml_errmsg *e)
{
    gdml_store_audit a;
    gdml_err err = gdml_store_audit_history(s, &a, e);
    if (err || a.versions == 0)
        return err;
    printf("history: versions %llu..%llu, %llu missing%s; %llu contributions, %llu merged "
           "twice\n",
           (unsigned long long)a.first, (unsigned long long)a.last, (unsigned long long)a.missing,
           a.missing ? " (retention, or lost)" : "", (unsigned long long)a.contributions,
           (unsigned long long)a.double_merges);
    if (a.double_merges)
        return gdml_errmsg_set(e, GDML_ERR_STORE,
                               "version %llu merges a delta of region '%s' that an earlier "
                               "version merged already",
                               (unsigned long long)a.double_version, a.double_region);
    return GDML_OK;
}

static gdml_err parse_version(gdml_store *s, const char *text, uint64_t *v, gdml_errmsg *e)
{
    if (strcmp(text, "latest") == 0) {
        return gdml_store_head(s, v, e);
    }
    if (!gdml_parse_u64(text, v))
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "'%s' is not a version; give a number or "
                               "'latest'",
                               text);
    return GDML_OK;
}

static void print_json_meta(const gdml_version_meta *m, const char *layout)
{
    char when[32];
    format_time(m->time_ms, when, sizeof when);
    printf("{\n  \"version\": %llu,\n  \"parent\": %llu,\n  \"round\": %llu,\n  \"time\": "
           "\"%s\",\n",
           (unsigned long long)m->version, (unsigned long long)m->parent,
           (unsigned long long)m->round, when);
    printf("  \"rule\": \"%s\",\n  \"seq\": %llu,\n  \"lr_steps\": %.17g,\n", m->rule,
           (unsigned long long)m->seq, m->lr_steps);
    printf("  \"layout\": \"%s\",\n", layout);
    if (isfinite(m->accuracy))
        printf("  \"accuracy\": %.6f,\n  \"loss\": %.6f,\n", m->accuracy, m->loss);
    gdml_score val;
    uint32_t scored = gdml_store_meta_score(m, &val);
    if (scored)
        printf("  \"validation\": {\"accuracy\": %.6f, \"loss\": %.6f, \"rows\": %llu, "
               "\"regions\": %u},\n",
               gdml_score_accuracy(&val), val.loss, (unsigned long long)val.rows, scored);
    if (m->dp_delta > 0)
        printf("  \"privacy\": {\"epsilon\": %.6f, \"delta\": %g},\n", m->epsilon, m->dp_delta);
    printf("  \"bytes_received\": %llu,\n  \"bytes_sent\": %llu,\n  \"regions\": [",
           (unsigned long long)m->bytes_received, (unsigned long long)m->bytes_sent);
    for (uint32_t i = 0; i < m->n_regions; i++) {
        const gdml_region_part *p = &m->regions[i];
        printf("%s\n    {\"name\": \"%s\", \"seq\": %llu, \"samples\": %llu", i ? "," : "", p->name,
               (unsigned long long)p->seq, (unsigned long long)p->samples);
        if (p->val.rows)
            printf(", \"val_version\": %llu, \"val_rows\": %llu, \"val_correct\": %llu, "
                   "\"val_accuracy\": %.6f, \"val_loss\": %.6f",
                   (unsigned long long)p->val_version, (unsigned long long)p->val.rows,
                   (unsigned long long)p->val.correct, gdml_score_accuracy(&p->val), p->val.loss);
        printf("}");
    }
    printf("\n  ],\n  \"tensors\": [");
    for (uint32_t i = 0; i < m->n_tensors; i++)
        printf("%s\n    {\"name\": \"%s\", \"n\": %llu, \"crc32\": \"%08x\"}", i ? "," : "",
               m->tensors[i].name, (unsigned long long)m->tensors[i].n, m->tensors[i].crc32);
    printf("\n  ]\n}\n");
}

/* NumPy .npy, format 1.0: magic, header length, a dict padded to 64 bytes, data. */
static gdml_err write_npy(const char *path, const float *data, size_t rows, size_t cols,
                          gdml_errmsg *e)
{
    char dict[128];
    int n = cols ? snprintf(dict, sizeof dict,
                            "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %zu), }", rows,
                            cols)
                 : snprintf(dict, sizeof dict,
                            "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu,), }", rows);
    size_t header = 10 + (size_t)n + 1;
    size_t pad = (64 - header % 64) % 64;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
    size_t hlen = (size_t)n + pad + 1;
    pre[8] = (unsigned char)(hlen & 0xff);
    pre[9] = (unsigned char)(hlen >> 8);
    FILE *f = fopen(path, "wb");
    if (!f)
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    size_t count = rows * (cols ? cols : 1);
    bool ok = fwrite(pre, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)n, f) == (size_t)n;
    for (size_t i = 0; ok && i < pad; i++)
        ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF && fwrite(data, sizeof(float), count, f) == count;
    ok = (fclose(f) == 0) && ok;
    return ok ? GDML_OK
              : gdml_errmsg_set(e, GDML_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
}

/*
 * A sparse model as text: "# gdml sparselr INPUTS 2", "bias B", then one
 * "INDEX WEIGHT" line per non-zero weight, indices from 1 as in LIBSVM, so
 * that P(y = 1 | x) = sigmoid(B + sum of WEIGHT x[INDEX]).
 */
static gdml_err write_sparse(const char *path, const gdml_layout *l, const float *params,
                             size_t *written, gdml_errmsg *e)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    bool ok = fprintf(f, "# gdml %s %u %u\nbias %.9g\n", l->kind, l->inputs, l->classes,
                      (double)params[l->inputs]) > 0;
    *written = 0;
    for (uint32_t j = 0; ok && j < l->inputs; j++)
        if (params[j] != 0.0f) {
            ok = fprintf(f, "%u %.9g\n", j + 1, (double)params[j]) > 0;
            ++*written;
        }
    ok = (fclose(f) == 0) && ok;
    return ok ? GDML_OK
              : gdml_errmsg_set(e, GDML_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
}

static bool ends_with_npy(const char *path)
{
    size_t n = strlen(path);
    return n >= 4 && strcmp(path + n - 4, ".npy") == 0;
}

static gdml_err run(const gdml_config *cfg, int argc, char **argv, const int *pos, int n_pos,
                    gdml_errmsg *e)
{
    const char *cmd = argv[pos[0]];
    gdml_store *s = NULL;
    float *params = NULL;
    gdml_dataset test = {0};
    bool writes = strcmp(cmd, "rollback") == 0;
    gdml_store_options so = {.read_only = !writes,
                             .map_bytes = (uint64_t)cfg->store.map_mb << 20,
                             .max_map_bytes = (uint64_t)cfg->store.max_map_gb << 30};
    gdml_err err = gdml_store_open(cfg->coordinator.store, &so, &s, e);
    if (err)
        return err;
    uint64_t v = 0;
    char layout_text[GDML_LAYOUT_MAX];
    size_t n = 0;
    gdml_layout layout;
    gdml_version_meta meta;
    bool needs_version = strcmp(cmd, "list") != 0 && strcmp(cmd, "verify") != 0;
    int want = strcmp(cmd, "export") == 0 ? 3 : needs_version ? 2 : 1;
    if (n_pos != want) {
        err = gdml_errmsg_set(e, GDML_ERR_CONFIG,
                              "'%s' takes %d argument%s; run 'gdml-models "
                              "--help'",
                              cmd, want - 1, want == 2 ? "" : "s");
        goto out;
    }
    if (needs_version && (err = parse_version(s, argv[pos[1]], &v, e)))
        goto out;
    if (strcmp(cmd, "list") == 0) {
        uint64_t head = 0;
        gdml_errmsg none;
        bool have = gdml_store_head(s, &head, &none) == GDML_OK;
        printf("%7s  %7s  %5s  %-20s  %8s  %8s  %12s  %12s  %8s  %8s  %s\n", "version",
               "parent", "round", "time", "accuracy", "loss", "bytes_in", "bytes_out", "val_acc",
               "eps", "regions#seq[:val_acc]");
        if (!(err = gdml_store_each(s, print_row, NULL, e)) && have)
            printf("head (the next resume starts here): version %llu\n", (unsigned long long)head);
    } else if (strcmp(cmd, "show") == 0) {
        if (!(err = gdml_store_meta(s, v, &meta, e)) &&
            !(err = gdml_store_layout(s, v, layout_text, e)) &&
            !(err = gdml_store_tensor_read(s, v, "params", &params, &n, e)))
            print_json_meta(&meta, layout_text);
    } else if (strcmp(cmd, "verify") == 0) {
        uint64_t checked = 0, bad = 0;
        err = gdml_store_verify(s, &checked, &bad, e);
        if (!err)
            printf("%llu versions checked: every checksum holds\n", (unsigned long long)checked);
        else if (bad)
            printf("%llu versions checked, %llu damaged\n", (unsigned long long)checked,
                   (unsigned long long)bad);
        if (!err)
            err = print_history(s, e);
    } else if (strcmp(cmd, "rollback") == 0) {
        if (!(err = gdml_store_rollback(s, v, e)))
            printf("version %llu is the head: the next resume of the coordinator starts from it "
                   "(no version was deleted)\n",
                   (unsigned long long)v);
    } else if (strcmp(cmd, "export") == 0 || strcmp(cmd, "eval") == 0) {
        if ((err = gdml_store_layout(s, v, layout_text, e)) ||
            (err = gdml_store_tensor_read(s, v, "params", &params, &n, e)) ||
            (err = gdml_layout_parse(layout_text, &layout, e)))
            goto out;
        if (strcmp(cmd, "export") == 0 && gdml_model_find(layout.kind)->sparse &&
            !ends_with_npy(argv[pos[2]])) {
            size_t nonzero = 0;
            if (!(err = write_sparse(argv[pos[2]], &layout, params, &nonzero, e)))
                printf("version %llu (%s) written to %s: the bias and %zu non-zero weights\n",
                       (unsigned long long)v, layout_text, argv[pos[2]], nonzero);
            goto out;
        }
        if (strcmp(cmd, "export") == 0) {
            bool matrix = strcmp(layout.kind, "softmax") == 0;
            err = write_npy(argv[pos[2]], params, matrix ? layout.inputs + 1u : n,
                            matrix ? layout.classes : 0, e);
            if (!err)
                printf("version %llu (%s) written to %s\n", (unsigned long long)v, layout_text,
                       argv[pos[2]]);
            goto out;
        }
        /* The test set as the coordinator's flags name it, else as the launcher's. */
        const char *data = cfg->coordinator.eval_data;
        const char *images = cfg->coordinator.eval_images, *labels = cfg->coordinator.eval_labels;
        if (!*data && !*images) {
            data = cfg->launch.test_data;
            images = cfg->launch.test_images;
            labels = cfg->launch.test_labels;
        }
        const char *name = gdml_config_data_name(data, images);
        const gdml_model_ops *ops = gdml_model_find(layout.kind);
        double acc, loss;
        gdml_config as_stored = *cfg; /* LIBSVM rows are as wide as the stored model */
        as_stored.model.inputs = layout.inputs;
        if ((err = gdml_config_load_data(&as_stored, data, images, labels, 0, 1,
                                         ops && ops->sparse, &test, e)))
            goto out;
        if ((err = gdml_layout_check_data(&layout, test.dim, test.classes, name, e)))
            goto out;
        if (!(err = gdml_model_evaluate_set(&layout, params, &test, &acc, &loss)))
            printf("version %llu: accuracy %.4f, loss %.4f on %zu samples of %s\n",
                   (unsigned long long)v, acc, loss, test.n, name);
        else
            gdml_errmsg_set(e, err, "cannot evaluate version %llu: %s", (unsigned long long)v,
                            gdml_strerror(err));
    } else {
        err = gdml_errmsg_set(e, GDML_ERR_CONFIG,
                              "unknown command '%s'; use list, show, export, eval, verify or "
                              "rollback",
                              cmd);
    }
out:
    (void)argc;
    gdml_dataset_fini(&test);
    free(params);
    gdml_store_close(&s);
    return err;
}

int main(int argc, char **argv)
{
    gdml_config cfg;
    gdml_config_defaults(&cfg);
    gdml_errmsg e = {{0}};
    int pos[4], n_pos = 0;
    bool exit_now = false;
    if (gdml_cli_parse(&program, argc, argv, &cfg, pos, 4, &n_pos, &exit_now, &e)) {
        fprintf(stderr, "gdml-models: %s\n", e.text);
        return 2;
    }
    if (exit_now)
        return 0;
    if (n_pos == 0) {
        fprintf(stderr, "gdml-models: give a command: list, show, export, eval, verify or "
                        "rollback; run "
                        "'gdml-models --help'\n");
        return 2;
    }
    gdml_log_init("models", NULL, (gdml_log_level)gdml_config_log_level(&cfg),
                  (gdml_log_format)gdml_config_log_format(&cfg));
    gdml_err err = run(&cfg, argc, argv, pos, n_pos, &e);
    if (err) {
        fprintf(stderr, "gdml-models: %s\n", e.text);
        return err == GDML_ERR_INVALID ? 2 : gdml_exit_status(err);
    }
    return 0;
}
