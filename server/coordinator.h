/*
 * coordinator.h - the global coordinator: merges the regions' model deltas
 * each round (FedAvg, weighted by samples), commits every global version to
 * the LMDB store (its meta record last, so it exists whole or not at all),
 * and sends the new version back to every region.
 */
#ifndef GDML_COORDINATOR_H
#define GDML_COORDINATOR_H

#include "config.h"
#include "err.h"

/*
 * Runs the coordinator described by cfg until its rounds are done (or a stop
 * signal arrives), then tells every region to stop. Resumes from the newest
 * version if the store already holds some. Writes one progress line per
 * committed version to stdout (see docs/operations.md for its keys).
 * Returns GDML_ERR_TIMEOUT if regions stop answering for coordinator.timeout_ms,
 * GDML_ERR_INTERRUPTED on a stop signal, or the error that ended the run.
 */
gdml_err gdml_coordinator_run(const gdml_config *cfg, gdml_errmsg *e);

#endif
