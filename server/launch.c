/*
 * launch.c - gdml-launch: a whole geo-distributed job on one machine.
 *
 * It splits the training set across the configured regions (each region's
 * part written to its own directory, which only that region's workers read),
 * starts a coordinator, one regional server per region and launch.workers
 * workers per region as separate processes over loopback TCP on ports the
 * kernel picks (so that runs can coexist), prints one line per global
 * version from the coordinator's progress output, stops every process if any
 * fails, and ends with a summary, also written as summary.json.
 *
 * Everything a run makes lives in its run directory: job.ini (the exact
 * configuration every process ran with), data/<region>/, logs/ (each
 * process's log, and bytes-*.csv: every WAN message), store/ (the LMDB model
 * versions), rounds.csv (one line per version), summary.json and plots/
 * (gdml-report's, run at the end). What it prints while the job runs is
 * launch_progress.c's; the end of a run, launch_summary.c's.
 */
#include "launch.h"
#include "launch_impl.h"

#include "config.h"
#include "keys.h"
#include "log.h"
#include "procs.h"
#include "split.h"
#include "store.h"
#include "supervisor.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Removes the files of dir whose names end in suffix ("" for all). */
static gdml_err remove_files(const char *dir, const char *suffix, gdml_errmsg *e)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT
                   ? GDML_OK
                   : gdml_errmsg_set(e, GDML_ERR_IO, "cannot read '%s': %s", dir, strerror(errno));
    gdml_err err = GDML_OK;
    struct dirent *ent;
    size_t want = strlen(suffix);
    while (!err && (ent = readdir(d))) {
        size_t len = strlen(ent->d_name);
        if (ent->d_name[0] == '.' || len < want || strcmp(ent->d_name + len - want, suffix) != 0)
            continue;
        char path[PATH_MAX];
        if (!(err = path_join(path, dir, ent->d_name, e)) && unlink(path) != 0 && errno != ENOENT)
            err = gdml_errmsg_set(e, GDML_ERR_IO, "cannot remove '%s': %s", path, strerror(errno));
    }
    closedir(d);
    return err;
}

/*
 * A resumed run keeps its store, checkpoints, logs and rounds.csv; the
 * endpoint files of its last processes are stale, and its keys are made
 * anew (allow-lists are appended to as keys are made).
 */
static gdml_err clear_stale(launch *L, gdml_errmsg *e)
{
    char keys[PATH_MAX];
    gdml_err err = remove_files(L->run_dir, ".endpoint", e);
    if (!err && !(err = path_join(keys, L->run_dir, "keys", e)))
        err = remove_files(keys, "", e);
    if (!err)
        printf("gdml-launch: resuming the run in %s\n", L->run_dir);
    return err;
}

static gdml_err make_run_dir(launch *L, gdml_errmsg *e)
{
    char dir[PATH_MAX];
    if (*L->cfg->launch.run_dir) {
        snprintf(dir, sizeof dir, "%s", L->cfg->launch.run_dir);
    } else {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        snprintf(dir, sizeof dir, "runs/%04d%02d%02d-%02d%02d%02d-%ld", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)getpid());
    }
    /* A run directory holds one run: reusing one resumes its store, which
     * is only done when asked for. */
    DIR *existing = L->resume ? NULL : opendir(dir);
    if (existing) {
        struct dirent *d;
        bool empty = true;
        while (empty && (d = readdir(existing)))
            empty = strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0;
        closedir(existing);
        if (!empty)
            return gdml_errmsg_set(e, GDML_ERR_EXISTS,
                                   "run directory '%s' is not empty; give a new --run-dir, "
                                   "remove it, or resume the run in it with --resume on",
                                   dir);
    }
    char sub[PATH_MAX];
    gdml_err err = gdml_mkdir_p(dir, e);
    if (!err && !(err = path_join(sub, dir, "logs", e)))
        err = gdml_mkdir_p(sub, e);
    if (err)
        return err;
    if (!realpath(dir, L->run_dir))
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot resolve '%s': %s", dir, strerror(errno));
    if ((err = path_join(L->job_ini, L->run_dir, "job.ini", e)) ||
        (err = path_join(L->store_dir, L->run_dir, "store", e)))
        return err;
    return L->resume ? clear_stale(L, e) : GDML_OK;
}

/* The programs are installed side by side; find them next to this one. */
static gdml_err find_bin_dir(launch *L, gdml_errmsg *e)
{
    ssize_t n = readlink("/proc/self/exe", L->bin_dir, sizeof L->bin_dir - 1);
    if (n <= 0)
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot find this program's path: %s",
                               strerror(errno));
    L->bin_dir[n] = '\0';
    char *slash = strrchr(L->bin_dir, '/');
    if (slash)
        *slash = '\0';
    return GDML_OK;
}

static gdml_err split_data(launch *L, gdml_errmsg *e)
{
    const gdml_config *cfg = L->cfg;
    char data_dir[PATH_MAX];
    size_t n = 0;
    int mode = gdml_split_mode_parse(cfg->launch.split);
    gdml_err err = path_join(data_dir, L->run_dir, "data", e);
    if (!err)
        err = gdml_config_split_data(cfg, L->names, (unsigned)L->n_regions, data_dir, L->parts, &n,
                                     e);
    if (err)
        return err;

    printf("split: %zu samples to %d regions, %s", n, L->n_regions, cfg->launch.split);
    if (mode == GDML_SPLIT_DIRICHLET)
        printf(" (alpha %g)", cfg->launch.alpha);
    printf(", seed %lld\n", (long long)cfg->launch.seed);
    L->central = 0;
    for (int r = 0; r < L->n_regions; r++) {
        const gdml_split_part *p = &L->parts[r];
        printf("  %-12s %6llu samples, by class:", p->name, (unsigned long long)p->samples);
        for (unsigned c = 0; c < (unsigned)cfg->model.classes && c < 256; c++)
            printf(" %llu", (unsigned long long)p->per_class[c]);
        printf("\n");
        if (p->raw_bytes > L->parts[L->central].raw_bytes)
            L->central = r;
    }
    /* Centralizing moves every region's raw data except the largest one's. */
    for (int r = 0; r < L->n_regions; r++)
        if (r != L->central) {
            L->raw_bytes += L->parts[r].raw_bytes;
            L->raw_gzip_bytes += L->parts[r].gzip_bytes;
        }
    printf("copying the raw data to %s instead would move %.2f MB (%.2f MB gzipped)\n",
           L->names[L->central], mb(L->raw_bytes), mb(L->raw_gzip_bytes));
    return GDML_OK;
}

/*
 * Starts one program with `--config job.ini` and the given overrides. Its
 * metrics address goes to RUN_DIR/NAME.metrics (NAME: log_file without
 * .log), for scripts and Prometheus's file discovery.
 */
static gdml_err start(launch *L, const char *program, const char *name, const char *log_file,
                      bool pipe_stdout, const char *const *args, gdml_proc **out, gdml_errmsg *e)
{
    char path[PATH_MAX], log[PATH_MAX], logs[PATH_MAX], metrics[PATH_MAX], file[GDML_NAME_MAX + 32];
    char *argv[32];
    size_t argc = 0;
    size_t stem = strlen(log_file) > 4 ? strlen(log_file) - 4 : strlen(log_file); /* ".log" */
    snprintf(file, sizeof file, "%.*s.metrics", (int)stem, log_file);
    gdml_err err = path_join(path, L->bin_dir, program, e);
    if (!err)
        err = path_join(logs, L->run_dir, "logs", e);
    if (!err)
        err = path_join(log, logs, log_file, e);
    if (!err)
        err = path_join(metrics, L->run_dir, file, e);
    if (err)
        return err;
    argv[argc++] = path;
    argv[argc++] = "--config";
    argv[argc++] = L->job_ini;
    argv[argc++] = "--metrics-file";
    argv[argc++] = metrics;
    for (; *args && argc < 31; args++)
        argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    gdml_proc *p = &L->procs[L->n_procs];
    if ((err = gdml_proc_start(p, name, argv, log, pipe_stdout, e)))
        return err;
    L->n_procs++;
    *out = p;
    return GDML_OK;
}

/* Shows the end of a failed child's log, and says what failed (what, or its status). */
static gdml_err child_failed(const gdml_proc *p, const char *what, gdml_errmsg *e)
{
    char tail[4096], said[GDML_ERRMSG_MAX];
    if (what)
        snprintf(said, sizeof said, "%s", what);
    else
        snprintf(said, sizeof said, "%s exited with status %d", p->name, p->status);
    gdml_proc_log_tail(p, 10, tail, sizeof tail);
    fflush(stdout);
    fprintf(stderr, "gdml-launch: %s; the end of its log %s:\n%s", said, p->log_path, tail);
    return gdml_errmsg_set(e, GDML_ERR_IO, "%s; see %s", said, p->log_path);
}

/* Waits for a child to write its bound endpoint, or to fail trying. */
static gdml_err await_endpoint(launch *L, gdml_proc *p, const char *file, char *endpoint,
                               size_t cap, gdml_errmsg *e)
{
    int64_t deadline = gdml_now_ms() + STARTUP_TIMEOUT_MS;
    while (gdml_now_ms() < deadline && !gdml_stop_requested()) {
        FILE *f = fopen(file, "r");
        if (f) {
            bool ok = fgets(endpoint, (int)cap, f) != NULL;
            fclose(f);
            endpoint[strcspn(endpoint, "\n")] = '\0';
            if (ok && *endpoint)
                return GDML_OK;
        }
        gdml_proc *dead = gdml_procs_reap(L->procs, L->n_procs);
        if (dead) {
            char what[256];
            snprintf(what, sizeof what, "%s exited with status %d while starting", dead->name,
                     dead->status);
            return child_failed(dead, what, e);
        }
        usleep(20 * 1000);
    }
    return gdml_errmsg_set(e, GDML_ERR_TIMEOUT, "%s did not start listening within %d s", p->name,
                           STARTUP_TIMEOUT_MS / 1000);
}

/* dir/NAME.key and dir/NAME.pub for name; the paths into key and pub. */
static gdml_err make_key(launch *L, const char *name, char *key, char *pub, gdml_errmsg *e)
{
    char dir[PATH_MAX];
    gdml_err err = path_join(dir, L->run_dir, "keys", e);
    if (!err)
        err = gdml_keys_write_pair(dir, name, e);
    if (!err && (snprintf(key, PATH_MAX, "%s/%s.key", dir, name) >= PATH_MAX ||
                 snprintf(pub, PATH_MAX, "%s/%s.pub", dir, name) >= PATH_MAX))
        err = gdml_errmsg_set(e, GDML_ERR_INVALID, "the key path under '%s' is too long", dir);
    return err;
}

/* Appends the .pub file at pub to the allow-list at allow. */
static gdml_err allow_add(const char *allow, const char *pub, gdml_errmsg *e)
{
    FILE *in = fopen(pub, "r"), *out = fopen(allow, "a");
    gdml_err err = GDML_OK;
    if (!in || !out)
        err = gdml_errmsg_set(e, GDML_ERR_IO, "cannot write the allow-list '%s': %s", allow,
                              strerror(errno));
    char buf[512];
    size_t n;
    while (!err && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n)
            err = gdml_errmsg_set(e, GDML_ERR_IO, "cannot write '%s'", allow);
    if (in)
        fclose(in);
    if (out && fclose(out) != 0 && !err)
        err = gdml_errmsg_set(e, GDML_ERR_IO, "cannot write '%s'", allow);
    return err;
}

/*
 * The CURVE keys of a local job, made afresh in run_dir/keys: one pair for
 * the coordinator and for each region (and each worker, with lan_curve), and
 * the allow-lists that admit them: what an operator does by hand across
 * hosts (docs/security.md).
 */
static gdml_err make_keys(launch *L, gdml_errmsg *e)
{
    const gdml_config *cfg = L->cfg;
    L->wan_curve = gdml_keys_curve_on(cfg, false);
    L->lan_curve = gdml_keys_curve_on(cfg, true);
    if (!L->wan_curve && !L->lan_curve)
        return GDML_OK;
    char pub[PATH_MAX], keys[PATH_MAX];
    gdml_err err = path_join(keys, L->run_dir, "keys", e);
    if (!err)
        err = path_join(L->coord_allow, keys, "coordinator.allow", e);
    if (!err)
        err = make_key(L, "coordinator", L->coord_key, L->coord_pub, e);
    for (int r = 0; !err && r < L->n_regions; r++) {
        err = make_key(L, L->names[r], L->region_key[r], L->region_pub[r], e);
        if (!err && L->wan_curve)
            err = allow_add(L->coord_allow, L->region_pub[r], e);
        if (!err) {
            if (snprintf(L->region_allow[r], PATH_MAX, "%s/%s.allow", keys, L->names[r]) >=
                PATH_MAX)
                return gdml_errmsg_set(e, GDML_ERR_INVALID, "path under '%s' too long", keys);
            FILE *f = fopen(L->region_allow[r], "a"); /* the workers below are added to it */
            if (!f)
                return gdml_errmsg_set(e, GDML_ERR_IO, "cannot write '%s': %s", L->region_allow[r],
                                       strerror(errno));
            fclose(f);
        }
        for (int w = 0; !err && L->lan_curve && w < cfg->launch.workers; w++) {
            char wname[GDML_NAME_MAX], wkey[PATH_MAX];
            snprintf(wname, sizeof wname, "%.50s.w%d", L->names[r], w);
            err = make_key(L, wname, wkey, pub, e);
            if (!err)
                err = allow_add(L->region_allow[r], pub, e);
        }
    }
    if (!err)
        printf("CURVE keys for %s in %s\n",
               L->wan_curve && L->lan_curve ? "every link"
               : L->wan_curve               ? "the WAN links"
                                            : "the LAN links",
               keys);
    return err;
}

static gdml_err start_all(launch *L, gdml_errmsg *e)
{
    const gdml_config *cfg = L->cfg;
    char ep_file[PATH_MAX], coord_ep[GDML_ENDPOINT_MAX], regions[16];
    char eval_images[PATH_MAX], eval_labels[PATH_MAX];
    snprintf(regions, sizeof regions, "%d", L->n_regions);
    snprintf(eval_images, sizeof eval_images, "%s", cfg->launch.test_images);
    snprintf(eval_labels, sizeof eval_labels, "%s", cfg->launch.test_labels);
    gdml_proc *p;
    gdml_err err = path_join(ep_file, L->run_dir, "coordinator.endpoint", e);
    if (err)
        return err;
    char byte_log[PATH_MAX];
    if ((err = path_join(byte_log, L->run_dir, "logs/bytes-coordinator.csv", e)))
        return err;
    const char *coord_args[24] = {
        "--byte-log",      byte_log,     "--listen",  "tcp://127.0.0.1:*",
        "--store",         L->store_dir, "--regions", regions,
        "--endpoint-file", ep_file,      "--members", cfg->launch.regions};
    size_t ca = 12;
    if (*cfg->launch.test_data) {
        coord_args[ca++] = "--eval-data";
        coord_args[ca++] = cfg->launch.test_data;
    } else {
        const char *idx[] = {"--eval-images", eval_images, "--eval-labels", eval_labels};
        for (size_t i = 0; i < 4; i++)
            coord_args[ca++] = idx[i];
    }
    if (L->wan_curve) {
        const char *more[] = {"--key", L->coord_key, "--allow", L->coord_allow};
        for (size_t i = 0; i < 4; i++)
            coord_args[ca++] = more[i];
    }
    coord_args[ca] = NULL;
    /* Once bound, a process keeps its port across restarts, so that its
     * peers' reconnects find it. */
    if ((err = start(L, "gdml-coordinator", "coordinator", "coordinator.log", true, coord_args, &p,
                     e)) ||
        (err = await_endpoint(L, p, ep_file, coord_ep, sizeof coord_ep, e)) ||
        (err = gdml_proc_set_arg(p, "--listen", coord_ep, e)))
        return err;

    char workers[16];
    snprintf(workers, sizeof workers, "%lld", (long long)cfg->launch.workers);
    for (int r = 0; r < L->n_regions; r++) {
        const char *name = L->names[r];
        char file[GDML_NAME_MAX + 32], server_ep[GDML_ENDPOINT_MAX], label[GDML_NAME_MAX + 16];
        snprintf(file, sizeof file, "server-%s.endpoint", name);
        if ((err = path_join(ep_file, L->run_dir, file, e)))
            return err;
        snprintf(file, sizeof file, "logs/bytes-%s.csv", name);
        if ((err = path_join(byte_log, L->run_dir, file, e)))
            return err;
        char ckpt[PATH_MAX];
        snprintf(file, sizeof file, "checkpoints/%s", name);
        if ((err = path_join(ckpt, L->run_dir, file, e)))
            return err;
        snprintf(file, sizeof file, "server-%s.log", name);
        snprintf(label, sizeof label, "server %s", name);
        const char *server_args[24] = {
            "--name",          name,     "--listen",   "tcp://127.0.0.1:*",
            "--coordinator",   coord_ep, "--workers",  workers,
            "--endpoint-file", ep_file,  "--byte-log", byte_log,
            "--checkpoint",    ckpt};
        size_t sa = 14;
        if (L->wan_curve || L->lan_curve) {
            server_args[sa++] = "--key";
            server_args[sa++] = L->region_key[r];
        }
        if (L->wan_curve) {
            server_args[sa++] = "--coordinator-key";
            server_args[sa++] = L->coord_pub;
        }
        if (L->lan_curve) {
            server_args[sa++] = "--allow";
            server_args[sa++] = L->region_allow[r];
        }
        server_args[sa] = NULL;
        if ((err = start(L, "gdml-server", label, file, false, server_args, &p, e)) ||
            (err = await_endpoint(L, p, ep_file, server_ep, sizeof server_ep, e)) ||
            (err = gdml_proc_set_arg(p, "--listen", server_ep, e)))
            return err;

        char images[PATH_MAX], labels[PATH_MAX], data[PATH_MAX], dir[PATH_MAX];
        gdml_data_format format = gdml_config_split_format(cfg);
        if ((err = path_join(data, L->run_dir, "data", e)) ||
            (err = path_join(dir, data, name, e)) ||
            (err = path_join(images, dir,
                             format == GDML_DATA_IDX ? "train-images-idx3-ubyte"
                                                     : gdml_split_text_file_name(format),
                             e)) ||
            (err = path_join(labels, dir, "train-labels-idx1-ubyte", e)))
            return err;
        for (int w = 0; w < cfg->launch.workers; w++) {
            char wname[GDML_NAME_MAX], index[16], seed[32];
            snprintf(wname, sizeof wname, "%.50s.w%d", name, w);
            snprintf(index, sizeof index, "%d", w);
            /* Unsigned arithmetic: launch.seed may be as large as INT64_MAX. */
            snprintf(
                seed, sizeof seed, "%llu",
                ((unsigned long long)cfg->launch.seed * 1000u + (unsigned)r * 64u + (unsigned)w) &
                    (unsigned long long)LLONG_MAX);
            snprintf(file, sizeof file, "worker-%s.log", wname);
            snprintf(label, sizeof label, "worker %s", wname);
            char wkey[PATH_MAX + GDML_NAME_MAX + 16];
            if (snprintf(wkey, sizeof wkey, "%s/keys/%s.key", L->run_dir, wname) >=
                (int)sizeof wkey)
                return gdml_errmsg_set(e, GDML_ERR_INVALID, "the run directory path is too long");
            const char *worker_args[20] = {"--name",        wname, "--server",      server_ep,
                                           "--shard-index", index, "--shard-count", workers,
                                           "--seed",        seed,  "--images",      images,
                                           "--labels",      labels};
            size_t wa = 14;
            if (format != GDML_DATA_IDX) { /* one file, in place of the IDX pair */
                worker_args[10] = "--data";
                wa = 12;
            }
            if (L->lan_curve) {
                const char *more[] = {"--key", wkey, "--server-key", L->region_pub[r]};
                for (size_t i = 0; i < 4; i++)
                    worker_args[wa++] = more[i];
            }
            worker_args[wa] = NULL;
            if ((err = start(L, "gdml-worker", label, file, false, worker_args, &p, e)))
                return err;
        }
    }
    printf("started a coordinator, %d regional servers and %lld workers; logs in %s/logs\n",
           L->n_regions, (long long)(L->n_regions * cfg->launch.workers), L->run_dir);
    return GDML_OK;
}

/*
 * A resumed run's rounds.csv goes on where the last launch left it: its
 * elapsed time and bytes are the run's, not this launch's. Reads the last
 * row's; a file without rows leaves them 0.
 */
static void read_rounds_base(launch *L, FILE *f)
{
    char line[512];
    rewind(f);
    while (fgets(line, sizeof line, f)) {
        long long ms;
        unsigned long long up, down;
        if (sscanf(line, "%*u,%lld,%*[^,],%*[^,],%llu,%llu", &ms, &up, &down) == 3) {
            L->rounds_ms_base = ms;
            L->rounds_up_base = up;
            L->rounds_down_base = down;
        }
    }
    fseek(f, 0, SEEK_END);
}

/* One coordinator line: "round=.. version=.. accuracy=.. ..." or "done ...". */
static void on_progress_line(launch *L, const char *line)
{
    const gdml_progress *pg = &L->prog;
    if (gdml_progress_on_line(&L->prog, line, gdml_now_ms()) == GDML_PROGRESS_VERSION &&
        L->rounds) {
        fprintf(L->rounds, "%llu,%lld,%.6f,%.6f,%llu,%llu\n", (unsigned long long)pg->version,
                (long long)(L->rounds_ms_base + gdml_now_ms() - L->start_ms), pg->accuracy,
                pg->loss, (unsigned long long)(L->rounds_up_base + pg->wan_up),
                (unsigned long long)(L->rounds_down_base + pg->wan_down));
        fflush(L->rounds);
    }
}

/* Reads what the coordinator printed; returns read(2)'s result (0 at its end). */
static ssize_t read_progress(launch *L, int fd)
{
    ssize_t n = read(fd, L->line + L->line_len, sizeof L->line - 1 - L->line_len);
    if (n <= 0)
        return n;
    L->line_len += (size_t)n;
    L->line[L->line_len] = '\0';
    char *start = L->line, *nl;
    while ((nl = strchr(start, '\n'))) {
        *nl = '\0';
        on_progress_line(L, start);
        start = nl + 1;
    }
    L->line_len = strlen(start);
    memmove(L->line, start, L->line_len + 1);
    if (L->line_len == sizeof L->line - 1)
        L->line_len = 0; /* a line this long is not ours; drop it */
    return n;
}

/*
 * Runs until the coordinator finishes. A child that dies is restarted by
 * the supervisor, or, past its limit, stops the job.
 */
static gdml_err supervise(launch *L, gdml_errmsg *e)
{
    gdml_proc *coord = &L->procs[0];
    int fd = coord->stdout_fd;
    for (;;) {
        if (gdml_stop_requested())
            return gdml_errmsg_set(e, GDML_ERR_INTERRUPTED, "stopped by a signal");
        if (fd != coord->stdout_fd) { /* it was restarted: a new pipe, no half line */
            fd = coord->stdout_fd;
            L->line_len = 0;
            gdml_progress_on_coordinator_restart(&L->prog);
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (fd >= 0 && poll(&pfd, 1, 50) > 0) {
            if (pfd.revents & POLLIN)
                read_progress(L, fd);
            else if (pfd.revents & (POLLHUP | POLLERR)) {
                close(fd);
                fd = coord->stdout_fd = -1;
            }
        } else if (fd < 0) {
            usleep(50 * 1000);
        }
        gdml_proc *p;
        while ((p = gdml_procs_reap(L->procs, L->n_procs))) {
            if (p == coord && p->status == 0) {
                gdml_supervisor_finish(&L->sup);
                /* It has exited, so reading its pipe to the end cannot block. */
                while (fd >= 0 && read_progress(L, fd) > 0)
                    ;
                return GDML_OK;
            }
            gdml_errmsg why;
            if (gdml_supervisor_on_exit(&L->sup, p, gdml_now_ms(), &why))
                return child_failed(p, why.text, e);
        }
        gdml_err err = gdml_supervisor_tick(&L->sup, gdml_now_ms(), e);
        if (err)
            return err;
        gdml_progress_tick(&L->prog, L->procs, L->n_procs, gdml_now_ms());
    }
}

gdml_err gdml_launch_run(const gdml_config *cfg, gdml_errmsg *e)
{
    launch *L = calloc(1, sizeof *L);
    if (!L)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory");
    L->cfg = cfg;
    L->start_ms = gdml_now_ms();
    L->start_wall_ms = gdml_wall_ms();
    L->resume = strcmp(cfg->launch.resume, "on") == 0;
    gdml_err err =
        gdml_config_split_names(cfg->launch.regions, L->names, MAX_REGIONS, &L->n_regions, e);
    if (!err)
        err = find_bin_dir(L, e);
    if (!err)
        err = make_run_dir(L, e);
    if (err)
        goto out;
    gdml_progress_init(
        &L->prog, cfg, L->names, L->n_regions,
        gdml_progress_style_for(cfg->launch.progress, isatty(STDOUT_FILENO), getenv("TERM")),
        stdout, L->start_ms);
    printf("gdml-launch: run directory %s\n", L->run_dir);
    if ((err = gdml_config_write(cfg, L->job_ini, e)) || (err = split_data(L, e)) ||
        (err = make_keys(L, e)))
        goto out;
    gdml_progress_set_raw(&L->prog, L->raw_bytes, L->raw_gzip_bytes);
    char rounds[PATH_MAX];
    if ((err = path_join(rounds, L->run_dir, "rounds.csv", e)))
        goto out;
    if (!(L->rounds = fopen(rounds, "a+"))) {
        err = gdml_errmsg_set(e, GDML_ERR_IO, "cannot write '%s': %s", rounds, strerror(errno));
        goto out;
    }
    fcntl(fileno(L->rounds), F_SETFD, FD_CLOEXEC); /* not for the children */
    read_rounds_base(L, L->rounds);
    if (ftell(L->rounds) == 0)
        fputs("version,elapsed_ms,accuracy,loss,wan_up,wan_down\n", L->rounds);
    fflush(stdout);
    if (!(err = start_all(L, e))) {
        gdml_supervisor_config sc = {
            .restart_limit = (unsigned)cfg->launch.restart_limit,
            .backoff_ms = cfg->launch.restart_backoff_ms,
            .chaos_every_ms = cfg->launch.chaos_every_ms,
            .chaos_kills = (unsigned)cfg->launch.chaos_kills,
            .chaos_seed = (uint64_t)cfg->launch.chaos_seed,
        };
        gdml_roles_parse(cfg->launch.chaos_roles, &sc.chaos_roles); /* checked when loaded */
        /* Its times count from the launcher's start, as rounds.csv's do. */
        gdml_supervisor_init(&L->sup, &sc, L->procs, L->n_procs, gdml_progress_log_stream(&L->prog),
                             L->start_ms);
        err = supervise(L, e);
        gdml_progress_finish(&L->prog, !err, gdml_now_ms());
    }
    if (!err) {
        if (!gdml_procs_wait_all(L->procs, L->n_procs, SHUTDOWN_TIMEOUT_MS)) {
            err = gdml_errmsg_set(e, GDML_ERR_TIMEOUT,
                                  "some processes did not exit within %d s of the end of "
                                  "training; see %s/logs",
                                  SHUTDOWN_TIMEOUT_MS / 1000, L->run_dir);
        } else {
            for (size_t i = 0; i < L->n_procs && !err; i++)
                if (L->procs[i].status != 0)
                    err = child_failed(&L->procs[i], NULL, e);
        }
        if (!err)
            err = launch_summarize(L, e);
    }
out:
    gdml_procs_stop_all(L->procs, L->n_procs, STOP_GRACE_MS);
    /* Stopped by a signal: the plots of what it trained, and how to go on. */
    if (err == GDML_ERR_INTERRUPTED && L->prog.versions_reported > 0) {
        fflush(L->rounds);
        launch_report(L);
        printf("stopped after version %llu; every store holds its last state: go on with "
               "--run-dir %s --resume on\n",
               (unsigned long long)L->prog.version, L->run_dir);
    }
    if (L->n_procs && L->procs[0].stdout_fd >= 0)
        close(L->procs[0].stdout_fd);
    for (size_t i = 0; i < L->n_procs; i++)
        gdml_proc_fini(&L->procs[i]);
    if (L->rounds)
        fclose(L->rounds);
    gdml_progress_fini(&L->prog);
    free(L);
    return err;
}
