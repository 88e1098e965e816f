/*
 * cli.c - the command line shared by every gdml program: --help, --version,
 * --config FILE, --set SECTION.KEY=VALUE and one flag per key (from the key
 * table in config.c), applied over the defaults in that order: defaults, then
 * the file, then flags and --set in command-line order, then the cross-key
 * checks of the program's sections.
 *
 * --set reaches every key (one job file and command line can serve several
 * programs); a flag belongs to a key of one of the program's sections. Should
 * two of them have the same flag, the section listed first in
 * gdml_program.sections wins (and --help shows the flag there only); the
 * other key stays reachable with --set.
 */
#include "config.h"
#include "metrics_catalog.h"

#include <stdio.h>
#include <string.h>

typedef enum opt_kind {
    OPT_POSITIONAL, /* an argument that is not an option */
    OPT_CONFIG,     /* --config FILE */
    OPT_SET,        /* --set SECTION.KEY=VALUE */
    OPT_KEY,        /* --<flag> VALUE */
} opt_kind;

typedef struct cli_opt {
    opt_kind kind;
    char name[64];             /* the option without "=VALUE": "--rounds" */
    const char *value;         /* its value, or the positional argument */
    char section[64], key[64]; /* OPT_SET, OPT_KEY: the key to set */
} cli_opt;

static bool is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

static void print_help(const gdml_program *p)
{
    printf("Usage: %s %s\n%s\n\n", p->name, p->usage, p->summary);
    printf("Options:\n"
           "  --config FILE           read keys from an INI file (at most one --config)\n"
           "  --set SECTION.KEY=VALUE set any key, even of a section not listed below\n"
           "  -h, --help              print this help and exit\n"
           "  --version               print the version and exit\n"
           "%s"
           "\n"
           "Keys: the defaults, then the --config file, then flags and --set in the order\n"
           "given (a later one wins). Flags also take the form --flag=VALUE.\n",
           p->metrics_roles ? "  --metrics-names         print the names of the metrics it exports and exit\n"
                            : "");
    gdml_config_print_keys(p->sections, stdout);
}

static gdml_err unknown_option(const gdml_program *p, const char *name, gdml_errmsg *e)
{
    const char *section, *key, *meta;
    if (gdml_config_flag_key(NULL, name, &section, &key, &meta))
        return gdml_errmsg_set(e, GDML_ERR_CONFIG,
                               "unknown option '%s' (it sets %s.%s, which %s does not read); "
                               "run '%s --help' for the options",
                               name, section, key, p->name, p->name);
    return gdml_errmsg_set(e, GDML_ERR_CONFIG,
                           "unknown option '%s'; run '%s --help' for the options", name, p->name);
}

/* Splits "SECTION.KEY=VALUE" into o. */
static gdml_err parse_set(const char *arg, cli_opt *o, gdml_errmsg *e)
{
    const char *eq = strchr(arg, '=');
    const char *dot = strchr(arg, '.');
    if (!eq || !dot || dot > eq || dot == arg || dot + 1 == eq)
        return gdml_errmsg_set(e, GDML_ERR_CONFIG,
                               "--set takes SECTION.KEY=VALUE, e.g. --set log.level=debug; got "
                               "'%s'",
                               arg);
    snprintf(o->section, sizeof o->section, "%.*s", (int)(dot - arg), arg);
    snprintf(o->key, sizeof o->key, "%.*s", (int)(eq - dot - 1), dot + 1);
    o->value = eq + 1;
    return GDML_OK;
}

/*
 * Reads the option at argv[*i] (and its value, which may be the next
 * argument) into o and advances *i past them. Sets *rest once a lone "--"
 * says that all further arguments are positional.
 */
static gdml_err next_opt(const gdml_program *p, int argc, char **argv, int *i, bool *rest,
                         cli_opt *o, gdml_errmsg *e)
{
    const char *arg = argv[(*i)++];
    if (*rest || strncmp(arg, "--", 2) != 0) {
        o->kind = OPT_POSITIONAL;
        o->value = arg;
        return GDML_OK;
    }
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    if (len >= sizeof o->name)
        len = sizeof o->name - 1; /* long enough to be unknown */
    memcpy(o->name, arg, len);
    o->name[len] = '\0';

    const char *section, *key, *meta = "VALUE";
    if (strcmp(o->name, "--config") == 0) {
        o->kind = OPT_CONFIG;
        meta = "FILE";
    } else if (strcmp(o->name, "--set") == 0) {
        o->kind = OPT_SET;
        meta = "SECTION.KEY=VALUE";
    } else if (gdml_config_flag_key(p->sections, o->name, &section, &key, &meta)) {
        o->kind = OPT_KEY;
        snprintf(o->section, sizeof o->section, "%s", section);
        snprintf(o->key, sizeof o->key, "%s", key);
    } else {
        return unknown_option(p, o->name, e);
    }

    if (eq) {
        o->value = eq + 1;
    } else if (*i < argc && strncmp(argv[*i], "--", 2) != 0) {
        o->value = argv[(*i)++];
    } else {
        return gdml_errmsg_set(e, GDML_ERR_CONFIG, "%s needs a value: %s %s", o->name, o->name,
                               meta);
    }
    if (o->kind == OPT_SET)
        return parse_set(o->value, o, e);
    return GDML_OK;
}

gdml_err gdml_cli_parse(const gdml_program *p, int argc, char **argv, gdml_config *cfg,
                        int *positional, int cap, int *n_positional, bool *exit_now, gdml_errmsg *e)
{
    *exit_now = false;
    /* --help and --version answer whatever else the command line holds. */
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        bool names = p->metrics_roles && strcmp(argv[i], "--metrics-names") == 0;
        if (is_help(argv[i]) || strcmp(argv[i], "--version") == 0 || names) {
            if (is_help(argv[i]))
                print_help(p);
            else if (names)
                gdml_metrics_print_names(gdml_metric_catalog, gdml_metric_catalog_n,
                                         p->metrics_roles, stdout);
            else
                printf("%s %s\n", p->name, GDML_VERSION);
            fflush(stdout);
            *n_positional = 0;
            *exit_now = true;
            return GDML_OK;
        }
    }

    /* First pass: find the file and the positional arguments, refuse unknown options. */
    const char *config_path = NULL;
    int n = 0;
    bool rest = false;
    cli_opt o;
    for (int i = 1; i < argc;) {
        if (!rest && strcmp(argv[i], "--") == 0) {
            rest = true;
            i++;
            continue;
        }
        int at = i;
        gdml_err err = next_opt(p, argc, argv, &i, &rest, &o, e);
        if (err)
            return err;
        if (o.kind == OPT_CONFIG) {
            if (config_path)
                return gdml_errmsg_set(e, GDML_ERR_CONFIG,
                                       "--config given twice ('%s', then '%s'); pass one file",
                                       config_path, o.value);
            config_path = o.value;
        } else if (o.kind == OPT_POSITIONAL) {
            if (n == cap)
                return gdml_errmsg_set(e, GDML_ERR_CONFIG,
                                       "unexpected argument '%s'; run '%s --help' for the usage",
                                       o.value, p->name);
            positional[n++] = at;
        }
    }

    /* The contract promises GDML_ERR_CONFIG for every failure, an unreadable file included. */
    if (config_path && gdml_config_load(cfg, config_path, e) != GDML_OK)
        return GDML_ERR_CONFIG;

    /* Second pass: overrides, in command-line order, so a later one wins. */
    rest = false;
    for (int i = 1; i < argc;) {
        if (!rest && strcmp(argv[i], "--") == 0) {
            rest = true;
            i++;
            continue;
        }
        gdml_err err = next_opt(p, argc, argv, &i, &rest, &o, e);
        if (!err && (o.kind == OPT_KEY || o.kind == OPT_SET))
            err = gdml_config_set(cfg, o.section, o.key, o.value, o.name, e);
        if (err)
            return GDML_ERR_CONFIG;
    }

    gdml_err err = gdml_config_check(cfg, p->sections, e);
    if (err)
        return err;
    *n_positional = n;
    return GDML_OK;
}
