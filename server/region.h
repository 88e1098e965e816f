/*
 * region.h - the regional parameter server of one data center.
 *
 * The protocol logic is the state machine of region_sm.h; gdml_region_run
 * is its event loop between the workers' ROUTER link and the DEALER link to
 * the coordinator.
 */
#ifndef GDML_REGION_H
#define GDML_REGION_H

#include "config.h"
#include "err.h"

/*
 * Runs the regional server until the coordinator says STOP (returns GDML_OK),
 * a stop signal arrives (GDML_ERR_INTERRUPTED), or nothing moves for
 * server.timeout_ms (GDML_ERR_TIMEOUT, e names who it waited for).
 */
gdml_err gdml_region_run(const gdml_config *cfg, gdml_errmsg *e);

#endif
