/*
 * coordinator.c - gdml-coordinator's event loop: the coordinator state
 * machine (coord_sm.h) between one ROUTER link and the LMDB store.
 *
 * The loop only moves events in and actions out: it polls the link, feeds
 * every frame (or refusal) to the state machine, reports the peers the
 * transport dropped and the ticks of the clock, and carries out what the
 * state machine asks: frames to send, connections to drop, versions to
 * commit (and then the progress line), the end of the run. Nothing here
 * decides anything about the protocol.
 *
 * Metrics (metrics_http.h): the state machine keeps its counters as it
 * always has, and the loop copies them into the registry a few times a
 * second and at each commit, so the state machine stays free of I/O and of
 * shared state.
 */
#include "coordinator.h"

#include "coord_sm.h"
#include "dataset.h"
#include "keys.h"
#include "log.h"
#include "metrics_catalog.h"
#include "metrics_http.h"
#include "program.h"
#include "store.h"
#include "transport.h"
#include "util.h"
#include "wan.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Frames taken from the link per turn of the loop, so that ticks keep their time. */
#define FRAMES_PER_TURN 256
/* How often the loop copies its figures into the metrics registry. */
#define METRICS_EVERY_MS 250

typedef struct coordinator {
    const gdml_config *cfg;
    gdml_coord_config sm_cfg;
    gdml_dp_config dp; /* [privacy], when privacy.dp = on */
    gdml_coord *sm;
    gdml_store *store;
    gdml_dataset eval;
    FILE *byte_log;
    gdml_transport *transport;
    gdml_link *link;
    gdml_link_security sec;
    char members[GDML_STORE_MAX_REGIONS][GDML_NAME_MAX];
    int n_members;
    uint64_t versions_committed;
    gdml_program_metrics metrics;
    int64_t metrics_ms, commit_ms; /* last copy into the registry; last commit (0: none) */
} coordinator;

static gdml_err open_store(coordinator *c, gdml_errmsg *e)
{
    const gdml_config *cfg = c->cfg;
    gdml_store_options so = {.map_bytes = (uint64_t)cfg->store.map_mb << 20,
                             .max_map_bytes = (uint64_t)cfg->store.max_map_gb << 30,
                             .keep_last = (uint64_t)cfg->store.keep_last,
                             .keep_every = (uint64_t)cfg->store.keep_every};
    return gdml_store_open(cfg->coordinator.store, &so, &c->store, e);
}

/* Resumes the state machine from the store's head, if it has one. */
static gdml_err resume(coordinator *c, gdml_errmsg *e)
{
    uint64_t head = 0, newest = 0;
    gdml_err err = gdml_store_head(c->store, &head, e);
    if (err == GDML_ERR_NOTFOUND) {
        gdml_info("store_empty", "store=%s", c->cfg->coordinator.store);
        return GDML_OK;
    }
    if (err || (err = gdml_store_newest(c->store, &newest, e)))
        return err;
    gdml_version_meta meta;
    char layout[GDML_LAYOUT_MAX], want[GDML_LAYOUT_MAX];
    float *params = NULL, *state = NULL;
    size_t n = 0, n_state = 0;
    gdml_layout_format(&c->sm_cfg.layout, want, sizeof want);
    if (!(err = gdml_store_meta(c->store, head, &meta, e)) &&
        !(err = gdml_store_layout(c->store, head, layout, e))) {
        if (strcmp(layout, want) != 0)
            err = gdml_errmsg_set(e, GDML_ERR_CONFIG,
                                  "store '%s' holds a '%s' model but [model] says '%s'; point "
                                  "--store at another directory or fix [model]",
                                  c->cfg->coordinator.store, layout, want);
    }
    if (!err)
        err = gdml_store_tensor_read(c->store, head, "params", &params, &n, e);
    if (!err) {
        err = gdml_store_tensor_read(c->store, head, "merge_state", &state, &n_state, e);
        if (err == GDML_ERR_NOTFOUND)
            err = GDML_OK; /* a stateless rule stores none */
    }
    if (!err && gdml_coord_resume(c->sm, &meta, newest, params, n, state, n_state, e))
        err = GDML_ERR_CONFIG;
    if (!err)
        gdml_info("resume", "version=%llu round=%llu rule=%s store=%s", (unsigned long long)head,
                  (unsigned long long)meta.round, meta.rule, c->cfg->coordinator.store);
    free(params);
    free(state);
    return err;
}

static gdml_err load_eval(coordinator *c, gdml_errmsg *e)
{
    const gdml_config *cfg = c->cfg;
    const char *file =
        gdml_config_data_name(cfg->coordinator.eval_data, cfg->coordinator.eval_images);
    if (!*file)
        return GDML_OK;
    const gdml_model_ops *ops = gdml_model_find(c->sm_cfg.layout.kind);
    gdml_err err =
        gdml_config_load_data(cfg, cfg->coordinator.eval_data, cfg->coordinator.eval_images,
                              cfg->coordinator.eval_labels, 0, 1, ops && ops->sparse, &c->eval, e);
    if (err)
        return err;
    if (gdml_layout_check_data(&c->sm_cfg.layout, c->eval.dim, c->eval.classes, file, e)) {
        gdml_errmsg_prefix(e, "the eval set does not fit [model]: ");
        return GDML_ERR_CONFIG;
    }
    return GDML_OK;
}

/* The regions that may join: [coordinator] members, else the allow-list's names. */
static gdml_err member_names(coordinator *c, gdml_errmsg *e)
{
    const gdml_config *cfg = c->cfg;
    if (*cfg->coordinator.members)
        return gdml_config_split_names(cfg->coordinator.members, c->members, GDML_STORE_MAX_REGIONS,
                                       &c->n_members, e);
    if (!c->sec.allow)
        return GDML_OK;
    while (c->n_members < GDML_STORE_MAX_REGIONS &&
           gdml_curve_allow_name_at(c->sec.allow, (size_t)c->n_members, c->members[c->n_members]))
        c->n_members++;
    return GDML_OK;
}

static void fill_sm_config(coordinator *c)
{
    const gdml_config *cfg = c->cfg;
    gdml_coord_config *s = &c->sm_cfg;
    gdml_errmsg e;
    gdml_err err = gdml_config_layout(cfg, &s->layout, &e);
    assert(!err); /* gdml_config_check refused the config otherwise */
    (void)err;
    s->model_seed = (uint64_t)cfg->model.seed;
    s->regions = (uint32_t)cfg->coordinator.regions;
    s->rounds = (uint64_t)cfg->coordinator.rounds;
    s->timeout_ms = cfg->coordinator.timeout_ms;
    s->heartbeat_ms = cfg->net.heartbeat_ms;
    s->peer_timeout_ms = cfg->net.peer_timeout_ms;
    s->round_deadline_ms = cfg->coordinator.round_deadline_ms;
    s->quorum = strcmp(cfg->coordinator.consistency, "async") == 0    ? 1
                : strcmp(cfg->coordinator.consistency, "quorum") != 0 ? 0
                : cfg->coordinator.quorum > 0 ? (uint32_t)cfg->coordinator.quorum
                                              : (uint32_t)cfg->coordinator.regions / 2 + 1;
    s->max_staleness = (uint64_t)cfg->coordinator.max_staleness;
    s->staleness_power = cfg->coordinator.staleness_power;
    s->max_samples = (uint64_t)cfg->coordinator.max_samples;
    s->max_delta_norm = cfg->merge.max_delta_norm;
    s->max_change_norm = cfg->merge.max_change_norm;
    s->merge = (gdml_merge_config){.rule = cfg->merge.rule,
                                   .lr = cfg->merge.lr,
                                   .momentum = cfg->merge.momentum,
                                   .beta1 = cfg->merge.beta1,
                                   .beta2 = cfg->merge.beta2,
                                   .epsilon = cfg->merge.epsilon};
    s->encoder = cfg->coordinator.encoder;
    s->k_fraction = cfg->coordinator.k_fraction;
    s->threshold = cfg->coordinator.threshold;
    s->min_message_bytes = 1024;
    s->eval_every = (uint64_t)cfg->coordinator.eval_every;
    s->seq_base = (uint64_t)gdml_wall_ms() * 16;
}

/* Copies the state machine's counters into the registry, at most every METRICS_EVERY_MS. */
static void publish(coordinator *c, int64_t now)
{
    gdml_metrics *m = c->metrics.registry;
    if (!m || now - c->metrics_ms < METRICS_EVERY_MS)
        return;
    c->metrics_ms = now;
    gdml_coord_stats st;
    gdml_coord_stats_get(c->sm, &st);
    gdml_metric_set(gdml_metrics_plain(m, "gdml_global_version"), (double)st.version);
    gdml_metric_count(gdml_metrics_plain(m, "gdml_merges_total"), (double)st.merges);
    gdml_metric_count(gdml_metrics_plain(m, "gdml_contributions_dropped_total"),
                      (double)st.contributions_dropped);
    gdml_metric_count(gdml_metrics_plain(m, "gdml_joins_total"), (double)st.joins);
    gdml_metric_count(gdml_metrics_plain(m, "gdml_reconnects_total"), (double)st.rejoins);
    gdml_metrics_count_reasons(m, st.rejected);
    for (size_t i = 0; i < gdml_coord_region_count(c->sm); i++) {
        const char *name;
        uint64_t up, down, tokens, staleness;
        double rate;
        gdml_coord_region_bytes(c->sm, i, &name, &up, &down);
        gdml_coord_region_link(c->sm, i, now, &rate, &tokens, &staleness);
        gdml_metrics_wan_link(m, name, up, down, "down", rate, tokens);
        const char *region[] = {name};
        gdml_metric_set(gdml_metrics_series(m, "gdml_staleness_versions", region),
                        (double)staleness);
    }
}

/* A committed version's figures: its scores and how long its round took. */
static void publish_commit(coordinator *c, const gdml_version_meta *meta, int64_t now)
{
    gdml_metrics *m = c->metrics.registry;
    if (!m)
        return;
    gdml_score val;
    uint32_t scored = gdml_store_meta_score(meta, &val);
    gdml_metrics_score(m, "test", meta->accuracy, meta->loss);
    gdml_metrics_score(m, "validation", scored ? gdml_score_accuracy(&val) : NAN,
                       scored ? val.loss : NAN);
    gdml_metrics_score(m, "train", NAN, gdml_coord_train_loss(c->sm));
    if (c->commit_ms)
        gdml_metric_set(gdml_metrics_plain(m, "gdml_round_duration_seconds"),
                        (double)(now - c->commit_ms) / 1000.0);
    c->commit_ms = now;
    c->metrics_ms = 0; /* the version and the counters too, now */
    publish(c, now);
}

/* One progress line per committed version, for gdml-launch and scripts. */
static void print_links(const coordinator *c)
{
    for (size_t i = 0; i < gdml_coord_region_count(c->sm); i++) {
        const char *name;
        uint64_t up, down;
        gdml_coord_region_bytes(c->sm, i, &name, &up, &down);
        printf("%s%s:%llu:%llu", i ? "," : "", name, (unsigned long long)up,
               (unsigned long long)down);
    }
}

static void commit(coordinator *c, int64_t now)
{
    const char *layout;
    const gdml_store_tensor *tensors;
    size_t n_tensors;
    gdml_version_meta *meta = gdml_coord_pending(c->sm, &layout, &tensors, &n_tensors);
    gdml_link_stats stats;
    gdml_link_stats_get(c->link, &stats);
    meta->bytes_received = stats.bytes_received;
    meta->bytes_sent = stats.bytes_sent;
    meta->time_ms = gdml_wall_ms();
    gdml_errmsg e;
    gdml_err err = gdml_store_commit(c->store, meta, layout, tensors, n_tensors, &e);
    gdml_coord_on_committed(c->sm, now, err, err ? e.text : NULL);
    if (err)
        return;
    c->versions_committed++;
    printf("round=%llu version=%llu accuracy=%.6f loss=%.6f train_loss=%.6f wan_up=%llu "
           "wan_down=%llu regions=%u links=",
           (unsigned long long)meta->round, (unsigned long long)meta->version, meta->accuracy,
           meta->loss, gdml_coord_train_loss(c->sm), (unsigned long long)stats.bytes_received,
           (unsigned long long)stats.bytes_sent, meta->n_regions);
    print_links(c);
    for (size_t i = 0; i < gdml_coord_region_count(c->sm); i++) {
        const char *name, *policy = gdml_coord_region_policy(c->sm, i);
        uint64_t up, down;
        gdml_coord_region_bytes(c->sm, i, &name, &up, &down);
        if (*policy)
            printf(" policy=%s:%s", name, policy);
    }
    gdml_score val;
    uint32_t scored = gdml_store_meta_score(meta, &val);
    printf(" val_acc=%.6f val_loss=%.6f val_regions=%u merged=", gdml_score_accuracy(&val),
           scored ? val.loss : NAN, scored);
    /* The regions whose deltas this version took, for gdml-launch's display. */
    for (uint32_t i = 0, n = 0; i < meta->n_regions; i++)
        if (meta->regions[i].samples > 0)
            printf("%s%s", n++ ? "," : "", meta->regions[i].name);
    if (meta->dp_delta > 0)
        printf(" eps=%.6f dp_delta=%g", meta->epsilon, meta->dp_delta);
    printf("\n");
    fflush(stdout);
    publish_commit(c, meta, now);
}

/* Carries out every queued action; returns true when the run is over (*err set). */
static bool act(coordinator *c, int64_t now, gdml_err *err, gdml_errmsg *e)
{
    gdml_action a;
    while (gdml_coord_next_action(c->sm, &a)) {
        gdml_errmsg why;
        switch (a.kind) {
        case GDML_ACT_SEND:
            if (gdml_link_send(c->link, &a.peer, a.frame, &why) == GDML_ERR_NOTFOUND)
                gdml_coord_on_dropped(c->sm, now, &a.peer); /* it disconnected */
            break;
        case GDML_ACT_DROP:
            gdml_link_disconnect(c->link, &a.peer);
            break;
        case GDML_ACT_COMMIT:
            commit(c, now);
            break;
        case GDML_ACT_EXIT:
            *err = a.err;
            if (a.err)
                gdml_errmsg_set(e, a.err, "%s", a.text);
            else
                gdml_info("finish", "why=%s", a.text);
            gdml_action_release(&a);
            return true;
        }
        gdml_action_release(&a);
    }
    return false;
}

/* SIGHUP: read the allow-list again, so that a rotated key is admitted. */
static void reload(coordinator *c)
{
    gdml_config fresh;
    gdml_errmsg why;
    gdml_curve_allow *allow = NULL;
    if (!c->sec.allow)
        return;
    if (gdml_program_reload(&fresh, &why) ||
        gdml_keys_load_allow(fresh.security.allow, &allow, &why)) {
        gdml_error("reload_failed", "what=allow-list why=%s", why.text);
        return;
    }
    if (gdml_curve_allow_replace(c->sec.allow, allow))
        gdml_error("reload_failed", "what=allow-list why=%s", "out of memory");
    else
        gdml_info("reload", "what=allow-list keys=%zu", gdml_curve_allow_count(c->sec.allow));
    gdml_curve_allow_unref(&allow);
}

static gdml_err serve(coordinator *c, gdml_errmsg *e)
{
    int64_t now = gdml_now_ms();
    gdml_coord_start(c->sm, now);
    gdml_err err = GDML_OK;
    bool stopping = false;
    for (;;) {
        now = gdml_now_ms();
        if (gdml_stop_requested() && !stopping) {
            stopping = true;
            gdml_coord_on_stop(c->sm, now, "the coordinator was stopped by a signal");
        }
        if (gdml_reload_requested())
            reload(c);
        if (act(c, now, &err, e))
            return err;
        int64_t wait = gdml_coord_next_timer(c->sm, now);
        int64_t flush = gdml_link_flush(c->link, now);
        if (flush >= 0 && flush < wait)
            wait = flush;
        bool ready = false;
        gdml_link_poll(&c->link, 1, (int)wait, &ready);
        now = gdml_now_ms();
        for (int i = 0; ready && i < FRAMES_PER_TURN; i++) {
            gdml_rx rx;
            gdml_errmsg why;
            gdml_err r = gdml_link_recv(c->link, &rx, &why);
            if (r == GDML_ERR_AGAIN)
                break;
            if (r == GDML_OK)
                gdml_coord_on_frame(c->sm, now, &rx);
            else if (r == GDML_ERR_PROTO || r == GDML_ERR_VERSION)
                gdml_coord_on_refused(c->sm, now, &rx, why.text);
            else
                return gdml_errmsg_set(e, r, "%s", why.text);
            gdml_rx_release(&rx);
            if (act(c, now, &err, e))
                return err;
        }
        gdml_peer gone;
        while (gdml_link_next_dropped(c->link, &gone))
            gdml_coord_on_dropped(c->sm, now, &gone);
        gdml_coord_on_tick(c->sm, now);
        publish(c, now);
    }
}

static gdml_err open_link(coordinator *c, const gdml_link_options *opts, gdml_errmsg *e)
{
    const gdml_config *cfg = c->cfg;
    gdml_err err = gdml_transport_new(&c->transport, e);
    if (!err)
        err = gdml_link_bind(c->transport, cfg->coordinator.listen, opts, &c->link, e);
    if (err)
        return err;
    char endpoint[GDML_ENDPOINT_MAX];
    if ((err = gdml_link_endpoint(c->link, endpoint, sizeof endpoint)))
        return gdml_errmsg_set(e, err, "cannot read the bound endpoint");
    gdml_info("listen", "endpoint=%s security=%s regions=%lld rounds=%lld merge=%s downlink=%s",
              endpoint, c->sm_cfg.curve ? "curve" : "plain", (long long)cfg->coordinator.regions,
              (long long)cfg->coordinator.rounds, cfg->merge.rule, cfg->coordinator.encoder);
    return gdml_write_endpoint_file(cfg->coordinator.endpoint_file, endpoint, e);
}

gdml_err gdml_coordinator_run(const gdml_config *cfg, gdml_errmsg *e)
{
    coordinator *c = calloc(1, sizeof *c);
    if (!c)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory");
    c->cfg = cfg;
    fill_sm_config(c);
    /* The link is bound as soon as the configuration is known to be sound,
     * before the store and the eval set are loaded: over a WAN a region's
     * TCP, ZMTP and CURVE handshakes take several round trips, and they run
     * in ZeroMQ's threads while this one loads. What a region sends
     * meanwhile waits in the link's bounded queue until serve() reads it. */
    bool curve = gdml_keys_curve_on(cfg, false);
    gdml_link_options opts;
    gdml_err err = gdml_keys_bind_options(cfg, curve, NULL, &c->sec, &opts, e);
    if (!err)
        err = member_names(c, e);
    if (!err && c->n_members && c->n_members < cfg->coordinator.regions)
        err = gdml_errmsg_set(e, GDML_ERR_CONFIG,
                              "coordinator.regions = %lld regions must join, but only %d may "
                              "(coordinator.members or the allow-list)",
                              (long long)cfg->coordinator.regions, c->n_members);
    if (!err && gdml_config_privacy(cfg, &c->dp)) {
        c->sm_cfg.dp = &c->dp;
        err = gdml_coord_check_privacy(&c->sm_cfg, e);
    }
    c->sm_cfg.curve = curve;
    if (!err)
        err = open_link(c, &opts, e);
    if (!err)
        err = gdml_program_metrics_start(cfg, GDML_ROLE_COORDINATOR, "coordinator", "coordinator",
                                         &c->metrics, e);
    if (!err)
        err = open_store(c, e);
    if (!err)
        err = load_eval(c, e);
    if (!err)
        err = gdml_wan_log_open(cfg->coordinator.byte_log, &c->byte_log, e);
    if (!err) {
        c->sm_cfg.byte_log = c->byte_log;
        c->sm_cfg.members = (const char(*)[GDML_NAME_MAX])c->members;
        c->sm_cfg.n_members = (size_t)c->n_members;
        c->sm_cfg.eval = c->eval.n ? &c->eval : NULL;
        if (gdml_coord_new(&c->sm_cfg, &c->sm, e))
            err = GDML_ERR_CONFIG;
    }
    if (!err)
        err = resume(c, e);
    if (!err)
        err = serve(c, e);
    if (!err) {
        gdml_link_stats stats;
        gdml_link_stats_get(c->link, &stats);
        uint64_t count = 0;
        gdml_errmsg why;
        gdml_store_count(c->store, &count, &why);
        printf("done versions=%llu wan_up=%llu wan_down=%llu links=", (unsigned long long)count,
               (unsigned long long)stats.bytes_received, (unsigned long long)stats.bytes_sent);
        print_links(c);
        printf(" store=%s", cfg->coordinator.store);
        if (c->sm_cfg.dp)
            printf(" eps=%.6f dp_delta=%g privacy_stop=%d", gdml_coord_epsilon(c->sm), c->dp.delta,
                   gdml_coord_privacy_stopped(c->sm));
        printf("\n");
        fflush(stdout);
        gdml_info("store_versions", "versions=%llu store=%s", (unsigned long long)count,
                  cfg->coordinator.store);
    }
    if (c->sm) {
        gdml_coord_stats st;
        gdml_coord_stats_get(c->sm, &st);
        char counts[512];
        gdml_reason_counts(st.rejected, counts, sizeof counts);
        gdml_info("dropped", "frames=%s contributions=%llu", counts,
                  (unsigned long long)st.contributions_dropped);
    }
    gdml_program_metrics_stop(&c->metrics);
    gdml_coord_destroy(&c->sm);
    gdml_link_close(&c->link);
    gdml_transport_destroy(&c->transport);
    gdml_link_security_fini(&c->sec);
    gdml_store_close(&c->store);
    gdml_dataset_fini(&c->eval);
    if (c->byte_log)
        fclose(c->byte_log);
    free(c);
    return err;
}
