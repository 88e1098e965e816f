/*
 * report_data.c - rounds.csv and the byte logs of a run, parsed and summed
 * per second for gdml-report (report_data.h).
 */
#include "report_data.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUNDS_HEADER "version,elapsed_ms,accuracy,loss,wan_up,wan_down"
#define BYTES_HEADER "mono_ms,peer,direction,type,bytes,rate"

/* Makes room for one more element in *arr (len used of *cap); false when out of memory. */
static bool grow(void **arr, size_t len, size_t *cap, size_t elem, size_t first)
{
    if (len < *cap)
        return true;
    size_t want = *cap ? 2 * *cap : first;
    void *grown = realloc(*arr, want * elem);
    if (!grown)
        return false;
    *arr = grown;
    *cap = want;
    return true;
}

gdml_err gdml_report_read_rounds(const char *path, gdml_report_round **out, size_t *n,
                                 gdml_errmsg *e)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return gdml_errmsg_set(e, errno == ENOENT ? GDML_ERR_NOTFOUND : GDML_ERR_IO,
                               "cannot read '%s': %s", path, strerror(errno));
    gdml_report_round *rows = NULL;
    size_t len = 0, cap = 0, line_no = 0;
    gdml_err err = GDML_OK;
    char line[512];
    while (!err && fgets(line, sizeof line, f)) {
        line_no++;
        line[strcspn(line, "\r\n")] = '\0';
        /* A resumed run appends to its rounds.csv, header and all. */
        if (strcmp(line, ROUNDS_HEADER) == 0 || !*line)
            continue;
        if (line_no == 1) {
            err = gdml_errmsg_set(e, GDML_ERR_FORMAT, "%s:1: not a rounds.csv header: '%.80s'",
                                  path, line);
            break;
        }
        unsigned long long version, up, down;
        long long elapsed;
        char acc[32], loss[32];
        int used = 0;
        if (sscanf(line, "%llu,%lld,%31[^,],%31[^,],%llu,%llu%n", &version, &elapsed, acc, loss,
                   &up, &down, &used) != 6 ||
            line[used] != '\0') {
            err = gdml_errmsg_set(e, GDML_ERR_FORMAT, "%s:%zu: not a row of %s: '%.80s'", path,
                                  line_no, ROUNDS_HEADER, line);
            break;
        }
        if (!grow((void **)&rows, len, &cap, sizeof *rows, 64)) {
            err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory");
            break;
        }
        rows[len++] = (gdml_report_round){.version = version,
                                          .elapsed_s = (double)elapsed / 1000.0,
                                          .accuracy = strtod(acc, NULL),
                                          .loss = strtod(loss, NULL),
                                          .wan_up = up,
                                          .wan_down = down};
    }
    fclose(f);
    if (err) {
        free(rows);
        return err;
    }
    *out = rows;
    *n = len;
    return GDML_OK;
}

/* One byte-log message that counts: which link, which way, when, how much. */
typedef struct message {
    size_t link;
    bool up;
    int64_t ms;
    uint64_t bytes;
    double rate;
} message;

typedef struct reader {
    gdml_report_bytes *b;
    message *msgs;
    size_t n_msgs, cap_msgs, cap_links;
    gdml_errmsg *e;
} reader;

static gdml_err link_index(reader *r, const char *region, size_t *out)
{
    gdml_report_bytes *b = r->b;
    for (size_t i = 0; i < b->n_links; i++)
        if (strcmp(b->links[i].region, region) == 0) {
            *out = i;
            return GDML_OK;
        }
    if (!grow((void **)&b->links, b->n_links, &r->cap_links, sizeof *b->links, 8))
        return gdml_errmsg_set(r->e, GDML_ERR_NOMEM, "out of memory");
    memset(&b->links[b->n_links], 0, sizeof b->links[0]);
    snprintf(b->links[b->n_links].region, GDML_NAME_MAX, "%s", region);
    *out = b->n_links++;
    return GDML_OK;
}

static gdml_err add_message(reader *r, const message *m)
{
    if (!grow((void **)&r->msgs, r->n_msgs, &r->cap_msgs, sizeof *r->msgs, 1024))
        return gdml_errmsg_set(r->e, GDML_ERR_NOMEM, "out of memory");
    r->msgs[r->n_msgs++] = *m;
    return GDML_OK;
}

/*
 * Reads one byte log. region NULL: the coordinator's, whose peers are the
 * regions; it gives every downlink, and the uplinks of regions without a
 * log of their own (own_log[link] false; own_log NULL: none has). Otherwise
 * region's own log: its uplink.
 */
static gdml_err read_log(reader *r, const char *path, const char *region, const bool *own_log,
                         size_t n_own)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return gdml_errmsg_set(r->e, errno == ENOENT ? GDML_ERR_NOTFOUND : GDML_ERR_IO,
                               "cannot read '%s': %s", path, strerror(errno));
    gdml_err err = GDML_OK;
    char line[512];
    size_t line_no = 0;
    while (!err && fgets(line, sizeof line, f)) {
        line_no++;
        line[strcspn(line, "\r\n")] = '\0';
        if (strcmp(line, BYTES_HEADER) == 0 || !*line)
            continue;
        long long ms;
        char peer[GDML_NAME_MAX], dir[8], type[32];
        unsigned long long bytes;
        double rate;
        if (sscanf(line, "%lld,%63[^,],%7[^,],%31[^,],%llu,%lf", &ms, peer, dir, type, &bytes,
                   &rate) != 6 ||
            (strcmp(dir, "up") != 0 && strcmp(dir, "down") != 0) || !(rate >= 0)) {
            err = gdml_errmsg_set(r->e, GDML_ERR_FORMAT, "%s:%zu: not a row of %s: '%.80s'", path,
                                  line_no, BYTES_HEADER, line);
            break;
        }
        message m = {.up = dir[0] == 'u', .ms = ms, .bytes = bytes, .rate = rate};
        if (region) {
            if (!m.up) /* its downlink is counted where it is sent, with its budget */
                continue;
            err = link_index(r, region, &m.link);
        } else {
            err = link_index(r, peer, &m.link);
            if (!err && m.up && own_log && m.link < n_own && own_log[m.link])
                continue;
            if (!err && m.up)
                m.rate = 0; /* the coordinator's log does not know the region's budget */
        }
        if (!err)
            err = add_message(r, &m);
    }
    fclose(f);
    return err;
}

/* Fills the per-second arrays of every link from the messages read. */
static gdml_err bucket(reader *r)
{
    gdml_report_bytes *b = r->b;
    int64_t t0 = INT64_MAX, t1 = INT64_MIN;
    for (size_t i = 0; i < r->n_msgs; i++) {
        t0 = r->msgs[i].ms < t0 ? r->msgs[i].ms : t0;
        t1 = r->msgs[i].ms > t1 ? r->msgs[i].ms : t1;
    }
    size_t seconds = r->n_msgs ? (size_t)((t1 - t0) / 1000) + 1 : 0;
    b->t0_ms = r->n_msgs ? t0 : 0;
    for (size_t l = 0; l < b->n_links; l++) {
        gdml_report_link *k = &b->links[l];
        k->seconds = seconds;
        k->up = calloc(seconds + 1, sizeof *k->up);
        k->down = calloc(seconds + 1, sizeof *k->down);
        k->up_rate = calloc(seconds + 1, sizeof *k->up_rate);
        k->down_rate = calloc(seconds + 1, sizeof *k->down_rate);
        if (!k->up || !k->down || !k->up_rate || !k->down_rate)
            return gdml_errmsg_set(r->e, GDML_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < r->n_msgs; i++) {
        const message *m = &r->msgs[i];
        gdml_report_link *k = &b->links[m->link];
        size_t s = (size_t)((m->ms - t0) / 1000);
        if (m->up) {
            k->up[s] += m->bytes;
            k->up_total += m->bytes;
            k->up_rate[s] = m->rate; /* a SIGHUP may change it: the last in the second */
            k->up_budget = m->rate > k->up_budget ? m->rate : k->up_budget;
        } else {
            k->down[s] += m->bytes;
            k->down_total += m->bytes;
            k->down_rate[s] = m->rate;
            k->down_budget = m->rate > k->down_budget ? m->rate : k->down_budget;
        }
    }
    /* A second without a message keeps the budget of the one before. */
    for (size_t l = 0; l < b->n_links; l++)
        for (size_t s = 1; s < seconds; s++) {
            gdml_report_link *k = &b->links[l];
            if (!k->up[s])
                k->up_rate[s] = k->up_rate[s - 1];
            if (!k->down[s])
                k->down_rate[s] = k->down_rate[s - 1];
        }
    return GDML_OK;
}

gdml_err gdml_report_read_bytes(const char *logs_dir, gdml_report_bytes *out, gdml_errmsg *e)
{
    memset(out, 0, sizeof *out);
    reader r = {.b = out, .e = e};
    char path[PATH_MAX];
    bool *own_log = NULL;
    gdml_err err = GDML_OK;
    /* First pass over the coordinator's log: which regions there are. */
    snprintf(path, sizeof path, "%s/bytes-coordinator.csv", logs_dir);
    if ((err = read_log(&r, path, NULL, NULL, 0)))
        goto out;
    r.n_msgs = 0;
    size_t n_regions = out->n_links;
    own_log = calloc(n_regions + 1, sizeof *own_log);
    if (!own_log) {
        err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t l = 0; l < n_regions && !err; l++) {
        if (snprintf(path, sizeof path, "%s/bytes-%s.csv", logs_dir, out->links[l].region) >=
            (int)sizeof path) {
            err = gdml_errmsg_set(e, GDML_ERR_INVALID, "the path under '%s' is too long", logs_dir);
            break;
        }
        err = read_log(&r, path, out->links[l].region, NULL, 0);
        if (!err)
            own_log[l] = true;
        else if (err == GDML_ERR_NOTFOUND)
            err = GDML_OK;
    }
    snprintf(path, sizeof path, "%s/bytes-coordinator.csv", logs_dir);
    if (!err)
        err = read_log(&r, path, NULL, own_log, n_regions);
    if (!err)
        err = bucket(&r);
out:
    free(own_log);
    free(r.msgs);
    if (err)
        gdml_report_bytes_fini(out);
    return err;
}

void gdml_report_bytes_fini(gdml_report_bytes *b)
{
    for (size_t l = 0; l < b->n_links; l++) {
        free(b->links[l].up);
        free(b->links[l].down);
        free(b->links[l].up_rate);
        free(b->links[l].down_rate);
    }
    free(b->links);
    memset(b, 0, sizeof *b);
}
