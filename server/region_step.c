/*
 * region_step.c - the regional server's step over its workers' gradients:
 * each chunk of a gradient added or applied as it arrives, a BSP step
 * streamed chunk by chunk, and the step's end.
 *
 * BSP. A gradient arrives in chunks; each is added, weighted by its batch,
 * to the step's sum as it arrives, and the samples that reached each chunk
 * are counted per chunk. The step divides each chunk by its own count, so a
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

#include <stdlib.h>
#include <string.h>

/* Forgets what worker slot w received of its current push, for its next one. */
void region_forget_push(worker_slot *w)
{
    if (w->counted) /* NULL in a slot whose first join ran out of memory */
        memset(w->counted, 0, REGION_CHUNK_WORDS * sizeof(uint64_t));
    gdml_transfer_reset(&w->in);
    w->weighed = false;
}

/* SCAFFOLD's correction of one step at rate lr, on entries [lo, lo + len):
 * along g - c_local + c_global. */
void region_scaffold_step(gdml_region *r, size_t lo, size_t len, float lr)
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
    if (r->c_local && !r->scaffold_wait)
        region_scaffold_step(r, lo, len, lr);
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
    return !region_ssp(r) && !r->pulled && r->state == REGION_TRAINING &&
           gdml_chunk_count(r->n) > 1 && !stream_abandoned(r) && !region_sync_may_end_step(r);
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
            region_send_frames(r, i, &u, now);
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
gdml_err region_stream_rest(gdml_region *r, gdml_wan_update *out)
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

/* Chunk c of worker w's gradient (its entries: the first k of r->ent_idx
 * and r->ent_val for a sparse model, else in r->scratch), weighing batch
 * samples, into the step: counted once per push. */
void region_take_chunk(gdml_region *r, int64_t now, worker_slot *w, uint64_t c, size_t k,
                       double batch)
{
    size_t lo = (size_t)(c * GDML_CHUNK_ELEMS), len = (size_t)gdml_chunk_len(r->n, lo);
    uint64_t bit = 1ull << (c % 64);
    if (w->counted[c / 64] & bit)
        return; /* it pushes again in the same step (it got its model again) */
    w->counted[c / 64] |= bit;
    if (!region_ssp(r) && !w->weighed) { /* a BSP sparse step's mean is over every sample pushed */
        w->weighed = true;
        r->step_batch += batch;
    }
    if (region_ssp(r) && r->pulled) { /* applied as it comes: the chunk is a mean over its batch */
        step_entries(r, k, (float)region_lr(r));
    } else if (region_ssp(r)) {
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
        region_forget_push(&r->wslots[i]);
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
    if (region_ssp(r)) {
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
            region_forget_push(&r->wslots[i]);
            region_send_model(r, i, now);
        }
}
