/*
 * metrics_http.h - serves a metrics registry (metrics.h) over HTTP with
 * libmicrohttpd, for Prometheus to scrape: GET /metrics.
 *
 * libmicrohttpd runs its own polling thread; a scrape renders the registry
 * there (lock-free reads, metrics.h), so it never blocks or slows the
 * program's event loop, and the loop never waits for a scrape. What one
 * scrape costs is bounded: the text is at most gdml_metrics_render_bound
 * bytes, at most 8 connections are served at once, and an idle connection
 * is closed after 5 s. Signals are blocked in that thread, so SIGTERM and
 * SIGHUP reach the loop's thread as before.
 */
#ifndef GDML_METRICS_HTTP_H
#define GDML_METRICS_HTTP_H

#include "config.h"
#include "err.h"
#include "metrics.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct gdml_metrics_server gdml_metrics_server;

/*
 * Binds listen ("HOST:PORT", "[V6]:PORT"; port 0: any free one) and serves
 * m there until closed. bound[0..cap) gets the address bound, e.g.
 * "127.0.0.1:41235". GDML_ERR_CONFIG for an address that is not HOST:PORT,
 * GDML_ERR_IO (e says why and what to do) if it cannot be bound, e.g. in use.
 */
gdml_err gdml_metrics_server_open(const char *listen, const gdml_metrics *m,
                                  gdml_metrics_server **out, char *bound, size_t cap,
                                  gdml_errmsg *e);

/* True if addr is HOST:PORT or [HOST]:PORT (the config's check; binding may still fail). */
bool gdml_metrics_address_ok(const char *addr);

/* Stops serving and closes the socket. NULL-safe; clears *s. */
void gdml_metrics_server_close(gdml_metrics_server **s);

/* A long-running program's metrics: the registry of its role and the server of it. */
typedef struct gdml_program_metrics {
    gdml_metrics *registry; /* NULL when [metrics] listen is off */
    gdml_metrics_server *server;
} gdml_program_metrics;

/*
 * Starts what [metrics] asks for: a registry of role's catalogue rows
 * (metrics_catalog.h), labelled role="<role_name>" and name="<name>" on
 * every series, served on metrics.listen; logs the URL and writes the bound
 * address to metrics.file if set. With listen "off" or empty, *pm stays
 * empty and every update is a no-op. Errors as gdml_metrics_server_open's,
 * and GDML_ERR_IO if the file cannot be written.
 */
gdml_err gdml_program_metrics_start(const gdml_config *cfg, unsigned role, const char *role_name,
                                    const char *name, gdml_program_metrics *pm, gdml_errmsg *e);

/* Stops the server, then frees the registry. Safe on an empty or stopped one. */
void gdml_program_metrics_stop(gdml_program_metrics *pm);

#endif
