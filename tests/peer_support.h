/*
 * peer_support.h - for integration tests: a small gdml cluster of real
 * processes with CURVE keys made for the test, and fake peers that speak the
 * protocol (or not) through the transport library, as an attacker would.
 */
#ifndef GDML_TEST_PEER_SUPPORT_H
#define GDML_TEST_PEER_SUPPORT_H

#include "msg.h"
#include "transport.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct tp_proc {
    pid_t pid;
    char log[4200];
} tp_proc;

/* A test's cluster: its directory, and whether the links run CURVE. */
typedef struct tp_cluster {
    char *dir;
    bool curve;
    char coord_ep[256];
} tp_cluster;

/* A fresh cluster directory (removed by tp_cluster_fini); CURVE on the WAN if curve. */
void tp_cluster_init(tp_cluster *c, bool curve);
void tp_cluster_fini(tp_cluster *c);

/* dir/keys/NAME.key and .pub for name (once), and their paths. */
void tp_key(tp_cluster *c, const char *name, char key[4200], char pub[4200]);

/* Writes dir/keys/NAME.allow admitting names[0..n). Returns its path (static storage). */
const char *tp_allow(tp_cluster *c, const char *file, const char *const *names, size_t n);

/*
 * Starts gdml-coordinator on tcp://127.0.0.1:* (or listen, if not NULL)
 * with its store in dir/store, admitting regions[0..n) (allow-list and
 * --members), plus extra arguments (NULL-terminated). Waits for its endpoint
 * (in c->coord_ep).
 */
void tp_start_coordinator(tp_cluster *c, tp_proc *p, const char *const *regions, size_t n,
                          const char *listen, const char *const *extra);

/* Starts gdml-server `name` for workers; returns its endpoint (malloc'd). */
char *tp_start_server(tp_cluster *c, tp_proc *p, const char *name, const char *const *extra);

/* Starts a worker of region on server_ep with shard index/count of the test set. */
void tp_start_worker(tp_cluster *c, tp_proc *p, const char *name, const char *server_ep,
                     int index, int count, const char *const *extra);

/* The peak resident memory of pid (VmHWM), in bytes; 0 if unknown. */
uint64_t tp_peak_rss(pid_t pid);

/* The resident memory of pid now (VmRSS), in bytes. */
uint64_t tp_rss(pid_t pid);

/* A fake peer: one DEALER link, with the key of `key_name` (NULL: plain). */
typedef struct tp_peer {
    gdml_transport *t;
    gdml_link *link;
    char name[64];
    uint64_t seq;
} tp_peer;

/*
 * Connects to endpoint claiming `name`; with key_name, uses that key's pair
 * and trusts server_key_name's public key (the server it reaches).
 */
void tp_peer_connect(tp_peer *p, tp_cluster *c, const char *endpoint, const char *name,
                     const char *key_name, const char *server_key_name);
void tp_peer_close(tp_peer *p);

/* Sends a header-only frame of type with count and version. */
void tp_peer_send(tp_peer *p, gdml_msg_type type, uint64_t version, uint64_t count);

/* Sends a dense tensor x[0..n) as message h (type, version, count set by the caller). */
void tp_peer_send_tensor(tp_peer *p, gdml_msg_header *h, const float *x, size_t n);

/* Waits up to timeout_ms for a frame; true and *h set if one came. rx is released. */
bool tp_peer_recv(tp_peer *p, int timeout_ms, gdml_msg_header *h);

/* Counts the lines of a file that contain both a and b. */
int tp_count_lines(const char *path, const char *a, const char *b);

#endif
