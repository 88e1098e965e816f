/* peer_support.c - clusters of real gdml processes and fake peers (peer_support.h). */
#define _GNU_SOURCE
#include "peer_support.h"

#include "support.h"

#include "codec.h"
#include "keys.h"
#include "wan.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void tp_cluster_init(tp_cluster *c, bool curve)
{
    memset(c, 0, sizeof *c);
    c->dir = gdml_test_tmpdir();
    c->curve = curve;
}

void tp_cluster_fini(tp_cluster *c)
{
    gdml_test_rmtree(c->dir);
    c->dir = NULL;
}

void tp_key(tp_cluster *c, const char *name, char key[4200], char pub[4200])
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/keys", c->dir);
    cr_assert_lt(snprintf(key, 4200, "%s/%s.key", dir, name), 4200);
    cr_assert_lt(snprintf(pub, 4200, "%s/%s.pub", dir, name), 4200);
    if (access(key, R_OK) == 0)
        return;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_keys_write_pair(dir, name, &e), GDML_OK, "%s", e.text);
}

const char *tp_allow(tp_cluster *c, const char *file, const char *const *names, size_t n)
{
    static char path[4200];
    snprintf(path, sizeof path, "%s/keys/%s", c->dir, file);
    FILE *out = fopen(path, "w");
    cr_assert_not_null(out, "cannot write %s", path);
    for (size_t i = 0; i < n; i++) {
        char key[4200], pub[4200];
        tp_key(c, names[i], key, pub);
        char *text = gdml_test_read_file(pub);
        cr_assert_not_null(text);
        fputs(text, out);
        free(text);
    }
    fclose(out);
    return path;
}

/* argv = program, fixed, extra..., NULL */
static void spawn(tp_proc *p, tp_cluster *c, const char *program, const char *log_name,
                  const char *const *fixed, size_t n_fixed, const char *const *extra)
{
    char *path = gdml_test_program(program);
    const char *argv[96];
    size_t n = 0;
    argv[n++] = path;
    for (size_t i = 0; i < n_fixed; i++)
        argv[n++] = fixed[i];
    for (size_t i = 0; extra && extra[i] && n < 94; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    snprintf(p->log, sizeof p->log, "%s/%s", c->dir, log_name);
    p->pid = gdml_test_spawn((char *const *)argv, p->log);
    free(path);
}

void tp_start_coordinator(tp_cluster *c, tp_proc *p, const char *const *regions, size_t n,
                          const char *listen, const char *const *extra)
{
    char store[4200], ep[4200], members[1024] = "", key[4200], pub[4200];
    snprintf(store, sizeof store, "%s/store", c->dir);
    snprintf(ep, sizeof ep, "%s/coordinator.ep", c->dir);
    unlink(ep);
    for (size_t i = 0; i < n; i++)
        snprintf(members + strlen(members), sizeof members - strlen(members), "%s%s", i ? "," : "",
                 regions[i]);
    const char *fixed[20];
    size_t k = 0;
    const char *base[] = {"--listen",        listen ? listen : "tcp://127.0.0.1:*",
                          "--store",         store,
                          "--endpoint-file", ep,
                          "--members",       members};
    for (size_t i = 0; i < 8; i++)
        fixed[k++] = base[i];
    char allow[4200];
    if (c->curve) {
        tp_key(c, "coordinator", key, pub);
        snprintf(allow, sizeof allow, "%s", tp_allow(c, "coordinator.allow", regions, n));
        fixed[k++] = "--key";
        fixed[k++] = key;
        fixed[k++] = "--allow";
        fixed[k++] = allow;
    } else {
        fixed[k++] = "--curve";
        fixed[k++] = "off";
    }
    spawn(p, c, "gdml-coordinator", "coordinator.log", fixed, k, extra);
    char *got = gdml_test_wait_file(ep, 15);
    cr_assert_not_null(got, "the coordinator did not start; see %s", p->log);
    snprintf(c->coord_ep, sizeof c->coord_ep, "%s", got);
    free(got);
}

char *tp_start_server(tp_cluster *c, tp_proc *p, const char *name, const char *const *extra)
{
    char ep[4200], log[256], key[4200], pub[4200], cpub[4200], ckey[4200];
    snprintf(ep, sizeof ep, "%s/%s.ep", c->dir, name);
    snprintf(log, sizeof log, "server-%s.log", name);
    unlink(ep);
    const char *fixed[20];
    size_t k = 0;
    /* Without overlap a job's result does not depend on timing, so tests can
     * compare an attacked run with an honest one exactly. */
    const char *base[] = {"--name",        name,        "--listen",        "tcp://127.0.0.1:*",
                          "--coordinator", c->coord_ep, "--endpoint-file", ep,
                          "--overlap",     "off"};
    for (size_t i = 0; i < 10; i++)
        fixed[k++] = base[i];
    if (c->curve) {
        tp_key(c, name, key, pub);
        tp_key(c, "coordinator", ckey, cpub);
        fixed[k++] = "--key";
        fixed[k++] = key;
        fixed[k++] = "--coordinator-key";
        fixed[k++] = cpub;
    } else {
        fixed[k++] = "--curve";
        fixed[k++] = "off";
    }
    spawn(p, c, "gdml-server", log, fixed, k, extra);
    char *got = gdml_test_wait_file(ep, 15);
    cr_assert_not_null(got, "server %s did not start; see %s", name, p->log);
    return got;
}

void tp_start_worker(tp_cluster *c, tp_proc *p, const char *name, const char *server_ep, int index,
                     int count, const char *const *extra)
{
    char images[512], labels[512], log[256], idx[16], cnt[16];
    snprintf(images, sizeof images, "%s", gdml_test_fashion("t10k-images-idx3-ubyte.gz"));
    snprintf(labels, sizeof labels, "%s", gdml_test_fashion("t10k-labels-idx1-ubyte.gz"));
    snprintf(log, sizeof log, "worker-%s.log", name);
    snprintf(idx, sizeof idx, "%d", index);
    snprintf(cnt, sizeof cnt, "%d", count);
    const char *fixed[] = {"--name",   name,   "--server",      server_ep, "--images",      images,
                           "--labels", labels, "--shard-index", idx,       "--shard-count", cnt};
    spawn(p, c, "gdml-worker", log, fixed, sizeof fixed / sizeof fixed[0], extra);
}

static uint64_t status_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    uint64_t kb = 0;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0)
            kb = strtoull(line + n, NULL, 10);
    fclose(f);
    return kb * 1024;
}

uint64_t tp_peak_rss(pid_t pid)
{
    return status_kb(pid, "VmHWM:");
}

uint64_t tp_rss(pid_t pid)
{
    return status_kb(pid, "VmRSS:");
}

void tp_peer_connect(tp_peer *p, tp_cluster *c, const char *endpoint, const char *name,
                     const char *key_name, const char *server_key_name)
{
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->seq = (uint64_t)time(NULL) * 1000 * 16;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_transport_new(&p->t, &e), GDML_OK, "%s", e.text);
    gdml_link_options opts;
    memset(&opts, 0, sizeof opts);
    gdml_curve_key key;
    char server_name[GDML_NAME_MAX];
    uint8_t server_key[GDML_CURVE_KEY_BYTES];
    if (key_name) {
        char kpath[4200], ppath[4200], skey[4200], spub[4200];
        tp_key(c, key_name, kpath, ppath);
        tp_key(c, server_key_name, skey, spub);
        cr_assert_eq(gdml_keys_load_pair(kpath, &key, &e), GDML_OK, "%s", e.text);
        cr_assert_eq(gdml_keys_load_public(spub, server_name, server_key, &e), GDML_OK, "%s",
                     e.text);
        opts.key = &key;
        opts.server_key = server_key;
        opts.server_name = server_name;
    }
    cr_assert_eq(gdml_link_connect(p->t, endpoint, &opts, &p->link, &e), GDML_OK, "%s", e.text);
}

void tp_peer_close(tp_peer *p)
{
    gdml_link_close(&p->link);
    gdml_transport_destroy(&p->t);
}

static void send_frame(tp_peer *p, gdml_blob *f)
{
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_link_send(p->link, NULL, f, &e), GDML_OK, "%s", e.text);
    gdml_link_flush(p->link, 0);
}

void tp_peer_send(tp_peer *p, gdml_msg_type type, uint64_t version, uint64_t count)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, type, p->name);
    h.seq = ++p->seq;
    h.version = version;
    h.count = count;
    gdml_blob *f = NULL;
    cr_assert_eq(gdml_frame_header_only(&h, &f), GDML_OK);
    send_frame(p, f);
    gdml_blob_unref(&f);
}

void tp_peer_send_tensor(tp_peer *p, gdml_msg_header *h, const float *x, size_t n)
{
    gdml_codec *c = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_codec_new("dense", n, 0, &c, &e), GDML_OK, "%s", e.text);
    size_t k;
    cr_assert_eq(gdml_codec_select(c, x, NULL, &k), GDML_OK);
    gdml_wan_update u;
    snprintf(h->sender, sizeof h->sender, "%s", p->name);
    h->seq = ++p->seq;
    cr_assert_eq(gdml_codec_frames(c, h, x, NULL, false, &u, &e), GDML_OK, "%s", e.text);
    for (size_t i = 0; i < u.n_frames; i++)
        send_frame(p, u.frames[i]);
    gdml_wan_update_fini(&u);
    gdml_codec_destroy(&c);
}

bool tp_peer_recv(tp_peer *p, int timeout_ms, gdml_msg_header *h)
{
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        gdml_link_flush(p->link, 0);
        gdml_rx rx;
        gdml_errmsg e;
        gdml_err err = gdml_link_recv(p->link, &rx, &e);
        if (err == GDML_OK) {
            *h = rx.header;
            gdml_rx_release(&rx);
            return true;
        }
        bool ready;
        gdml_link_poll(&p->link, 1, 20, &ready);
    }
    return false;
}

int tp_count_lines(const char *path, const char *a, const char *b)
{
    char *text = gdml_test_read_file(path);
    int n = 0;
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char *one = strndup(line, len);
        if (strstr(one, a) && (!b || strstr(one, b)))
            n++;
        free(one);
        line = end ? end + 1 : NULL;
    }
    free(text);
    return n;
}
