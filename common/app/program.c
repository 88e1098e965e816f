/* program.c - the shared main() of gdml-coordinator, gdml-server and gdml-worker. */
#include "program.h"

#include "log.h"
#include "tensor.h"
#include "util.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Exit statuses (program.h, docs/operations.md). */
enum {
    EXIT_DONE = 0,
    EXIT_FAILED = 1,
    EXIT_USAGE = 2,
    EXIT_TIMEOUT = 3,
    EXIT_DAMAGED = 4,
    EXIT_SIGNAL = 130
};

int gdml_exit_status(gdml_err err)
{
    switch (err) {
    case GDML_OK:
        return EXIT_DONE;
    case GDML_ERR_INTERRUPTED:
        return EXIT_SIGNAL;
    case GDML_ERR_CONFIG:
        return EXIT_USAGE;
    case GDML_ERR_TIMEOUT:
        return EXIT_TIMEOUT;
    case GDML_ERR_FORMAT:
    case GDML_ERR_NOSPACE:
        return EXIT_DAMAGED;
    default:
        return EXIT_FAILED;
    }
}

/* A SIGBUS can only come from a mapped file changing under us (the store
 * truncated while open, a disk failing): say so instead of dying silently. */
static void on_sigbus(int sig)
{
    static const char msg[] = "gdml: the model store's file was truncated or its disk failed while "
                              "in use (SIGBUS); run gdml-models verify on it\n";
    (void)sig;
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(EXIT_DAMAGED);
}

/* Who a line is from: the region of a server, the name of a worker, none for the rest. */
static const char *log_name(const gdml_program *p, const gdml_config *cfg)
{
    if (strcmp(p->name, "gdml-server") == 0)
        return cfg->server.name;
    if (strcmp(p->name, "gdml-worker") == 0)
        return cfg->worker.name;
    return "";
}

/* The command line, kept for gdml_program_reload. */
static const gdml_program *main_program;
static int main_argc;
static char **main_argv;

gdml_err gdml_program_reload(gdml_config *out, gdml_errmsg *e)
{
    if (!main_program)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "no command line to reload from");
    gdml_config cfg;
    gdml_config_defaults(&cfg);
    int positional[1], n_positional = 0;
    bool exit_now = false;
    gdml_err err = gdml_cli_parse(main_program, main_argc, main_argv, &cfg, positional, 1,
                                  &n_positional, &exit_now, e);
    if (err)
        return err;
    *out = cfg;
    return GDML_OK;
}

int gdml_main(const gdml_program *p, int argc, char **argv, gdml_run_fn run)
{
    main_program = p;
    main_argc = argc;
    main_argv = argv;
    gdml_config cfg;
    gdml_config_defaults(&cfg);
    gdml_errmsg e = {{0}};
    int positional[1];
    int n_positional = 0;
    bool exit_now = false;
    if (gdml_cli_parse(p, argc, argv, &cfg, positional, 1, &n_positional, &exit_now, &e)) {
        fprintf(stderr, "%s: %s\n", p->name, e.text);
        return EXIT_USAGE;
    }
    if (exit_now)
        return EXIT_DONE;
    if (n_positional > 0) {
        fprintf(stderr, "%s: unexpected argument '%s'; run '%s --help' for the options\n", p->name,
                argv[positional[0]], p->name);
        return EXIT_USAGE;
    }
    gdml_log_init(p->name + 5 /* drop "gdml-" */, log_name(p, &cfg),
                  (gdml_log_level)gdml_config_log_level(&cfg),
                  (gdml_log_format)gdml_config_log_format(&cfg));
    gdml_signals_install();
    /* Several gdml processes share a machine's cores; each computes on one. */
    gdml_tensor_set_threads(1);
    gdml_keep_freed_memory();

    signal(SIGBUS, on_sigbus);

    gdml_err err = run(&cfg, &e);
    if (err == GDML_ERR_INTERRUPTED)
        gdml_warn("exit", "status=%d why=%s", gdml_exit_status(err), "stopped by a signal");
    else if (err)
        gdml_error("exit", "status=%d why=%s", gdml_exit_status(err),
                   e.text[0] ? e.text : gdml_strerror(err));
    return gdml_exit_status(err);
}
