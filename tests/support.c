/* support.c - temporary directories, program paths and process runners for tests. */
#define _GNU_SOURCE /* asprintf, nftw */
#include "support.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

char *gdml_test_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/gdml-test-XXXXXX", base && *base ? base : "/tmp");
    char *dir = mkdtemp(tmpl);
    cr_assert_not_null(dir, "mkdtemp(%s): %s", tmpl, strerror(errno));
    return strdup(dir);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

void gdml_test_rmtree(char *dir)
{
    if (!dir)
        return;
    if (!getenv("GDML_KEEP_TMP"))
        nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

static char *join(const char *env, const char *fallback, const char *rel)
{
    const char *base = getenv(env);
    char *p = NULL;
    cr_assert(asprintf(&p, "%s/%s", base && *base ? base : fallback, rel) > 0);
    return p;
}

char *gdml_test_program(const char *name)
{
    return join("GDML_BUILD_DIR", ".", name);
}

char *gdml_test_source_path(const char *rel)
{
    return join("GDML_SOURCE_DIR", "..", rel);
}

bool gdml_test_have_fashion_mnist(void)
{
    return access(FASHION_DIR "/train-images-idx3-ubyte.gz", R_OK) == 0;
}

const char *gdml_test_fashion(const char *file)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", FASHION_DIR, file);
    return path;
}

pid_t gdml_test_spawn(char *const argv[], const char *log_path)
{
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* A test that fails an assertion exits at once: take its programs along. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, STDIN_FILENO);
        execv(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

int gdml_test_wait(pid_t pid, int timeout_s)
{
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            if (WIFEXITED(status))
                return WEXITSTATUS(status);
            return 128 + WTERMSIG(status);
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= timeout_s) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        usleep(20 * 1000);
    }
}

char *gdml_test_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += r;
        if (cap - len < 2) {
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    return buf;
}

int gdml_test_run(char *const argv[], int timeout_s, char **out)
{
    char *dir = gdml_test_tmpdir();
    char log[4200];
    snprintf(log, sizeof log, "%s/out.log", dir);
    pid_t pid = gdml_test_spawn(argv, log);
    int rc = gdml_test_wait(pid, timeout_s);
    char *text = gdml_test_read_file(log);
    if (out)
        *out = text ? text : strdup("");
    else
        free(text);
    gdml_test_rmtree(dir);
    return rc;
}

char *gdml_test_wait_file(const char *path, int timeout_s)
{
    for (int i = 0; i < timeout_s * 50; i++) {
        char *text = gdml_test_read_file(path);
        if (text && *text) {
            size_t n = strlen(text);
            while (n && (text[n - 1] == '\n' || text[n - 1] == ' '))
                text[--n] = '\0';
            return text;
        }
        free(text);
        usleep(20 * 1000);
    }
    return NULL;
}

void gdml_test_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s: %s", path, strerror(errno));
    cr_assert(fputs(text, f) >= 0);
    cr_assert(fclose(f) == 0);
}

bool gdml_test_wait_for_text(const char *path, const char *needle, int timeout_s)
{
    for (int i = 0; i < timeout_s * 20; i++) {
        char *text = gdml_test_read_file(path);
        bool found = text && strstr(text, needle);
        free(text);
        if (found)
            return true;
        usleep(50 * 1000);
    }
    return false;
}

double gdml_test_json_number(const char *json, const char *key)
{
    char pattern[128];
    snprintf(pattern, sizeof pattern, "\"%s\": ", key);
    const char *at = strstr(json, pattern);
    cr_assert_not_null(at, "no \"%s\" in:\n%s", key, json);
    return strtod(at + strlen(pattern), NULL);
}

int gdml_test_count_lines(const char *text, const char *prefix)
{
    int n = 0;
    size_t len = strlen(prefix);
    for (const char *line = text; line && *line;
         line = strchr(line, '\n'), line = line ? line + 1 : NULL)
        if (strncmp(line, prefix, len) == 0)
            n++;
    return n;
}

const gdml_region_part *gdml_test_region_part(const gdml_version_meta *m, const char *name)
{
    for (uint32_t i = 0; i < m->n_regions; i++)
        if (strcmp(m->regions[i].name, name) == 0)
            return &m->regions[i];
    cr_assert_fail("version %llu does not record region '%s'", (unsigned long long)m->version,
                   name);
    return NULL;
}
