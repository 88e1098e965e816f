/*
 * test_keys.c - CURVE key files on disk (keys.h): NAME.key (0600) and
 * NAME.pub (0644) written once and never overwritten, key pairs read back
 * only from files others cannot read and whose halves belong together,
 * allow-lists made by concatenating .pub files, and the link options a
 * configuration gives, with the messages that say what to fix. Every test
 * works in its own temporary directory.
 */
#include "keys.h"
#include "support.h"
#include "util.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *tmp;

static void setup(void)
{
    tmp = gdml_test_tmpdir();
}

static void teardown(void)
{
    gdml_test_rmtree(tmp);
    tmp = NULL;
}

TestSuite(keys, .init = setup, .fini = teardown);

/* <tmp>/name, in one of a few rotating static buffers. */
static const char *path_of(const char *name)
{
    static char paths[8][1024];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s", tmp, name);
    return p;
}

/* Writes text to <tmp>/name with exactly this mode (whatever the umask). */
static const char *write_mode(const char *name, const char *text, mode_t mode)
{
    const char *p = path_of(name);
    gdml_test_write_file(p, text);
    cr_assert_eq(chmod(p, mode), 0);
    return p;
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "%s", path);
    return st.st_mode & 07777;
}

static void write_pair_ok(const char *name)
{
    gdml_errmsg e = {{0}};
    gdml_err err = gdml_keys_write_pair(tmp, name, &e);
    cr_assert_eq(err, GDML_OK, "%s: %s", gdml_strerror(err), e.text);
}

static gdml_curve_key load_pair_ok(const char *path)
{
    gdml_curve_key k;
    gdml_errmsg e = {{0}};
    gdml_err err = gdml_keys_load_pair(path, &k, &e);
    cr_assert_eq(err, GDML_OK, "%s: %s", gdml_strerror(err), e.text);
    return k;
}

/* The text of a key file for k, with public replaced by pub if not NULL. */
static void key_text(const gdml_curve_key *k, const uint8_t *pub, char *out, size_t cap)
{
    char p[GDML_CURVE_Z85_LEN + 1], s[GDML_CURVE_Z85_LEN + 1];
    gdml_curve_z85_encode(pub ? pub : k->public_key, p);
    gdml_curve_z85_encode(k->secret_key, s);
    snprintf(out, cap, "[key]\nname = %s\npublic = %s\nsecret = %s\n", k->name, p, s);
}

static gdml_curve_key make_key(const char *name)
{
    gdml_curve_key k;
    cr_assert_eq(gdml_curve_keypair(name, &k, NULL), GDML_OK);
    return k;
}

/* Concatenates the given files into <tmp>/name (0644), as `cat a b > name`. */
static const char *cat_files(const char *name, const char *a, const char *b)
{
    char *ta = gdml_test_read_file(a), *tb = gdml_test_read_file(b);
    cr_assert(ta && tb);
    size_t n = strlen(ta) + strlen(tb) + 1;
    char *all = malloc(n);
    cr_assert_not_null(all);
    snprintf(all, n, "%s%s", ta, tb);
    const char *p = write_mode(name, all, 0644);
    free(all);
    free(ta);
    free(tb);
    return p;
}

/* ---- writing and reading key pairs ---- */

Test(keys, write_pair_makes_key_0600_and_pub_0644)
{
    mode_t old = umask(0); /* the modes must not depend on the umask */
    write_pair_ok("us-east");
    umask(old);
    const char *key = path_of("us-east.key"), *pub = path_of("us-east.pub");
    cr_assert_eq(mode_of(key), 0600, "%o", (unsigned)mode_of(key));
    cr_assert_eq(mode_of(pub), 0644, "%o", (unsigned)mode_of(pub));
    char *kt = gdml_test_read_file(key), *pt = gdml_test_read_file(pub);
    cr_assert(strstr(kt, "[key]") && strstr(kt, "name = us-east") && strstr(kt, "secret = "), "%s",
              kt);
    cr_assert(strstr(pt, "[allow]") && strstr(pt, "us-east = "), "%s", pt);
    cr_assert_null(strstr(pt, "secret"), "the public file holds no secret: %s", pt);
    free(kt);
    free(pt);
}

Test(keys, write_pair_creates_the_directory)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/a/b", tmp);
    cr_assert_eq(gdml_keys_write_pair(dir, "w0", NULL), GDML_OK);
    char p[1100];
    snprintf(p, sizeof p, "%s/w0.key", dir);
    cr_assert_eq(access(p, R_OK), 0);
}

Test(keys, write_pair_never_overwrites)
{
    write_pair_ok("us-east");
    char *before = gdml_test_read_file(path_of("us-east.key"));
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_keys_write_pair(tmp, "us-east", &e), GDML_ERR_EXISTS);
    cr_assert(strstr(e.text, "us-east.key") && strstr(e.text, "never overwritten"), "%s", e.text);
    char *after = gdml_test_read_file(path_of("us-east.key"));
    cr_assert_str_eq(before, after);
    free(before);
    free(after);
}

Test(keys, write_pair_refuses_when_only_the_pub_exists_and_leaves_no_key)
{
    const char *pub = write_mode("w1.pub", "# someone else's\n", 0644);
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_keys_write_pair(tmp, "w1", &e), GDML_ERR_EXISTS);
    cr_assert(strstr(e.text, "w1.pub"), "%s", e.text);
    cr_assert_neq(access(path_of("w1.key"), F_OK), 0, "a half-written pair was left behind");
    char *t = gdml_test_read_file(pub);
    cr_assert_str_eq(t, "# someone else's\n");
    free(t);
}

Test(keys, write_pair_refuses_a_bad_name)
{
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_keys_write_pair(tmp, "../evil", &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "../evil"), "%s", e.text);
    cr_assert_eq(gdml_keys_write_pair(tmp, "", NULL), GDML_ERR_INVALID);
}

Test(keys, load_pair_round_trip)
{
    write_pair_ok("us-east");
    gdml_curve_key k = load_pair_ok(path_of("us-east.key"));
    cr_assert_str_eq(k.name, "us-east");
    uint8_t derived[GDML_CURVE_KEY_BYTES];
    cr_assert_eq(gdml_curve_public_of(k.secret_key, derived), GDML_OK);
    cr_assert_eq(memcmp(derived, k.public_key, sizeof derived), 0);

    /* The .pub holds the same public key under the same name. */
    char name[GDML_NAME_MAX];
    uint8_t pub[GDML_CURVE_KEY_BYTES];
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_keys_load_public(path_of("us-east.pub"), name, pub, &e), GDML_OK, "%s",
                 e.text);
    cr_assert_str_eq(name, "us-east");
    cr_assert_eq(memcmp(pub, k.public_key, sizeof pub), 0);

    /* Two pairs are different keys. */
    write_pair_ok("eu-west");
    gdml_curve_key k2 = load_pair_ok(path_of("eu-west.key"));
    cr_assert_neq(memcmp(k2.public_key, k.public_key, sizeof pub), 0);
}

Test(keys, load_pair_refuses_a_file_others_can_read)
{
    write_pair_ok("w0");
    const char *p = path_of("w0.key");
    const mode_t loose[] = {0644, 0640, 0604, 0660, 0606};
    for (size_t i = 0; i < sizeof loose / sizeof loose[0]; i++) {
        cr_assert_eq(chmod(p, loose[i]), 0);
        gdml_curve_key k;
        gdml_errmsg e = {{0}};
        cr_assert_eq(gdml_keys_load_pair(p, &k, &e), GDML_ERR_IO, "mode %o", (unsigned)loose[i]);
        cr_assert(strstr(e.text, "chmod 600"), "%s", e.text);
        cr_assert(strstr(e.text, "w0.key"), "%s", e.text);
    }
    cr_assert_eq(chmod(p, 0400), 0); /* read-only for its owner is fine */
    load_pair_ok(p);
}

Test(keys, load_pair_refuses_mismatched_halves)
{
    gdml_curve_key a = make_key("w0"), b = make_key("w0");
    char text[512];
    key_text(&a, b.public_key, text, sizeof text);
    const char *p = write_mode("w0.key", text, 0600);
    gdml_curve_key k;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_keys_load_pair(p, &k, &e), GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, "not the one of its secret"), "%s", e.text);
    /* The matching text loads. */
    key_text(&a, NULL, text, sizeof text);
    p = write_mode("ok.key", text, 0600);
    k = load_pair_ok(p);
    cr_assert_eq(memcmp(k.secret_key, a.secret_key, sizeof k.secret_key), 0);
}

Test(keys, load_pair_refuses_a_missing_field)
{
    gdml_curve_key a = make_key("w0");
    char pub[GDML_CURVE_Z85_LEN + 1], sec[GDML_CURVE_Z85_LEN + 1], text[512];
    gdml_curve_z85_encode(a.public_key, pub);
    gdml_curve_z85_encode(a.secret_key, sec);
    const char *fmt[] = {"[key]\npublic = %s\nsecret = %s\n", "[key]\nname = w0\npublic = %s\n",
                         "[key]\nname = w0\nsecret = %s\n%s"};
    for (size_t i = 0; i < 3; i++) {
        if (i == 0)
            snprintf(text, sizeof text, fmt[0], pub, sec);
        else if (i == 1)
            snprintf(text, sizeof text, fmt[1], pub);
        else
            snprintf(text, sizeof text, fmt[2], sec, "");
        char name[32];
        snprintf(name, sizeof name, "m%zu.key", i);
        const char *p = write_mode(name, text, 0600);
        gdml_curve_key k;
        gdml_errmsg e = {{0}};
        cr_assert_eq(gdml_keys_load_pair(p, &k, &e), GDML_ERR_FORMAT, "case %zu", i);
        cr_assert(strstr(e.text, "name, public and secret"), "%s", e.text);
    }
}

Test(keys, load_pair_refuses_junk)
{
    gdml_curve_key a = make_key("w0");
    char pub[GDML_CURVE_Z85_LEN + 1], sec[GDML_CURVE_Z85_LEN + 1], bad_key[512], bad_name[512],
        other[512], extra[512];
    gdml_curve_z85_encode(a.public_key, pub);
    gdml_curve_z85_encode(a.secret_key, sec);
    snprintf(bad_key, sizeof bad_key, "[key]\nname = w0\npublic = %.39s\nsecret = %s\n", pub, sec);
    snprintf(bad_name, sizeof bad_name, "[key]\nname = a b\npublic = %s\nsecret = %s\n", pub, sec);
    snprintf(other, sizeof other, "[allow]\nw0 = %s\n", pub);
    snprintf(extra, sizeof extra, "[key]\nname = w0\npublic = %s\nsecret = %s\ncolor = red\n", pub,
             sec);
    const struct {
        const char *text, *want;
    } cases[] = {
        {"hello world\n", NULL},
        {"\x01\x02\x03\xff\xfe binary junk\n", NULL},
        {"", "name, public and secret"},
        {bad_key, "public is not 40 Z85"},
        {bad_name, "'a b' is not a valid peer name"},
        {other, "[allow] does not belong"},
        {extra, "unknown key 'color'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "j%zu.key", i);
        const char *p = write_mode(name, cases[i].text, 0600);
        gdml_curve_key k;
        memset(&k, 0x5a, sizeof k);
        gdml_errmsg e = {{0}};
        cr_assert_eq(gdml_keys_load_pair(p, &k, &e), GDML_ERR_FORMAT, "case %zu: %s", i, e.text);
        cr_assert(strstr(e.text, name), "case %zu: %s", i, e.text);
        if (cases[i].want)
            cr_assert(strstr(e.text, cases[i].want), "case %zu: %s", i, e.text);
        cr_assert_eq(((unsigned char *)&k)[0], 0x5a, "out-param written on failure");
    }
}

Test(keys, load_pair_of_a_missing_file_is_io)
{
    gdml_curve_key k;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_keys_load_pair(path_of("nope.key"), &k, &e), GDML_ERR_IO);
    cr_assert(strstr(e.text, "nope.key"), "%s", e.text);
    cr_assert_eq(gdml_keys_load_pair(tmp, &k, &e), GDML_ERR_IO); /* a directory */
}

/* ---- allow-lists ---- */

Test(keys, load_allow_from_concatenated_pub_files)
{
    write_pair_ok("us-east");
    write_pair_ok("eu-west");
    const char *allow = cat_files("allow", path_of("us-east.pub"), path_of("eu-west.pub"));
    gdml_curve_allow *a = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_keys_load_allow(allow, &a, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_curve_allow_count(a), 2);
    gdml_curve_key east = load_pair_ok(path_of("us-east.key"));
    gdml_curve_key west = load_pair_ok(path_of("eu-west.key"));
    char name[GDML_NAME_MAX];
    cr_assert(gdml_curve_allow_lookup(a, east.public_key, name));
    cr_assert_str_eq(name, "us-east");
    cr_assert(gdml_curve_allow_lookup(a, west.public_key, name));
    cr_assert_str_eq(name, "eu-west");
    cr_assert(gdml_curve_allow_name_at(a, 0, name));
    cr_assert_str_eq(name, "us-east");
    cr_assert_not(gdml_curve_allow_lookup(a, east.secret_key, name));
    gdml_curve_allow_unref(&a);
}

Test(keys, load_allow_takes_two_keys_for_one_name)
{
    gdml_curve_key k1 = make_key("w0"), k2 = make_key("w0");
    char z1[GDML_CURVE_Z85_LEN + 1], z2[GDML_CURVE_Z85_LEN + 1], text[512];
    gdml_curve_z85_encode(k1.public_key, z1);
    gdml_curve_z85_encode(k2.public_key, z2);
    snprintf(text, sizeof text, "[allow]\nw0 = %s\n[allow]\nw0 = %s\n", z1, z2);
    gdml_curve_allow *a = NULL;
    cr_assert_eq(gdml_keys_load_allow(write_mode("allow", text, 0644), &a, NULL), GDML_OK);
    cr_assert_eq(gdml_curve_allow_count(a), 2);
    char name[GDML_NAME_MAX];
    cr_assert(gdml_curve_allow_lookup(a, k2.public_key, name));
    cr_assert_str_eq(name, "w0");
    gdml_curve_allow_unref(&a);
}

Test(keys, load_allow_refuses_an_empty_list)
{
    const char *texts[] = {"", "[allow]\n", "# nobody\n[allow]\n; still nobody\n"};
    for (size_t i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "empty%zu", i);
        gdml_curve_allow *a = NULL;
        gdml_errmsg e = {{0}};
        cr_assert_eq(gdml_keys_load_allow(write_mode(name, texts[i], 0644), &a, &e),
                     GDML_ERR_FORMAT);
        cr_assert(strstr(e.text, "allows nobody"), "%s", e.text);
        cr_assert_null(a);
    }
}

Test(keys, load_allow_refuses_a_bad_key_naming_its_line)
{
    gdml_curve_key k = make_key("w0");
    char z[GDML_CURVE_Z85_LEN + 1], text[512];
    gdml_curve_z85_encode(k.public_key, z);
    snprintf(text, sizeof text, "[allow]\nw0 = %s\nw1 = not-a-key\n", z);
    gdml_curve_allow *a = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_keys_load_allow(write_mode("allow", text, 0644), &a, &e), GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, ":3:") && strstr(e.text, "'w1'"), "%s", e.text);
    cr_assert_null(a);

    /* A bad name, and a wrong section, are refused too. */
    snprintf(text, sizeof text, "[allow]\nbad name = %s\n", z);
    cr_assert_eq(gdml_keys_load_allow(write_mode("allow2", text, 0644), &a, &e), GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, "bad name"), "%s", e.text);
    snprintf(text, sizeof text, "[key]\nw0 = %s\n", z);
    cr_assert_eq(gdml_keys_load_allow(write_mode("allow3", text, 0644), &a, &e), GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, "[allow]"), "%s", e.text);
    cr_assert_null(a);
}

Test(keys, load_allow_refuses_a_key_under_two_names)
{
    gdml_curve_key k = make_key("w0");
    char z[GDML_CURVE_Z85_LEN + 1], text[512];
    gdml_curve_z85_encode(k.public_key, z);
    snprintf(text, sizeof text, "[allow]\nw0 = %s\nw1 = %s\n", z, z);
    gdml_curve_allow *a = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_keys_load_allow(write_mode("allow", text, 0644), &a, &e), GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, "'w0'") && strstr(e.text, "'w1'") && strstr(e.text, ":3:"), "%s",
              e.text);
    cr_assert_null(a);
}

Test(keys, load_allow_refuses_a_file_others_can_change)
{
    write_pair_ok("w0");
    const char *p = path_of("w0.pub");
    cr_assert_eq(chmod(p, 0666), 0);
    gdml_curve_allow *a = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_keys_load_allow(p, &a, &e), GDML_ERR_IO);
    cr_assert(strstr(e.text, "chmod 644"), "%s", e.text);
    cr_assert_eq(chmod(p, 0620), 0);
    cr_assert_eq(gdml_keys_load_allow(p, &a, &e), GDML_ERR_IO);
    cr_assert_eq(chmod(p, 0444), 0);
    cr_assert_eq(gdml_keys_load_allow(p, &a, &e), GDML_OK, "%s", e.text);
    gdml_curve_allow_unref(&a);
    cr_assert_eq(gdml_keys_load_allow(path_of("missing"), &a, &e), GDML_ERR_IO);
}

Test(keys, load_public_wants_exactly_one_entry)
{
    write_pair_ok("a");
    write_pair_ok("b");
    const char *both = cat_files("both.pub", path_of("a.pub"), path_of("b.pub"));
    char name[GDML_NAME_MAX] = "untouched";
    uint8_t key[GDML_CURVE_KEY_BYTES];
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_keys_load_public(both, name, key, &e), GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, "holds 2 public keys"), "%s", e.text);
    cr_assert_str_eq(name, "untouched");
    cr_assert_eq(gdml_keys_load_public(write_mode("none.pub", "[allow]\n", 0644), name, key, &e),
                 GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, "holds 0 public keys"), "%s", e.text);
    cr_assert_eq(gdml_keys_load_public(path_of("b.pub"), name, key, &e), GDML_OK, "%s", e.text);
    cr_assert_str_eq(name, "b");
    gdml_curve_key b = load_pair_ok(path_of("b.key"));
    cr_assert_eq(memcmp(key, b.public_key, sizeof key), 0);
}

/* ---- link options from a configuration ---- */

static void config_with_net(gdml_config *cfg)
{
    gdml_config_defaults(cfg);
    cfg->net.max_peer_bytes = (int64_t)40 << 20;
    cfg->net.drop_after_ms = 1234;
}

static void set_str(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s);
}

Test(keys, curve_on_follows_the_config)
{
    gdml_config cfg;
    gdml_config_defaults(&cfg);
    set_str(cfg.security.curve, sizeof cfg.security.curve, "on");
    set_str(cfg.security.lan_curve, sizeof cfg.security.lan_curve, "off");
    cr_assert(gdml_keys_curve_on(&cfg, false));
    cr_assert_not(gdml_keys_curve_on(&cfg, true));
    set_str(cfg.security.curve, sizeof cfg.security.curve, "off");
    set_str(cfg.security.lan_curve, sizeof cfg.security.lan_curve, "on");
    cr_assert_not(gdml_keys_curve_on(&cfg, false));
    cr_assert(gdml_keys_curve_on(&cfg, true));
}

Test(keys, curve_off_gives_no_key_and_the_net_bounds)
{
    gdml_config cfg;
    config_with_net(&cfg);
    set_str(cfg.security.key, sizeof cfg.security.key, "/nonexistent/ignored.key");
    gdml_link_security sec;
    memset(&sec, 0, sizeof sec);
    gdml_link_options o;
    memset(&o, 0x5a, sizeof o);
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_keys_bind_options(&cfg, false, "srv", &sec, &o, &e), GDML_OK, "%s", e.text);
    cr_assert_null(o.key);
    cr_assert_null(o.allow);
    cr_assert_null(o.server_key);
    cr_assert_null(o.server_name);
    cr_assert_eq(o.max_backlog, (uint64_t)40 << 20);
    cr_assert_eq(o.drop_after_ms, 1234);

    memset(&o, 0x5a, sizeof o);
    cr_assert_eq(gdml_keys_connect_options(&cfg, false, "w0", "", "server_key", &sec, &o, &e),
                 GDML_OK, "%s", e.text);
    cr_assert_null(o.key);
    cr_assert_null(o.server_key);
    cr_assert_null(o.server_name);
    cr_assert_eq(o.max_backlog, (uint64_t)40 << 20);
    cr_assert_eq(o.drop_after_ms, 1234);
    gdml_link_security_fini(&sec);
}

Test(keys, curve_on_without_a_key_is_a_config_error)
{
    gdml_config cfg;
    config_with_net(&cfg);
    cfg.security.key[0] = '\0';
    gdml_link_security sec;
    memset(&sec, 0, sizeof sec);
    gdml_link_options o;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_keys_bind_options(&cfg, true, "srv", &sec, &o, &e), GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "[security] key"), "%s", e.text);
    memset(&e, 0, sizeof e);
    cr_assert_eq(gdml_keys_connect_options(&cfg, true, "w0", "x.pub", "server_key", &sec, &o, &e),
                 GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "[security] key"), "%s", e.text);
    gdml_link_security_fini(&sec);
}

Test(keys, a_key_file_of_another_name_is_refused)
{
    write_pair_ok("us-east");
    gdml_config cfg;
    config_with_net(&cfg);
    set_str(cfg.security.key, sizeof cfg.security.key, path_of("us-east.key"));
    set_str(cfg.security.allow, sizeof cfg.security.allow, path_of("us-east.pub"));
    gdml_link_security sec;
    memset(&sec, 0, sizeof sec);
    gdml_link_options o;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_keys_bind_options(&cfg, true, "eu-west", &sec, &o, &e), GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "belongs to 'us-east'") && strstr(e.text, "'eu-west'"), "%s", e.text);
    cr_assert_eq(gdml_keys_connect_options(&cfg, true, "eu-west", path_of("us-east.pub"),
                                           "coordinator_key", &sec, &o, &e),
                 GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "belongs to"), "%s", e.text);
    gdml_link_security_fini(&sec);
    /* Without a name to check, any key file is taken. */
    memset(&sec, 0, sizeof sec);
    cr_assert_eq(gdml_keys_bind_options(&cfg, true, NULL, &sec, &o, &e), GDML_OK, "%s", e.text);
    cr_assert_str_eq(o.key->name, "us-east");
    gdml_link_security_fini(&sec);
}

Test(keys, a_readable_key_file_is_a_config_error_saying_chmod)
{
    write_pair_ok("srv");
    cr_assert_eq(chmod(path_of("srv.key"), 0644), 0);
    gdml_config cfg;
    config_with_net(&cfg);
    set_str(cfg.security.key, sizeof cfg.security.key, path_of("srv.key"));
    set_str(cfg.security.allow, sizeof cfg.security.allow, path_of("srv.pub"));
    gdml_link_security sec;
    memset(&sec, 0, sizeof sec);
    gdml_link_options o;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_keys_bind_options(&cfg, true, "srv", &sec, &o, &e), GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "chmod 600"), "%s", e.text);
    gdml_link_security_fini(&sec);
}

Test(keys, bind_options_need_an_allow_list)
{
    write_pair_ok("srv");
    gdml_config cfg;
    config_with_net(&cfg);
    set_str(cfg.security.key, sizeof cfg.security.key, path_of("srv.key"));
    cfg.security.allow[0] = '\0';
    gdml_link_security sec;
    memset(&sec, 0, sizeof sec);
    gdml_link_options o;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_keys_bind_options(&cfg, true, "srv", &sec, &o, &e), GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "[security] allow"), "%s", e.text);
    /* An allow-list that allows nobody is a config error too. */
    set_str(cfg.security.allow, sizeof cfg.security.allow, write_mode("empty", "[allow]\n", 0644));
    cr_assert_eq(gdml_keys_bind_options(&cfg, true, "srv", &sec, &o, &e), GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "allows nobody"), "%s", e.text);
    cr_assert_null(sec.allow);
    gdml_link_security_fini(&sec);
}

Test(keys, bind_options_with_curve)
{
    write_pair_ok("srv");
    write_pair_ok("w0");
    write_pair_ok("w1");
    gdml_config cfg;
    config_with_net(&cfg);
    set_str(cfg.security.key, sizeof cfg.security.key, path_of("srv.key"));
    set_str(cfg.security.allow, sizeof cfg.security.allow,
            cat_files("allow", path_of("w0.pub"), path_of("w1.pub")));
    gdml_link_security sec;
    memset(&sec, 0, sizeof sec);
    gdml_link_options o;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_keys_bind_options(&cfg, true, "srv", &sec, &o, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(o.key, &sec.key);
    cr_assert_str_eq(o.key->name, "srv");
    cr_assert_eq(o.allow, sec.allow);
    cr_assert_eq(gdml_curve_allow_count(o.allow), 2);
    cr_assert(gdml_curve_allow_has_name(o.allow, "w0"));
    cr_assert(gdml_curve_allow_has_name(o.allow, "w1"));
    cr_assert_eq(o.max_backlog, (uint64_t)40 << 20);
    cr_assert_eq(o.drop_after_ms, 1234);
    gdml_link_security_fini(&sec);
    cr_assert_null(sec.allow);
    gdml_link_security_fini(&sec); /* twice is safe */
    gdml_link_security zero;
    memset(&zero, 0, sizeof zero);
    gdml_link_security_fini(&zero);
}

Test(keys, connect_options_with_curve)
{
    write_pair_ok("srv");
    write_pair_ok("w0");
    gdml_config cfg;
    config_with_net(&cfg);
    set_str(cfg.security.key, sizeof cfg.security.key, path_of("w0.key"));
    gdml_link_security sec;
    memset(&sec, 0, sizeof sec);
    gdml_link_options o;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_keys_connect_options(&cfg, true, "w0", "", "coordinator_key", &sec, &o, &e),
                 GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "[security] coordinator_key"), "%s", e.text);
    cr_assert_eq(gdml_keys_connect_options(&cfg, true, "w0", path_of("missing.pub"), "server_key",
                                           &sec, &o, &e),
                 GDML_ERR_CONFIG);
    cr_assert(strstr(e.text, "missing.pub"), "%s", e.text);

    cr_assert_eq(
        gdml_keys_connect_options(&cfg, true, "w0", path_of("srv.pub"), "server_key", &sec, &o, &e),
        GDML_OK, "%s", e.text);
    gdml_curve_key srv = load_pair_ok(path_of("srv.key"));
    cr_assert_eq(o.key, &sec.key);
    cr_assert_str_eq(o.key->name, "w0");
    cr_assert_eq(o.server_key, sec.server_key);
    cr_assert_eq(memcmp(o.server_key, srv.public_key, GDML_CURVE_KEY_BYTES), 0);
    cr_assert_str_eq(o.server_name, "srv");
    cr_assert_null(o.allow);
    cr_assert_eq(o.max_backlog, (uint64_t)40 << 20);
    cr_assert_eq(o.drop_after_ms, 1234);
    gdml_link_security_fini(&sec);
}

/* Receives one frame within timeout_ms. */
static gdml_err recv_within(gdml_link *l, gdml_rx *rx, int timeout_ms, gdml_errmsg *e)
{
    int64_t end = gdml_now_ms() + timeout_ms;
    for (;;) {
        gdml_err err = gdml_link_recv(l, rx, e);
        if (err != GDML_ERR_AGAIN)
            return err;
        int64_t left = end - gdml_now_ms();
        if (left <= 0)
            return GDML_ERR_AGAIN;
        bool ready;
        gdml_link_poll(&l, 1, (int)(left < 50 ? left : 50), &ready);
    }
}

Test(keys, files_written_here_make_a_working_curve_link)
{
    write_pair_ok("srv");
    write_pair_ok("w0");
    gdml_config scfg, wcfg;
    config_with_net(&scfg);
    config_with_net(&wcfg);
    set_str(scfg.security.key, sizeof scfg.security.key, path_of("srv.key"));
    set_str(scfg.security.allow, sizeof scfg.security.allow, path_of("w0.pub"));
    set_str(wcfg.security.key, sizeof wcfg.security.key, path_of("w0.key"));
    gdml_link_security ssec, wsec;
    memset(&ssec, 0, sizeof ssec);
    memset(&wsec, 0, sizeof wsec);
    gdml_link_options so, wo;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_keys_bind_options(&scfg, true, "srv", &ssec, &so, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_keys_connect_options(&wcfg, true, "w0", path_of("srv.pub"), "server_key",
                                           &wsec, &wo, &e),
                 GDML_OK, "%s", e.text);

    gdml_transport *t = NULL;
    gdml_link *srv = NULL, *cli = NULL;
    char ep[256];
    cr_assert_eq(gdml_transport_new(&t, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_link_bind(t, "tcp://127.0.0.1:*", &so, &srv, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_link_endpoint(srv, ep, sizeof ep), GDML_OK);
    cr_assert_eq(gdml_link_connect(t, ep, &wo, &cli, &e), GDML_OK, "%s", e.text);
    /* The link keeps its own reference to the allow-list. */
    gdml_link_security_fini(&ssec);

    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_HELLO, "w0");
    h.seq = 1;
    gdml_blob *f = NULL;
    cr_assert_eq(gdml_frame_header_only(&h, &f), GDML_OK);
    cr_assert_eq(gdml_link_send(cli, NULL, f, &e), GDML_OK, "%s", e.text);
    gdml_blob_unref(&f);
    gdml_rx rx;
    gdml_err err = recv_within(srv, &rx, 5000, &e);
    cr_assert_eq(err, GDML_OK, "%s: %s", gdml_strerror(err), e.text);
    cr_assert(rx.authenticated);
    cr_assert_str_eq(rx.name, "w0");
    gdml_peer peer = rx.peer;
    gdml_rx_release(&rx);

    gdml_msg_header_init(&h, GDML_MSG_WELCOME, "srv");
    h.seq = 1;
    cr_assert_eq(gdml_frame_header_only(&h, &f), GDML_OK);
    cr_assert_eq(gdml_link_send(srv, &peer, f, &e), GDML_OK, "%s", e.text);
    gdml_blob_unref(&f);
    err = recv_within(cli, &rx, 5000, &e);
    cr_assert_eq(err, GDML_OK, "%s: %s", gdml_strerror(err), e.text);
    cr_assert(rx.authenticated);
    cr_assert_str_eq(rx.name, "srv");
    gdml_rx_release(&rx);

    gdml_link_close(&cli);
    gdml_link_close(&srv);
    gdml_transport_destroy(&t);
    gdml_link_security_fini(&wsec);
}
