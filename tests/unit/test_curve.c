/*
 * test_curve.c - CURVE keys and allow-lists in memory (curve.h): key pairs
 * whose halves belong together, Z85 text that round-trips and refuses
 * anything but 40 characters of its alphabet, and allow-lists that give each
 * key exactly one name, let a name hold several keys (rotation), list names
 * in the order first added, replace their contents live and count their
 * references.
 */
#include "curve.h"
#include "util.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static gdml_curve_key make_key(const char *name)
{
    gdml_curve_key k;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_curve_keypair(name, &k, &e), GDML_OK, "%s", e.text);
    return k;
}

static gdml_curve_allow *new_allow(void)
{
    gdml_curve_allow *a = NULL;
    cr_assert_eq(gdml_curve_allow_new(&a), GDML_OK);
    cr_assert_not_null(a);
    return a;
}

static void allow_ok(gdml_curve_allow *a, const char *name, const uint8_t *key)
{
    gdml_errmsg e = {{0}};
    gdml_err err = gdml_curve_allow_add(a, name, key, &e);
    cr_assert_eq(err, GDML_OK, "adding '%s': %s: %s", name, gdml_strerror(err), e.text);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* ---- keys ---- */

Test(curve, this_libzmq_has_curve)
{
    cr_assert(gdml_curve_available(), "the tests need a libzmq built with libsodium");
}

Test(curve, keypair_names_and_derives)
{
    gdml_curve_key a = make_key("us-east");
    gdml_curve_key b = make_key("us-east");
    cr_assert_str_eq(a.name, "us-east");
    cr_assert_not(all_zero(a.public_key, sizeof a.public_key));
    cr_assert_not(all_zero(a.secret_key, sizeof a.secret_key));
    cr_assert_neq(memcmp(a.public_key, a.secret_key, GDML_CURVE_KEY_BYTES), 0);
    /* Each call makes a fresh pair. */
    cr_assert_neq(memcmp(a.public_key, b.public_key, GDML_CURVE_KEY_BYTES), 0);
    cr_assert_neq(memcmp(a.secret_key, b.secret_key, GDML_CURVE_KEY_BYTES), 0);

    uint8_t derived[GDML_CURVE_KEY_BYTES];
    cr_assert_eq(gdml_curve_public_of(a.secret_key, derived), GDML_OK);
    cr_assert_eq(memcmp(derived, a.public_key, sizeof derived), 0);
    cr_assert_eq(gdml_curve_public_of(b.secret_key, derived), GDML_OK);
    cr_assert_eq(memcmp(derived, b.public_key, sizeof derived), 0);
    cr_assert_neq(memcmp(derived, a.public_key, sizeof derived), 0);
}

Test(curve, keypair_truncates_a_long_name)
{
    char longname[200];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    gdml_curve_key k = make_key(longname);
    cr_assert_eq(strlen(k.name), GDML_NAME_MAX - 1);
}

Test(curve, z85_round_trip)
{
    for (int round = 0; round < 20; round++) {
        gdml_curve_key k = make_key("w");
        char text[GDML_CURVE_Z85_LEN + 1];
        memset(text, '#', sizeof text);
        gdml_curve_z85_encode(k.public_key, text);
        cr_assert_eq(strlen(text), GDML_CURVE_Z85_LEN);
        uint8_t back[GDML_CURVE_KEY_BYTES];
        cr_assert_eq(gdml_curve_z85_decode(text, back), GDML_OK, "%s", text);
        cr_assert_eq(memcmp(back, k.public_key, sizeof back), 0);
    }
    /* Fixed bytes: all zeros and all ones, the extremes of the alphabet. */
    uint8_t zeros[GDML_CURVE_KEY_BYTES] = {0}, ones[GDML_CURVE_KEY_BYTES];
    memset(ones, 0xff, sizeof ones);
    char text[GDML_CURVE_Z85_LEN + 1];
    uint8_t back[GDML_CURVE_KEY_BYTES];
    gdml_curve_z85_encode(zeros, text);
    cr_assert_str_eq(text, "0000000000000000000000000000000000000000");
    cr_assert_eq(gdml_curve_z85_decode(text, back), GDML_OK);
    cr_assert(all_zero(back, sizeof back));
    gdml_curve_z85_encode(ones, text);
    cr_assert_eq(gdml_curve_z85_decode(text, back), GDML_OK);
    cr_assert_eq(memcmp(back, ones, sizeof back), 0);
}

Test(curve, z85_decode_refuses_wrong_length)
{
    gdml_curve_key k = make_key("w");
    char text[GDML_CURVE_Z85_LEN + 2];
    gdml_curve_z85_encode(k.public_key, text);
    uint8_t back[GDML_CURVE_KEY_BYTES];
    memset(back, 0xaa, sizeof back);

    char shorter[GDML_CURVE_Z85_LEN + 1];
    snprintf(shorter, sizeof shorter, "%.*s", GDML_CURVE_Z85_LEN - 1, text);
    cr_assert_eq(gdml_curve_z85_decode(shorter, back), GDML_ERR_FORMAT);
    cr_assert_eq(gdml_curve_z85_decode("", back), GDML_ERR_FORMAT);
    cr_assert_eq(gdml_curve_z85_decode("0000", back), GDML_ERR_FORMAT);
    text[GDML_CURVE_Z85_LEN] = '0';
    text[GDML_CURVE_Z85_LEN + 1] = '\0';
    cr_assert_eq(gdml_curve_z85_decode(text, back), GDML_ERR_FORMAT);
    /* Nothing was written on failure. */
    for (size_t i = 0; i < sizeof back; i++)
        cr_assert_eq(back[i], 0xaa);
}

Test(curve, z85_decode_refuses_bad_alphabet)
{
    gdml_curve_key k = make_key("w");
    char good[GDML_CURVE_Z85_LEN + 1];
    gdml_curve_z85_encode(k.public_key, good);
    /* Printable characters outside Z85, and a high byte. */
    const char bad[] = {' ', '"', '\'', ',', ';', '\\', '_', '`', '|', '~', '\x80', '\xff'};
    for (size_t i = 0; i < sizeof bad; i++)
        for (size_t at = 0; at < GDML_CURVE_Z85_LEN; at += 13) {
            char text[GDML_CURVE_Z85_LEN + 1];
            memcpy(text, good, sizeof text);
            text[at] = bad[i];
            uint8_t back[GDML_CURVE_KEY_BYTES];
            cr_assert_eq(gdml_curve_z85_decode(text, back), GDML_ERR_FORMAT,
                         "byte 0x%02x at %zu was accepted", (unsigned char)bad[i], at);
        }
    /* 40 characters of the alphabet whose groups of five overflow 32 bits. */
    uint8_t back[GDML_CURVE_KEY_BYTES];
    cr_assert_eq(gdml_curve_z85_decode("########################################", back),
                 GDML_ERR_FORMAT);
}

/* ---- allow-lists ---- */

Test(curve, allow_add_lookup_has_name_count)
{
    gdml_curve_allow *a = new_allow();
    gdml_curve_key east = make_key("us-east"), west = make_key("eu-west");
    char name[GDML_NAME_MAX];
    cr_assert_eq(gdml_curve_allow_count(a), 0);
    cr_assert_not(gdml_curve_allow_lookup(a, east.public_key, name));
    cr_assert_not(gdml_curve_allow_has_name(a, "us-east"));
    cr_assert_not(gdml_curve_allow_name_at(a, 0, name));

    allow_ok(a, "us-east", east.public_key);
    allow_ok(a, "eu-west", west.public_key);
    cr_assert_eq(gdml_curve_allow_count(a), 2);
    cr_assert(gdml_curve_allow_lookup(a, east.public_key, name));
    cr_assert_str_eq(name, "us-east");
    cr_assert(gdml_curve_allow_lookup(a, west.public_key, name));
    cr_assert_str_eq(name, "eu-west");
    cr_assert(gdml_curve_allow_has_name(a, "us-east"));
    cr_assert(gdml_curve_allow_has_name(a, "eu-west"));
    cr_assert_not(gdml_curve_allow_has_name(a, "us"));
    cr_assert_not(gdml_curve_allow_has_name(a, "us-east2"));
    cr_assert_not(gdml_curve_allow_has_name(a, ""));

    /* A secret key is not a public key that is allowed. */
    cr_assert_not(gdml_curve_allow_lookup(a, east.secret_key, name));
    gdml_curve_allow_unref(&a);
    cr_assert_null(a);
}

Test(curve, allow_refuses_invalid_names)
{
    gdml_curve_allow *a = new_allow();
    gdml_curve_key k = make_key("x");
    const char *bad[] = {"", "has space", "a/b", "tab\t", "ü"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gdml_errmsg e = {{0}};
        cr_assert_eq(gdml_curve_allow_add(a, bad[i], k.public_key, &e), GDML_ERR_INVALID, "'%s'",
                     bad[i]);
        cr_assert_neq(e.text[0], '\0');
    }
    cr_assert_eq(gdml_curve_allow_count(a), 0);
    gdml_curve_allow_unref(&a);
}

Test(curve, name_at_lists_distinct_names_in_first_added_order)
{
    gdml_curve_allow *a = new_allow();
    gdml_curve_key k[5];
    for (int i = 0; i < 5; i++)
        k[i] = make_key("k");
    allow_ok(a, "zeta", k[0].public_key);
    allow_ok(a, "alpha", k[1].public_key);
    allow_ok(a, "zeta", k[2].public_key); /* a second key for zeta */
    allow_ok(a, "mid", k[3].public_key);
    allow_ok(a, "alpha", k[4].public_key);
    cr_assert_eq(gdml_curve_allow_count(a), 5);
    const char *want[] = {"zeta", "alpha", "mid"};
    char name[GDML_NAME_MAX];
    for (size_t i = 0; i < 3; i++) {
        cr_assert(gdml_curve_allow_name_at(a, i, name), "name %zu", i);
        cr_assert_str_eq(name, want[i]);
    }
    cr_assert_not(gdml_curve_allow_name_at(a, 3, name));
    cr_assert_not(gdml_curve_allow_name_at(a, 100, name));
    gdml_curve_allow_unref(&a);
}

Test(curve, one_key_under_two_names_is_refused)
{
    gdml_curve_allow *a = new_allow();
    gdml_curve_key k = make_key("us-east");
    allow_ok(a, "us-east", k.public_key);
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_curve_allow_add(a, "eu-west", k.public_key, &e), GDML_ERR_EXISTS);
    cr_assert(strstr(e.text, "us-east") && strstr(e.text, "eu-west"), "%s", e.text);
    /* The first name stands; the second was not added. */
    char name[GDML_NAME_MAX];
    cr_assert(gdml_curve_allow_lookup(a, k.public_key, name));
    cr_assert_str_eq(name, "us-east");
    cr_assert_not(gdml_curve_allow_has_name(a, "eu-west"));
    cr_assert_eq(gdml_curve_allow_count(a), 1);
    /* NULL errmsg is accepted. */
    cr_assert_eq(gdml_curve_allow_add(a, "eu-west", k.public_key, NULL), GDML_ERR_EXISTS);
    gdml_curve_allow_unref(&a);
}

Test(curve, same_key_same_name_twice_is_harmless)
{
    gdml_curve_allow *a = new_allow();
    gdml_curve_key k = make_key("us-east");
    allow_ok(a, "us-east", k.public_key);
    allow_ok(a, "us-east", k.public_key);
    allow_ok(a, "us-east", k.public_key);
    cr_assert_eq(gdml_curve_allow_count(a), 1);
    char name[GDML_NAME_MAX];
    cr_assert(gdml_curve_allow_name_at(a, 0, name));
    cr_assert_str_eq(name, "us-east");
    cr_assert_not(gdml_curve_allow_name_at(a, 1, name));
    gdml_curve_allow_unref(&a);
}

Test(curve, a_name_may_have_two_keys)
{
    gdml_curve_allow *a = new_allow();
    gdml_curve_key old_key = make_key("us-east"), new_key = make_key("us-east");
    allow_ok(a, "us-east", old_key.public_key);
    allow_ok(a, "us-east", new_key.public_key);
    cr_assert_eq(gdml_curve_allow_count(a), 2);
    char name[GDML_NAME_MAX];
    cr_assert(gdml_curve_allow_lookup(a, old_key.public_key, name));
    cr_assert_str_eq(name, "us-east");
    memset(name, 0, sizeof name);
    cr_assert(gdml_curve_allow_lookup(a, new_key.public_key, name));
    cr_assert_str_eq(name, "us-east");
    cr_assert(gdml_curve_allow_name_at(a, 0, name));
    cr_assert_not(gdml_curve_allow_name_at(a, 1, name));
    gdml_curve_allow_unref(&a);
}

Test(curve, allow_grows_past_its_first_capacity)
{
    gdml_curve_allow *a = new_allow();
    enum { N = 100 };
    static gdml_curve_key keys[N];
    for (int i = 0; i < N; i++) {
        char n[16];
        snprintf(n, sizeof n, "peer-%03d", i);
        keys[i] = make_key(n);
        allow_ok(a, n, keys[i].public_key);
    }
    cr_assert_eq(gdml_curve_allow_count(a), N);
    for (int i = 0; i < N; i++) {
        char name[GDML_NAME_MAX];
        cr_assert(gdml_curve_allow_lookup(a, keys[i].public_key, name));
        cr_assert_str_eq(name, keys[i].name);
        cr_assert(gdml_curve_allow_name_at(a, (size_t)i, name));
        cr_assert_str_eq(name, keys[i].name);
    }
    gdml_curve_allow_unref(&a);
}

Test(curve, replace_takes_the_fresh_entries_and_leaves_fresh_alone)
{
    gdml_curve_allow *a = new_allow(), *fresh = new_allow();
    gdml_curve_key k1 = make_key("one"), k2 = make_key("two"), k3 = make_key("three");
    allow_ok(a, "one", k1.public_key);
    allow_ok(a, "two", k2.public_key);
    allow_ok(fresh, "two", k2.public_key);
    allow_ok(fresh, "three", k3.public_key);

    cr_assert_eq(gdml_curve_allow_replace(a, fresh), GDML_OK);
    char name[GDML_NAME_MAX];
    cr_assert_eq(gdml_curve_allow_count(a), 2);
    cr_assert_not(gdml_curve_allow_lookup(a, k1.public_key, name));
    cr_assert_not(gdml_curve_allow_has_name(a, "one"));
    cr_assert(gdml_curve_allow_lookup(a, k3.public_key, name));
    cr_assert_str_eq(name, "three");
    cr_assert(gdml_curve_allow_name_at(a, 0, name));
    cr_assert_str_eq(name, "two");
    cr_assert_eq(gdml_curve_allow_count(fresh), 2);

    /* The copy is a, not a view of fresh: changes to either stay apart. */
    gdml_curve_key k4 = make_key("four");
    allow_ok(fresh, "four", k4.public_key);
    cr_assert_not(gdml_curve_allow_lookup(a, k4.public_key, name));
    allow_ok(a, "one", k1.public_key); /* a still grows after a replace */
    cr_assert_eq(gdml_curve_allow_count(a), 3);
    cr_assert_not(gdml_curve_allow_lookup(fresh, k1.public_key, name));
    /* The one-key-one-name rule holds for the copied entries too. */
    cr_assert_eq(gdml_curve_allow_add(a, "other", k3.public_key, NULL), GDML_ERR_EXISTS);

    /* Replacing with an empty list allows nobody. */
    gdml_curve_allow *empty = new_allow();
    cr_assert_eq(gdml_curve_allow_replace(a, empty), GDML_OK);
    cr_assert_eq(gdml_curve_allow_count(a), 0);
    cr_assert_not(gdml_curve_allow_lookup(a, k2.public_key, name));
    allow_ok(a, "two", k2.public_key);
    cr_assert_eq(gdml_curve_allow_count(a), 1);

    gdml_curve_allow_unref(&empty);
    gdml_curve_allow_unref(&fresh);
    gdml_curve_allow_unref(&a);
}

Test(curve, ref_and_unref_share_one_list)
{
    gdml_curve_allow *a = new_allow();
    gdml_curve_allow *b = gdml_curve_allow_ref(a);
    cr_assert_eq(a, b);
    gdml_curve_key k = make_key("w");
    allow_ok(b, "w", k.public_key);
    gdml_curve_allow_unref(&a);
    cr_assert_null(a);
    /* b still holds a reference: the list lives and keeps its entry. */
    char name[GDML_NAME_MAX];
    cr_assert(gdml_curve_allow_lookup(b, k.public_key, name));
    cr_assert_str_eq(name, "w");
    cr_assert_eq(gdml_curve_allow_count(b), 1);
    gdml_curve_allow_unref(&b);
    cr_assert_null(b);
    gdml_curve_allow_unref(&b); /* NULL-safe */
    gdml_curve_allow_unref(NULL);
}

/* Lookups on one thread while another replaces the list (the ZAP thread and
 * a SIGHUP reload): every lookup sees the old list or the new, never a torn one. */
typedef struct race {
    gdml_curve_allow *a;
    gdml_curve_key k1, k2;
    atomic_bool stop;
    atomic_int bad, lookups;
} race;

static void *race_lookups(void *arg)
{
    race *r = arg;
    while (!atomic_load(&r->stop)) {
        char n1[GDML_NAME_MAX], n2[GDML_NAME_MAX];
        bool h1 = gdml_curve_allow_lookup(r->a, r->k1.public_key, n1);
        bool h2 = gdml_curve_allow_lookup(r->a, r->k2.public_key, n2);
        if ((h1 && strcmp(n1, "one") != 0) || (h2 && strcmp(n2, "two") != 0))
            atomic_fetch_add(&r->bad, 1);
        atomic_fetch_add(&r->lookups, 1);
    }
    return NULL;
}

Test(curve, replace_is_safe_beside_lookups)
{
    static race r;
    r.a = new_allow();
    r.k1 = make_key("one");
    r.k2 = make_key("two");
    atomic_init(&r.stop, false);
    atomic_init(&r.bad, 0);
    atomic_init(&r.lookups, 0);
    gdml_curve_allow *l1 = new_allow(), *l2 = new_allow();
    allow_ok(l1, "one", r.k1.public_key);
    allow_ok(l2, "two", r.k2.public_key);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, race_lookups, &r), 0);
    /* Replace until the other thread has looked up often enough, at least 20000 times. */
    int64_t deadline = gdml_now_ms() + 5000;
    for (int i = 0; i < 20000 || (atomic_load(&r.lookups) < 20000 && gdml_now_ms() < deadline); i++)
        cr_assert_eq(gdml_curve_allow_replace(r.a, i % 2 ? l1 : l2), GDML_OK);
    atomic_store(&r.stop, true);
    pthread_join(th, NULL);
    cr_assert_eq(atomic_load(&r.bad), 0);
    cr_assert_geq(atomic_load(&r.lookups), 20000);
    gdml_curve_allow_unref(&l1);
    gdml_curve_allow_unref(&l2);
    gdml_curve_allow_unref(&r.a);
}
