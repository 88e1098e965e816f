/*
 * region_lan.c - the regional server's side facing its workers: joins,
 * gradients received chunk by chunk and checked, pulls of a sparse model's
 * keys, and the model sent back. What a checked chunk does to the step is
 * region_step.c's.
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

void region_send_frames(gdml_region *r, size_t i, const gdml_wan_update *u, int64_t now)
{
    for (size_t f = 0; f < u->n_frames; f++)
        gdml_actions_send(&r->actions, GDML_LINK_DOWN, &r->workers.slots[i].route, u->frames[f]);
    r->stats.lan_bytes_out += u->wire;
    r->wslots[i].sent_ms = now;
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
    region_send_frames(r, i, &u, now);
    gdml_wan_update_fini(&u);
    w->keys_ready = w->model_due = false;
    return true;
}

/* The live model to worker i alone, with the layout if it needs it. */
void region_send_model(gdml_region *r, size_t i, int64_t now)
{
    worker_slot *w = &r->wslots[i];
    if (r->pulled && !w->needs_welcome) {
        send_pulled(r, i, r->step, now);
        return;
    }
    gdml_wan_update u = {0};
    gdml_msg_type type = w->needs_welcome ? GDML_MSG_WELCOME : GDML_MSG_MODEL;
    if (!model_frames(r, type, r->step, &u)) {
        region_send_frames(r, i, &u, now);
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
            region_send_frames(r, i, &u, now);
            w->needs_welcome = w->pushed = false;
            w->tag = w->clock;
            w->model_due = r->pulled != NULL;
        }
        gdml_wan_update_fini(&u);
    }
}

void region_broadcast(gdml_region *r, int64_t now)
{
    if (region_ssp(r)) {
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
            region_send_frames(r, i, &welcome, now);
            w->needs_welcome = false;
            w->model_due = r->pulled != NULL;
        } else if (r->pulled) {
            send_pulled(r, i, r->step, now);
        } else if (w->streamed) {
            if (!have_rest && region_stream_rest(r, &rest))
                continue;
            have_rest = true;
            region_send_frames(r, i, &rest, now);
        } else {
            if (!have_model && model_frames(r, GDML_MSG_MODEL, r->step, &model))
                continue;
            have_model = true;
            region_send_frames(r, i, &model, now);
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
    if (region_ssp(r) && !fresh) {
        w->pushed = false;
        region_forget_push(w);
    }
    if (fresh && (gdml_transfer_init(&w->in, GDML_MSG_MAX_ELEMS) ||
                  gdml_transfer_init(&w->pull_in, GDML_MSG_MAX_ELEMS) ||
                  !(w->counted = calloc(REGION_CHUNK_WORDS, sizeof(uint64_t))))) {
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
        region_send_model(r, (size_t)i, now);
}

/* SSP: worker i's gradient is in (or was refused while a sync held the
 * workers): it is ready for the next model, which it gets once it is not too
 * far ahead. Its chunks' record is cleared for its next push. */
static void ssp_ready(gdml_region *r, size_t i)
{
    worker_slot *w = &r->wslots[i];
    w->pushed = true;
    region_forget_push(w);
}

/* Worker i's push of this step was refused. BSP: the step goes on without
 * it. SSP and ASP: its clock moves on as if it had pushed, so that a worker
 * whose gradients are refused never holds the others back. */
static void excuse(gdml_region *r, int64_t now, int i)
{
    worker_slot *w = &r->wslots[i];
    gdml_transfer_reset(&w->in);
    if (region_ssp(r)) {
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
    uint64_t expect = region_ssp(r) ? w->tag : r->step;
    if (region_ssp(r) && r->state != REGION_TRAINING && h->step == expect && !w->pushed) {
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
    uint64_t c = lo / GDML_CHUNK_ELEMS;
    double batch = (double)h->count;
    region_take_chunk(r, now, w, c, k, batch);
    if (!complete)
        return;
    if (region_ssp(r)) {
        if (r->c_local)
            region_scaffold_step(r, 0, r->n, (float)region_lr(r));
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
    if (region_ssp(r)) {
        if (w->model_due && !w->needs_welcome && send_pulled(r, (size_t)i, w->clock, now)) {
            w->pushed = false;
            w->tag = w->clock;
        }
    } else if (r->state == REGION_TRAINING && !w->pushed && !w->excused && !w->needs_welcome) {
        send_pulled(r, (size_t)i, r->step, now);
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
            region_send_model(r, (size_t)i, now);
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
