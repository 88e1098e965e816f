/* procs.c - child processes of a local job: start, reap, stop, show their logs. */
#include "procs.h"

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static void free_argv(char **argv)
{
    if (!argv)
        return;
    for (char **a = argv; *a; a++)
        free(*a);
    free(argv);
}

static char **copy_argv(char *const argv[])
{
    size_t n = 0;
    while (argv[n])
        n++;
    char **copy = calloc(n + 1, sizeof *copy);
    for (size_t i = 0; copy && i < n; i++)
        if (!(copy[i] = strdup(argv[i]))) {
            free_argv(copy);
            return NULL;
        }
    return copy;
}

/* Forks and runs p->argv with its output going where p says. */
static gdml_err spawn(gdml_proc *p, gdml_errmsg *e)
{
    int log = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log < 0)
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot open log '%s': %s", p->log_path,
                               strerror(errno));
    int out[2] = {-1, -1};
    if (p->pipe_stdout && (pipe(out) != 0 || fcntl(out[0], F_SETFD, FD_CLOEXEC) != 0)) {
        close(log);
        return gdml_errmsg_set(e, GDML_ERR_IO, "pipe: %s", strerror(errno));
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(log);
        if (p->pipe_stdout) {
            close(out[0]);
            close(out[1]);
        }
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot start %s: %s", p->name, strerror(err));
    }
    if (pid == 0) {
        /* Its own process group, so that a terminal's Ctrl-C reaches only the
         * launcher, which stops the job in order; and it dies with the launcher. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(127);
        dup2(p->pipe_stdout ? out[1] : log, STDOUT_FILENO);
        dup2(log, STDERR_FILENO);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, STDIN_FILENO);
        /* Only the three standard descriptors go on into the program. */
        if (devnull > STDERR_FILENO)
            close(devnull);
        if (p->pipe_stdout)
            close(out[1]);
        execv(p->argv[0], p->argv);
        dprintf(STDERR_FILENO, "cannot run %s: %s\n", p->argv[0], strerror(errno));
        _exit(127);
    }
    close(log);
    if (p->pipe_stdout) {
        close(out[1]);
        if (p->stdout_fd >= 0)
            close(p->stdout_fd);
        p->stdout_fd = out[0];
    }
    p->pid = pid;
    p->exited = false;
    p->started_ms = gdml_now_ms();
    p->restart_at_ms = 0;
    return GDML_OK;
}

gdml_err gdml_proc_start(gdml_proc *p, const char *name, char *const argv[], const char *log_path,
                         bool pipe_stdout, gdml_errmsg *e)
{
    memset(p, 0, sizeof *p);
    p->stdout_fd = -1;
    p->pipe_stdout = pipe_stdout;
    snprintf(p->name, sizeof p->name, "%s", name);
    snprintf(p->log_path, sizeof p->log_path, "%s", log_path);
    if (!(p->argv = copy_argv(argv)))
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory");
    gdml_err err = spawn(p, e);
    if (err)
        gdml_proc_fini(p);
    return err;
}

gdml_err gdml_proc_restart(gdml_proc *p, gdml_errmsg *e)
{
    gdml_err err = spawn(p, e);
    if (!err)
        p->restarts++;
    return err;
}

gdml_err gdml_proc_set_arg(gdml_proc *p, const char *flag, const char *value, gdml_errmsg *e)
{
    for (char **a = p->argv; a[0] && a[1]; a++)
        if (strcmp(a[0], flag) == 0) {
            char *copy = strdup(value);
            if (!copy)
                return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory");
            free(a[1]);
            a[1] = copy;
            return GDML_OK;
        }
    return gdml_errmsg_set(e, GDML_ERR_INVALID, "%s was started without %s", p->name, flag);
}

void gdml_proc_fini(gdml_proc *p)
{
    free_argv(p->argv);
    p->argv = NULL;
}

static void record_exit(gdml_proc *p, int status)
{
    p->exited = true;
    p->pid = 0;
    p->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

gdml_proc *gdml_procs_reap(gdml_proc *procs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int status;
        if (procs[i].pid > 0 && waitpid(procs[i].pid, &status, WNOHANG) == procs[i].pid) {
            record_exit(&procs[i], status);
            return &procs[i];
        }
    }
    return NULL;
}

bool gdml_procs_wait_all(gdml_proc *procs, size_t n, int timeout_ms)
{
    int64_t deadline = gdml_now_ms() + timeout_ms;
    for (;;) {
        while (gdml_procs_reap(procs, n))
            ;
        bool all = true;
        for (size_t i = 0; i < n; i++)
            all = all && procs[i].pid == 0;
        if (all)
            return true;
        if (gdml_now_ms() >= deadline)
            return false;
        usleep(10 * 1000);
    }
}

void gdml_procs_stop_all(gdml_proc *procs, size_t n, int grace_ms)
{
    for (size_t i = 0; i < n; i++)
        if (procs[i].pid > 0)
            kill(procs[i].pid, SIGTERM);
    if (gdml_procs_wait_all(procs, n, grace_ms))
        return;
    for (size_t i = 0; i < n; i++)
        if (procs[i].pid > 0) {
            int status;
            kill(procs[i].pid, SIGKILL);
            if (waitpid(procs[i].pid, &status, 0) == procs[i].pid)
                record_exit(&procs[i], status);
        }
}

void gdml_proc_log_tail(const gdml_proc *p, int lines, char *buf, size_t cap)
{
    buf[0] = '\0';
    FILE *f = fopen(p->log_path, "r");
    if (!f)
        return;
    char tail[8192];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long start = size > (long)sizeof tail - 1 ? size - (long)sizeof tail + 1 : 0;
    fseek(f, start, SEEK_SET);
    size_t len = fread(tail, 1, sizeof tail - 1, f);
    fclose(f);
    tail[len] = '\0';
    while (len && tail[len - 1] == '\n')
        tail[--len] = '\0';
    const char *from = tail;
    int seen = 0;
    for (size_t i = len; i > 0; i--)
        if (tail[i - 1] == '\n' && ++seen == lines) {
            from = tail + i;
            break;
        }
    size_t used = 0;
    for (const char *line = from; *line && used + 1 < cap;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        int w = snprintf(buf + used, cap - used, "    %.*s\n", (int)n, line);
        if (w < 0)
            break;
        used += (size_t)w;
        line += n + (end ? 1 : 0);
    }
}
