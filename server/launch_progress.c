/*
 * launch_progress.c - gdml-launch's progress: the coordinator's lines
 * parsed, then printed one per version (plain) or drawn as a display that is
 * redrawn in place on a terminal (live). See launch_progress.h.
 */
#include "launch_progress.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* ANSI escapes: cursor up N lines, clear to the end of the screen, colours. */
#define ESC_CLEAR_BELOW "\r\033[J"
#define ESC_BOLD "\033[1m"
#define ESC_DIM "\033[2m"
#define ESC_RED "\033[31m"
#define ESC_GREEN "\033[32m"
#define ESC_YELLOW "\033[33m"
#define ESC_RESET "\033[0m"

#define CLOCK_REDRAW_MS 1000

static double mb(uint64_t bytes)
{
    return (double)bytes / 1e6;
}

gdml_progress_style gdml_progress_style_for(const char *mode, bool is_tty, const char *term)
{
    if (strcmp(mode, "live") == 0)
        return GDML_PROGRESS_LIVE;
    if (strcmp(mode, "plain") == 0)
        return GDML_PROGRESS_PLAIN;
    /* A dumb terminal cannot move its cursor: the display would pile up. */
    bool capable = term && *term && strcmp(term, "dumb") != 0;
    return is_tty && capable ? GDML_PROGRESS_LIVE : GDML_PROGRESS_PLAIN;
}

const char *gdml_region_state_name(gdml_region_state s)
{
    switch (s) {
    case GDML_REGION_CONNECTED:
        return "connected";
    case GDML_REGION_STALLED:
        return "stalled";
    case GDML_REGION_RESTARTING:
        return "restarting";
    case GDML_REGION_JOINING:
    default:
        return "joining";
    }
}

/* The budget as configured, in words: what the display shows as in use. */
static void describe_budget(gdml_progress *pg, const gdml_config *cfg)
{
    char when[64], up_rate[48], down_rate[48];
    if (strcmp(cfg->server.sync_mode, "time") == 0)
        snprintf(when, sizeof when, "every %lld ms", (long long)cfg->server.sync_ms);
    else if (strcmp(cfg->server.sync_mode, "budget") == 0)
        snprintf(when, sizeof when, "when the budget allows, H >= %lld",
                 (long long)cfg->server.sync_every);
    else
        snprintf(when, sizeof when, "H %lld steps", (long long)cfg->server.sync_every);
    if (cfg->budget.up_bytes_per_s)
        snprintf(up_rate, sizeof up_rate, "%lld B/s", (long long)cfg->budget.up_bytes_per_s);
    else
        snprintf(up_rate, sizeof up_rate, "unlimited");
    if (cfg->budget.down_bytes_per_s)
        snprintf(down_rate, sizeof down_rate, "%lld B/s", (long long)cfg->budget.down_bytes_per_s);
    else
        snprintf(down_rate, sizeof down_rate, "unlimited");
    snprintf(pg->budget, sizeof pg->budget, "up %s, %s, %s; down %s, %s", cfg->server.encoder, when,
             up_rate, cfg->coordinator.encoder, down_rate);
    pg->budget_up_rate = (uint64_t)cfg->budget.up_bytes_per_s;
}

void gdml_progress_init(gdml_progress *pg, const gdml_config *cfg, char (*names)[GDML_NAME_MAX],
                        int n, gdml_progress_style style, FILE *out, int64_t now_ms)
{
    memset(pg, 0, sizeof *pg);
    pg->style = style;
    pg->out = out;
    pg->start_ms = pg->last_draw_ms = now_ms;
    pg->accuracy = pg->loss = pg->train_loss = pg->val_acc = NAN;
    pg->rounds = (uint64_t)cfg->coordinator.rounds;
    describe_budget(pg, cfg);
    pg->n_regions = n < GDML_PROGRESS_MAX_REGIONS ? n : GDML_PROGRESS_MAX_REGIONS;
    for (int r = 0; r < pg->n_regions; r++) {
        gdml_progress_region *g = &pg->regions[r];
        snprintf(g->name, sizeof g->name, "%s", names[r]);
        g->up_rate = -1;
        g->rate_ms = now_ms;
        g->workers = (unsigned)cfg->launch.workers;
    }
    if (style == GDML_PROGRESS_LIVE) {
        const char *no_color = getenv("NO_COLOR"); /* no-color.org: set and not empty */
        pg->color = !(no_color && *no_color);
        pg->log = open_memstream(&pg->log_buf, &pg->log_len);
        pg->dirty = true;
    }
}

void gdml_progress_fini(gdml_progress *pg)
{
    if (pg->log)
        fclose(pg->log);
    free(pg->log_buf);
    pg->log = NULL;
    pg->log_buf = NULL;
}

void gdml_progress_set_raw(gdml_progress *pg, uint64_t raw_bytes, uint64_t raw_gzip_bytes)
{
    pg->raw_bytes = raw_bytes;
    pg->raw_gzip_bytes = raw_gzip_bytes;
}

/* "89x fewer" or "1.3x more": how a raw-data figure compares with what training moved. */
static void times(char *buf, size_t cap, uint64_t raw, uint64_t moved)
{
    double x = raw >= moved ? (double)raw / (double)moved : (double)moved / (double)raw;
    snprintf(buf, cap, x >= 100 ? "%.0fx %s" : "%.1fx %s", x, raw >= moved ? "fewer" : "more");
}

void gdml_progress_saving(const gdml_progress *pg, char *buf, size_t cap)
{
    uint64_t moved = pg->wan_up + pg->wan_down;
    double mb = (double)moved / 1e6, raw_mb = (double)pg->raw_bytes / 1e6,
           gzip_mb = (double)pg->raw_gzip_bytes / 1e6;
    if (pg->raw_bytes == 0 || pg->raw_gzip_bytes == 0) {
        snprintf(buf, cap,
                 "%.2f MB crossed data-center boundaries; the raw data was not measured, so there "
                 "is nothing to compare it with.",
                 mb);
        return;
    }
    if (moved == 0) {
        snprintf(buf, cap,
                 "No bytes crossed data-center boundaries, where copying the raw data to one data "
                 "center would have moved %.2f MB (%.2f MB gzipped).",
                 raw_mb, gzip_mb);
        return;
    }
    char plain[32], gzip[32];
    times(plain, sizeof plain, pg->raw_bytes, moved);
    times(gzip, sizeof gzip, pg->raw_gzip_bytes, moved);
    snprintf(buf, cap,
             "%s bytes crossed data-center boundaries than copying the raw data to one data center "
             "would have moved: %.2f MB against %.2f MB (%s than its %.2f MB gzipped).",
             plain, mb, raw_mb, gzip, gzip_mb);
}

FILE *gdml_progress_log_stream(gdml_progress *pg)
{
    return pg->log ? pg->log : pg->out;
}

static gdml_progress_region *region_named(gdml_progress *pg, const char *name, size_t len)
{
    for (int r = 0; r < pg->n_regions; r++)
        if (strlen(pg->regions[r].name) == len && strncmp(pg->regions[r].name, name, len) == 0)
            return &pg->regions[r];
    return NULL;
}

/* "links=name:up:down,name:up:down ..." into the regions' byte counts. */
static void parse_links(gdml_progress *pg, const char *line, int64_t now_ms)
{
    const char *p = strstr(line, " links=");
    if (!p)
        return;
    p += 7;
    while (*p && *p != ' ') {
        char name[GDML_NAME_MAX];
        unsigned long long up, down;
        int used = 0;
        if (sscanf(p, "%63[^:]:%llu:%llu%n", name, &up, &down, &used) != 3)
            return;
        gdml_progress_region *g = region_named(pg, name, strlen(name));
        if (g) {
            g->up = g->up_base + up;
            g->down = g->down_base + down;
            /* Over a second or more, so that one version's burst is not the rate. */
            if (now_ms - g->rate_ms >= 1000) {
                g->up_rate = (double)(g->up - g->rate_up) * 1000.0 / (double)(now_ms - g->rate_ms);
                g->rate_up = g->up;
                g->rate_ms = now_ms;
            }
        }
        p += used;
        if (*p == ',')
            p++;
    }
}

/* "merged=a,b": the regions whose deltas version took. */
static void parse_merged(gdml_progress *pg, const char *line)
{
    const char *p = strstr(line, " merged=");
    if (!p)
        return;
    p += 8;
    while (*p && *p != ' ') {
        size_t len = strcspn(p, ", ");
        gdml_progress_region *g = region_named(pg, p, len);
        if (g)
            g->last_delta = pg->version;
        p += len;
        if (*p == ',')
            p++;
    }
}

/* " eps=E dp_delta=D" of a coordinator line, if it has them. */
static void parse_privacy(gdml_progress *pg, const char *line)
{
    const char *p = strstr(line, " eps=");
    double eps, delta;
    if (p && sscanf(p, " eps=%lf dp_delta=%lf", &eps, &delta) == 2) {
        pg->epsilon = eps;
        pg->dp_delta = delta;
    }
}

/* encoder = auto: each region's choice, from the line's " policy=" fields. */
static void parse_policies(gdml_progress *pg, const char *line)
{
    size_t pl = 0;
    pg->policies[0] = '\0';
    for (const char *q = strstr(line, " policy="); q && pl < sizeof pg->policies - 1;
         q = strstr(q + 1, " policy="))
        pl += (size_t)snprintf(pg->policies + pl, sizeof pg->policies - pl, "%s%.*s",
                               pl ? " " : "  policy ", (int)strcspn(q + 8, " \n"), q + 8);
}

/* The line scripts and tests parse: keep it byte for byte. */
static void print_version_line(const gdml_progress *pg)
{
    char held[48] = "";
    if (pg->val_regions > 0)
        snprintf(held, sizeof held, "  val %.3f (%u region%s)", pg->val_acc, pg->val_regions,
                 pg->val_regions == 1 ? "" : "s");
    char eps[48] = "";
    if (pg->dp_delta > 0)
        snprintf(eps, sizeof eps, "  eps=%.3f", pg->epsilon);
    fprintf(pg->out,
            "version %4llu  test accuracy %.4f  cross-DC %8.2f MB (up %.2f, down %.2f)  "
            "raw data %.2f MB (gzip %.2f MB)%s%s%s\n",
            (unsigned long long)pg->version, pg->accuracy, mb(pg->wan_up + pg->wan_down),
            mb(pg->wan_up), mb(pg->wan_down), mb(pg->raw_bytes), mb(pg->raw_gzip_bytes), held, eps,
            pg->policies);
    fflush(pg->out);
}

int gdml_progress_on_line(gdml_progress *pg, const char *line, int64_t now_ms)
{
    unsigned long long round, version, up, down;
    double acc, loss, train_loss;
    if (sscanf(line,
               "round=%llu version=%llu accuracy=%lf loss=%lf train_loss=%lf wan_up=%llu "
               "wan_down=%llu",
               &round, &version, &acc, &loss, &train_loss, &up, &down) == 7) {
        pg->round = round;
        pg->version = version;
        pg->accuracy = acc;
        pg->loss = loss;
        pg->train_loss = train_loss;
        pg->wan_up = pg->wan_up_base + up;
        pg->wan_down = pg->wan_down_base + down;
        pg->versions_reported++;
        if (isfinite(acc) && acc > pg->best_accuracy)
            pg->best_accuracy = acc;
        parse_links(pg, line, now_ms);
        parse_merged(pg, line);
        parse_privacy(pg, line);
        parse_policies(pg, line);
        const char *v = strstr(line, " val_acc=");
        double val_acc;
        unsigned val_regions;
        pg->val_regions = 0;
        if (v &&
            sscanf(v, " val_acc=%lf val_loss=%*f val_regions=%u", &val_acc, &val_regions) == 2) {
            pg->val_acc = val_acc;
            pg->val_regions = val_regions;
        }
        if (pg->style == GDML_PROGRESS_PLAIN)
            print_version_line(pg);
        pg->dirty = true;
        return GDML_PROGRESS_VERSION;
    }
    if (sscanf(line, "done versions=%*u wan_up=%llu wan_down=%llu", &up, &down) == 2) {
        pg->wan_up = pg->wan_up_base + up;
        pg->wan_down = pg->wan_down_base + down;
        parse_links(pg, line, now_ms);
        parse_privacy(pg, line);
        const char *stop = strstr(line, " privacy_stop=");
        pg->privacy_stop = stop && stop[14] == '1';
        pg->dirty = true;
        pg->done = true;
        return GDML_PROGRESS_DONE;
    }
    return GDML_PROGRESS_OTHER;
}

void gdml_progress_on_coordinator_restart(gdml_progress *pg)
{
    pg->wan_up_base = pg->wan_up;
    pg->wan_down_base = pg->wan_down;
    for (int i = 0; i < pg->n_regions; i++) {
        gdml_progress_region *g = &pg->regions[i];
        g->up_base = g->up;
        g->down_base = g->down;
    }
}

/* True if proc name is "PREFIX REGION" or, with dot, "PREFIX REGION.*". */
static bool proc_of(const char *proc, const char *prefix, const char *region, bool dot)
{
    size_t p = strlen(prefix), r = strlen(region);
    if (strncmp(proc, prefix, p) != 0 || proc[p] != ' ' || strncmp(proc + p + 1, region, r) != 0)
        return false;
    char after = proc[p + 1 + r];
    return dot ? after == '.' : after == '\0';
}

/* From what the launcher saw of its processes and what the coordinator merged. */
static gdml_region_state state_of(const gdml_progress *pg, const gdml_progress_region *g)
{
    if (g->server_restarting)
        return GDML_REGION_RESTARTING;
    if (g->last_delta == 0)
        return GDML_REGION_JOINING;
    if (pg->version >= g->last_delta + GDML_PROGRESS_STALL_VERSIONS)
        return GDML_REGION_STALLED;
    return GDML_REGION_CONNECTED;
}

static void update_states(gdml_progress *pg, const gdml_proc *procs, size_t n_procs)
{
    /* Once the last version is in, the processes exit as they should: the
     * display keeps what they were while training. */
    if (pg->done || (pg->rounds && pg->round >= pg->rounds))
        return;
    for (int r = 0; r < pg->n_regions; r++) {
        gdml_progress_region *g = &pg->regions[r];
        bool server_restarting = false;
        unsigned workers_up = 0;
        for (size_t i = 0; i < n_procs; i++) {
            /* A server that exited 0 (the job ending) is not restarting. */
            if (proc_of(procs[i].name, "server", g->name, false))
                server_restarting = procs[i].pid == 0 && procs[i].restart_at_ms != 0;
            else if (proc_of(procs[i].name, "worker", g->name, true) && procs[i].pid != 0)
                workers_up++;
        }
        if (server_restarting != g->server_restarting || workers_up != g->workers_up)
            pg->dirty = true;
        g->server_restarting = server_restarting;
        g->workers_up = workers_up;
    }
}

/* The terminal's width, so that no line wraps (a wrapped line would break the redraw). */
static int columns(FILE *out)
{
    struct winsize ws;
    if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col;
    return 80;
}

/* One line of the display, cut to the terminal's width, in colour if any. */
static void emit(gdml_progress *pg, int width, const char *color, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if ((int)strlen(text) > width - 1)
        text[width - 1] = '\0';
    if (pg->color && color)
        fprintf(pg->out, "%s%s%s\n", color, text, ESC_RESET);
    else
        fprintf(pg->out, "%s\n", text);
    pg->drawn_lines++;
}

static const char *state_color(gdml_region_state s)
{
    switch (s) {
    case GDML_REGION_CONNECTED:
        return ESC_GREEN;
    case GDML_REGION_STALLED:
        return ESC_YELLOW;
    case GDML_REGION_RESTARTING:
        return ESC_RED;
    default:
        return ESC_DIM;
    }
}

static void draw(gdml_progress *pg, int64_t now_ms, bool final)
{
    FILE *out = pg->out;
    if (pg->drawn_lines > 0)
        fprintf(out, "\033[%dA", pg->drawn_lines);
    fputs(ESC_CLEAR_BELOW, out);
    pg->drawn_lines = 0;
    /* What was printed meanwhile scrolls above the display. */
    if (pg->log) {
        fflush(pg->log);
        if (pg->log_len > pg->log_shown) {
            fwrite(pg->log_buf + pg->log_shown, 1, pg->log_len - pg->log_shown, out);
            pg->log_shown = pg->log_len;
        }
    }
    int width = columns(out);
    double secs = (double)(now_ms - pg->start_ms) / 1000.0;
    char bar[32];
    /* By round: a resumed run's versions go on from its store's. */
    int filled = pg->rounds ? (int)(20 * pg->round / pg->rounds) : 0;
    filled = filled > 20 ? 20 : filled;
    for (int i = 0; i < 20; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[20] = '\0';
    emit(pg, width, ESC_BOLD, "gdml-launch  %s %.1f s  version %llu, round %llu of %llu  [%s]",
         final ? "finished in" : "running", secs, (unsigned long long)pg->version,
         (unsigned long long)pg->round, (unsigned long long)pg->rounds, bar);
    char val[48] = "";
    if (pg->val_regions > 0)
        snprintf(val, sizeof val, "  validation %.4f (%u region%s)", pg->val_acc, pg->val_regions,
                 pg->val_regions == 1 ? "" : "s");
    emit(pg, width, NULL, "  test accuracy %.4f (best %.4f)%s", pg->accuracy, pg->best_accuracy,
         val);
    uint64_t wan = pg->wan_up + pg->wan_down;
    char ratio[64] = "";
    if (wan)
        snprintf(ratio, sizeof ratio, ": %.1fx (%.1fx gzipped) the cross-DC bytes",
                 (double)pg->raw_bytes / (double)wan, (double)pg->raw_gzip_bytes / (double)wan);
    emit(pg, width, NULL, "  cross-DC %.2f MB (up %.2f, down %.2f)", mb(wan), mb(pg->wan_up),
         mb(pg->wan_down));
    emit(pg, width, NULL, "  raw data %.2f MB (%.2f MB gzipped)%s", mb(pg->raw_bytes),
         mb(pg->raw_gzip_bytes), ratio);
    emit(pg, width, NULL, "  budget: %s%s", pg->budget, pg->policies);
    if (pg->dp_delta > 0)
        emit(pg, width, NULL, "  differential privacy: epsilon %.3f at delta %g per region",
             pg->epsilon, pg->dp_delta);
    emit(pg, width, ESC_DIM, "  %-12s %-10s %-8s %-11s %9s %9s %11s", "region", "state", "workers",
         "last delta", "up MB", "down MB", "up B/s");
    for (int r = 0; r < pg->n_regions; r++) {
        gdml_progress_region *g = &pg->regions[r];
        g->state = state_of(pg, g);
        char workers[24], last[24], rate[32];
        snprintf(workers, sizeof workers, "%u/%u", g->workers_up, g->workers);
        if (g->last_delta)
            snprintf(last, sizeof last, "v%llu", (unsigned long long)g->last_delta);
        else
            snprintf(last, sizeof last, "-");
        if (g->up_rate < 0)
            snprintf(rate, sizeof rate, "-");
        else if (pg->budget_up_rate)
            snprintf(rate, sizeof rate, "%.0f (%.0f%%)", g->up_rate,
                     100.0 * g->up_rate / (double)pg->budget_up_rate);
        else
            snprintf(rate, sizeof rate, "%.0f", g->up_rate);
        emit(pg, width, state_color(g->state), "  %-12s %-10s %-8s %-11s %9.3f %9.3f %11s", g->name,
             gdml_region_state_name(g->state), workers, last, mb(g->up), mb(g->down), rate);
    }
    fflush(out);
    pg->last_draw_ms = now_ms;
    pg->dirty = false;
}

void gdml_progress_tick(gdml_progress *pg, const gdml_proc *procs, size_t n_procs, int64_t now_ms)
{
    if (pg->style != GDML_PROGRESS_LIVE)
        return;
    update_states(pg, procs, n_procs);
    if (pg->log) {
        fflush(pg->log);
        if (pg->log_len > pg->log_shown)
            pg->dirty = true;
    }
    int64_t since = now_ms - pg->last_draw_ms;
    if ((pg->dirty && since >= GDML_PROGRESS_REDRAW_MS) || since >= CLOCK_REDRAW_MS)
        draw(pg, now_ms, false);
}

void gdml_progress_finish(gdml_progress *pg, bool redraw, int64_t now_ms)
{
    if (pg->style != GDML_PROGRESS_LIVE)
        return;
    if (redraw) {
        draw(pg, now_ms, true);
    } else if (pg->log) {
        fflush(pg->log);
        fwrite(pg->log_buf + pg->log_shown, 1, pg->log_len - pg->log_shown, pg->out);
        pg->log_shown = pg->log_len;
    }
    pg->drawn_lines = 0; /* it stays on the screen */
    fflush(pg->out);
}
