/*
 * curve.h - CURVE keys and allow-lists, the identity half of the transport.
 *
 * A key pair is libzmq's CURVE (Curve25519 through libsodium): 32 bytes
 * public, 32 secret, written as 40 Z85 characters in files. An allow-list
 * maps each allowed public key to exactly one peer name; the ZAP handler of
 * a binding link (transport.c) admits a connection only if its key is
 * listed, and that name becomes the peer's name for every message it sends.
 * Reading key files from disk is the app layer's (keys.h); this is memory.
 *
 * An allow-list is shared by the link that uses it and the ZAP thread that
 * reads it, so it is reference-counted and locked; replacing its contents
 * (key rotation, on SIGHUP) affects new handshakes, not connections already
 * authenticated.
 */
#ifndef GDML_CURVE_H
#define GDML_CURVE_H

#include "err.h"
#include "names.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GDML_CURVE_KEY_BYTES 32
#define GDML_CURVE_Z85_LEN 40

typedef struct gdml_curve_key {
    char name[GDML_NAME_MAX];
    uint8_t public_key[GDML_CURVE_KEY_BYTES];
    uint8_t secret_key[GDML_CURVE_KEY_BYTES];
} gdml_curve_key;

/* Makes a new key pair for name. GDML_ERR_TRANSPORT if this libzmq lacks CURVE. */
gdml_err gdml_curve_keypair(const char *name, gdml_curve_key *out, gdml_errmsg *e);

/* True if this libzmq was built with CURVE. */
bool gdml_curve_available(void);

/* Writes key as 40 Z85 characters and a NUL into out[41]. */
void gdml_curve_z85_encode(const uint8_t key[GDML_CURVE_KEY_BYTES], char out[GDML_CURVE_Z85_LEN + 1]);

/* Parses 40 Z85 characters; GDML_ERR_FORMAT for anything else. */
gdml_err gdml_curve_z85_decode(const char *text, uint8_t key[GDML_CURVE_KEY_BYTES]);

/* Derives the public key of a secret key (to check a key file's two halves). */
gdml_err gdml_curve_public_of(const uint8_t secret[GDML_CURVE_KEY_BYTES],
                              uint8_t public_key[GDML_CURVE_KEY_BYTES]);

typedef struct gdml_curve_allow gdml_curve_allow;

/* An empty allow-list with one reference. GDML_ERR_NOMEM. */
gdml_err gdml_curve_allow_new(gdml_curve_allow **out);

/* Takes one more reference. */
gdml_curve_allow *gdml_curve_allow_ref(gdml_curve_allow *a);

/* Drops a reference; frees on the last. NULL-safe; clears *a. */
void gdml_curve_allow_unref(gdml_curve_allow **a);

/*
 * Allows key under name. One key has one name: GDML_ERR_EXISTS with e if key
 * is listed under another name already (listing it again under the same
 * name is harmless). One name may have several keys, so that a peer can
 * roll to a new key while the old one still works.
 */
gdml_err gdml_curve_allow_add(gdml_curve_allow *a, const char *name,
                              const uint8_t key[GDML_CURVE_KEY_BYTES], gdml_errmsg *e);

/* Copies the name allowed for key into name[GDML_NAME_MAX]; false if none. Thread-safe. */
bool gdml_curve_allow_lookup(gdml_curve_allow *a, const uint8_t key[GDML_CURVE_KEY_BYTES],
                             char name[GDML_NAME_MAX]);

/* True if some key is allowed under name. Thread-safe. */
bool gdml_curve_allow_has_name(gdml_curve_allow *a, const char *name);

/* Replaces a's entries with fresh's (which is left as it is). Thread-safe. */
gdml_err gdml_curve_allow_replace(gdml_curve_allow *a, gdml_curve_allow *fresh);

/* How many keys are allowed. */
size_t gdml_curve_allow_count(gdml_curve_allow *a);

/* Writes the i-th distinct name (in the order first added) into name; false past the end. */
bool gdml_curve_allow_name_at(gdml_curve_allow *a, size_t i, char name[GDML_NAME_MAX]);

#endif
