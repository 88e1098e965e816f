/*
 * split_tool.c - gdml-split: assigns a training set to regions (IID, or
 * Dirichlet label skew) deterministically from a seed, and writes each
 * region's part to OUTDIR/<region>/ as IDX files for that region's workers.
 */
#include "config.h"
#include "idx.h"
#include "log.h"
#include "split.h"

#include <stdio.h>
#include <stdlib.h>

static const char *const sections[] = {"launch", "log", NULL};

static const gdml_program program = {
    .name = "gdml-split",
    .summary = "Splits a training set (IDX images + labels) across regions, IID or non-IID "
               "(Dirichlet alpha), deterministic from --seed, into OUTDIR/<region>/.",
    .usage = "OUTDIR [--regions a,b,c] [--split iid|dirichlet] [--alpha A] [--seed N] "
             "[--train-images F --train-labels F]",
    .sections = sections,
};

static int split(const gdml_config *cfg, const char *out_dir)
{
    char names[64][GDML_NAME_MAX];
    gdml_split_part parts[64];
    int n_regions = 0;
    gdml_idx images = {0}, labels = {0};
    uint32_t *region_of = NULL;
    gdml_errmsg e = {{0}};
    int status = 1;
    gdml_err err = gdml_config_split_names(cfg->launch.regions, names, 64, &n_regions, &e);
    if (!err)
        err = gdml_idx_read(cfg->launch.train_images, &images, &e);
    if (!err)
        err = gdml_idx_read(cfg->launch.train_labels, &labels, &e);
    if (err)
        goto out;
    if (images.ndim != 3 || labels.ndim != 1 || images.dims[0] != labels.dims[0]) {
        gdml_errmsg_set(&e, GDML_ERR_FORMAT, "'%s' and '%s' are not images and labels of one set",
                        cfg->launch.train_images, cfg->launch.train_labels);
        goto out;
    }
    size_t n = labels.dims[0];
    if (!(region_of = malloc(n * sizeof *region_of))) {
        gdml_errmsg_set(&e, GDML_ERR_NOMEM, "out of memory");
        goto out;
    }
    unsigned classes = 0;
    for (size_t i = 0; i < n; i++)
        if (labels.data[i] >= classes)
            classes = labels.data[i] + 1u;
    int mode = gdml_split_mode_parse(cfg->launch.split);
    if (gdml_split_assign(labels.data, n, classes, (unsigned)n_regions, (gdml_split_mode)mode,
                          cfg->launch.alpha, (uint64_t)cfg->launch.seed, region_of, &e) ||
        gdml_split_write(&images, &labels, region_of, names, (unsigned)n_regions, out_dir, 1, parts,
                         &e))
        goto out;
    printf("%-16s %8s %12s %12s  %s\n", "region", "samples", "raw_bytes", "gzip_bytes",
           "samples per class");
    for (int r = 0; r < n_regions; r++) {
        printf("%-16s %8llu %12llu %12llu ", parts[r].name, (unsigned long long)parts[r].samples,
               (unsigned long long)parts[r].raw_bytes, (unsigned long long)parts[r].gzip_bytes);
        for (unsigned c = 0; c < classes; c++)
            printf(" %llu", (unsigned long long)parts[r].per_class[c]);
        printf("\n");
    }
    printf("wrote %d regions under %s\n", n_regions, out_dir);
    status = 0;
out:
    if (status)
        fprintf(stderr, "gdml-split: %s\n", e.text);
    gdml_idx_fini(&images);
    gdml_idx_fini(&labels);
    free(region_of);
    return status;
}

int main(int argc, char **argv)
{
    gdml_config cfg;
    gdml_config_defaults(&cfg);
    gdml_errmsg e = {{0}};
    int positional[2], n_positional = 0;
    bool exit_now = false;
    if (gdml_cli_parse(&program, argc, argv, &cfg, positional, 2, &n_positional, &exit_now, &e)) {
        fprintf(stderr, "gdml-split: %s\n", e.text);
        return 2;
    }
    if (exit_now)
        return 0;
    if (n_positional != 1) {
        fprintf(stderr, "gdml-split: give exactly one output directory; run 'gdml-split --help'\n");
        return 2;
    }
    gdml_log_init("split", (gdml_log_level)gdml_config_log_level(&cfg));
    return split(&cfg, argv[positional[0]]);
}
