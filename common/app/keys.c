/*
 * keys.c - CURVE key files and allow-lists (keys.h), read through inih like
 * the configuration, and the link options built from [security] and [net].
 */
#include "keys.h"

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Refuses a file that is not a regular file, or whose mode grants `loose` bits. */
static gdml_err check_mode(const char *path, mode_t loose, const char *fix, gdml_errmsg *e)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return gdml_errmsg_set(e, GDML_ERR_IO, "'%s' is not a regular file", path);
    if (st.st_mode & loose)
        return gdml_errmsg_set(
            e, GDML_ERR_IO, "'%s' has mode %04o, which lets other users %s it; run: chmod %s '%s'",
            path, (unsigned)(st.st_mode & 07777), loose & 044 ? "read" : "change", fix, path);
    return GDML_OK;
}

typedef struct pair_ctx {
    gdml_curve_key key;
    bool has_name, has_public, has_secret;
    int bad_line;
    gdml_errmsg why;
} pair_ctx;

static int on_pair(void *user, const char *section, const char *key, const char *value)
{
    pair_ctx *c = user;
    uint8_t *dst = NULL;
    if (strcmp(section, "key") != 0) {
        gdml_errmsg_set(&c->why, GDML_ERR_FORMAT, "section [%s] does not belong in a key file",
                        section);
        return 0;
    }
    if (strcmp(key, "name") == 0) {
        if (!gdml_name_ok(value)) {
            gdml_errmsg_set(&c->why, GDML_ERR_FORMAT, "'%s' is not a valid peer name", value);
            return 0;
        }
        snprintf(c->key.name, sizeof c->key.name, "%s", value);
        c->has_name = true;
        return 1;
    }
    if (strcmp(key, "public") == 0) {
        dst = c->key.public_key;
        c->has_public = true;
    } else if (strcmp(key, "secret") == 0) {
        dst = c->key.secret_key;
        c->has_secret = true;
    } else {
        gdml_errmsg_set(&c->why, GDML_ERR_FORMAT,
                        "unknown key '%s' (a key file has name, public, "
                        "secret)",
                        key);
        return 0;
    }
    if (gdml_curve_z85_decode(value, dst)) {
        gdml_errmsg_set(&c->why, GDML_ERR_FORMAT, "%s is not 40 Z85 characters", key);
        return 0;
    }
    return 1;
}

gdml_err gdml_keys_load_pair(const char *path, gdml_curve_key *out, gdml_errmsg *e)
{
    gdml_err err = check_mode(path, 077, "600", e);
    if (err)
        return err;
    pair_ctx c;
    memset(&c, 0, sizeof c);
    int line = ini_parse(path, on_pair, &c);
    if (line < 0)
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot read key file '%s'", path);
    if (line > 0)
        return gdml_errmsg_set(e, GDML_ERR_FORMAT, "key file '%s':%d: %s", path, line,
                               *c.why.text ? c.why.text : "cannot parse this line");
    if (!c.has_name || !c.has_public || !c.has_secret)
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "'%s' is not a gdml key file: it needs name, public and secret in "
                               "[key]; make one with gdml-keys new NAME",
                               path);
    uint8_t derived[GDML_CURVE_KEY_BYTES];
    if (gdml_curve_public_of(c.key.secret_key, derived) ||
        memcmp(derived, c.key.public_key, sizeof derived) != 0)
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "key file '%s': its public key is not the one of its secret key",
                               path);
    *out = c.key;
    return GDML_OK;
}

typedef struct allow_ctx {
    gdml_curve_allow *allow;
    char first_name[GDML_NAME_MAX];
    uint8_t first_key[GDML_CURVE_KEY_BYTES];
    size_t entries;
    gdml_errmsg why;
} allow_ctx;

static int on_allow(void *user, const char *section, const char *key, const char *value)
{
    allow_ctx *c = user;
    if (strcmp(section, "allow") != 0) {
        gdml_errmsg_set(&c->why, GDML_ERR_FORMAT, "expected [allow], found [%s]", section);
        return 0;
    }
    uint8_t k[GDML_CURVE_KEY_BYTES];
    if (!gdml_name_ok(key)) {
        gdml_errmsg_set(&c->why, GDML_ERR_FORMAT, "'%s' is not a valid peer name", key);
        return 0;
    }
    if (gdml_curve_z85_decode(value, k)) {
        gdml_errmsg_set(&c->why, GDML_ERR_FORMAT, "the key of '%s' is not 40 Z85 characters", key);
        return 0;
    }
    if (c->allow && gdml_curve_allow_add(c->allow, key, k, &c->why))
        return 0;
    if (c->entries++ == 0) {
        snprintf(c->first_name, sizeof c->first_name, "%s", key);
        memcpy(c->first_key, k, sizeof k);
    }
    return 1;
}

static gdml_err parse_allow(const char *path, allow_ctx *c, gdml_errmsg *e)
{
    gdml_err err = check_mode(path, 022, "644", e);
    if (err)
        return err;
    int line = ini_parse(path, on_allow, c);
    if (line < 0)
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot read '%s'", path);
    if (line > 0)
        return gdml_errmsg_set(e, GDML_ERR_FORMAT, "'%s':%d: %s", path, line,
                               *c->why.text ? c->why.text : "cannot parse this line");
    return GDML_OK;
}

gdml_err gdml_keys_load_allow(const char *path, gdml_curve_allow **out, gdml_errmsg *e)
{
    allow_ctx c;
    memset(&c, 0, sizeof c);
    if (gdml_curve_allow_new(&c.allow))
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory");
    gdml_err err = parse_allow(path, &c, e);
    if (!err && c.entries == 0)
        err =
            gdml_errmsg_set(e, GDML_ERR_FORMAT,
                            "allow-list '%s' allows nobody: put the peers' .pub files in it", path);
    if (err) {
        gdml_curve_allow_unref(&c.allow);
        return err;
    }
    *out = c.allow;
    return GDML_OK;
}

gdml_err gdml_keys_load_public(const char *path, char name[GDML_NAME_MAX],
                               uint8_t key[GDML_CURVE_KEY_BYTES], gdml_errmsg *e)
{
    allow_ctx c;
    memset(&c, 0, sizeof c);
    gdml_err err = parse_allow(path, &c, e);
    if (err)
        return err;
    if (c.entries != 1)
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "'%s' holds %zu public keys; a peer's key file holds exactly one",
                               path, c.entries);
    memcpy(name, c.first_name, GDML_NAME_MAX);
    memcpy(key, c.first_key, GDML_CURVE_KEY_BYTES);
    return GDML_OK;
}

/* Writes text to path, created with mode, never replacing a file. */
static gdml_err write_new(const char *path, const char *text, mode_t mode, gdml_errmsg *e)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd < 0)
        return gdml_errmsg_set(e, errno == EEXIST ? GDML_ERR_EXISTS : GDML_ERR_IO,
                               "cannot create '%s': %s%s", path, strerror(errno),
                               errno == EEXIST ? " (keys are never overwritten; remove it first)"
                                               : "");
    size_t len = strlen(text);
    bool ok = write(fd, text, len) == (ssize_t)len && fchmod(fd, mode) == 0 && fsync(fd) == 0;
    int saved = errno;
    close(fd);
    if (!ok) {
        unlink(path);
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot write '%s': %s", path, strerror(saved));
    }
    return GDML_OK;
}

gdml_err gdml_keys_write_pair(const char *dir, const char *name, gdml_errmsg *e)
{
    if (!gdml_name_ok(name))
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "'%s' is not a valid peer name", name);
    gdml_curve_key k;
    gdml_err err = gdml_mkdir_p(dir, e);
    if (!err)
        err = gdml_curve_keypair(name, &k, e);
    if (err)
        return err;
    char pub[GDML_CURVE_Z85_LEN + 1], sec[GDML_CURVE_Z85_LEN + 1];
    gdml_curve_z85_encode(k.public_key, pub);
    gdml_curve_z85_encode(k.secret_key, sec);
    char key_path[GDML_PATH_MAX + GDML_NAME_MAX + 8], pub_path[GDML_PATH_MAX + GDML_NAME_MAX + 8];
    char text[512];
    snprintf(key_path, sizeof key_path, "%s/%s.key", dir, name);
    snprintf(pub_path, sizeof pub_path, "%s/%s.pub", dir, name);
    snprintf(text, sizeof text,
             "# gdml CURVE key pair of '%s'. Keep it secret (mode 0600); give %s.pub to peers.\n"
             "[key]\nname = %s\npublic = %s\nsecret = %s\n",
             name, name, name, pub, sec);
    if ((err = write_new(key_path, text, 0600, e)))
        return err;
    snprintf(text, sizeof text,
             "# gdml CURVE public key of '%s'. Add it to the allow-list of what it connects to.\n"
             "[allow]\n%s = %s\n",
             name, name, pub);
    if ((err = write_new(pub_path, text, 0644, e)))
        unlink(key_path);
    memset(&k, 0, sizeof k);
    memset(sec, 0, sizeof sec);
    return err;
}

bool gdml_keys_curve_on(const gdml_config *cfg, bool lan)
{
    return strcmp(lan ? cfg->security.lan_curve : cfg->security.curve, "on") == 0;
}

static void net_bounds(const gdml_config *cfg, gdml_link_options *opts)
{
    opts->max_backlog = (uint64_t)cfg->net.max_peer_bytes;
    opts->drop_after_ms = cfg->net.drop_after_ms;
    opts->dead_after_ms = cfg->net.peer_timeout_ms;
}

static gdml_err load_own_key(const gdml_config *cfg, const char *name, gdml_link_security *sec,
                             gdml_errmsg *e)
{
    if (!*cfg->security.key)
        return gdml_errmsg_set(e, GDML_ERR_CONFIG,
                               "CURVE is on but [security] key is not set: make a key pair with "
                               "'gdml-keys new NAME' and pass --key NAME.key (or set "
                               "security.curve = off on a trusted network)");
    if (gdml_keys_load_pair(cfg->security.key, &sec->key, e))
        return GDML_ERR_CONFIG; /* the setup is wrong: exit status 2, e says what to do */
    if (name && strcmp(sec->key.name, name) != 0)
        return gdml_errmsg_set(e, GDML_ERR_CONFIG,
                               "key file '%s' belongs to '%s', but this process is '%s'; give it "
                               "its own key",
                               cfg->security.key, sec->key.name, name);
    return GDML_OK;
}

gdml_err gdml_keys_bind_options(const gdml_config *cfg, bool curve, const char *name,
                                gdml_link_security *sec, gdml_link_options *opts, gdml_errmsg *e)
{
    memset(opts, 0, sizeof *opts);
    net_bounds(cfg, opts);
    if (!curve)
        return GDML_OK;
    gdml_err err = load_own_key(cfg, name, sec, e);
    if (err)
        return err;
    if (!*cfg->security.allow)
        return gdml_errmsg_set(e, GDML_ERR_CONFIG,
                               "CURVE is on but [security] allow is not set: list the peers that "
                               "may connect (cat their .pub files into one file) and pass --allow "
                               "FILE");
    if (gdml_keys_load_allow(cfg->security.allow, &sec->allow, e))
        return GDML_ERR_CONFIG;
    opts->key = &sec->key;
    opts->allow = sec->allow;
    return GDML_OK;
}

gdml_err gdml_keys_connect_options(const gdml_config *cfg, bool curve, const char *name,
                                   const char *server_key_path, const char *server_key_key,
                                   gdml_link_security *sec, gdml_link_options *opts, gdml_errmsg *e)
{
    memset(opts, 0, sizeof *opts);
    net_bounds(cfg, opts);
    if (!curve)
        return GDML_OK;
    gdml_err err = load_own_key(cfg, name, sec, e);
    if (err)
        return err;
    if (!*server_key_path)
        return gdml_errmsg_set(e, GDML_ERR_CONFIG,
                               "CURVE is on but [security] %s is not set: give the public key "
                               "file (.pub) of the server this process connects to",
                               server_key_key);
    if (gdml_keys_load_public(server_key_path, sec->server_name, sec->server_key, e))
        return GDML_ERR_CONFIG;
    opts->key = &sec->key;
    opts->server_key = sec->server_key;
    opts->server_name = sec->server_name;
    return GDML_OK;
}

void gdml_link_security_fini(gdml_link_security *sec)
{
    gdml_curve_allow_unref(&sec->allow);
    memset(&sec->key, 0, sizeof sec->key);
}
