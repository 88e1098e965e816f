/*
 * test_supervisor.c - gdml-launch's supervision of real child processes:
 * a child that dies is restarted after its backoff with the same
 * arguments, a status no restart can mend fails at once, the limit holds,
 * chaos kills only the roles it is given, and a job that ends abandons the
 * restarts still due.
 */
#include "../support.h"

#include "procs.h"
#include "supervisor.h"
#include "util.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

Test(supervisor, roles_by_name)
{
    cr_assert_eq(gdml_role_of("coordinator"), GDML_ROLE_COORDINATOR);
    cr_assert_eq(gdml_role_of("server us-east"), GDML_ROLE_SERVER);
    cr_assert_eq(gdml_role_of("worker us-east.w0"), GDML_ROLE_WORKER);
    cr_assert_eq(gdml_role_of("servers x"), 0);
    cr_assert_eq(gdml_role_of(""), 0);
    unsigned mask;
    cr_assert(gdml_roles_parse("server,worker", &mask));
    cr_assert_eq(mask, GDML_ROLE_SERVER | GDML_ROLE_WORKER);
    cr_assert(gdml_roles_parse("coordinator", &mask));
    cr_assert_eq(mask, GDML_ROLE_COORDINATOR);
    cr_assert_not(gdml_roles_parse("server,,worker", &mask));
    cr_assert_not(gdml_roles_parse("everyone", &mask));
    cr_assert_not(gdml_roles_parse("", &mask));
}

Test(supervisor, which_deaths_a_restart_can_mend)
{
    cr_assert(gdml_restart_may_help(1));
    cr_assert(gdml_restart_may_help(3)); /* timed out waiting */
    cr_assert(gdml_restart_may_help(128 + SIGKILL));
    cr_assert(gdml_restart_may_help(128 + SIGSEGV));
    cr_assert_not(gdml_restart_may_help(0));
    cr_assert_not(gdml_restart_may_help(2)); /* its configuration is wrong */
    cr_assert_not(gdml_restart_may_help(4)); /* its store is damaged */
}

Test(supervisor, backoff_doubles_to_its_ceiling)
{
    cr_assert_eq(gdml_restart_backoff_ms(200, 0), 200);
    cr_assert_eq(gdml_restart_backoff_ms(200, 1), 400);
    cr_assert_eq(gdml_restart_backoff_ms(200, 3), 1600);
    cr_assert_eq(gdml_restart_backoff_ms(200, 10), GDML_RESTART_BACKOFF_MAX_MS);
    cr_assert_eq(gdml_restart_backoff_ms(200, 1000), GDML_RESTART_BACKOFF_MAX_MS);
    cr_assert_eq(gdml_restart_backoff_ms(0, 5), 0);
}

/* A child that writes its argument to the log, then exits with status or sleeps. */
static void start_child(gdml_proc *p, const char *name, const char *log, const char *script)
{
    gdml_errmsg e = {{0}};
    char *argv[] = {"/bin/sh", "-c", (char *)script, "child", "first", NULL};
    cr_assert_eq(gdml_proc_start(p, name, argv, log, false, &e), GDML_OK, "%s", e.text);
}

static gdml_proc *reap_within(gdml_proc *procs, size_t n, int ms)
{
    for (int64_t end = gdml_now_ms() + ms; gdml_now_ms() < end; usleep(5000)) {
        gdml_proc *p = gdml_procs_reap(procs, n);
        if (p)
            return p;
    }
    return NULL;
}

Test(supervisor, a_dead_child_is_restarted_with_the_same_arguments_until_the_limit)
{
    char *dir = gdml_test_tmpdir();
    char log[4200];
    snprintf(log, sizeof log, "%s/child.log", dir);
    gdml_proc procs[1];
    start_child(&procs[0], "worker w0", log, "echo run $1; exit 1");
    FILE *out = tmpfile();
    gdml_supervisor s;
    gdml_supervisor_config cfg = {.restart_limit = 2, .backoff_ms = 30};
    gdml_supervisor_init(&s, &cfg, procs, 1, out, gdml_now_ms());
    gdml_errmsg e = {{0}};
    for (int round = 0; round < 2; round++) {
        gdml_proc *p = reap_within(procs, 1, 5000);
        cr_assert_eq(p, &procs[0]);
        cr_assert_eq(p->status, 1);
        int64_t died = gdml_now_ms();
        cr_assert_eq(gdml_supervisor_on_exit(&s, p, died, &e), GDML_OK, "%s", e.text);
        /* Not before its backoff (30, then 60 ms). */
        cr_assert_eq(gdml_supervisor_tick(&s, died + 1, &e), GDML_OK);
        cr_assert_eq(p->pid, 0);
        cr_assert_eq(gdml_supervisor_tick(&s, died + 30 * (1 << round), &e), GDML_OK, "%s", e.text);
        cr_assert_gt(p->pid, 0, "not restarted after its backoff");
        cr_assert_eq(p->restarts, (unsigned)round + 1);
    }
    gdml_proc *p = reap_within(procs, 1, 5000);
    cr_assert_eq(p, &procs[0]);
    cr_assert_eq(gdml_supervisor_on_exit(&s, p, gdml_now_ms(), &e), GDML_ERR_IO);
    cr_assert(strstr(e.text, "worker w0 exited with status 1") && strstr(e.text, "2 times"), "%s",
              e.text);
    char *text = gdml_test_read_file(log);
    cr_assert_str_eq(text, "run first\nrun first\nrun first\n");
    cr_assert_eq(s.n_events, 3);
    cr_assert_str_eq(s.events[0].name, "worker w0");
    cr_assert_gt(s.events[0].restarted_ms, 0);
    cr_assert_eq(s.events[2].restarted_ms, 0);
    free(text);
    fclose(out);
    gdml_proc_fini(&procs[0]);
    gdml_test_rmtree(dir);
}

Test(supervisor, a_changed_argument_is_used_on_restart)
{
    char *dir = gdml_test_tmpdir();
    char log[4200];
    snprintf(log, sizeof log, "%s/child.log", dir);
    gdml_proc p;
    char *argv[] = {"/bin/sh", "-c", "echo $1", "child", "--listen", "tcp://127.0.0.1:*", NULL};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_proc_start(&p, "server a", argv, log, false, &e), GDML_OK);
    cr_assert_eq(reap_within(&p, 1, 5000), &p);
    cr_assert_eq(gdml_proc_set_arg(&p, "--listen", "tcp://127.0.0.1:5555", &e), GDML_OK);
    cr_assert_eq(gdml_proc_set_arg(&p, "--nothing", "x", &e), GDML_ERR_INVALID);
    cr_assert_eq(gdml_proc_restart(&p, &e), GDML_OK);
    cr_assert_eq(reap_within(&p, 1, 5000), &p);
    char *text = gdml_test_read_file(log);
    cr_assert_str_eq(text, "--listen\n--listen\n");
    free(text);
    /* The value after the flag changed: print it this time. */
    free(p.argv[2]);
    p.argv[2] = strdup("echo $2");
    cr_assert_eq(gdml_proc_restart(&p, &e), GDML_OK);
    cr_assert_eq(reap_within(&p, 1, 5000), &p);
    text = gdml_test_read_file(log);
    cr_assert_str_eq(text, "--listen\n--listen\ntcp://127.0.0.1:5555\n");
    free(text);
    gdml_proc_fini(&p);
    gdml_test_rmtree(dir);
}

Test(supervisor, a_status_no_restart_mends_fails_at_once)
{
    char *dir = gdml_test_tmpdir();
    char log[4200];
    snprintf(log, sizeof log, "%s/child.log", dir);
    gdml_proc procs[1];
    start_child(&procs[0], "coordinator", log, "exit 4");
    gdml_supervisor s;
    gdml_supervisor_config cfg = {.restart_limit = 5, .backoff_ms = 10};
    FILE *out = tmpfile();
    gdml_supervisor_init(&s, &cfg, procs, 1, out, gdml_now_ms());
    gdml_proc *p = reap_within(procs, 1, 5000);
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_supervisor_on_exit(&s, p, gdml_now_ms(), &e), GDML_ERR_IO);
    cr_assert(strstr(e.text, "a restart would fail the same way"), "%s", e.text);
    fclose(out);
    gdml_proc_fini(&procs[0]);
    gdml_test_rmtree(dir);
}

Test(supervisor, chaos_kills_only_its_roles_and_stops_at_its_count)
{
    char *dir = gdml_test_tmpdir();
    char log[4200];
    snprintf(log, sizeof log, "%s/child.log", dir);
    gdml_proc procs[3];
    start_child(&procs[0], "coordinator", log, "exec sleep 30");
    start_child(&procs[1], "server a", log, "exec sleep 30");
    start_child(&procs[2], "worker a.w0", log, "exec sleep 30");
    gdml_supervisor s;
    gdml_supervisor_config cfg = {.restart_limit = 10,
                                  .backoff_ms = 0,
                                  .chaos_every_ms = 20,
                                  .chaos_kills = 3,
                                  .chaos_roles = GDML_ROLE_WORKER,
                                  .chaos_seed = 7};
    FILE *out = tmpfile();
    int64_t t = gdml_now_ms();
    gdml_supervisor_init(&s, &cfg, procs, 3, out, t);
    gdml_errmsg e = {{0}};
    for (int64_t now = t; now < t + 400; now += 5) {
        cr_assert_eq(gdml_supervisor_tick(&s, now, &e), GDML_OK, "%s", e.text);
        gdml_proc *p;
        while ((p = gdml_procs_reap(procs, 3))) {
            cr_assert_eq(p, &procs[2], "chaos killed %s, not a worker", p->name);
            cr_assert_eq(p->status, 128 + SIGKILL);
            cr_assert_eq(gdml_supervisor_on_exit(&s, p, now, &e), GDML_OK);
        }
        usleep(2000);
    }
    cr_assert_eq(s.kills, 3);
    cr_assert_gt(procs[0].pid, 0);
    cr_assert_gt(procs[1].pid, 0);
    cr_assert(s.events[0].chaos);
    gdml_procs_stop_all(procs, 3, 1000);
    for (int i = 0; i < 3; i++)
        gdml_proc_fini(&procs[i]);
    fclose(out);
    gdml_test_rmtree(dir);
}

Test(supervisor, restarts_due_when_the_job_ends_are_abandoned)
{
    char *dir = gdml_test_tmpdir();
    char log[4200];
    snprintf(log, sizeof log, "%s/child.log", dir);
    gdml_proc procs[1];
    start_child(&procs[0], "worker w0", log, "exit 1");
    gdml_supervisor s;
    gdml_supervisor_config cfg = {.restart_limit = 5, .backoff_ms = 60000};
    FILE *out = tmpfile();
    gdml_supervisor_init(&s, &cfg, procs, 1, out, gdml_now_ms());
    gdml_proc *p = reap_within(procs, 1, 5000);
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_supervisor_on_exit(&s, p, gdml_now_ms(), &e), GDML_OK);
    cr_assert_neq(p->restart_at_ms, 0);
    gdml_supervisor_finish(&s);
    cr_assert_eq(p->restart_at_ms, 0);
    cr_assert_eq(p->status, 0, "a death the end came without is not a failure");
    cr_assert_eq(gdml_supervisor_tick(&s, gdml_now_ms() + 120000, &e), GDML_OK);
    cr_assert_eq(p->pid, 0, "restarted after the job ended");
    fclose(out);
    gdml_proc_fini(&procs[0]);
    gdml_test_rmtree(dir);
}
