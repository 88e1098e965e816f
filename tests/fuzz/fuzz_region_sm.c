/*
 * fuzz_region_sm.c - the regional server's state machine fed any sequence
 * of frames from workers and from the coordinator, ticks and dropped workers
 * (sm_input.h): every message handler of both its sides.
 */
#include "fuzz.h"
#include "sm_input.h"

#include "log.h"

#include "region_sm.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gdml_log_init("fuzz", NULL, GDML_LOG_ERROR, GDML_LOG_TEXT); /* what the input provokes is not news */
    gdml_region_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.name = "a";
    cfg.workers = 2;
    cfg.sync = gdml_sync_mode_find(size % 3 == 0 ? "time" : "steps");
    cfg.sync_every = 2;
    cfg.sync_ms = 500;
    cfg.learning_rate = 0.5;
    cfg.lr_decay = 1;
    cfg.scaffold = size % 2;
    cfg.timeout_ms = 20000;
    cfg.heartbeat_ms = 1000;
    cfg.peer_timeout_ms = 3000;
    cfg.max_worker_samples = 100000;
    cfg.max_grad_norm = 1000;
    cfg.encoder = size % 5 ? "dense" : "topk+int8";
    cfg.k_fraction = 0.2;
    cfg.threshold = 0.01;
    cfg.min_message_bytes = 64;
    cfg.seq_base = 10;
    gdml_region *r = NULL;
    gdml_errmsg e;
    if (gdml_region_new(&cfg, &r, &e) != GDML_OK)
        abort();
    int64_t now = 1000;
    gdml_region_start(r, now);
    sm_record rec;
    bool over = false;
    while (!over && sm_next(&data, &size, &rec)) {
        gdml_rx rx;
        int link = rec.kind == 3 ? GDML_LINK_UP : GDML_LINK_DOWN;
        if (rec.kind == 1) {
            now += (int64_t)rec.len * 37;
            gdml_region_on_tick(r, now);
        } else if (rec.kind == 2) {
            gdml_region_on_dropped(r, now, &(gdml_peer){.len = 3, .id = {'r', 'w', '0'}});
        } else if (sm_rx(&rec, &rx)) {
            gdml_region_on_frame(r, now, link, &rx);
        } else {
            gdml_region_on_refused(r, now, link, &rx, "does not decode");
        }
        gdml_action a;
        while (gdml_region_next_action(r, &a)) {
            over |= a.kind == GDML_ACT_EXIT;
            gdml_action_release(&a);
        }
    }
    gdml_region_destroy(&r);
    return 0;
}
