/*
 * coord_down.c - what the coordinator sends each region: WELCOME and
 * GLOBAL as encoded updates through the region's downlink, heartbeats and
 * STOP as control frames under the same budget, and advisory ERRORs, which
 * are rate-limited so that a flood of bad frames is never answered in kind.
 */
#include "coord_impl.h"

#include "log.h"
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Advisory ERRORs: the same reason to the same connection at most this often. */
#define TELL_EVERY_MS 1000
/* Versions after a catch-up whose GLOBALs carry no lr * H (note_catch_up). */
#define COORD_SCAFFOLD_QUIET 5

gdml_err coord_slot_init(gdml_coord *c, coord_slot *s, const char *name, int index, gdml_errmsg *e)
{
    const gdml_coord_config *cfg = c->cfg;
    uint64_t merged = s->merged_seq; /* known from a resumed version, if any */
    memset(s, 0, sizeof *s);
    s->merged_seq = merged;
    /* auto: the region's choice, once it names one; until then the sparsest,
     * so that a WELCOME (a change from the initial model) fits any budget */
    bool follow = strcmp(cfg->encoder, "auto") == 0;
    gdml_wan_config wc = {.encoder = follow ? "topk+int4" : cfg->encoder,
                          .k_fraction = follow ? 0.01 : cfg->k_fraction,
                          .threshold = cfg->threshold,
                          .min_message_bytes = cfg->min_message_bytes,
                          .peer = name,
                          .direction = "down",
                          .byte_log = cfg->byte_log,
                          .curve = cfg->curve};
    s->delta = malloc(c->n * sizeof(float));
    s->view = malloc(c->n * sizeof(float));
    gdml_err err = GDML_OK;
    if (!s->delta || !s->view)
        err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for region '%s'", name);
    if (!err && gdml_transfer_init(&s->in, c->n))
        err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for region '%s'", name);
    if (!err)
        err = gdml_wan_new(&wc, &s->down, e);
    if (!err)
        err = gdml_wan_start(s->down, c->n, cfg->model_seed * 1000 + (uint64_t)index, e);
    if (err)
        coord_slot_fini(s);
    return err;
}

/*
 * A DELTA's text names its region's policy when the controller chose it
 * (controller.h): shown on the progress line, and, with coordinator.encoder
 * = auto, the downlink's encoder too, so one budget file steers both
 * directions. Text that is not a policy is ignored (it is the peer's).
 */
void coord_follow_policy(gdml_coord *c, coord_slot *s, const char *name, const gdml_msg_header *h)
{
    char spec[GDML_CODEC_NAME_MAX];
    double k;
    uint64_t hh;
    if (strlen(h->text) >= sizeof s->policy ||
        !gdml_ctl_parse(h->text, spec, sizeof spec, &k, &hh) || strcmp(h->text, s->policy) == 0)
        return;
    snprintf(s->policy, sizeof s->policy, "%.*s", (int)sizeof s->policy - 1, h->text);
    if (strcmp(c->cfg->encoder, "auto") != 0)
        return;
    gdml_errmsg e;
    if (gdml_wan_set_encoder(s->down, spec, k, gdml_wan_seed(s->down), &e))
        gdml_warn("downlink_policy_kept", "region=%s why=%s", name, e.text);
    else
        gdml_info("downlink_policy", "region=%s policy=%s", name, s->policy);
}

void coord_slot_fini(coord_slot *s)
{
    free(s->delta);
    free(s->view);
    gdml_transfer_fini(&s->in);
    gdml_wan_destroy(&s->down);
    s->delta = s->view = NULL;
}

/* The header of a WELCOME or GLOBAL to region i. */
static void down_header(const gdml_coord *c, int i, gdml_msg_type type, gdml_msg_header *h)
{
    gdml_msg_header_init(h, type, "coordinator");
    h->seq = c->seq + 1;
    h->version = c->version;
    if (type == GDML_MSG_GLOBAL && c->version > c->scaffold_quiet_until)
        h->lr_steps = fmin(c->lr_steps * gdml_merge_scaffold_scale(c->merge),
                           GDML_MSG_MAX_LR_STEPS); /* within what a header may carry */
    if (type == GDML_MSG_WELCOME) {
        snprintf(h->text, sizeof h->text, "%s", c->layout_text);
        h->count = c->cfg->model_seed;
        h->acked = c->slots[i].merged_seq;
    }
}

/*
 * The downlink budget a region asks for travels in its HELLO and DELTA
 * headers. A budget under which no useful update could ever reach the region
 * is not applied: the old one stays and e says why.
 */
gdml_err coord_down_budget(gdml_coord *c, coord_slot *s, const gdml_msg_header *from, int64_t now,
                           gdml_errmsg *e)
{
    gdml_budget_config b = {.rate = (double)from->down_rate, .cap = from->down_cap};
    gdml_msg_header h; /* WELCOME is the largest header the downlink sends */
    down_header(c, (int)(s - c->slots), GDML_MSG_WELCOME, &h);
    h.seq = h.version = h.acked = h.count = GDML_MSG_MAX_U48;
    return gdml_wan_try_budget(s->down, &b, &h, now, e);
}

void coord_welcome(gdml_coord *c, coord_slot *s, int64_t now)
{
    /* It starts from the initial model; WELCOME brings it the rest. The
     * initial model is made again rather than kept: one copy of the model
     * less, for the time of drawing it once per join. */
    c->ops->init(&c->cfg->layout, s->view, c->cfg->model_seed);
    s->view_version = 0;
    s->pending = GDML_MSG_WELCOME;
    s->retry_ms = now;
    coord_flush_down(c, now);
}

/* Queues every frame of an update to member i. */
static void send_frames(gdml_coord *c, int i, gdml_blob *const *frames, size_t n, int64_t now)
{
    for (size_t f = 0; f < n; f++)
        if (gdml_actions_send(&c->actions, GDML_LINK_DOWN, &c->members.slots[i].route, frames[f]))
            gdml_error("queue_failed", "region=%s why=%s", c->members.slots[i].name,
                       "out of memory queueing a frame");
    c->slots[i].sent_ms = now;
}

bool coord_send_control(gdml_coord *c, int i, gdml_msg_type type, const char *text, int64_t now)
{
    coord_slot *s = &c->slots[i];
    gdml_msg_header h;
    gdml_msg_header_init(&h, type, "coordinator");
    h.seq = c->seq + 1;
    h.version = c->version;
    snprintf(h.text, sizeof h.text, "%s", text ? text : "");
    gdml_blob *f = NULL;
    if (gdml_frame_header_only(&h, &f))
        return false;
    size_t len;
    gdml_blob_view(f, &len);
    bool sent = gdml_wan_admit(s->down, type, len, now) == 0;
    if (sent) {
        c->seq++;
        send_frames(c, i, &f, 1, now);
    }
    gdml_blob_unref(&f);
    return sent;
}

/* The region's budget can never carry what it needs: it stops, alone. */
static void stop_region(gdml_coord *c, int i, const char *why, int64_t now)
{
    gdml_member *m = &c->members.slots[i];
    gdml_warn("region_stopped", "region=%s why=%s", m->name, why);
    char text[GDML_MSG_TEXT_MAX];
    snprintf(text, sizeof text, "stopped by the coordinator: %.200s", why);
    coord_send_control(c, i, GDML_MSG_STOP, text, now); /* if the budget still has room */
    m->state = GDML_MEMBER_STOPPED;
    c->slots[i].pending = 0;
    coord_try_merge(c, now);
}

/*
 * A region that gets the model whole (WELCOME of a trained version) or a
 * GLOBAL spanning versions it missed moves the global model by a jump, and
 * error feedback pays every region's share of it off over the GLOBALs after.
 * SCAFFOLD's variates, derived from those GLOBALs, would keep it as a bias
 * (docs/consistency.md): for COORD_SCAFFOLD_QUIET versions no GLOBAL carries
 * lr * H, and every region trains uncorrected meanwhile.
 */
static void note_catch_up(gdml_coord *c, const coord_slot *s)
{
    bool whole = s->pending == GDML_MSG_WELCOME && c->version > 0;
    bool spans = s->pending == GDML_MSG_GLOBAL && s->view_version + 1 < c->version;
    if ((whole || spans) && c->scaffold_quiet_until < c->version + COORD_SCAFFOLD_QUIET)
        c->scaffold_quiet_until = c->version + COORD_SCAFFOLD_QUIET;
}

void coord_flush_down(gdml_coord *c, int64_t now)
{
    /* c->next holds the version being committed; what is due goes once it is
     * committed (gdml_coord_on_committed flushes), and is then newer. */
    if (c->phase == COORD_COMMITTING)
        return;
    for (size_t i = 0; i < c->members.used; i++) {
        coord_slot *s = &c->slots[i];
        gdml_member *m = &c->members.slots[i];
        /* Nothing goes to a silent region: what it lacks waits until it is
         * heard again, so that its view stays what it really holds. */
        if (!s->pending || m->state != GDML_MEMBER_JOINED)
            continue;
        if (now < s->retry_ms)
            continue;
        gdml_ssub(c->n, c->global, s->view, c->next);
        note_catch_up(c, s);
        gdml_msg_header h;
        down_header(c, (int)i, s->pending, &h);
        gdml_wan_update u;
        gdml_errmsg e;
        gdml_err err =
            gdml_wan_encode_update(s->down, &h, c->next, c->global, s->view, now, &u, &e);
        if (err == GDML_ERR_AGAIN) {
            int64_t wait = gdml_wan_wait_ms(s->down, &h, now, &e);
            if (wait < 0)
                stop_region(c, (int)i, e.text, now);
            else
                s->retry_ms = now + wait;
            continue;
        }
        if (err) {
            gdml_error("send_failed", "type=%s region=%s why=%s", gdml_msg_type_name(s->pending),
                       m->name, e.text);
            s->retry_ms = now + 1000;
            continue;
        }
        c->seq++;
        send_frames(c, (int)i, u.frames, u.n_frames, now);
        gdml_debug("downlink_sent", "type=%s version=%llu region=%s entries=%zu frames=%zu",
                   gdml_msg_type_name(s->pending), (unsigned long long)c->version, m->name, u.k,
                   u.n_frames);
        gdml_wan_update_fini(&u);
        s->pending = 0;
        s->view_version = c->version;
    }
}

void coord_tell(gdml_coord *c, int64_t now, const gdml_peer *route, gdml_reason reason,
                const char *why)
{
    for (size_t i = 0; i < COORD_TOLD; i++) {
        told *t = &c->told[i];
        if (t->used && now - t->at_ms < TELL_EVERY_MS && t->reason == reason &&
            gdml_peer_eq(&t->route, route))
            return;
    }
    told *t = &c->told[c->told_next++ % COORD_TOLD];
    if (t->used && now - t->at_ms < TELL_EVERY_MS)
        return; /* the table is full of recent answers: this one goes unsaid */
    t->used = true;
    t->route = *route;
    t->reason = reason;
    t->at_ms = now;
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_ERROR, "coordinator");
    h.seq = ++c->seq;
    h.version = c->version;
    h.code = reason;
    snprintf(h.text, sizeof h.text, "%s", why);
    gdml_blob *f = NULL;
    if (gdml_frame_header_only(&h, &f))
        return;
    /* A member's budget pays for it; with no tokens free it is not sent. */
    int i = gdml_members_by_route(&c->members, route);
    size_t len;
    gdml_blob_view(f, &len);
    if (i < 0 || !c->slots[i].down ||
        gdml_wan_admit(c->slots[i].down, GDML_MSG_ERROR, len, now) == 0)
        gdml_actions_send(&c->actions, GDML_LINK_DOWN, route, f);
    gdml_blob_unref(&f);
}
