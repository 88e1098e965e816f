/*
 * controller.c - the WAN policy controller (controller.h): a ladder of
 * encodings from dense to sparse and low-bit, the budget that bounds which
 * of them may be used, and the two signals that move along it.
 *
 * The choice is (level, H): level = base + offset, where base is the densest
 * row whose message fits the budget at H without the workers waiting for
 * tokens, and offset is what the measurements have learned (a stalled loss
 * per byte moves sparser, a residual grown past the update moves denser or
 * lengthens H). docs/budget.md says why.
 */
#include "controller.h"

#include "chunk.h"
#include "codec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Densest first; estimates sort them again, so a new row goes anywhere. */
static const struct {
    const char *spec;
    double k;
} ladder[] = {
    {"dense", 1.0},     {"bf16", 1.0},       {"int8", 1.0},       {"int4", 1.0},
    {"int2", 1.0},      {"topk+int8", 0.25}, {"topk+int4", 0.25}, {"topk+int8", 0.1},
    {"topk+int4", 0.1}, {"topk+int4", 0.03}, {"topk+int4", 0.01},
};
#define LEVELS (sizeof ladder / sizeof ladder[0])

/* Rounds a choice is kept before the measurements may move it (hysteresis). */
#define MIN_HOLD 4
/* Rounds a signal must persist before it counts. */
#define PATIENCE 2
/* The residual has grown past the update: send more. Below LOW: sparser may go. */
#define RESIDUAL_HIGH 1.0
#define RESIDUAL_LOW 0.5
/* Loss progress per byte has stalled below this share of its best since the last change. */
#define STALL_SHARE 0.25
/* Weight of the newest round in the smoothed progress per byte. */
#define EMA_NEW 0.5

struct gdml_ctl {
    gdml_ctl_config cfg;
    size_t order[LEVELS];   /* ladder rows, largest estimate first */
    uint64_t bytes[LEVELS]; /* per row: estimate, then last measured */
    uint64_t dense_bytes;
    /* The choice: level = base + offset, clamped; H = base H * h_mul. */
    size_t level;
    uint64_t h, h_mul;
    int offset, max_offset; /* max_offset: sparser than this brought a residual back */
    unsigned rounds_held, high_residual, stalled;
    bool measured; /* the first choice was made without a step time: judge it at once */
    bool drift;    /* drift corrected and a dense row fits: dense rows, H fixed */
    double prev_loss, ppb, best_ppb; /* loss progress per byte, smoothed, and its best */
};

static uint64_t h_max(const gdml_ctl *c)
{
    uint64_t f = c->cfg.h_max_factor ? c->cfg.h_max_factor : 4;
    return c->cfg.h_base * f;
}

static bool has_budget(const gdml_ctl_config *cfg)
{
    return cfg->up_rate > 0 || cfg->down_rate > 0 || cfg->up_cap || cfg->down_cap ||
           cfg->target_ratio > 0;
}

/* The smaller of two limits where 0 means none. */
static double min_set(double a, double b)
{
    if (a <= 0)
        return b;
    if (b <= 0)
        return a;
    return a < b ? a : b;
}

/* The largest message any one send may be: a second of the smaller rate, the caps' remainder. */
static double hard_limit(const gdml_ctl *c, const gdml_ctl_measure *m)
{
    double lim = min_set(c->cfg.up_rate, c->cfg.down_rate);
    if (c->cfg.up_cap) {
        double left = (double)c->cfg.up_cap - (double)(m ? m->up_spent : 0);
        lim = min_set(lim, left > 1 ? left : 1);
    }
    if (c->cfg.down_cap) {
        double left = (double)c->cfg.down_cap - (double)(m ? m->down_spent : 0);
        lim = min_set(lim, left > 1 ? left : 1);
    }
    return lim; /* 0: unlimited */
}

/*
 * True if row (sorted index) i's message fits at H: within the hard limit
 * and the target ratio and, if soft, within what the slower rate refills
 * during the H steps of a round, so the workers never wait for tokens.
 */
static bool fits(const gdml_ctl *c, size_t i, uint64_t h, const gdml_ctl_measure *m, bool soft)
{
    double b = (double)c->bytes[c->order[i]];
    double hard = hard_limit(c, m);
    if (hard > 0 && b > hard)
        return false;
    if (c->cfg.target_ratio > 0 &&
        b / (double)h > (double)c->dense_bytes / ((double)c->cfg.h_base * c->cfg.target_ratio))
        return false;
    double rate = min_set(c->cfg.up_rate, c->cfg.down_rate);
    if (soft && rate > 0 && m && m->step_ms > 0 && b > rate * m->step_ms * (double)h / 1000.0)
        return false;
    return true;
}

/* The densest row that fits at H, or LEVELS if none does. */
static size_t densest_fit(const gdml_ctl *c, uint64_t h, const gdml_ctl_measure *m, bool soft)
{
    for (size_t i = 0; i < LEVELS; i++)
        if (fits(c, i, h, m, soft))
            return i;
    return LEVELS;
}

/* The budget's own choice: the densest row that fits at the shortest H that has one. */
static void base_choice(const gdml_ctl *c, const gdml_ctl_measure *m, size_t *level, uint64_t *h)
{
    for (uint64_t hh = c->cfg.h_base; hh <= h_max(c); hh *= 2) {
        size_t l = densest_fit(c, hh, m, true);
        if (l < LEVELS) {
            *level = l;
            *h = hh;
            return;
        }
    }
    /* Nothing fits without waiting: the densest that fits at all, at the longest H. */
    size_t l = densest_fit(c, h_max(c), m, false);
    *level = l < LEVELS ? l : LEVELS - 1;
    *h = h_max(c);
}

/* The choice from base, offset and h_mul: never denser than the budget allows. */
static void compose(const gdml_ctl *c, const gdml_ctl_measure *m, size_t *level, uint64_t *h)
{
    size_t base;
    uint64_t bh;
    base_choice(c, m, &base, &bh);
    uint64_t hh = bh * c->h_mul;
    if (hh > h_max(c))
        hh = h_max(c);
    long l = (long)base + c->offset;
    if (l < 0)
        l = 0;
    if (l > (long)LEVELS - 1)
        l = (long)LEVELS - 1;
    /* A denser row than base only where it fits at the longer H. */
    while ((size_t)l < LEVELS - 1 && !fits(c, (size_t)l, hh, m, (size_t)l < base))
        l++;
    *level = (size_t)l;
    *h = hh;
}

/* Dense rows: every entry sent, at some number of bits. */
static bool dense_row(const gdml_ctl *c, size_t level)
{
    return ladder[c->order[level]].k >= 1.0;
}

/*
 * Drift corrected: the sparsest dense row at the shortest H where it fits
 * the hard limits (not the refill: waiting for tokens is the price of a
 * fixed H), or dense f32 at h_base without a budget. False if none fits.
 */
static bool drift_choice(const gdml_ctl *c, const gdml_ctl_measure *m, size_t *level, uint64_t *h)
{
    if (!has_budget(&c->cfg)) {
        *level = 0;
        *h = c->cfg.h_base;
        return true;
    }
    for (uint64_t hh = c->cfg.h_base; hh <= h_max(c); hh *= 2)
        for (size_t i = LEVELS; i-- > 0;)
            if (dense_row(c, i) && fits(c, i, hh, m, false)) {
                *level = i;
                *h = hh;
                return true;
            }
    return false;
}

/* Drift corrected, after the residual grew: the next denser dense row that fits at H. */
static bool drift_denser(const gdml_ctl *c, const gdml_ctl_measure *m, size_t *level)
{
    for (size_t i = c->level; i-- > 0;)
        if (dense_row(c, i) && fits(c, i, c->h, m, false)) {
            *level = i;
            return true;
        }
    return false;
}

/* Insertion sort of the rows by their bytes, largest first (stable: ties keep table order). */
static void sort_rows(gdml_ctl *c)
{
    for (size_t i = 0; i < LEVELS; i++)
        c->order[i] = i;
    for (size_t i = 1; i < LEVELS; i++)
        for (size_t j = i; j > 0 && c->bytes[c->order[j - 1]] < c->bytes[c->order[j]]; j--) {
            size_t t = c->order[j];
            c->order[j] = c->order[j - 1];
            c->order[j - 1] = t;
        }
}

gdml_err gdml_ctl_new(const gdml_ctl_config *cfg, gdml_ctl **out, gdml_errmsg *e)
{
    if (cfg->n == 0 || cfg->h_base == 0)
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "the controller needs a model size and a sync_every above 0");
    gdml_ctl *c = calloc(1, sizeof *c);
    if (!c)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory");
    c->cfg = *cfg;
    uint64_t chunks = gdml_chunk_count(cfg->n);
    for (size_t i = 0; i < LEVELS; i++) {
        gdml_codec *codec = NULL;
        gdml_err err = gdml_codec_new(ladder[i].spec, cfg->n, 0, &codec, e);
        if (err) {
            free(c);
            return err;
        }
        size_t k = gdml_codec_sparse(codec) ? (size_t)((double)cfg->n * ladder[i].k) : cfg->n;
        if (k < 1)
            k = 1;
        c->bytes[i] =
            gdml_codec_max_bytes_chunked(codec, k, GDML_CHUNK_ELEMS) + chunks * cfg->overhead;
        gdml_codec_destroy(&codec);
    }
    c->dense_bytes = c->bytes[0];
    sort_rows(c);
    c->h_mul = 1;
    c->max_offset = (int)LEVELS;
    c->prev_loss = c->ppb = NAN;
    c->drift = cfg->drift_corrected && drift_choice(c, NULL, &c->level, &c->h);
    if (!c->drift)
        compose(c, NULL, &c->level, &c->h);
    *out = c;
    return GDML_OK;
}

void gdml_ctl_destroy(gdml_ctl **c)
{
    if (!c || !*c)
        return;
    free(*c);
    *c = NULL;
}

void gdml_ctl_set_budget(gdml_ctl *c, const gdml_ctl_config *cfg)
{
    c->cfg.up_rate = cfg->up_rate;
    c->cfg.down_rate = cfg->down_rate;
    c->cfg.up_cap = cfg->up_cap;
    c->cfg.down_cap = cfg->down_cap;
    c->cfg.target_ratio = cfg->target_ratio;
}

static gdml_ctl_choice choice_of(const gdml_ctl *c, size_t level, uint64_t h)
{
    size_t row = c->order[level];
    return (gdml_ctl_choice){
        .spec = ladder[row].spec, .k_fraction = ladder[row].k, .h = h, .level = level};
}

gdml_ctl_choice gdml_ctl_current(const gdml_ctl *c)
{
    return choice_of(c, c->level, c->h);
}

/* Updates the two signals from a round's measurements. */
static void observe(gdml_ctl *c, const gdml_ctl_measure *m)
{
    c->rounds_held++;
    if (!isnan(m->residual_ratio))
        c->high_residual = m->residual_ratio > RESIDUAL_HIGH ? c->high_residual + 1 : 0;
    if (!isnan(m->loss) && !isnan(c->prev_loss) && m->bytes > 0) {
        double ppb = (c->prev_loss - m->loss) / (double)m->bytes;
        c->ppb = isnan(c->ppb) ? ppb : EMA_NEW * ppb + (1 - EMA_NEW) * c->ppb;
        if (c->ppb > c->best_ppb)
            c->best_ppb = c->ppb;
        c->stalled = c->best_ppb > 0 && c->ppb < STALL_SHARE * c->best_ppb ? c->stalled + 1 : 0;
    }
    if (!isnan(m->loss))
        c->prev_loss = m->loss;
}

/* Resets what a change makes stale: the hold, the signals' counts, the best progress. */
static void changed(gdml_ctl *c)
{
    c->rounds_held = c->high_residual = c->stalled = 0;
    c->ppb = NAN;
    c->best_ppb = 0;
}

/*
 * Drift corrected: denser when the residual has grown (never sparser
 * again), and a new choice only when the budget no longer allows this one;
 * the whole ladder when no dense row fits any more.
 */
static const char *decide_drift(gdml_ctl *c, const gdml_ctl_measure *m)
{
    size_t l;
    if (c->rounds_held >= MIN_HOLD && c->high_residual >= PATIENCE && drift_denser(c, m, &l)) {
        c->level = l;
        return "residual";
    }
    if (fits(c, c->level, c->h, m, false))
        return "budget";
    uint64_t h;
    if (drift_choice(c, m, &l, &h)) {
        c->level = l;
        c->h = h;
        return "budget";
    }
    c->drift = false;
    compose(c, m, &c->level, &c->h);
    return "budget: no dense row fits";
}

bool gdml_ctl_decide(gdml_ctl *c, const gdml_ctl_measure *m, gdml_ctl_choice *out, char *why,
                     size_t cap)
{
    observe(c, m);
    size_t old_level = c->level;
    uint64_t old_h = c->h;
    const char *cause = "budget";
    bool settled = c->rounds_held >= MIN_HOLD;
    if (c->drift) {
        cause = decide_drift(c, m);
    } else if (settled && c->high_residual >= PATIENCE && c->level > 0) {
        /* The residual carries more than a message does: what is left out
         * piles up faster than it is sent. More entries or more bits, or,
         * where the budget has no room for them, the same at a longer H. */
        c->offset--;
        size_t l;
        uint64_t h;
        compose(c, m, &l, &h);
        while (l >= old_level && c->h_mul * 2 * c->cfg.h_base <= h_max(c)) {
            c->h_mul *= 2;
            compose(c, m, &l, &h);
        }
        if (l >= old_level)
            c->offset++; /* no room even at the longest H: stay */
        else
            c->max_offset = c->offset; /* sparser than this let the residual grow */
        cause = "residual";
    } else if (settled && c->stalled >= PATIENCE && has_budget(&c->cfg) &&
               c->offset < c->max_offset && c->level < LEVELS - 1 &&
               !(m->residual_ratio > RESIDUAL_LOW)) {
        /* The bytes buy little progress now, and the residual is small: fewer will do. */
        c->offset++;
        cause = "loss per byte";
    }
    /* Hysteresis for the budget's own choice too: step times are noisy, so a
     * choice that still fits the hard limit is kept until it has settled. */
    if (!c->drift && (settled || !c->measured || !fits(c, c->level, c->h, m, false)))
        compose(c, m, &c->level, &c->h);
    c->measured = true;
    *out = gdml_ctl_current(c);
    if (c->level == old_level && c->h == old_h)
        return false;
    if (why) {
        double lim = hard_limit(c, m);
        snprintf(why, cap,
                 "%s: loss %.4g, %.3g loss per MB, residual/update %.3g, %.3g ms a step, "
                 "message %llu B (limit %s%.0f B)",
                 cause, m->loss, c->ppb * 1e6, m->residual_ratio, m->step_ms,
                 (unsigned long long)gdml_ctl_bytes(c, c->level), lim > 0 ? "" : "none ",
                 lim > 0 ? lim : 0.0);
    }
    changed(c);
    return true;
}

void gdml_ctl_note_bytes(gdml_ctl *c, uint64_t wire)
{
    if (wire)
        c->bytes[c->order[c->level]] = wire;
}

uint64_t gdml_ctl_bytes(const gdml_ctl *c, size_t level)
{
    return level < LEVELS ? c->bytes[c->order[level]] : 0;
}

size_t gdml_ctl_levels(void)
{
    return LEVELS;
}

void gdml_ctl_format(const gdml_ctl_choice *ch, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%.3g/H%llu", ch->spec, ch->k_fraction, (unsigned long long)ch->h);
}

bool gdml_ctl_parse(const char *text, char *spec, size_t cap, double *k, uint64_t *h)
{
    char s[GDML_CODEC_NAME_MAX];
    double kk;
    unsigned long long hh;
    int used = 0;
    if (sscanf(text, "%31[a-z0-9+]/%lf/H%llu%n", s, &kk, &hh, &used) != 3 || text[used] ||
        !(kk > 0 && kk <= 1) || hh == 0 || !gdml_codec_spec_ok(s, NULL))
        return false;
    snprintf(spec, cap, "%s", s);
    *k = kk;
    *h = hh;
    return true;
}
