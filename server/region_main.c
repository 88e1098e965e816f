/* region_main.c - gdml-server: command line, then gdml_region_run. */
#include "metrics.h"
#include "program.h"
#include "region.h"

static const char *const sections[] = {"server", "budget", "security", "net", "metrics", "privacy", "log", NULL};

static const gdml_program program = {
    .name = "gdml-server",
    .summary = "Regional parameter server: aggregates its data center's workers and "
               "syncs model deltas with the global coordinator over the WAN.",
    .usage = "--name NAME [--config FILE] [options]",
    .sections = sections,
    .metrics_roles = GDML_ROLE_SERVER,
};

int main(int argc, char **argv)
{
    return gdml_main(&program, argc, argv, gdml_region_run);
}
