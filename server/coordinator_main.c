/* coordinator_main.c - gdml-coordinator: command line, then gdml_coordinator_run. */
#include "program.h"
#include "coordinator.h"
#include "metrics.h"

static const char *const sections[] = {"coordinator", "data", "merge", "model", "store", "security", "net", "metrics", "privacy", "log", NULL};

static const gdml_program program = {
    .name = "gdml-coordinator",
    .summary = "Global coordinator: merges regional model deltas each round and stores "
               "every global model version in LMDB.",
    .usage = "[--config FILE] [options]",
    .sections = sections,
    .metrics_roles = GDML_ROLE_COORDINATOR,
};

int main(int argc, char **argv)
{
    return gdml_main(&program, argc, argv, gdml_coordinator_run);
}
