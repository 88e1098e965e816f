/*
 * region_lan.c - the regional server's side facing its workers: joins,
 * gradients in chunks, the synchronous step over the workers still heard
 * from, and the model sent back.
 *
 * A gradient arrives in chunks; each is added, weighted by its batch, to
 * the step's sum as it arrives, and the samples that reached each chunk are
 * counted per chunk. The step divides each chunk by its own count, so a
 * worker that dies half-way through its push leaves an unbiased step
 * behind, and no per-worker copy of the model is ever held.
 *
 * Streaming a BSP step. A chunk is stepped as soon as every live worker's
 * gradient has reached it, and that chunk of the new model goes out to the
 * workers at once, while the rest of the gradients are still arriving; the
 * step's end steps and sends the chunks left. The server's work on a chunk
 * (summing, stepping, encoding, while it is in cache) then overlaps the
 * network moving the others, instead of following the last byte in. The
 * arithmetic is the same as stepping all chunks at the end. It streams only
 * when nothing can change the model between a chunk's step and the step's
 * end: a dense model of several chunks, and no sync due when the step ends
 * (any message from the coordinator but a heartbeat cancels the stream, and
 * the step's end then sends the whole model). A chunk that comes after its
 * chunk was stepped (from a worker that joined mid-step) is not added.
 *
 * SSP and ASP (server.lan_consistency). Each chunk of a gradient is applied
 * to the live model as it arrives (a worker's gradient is the mean over its
 * batch), and each worker has a clock: the gradients of it applied. The
 * region's step is the slowest live worker's clock. A worker whose gradient
 * is in gets the live model at once, unless its clock is more than s ahead
 * of the step, in which case it waits until the slowest catch up (SSP with
 * staleness s; ASP never waits). A worker that joins starts at the step, so
 * no one waits for a newcomer to catch up. Syncs come due on the step, as in
 * BSP.
 */
#include "region_impl.h"

#include "log.h"
#include "tensor.h"
#include "util.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BATCH 65536 /* worker.batch_size's bound */
/* Words of a bitmap over the chunks of the largest tensor. */
#define CHUNK_WORDS ((size_t)((GDML_MSG_MAX_ELEMS / GDML_CHUNK_ELEMS + 1 + 63) / 64))

/* Forgets what worker slot w received of its current push, for its next one. */
static void forget_push(worker_slot *w)
{
    if (w->counted) /* NULL in a slot whose first join ran out of memory */
        memset(w->counted, 0, CHUNK_WORDS * sizeof(uint64_t));
    gdml_transfer_reset(&w->in);
    w->weighed = false;
}

/* SCAFFOLD's correction of one step at rate lr, on entries [lo, lo + len):
 * along g - c_local + c_global. */
static void scaffold_step(gdml_region *r, size_t lo, size_t len, float lr)
{
    gdml_saxpy(len, -lr, r->c_global + lo, r->params + lo);
    gdml_saxpy(len, lr, r->c_local + lo, r->params + lo);
}

/*
 * A sparse model steps lazily, as LazyAdam does: only the keys a batch
 * touched move, with only their optimizer state, and the work is the keys',
 * not the model's. So a region's delta changes no more keys than its data
 * has, and a step of a million-feature model costs what its batches hold.
 */

/* SSP and ASP: the k entries just received, a mean over their batch, applied at once. */
static void step_entries(gdml_region *r, size_t k, float lr)
{
    for (size_t j = 0; j < k; j++) {
        uint32_t key = r->ent_idx[j];
        gdml_optim_step(r->opt, key, 1, &r->ent_val[j], lr, r->step + 1, r->params + key);
    }
}

/* BSP: adds batch x the k entries just received to the step's sum, noting their keys. */
static void add_entries(gdml_region *r, size_t k, float batch)
{
    for (size_t j = 0; j < k; j++) {
        uint32_t key = r->ent_idx[j];
        uint64_t bit = 1ull << (key % 64);
        if (!(r->touched_marks[key / 64] & bit)) {
            r->touched_marks[key / 64] |= bit;
            r->touched[r->n_touched++] = key;
        }
        r->grad_sum[key] += batch * r->ent_val[j];
    }
}

/* BSP: steps each key the step's pushes touched by their mean over all its samples. */
static void finish_entries(gdml_region *r, float lr)
{
    float scale = 1.0f / (float)r->step_batch;
    for (size_t j = 0; j < r->n_touched; j++) {
        uint32_t key = r->touched[j];
        float g = r->grad_sum[key] * scale;
        gdml_optim_step(r->opt, key, 1, &g, lr, r->step + 1, r->params + key);
        r->grad_sum[key] = 0.0f;
        r->touched_marks[key / 64] &= ~(1ull << (key % 64));
    }
    r->n_touched = 0;
}

/* SSP or ASP, not BSP. */
static bool ssp(const gdml_region *r)
{
    return r->cfg->lan_staleness > 0;
}

uint64_t region_samples(const gdml_region *r)
{
    uint64_t n = 0;
    for (size_t i = 0; i < r->workers.used; i++)
        if (r->workers.slots[i].state == GDML_MEMBER_JOINED ||
            r->workers.slots[i].state == GDML_MEMBER_SILENT)
            n += r->workers.slots[i].samples;
    return n;
}

/* The frames of the live model, as `type` tagged with step (what the
 * worker's next push must say), with the layout when WELCOME. */
static gdml_err model_frames(gdml_region *r, gdml_msg_type type, uint64_t step,
                             gdml_wan_update *out)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, type, r->cfg->name);
    h.seq = ++r->lan_seq;
    h.version = r->version;
    h.step = step;
    if (type == GDML_MSG_WELCOME)
        snprintf(h.text, sizeof h.text, "%s", r->layout_text);
    size_t k;
    gdml_errmsg e;
    if (r->pulled) { /* a sparse model's WELCOME tells the layout; the worker then pulls */
        assert(type == GDML_MSG_WELCOME);
        gdml_blob *f = NULL;
        gdml_err err = gdml_frame_header_only(&h, &f);
        if (!err && !(out->frames = malloc(sizeof *out->frames)))
            err = GDML_ERR_NOMEM;
        if (err) {
            gdml_blob_unref(&f);
            gdml_error("welcome_failed", "why=%s", gdml_strerror(err));
            return err;
        }
        out->frames[0] = f;
        out->n_frames = 1;
        out->wire = gdml_wire_bytes(gdml_blob_size(f), r->cfg->lan_curve);
        return GDML_OK;
    }
    gdml_err err = gdml_codec_select(r->dense, r->params, NULL, &k);
    if (!err)
        err = gdml_codec_frames(r->dense, &h, r->params, NULL, r->cfg->lan_curve, out, &e);
    if (err)
        gdml_error("model_frames_failed", "why=%s", gdml_strerror(err));
    return err;
}

static void send_frames(gdml_region *r, size_t i, const gdml_wan_update *u, int64_t now)
{
    for (size_t f = 0; f < u->n_frames; f++)
        gdml_actions_send(&r->actions, GDML_LINK_DOWN, &r->workers.slots[i].route, u->frames[f]);
    r->stats.lan_bytes_out += u->wire;
    r->wslots[i].sent_ms = now;
}

/* ---- streaming a BSP step ---- */

static bool chunk_done(const gdml_region *r, uint64_t c)
{
    return r->chunk_done[c / 64] & (1ull << (c % 64));
}

/* Steps chunk c by the mean over what reached it, at rate lr. */
static void step_chunk(gdml_region *r, uint64_t c, float lr)
{
    size_t lo = (size_t)(c * GDML_CHUNK_ELEMS), len = (size_t)gdml_chunk_len(r->n, lo);
    if (r->chunk_batch[c] > 0 && !r->pulled) {
        gdml_sscal(len, 1.0f / (float)r->chunk_batch[c], r->grad_sum + lo);
        gdml_optim_step(r->opt, lo, len, r->grad_sum + lo, lr, r->step + 1, r->params + lo);
        /* Cleared while it is in cache; a chunk no gradient reached is still zero. */
        gdml_szero(len, r->grad_sum + lo);
    }
    if (r->c_local)
        scaffold_step(r, lo, len, lr);
    r->chunk_batch[c] = 0;
}

/* True if a live worker's gradient of this step has yet to reach chunk c. */
static bool chunk_awaited(const gdml_region *r, uint64_t c)
{
    uint64_t bit = 1ull << (c % 64);
    for (size_t i = 0; i < r->workers.used; i++) {
        const worker_slot *w = &r->wslots[i];
        if (r->workers.slots[i].state == GDML_MEMBER_JOINED && !w->pushed && !w->excused &&
            !(w->counted[c / 64] & bit))
            return true;
    }
    return false;
}

/* Chunks of this step went out in a stream that was then abandoned: another
 * would lack them, so the step's end sends the whole model. */
static bool stream_abandoned(const gdml_region *r)
{
    return r->n_done > 0 && r->stream_seq == 0;
}

static bool stream_ok(const gdml_region *r)
{
    return !ssp(r) && !r->pulled && r->state == REGION_TRAINING && gdml_chunk_count(r->n) > 1 &&
           !stream_abandoned(r) && !region_sync_may_end_step(r);
}

void region_stream_cancel(gdml_region *r)
{
    r->stream_seq = 0;
    for (size_t i = 0; i < r->workers.used; i++)
        r->wslots[i].streamed = false;
}

/* The step is over: its chunks are all stepped and sent. */
static void stream_end(gdml_region *r)
{
    region_stream_cancel(r);
    memset(r->chunk_done, 0, (gdml_chunk_count(r->n) / 64 + 1) * sizeof(uint64_t));
    r->n_done = 0;
}

/* The header of the streamed MODEL of the step in progress. */
static void stream_header(const gdml_region *r, gdml_msg_header *h)
{
    gdml_msg_header_init(h, GDML_MSG_MODEL, r->cfg->name);
    h->seq = r->stream_seq;
    h->version = r->version;
    h->step = r->step + 1; /* what it is once the step ends */
}

/* Chunk c of the new model to the workers the stream goes to; the first
 * chunk of a step starts the stream, to every live worker that has its layout. */
static void stream_chunk(gdml_region *r, uint64_t c, int64_t now)
{
    if (!r->stream_seq) {
        r->stream_seq = ++r->lan_seq;
        for (size_t i = 0; i < r->workers.used; i++) {
            gdml_member_state st = r->workers.slots[i].state;
            r->wslots[i].streamed = (st == GDML_MEMBER_JOINED || st == GDML_MEMBER_SILENT) &&
                                    !r->wslots[i].needs_welcome;
        }
    }
    gdml_msg_header h;
    stream_header(r, &h);
    gdml_blob *f = NULL;
    uint64_t wire = 0;
    gdml_err err = gdml_codec_dense_frame(r->dense, &h, r->params, c, r->cfg->lan_curve, &f, &wire);
    if (err) { /* the step's end sends the whole model, or says why it cannot */
        region_stream_cancel(r);
        return;
    }
    gdml_wan_update u = {.frames = &f, .n_frames = 1, .wire = wire};
    for (size_t i = 0; i < r->workers.used; i++)
        if (r->wslots[i].streamed)
            send_frames(r, i, &u, now);
    gdml_blob_unref(&f);
}

/* A gradient chunk c was just added: step it and send it, if it is the last
 * one awaited of it and the step may stream. The step's last chunk is left
 * to the step's end. */
static void stream_maybe(gdml_region *r, uint64_t c, int64_t now)
{
    if (r->n_done + 1 >= gdml_chunk_count(r->n) || !stream_ok(r) || chunk_awaited(r, c))
        return;
    step_chunk(r, c, (float)region_lr(r));
    r->chunk_done[c / 64] |= 1ull << (c % 64);
    r->n_done++;
    stream_chunk(r, c, now);
}

/* The chunks of the streamed model not sent yet, once the step is over. */
static gdml_err stream_rest(gdml_region *r, gdml_wan_update *out)
{
    memset(out, 0, sizeof *out);
    uint64_t chunks = gdml_chunk_count(r->n);
    if (!(out->frames = calloc(chunks - r->n_done, sizeof *out->frames)))
        return GDML_ERR_NOMEM;
    gdml_msg_header h;
    stream_header(r, &h);
    h.step = r->step; /* it is over */
    for (uint64_t c = 0; c < chunks; c++) {
        if (chunk_done(r, c))
            continue;
        gdml_err err = gdml_codec_dense_frame(r->dense, &h, r->params, c, r->cfg->lan_curve,
                                              &out->frames[out->n_frames], &out->wire);
        if (err) {
            gdml_error("model_frames_failed", "why=%s", gdml_strerror(err));
            gdml_wan_update_fini(out);
            return err;
        }
        out->n_frames++;
    }
    return GDML_OK;
}

/*
 * Sparse kinds: the live model at the keys worker i pulled, as MODEL tagged
 * with step; acked names the pull it answers. False, and nothing sent, if
 * its pull is not in yet: model_due then sends it when the pull is.
 */
static bool send_pulled(gdml_region *r, size_t i, uint64_t step, int64_t now)
{
    worker_slot *w = &r->wslots[i];
    if (!w->keys_ready) {
        w->model_due = true;
        return false;
    }
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_MODEL, r->cfg->name);
    h.seq = ++r->lan_seq;
    h.version = r->version;
    h.step = step;
    h.acked = w->pull_seq;
    gdml_codec_params p = {.keys = w->keys, .n_keys = w->n_keys};
    gdml_wan_update u = {0};
    gdml_errmsg e;
    size_t k;
    gdml_err err = gdml_codec_select(r->pulled, r->params, &p, &k);
    if (!err)
        err = gdml_codec_frames(r->pulled, &h, r->params, NULL, r->cfg->lan_curve, &u, &e);
    if (err) {
        gdml_error("model_frames_failed", "keys=%zu why=%s", w->n_keys, gdml_strerror(err));
        return false;
    }
    send_frames(r, i, &u, now);
    gdml_wan_update_fini(&u);
    w->keys_ready = w->model_due = false;
    return true;
}

/* The live model to worker i alone, with the layout if it needs it. */
static void send_model(gdml_region *r, size_t i, int64_t now)
{
    worker_slot *w = &r->wslots[i];
    if (r->pulled && !w->needs_welcome) {
        send_pulled(r, i, r->step, now);
        return;
    }
    gdml_wan_update u = {0};
    gdml_msg_type type = w->needs_welcome ? GDML_MSG_WELCOME : GDML_MSG_MODEL;
    if (!model_frames(r, type, r->step, &u)) {
        send_frames(r, i, &u, now);
        w->streamed = false; /* a whole model, newer than any stream */
        w->needs_welcome = false;
        w->model_due = r->pulled != NULL; /* a sparse model's comes once it pulls */
    }
    gdml_wan_update_fini(&u);
}

/* SSP: the model to each live worker that is ready and not too far ahead,
 * tagged with its own clock (what its next push must say). */
static void ssp_broadcast(gdml_region *r, int64_t now)
{
    for (size_t i = 0; i < r->workers.used; i++) {
        gdml_member *m = &r->workers.slots[i];
        worker_slot *w = &r->wslots[i];
        if (m->state != GDML_MEMBER_JOINED && m->state != GDML_MEMBER_SILENT)
            continue;
        if (!w->needs_welcome && (!w->pushed || w->clock - r->step > r->cfg->lan_staleness))
            continue;
        if (r->pulled && !w->needs_welcome) {
            if (send_pulled(r, i, w->clock, now)) {
                w->pushed = false;
                w->tag = w->clock;
            }
            continue;
        }
        gdml_wan_update u = {0};
        gdml_msg_type type = w->needs_welcome ? GDML_MSG_WELCOME : GDML_MSG_MODEL;
        if (!model_frames(r, type, w->clock, &u)) {
            send_frames(r, i, &u, now);
            w->needs_welcome = w->pushed = false;
            w->tag = w->clock;
            w->model_due = r->pulled != NULL;
        }
        gdml_wan_update_fini(&u);
    }
}

void region_broadcast(gdml_region *r, int64_t now)
{
    if (ssp(r)) {
        ssp_broadcast(r, now);
        return;
    }
    /* One immutable set of frames goes to every worker; WELCOME is made
     * apart for a worker that needs the layout too. */
    gdml_wan_update model = {0}, welcome = {0}, rest = {0};
    bool have_model = false, have_welcome = false, have_rest = false;
    for (size_t i = 0; i < r->workers.used; i++) {
        gdml_member *m = &r->workers.slots[i];
        worker_slot *w = &r->wslots[i];
        if (m->state != GDML_MEMBER_JOINED && m->state != GDML_MEMBER_SILENT)
            continue;
        if (w->needs_welcome) {
            if (!have_welcome && model_frames(r, GDML_MSG_WELCOME, r->step, &welcome))
                continue;
            have_welcome = true;
            send_frames(r, i, &welcome, now);
            w->needs_welcome = false;
            w->model_due = r->pulled != NULL;
        } else if (r->pulled) {
            send_pulled(r, i, r->step, now);
        } else if (w->streamed) {
            if (!have_rest && stream_rest(r, &rest))
                continue;
            have_rest = true;
            send_frames(r, i, &rest, now);
        } else {
            if (!have_model && model_frames(r, GDML_MSG_MODEL, r->step, &model))
                continue;
            have_model = true;
            send_frames(r, i, &model, now);
        }
    }
    gdml_wan_update_fini(&model);
    gdml_wan_update_fini(&welcome);
    gdml_wan_update_fini(&rest);
    region_stream_cancel(r); /* whatever was streamed is whole now */
}

/* Once enough workers joined and the model is here: WELCOME to all. */
void region_maybe_start(gdml_region *r, int64_t now)
{
    if (r->state != REGION_JOINING)
        return;
    size_t joined = gdml_members_count(&r->workers, GDML_MEMBER_JOINED);
    if (joined < r->cfg->workers)
        return;
    if (!r->joined_coord) {
        region_hello(r, now); /* the sample count is known now */
        if (!r->joined_coord)
            return;
    }
    if (r->n == 0 && !region_start_early(r, now))
        return; /* WELCOME from the coordinator not here yet */
    if (r->welcomed)
        gdml_info("training", "workers=%zu samples=%llu version=%llu", joined,
                  (unsigned long long)region_samples(r), (unsigned long long)r->version);
    else
        gdml_info("training", "workers=%zu samples=%llu version=initial", joined,
                  (unsigned long long)region_samples(r));
    r->state = REGION_TRAINING;
    r->progress_ms = now;
    for (size_t i = 0; i < r->workers.used; i++)
        r->wslots[i].needs_welcome = true;
    region_broadcast(r, now);
}

static void on_hello(gdml_region *r, int64_t now, const gdml_rx *rx)
{
    const gdml_msg_header *h = &rx->header;
    if (!gdml_members_allowed(&r->workers, rx->name)) {
        region_reject(r, now, GDML_LINK_DOWN, rx, GDML_REASON_NOT_ALLOWED, true,
                      "'%s' is not one of region '%s''s workers", rx->name, r->cfg->name);
        return;
    }
    if (h->count == 0 || h->count > r->cfg->max_worker_samples) {
        region_reject(r, now, GDML_LINK_DOWN, rx, GDML_REASON_BOUNDS, true,
                      "HELLO declares %llu samples; allowed 1..%llu (server.max_worker_samples)",
                      (unsigned long long)h->count, (unsigned long long)r->cfg->max_worker_samples);
        return;
    }
    int i = gdml_members_find(&r->workers, rx->name);
    bool fresh = i < 0;
    if (fresh && (i = gdml_members_add(&r->workers, rx->name)) < 0) {
        region_reject(r, now, GDML_LINK_DOWN, rx, GDML_REASON_NOT_ALLOWED, true,
                      "all %zu worker slots of region '%s' are taken", r->workers.cap,
                      r->cfg->name);
        return;
    }
    gdml_member *m = &r->workers.slots[i];
    worker_slot *w = &r->wslots[i];
    w->clock = w->tag = r->step; /* SSP: a newcomer starts at the step, and nobody waits on it */
    if (ssp(r) && !fresh) {
        w->pushed = false;
        forget_push(w);
    }
    if (fresh && (gdml_transfer_init(&w->in, GDML_MSG_MAX_ELEMS) ||
                  gdml_transfer_init(&w->pull_in, GDML_MSG_MAX_ELEMS) ||
                  !(w->counted = calloc(CHUNK_WORDS, sizeof(uint64_t))))) {
        m->state = GDML_MEMBER_FREE;
        return;
    }
    bool same = m->state == GDML_MEMBER_JOINED && gdml_peer_eq(&m->route, &rx->peer);
    m->route = rx->peer;
    m->samples = h->count;
    m->heard_ms = now;
    if (!same)
        m->joined_ms = now;
    m->state = GDML_MEMBER_JOINED;
    r->stats.worker_joins += !same;
    gdml_info(fresh ? "worker_join" : "worker_rejoin", "worker=%s samples=%llu joined=%zu", m->name,
              (unsigned long long)h->count, gdml_members_count(&r->workers, GDML_MEMBER_JOINED));
    if (r->state == REGION_JOINING) {
        region_maybe_start(r, now);
        return;
    }
    /* More samples than the coordinator was told: tell it again. */
    if (region_samples(r) > r->hello_samples)
        region_hello(r, now);
    /* It restarted mid-training: it needs the layout and the live model, at
     * once if the current step waits for its gradient, else with the next. */
    /* What it sent of this step stays counted: a push it sends again is refused. */
    w->needs_welcome = true;
    if (r->state == REGION_TRAINING)
        send_model(r, (size_t)i, now);
}

/* SSP: worker i's gradient is in (or was refused while a sync held the
 * workers): it is ready for the next model, which it gets once it is not too
 * far ahead. Its chunks' record is cleared for its next push. */
static void ssp_ready(gdml_region *r, size_t i)
{
    worker_slot *w = &r->wslots[i];
    w->pushed = true;
    forget_push(w);
}

/* Worker i's push of this step was refused. BSP: the step goes on without
 * it. SSP and ASP: its clock moves on as if it had pushed, so that a worker
 * whose gradients are refused never holds the others back. */
static void excuse(gdml_region *r, int64_t now, int i)
{
    worker_slot *w = &r->wslots[i];
    gdml_transfer_reset(&w->in);
    if (ssp(r)) {
        w->clock++;
        ssp_ready(r, (size_t)i);
    } else {
        w->excused = true;
    }
    region_check_step(r, now);
}

static void on_push(gdml_region *r, int64_t now, int i, const gdml_rx *rx)
{
    const gdml_msg_header *h = &rx->header;
    gdml_member *m = &r->workers.slots[i];
    worker_slot *w = &r->wslots[i];
    uint64_t expect = ssp(r) ? w->tag : r->step;
    if (ssp(r) && r->state != REGION_TRAINING && h->step == expect && !w->pushed) {
        /* A sync holds the workers: this gradient is of a model the GLOBAL
         * replaces; the worker gets the new one when training goes on. */
        r->stats.rejected[GDML_REASON_STALE]++;
        ssp_ready(r, (size_t)i);
        return;
    }
    if (r->state != REGION_TRAINING || h->step != expect || w->pushed || w->excused) {
        bool tell = !w->pushed || h->step != expect;
        region_reject(r, now, GDML_LINK_DOWN, rx, GDML_REASON_STALE, tell && h->offset == 0,
                      "gradient for step %llu; the server expects step %llu from it%s",
                      (unsigned long long)h->step, (unsigned long long)expect,
                      w->pushed ? " and has this worker's gradient already" : "");
        return;
    }
    uint64_t most = m->samples < MAX_BATCH ? m->samples : MAX_BATCH;
    if (h->count == 0 || h->count > most) {
        region_reject(r, now, GDML_LINK_DOWN, rx, GDML_REASON_BOUNDS, true,
                      "PUSH weighs %llu samples; allowed 1..%llu (its HELLO declared %llu)",
                      (unsigned long long)h->count, (unsigned long long)most,
                      (unsigned long long)m->samples);
        excuse(r, now, i);
        return;
    }
    gdml_errmsg why;
    bool complete = false;
    size_t k = 0; /* a sparse model's: the chunk's entries, in r->ent_idx and r->ent_val */
    gdml_reason reason =
        r->pulled ? gdml_tensor_receive_entries(&w->in, h, rx->payload, r->n, m->name, r->ent_idx,
                                                r->ent_val, GDML_CHUNK_ELEMS, &k, &complete, &why)
                  : gdml_tensor_receive(&w->in, h, rx->payload, r->scratch, r->n, false, m->name,
                                        &complete, &why);
    if (reason == GDML_REASON_DUPLICATE || reason == GDML_REASON_STALE) {
        r->stats.rejected[reason]++;
        return;
    }
    if (reason != GDML_REASON_NONE) {
        region_reject(r, now, GDML_LINK_DOWN, rx, reason, true, "%s", why.text);
        excuse(r, now, i);
        return;
    }
    size_t lo = (size_t)h->offset, len = (size_t)gdml_chunk_len(h->total, h->offset);
    double norm = r->pulled ? gdml_snrm2(k, r->ent_val) : gdml_snrm2(len, r->scratch + lo);
    if (!(norm <= r->cfg->max_grad_norm)) {
        region_reject(r, now, GDML_LINK_DOWN, rx, GDML_REASON_NORM, true,
                      "gradient chunk at %zu has norm %.4g, above server.max_grad_norm = %.4g", lo,
                      norm, r->cfg->max_grad_norm);
        excuse(r, now, i);
        return;
    }
    /* A worker that pushes again in the same step (it got its model again)
     * counts each chunk once. */
    uint64_t c = lo / GDML_CHUNK_ELEMS, bit = 1ull << (c % 64);
    double batch = (double)h->count;
    if (!(w->counted[c / 64] & bit)) {
        w->counted[c / 64] |= bit;
        if (!ssp(r) && !w->weighed) { /* a BSP sparse step's mean is over every sample pushed */
            w->weighed = true;
            r->step_batch += batch;
        }
        if (ssp(r) && r->pulled) { /* applied as it comes: the chunk is a mean over its batch */
            step_entries(r, k, (float)region_lr(r));
        } else if (ssp(r)) {
            gdml_optim_step(r->opt, lo, len, r->scratch + lo, (float)region_lr(r), r->step + 1,
                            r->params + lo);
        } else if (r->pulled) {
            add_entries(r, k, (float)batch);
            r->chunk_batch[c] += batch;
        } else if (!chunk_done(r, c)) {
            gdml_saxpy(len, (float)batch, r->scratch + lo, r->grad_sum + lo);
            r->chunk_batch[c] += batch;
            stream_maybe(r, c, now);
        }
    }
    if (!complete)
        return;
    if (ssp(r)) {
        if (r->c_local)
            scaffold_step(r, 0, r->n, (float)region_lr(r));
        w->clock++;
        ssp_ready(r, (size_t)i);
    } else {
        w->pushed = true;
    }
    if (!isnan(h->metric)) {
        r->loss_sum += h->metric * batch;
        r->loss_weight += batch;
    }
    region_take_score(r, now, i, rx);
    r->stats.pushes++;
    region_check_step(r, now);
}

/* Adds the k keys of one chunk of worker i's pull; false if they do not fit in memory. */
static bool take_keys(worker_slot *w, const uint32_t *keys, size_t k)
{
    if (w->n_keys + k > w->cap_keys) {
        size_t cap = w->cap_keys ? w->cap_keys : 4096;
        while (cap < w->n_keys + k)
            cap *= 2;
        uint32_t *grown = realloc(w->keys, cap * sizeof *grown);
        if (!grown)
            return false;
        w->keys = grown;
        w->cap_keys = cap;
    }
    memcpy(w->keys + w->n_keys, keys, k * sizeof *keys);
    w->n_keys += k;
    return true;
}

/*
 * Sparse kinds: a chunk of worker i's PULL, the keys its next batch touches.
 * Once the pull is whole, the model at those keys goes to it if it waits for
 * one: BSP, when its gradient of the step is not in; SSP, when the step's
 * model was due before the pull was.
 */
static void on_pull(gdml_region *r, int64_t now, int i, const gdml_rx *rx)
{
    const gdml_msg_header *h = &rx->header;
    gdml_member *m = &r->workers.slots[i];
    worker_slot *w = &r->wslots[i];
    if (h->encoding != GDML_ENC_CODEC) {
        region_reject(r, now, GDML_LINK_DOWN, rx, GDML_REASON_TENSOR, true,
                      "a PULL of a sparse model names its keys as tensor chunks");
        return;
    }
    gdml_errmsg why;
    bool complete = false;
    size_t k = 0;
    gdml_reason reason =
        gdml_tensor_receive_entries(&w->pull_in, h, rx->payload, r->n, m->name, r->ent_idx,
                                    r->ent_val, GDML_CHUNK_ELEMS, &k, &complete, &why);
    if (reason == GDML_REASON_DUPLICATE || reason == GDML_REASON_STALE) {
        r->stats.rejected[reason]++;
        return;
    }
    if (reason != GDML_REASON_NONE) {
        region_reject(r, now, GDML_LINK_DOWN, rx, reason, true, "%s", why.text);
        return;
    }
    if (h->seq != w->pull_seq) { /* a newer pull: its keys replace the last one's */
        w->pull_seq = h->seq;
        w->n_keys = 0;
        w->keys_ready = false;
    }
    if (!take_keys(w, r->ent_idx, k)) {
        gdml_transfer_reset(&w->pull_in);
        w->n_keys = 0;
        gdml_ratelog_note(r->log, now, GDML_LOG_WARN, "pull_refused", m->name, "refused", "why=%s",
                          "no memory for the keys of its pull");
        return;
    }
    if (!complete)
        return;
    for (size_t j = 1; j < w->n_keys; j++)
        if (w->keys[j] < w->keys[j - 1]) { /* chunks came out of order */
            gdml_sort_u32(w->keys, w->n_keys);
            break;
        }
    w->keys_ready = true;
    if (ssp(r)) {
        if (w->model_due && !w->needs_welcome && send_pulled(r, (size_t)i, w->clock, now)) {
            w->pushed = false;
            w->tag = w->clock;
        }
    } else if (r->state == REGION_TRAINING && !w->pushed && !w->excused && !w->needs_welcome) {
        send_pulled(r, (size_t)i, r->step, now);
    }
}

/* All gradients of the step are in: average each chunk over what reached it, step, move on. */
static void finish_step(gdml_region *r, int64_t now)
{
    float lr = (float)region_lr(r);
    /* A sparse model's mean is over every sample of the step: its pushes
     * leave out the keys (and chunks) their batch does not touch. */
    if (r->pulled)
        finish_entries(r, lr);
    for (uint64_t c = 0; c < gdml_chunk_count(r->n); c++)
        if (!chunk_done(r, c))
            step_chunk(r, c, lr);
    r->step_batch = 0;
    for (size_t i = 0; i < r->workers.used; i++) {
        r->wslots[i].pushed = r->wslots[i].excused = false;
        forget_push(&r->wslots[i]);
    }
    r->step++;
    r->steps_since_sync++;
    r->progress_ms = now;
    region_after_step(r, now); /* its broadcast sends a streamed model's rest */
    stream_end(r);
}

/* SSP: the step is the slowest live worker's clock; each step it moves on is
 * one step of the region (a sync may come due); then the ready workers that
 * are not too far ahead get the model. */
static void ssp_check_step(gdml_region *r, int64_t now)
{
    uint64_t slowest = UINT64_MAX;
    for (size_t i = 0; i < r->workers.used; i++)
        if (r->workers.slots[i].state == GDML_MEMBER_JOINED && r->wslots[i].clock < slowest)
            slowest = r->wslots[i].clock;
    if (slowest == UINT64_MAX)
        return; /* no live worker */
    if (r->step >= slowest) {
        region_broadcast(r, now);
        return;
    }
    r->step++; /* a push moves a clock by one: the slowest moves by one at most */
    r->steps_since_sync++;
    r->progress_ms = now;
    region_after_step(r, now); /* ends with region_broadcast unless a sync holds them */
}

void region_check_step(gdml_region *r, int64_t now)
{
    if (r->state != REGION_TRAINING)
        return;
    if (ssp(r)) {
        ssp_check_step(r, now);
        return;
    }
    size_t in = 0;
    for (size_t i = 0; i < r->workers.used; i++) {
        gdml_member_state st = r->workers.slots[i].state;
        if (r->wslots[i].pushed || r->wslots[i].excused)
            in++; /* an excused worker's step goes on, without its gradient */
        else if (st == GDML_MEMBER_JOINED)
            return; /* still waiting for it */
    }
    if (in == 0)
        return;
    for (uint64_t c = 0; c < gdml_chunk_count(r->n); c++)
        if (r->chunk_batch[c] > 0 || chunk_done(r, c)) {
            finish_step(r, now);
            return;
        }
    /* Every gradient of the step was refused: the step is not taken (it
     * would count toward the sync with nothing learned), and each refused
     * worker is sent the model again to try anew. */
    for (size_t i = 0; i < r->workers.used; i++)
        if (r->wslots[i].excused) {
            r->wslots[i].excused = false;
            forget_push(&r->wslots[i]);
            send_model(r, i, now);
        }
}

void region_on_worker(gdml_region *r, int64_t now, const gdml_rx *rx)
{
    const gdml_msg_header *h = &rx->header;
    r->stats.lan_bytes_in += rx->wire_bytes;
    if (h->type == GDML_MSG_HELLO) {
        on_hello(r, now, rx);
        return;
    }
    int i = gdml_members_find(&r->workers, rx->name);
    if (i < 0 || !gdml_members_route_ok(&r->workers, i, &rx->peer)) {
        region_reject(r, now, GDML_LINK_DOWN, rx, GDML_REASON_NOT_MEMBER, true, "send HELLO first");
        return;
    }
    gdml_member *m = &r->workers.slots[i];
    m->heard_ms = now;
    if (m->state == GDML_MEMBER_SILENT) {
        m->state = GDML_MEMBER_JOINED;
        gdml_info("worker_back", "worker=%s", m->name);
    }
    switch (h->type) {
    case GDML_MSG_PUSH:
        on_push(r, now, i, rx);
        break;
    case GDML_MSG_HEARTBEAT:
        break;
    case GDML_MSG_PULL:
        if (r->pulled) {
            on_pull(r, now, i, rx);
        } else if (r->state == REGION_TRAINING && !r->wslots[i].pushed) {
            r->wslots[i].needs_welcome = true; /* it lost its model: send it again */
            send_model(r, (size_t)i, now);
        }
        break;
    case GDML_MSG_LEAVE:
        gdml_info("worker_leave", "worker=%s why=%s", m->name, h->text);
        m->state = GDML_MEMBER_LEFT;
        region_check_step(r, now);
        break;
    case GDML_MSG_ERROR:
        gdml_ratelog_note(r->log, now, GDML_LOG_WARN, "peer_error", m->name, "reports",
                          "code=%s why=%s", gdml_reason_name(h->code), h->text);
        break;
    default:
        region_reject(r, now, GDML_LINK_DOWN, rx, GDML_REASON_UNEXPECTED, true,
                      "a regional server takes HELLO, PUSH, PULL, HEARTBEAT, LEAVE and ERROR "
                      "from workers");
        break;
    }
}
