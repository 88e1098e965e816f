/*
 * curve.c - CURVE key pairs, allow-lists, and the ZAP handler that admits a
 * connection only if its public key is allowed (curve.h, transport_impl.h).
 *
 * The ZAP handler is a thread with one REP socket bound to ZeroMQ's
 * well-known inproc endpoint; every CURVE server socket of the context sends
 * it a request during each handshake (RFC 27) and waits for its answer. The
 * answer's user id is the name the key is allowed under, which ZeroMQ then
 * attaches to every message of that connection as "User-Id".
 */
#include "curve.h"
#include "transport_impl.h"

#include "log.h"
#include "ratelog.h"
#include "util.h"

#include <zmq.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- keys ---- */

bool gdml_curve_available(void)
{
    return zmq_has("curve") != 0;
}

void gdml_curve_z85_encode(const uint8_t key[GDML_CURVE_KEY_BYTES], char out[GDML_CURVE_Z85_LEN + 1])
{
    zmq_z85_encode(out, key, GDML_CURVE_KEY_BYTES);
}

gdml_err gdml_curve_z85_decode(const char *text, uint8_t key[GDML_CURVE_KEY_BYTES])
{
    if (strlen(text) != GDML_CURVE_Z85_LEN)
        return GDML_ERR_FORMAT;
    /* zmq_z85_decode accepts any byte; check the alphabet so that junk is an error. */
    static const char alphabet[] =
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
    for (size_t i = 0; i < GDML_CURVE_Z85_LEN; i++)
        if (!strchr(alphabet, text[i]))
            return GDML_ERR_FORMAT;
    return zmq_z85_decode(key, text) ? GDML_OK : GDML_ERR_FORMAT;
}

gdml_err gdml_curve_keypair(const char *name, gdml_curve_key *out, gdml_errmsg *e)
{
    char pub[GDML_CURVE_Z85_LEN + 1], sec[GDML_CURVE_Z85_LEN + 1];
    if (!gdml_curve_available() || zmq_curve_keypair(pub, sec) != 0)
        return gdml_errmsg_set(e, GDML_ERR_TRANSPORT,
                               "this libzmq cannot make CURVE keys (built without libsodium?)");
    gdml_curve_key k;
    memset(&k, 0, sizeof k);
    snprintf(k.name, sizeof k.name, "%s", name);
    if (gdml_curve_z85_decode(pub, k.public_key) || gdml_curve_z85_decode(sec, k.secret_key))
        return gdml_errmsg_set(e, GDML_ERR_TRANSPORT, "libzmq made a key that does not decode");
    *out = k;
    return GDML_OK;
}

gdml_err gdml_curve_public_of(const uint8_t secret[GDML_CURVE_KEY_BYTES],
                              uint8_t public_key[GDML_CURVE_KEY_BYTES])
{
    char sec[GDML_CURVE_Z85_LEN + 1], pub[GDML_CURVE_Z85_LEN + 1];
    gdml_curve_z85_encode(secret, sec);
    if (zmq_curve_public(pub, sec) != 0)
        return GDML_ERR_TRANSPORT;
    return gdml_curve_z85_decode(pub, public_key);
}

/* ---- allow-lists ---- */

typedef struct allow_entry {
    char name[GDML_NAME_MAX];
    uint8_t key[GDML_CURVE_KEY_BYTES];
} allow_entry;

struct gdml_curve_allow {
    atomic_int refs;
    pthread_mutex_t lock;
    allow_entry *entries;
    size_t n, cap;
};

gdml_err gdml_curve_allow_new(gdml_curve_allow **out)
{
    gdml_curve_allow *a = calloc(1, sizeof *a);
    if (!a)
        return GDML_ERR_NOMEM;
    atomic_init(&a->refs, 1);
    pthread_mutex_init(&a->lock, NULL);
    *out = a;
    return GDML_OK;
}

gdml_curve_allow *gdml_curve_allow_ref(gdml_curve_allow *a)
{
    atomic_fetch_add(&a->refs, 1);
    return a;
}

void gdml_curve_allow_unref(gdml_curve_allow **ap)
{
    if (!ap || !*ap)
        return;
    gdml_curve_allow *a = *ap;
    *ap = NULL;
    if (atomic_fetch_sub(&a->refs, 1) != 1)
        return;
    pthread_mutex_destroy(&a->lock);
    free(a->entries);
    free(a);
}

/* The entry for key, under the lock. */
static allow_entry *find_key(gdml_curve_allow *a, const uint8_t *key)
{
    for (size_t i = 0; i < a->n; i++)
        if (memcmp(a->entries[i].key, key, GDML_CURVE_KEY_BYTES) == 0)
            return &a->entries[i];
    return NULL;
}

gdml_err gdml_curve_allow_add(gdml_curve_allow *a, const char *name,
                              const uint8_t key[GDML_CURVE_KEY_BYTES], gdml_errmsg *e)
{
    if (!gdml_name_ok(name))
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "'%s' is not a valid peer name", name);
    gdml_err err = GDML_OK;
    pthread_mutex_lock(&a->lock);
    allow_entry *old = find_key(a, key);
    if (old && strcmp(old->name, name) != 0) {
        err = gdml_errmsg_set(e, GDML_ERR_EXISTS,
                              "one public key is listed for both '%s' and '%s'; a key must "
                              "belong to one peer",
                              old->name, name);
    } else if (!old) {
        if (a->n == a->cap) {
            size_t cap = a->cap ? 2 * a->cap : 16;
            allow_entry *grown = realloc(a->entries, cap * sizeof *grown);
            if (!grown)
                err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for the allow-list");
            else {
                a->entries = grown;
                a->cap = cap;
            }
        }
        if (!err) {
            allow_entry *n = &a->entries[a->n++];
            snprintf(n->name, sizeof n->name, "%s", name);
            memcpy(n->key, key, GDML_CURVE_KEY_BYTES);
        }
    }
    pthread_mutex_unlock(&a->lock);
    return err;
}

bool gdml_curve_allow_lookup(gdml_curve_allow *a, const uint8_t key[GDML_CURVE_KEY_BYTES],
                             char name[GDML_NAME_MAX])
{
    pthread_mutex_lock(&a->lock);
    allow_entry *hit = find_key(a, key);
    if (hit)
        memcpy(name, hit->name, GDML_NAME_MAX);
    pthread_mutex_unlock(&a->lock);
    return hit != NULL;
}

bool gdml_curve_allow_has_name(gdml_curve_allow *a, const char *name)
{
    bool found = false;
    pthread_mutex_lock(&a->lock);
    for (size_t i = 0; i < a->n && !found; i++)
        found = strcmp(a->entries[i].name, name) == 0;
    pthread_mutex_unlock(&a->lock);
    return found;
}

gdml_err gdml_curve_allow_replace(gdml_curve_allow *a, gdml_curve_allow *fresh)
{
    pthread_mutex_lock(&fresh->lock);
    allow_entry *copy = fresh->n ? malloc(fresh->n * sizeof *copy) : NULL;
    size_t n = fresh->n;
    if (copy)
        memcpy(copy, fresh->entries, n * sizeof *copy);
    pthread_mutex_unlock(&fresh->lock);
    if (n && !copy)
        return GDML_ERR_NOMEM;
    pthread_mutex_lock(&a->lock);
    free(a->entries);
    a->entries = copy;
    a->n = a->cap = n;
    pthread_mutex_unlock(&a->lock);
    return GDML_OK;
}

size_t gdml_curve_allow_count(gdml_curve_allow *a)
{
    pthread_mutex_lock(&a->lock);
    size_t n = a->n;
    pthread_mutex_unlock(&a->lock);
    return n;
}

bool gdml_curve_allow_name_at(gdml_curve_allow *a, size_t want, char name[GDML_NAME_MAX])
{
    bool found = false;
    size_t distinct = 0;
    pthread_mutex_lock(&a->lock);
    for (size_t i = 0; i < a->n && !found; i++) {
        bool first = true;
        for (size_t j = 0; j < i && first; j++)
            first = strcmp(a->entries[j].name, a->entries[i].name) != 0;
        if (first && distinct++ == want) {
            memcpy(name, a->entries[i].name, GDML_NAME_MAX);
            found = true;
        }
    }
    pthread_mutex_unlock(&a->lock);
    return found;
}

/* ---- the ZAP handler ---- */

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_MAX_DOMAINS 8
#define ZAP_POLL_MS 100
#define ZAP_FRAMES 7

typedef struct zap_domain {
    char name[32];
    gdml_curve_allow *allow; /* NULL: a free slot */
} zap_domain;

struct zap_handler {
    void *ctx;
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t lock; /* guards domains and n_domains */
    zap_domain domains[ZAP_MAX_DOMAINS];
    int n_domains;       /* slots in use at some time; a free one has allow NULL */
    unsigned next_name;  /* domains are never named twice */
    void *sock;    /* the REP socket: created here, used only by the thread */
    gdml_ratelog *log;
};

/* The allow-list of domain name, with a reference the caller drops; NULL if none. */
static gdml_curve_allow *zap_find(zap_handler *z, const char *name, size_t len)
{
    zap_domain *hit = NULL;
    pthread_mutex_lock(&z->lock);
    for (int i = 0; i < z->n_domains && !hit; i++)
        if (z->domains[i].allow && strlen(z->domains[i].name) == len &&
            memcmp(z->domains[i].name, name, len) == 0)
            hit = &z->domains[i];
    gdml_curve_allow *allow = hit ? gdml_curve_allow_ref(hit->allow) : NULL;
    pthread_mutex_unlock(&z->lock);
    return allow;
}

static void zap_reply(void *sock, zmq_msg_t *request_id, const char *code, const char *text,
                      const char *user)
{
    zmq_send(sock, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(sock, zmq_msg_data(request_id), zmq_msg_size(request_id), ZMQ_SNDMORE);
    zmq_send(sock, code, strlen(code), ZMQ_SNDMORE);
    zmq_send(sock, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(sock, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(sock, "", 0, 0);
}

/* Answers one request: frames version, request id, domain, address, routing
 * id, mechanism, credentials (the 32-byte client key for CURVE). */
static void zap_answer(zap_handler *z)
{
    zmq_msg_t f[ZAP_FRAMES];
    int n = 0;
    bool more = true;
    while (more) {
        zmq_msg_t extra, *m = n < ZAP_FRAMES ? &f[n] : &extra;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, z->sock, 0) == -1) {
            zmq_msg_close(m);
            break;
        }
        more = zmq_msg_more(m);
        if (m == &extra)
            zmq_msg_close(m);
        else
            n++;
    }
    if (n < 2) { /* not even a request id to answer to: the REP socket resets itself */
        for (int i = 0; i < n; i++)
            zmq_msg_close(&f[i]);
        return;
    }
    char address[64] = "?", name[GDML_NAME_MAX];
    if (n > 3)
        snprintf(address, sizeof address, "%.*s", (int)zmq_msg_size(&f[3]),
                 (const char *)zmq_msg_data(&f[3]));
    gdml_curve_allow *allow = n > 2 ? zap_find(z, zmq_msg_data(&f[2]), zmq_msg_size(&f[2])) : NULL;
    bool curve = n == ZAP_FRAMES && zmq_msg_size(&f[5]) == 5 &&
                 memcmp(zmq_msg_data(&f[5]), "CURVE", 5) == 0 &&
                 zmq_msg_size(&f[6]) == GDML_CURVE_KEY_BYTES;
    if (allow && curve && gdml_curve_allow_lookup(allow, zmq_msg_data(&f[6]), name)) {
        zap_reply(z->sock, &f[1], "200", "OK", name);
    } else {
        char key[GDML_CURVE_Z85_LEN + 1] = "(none)";
        if (curve)
            gdml_curve_z85_encode(zmq_msg_data(&f[6]), key);
        gdml_ratelog_note(z->log, gdml_now_ms(), GDML_LOG_WARN, "curve_key_refused", address,
                          "connection refused: its CURVE key is not in the allow-list", "key=%s",
                          key);
        zap_reply(z->sock, &f[1], "400", "key not allowed", "");
    }
    gdml_curve_allow_unref(&allow);
    for (int i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
}

static void *zap_main(void *arg)
{
    zap_handler *z = arg;
    while (!atomic_load(&z->stop)) {
        zmq_pollitem_t item = {.socket = z->sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&item, 1, ZAP_POLL_MS) > 0)
            zap_answer(z);
        gdml_ratelog_flush(z->log, gdml_now_ms());
    }
    zmq_close(z->sock);
    return NULL;
}

gdml_err zap_start(void *ctx, zap_handler **out, gdml_errmsg *e)
{
    zap_handler *z = calloc(1, sizeof *z);
    if (!z || gdml_ratelog_new(10000, 64, &z->log)) {
        free(z);
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for the ZAP handler");
    }
    z->ctx = ctx;
    pthread_mutex_init(&z->lock, NULL);
    atomic_init(&z->stop, false);
    /* Bound before any CURVE socket exists: a handshake without a handler
     * would be let through by libzmq. */
    z->sock = zmq_socket(ctx, ZMQ_REP);
    int linger = 0;
    if (!z->sock || zmq_setsockopt(z->sock, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_bind(z->sock, ZAP_ENDPOINT) != 0) {
        gdml_err err = gdml_errmsg_set(e, GDML_ERR_TRANSPORT, "cannot start the ZAP handler: %s",
                                       zmq_strerror(zmq_errno()));
        if (z->sock)
            zmq_close(z->sock);
        gdml_ratelog_destroy(&z->log);
        free(z);
        return err;
    }
    if (pthread_create(&z->thread, NULL, zap_main, z) != 0) {
        zmq_close(z->sock);
        gdml_ratelog_destroy(&z->log);
        free(z);
        return gdml_errmsg_set(e, GDML_ERR_TRANSPORT, "cannot start the ZAP handler's thread");
    }
    *out = z;
    return GDML_OK;
}

void zap_stop(zap_handler **zp)
{
    if (!zp || !*zp)
        return;
    zap_handler *z = *zp;
    *zp = NULL;
    atomic_store(&z->stop, true);
    pthread_join(z->thread, NULL);
    for (int i = 0; i < z->n_domains; i++)
        gdml_curve_allow_unref(&z->domains[i].allow);
    pthread_mutex_destroy(&z->lock);
    gdml_ratelog_destroy(&z->log);
    free(z);
}

gdml_err zap_add_domain(zap_handler *z, gdml_curve_allow *allow, char *domain, size_t cap,
                        gdml_errmsg *e)
{
    pthread_mutex_lock(&z->lock);
    gdml_err err = GDML_OK;
    int slot = -1;
    for (int i = 0; i < z->n_domains && slot < 0; i++)
        if (!z->domains[i].allow)
            slot = i;
    if (slot < 0 && z->n_domains < ZAP_MAX_DOMAINS)
        slot = z->n_domains++;
    if (slot < 0) {
        err = gdml_errmsg_set(e, GDML_ERR_INVALID, "at most %d CURVE servers open at once",
                              ZAP_MAX_DOMAINS);
    } else {
        zap_domain *d = &z->domains[slot];
        snprintf(d->name, sizeof d->name, "gdml-%u", z->next_name++);
        d->allow = gdml_curve_allow_ref(allow);
        snprintf(domain, cap, "%s", d->name);
    }
    pthread_mutex_unlock(&z->lock);
    return err;
}

void zap_remove_domain(zap_handler *z, const char *domain)
{
    pthread_mutex_lock(&z->lock);
    for (int i = 0; i < z->n_domains; i++)
        if (z->domains[i].allow && strcmp(z->domains[i].name, domain) == 0)
            gdml_curve_allow_unref(&z->domains[i].allow);
    pthread_mutex_unlock(&z->lock);
}
