/*
 * fuzz_coord_sm.c - the coordinator's state machine fed any sequence of
 * frames, clock ticks and dropped peers (sm_input.h): every message handler
 * of it, with every action it asks for carried out (commits succeed).
 */
#include "fuzz.h"
#include "sm_input.h"

#include "log.h"

#include "coord_sm.h"

#include <stdlib.h>
#include <string.h>

static const char members[][GDML_NAME_MAX] = {"a", "b", "c"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gdml_log_init("fuzz", NULL, GDML_LOG_ERROR, GDML_LOG_TEXT); /* what the input provokes is not news */
    gdml_coord_config cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.layout.kind, sizeof cfg.layout.kind, "softmax");
    cfg.layout.inputs = 4;
    cfg.layout.classes = 3;
    cfg.model_seed = 1;
    cfg.regions = 2;
    cfg.members = size % 2 ? members : NULL; /* with a member list, and without */
    cfg.n_members = size % 2 ? 3 : 0;
    cfg.rounds = 4;
    cfg.timeout_ms = 20000;
    cfg.heartbeat_ms = 1000;
    cfg.peer_timeout_ms = 3000;
    cfg.round_deadline_ms = size % 3 ? 0 : 2000;
    cfg.max_samples = 1000000;
    cfg.max_delta_norm = 1000;
    cfg.max_change_norm = 1000;
    cfg.merge = (gdml_merge_config){.rule = size % 5 ? "fedavg" : "adam", .lr = 1, .momentum = 0.9,
                                    .beta1 = 0.9, .beta2 = 0.99, .epsilon = 1e-3};
    cfg.encoder = "dense";
    cfg.k_fraction = 0.1;
    cfg.threshold = 0.01;
    cfg.min_message_bytes = 64;
    cfg.eval_every = 1;
    gdml_coord *c = NULL;
    gdml_errmsg e;
    if (gdml_coord_new(&cfg, &c, &e) != GDML_OK)
        abort();
    int64_t now = 1000;
    gdml_coord_start(c, now);
    sm_record r;
    bool over = false;
    while (!over && sm_next(&data, &size, &r)) {
        gdml_rx rx;
        if (r.kind == 1) {
            now += (int64_t)r.len * 37;
            gdml_coord_on_tick(c, now);
        } else if (r.kind == 2) {
            gdml_coord_on_dropped(c, now, &(gdml_peer){.len = 2, .id = {'r', 'a'}});
        } else if (sm_rx(&r, &rx)) {
            gdml_coord_on_frame(c, now, &rx);
        } else {
            gdml_coord_on_refused(c, now, &rx, "does not decode");
        }
        gdml_action a;
        while (gdml_coord_next_action(c, &a)) {
            if (a.kind == GDML_ACT_COMMIT) {
                const char *layout;
                const gdml_store_tensor *t;
                size_t n;
                gdml_version_meta *m = gdml_coord_pending(c, &layout, &t, &n);
                for (size_t i = 0; i < t[0].n; i++)
                    if (!(t[0].data[i] == t[0].data[i]))
                        abort(); /* a version to commit is never NaN */
                (void)m;
                gdml_coord_on_committed(c, now, GDML_OK, NULL);
            }
            over |= a.kind == GDML_ACT_EXIT;
            gdml_action_release(&a);
        }
    }
    gdml_coord_destroy(&c);
    return 0;
}
