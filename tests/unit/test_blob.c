/*
 * test_blob.c - reference-counted buffers: sizes, alignment, copies, and
 * that the last reference (and only the last) frees the memory, also when
 * references come and go on several threads.
 *
 * Whether a blob is freed is observed through glibc's count of mmap'd bytes
 * (mallinfo2().hblkhd): a blob of many megabytes is always mmap'd by glibc,
 * and freeing it unmaps it at once.
 */
#include "blob.h"

#include <criterion/criterion.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#define BIG (64u << 20)

static size_t mapped_bytes(void)
{
    return mallinfo2().hblkhd;
}

/* False under a sanitizer's allocator, which glibc's counters do not see;
 * the leak checker then catches what these tests would. */
static bool frees_observable(void)
{
    size_t base = mapped_bytes();
    void *volatile p = malloc(BIG);
    bool seen = p && mapped_bytes() >= base + BIG;
    free(p);
    return seen;
}

Test(blob, new_has_size_and_64_byte_alignment)
{
    const size_t sizes[] = {0, 1, 3, 63, 64, 65, 1000, 4096, 1u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        gdml_blob *b = NULL;
        cr_assert_eq(gdml_blob_new(sizes[i], &b), GDML_OK);
        cr_assert_not_null(b);
        cr_assert_eq(gdml_blob_size(b), sizes[i]);
        cr_assert_eq((uintptr_t)gdml_blob_data(b) % 64, 0, "size %zu", sizes[i]);
        memset(gdml_blob_data(b), 0xab, sizes[i]); /* the whole size is writable */
        gdml_blob_unref(&b);
        cr_assert_null(b);
    }
}

Test(blob, new_of_impossible_size_fails)
{
    gdml_blob *b = (gdml_blob *)0x1;
    cr_assert_eq(gdml_blob_new(SIZE_MAX, &b), GDML_ERR_NOMEM);
    cr_assert_eq(b, (gdml_blob *)0x1, "out-param written on failure");
    cr_assert_eq(gdml_blob_new(SIZE_MAX - 10, &b), GDML_ERR_NOMEM);
}

Test(blob, copy_holds_the_bytes)
{
    uint8_t src[1000];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (uint8_t)(i * 7);
    gdml_blob *b = NULL;
    cr_assert_eq(gdml_blob_copy(src, sizeof src, &b), GDML_OK);
    cr_assert_eq(gdml_blob_size(b), sizeof src);
    cr_assert_eq(memcmp(gdml_blob_data(b), src, sizeof src), 0);
    cr_assert_eq((uintptr_t)gdml_blob_data(b) % 64, 0);
    gdml_blob_unref(&b);

    cr_assert_eq(gdml_blob_copy(NULL, 0, &b), GDML_OK);
    cr_assert_eq(gdml_blob_size(b), 0);
    gdml_blob_unref(&b);
}

Test(blob, unref_is_null_safe)
{
    gdml_blob *b = NULL;
    gdml_blob_unref(&b);
    gdml_blob_unref(NULL);
}

Test(blob, last_reference_frees)
{
    if (!frees_observable())
        cr_skip_test("glibc's malloc counters are not in use");
    size_t base = mapped_bytes();
    gdml_blob *a = NULL;
    cr_assert_eq(gdml_blob_new(BIG, &a), GDML_OK);
    memset(gdml_blob_data(a), 0x5c, BIG);
    cr_assert_geq(mapped_bytes(), base + BIG);

    gdml_blob *b = gdml_blob_ref(a);
    cr_assert_eq(b, a);
    gdml_blob_unref(&a);
    cr_assert_null(a);
    /* b keeps it alive and readable. */
    cr_assert_geq(mapped_bytes(), base + BIG);
    const uint8_t *d = gdml_blob_data(b);
    cr_assert_eq(d[0], 0x5c);
    cr_assert_eq(d[BIG - 1], 0x5c);

    gdml_blob_unref(&b);
    cr_assert_null(b);
    cr_assert_lt(mapped_bytes(), base + BIG, "blob not freed by its last unref");
}

struct churn {
    gdml_blob *b;
    int rounds;
};

static void *churn_refs(void *arg)
{
    struct churn *c = arg;
    for (int i = 0; i < c->rounds; i++) {
        gdml_blob *mine = gdml_blob_ref(c->b);
        gdml_blob_unref(&mine);
    }
    return NULL;
}

Test(blob, references_from_many_threads)
{
    bool observable = frees_observable();
    size_t base = mapped_bytes();
    struct churn c = {.rounds = 200000};
    cr_assert_eq(gdml_blob_new(BIG, &c.b), GDML_OK);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, churn_refs, &c), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    /* Every thread balanced its references: ours is the only one left. */
    cr_assert(!observable || mapped_bytes() >= base + BIG, "freed too early");
    gdml_blob_unref(&c.b);
    cr_assert_lt(mapped_bytes(), base + BIG);
}

static void *drop_on_thread(void *arg)
{
    gdml_blob *b = arg;
    gdml_blob_unref(&b);
    return NULL;
}

Test(blob, last_reference_may_drop_on_another_thread)
{
    size_t base = mapped_bytes();
    gdml_blob *b = NULL;
    cr_assert_eq(gdml_blob_new(BIG, &b), GDML_OK);
    gdml_blob *theirs = gdml_blob_ref(b);
    gdml_blob_unref(&b);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, drop_on_thread, theirs), 0);
    pthread_join(th, NULL);
    cr_assert_lt(mapped_bytes(), base + BIG);
}
