/*
 * launch.h - gdml-launch: runs a whole geo-distributed training job on one
 * machine (split, coordinator, regional servers, workers, summary).
 */
#ifndef GDML_LAUNCH_H
#define GDML_LAUNCH_H

#include "config.h"
#include "err.h"

/*
 * Runs the job cfg describes and prints its progress and summary to stdout.
 * Returns GDML_OK when every process finished cleanly and summary.json is
 * written; otherwise every child has been stopped and e says which process
 * failed and where its log is.
 */
gdml_err gdml_launch_run(const gdml_config *cfg, gdml_errmsg *e);

#endif
