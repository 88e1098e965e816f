/*
 * budget.c - a sliding-window token bucket: the sends of the trailing window
 * are kept, oldest first, in a growable ring of (time, bytes), and a byte's
 * token comes back when its send leaves the window (t - window, t].
 *
 * Sends in the same millisecond share one ring entry, so with times that do
 * not go backwards the ring holds at most window_ms entries, and every call
 * is amortized O(1) except wait_ms, which walks the ring.
 */
#include "budget.h"

#include <assert.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#define DEFAULT_WINDOW_MS 1000
/* A year: long enough for any operator, short enough that now - window never overflows. */
#define MAX_WINDOW_MS (INT64_C(366) * 24 * 3600 * 1000)
#define MIN_RING 16

typedef struct send {
    int64_t time_ms;
    uint64_t bytes;
} send;

struct gdml_budget {
    double rate;       /* bytes per second; 0 = unlimited */
    uint64_t cap;      /* 0 = no cap */
    int64_t window_ms; /* resolved: never 0 */
    uint64_t limit;    /* floor(rate * window_ms / 1000): bytes allowed per window */
    uint64_t spent;

    send *ring; /* ring[(head + i) % size], i < len, oldest first */
    size_t size;
    size_t head;
    size_t len;
    uint64_t in_window; /* the sum of bytes over the ring */
};

static bool config_ok(const gdml_budget_config *cfg)
{
    /* Written so that NaN fails. */
    return cfg->rate >= 0 && isfinite(cfg->rate) && cfg->window_ms >= 0 &&
           cfg->window_ms <= MAX_WINDOW_MS;
}

static void apply_config(gdml_budget *b, const gdml_budget_config *cfg)
{
    b->rate = cfg->rate;
    b->cap = cfg->cap;
    b->window_ms = cfg->window_ms > 0 ? cfg->window_ms : DEFAULT_WINDOW_MS;
    double limit = floor(cfg->rate * (double)b->window_ms / 1000.0);
    /* 2^64 is exactly representable; anything at or above it means "no limit in practice". */
    b->limit = limit >= 18446744073709551616.0 ? UINT64_MAX : (uint64_t)limit;
}

gdml_err gdml_budget_new(const gdml_budget_config *cfg, gdml_budget **out)
{
    if (!config_ok(cfg))
        return GDML_ERR_INVALID;
    gdml_budget *b = calloc(1, sizeof(*b));
    if (!b)
        return GDML_ERR_NOMEM;
    apply_config(b, cfg);
    *out = b;
    return GDML_OK;
}

void gdml_budget_destroy(gdml_budget **bp)
{
    if (!bp || !*bp)
        return;
    free((*bp)->ring);
    free(*bp);
    *bp = NULL;
}

void gdml_budget_reconfigure(gdml_budget *b, const gdml_budget_config *cfg)
{
    /* The config module validates reloads; a bad one here is a bug, and keeping
     * the old budget is safer than applying it. */
    assert(config_ok(cfg));
    if (!config_ok(cfg))
        return;
    apply_config(b, cfg);
}

static send *ring_at(const gdml_budget *b, size_t i)
{
    return &b->ring[(b->head + i) & (b->size - 1)];
}

/* Drops the sends that are outside (now - window, now]. */
static void expire(gdml_budget *b, int64_t now_ms)
{
    int64_t oldest_kept = now_ms - b->window_ms; /* sends at or before it are out */
    while (b->len > 0 && b->ring[b->head].time_ms <= oldest_kept) {
        b->in_window -= b->ring[b->head].bytes;
        b->head = (b->head + 1) & (b->size - 1);
        b->len--;
    }
}

/* Adds a send at the new end of the ring; the size stays a power of two. */
static gdml_err ring_push(gdml_budget *b, int64_t time_ms, uint64_t bytes)
{
    if (b->len == b->size) {
        size_t size = b->size ? b->size * 2 : MIN_RING;
        if (size > SIZE_MAX / sizeof(send))
            return GDML_ERR_NOMEM;
        send *ring = malloc(size * sizeof(send));
        if (!ring)
            return GDML_ERR_NOMEM;
        for (size_t i = 0; i < b->len; i++)
            ring[i] = *ring_at(b, i);
        free(b->ring);
        b->ring = ring;
        b->size = size;
        b->head = 0;
    }
    *ring_at(b, b->len) = (send){.time_ms = time_ms, .bytes = bytes};
    b->len++;
    return GDML_OK;
}

static uint64_t cap_left(const gdml_budget *b)
{
    if (b->cap == 0)
        return GDML_BUDGET_UNLIMITED;
    return b->spent < b->cap ? b->cap - b->spent : 0;
}

uint64_t gdml_budget_available(gdml_budget *b, int64_t now_ms)
{
    expire(b, now_ms);
    uint64_t by_rate = GDML_BUDGET_UNLIMITED;
    if (b->rate > 0)
        /* A lowered rate can leave more in the window than it now allows. */
        by_rate = b->in_window < b->limit ? b->limit - b->in_window : 0;
    uint64_t by_cap = cap_left(b);
    return by_rate < by_cap ? by_rate : by_cap;
}

int64_t gdml_budget_wait_ms(gdml_budget *b, uint64_t bytes, int64_t now_ms)
{
    expire(b, now_ms);
    if (bytes > cap_left(b))
        return -1;
    if (b->rate == 0)
        return 0;
    if (bytes > b->limit)
        return -1;
    uint64_t most = b->limit - bytes; /* what the window may hold besides these bytes */
    uint64_t sum = b->in_window;
    if (sum <= most)
        return 0;
    /* Sends leave the window oldest first, each at its time plus the window. */
    for (size_t i = 0; i < b->len; i++) {
        const send *s = ring_at(b, i);
        sum -= s->bytes;
        if (sum <= most)
            return s->time_ms + b->window_ms - now_ms;
    }
    assert(!"the window's sum is not the sum of its sends");
    return -1;
}

gdml_err gdml_budget_spend(gdml_budget *b, uint64_t bytes, int64_t now_ms)
{
    if (bytes > gdml_budget_available(b, now_ms))
        return GDML_ERR_INVALID;
    /* Only an unlimited budget could get here, with more bytes than a count holds. */
    if (bytes > UINT64_MAX - b->in_window || bytes > UINT64_MAX - b->spent)
        return GDML_ERR_INVALID;
    if (bytes == 0)
        return GDML_OK;
    /* Kept even without a rate, so that a rate set later sees this window. A
     * time before the newest send is counted at the newest send's time: the
     * ring stays ordered, and the bytes stay in the window at least as long. */
    if (b->len > 0 && ring_at(b, b->len - 1)->time_ms >= now_ms) {
        ring_at(b, b->len - 1)->bytes += bytes;
    } else {
        gdml_err err = ring_push(b, now_ms, bytes);
        if (err != GDML_OK)
            return err;
    }
    b->in_window += bytes;
    b->spent += bytes;
    return GDML_OK;
}

uint64_t gdml_budget_spent(const gdml_budget *b)
{
    return b->spent;
}

gdml_budget_config gdml_budget_get_config(const gdml_budget *b)
{
    return (gdml_budget_config){.rate = b->rate, .cap = b->cap, .window_ms = b->window_ms};
}

uint64_t gdml_budget_in_window(gdml_budget *b, int64_t now_ms)
{
    expire(b, now_ms);
    return b->in_window;
}

void gdml_budget_restore(gdml_budget *b, uint64_t spent, uint64_t in_window, int64_t now_ms)
{
    b->len = b->head = 0;
    b->in_window = 0;
    if (in_window && ring_push(b, now_ms, in_window) == GDML_OK)
        b->in_window = in_window;
    b->spent = spent > in_window ? spent : in_window;
}
