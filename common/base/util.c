/* util.c - clocks, directories, atomic writes and the stop flag. */
#include "util.h"

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t gdml_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t gdml_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t gdml_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

gdml_err gdml_mkdir_p(const char *dir, gdml_errmsg *e)
{
    char path[4096];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof path)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "directory path '%s' is empty or too long",
                               dir);
    memcpy(path, dir, len + 1);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return gdml_errmsg_set(e, GDML_ERR_IO, "cannot create directory '%s': %s", path,
                                   strerror(errno));
        *p = '/';
    }
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot create directory '%s': %s", path,
                               strerror(errno));
    return GDML_OK;
}

gdml_err gdml_write_file_atomic(const char *path, const void *data, size_t len, gdml_errmsg *e)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "path '%s' is too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
    bool ok = fwrite(data, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot write '%s': %s", path, strerror(err));
    }
    return GDML_OK;
}

gdml_err gdml_write_endpoint_file(const char *path, const char *endpoint, gdml_errmsg *e)
{
    if (!*path)
        return GDML_OK;
    char line[4096];
    int n = snprintf(line, sizeof line, "%s\n", endpoint);
    if (n < 0 || (size_t)n >= sizeof line)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "endpoint '%s' is too long", endpoint);
    return gdml_write_file_atomic(path, line, (size_t)n, e);
}

static volatile sig_atomic_t stop_flag, reload_flag;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void on_reload_signal(int sig)
{
    (void)sig;
    reload_flag = 1;
}

void gdml_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_reload_signal;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

bool gdml_stop_requested(void)
{
    return stop_flag != 0;
}

bool gdml_reload_requested(void)
{
    if (!reload_flag)
        return false;
    reload_flag = 0;
    return true;
}

bool gdml_parse_u64(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

void gdml_keep_freed_memory(void)
{
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

void gdml_sort_u32(uint32_t *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_u32);
}
