/*
 * synth_tool.c - gdml-synth: writes synthetic sparse LIBSVM data of any size
 * from a seed, with its true model (synth.h), for scale tests.
 *
 *   gdml-synth OUT.svm[.gz] [--samples N] [--features D] [--nnz K] [--seed S]
 *              [--noise X] [--model FILE]
 */
#include "synth.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(FILE *f, int status)
{
    fprintf(f, "usage: gdml-synth OUT.svm[.gz] [--samples N] [--features D] [--nnz K] [--seed S]\n"
               "                  [--noise X] [--model FILE]\n"
               "Writes N rows of K distinct features of value 1 out of D, labelled by a true\n"
               "model w ~ N(0,1) from the seed plus noise X (defaults: 100000 rows, 1000000\n"
               "features, 20 per row, seed 1, noise 0.3). --model writes the true weights, one\n"
               "per line. Prints the true model's accuracy: the best any model can reach.\n");
    return status;
}

/* Parses an unsigned flag value; false (after a message) if it is not one. */
static bool parse_u64(const char *flag, const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (!*text || *end || errno || *text == '-') {
        fprintf(stderr, "gdml-synth: %s '%s' is not a whole number\n", flag, text);
        return false;
    }
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    gdml_synth_options opt = {.samples = 100000, .features = 1000000, .nnz = 20, .seed = 1,
                              .noise = 0.3};
    const char *out = NULL, *model = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return usage(stdout, 0);
        if (strcmp(a, "--version") == 0) {
            printf("gdml-synth %s\n", GDML_VERSION);
            return 0;
        }
        if (a[0] != '-') {
            if (out)
                return usage(stderr, 2);
            out = a;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "gdml-synth: %s needs a value; run 'gdml-synth --help'\n", a);
            return 2;
        }
        const char *v = argv[++i];
        uint64_t n = 0;
        bool ok = true;
        if (strcmp(a, "--samples") == 0)
            ok = parse_u64(a, v, &opt.samples);
        else if (strcmp(a, "--features") == 0)
            ok = parse_u64(a, v, &opt.features);
        else if (strcmp(a, "--nnz") == 0 && (ok = parse_u64(a, v, &n)))
            opt.nnz = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n; /* the range check says more */
        else if (strcmp(a, "--seed") == 0)
            ok = parse_u64(a, v, &opt.seed);
        else if (strcmp(a, "--model") == 0)
            model = v;
        else if (strcmp(a, "--noise") == 0) {
            char *end;
            opt.noise = strtod(v, &end);
            ok = *v && !*end;
            if (!ok)
                fprintf(stderr, "gdml-synth: --noise '%s' is not a number\n", v);
        } else {
            fprintf(stderr, "gdml-synth: unknown option '%s'; run 'gdml-synth --help'\n", a);
            return 2;
        }
        if (!ok)
            return 2;
    }
    if (!out) {
        fprintf(stderr, "gdml-synth: give the output file; run 'gdml-synth --help'\n");
        return 2;
    }
    gdml_synth_result res;
    gdml_errmsg e = {{0}};
    gdml_err err = gdml_synth_write(out, model, &opt, &res, &e);
    if (err) {
        fprintf(stderr, "gdml-synth: %s\n", e.text);
        return err == GDML_ERR_INVALID ? 2 : 4;
    }
    printf("wrote %llu rows of %u of %llu features to %s (%llu bytes uncompressed); "
           "%.1f%% positive; true model accuracy %.4f\n",
           (unsigned long long)opt.samples, opt.nnz, (unsigned long long)opt.features, out,
           (unsigned long long)res.bytes, 100.0 * (double)res.positives / (double)opt.samples,
           res.true_accuracy);
    return 0;
}
