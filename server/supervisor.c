/* supervisor.c - restarts for children that die, and chaos (supervisor.h). */
#include "supervisor.h"

#include "log.h"

#include <signal.h>
#include <string.h>

unsigned gdml_role_of(const char *name)
{
    static const struct {
        const char *word;
        unsigned role;
    } roles[] = {{"coordinator", GDML_ROLE_COORDINATOR},
                 {"server", GDML_ROLE_SERVER},
                 {"worker", GDML_ROLE_WORKER}};
    size_t len = strcspn(name, " ");
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
        if (strlen(roles[i].word) == len && strncmp(name, roles[i].word, len) == 0)
            return roles[i].role;
    return 0;
}

bool gdml_roles_parse(const char *list, unsigned *mask)
{
    *mask = 0;
    while (*list) {
        size_t len = strcspn(list, ",");
        char word[16];
        if (len == 0 || len >= sizeof word)
            return false;
        memcpy(word, list, len);
        word[len] = '\0';
        unsigned role = gdml_role_of(word);
        if (!role)
            return false;
        *mask |= role;
        list += len + (list[len] == ',');
    }
    return *mask != 0;
}

bool gdml_restart_may_help(int status)
{
    /* 2: its configuration or command line is wrong; 4: its store is damaged.
     * Either fails again the same way. */
    return status != 0 && status != 2 && status != 4;
}

int64_t gdml_restart_backoff_ms(int64_t base_ms, unsigned restarts)
{
    int64_t wait = base_ms;
    for (unsigned i = 0; i < restarts && wait < GDML_RESTART_BACKOFF_MAX_MS; i++)
        wait *= 2;
    return wait < GDML_RESTART_BACKOFF_MAX_MS ? wait : GDML_RESTART_BACKOFF_MAX_MS;
}

/* Uniform in [2/3, 4/3) times the mean interval: 20..40 s for a mean of 30 s. */
static void schedule_chaos(gdml_supervisor *s, int64_t now_ms)
{
    double f = (2.0 + 2.0 * gdml_rng_uniform(&s->rng)) / 3.0;
    s->next_chaos_ms = now_ms + (int64_t)(f * (double)s->cfg.chaos_every_ms);
}

void gdml_supervisor_init(gdml_supervisor *s, const gdml_supervisor_config *cfg, gdml_proc *procs,
                          size_t n_procs, FILE *out, int64_t now_ms)
{
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    s->procs = procs;
    s->n_procs = n_procs;
    s->out = out;
    s->start_ms = now_ms;
    gdml_rng_seed(&s->rng, cfg->chaos_seed);
    if (cfg->chaos_every_ms > 0 && cfg->chaos_kills > 0)
        schedule_chaos(s, now_ms);
}

void gdml_supervisor_track(gdml_supervisor *s, gdml_proc *procs, size_t n_procs)
{
    s->procs = procs;
    s->n_procs = n_procs;
}

static gdml_supervisor_event *event_for(gdml_supervisor *s, const gdml_proc *p)
{
    /* The newest event of p that is still waiting for its restart. */
    for (size_t i = s->n_events; i > 0; i--)
        if (strcmp(s->events[i - 1].name, p->name) == 0)
            return s->events[i - 1].restarted_ms ? NULL : &s->events[i - 1];
    return NULL;
}

static void describe_status(int status, char *buf, size_t cap)
{
    if (status > 128)
        snprintf(buf, cap, "was killed by signal %d (%s)", status - 128, strsignal(status - 128));
    else
        snprintf(buf, cap, "exited with status %d", status);
}

gdml_err gdml_supervisor_on_exit(gdml_supervisor *s, gdml_proc *p, int64_t now_ms, gdml_errmsg *e)
{
    if (p->status == 0 || s->finishing)
        return GDML_OK;
    char how[96];
    describe_status(p->status, how, sizeof how);
    gdml_supervisor_event *ev = event_for(s, p);
    if (!ev && s->n_events < GDML_SUPERVISOR_MAX_EVENTS) {
        ev = &s->events[s->n_events++];
        snprintf(ev->name, sizeof ev->name, "%s", p->name);
        ev->died_ms = now_ms - s->start_ms;
    }
    if (ev)
        ev->status = p->status;
    if (!gdml_restart_may_help(p->status))
        return gdml_errmsg_set(e, GDML_ERR_IO, "%s %s; a restart would fail the same way", p->name,
                               how);
    if (p->restarts >= s->cfg.restart_limit)
        return gdml_errmsg_set(
            e, GDML_ERR_IO, "%s %s%s; it was restarted %u times already (launch.restart_limit)",
            p->name, how, s->cfg.restart_limit ? "" : " and restarts are off", p->restarts);
    if (now_ms - p->started_ms >= GDML_RESTART_HEALTHY_MS)
        p->backoff_step = 0;
    int64_t wait = gdml_restart_backoff_ms(s->cfg.backoff_ms, p->backoff_step++);
    p->restart_at_ms = now_ms + (wait > 0 ? wait : 1);
    fprintf(s->out, "gdml-launch: %s %s at %.1f s; restarting it in %.1f s (restart %u of %u)\n",
            p->name, how, (double)(now_ms - s->start_ms) / 1000.0, (double)wait / 1000.0,
            p->restarts + 1, s->cfg.restart_limit);
    fflush(s->out);
    return GDML_OK;
}

static void chaos_kill(gdml_supervisor *s, int64_t now_ms)
{
    size_t alive[1024], n = 0;
    for (size_t i = 0; i < s->n_procs && n < sizeof alive / sizeof alive[0]; i++)
        if (s->procs[i].pid > 0 && (gdml_role_of(s->procs[i].name) & s->cfg.chaos_roles))
            alive[n++] = i;
    schedule_chaos(s, now_ms);
    if (n == 0)
        return;
    gdml_proc *p = &s->procs[alive[gdml_rng_below(&s->rng, n)]];
    if (kill(p->pid, SIGKILL) != 0)
        return;
    s->kills++;
    fprintf(s->out, "gdml-launch: chaos killed %s (pid %d) at %.1f s (kill %u of %u)\n", p->name,
            (int)p->pid, (double)(now_ms - s->start_ms) / 1000.0, s->kills, s->cfg.chaos_kills);
    fflush(s->out);
    if (s->n_events < GDML_SUPERVISOR_MAX_EVENTS) {
        gdml_supervisor_event *ev = &s->events[s->n_events++];
        memset(ev, 0, sizeof *ev);
        snprintf(ev->name, sizeof ev->name, "%s", p->name);
        ev->died_ms = now_ms - s->start_ms;
        ev->chaos = true;
    }
}

gdml_err gdml_supervisor_tick(gdml_supervisor *s, int64_t now_ms, gdml_errmsg *e)
{
    if (s->finishing)
        return GDML_OK;
    for (size_t i = 0; i < s->n_procs; i++) {
        gdml_proc *p = &s->procs[i];
        if (p->pid > 0 || !p->restart_at_ms || now_ms < p->restart_at_ms)
            continue;
        gdml_err err = gdml_proc_restart(p, e);
        if (err)
            return err;
        gdml_supervisor_event *ev = event_for(s, p);
        if (ev)
            ev->restarted_ms = now_ms - s->start_ms;
        fprintf(s->out, "gdml-launch: restarted %s (pid %d) at %.1f s\n", p->name, (int)p->pid,
                (double)(now_ms - s->start_ms) / 1000.0);
        fflush(s->out);
    }
    if (s->cfg.chaos_every_ms > 0 && s->kills < s->cfg.chaos_kills && now_ms >= s->next_chaos_ms)
        chaos_kill(s, now_ms);
    return GDML_OK;
}

void gdml_supervisor_finish(gdml_supervisor *s)
{
    s->finishing = true;
    for (size_t i = 0; i < s->n_procs; i++) {
        gdml_proc *p = &s->procs[i];
        if (!p->restart_at_ms)
            continue;
        /* It died on the way to the end, which came without it: not a failure. */
        p->restart_at_ms = 0;
        p->status = 0;
        fprintf(s->out, "gdml-launch: %s is not restarted: the job has finished\n", p->name);
    }
}
