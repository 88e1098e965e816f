/*
 * region.h - the regional parameter server of one data center.
 *
 * On the LAN side it serves its workers synchronously (BSP): each step it
 * waits for one gradient from every worker, applies their sample-weighted
 * mean with SGD, and sends the new model back. On the WAN side, every
 * server.sync_every local steps it sends the coordinator its model delta
 * (local model minus the global model it started from) and waits for the
 * merged global model, which replaces its own.
 */
#ifndef GDML_REGION_H
#define GDML_REGION_H

#include "config.h"
#include "err.h"

/*
 * Runs the regional server until the coordinator says STOP (returns GDML_OK),
 * a stop signal arrives (GDML_ERR_INTERRUPTED), or a peer stays silent for
 * server.timeout_ms (GDML_ERR_TIMEOUT, e names who).
 */
gdml_err gdml_region_run(const gdml_config *cfg, gdml_errmsg *e);

#endif
