/* launch_main.c - gdml-launch: command line, then gdml_launch_run. */
#include "launch.h"
#include "program.h"

static const char *const sections[] = {"launch", "data", "log", NULL};

static const gdml_program program = {
    .name = "gdml-launch",
    .summary = "Runs a whole geo-distributed training job on this machine: splits the data "
               "across regions, starts a coordinator, regional servers and workers over "
               "loopback TCP, and prints progress and a summary. Keys of the other sections "
               "([coordinator], [server], [worker], [model]) come from --config or --set.",
    .usage = "[--config FILE] [options]",
    .sections = sections,
};

int main(int argc, char **argv)
{
    return gdml_main(&program, argc, argv, gdml_launch_run);
}
