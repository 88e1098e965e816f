/*
 * keys.h - CURVE key files on disk, and the link options a program's
 * configuration asks for.
 *
 * A key pair lives in NAME.key (mode 0600: a key file others can read is
 * refused), its public half in NAME.pub; both are small INI files, and an
 * allow-list is any number of .pub files put together:
 *
 *   NAME.key                     NAME.pub (and allow-lists)
 *   [key]                        [allow]
 *   name = us-east               us-east = <40 Z85 characters>
 *   public = <Z85>
 *   secret = <Z85>
 *
 * docs/security.md says how to make, distribute and rotate them.
 */
#ifndef GDML_KEYS_H
#define GDML_KEYS_H

#include "config.h"
#include "curve.h"
#include "err.h"
#include "transport.h"

/*
 * Reads a key pair. Returns GDML_ERR_IO if the file cannot be read or is
 * readable by others (e says which chmod to run), GDML_ERR_FORMAT if it is
 * not a gdml key file or its halves do not belong together.
 */
gdml_err gdml_keys_load_pair(const char *path, gdml_curve_key *out, gdml_errmsg *e);

/*
 * Reads an allow-list (one or more .pub files' contents). GDML_ERR_FORMAT
 * names the line of a bad entry, or a key listed under two names;
 * GDML_ERR_IO if it cannot be read or others may write it.
 */
gdml_err gdml_keys_load_allow(const char *path, gdml_curve_allow **out, gdml_errmsg *e);

/* Reads a .pub file that holds one peer's public key; name gets its name. */
gdml_err gdml_keys_load_public(const char *path, char name[GDML_NAME_MAX],
                               uint8_t key[GDML_CURVE_KEY_BYTES], gdml_errmsg *e);

/*
 * Makes a key pair for name and writes dir/NAME.key (0600) and dir/NAME.pub
 * (0644). GDML_ERR_EXISTS if either file exists (keys are never overwritten).
 */
gdml_err gdml_keys_write_pair(const char *dir, const char *name, gdml_errmsg *e);

/* What one program needs for its links: key, allow-list, server key, bounds. */
typedef struct gdml_link_security {
    gdml_curve_key key;
    gdml_curve_allow *allow;
    uint8_t server_key[GDML_CURVE_KEY_BYTES];
    char server_name[GDML_NAME_MAX];
} gdml_link_security;

/*
 * Fills opts for a link this program binds (curve: whether it runs CURVE,
 * per [security]) from cfg: [security] key and allow, [net] bounds; `name`,
 * if not NULL, is the name the key file must carry. GDML_ERR_CONFIG says
 * which key to set when CURVE is on and a file is missing.
 */
gdml_err gdml_keys_bind_options(const gdml_config *cfg, bool curve, const char *name,
                                gdml_link_security *sec, gdml_link_options *opts, gdml_errmsg *e);

/*
 * Fills opts for a link this program connects: [security] key (its name
 * must be `name`) and the server's public key file server_key_path (under
 * the config key called server_key_key, for messages).
 */
gdml_err gdml_keys_connect_options(const gdml_config *cfg, bool curve, const char *name,
                                   const char *server_key_path, const char *server_key_key,
                                   gdml_link_security *sec, gdml_link_options *opts,
                                   gdml_errmsg *e);

/* Frees what gdml_keys_*_options took. Safe on a zeroed one. */
void gdml_link_security_fini(gdml_link_security *sec);

/* True if [security] curve (or lan_curve, for lan) is "on". */
bool gdml_keys_curve_on(const gdml_config *cfg, bool lan);

#endif
