/*
 * config.c - the key table and everything built from it: defaults, reading
 * INI files (through inih, the only file that includes it) and writing them,
 * single-key validation, cross-key checks, the --help key list and
 * docs/config.md's tables.
 *
 * A file is applied whole or not at all (it is read into a copy); within it a
 * key given twice takes its later value, and a section may appear again.
 *
 * To add a key: add its field to gdml_config in config.h, add one row to
 * `keys` below, and regenerate docs/config.md with gdml_config_print_markdown.
 */
#include "config_impl.h"

#include "log.h"
#include "model.h"
#include "util.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define N_KEYS gdml_config_n_keys
#define keys gdml_config_keys


/* ---- table lookups ---------------------------------------------------- */

static bool section_known(const char *section)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].section, section) == 0)
            return true;
    return false;
}

static const key_def *find_key(const char *section, const char *key)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].key, key) == 0)
            return &keys[i];
    return NULL;
}

/* The first row with flag among sections (NULL: all), in the order of sections. */
static const key_def *find_flag(const char *const *sections, const char *flag)
{
    for (size_t s = 0; !sections || sections[s]; s++) {
        for (size_t i = 0; i < N_KEYS; i++) {
            const key_def *k = &keys[i];
            if (k->flag && strcmp(k->flag, flag) == 0 &&
                (!sections || strcmp(k->section, sections[s]) == 0))
                return k;
        }
        if (!sections)
            break;
    }
    return NULL;
}

bool gdml_config_flag_key(const char *const *sections, const char *flag, const char **section,
                          const char **key, const char **meta)
{
    const key_def *k = find_flag(sections, flag);
    if (!k)
        return false;
    *section = k->section;
    *key = k->key;
    *meta = k->meta;
    return true;
}

/* Appends item to the comma-separated list in buf (truncating quietly). */
static void list_add(char *buf, size_t cap, const char *item)
{
    size_t len = strlen(buf);
    if (len < cap)
        snprintf(buf + len, cap - len, "%s%s", len ? ", " : "", item);
}

/* Lists the keys of section, or the sections if section is NULL. */
static void list_names(const char *section, char *buf, size_t cap)
{
    buf[0] = '\0';
    for (size_t i = 0; i < N_KEYS; i++) {
        if (!section && (i == 0 || strcmp(keys[i].section, keys[i - 1].section) != 0))
            list_add(buf, cap, keys[i].section);
        else if (section && strcmp(keys[i].section, section) == 0)
            list_add(buf, cap, keys[i].key);
    }
}

/* ---- describing values ------------------------------------------------ */

/* How describe_allowed words a key's bounds, for each place it is shown. */
typedef enum allowed_style {
    ALLOWED_ERROR, /* in full: "integer 1..10", "one of a, b" */
    ALLOWED_HELP,  /* short: "1..10", "a/b"; nothing for plain text */
    ALLOWED_TABLE, /* short numbers and choices, full formats: docs/config.md */
} allowed_style;

static void describe_allowed(const key_def *k, allowed_style style, char *buf, size_t cap)
{
    bool full = style == ALLOWED_ERROR;
    buf[0] = '\0';
    switch (k->type) {
    case KEY_INT:
        snprintf(buf, cap, "%s%" PRId64 "..%" PRId64, full ? "integer " : "", k->imin, k->imax);
        break;
    case KEY_REAL:
        snprintf(buf, cap, "%s%s %.15g and <= %.15g", full ? "number " : "",
                 k->rmin_in ? ">=" : ">", k->rmin, k->rmax);
        break;
    case KEY_ENUM:
        snprintf(buf, cap, "%s", full ? "one of " : "");
        for (size_t i = 0; k->choices[i]; i++) {
            size_t len = strlen(buf);
            snprintf(buf + len, cap - len, "%s%s", i == 0 ? "" : full ? ", " : "/", k->choices[i]);
        }
        break;
    case KEY_STRING:
        if (k->check)
            snprintf(buf, cap, "%s", style == ALLOWED_HELP ? k->brief : k->allowed);
        else if (style == ALLOWED_ERROR)
            snprintf(buf, cap, "text of at most %zu bytes, no control characters", k->size - 1);
        else if (style == ALLOWED_TABLE)
            snprintf(buf, cap, "up to %zu bytes", k->size - 1);
        break;
    }
}

/* Copies value into out for an error message: control bytes escaped, long values cut. */
static void quote_value(const char *value, char *out, size_t cap)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)value; *p && n + 8 < cap; p++) {
        if (p - (const unsigned char *)value >= 80) {
            n += (size_t)snprintf(out + n, cap - n, "...");
            break;
        }
        if (*p < 0x20 || *p == 0x7f)
            n += (size_t)snprintf(out + n, cap - n, "\\x%02x", *p);
        else
            out[n++] = (char)*p;
    }
    out[n] = '\0';
}

/* The value k holds in cfg, as text that reads back to the same value. */
static void format_value(const gdml_config *cfg, const key_def *k, char *buf, size_t cap)
{
    const char *field = (const char *)cfg + k->offset;
    if (k->type == KEY_INT) {
        int64_t v;
        memcpy(&v, field, sizeof v);
        snprintf(buf, cap, "%" PRId64, v);
    } else if (k->type == KEY_REAL) {
        double v;
        memcpy(&v, field, sizeof v);
        snprintf(buf, cap, "%.17g", v);
    } else {
        snprintf(buf, cap, "%.*s", (int)k->size, field);
    }
}

/* ---- setting one key -------------------------------------------------- */

/* Each parse_* returns NULL if text is allowed (setting *out), or why it is not. */
static const char *parse_int(const key_def *k, const char *text, int64_t *out)
{
    const char *p = text + (*text == '-');
    if (!*p)
        return "not an integer";
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q))
            return "not an integer";
    errno = 0;
    long long v = strtoll(text, NULL, 10);
    if (errno == ERANGE || v < k->imin || v > k->imax)
        return "out of range";
    *out = v;
    return NULL;
}

static const char *parse_real(const key_def *k, const char *text, double *out)
{
    if (!*text || isspace((unsigned char)*text))
        return "not a number";
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (*end)
        return "not a number";
    if (errno == ERANGE)
        return "out of range";
    if (!isfinite(v))
        return "not a finite number";
    if (!((v > k->rmin || (k->rmin_in && v == k->rmin)) && v <= k->rmax))
        return "out of range";
    *out = v;
    return NULL;
}

static const char *parse_text(const key_def *k, const char *text, char *why, size_t cap)
{
    size_t len = strlen(text);
    if (len >= k->size) {
        snprintf(why, cap, "too long (%zu bytes)", len);
        return why;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c == 0x7f) {
            snprintf(why, cap, "control character 0x%02x at position %zu", c, i + 1);
            return why;
        }
    }
    if (k->type == KEY_ENUM) {
        for (size_t i = 0; k->choices[i]; i++)
            if (strcmp(k->choices[i], text) == 0)
                return NULL;
        return "not an allowed value";
    }
    gdml_errmsg e;
    if (k->check && (*text || !k->required) && k->check(text, &e)) {
        snprintf(why, cap, "%s", e.text);
        return why;
    }
    return NULL;
}

static gdml_err key_set(gdml_config *cfg, const key_def *k, const char *text, const char *origin,
                        gdml_errmsg *e)
{
    char *field = (char *)cfg + k->offset;
    char buf[GDML_ERRMSG_MAX];
    const char *why = NULL;
    if (k->type == KEY_INT) {
        int64_t v;
        assert(k->size == sizeof v);
        if (!(why = parse_int(k, text, &v)))
            memcpy(field, &v, sizeof v);
    } else if (k->type == KEY_REAL) {
        double v;
        assert(k->size == sizeof v);
        if (!(why = parse_real(k, text, &v)))
            memcpy(field, &v, sizeof v);
    } else if (!(why = parse_text(k, text, buf, sizeof buf))) {
        memcpy(field, text, strlen(text) + 1);
    }
    if (!why)
        return GDML_OK;
    char quoted[128], allowed[256];
    quote_value(text, quoted, sizeof quoted);
    describe_allowed(k, ALLOWED_ERROR, allowed, sizeof allowed);
    return gdml_errmsg_set(e, GDML_ERR_CONFIG, "%s%s[%s] %s = \"%s\": %s; allowed: %s",
                           origin ? origin : "", origin ? ": " : "", k->section, k->key, quoted,
                           why, allowed);
}

void gdml_config_defaults(gdml_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_KEYS; i++) {
        gdml_err err = key_set(cfg, &keys[i], keys[i].def, "default", NULL);
        assert(err == GDML_OK); /* a default outside its own bounds is a bug in the table */
        (void)err;
    }
}

gdml_err gdml_config_set(gdml_config *cfg, const char *section, const char *key, const char *value,
                         const char *origin, gdml_errmsg *e)
{
    const char *at = origin ? origin : "";
    const char *sep = origin ? ": " : "";
    char list[512];
    if (!section_known(section)) {
        list_names(NULL, list, sizeof list);
        return gdml_errmsg_set(e, GDML_ERR_CONFIG, "%s%sunknown section [%s]; sections: %s", at,
                               sep, section, list);
    }
    const key_def *k = find_key(section, key);
    if (!k) {
        list_names(section, list, sizeof list);
        return gdml_errmsg_set(e, GDML_ERR_CONFIG, "%s%s[%s] unknown key '%s'; keys in [%s]: %s",
                               at, sep, section, key, section, list);
    }
    return key_set(cfg, k, value, origin, e);
}

/* ---- loading a file --------------------------------------------------- */

typedef struct load_ctx {
    FILE *file;
    const char *path;
    gdml_config *cfg; /* a scratch copy, kept only if the whole file is good */
    int line;         /* lines handed to inih so far: the line being parsed */
    int bad_line;     /* first line refused here (too long, bad key or value), or 0 */
    int read_errno;   /* errno of a failed read, or 0 */
    gdml_errmsg why;  /* the message for bad_line */
} load_ctx;

/*
 * inih's reader: one physical line per call, so inih's line numbers and ours
 * agree. A line too long for inih's buffer is swallowed whole and noted, not
 * split (which would parse its tail as a line of its own).
 */
static char *read_line(char *buf, int cap, void *stream)
{
    load_ctx *c = stream;
    if (!fgets(buf, cap, c->file)) {
        if (ferror(c->file))
            c->read_errno = errno ? errno : EIO;
        return NULL;
    }
    c->line++;
    size_t len = strlen(buf);
    if (len + 1 == (size_t)cap && buf[len - 1] != '\n') {
        int ch = fgetc(c->file);
        if (ch != EOF && ch != '\n') {
            size_t total = len + 1;
            while ((ch = fgetc(c->file)) != EOF && ch != '\n')
                total++;
            if (!c->bad_line) {
                c->bad_line = c->line;
                gdml_errmsg_set(&c->why, GDML_ERR_CONFIG,
                                "%s:%d: line is %zu characters long, more than the %d a config "
                                "file line may have; give a longer value on the command line "
                                "with --set SECTION.KEY=VALUE",
                                c->path, c->line, total, cap - 2);
            }
            buf[0] = '\0';
            return buf;
        }
    }
    /* inih takes an indented line as more of the previous value; here indentation means nothing. */
    size_t lead = strspn(buf, " \t");
    memmove(buf, buf + lead, len - lead + 1);
    return buf;
}

static int on_key(void *user, const char *section, const char *key, const char *value)
{
    load_ctx *c = user;
    if (c->bad_line)
        return 0; /* inih reads on after an error; the first one is the one to report */
    char origin[GDML_PATH_MAX + 16];
    snprintf(origin, sizeof origin, "%s:%d", c->path, c->line);
    gdml_err err;
    if (!*section) {
        char list[256];
        list_names(NULL, list, sizeof list);
        err = gdml_errmsg_set(&c->why, GDML_ERR_CONFIG,
                              "%s: key '%s' comes before any [section]; put it under one of: %s",
                              origin, key, list);
    } else {
        err = gdml_config_set(c->cfg, section, key, value, origin, &c->why);
    }
    if (err) {
        c->bad_line = c->line;
        return 0;
    }
    return 1;
}

gdml_err gdml_config_load(gdml_config *cfg, const char *path, gdml_errmsg *e)
{
    gdml_err err = GDML_OK;
    load_ctx c = {.path = path};
    c.file = fopen(path, "r");
    if (!c.file)
        return gdml_errmsg_set(e, GDML_ERR_IO,
                               "cannot read config file '%s': %s; pass an existing file with "
                               "--config",
                               path, strerror(errno));
    /* An empty file is a mistake, not a request for every default: a volume
     * mounted before it was filled, a file truncated by an editor. */
    struct stat st;
    if (fstat(fileno(c.file), &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0) {
        err = gdml_errmsg_set(e, GDML_ERR_CONFIG,
                              "config file '%s' is empty; give a file with the keys to use "
                              "(docs/config.md), or leave out --config for every default",
                              path);
        goto out;
    }
    c.cfg = malloc(sizeof *c.cfg);
    if (!c.cfg) {
        err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory reading config file '%s'", path);
        goto out;
    }
    memcpy(c.cfg, cfg, sizeof *cfg);

    int syntax_line = ini_parse_stream(read_line, &c, on_key, &c);
    if (syntax_line < 0) {
        err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory reading config file '%s'", path);
    } else if (c.read_errno) {
        err = gdml_errmsg_set(e, GDML_ERR_IO, "cannot read config file '%s': %s", path,
                              strerror(c.read_errno));
    } else if (c.bad_line && (syntax_line == 0 || c.bad_line <= syntax_line)) {
        err = gdml_errmsg_set(e, GDML_ERR_CONFIG, "%s", c.why.text);
    } else if (syntax_line > 0) {
        err = gdml_errmsg_set(e, GDML_ERR_CONFIG,
                              "%s:%d: cannot parse this line; expected [section], key = value, "
                              "or a comment starting with ; or #",
                              path, syntax_line);
    } else {
        memcpy(cfg, c.cfg, sizeof *cfg);
    }
out:
    free(c.cfg);
    fclose(c.file);
    return err;
}

/* Why text cannot stand as the value of a file line for k, or NULL if it can. */
static const char *unwritable(const key_def *k, const char *text)
{
    size_t len = strlen(text);
    if (len && (text[0] == ' ' || text[len - 1] == ' '))
        return "it starts or ends with a space, which a config file drops";
    if (text[0] == ';' || strstr(text, " ;"))
        return "a ';' after a space would start a comment";
    if (strlen(k->key) + 3 + len > INI_MAX_LINE - 2)
        return "it is too long for a config file line";
    return NULL;
}

gdml_err gdml_config_write(const gdml_config *cfg, const char *path, gdml_errmsg *e)
{
    char *text = NULL;
    size_t len = 0;
    gdml_config *scratch = malloc(sizeof *scratch);
    FILE *f = scratch ? open_memstream(&text, &len) : NULL;
    if (!f) {
        free(scratch);
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory writing '%s'", path);
    }
    char origin[GDML_PATH_MAX + 32], value[GDML_PATH_MAX + 32];
    snprintf(origin, sizeof origin, "cannot write '%s'", path);
    fprintf(f, "; Every gdml key with the value it had; see docs/config.md.\n");
    gdml_err err = GDML_OK;
    for (size_t i = 0; i < N_KEYS && !err; i++) {
        const key_def *k = &keys[i];
        if (i == 0 || strcmp(k->section, keys[i - 1].section) != 0)
            fprintf(f, "\n[%s]\n", k->section);
        format_value(cfg, k, value, sizeof value);
        /* Refuse what gdml_config_load would refuse or read back differently. */
        const char *why = unwritable(k, value);
        if (why)
            err = gdml_errmsg_set(e, GDML_ERR_CONFIG, "%s: [%s] %s: %s; shorten or move it", origin,
                                  k->section, k->key, why);
        else if (!(err = key_set(scratch, k, value, origin, e)))
            fprintf(f, "%s = %s\n", k->key, value);
    }
    if (fclose(f) != 0 && !err)
        err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory writing '%s'", path);
    if (!err)
        err = gdml_write_file_atomic(path, text, len, e);
    free(text);
    free(scratch);
    return err;
}

/* ---- checks across keys ----------------------------------------------- */

/* Bounds of the item of list that starts at p: [*start, *end) without blanks. */
static const char *next_item(const char *p, const char **start, const char **end)
{
    const char *comma = strchr(p, ',');
    const char *stop = comma ? comma : p + strlen(p);
    while (p < stop && *p == ' ')
        p++;
    const char *q = stop;
    while (q > p && q[-1] == ' ')
        q--;
    *start = p;
    *end = q;
    return comma ? comma + 1 : NULL;
}

gdml_err gdml_config_split_names(const char *list, char (*names)[GDML_NAME_MAX], int cap, int *n,
                                 gdml_errmsg *e)
{
    /* Validate everything first so that names and *n change only on success. */
    if (!list[strspn(list, " ")])
        return gdml_errmsg_set(e, GDML_ERR_CONFIG, "the list is empty");
    int count = 0;
    for (const char *p = list; p;) {
        const char *s, *t;
        p = next_item(p, &s, &t);
        size_t len = (size_t)(t - s);
        char name[GDML_NAME_MAX + 1];
        snprintf(name, sizeof name, "%.*s", (int)len, s);
        if (len == 0)
            return gdml_errmsg_set(e, GDML_ERR_CONFIG, "name %d of the list is empty", count + 1);
        if (len >= GDML_NAME_MAX || !gdml_name_ok(name))
            return gdml_errmsg_set(e, GDML_ERR_CONFIG, "'%.*s' is not a valid name", (int)len, s);
        if (++count > cap)
            return gdml_errmsg_set(e, GDML_ERR_CONFIG, "more than %d names", cap);
        for (const char *q = list; q;) {
            const char *s2, *t2;
            q = next_item(q, &s2, &t2);
            if (s2 == s)
                break;
            if ((size_t)(t2 - s2) == len && memcmp(s2, s, len) == 0)
                return gdml_errmsg_set(e, GDML_ERR_CONFIG, "'%s' is repeated", name);
        }
    }
    int i = 0;
    for (const char *p = list; p; i++) {
        const char *s, *t;
        p = next_item(p, &s, &t);
        snprintf(names[i], GDML_NAME_MAX, "%.*s", (int)(t - s), s);
    }
    *n = count;
    return GDML_OK;
}

/* How a user sets k: "--images PATH or --set worker.images=PATH". */
static void how_to_set(const key_def *k, char *buf, size_t cap)
{
    if (k->flag)
        snprintf(buf, cap, "set %s in [%s] of the config file, or pass %s %s", k->key, k->section,
                 k->flag, k->meta);
    else
        snprintf(buf, cap, "set %s in [%s] of the config file, or pass --set %s.%s=%s", k->key,
                 k->section, k->section, k->key, k->meta);
}

static gdml_err check_section(const gdml_config *cfg, const char *section, gdml_errmsg *e)
{
    char how[256], value[GDML_PATH_MAX], allowed[256];
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_def *k = &keys[i];
        if (strcmp(k->section, section) != 0 || k->type != KEY_STRING)
            continue;
        const char *text = (const char *)cfg + k->offset;
        how_to_set(k, how, sizeof how);
        if (k->required && !*text)
            return gdml_errmsg_set(e, GDML_ERR_CONFIG, "[%s] %s is required but not set: %s",
                                   section, k->key, how);
        gdml_errmsg why;
        if (k->check && (*text || !k->required) && k->check(text, &why)) {
            quote_value(text, value, sizeof value);
            describe_allowed(k, ALLOWED_ERROR, allowed, sizeof allowed);
            return gdml_errmsg_set(e, GDML_ERR_CONFIG, "[%s] %s = \"%s\": %s; allowed: %s; %s",
                                   section, k->key, value, why.text, allowed, how);
        }
    }
    return GDML_OK;
}

/* A worker reads a CSV or LIBSVM file (data), or an IDX pair (images and labels). */
static gdml_err check_worker_data(const gdml_config *cfg, gdml_errmsg *e)
{
    const char *data = cfg->worker.data, *images = cfg->worker.images,
               *labels = cfg->worker.labels;
    if (*data && (*images || *labels))
        return gdml_errmsg_set(e, GDML_ERR_CONFIG,
                               "[worker] data and %s are both set; give one training set: data "
                               "(--data, CSV or LIBSVM) or images and labels (--images, --labels, "
                               "IDX)",
                               *images ? "images" : "labels");
    if (!*data && (!*images || !*labels))
        return gdml_errmsg_set(e, GDML_ERR_CONFIG,
                               "[worker] has no training data: give data (--data FILE, CSV or "
                               "LIBSVM) or both images and labels (--images FILE --labels FILE, "
                               "IDX)");
    return GDML_OK;
}

gdml_err gdml_config_check(const gdml_config *cfg, const char *const *sections, gdml_errmsg *e)
{
    for (size_t i = 0; sections && sections[i]; i++) {
        const char *s = sections[i];
        assert(section_known(s));
        gdml_err err = check_section(cfg, s, e);
        if (err)
            return err;
        if (strcmp(s, "worker") == 0 && cfg->worker.shard_index >= cfg->worker.shard_count)
            return gdml_errmsg_set(e, GDML_ERR_CONFIG,
                                   "[worker] shard_index = %" PRId64 " is not below shard_count = "
                                   "%" PRId64 "; shards are numbered 0..shard_count-1 "
                                   "(--shard-index, --shard-count)",
                                   cfg->worker.shard_index, cfg->worker.shard_count);
        gdml_layout layout;
        if (strcmp(s, "model") == 0 && (err = gdml_config_layout(cfg, &layout, e)))
            return err;
        if (strcmp(s, "worker") == 0 && (err = check_worker_data(cfg, e)))
            return err;
        if (strcmp(s, "coordinator") == 0 && *cfg->coordinator.eval_data &&
            *cfg->coordinator.eval_images)
            return gdml_errmsg_set(e, GDML_ERR_CONFIG,
                                   "[coordinator] eval_data and eval_images are both set; give "
                                   "one test set: eval_data (CSV or LIBSVM) or eval_images and "
                                   "eval_labels (IDX)");
        if (strcmp(s, "coordinator") == 0 &&
            !*cfg->coordinator.eval_images != !*cfg->coordinator.eval_labels)
            return gdml_errmsg_set(e, GDML_ERR_CONFIG,
                                   "[coordinator] %s is set but %s is empty; give both "
                                   "(--eval-images, --eval-labels) or neither",
                                   *cfg->coordinator.eval_images ? "eval_images" : "eval_labels",
                                   *cfg->coordinator.eval_images ? "eval_labels" : "eval_images");
    }
    return GDML_OK;
}

gdml_err gdml_config_layout(const gdml_config *cfg, gdml_layout *out, gdml_errmsg *e)
{
    if (!gdml_layout_make(cfg->model.kind, (uint32_t)cfg->model.inputs, cfg->model.hidden,
                          (uint32_t)cfg->model.classes, out, e))
        return GDML_OK;
    gdml_errmsg_prefix(e, "[model]: ");
    if (e) {
        size_t len = strlen(e->text);
        snprintf(e->text + len, sizeof e->text - len,
                 " ([model] hidden lists an mlp's widths, e.g. hidden = 256,128; softmax has none)");
    }
    return GDML_ERR_CONFIG;
}

int gdml_config_log_level(const gdml_config *cfg)
{
    int level = gdml_log_level_parse(cfg->log.level);
    assert(level >= 0); /* the setter admits only the four names */
    return level < 0 ? GDML_LOG_INFO : level;
}

int gdml_config_log_format(const gdml_config *cfg)
{
    int format = gdml_log_format_parse(cfg->log.format);
    assert(format >= 0); /* the setter admits only text and json */
    return format < 0 ? GDML_LOG_TEXT : format;
}

/* ---- help and documentation ------------------------------------------- */

void gdml_config_print_keys(const char *const *sections, void *file)
{
    FILE *f = file;
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_def *k = &keys[i];
        bool wanted = !sections;
        for (size_t s = 0; sections && sections[s]; s++)
            wanted |= strcmp(sections[s], k->section) == 0;
        if (!wanted)
            continue;
        if (i == 0 || strcmp(k->section, keys[i - 1].section) != 0)
            fprintf(f, "\n[%s]  (in the config file, or --set %s.KEY=VALUE)\n", k->section,
                    k->section);
        /* A flag that an earlier section of this program also has means that key. */
        char flag[64] = "";
        if (k->flag && find_flag(sections, k->flag) == k)
            snprintf(flag, sizeof flag, "%s %s", k->flag, k->meta);
        const char *def = k->required ? "required" : *k->def ? k->def : "empty";
        char allowed[256];
        describe_allowed(k, ALLOWED_HELP, allowed, sizeof allowed);
        fprintf(f, "  %-19s %s.%s (%s%s%s%s): %s\n", flag, k->section, k->key,
                k->required ? "" : "default ", def, *allowed ? "; " : "", allowed, k->help);
    }
}

static const char *const type_names[] = {
    [KEY_INT] = "integer", [KEY_REAL] = "number", [KEY_STRING] = "text", [KEY_ENUM] = "choice"};

void gdml_config_print_markdown(void *file)
{
    FILE *f = file;
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_def *k = &keys[i];
        if (i == 0 || strcmp(k->section, keys[i - 1].section) != 0)
            fprintf(f,
                    "%s## [%s]\n\n"
                    "| key | type | default | allowed | flag | meaning |\n"
                    "| --- | --- | --- | --- | --- | --- |\n",
                    i ? "\n" : "", k->section);
        char def[GDML_PATH_MAX], allowed[256];
        snprintf(def, sizeof def,
                 k->required ? "(required)"
                 : *k->def   ? "`%s`"
                             : "(empty)",
                 k->def);
        describe_allowed(k, ALLOWED_TABLE, allowed, sizeof allowed);
        fprintf(f, "| `%s` | %s | %s | %s | %s%s%s | %s |\n", k->key, type_names[k->type], def,
                allowed, k->flag ? "`" : "", k->flag ? k->flag : "", k->flag ? "`" : "", k->help);
    }
}
