/*
 * split_tool.c - gdml-split: assigns a training set to regions (IID, or
 * Dirichlet label skew) deterministically from a seed, and writes each
 * region's part to OUTDIR/<region>/ for that region's workers: IDX files for
 * an IDX set, the rows as they were for a CSV or LIBSVM file.
 */
#include "config.h"
#include "log.h"
#include "split.h"

#include <stdio.h>
#include <stdlib.h>

static const char *const sections[] = {"launch", "data", "log", NULL};

static const gdml_program program = {
    .name = "gdml-split",
    .summary = "Splits a training set (IDX images + labels, or a CSV or LIBSVM file) across "
               "regions, IID or non-IID "
               "(Dirichlet alpha), deterministic from --seed, into OUTDIR/<region>/.",
    .usage = "OUTDIR [--regions a,b,c] [--split iid|dirichlet] [--alpha A] [--seed N] "
             "[--train-images F --train-labels F | --train-data F]",
    .sections = sections,
};

static int split(const gdml_config *cfg, const char *out_dir)
{
    char names[64][GDML_NAME_MAX];
    gdml_split_part parts[64];
    int n_regions = 0;
    size_t n = 0;
    gdml_errmsg e = {{0}};
    gdml_err err = gdml_config_split_names(cfg->launch.regions, names, 64, &n_regions, &e);
    if (!err)
        err = gdml_config_split_data(cfg, names, (unsigned)n_regions, out_dir, parts, &n, &e);
    if (err) {
        fprintf(stderr, "gdml-split: %s\n", e.text);
        return 1;
    }
    unsigned classes = 0; /* columns: up to the largest label any region holds */
    for (int r = 0; r < n_regions; r++)
        for (unsigned c = 0; c < 256; c++)
            if (parts[r].per_class[c] && c >= classes)
                classes = c + 1;
    printf("%-16s %8s %12s %12s  %s\n", "region", "samples", "raw_bytes", "gzip_bytes",
           "samples per class");
    for (int r = 0; r < n_regions; r++) {
        printf("%-16s %8llu %12llu %12llu ", parts[r].name, (unsigned long long)parts[r].samples,
               (unsigned long long)parts[r].raw_bytes, (unsigned long long)parts[r].gzip_bytes);
        for (unsigned c = 0; c < classes; c++)
            printf(" %llu", (unsigned long long)parts[r].per_class[c]);
        printf("\n");
    }
    printf("wrote %zu samples in %d regions under %s\n", n, n_regions, out_dir);
    return 0;
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
    gdml_log_init("split", NULL, (gdml_log_level)gdml_config_log_level(&cfg),
                  (gdml_log_format)gdml_config_log_format(&cfg));
    return split(&cfg, argv[positional[0]]);
}
