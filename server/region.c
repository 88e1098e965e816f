/*
 * region.c - gdml-server's event loop: the regional state machine
 * (region_sm.h) between a ROUTER link for the data center's workers and a
 * DEALER link to the coordinator.
 *
 * Like the coordinator's loop it only moves events and actions: frames and
 * refusals from both links, dropped workers and clock ticks go in; frames to
 * send, connections to drop and the end of the run come out. SIGHUP re-reads
 * the configuration and hands its [budget] to the state machine, which keeps
 * the link's history and residual. As in the coordinator's loop, metrics
 * are the state machine's counters, copied into the registry a few times a
 * second.
 */
#include "region.h"

#include "keys.h"
#include "log.h"
#include "metrics_catalog.h"
#include "metrics_http.h"
#include "model.h"
#include "program.h"
#include "region_sm.h"
#include "store.h"
#include "transport.h"
#include "util.h"
#include "wan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FRAMES_PER_TURN 256
#define METRICS_EVERY_MS 250

typedef struct region_loop {
    const gdml_config *cfg;
    gdml_region_config sm_cfg;
    gdml_dp *dp; /* [privacy], or NULL */
    gdml_region *sm;
    gdml_transport *transport;
    gdml_link *links[2]; /* GDML_LINK_DOWN: workers; GDML_LINK_UP: the coordinator */
    gdml_link_security lan_sec, wan_sec;
    FILE *byte_log;
    gdml_store *ckpt;            /* the checkpoint store, or NULL */
    uint64_t handshake_failures; /* of the link to the coordinator, last logged */
    uint64_t reconnects;         /* to the coordinator */
    gdml_program_metrics metrics;
    int64_t metrics_ms; /* last copy into the registry */
} region_loop;

/*
 * A reconnect to the coordinator (it may have restarted) is told to the
 * state machine; a CURVE handshake with it that fails never lets a frame
 * through: say so.
 */
static void check_handshakes(region_loop *L, int64_t now)
{
    gdml_link_stats st;
    gdml_link_stats_get(L->links[GDML_LINK_UP], &st);
    if (gdml_link_reconnected(L->links[GDML_LINK_UP])) {
        gdml_region_on_reconnected(L->sm, now);
        L->reconnects++;
    }
    if (st.auth_refused <= L->handshake_failures)
        return;
    L->handshake_failures = st.auth_refused;
    gdml_warn("handshake_refused", "coordinator=%s times=%llu hint=%s", L->cfg->server.coordinator,
              (unsigned long long)st.auth_refused,
              "check that security.coordinator_key is the coordinator's .pub file and that "
              "the coordinator's allow-list holds this region's public key");
}

/* Copies the state machine's counters into the registry, at most every METRICS_EVERY_MS. */
static void publish(region_loop *L, int64_t now)
{
    gdml_metrics *m = L->metrics.registry;
    if (!m || now - L->metrics_ms < METRICS_EVERY_MS)
        return;
    L->metrics_ms = now;
    gdml_region_stats st;
    gdml_region_stats_get(L->sm, &st);
    gdml_metric_set(gdml_metrics_plain(m, "gdml_global_version"), (double)st.version);
    gdml_metric_count(gdml_metrics_plain(m, "gdml_steps_total"), (double)st.steps);
    gdml_metric_count(gdml_metrics_plain(m, "gdml_syncs_total"), (double)st.syncs);
    gdml_metric_count(gdml_metrics_plain(m, "gdml_pushes_total"), (double)st.pushes);
    gdml_metric_count(gdml_metrics_plain(m, "gdml_joins_total"), (double)st.worker_joins);
    gdml_metric_count(gdml_metrics_plain(m, "gdml_reconnects_total"), (double)L->reconnects);
    gdml_metrics_count_reasons(m, st.rejected);
    const char *up[] = {"up"}, *down[] = {"down"};
    gdml_metric_count(gdml_metrics_series(m, "gdml_lan_bytes_total", up), (double)st.lan_bytes_in);
    gdml_metric_count(gdml_metrics_series(m, "gdml_lan_bytes_total", down),
                      (double)st.lan_bytes_out);
    uint64_t wan_up, wan_down, tokens;
    double rate;
    gdml_region_wan_bytes(L->sm, &wan_up, &wan_down);
    gdml_region_uplink_budget(L->sm, now, &rate, &tokens);
    gdml_metrics_wan_link(m, L->cfg->server.name, wan_up, wan_down, "up", rate, tokens);
}

static gdml_budget_config up_budget(const gdml_config *cfg)
{
    return (gdml_budget_config){.rate = (double)cfg->budget.up_bytes_per_s,
                                .cap = (uint64_t)cfg->budget.up_total_bytes};
}

static gdml_err fill_sm_config(region_loop *L, gdml_errmsg *e)
{
    const gdml_config *cfg = L->cfg;
    gdml_region_config *s = &L->sm_cfg;
    s->name = cfg->server.name;
    s->workers = (uint32_t)cfg->server.workers;
    s->sync = gdml_sync_mode_find(cfg->server.sync_mode);
    if (!s->sync)
        return gdml_errmsg_set(e, GDML_ERR_CONFIG, "[server] sync_mode '%s' is not known",
                               cfg->server.sync_mode);
    s->sync_every = (uint64_t)cfg->server.sync_every;
    s->sync_ms = cfg->server.sync_ms;
    s->learning_rate = cfg->server.learning_rate;
    s->lr_decay = cfg->server.lr_decay;
    s->optim = (gdml_optim_config){.kind = cfg->server.optimizer,
                                   .momentum = cfg->server.momentum,
                                   .beta1 = cfg->server.adam_beta1,
                                   .beta2 = cfg->server.adam_beta2,
                                   .epsilon = cfg->server.adam_epsilon};
    s->scaffold = strcmp(cfg->server.drift_correction, "scaffold") == 0;
    if (s->scaffold && strcmp(cfg->server.optimizer, "sgd") != 0)
        return gdml_errmsg_set(e, GDML_ERR_CONFIG,
                               "[server] drift_correction = scaffold derives its control variates "
                               "from SGD steps; with optimizer = %s set drift_correction = none, "
                               "or optimizer = sgd",
                               cfg->server.optimizer);
    s->overlap = gdml_region_overlaps(cfg->server.overlap, s->scaffold);
    if (s->overlap && s->scaffold)
        gdml_warn("overlap_with_scaffold", "hint=%s",
                  "SCAFFOLD with overlap trains on stale corrections and loses accuracy "
                  "(docs/consistency.md); overlap = auto turns overlap off with scaffold");
    s->checkpoint = cfg->server.checkpoint[0] != '\0';
    if (strcmp(cfg->server.early_start, "on") == 0) {
        gdml_layout l;
        gdml_err err = gdml_config_layout(cfg, &l, e);
        if (err) {
            gdml_errmsg_prefix(e, "server.early_start = on trains from [model] at once: ");
            return err;
        }
        gdml_layout_format(&l, s->early_layout, sizeof s->early_layout);
        s->early_seed = (uint64_t)cfg->model.seed;
    }
    s->lan_staleness = strcmp(cfg->server.lan_consistency, "asp") == 0 ? UINT64_MAX
                       : strcmp(cfg->server.lan_consistency, "ssp") == 0
                           ? (uint64_t)cfg->server.ssp_staleness
                           : 0;
    s->timeout_ms = cfg->server.timeout_ms;
    s->heartbeat_ms = cfg->net.heartbeat_ms;
    s->peer_timeout_ms = cfg->net.peer_timeout_ms;
    s->max_worker_samples = (uint64_t)cfg->server.max_worker_samples;
    s->max_grad_norm = cfg->server.max_grad_norm;
    s->encoder = cfg->server.encoder;
    s->auto_encoder = strcmp(cfg->server.encoder, "auto") == 0;
    s->target_ratio = cfg->budget.target_ratio;
    s->k_fraction = cfg->server.k_fraction;
    s->threshold = cfg->server.threshold;
    s->up_budget = up_budget(cfg);
    s->min_message_bytes = (uint64_t)cfg->budget.min_message_bytes;
    s->down_rate = (uint64_t)cfg->budget.down_bytes_per_s;
    s->down_cap = (uint64_t)cfg->budget.down_total_bytes;
    /* Sequence numbers above any a previous run of this region used (16 a
     * millisecond), so that a restarted region's deltas are never taken for
     * re-sends of old ones. */
    s->seq_base = (uint64_t)gdml_wall_ms() * 16;
    gdml_dp_config dp;
    if (gdml_config_privacy(cfg, &dp)) {
        gdml_err err = gdml_dp_new(&dp, cfg->server.name, &L->dp, e);
        if (err)
            return err;
        s->dp = L->dp;
        gdml_info("privacy", "clip=%g noise_std=%g noise_multiplier=%g noise=%s", dp.clip,
                  dp.clip * dp.noise_multiplier, dp.noise_multiplier,
                  dp.seed ? "seeded(tests-only)" : "random-key");
    }
    return GDML_OK;
}

/* SIGHUP: re-read the configuration and apply its [budget]; the rest needs a restart. */
static void reload(region_loop *L, int64_t now)
{
    gdml_config fresh;
    gdml_errmsg why;
    if (gdml_program_reload(&fresh, &why)) {
        gdml_error("reload_failed", "what=budget why=%s", why.text);
        return;
    }
    gdml_budget_config up = up_budget(&fresh);
    if (gdml_region_set_budget(L->sm, &up, (uint64_t)fresh.budget.down_bytes_per_s,
                               (uint64_t)fresh.budget.down_total_bytes, now, &why)) {
        gdml_error("reload_failed", "what=budget why=%s", why.text);
        return;
    }
    gdml_info("reload",
              "what=budget up_bytes_per_s=%lld up_total_bytes=%lld "
              "down_bytes_per_s=%lld down_total_bytes=%lld",
              (long long)fresh.budget.up_bytes_per_s, (long long)fresh.budget.up_total_bytes,
              (long long)fresh.budget.down_bytes_per_s, (long long)fresh.budget.down_total_bytes);
    gdml_curve_allow *allow = NULL;
    if (L->lan_sec.allow && !gdml_keys_load_allow(fresh.security.allow, &allow, &why)) {
        gdml_curve_allow_replace(L->lan_sec.allow, allow);
        gdml_curve_allow_unref(&allow);
    }
}

/* Writes the checkpoint a COMMIT action asks for; a failure is the state machine's to log. */
static void write_checkpoint(region_loop *L)
{
    int64_t now = gdml_now_ms();
    const char *layout;
    const gdml_store_tensor *tensors;
    size_t n;
    gdml_version_meta *meta = gdml_region_checkpoint(L->sm, now, &layout, &tensors, &n);
    meta->time_ms = gdml_wall_ms();
    gdml_errmsg why = {{0}};
    gdml_err err = L->ckpt ? gdml_store_commit(L->ckpt, meta, layout, tensors, n, &why)
                           : gdml_errmsg_set(&why, GDML_ERR_STORE, "no checkpoint store");
    gdml_region_on_checkpointed(L->sm, now, err, why.text);
}

/*
 * Opens server.checkpoint and hands its newest checkpoint to the state
 * machine. A checkpoint that cannot be read is reported and not used: the
 * region starts afresh from the coordinator's model, which loses only its
 * local progress.
 */
static gdml_err open_checkpoint(region_loop *L, gdml_errmsg *e)
{
    const char *dir = L->cfg->server.checkpoint;
    if (!*dir)
        return GDML_OK;
    gdml_store_options so = {.keep_last = 2};
    gdml_err err = gdml_store_open(dir, &so, &L->ckpt, e);
    if (err) {
        gdml_errmsg_prefix(e, "the region's checkpoint (server.checkpoint): ");
        return err;
    }
    uint64_t head;
    gdml_errmsg why = {{0}};
    if (gdml_store_newest(L->ckpt, &head, &why))
        return GDML_OK; /* none yet */
    gdml_version_meta meta;
    char layout[GDML_LAYOUT_MAX];
    gdml_store_tensor tensors[GDML_STORE_MAX_TENSORS];
    float *data[GDML_STORE_MAX_TENSORS] = {0};
    size_t n = 0;
    err = gdml_store_meta(L->ckpt, head, &meta, &why);
    if (!err)
        err = gdml_store_layout(L->ckpt, head, layout, &why);
    for (uint32_t t = 0; !err && t < meta.n_tensors; t++) {
        size_t len;
        err = gdml_store_tensor_read(L->ckpt, head, meta.tensors[t].name, &data[t], &len, &why);
        if (!err)
            tensors[n++] =
                (gdml_store_tensor){.name = meta.tensors[t].name, .data = data[t], .n = len};
    }
    if (!err)
        err = gdml_region_resume(L->sm, &meta, layout, tensors, n, &why);
    if (err)
        gdml_warn("checkpoint_unused", "checkpoint=%llu dir=%s why=%s", (unsigned long long)head,
                  dir, why.text);
    else
        gdml_info("checkpoint_read", "checkpoint=%llu dir=%s", (unsigned long long)head, dir);
    for (size_t t = 0; t < GDML_STORE_MAX_TENSORS; t++)
        free(data[t]);
    return GDML_OK;
}

/* Carries out every queued action; true when the run is over. */
static bool act(region_loop *L, gdml_err *err, gdml_errmsg *e)
{
    gdml_action a;
    while (gdml_region_next_action(L->sm, &a)) {
        gdml_errmsg why;
        switch (a.kind) {
        case GDML_ACT_SEND:
            gdml_link_send(L->links[a.link], &a.peer, a.frame, &why);
            break;
        case GDML_ACT_DROP:
            gdml_link_disconnect(L->links[a.link], &a.peer);
            break;
        case GDML_ACT_COMMIT:
            write_checkpoint(L);
            break;
        case GDML_ACT_EXIT:
            *err = a.err;
            if (a.err)
                gdml_errmsg_set(e, a.err, "%s", a.text);
            gdml_action_release(&a);
            return true;
        }
        gdml_action_release(&a);
    }
    return false;
}

static gdml_err serve(region_loop *L, gdml_errmsg *e)
{
    int64_t now = gdml_now_ms();
    gdml_region_start(L->sm, now);
    gdml_err err = GDML_OK;
    bool stopping = false;
    for (;;) {
        now = gdml_now_ms();
        if (gdml_stop_requested() && !stopping) {
            stopping = true;
            gdml_region_on_stop(L->sm, now, "the regional server was stopped by a signal");
        }
        if (gdml_reload_requested())
            reload(L, now);
        if (act(L, &err, e))
            return err;
        int64_t wait = gdml_region_next_timer(L->sm, now);
        for (int l = 0; l < 2; l++) {
            int64_t flush = gdml_link_flush(L->links[l], now);
            if (flush >= 0 && flush < wait)
                wait = flush;
        }
        bool ready[2] = {false, false};
        gdml_link_poll(L->links, 2, (int)wait, ready);
        now = gdml_now_ms();
        for (int l = 1; l >= 0; l--) { /* the coordinator first: GLOBAL unblocks the workers */
            for (int i = 0; ready[l] && i < FRAMES_PER_TURN; i++) {
                gdml_rx rx;
                gdml_errmsg why;
                gdml_err r = gdml_link_recv(L->links[l], &rx, &why);
                if (r == GDML_ERR_AGAIN)
                    break;
                if (r == GDML_OK)
                    gdml_region_on_frame(L->sm, now, l, &rx);
                else if (r == GDML_ERR_PROTO || r == GDML_ERR_VERSION)
                    gdml_region_on_refused(L->sm, now, l, &rx, why.text);
                else
                    return gdml_errmsg_set(e, r, "%s", why.text);
                gdml_rx_release(&rx);
                if (act(L, &err, e))
                    return err;
            }
        }
        gdml_peer gone;
        while (gdml_link_next_dropped(L->links[GDML_LINK_DOWN], &gone))
            gdml_region_on_dropped(L->sm, now, &gone);
        gdml_region_on_tick(L->sm, now);
        check_handshakes(L, now);
        publish(L, now);
    }
}

static gdml_err open_links(region_loop *L, gdml_errmsg *e)
{
    const gdml_config *cfg = L->cfg;
    bool lan_curve = gdml_keys_curve_on(cfg, true), wan_curve = gdml_keys_curve_on(cfg, false);
    gdml_link_options lan, wan;
    gdml_err err = gdml_keys_bind_options(cfg, lan_curve, cfg->server.name, &L->lan_sec, &lan, e);
    if (!err)
        err = gdml_keys_connect_options(cfg, wan_curve, cfg->server.name,
                                        cfg->security.coordinator_key, "coordinator_key",
                                        &L->wan_sec, &wan, e);
    if (!err)
        err = gdml_transport_new(&L->transport, e);
    if (!err)
        err = gdml_link_bind(L->transport, cfg->server.listen, &lan, &L->links[GDML_LINK_DOWN], e);
    if (!err)
        err = gdml_link_connect(L->transport, cfg->server.coordinator, &wan,
                                &L->links[GDML_LINK_UP], e);
    if (err)
        return err;
    char endpoint[GDML_ENDPOINT_MAX];
    if ((err = gdml_link_endpoint(L->links[GDML_LINK_DOWN], endpoint, sizeof endpoint)))
        return gdml_errmsg_set(e, err, "cannot read the bound endpoint");
    gdml_info("listen",
              "endpoint=%s security=%s workers=%lld coordinator=%s wan_security=%s "
              "sync=%s uplink=%s",
              endpoint, lan_curve ? "curve" : "plain", (long long)cfg->server.workers,
              cfg->server.coordinator, wan_curve ? "curve" : "plain", cfg->server.sync_mode,
              cfg->server.encoder);
    L->sm_cfg.curve = wan_curve;
    L->sm_cfg.lan_curve = lan_curve;
    if ((err = gdml_write_endpoint_file(cfg->server.endpoint_file, endpoint, e)) ||
        (err = gdml_wan_log_open(cfg->server.byte_log, &L->byte_log, e)))
        return err;
    L->sm_cfg.byte_log = L->byte_log;
    return GDML_OK;
}

gdml_err gdml_region_run(const gdml_config *cfg, gdml_errmsg *e)
{
    region_loop *L = calloc(1, sizeof *L);
    if (!L)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory");
    L->cfg = cfg;
    gdml_err err = fill_sm_config(L, e);
    if (!err)
        err = gdml_program_metrics_start(cfg, GDML_ROLE_SERVER, "server", cfg->server.name,
                                         &L->metrics, e);
    if (!err)
        err = open_links(L, e);
    if (!err)
        err = gdml_region_new(&L->sm_cfg, &L->sm, e);
    if (!err)
        err = open_checkpoint(L, e);
    if (!err) {
        /* The region's own budget must be able to carry a delta at all. */
        gdml_budget_config up = up_budget(cfg);
        if (gdml_region_set_budget(L->sm, &up, L->sm_cfg.down_rate, L->sm_cfg.down_cap,
                                   gdml_now_ms(), e))
            err = GDML_ERR_CONFIG;
    }
    if (!err)
        err = serve(L, e);
    if (L->sm && (!err || err == GDML_ERR_INTERRUPTED)) {
        gdml_region_stats st;
        gdml_region_stats_get(L->sm, &st);
        uint64_t up, down;
        gdml_region_wan_bytes(L->sm, &up, &down);
        gdml_link_stats lan;
        gdml_link_stats_get(L->links[GDML_LINK_DOWN], &lan);
        gdml_info("done",
                  "steps=%llu syncs=%llu wan_up=%llu wan_down=%llu lan_in=%llu lan_out=%llu",
                  (unsigned long long)st.steps, (unsigned long long)st.syncs,
                  (unsigned long long)up, (unsigned long long)down,
                  (unsigned long long)lan.bytes_received, (unsigned long long)lan.bytes_sent);
        char counts[512];
        gdml_reason_counts(st.rejected, counts, sizeof counts);
        gdml_info("dropped", "frames=%s", counts);
    }
    /* What is still queued (STOP to the workers) gets the link's linger to go. */
    for (int l = 0; l < 2; l++)
        if (L->links[l])
            gdml_link_flush(L->links[l], gdml_now_ms());
    gdml_program_metrics_stop(&L->metrics);
    gdml_region_destroy(&L->sm);
    gdml_dp_destroy(&L->dp);
    gdml_store_close(&L->ckpt);
    gdml_link_close(&L->links[0]);
    gdml_link_close(&L->links[1]);
    gdml_transport_destroy(&L->transport);
    gdml_link_security_fini(&L->lan_sec);
    gdml_link_security_fini(&L->wan_sec);
    if (L->byte_log)
        fclose(L->byte_log);
    free(L);
    return err;
}
