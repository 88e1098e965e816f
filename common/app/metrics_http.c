/*
 * metrics_http.c - the HTTP side of metrics (metrics_http.h): a listening
 * socket of our own (so that port 0 and the bound address are ours to read),
 * handed to libmicrohttpd's internal polling thread.
 */
#include "metrics_http.h"

#include "log.h"
#include "metrics_catalog.h"
#include "util.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNECTIONS 8
#define CONNECTION_TIMEOUT_S 5
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define MAX_SERIES 512 /* a coordinator of 64 regions needs about 5 per region and 40 more */

struct gdml_metrics_server {
    struct MHD_Daemon *daemon;
    const gdml_metrics *m;
};

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    enum MHD_Result ok = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **state)
{
    const gdml_metrics_server *s = cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET /metrics is served here\n");
    if (strcmp(url, "/metrics") != 0)
        return reply(conn, MHD_HTTP_NOT_FOUND, "not found: the metrics are at /metrics\n");
    size_t cap = gdml_metrics_render_bound(s->m);
    char *text = malloc(cap);
    if (!text)
        return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory\n");
    size_t n = gdml_metrics_render(s->m, text, cap);
    struct MHD_Response *r = MHD_create_response_from_buffer(n, text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE);
    enum MHD_Result ok = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ok;
}

/* Splits "HOST:PORT" or "[HOST]:PORT" into host[] and port[]. */
static bool split_address(const char *addr, char *host, size_t host_cap, char *port,
                          size_t port_cap)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
        strlen(colon + 1) >= port_cap || atol(colon + 1) > 65535)
        return false;
    const char *h = addr;
    size_t n = (size_t)(colon - addr);
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    if (n == 0 || n >= host_cap || (memchr(h, ':', n) && addr[0] != '['))
        return false;
    memcpy(host, h, n);
    host[n] = '\0';
    snprintf(port, port_cap, "%s", colon + 1);
    return true;
}

bool gdml_metrics_address_ok(const char *addr)
{
    char host[256], port[8];
    return split_address(addr, host, sizeof host, port, sizeof port);
}

/* Binds and listens on listen; *fd and bound on success. */
static gdml_err bind_socket(const char *addr, int *fd, char *bound, size_t cap, gdml_errmsg *e)
{
    char host[256], port[8];
    if (!split_address(addr, host, sizeof host, port, sizeof port))
        return gdml_errmsg_set(e, GDML_ERR_CONFIG,
                               "metrics.listen = '%s' is not HOST:PORT (e.g. 127.0.0.1:9464, "
                               "[::1]:0; port 0 picks a free one; off: no metrics)",
                               addr);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *ai = NULL;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0)
        return gdml_errmsg_set(e, GDML_ERR_CONFIG, "metrics.listen = '%s': host '%s': %s", addr,
                               host, gai_strerror(rc));
    int s = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    gdml_err err = GDML_OK;
    if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(s, ai->ai_addr, ai->ai_addrlen) != 0 || listen(s, 16) != 0)
        err = gdml_errmsg_set(e, GDML_ERR_IO,
                              "cannot serve metrics on %s: %s; choose another metrics.listen "
                              "(port 0: any free one) or set it to off",
                              addr, strerror(errno));
    freeaddrinfo(ai);
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    char h[NI_MAXHOST], p[NI_MAXSERV];
    if (!err && (getsockname(s, (struct sockaddr *)&sa, &len) != 0 ||
                 getnameinfo((struct sockaddr *)&sa, len, h, sizeof h, p, sizeof p,
                             NI_NUMERICHOST | NI_NUMERICSERV) != 0))
        err = gdml_errmsg_set(e, GDML_ERR_IO, "cannot read the metrics address bound: %s",
                              strerror(errno));
    if (err) {
        if (s >= 0)
            close(s);
        return err;
    }
    snprintf(bound, cap, sa.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h, p);
    *fd = s;
    return GDML_OK;
}

gdml_err gdml_metrics_server_open(const char *addr, const gdml_metrics *m,
                                  gdml_metrics_server **out, char *bound, size_t cap,
                                  gdml_errmsg *e)
{
    int fd = -1;
    gdml_err err = bind_socket(addr, &fd, bound, cap, e);
    if (err)
        return err;
    gdml_metrics_server *s = calloc(1, sizeof *s);
    if (!s) {
        close(fd);
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory");
    }
    s->m = m;
    /* The polling thread inherits this thread's signal mask: block them all
     * there, so that a signal lands in the loop's thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    s->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL, on_request, s,
        MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONNECTION_TIMEOUT_S, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!s->daemon) {
        close(fd);
        free(s);
        return gdml_errmsg_set(e, GDML_ERR_IO,
                               "cannot start the metrics server on %s (libmicrohttpd refused); "
                               "set metrics.listen = off to run without metrics",
                               bound);
    }
    *out = s;
    return GDML_OK;
}

void gdml_metrics_server_close(gdml_metrics_server **s)
{
    if (!s || !*s)
        return;
    MHD_stop_daemon((*s)->daemon); /* closes the listening socket too */
    free(*s);
    *s = NULL;
}

gdml_err gdml_program_metrics_start(const gdml_config *cfg, unsigned role, const char *role_name,
                                    const char *name, gdml_program_metrics *pm, gdml_errmsg *e)
{
    *pm = (gdml_program_metrics){0};
    const char *addr = cfg->metrics.listen;
    if (!*addr || strcmp(addr, "off") == 0)
        return GDML_OK;
    const char *labels[] = {"role", role_name, "name", name, NULL};
    char bound[GDML_ENDPOINT_MAX];
    gdml_err err = gdml_metrics_new(gdml_metric_catalog, gdml_metric_catalog_n, role, MAX_SERIES,
                                    labels, &pm->registry, e);
    if (!err)
        err = gdml_metrics_server_open(addr, pm->registry, &pm->server, bound, sizeof bound, e);
    if (!err)
        err = gdml_write_endpoint_file(cfg->metrics.file, bound, e);
    if (err) {
        gdml_program_metrics_stop(pm);
        return err;
    }
    const char *version[] = {GDML_VERSION};
    gdml_metric_set(gdml_metrics_series(pm->registry, "gdml_build_info", version), 1);
    gdml_info("metrics", "url=http://%s/metrics", bound);
    return GDML_OK;
}

void gdml_program_metrics_stop(gdml_program_metrics *pm)
{
    gdml_metrics_server_close(&pm->server);
    gdml_metrics_destroy(&pm->registry);
}
