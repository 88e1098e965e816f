/*
 * test_chunk.c - the chunk grid and the receiver's transfer record
 * (chunk.h): chunk counts and lengths at the edges, and gdml_transfer fed
 * whole, out-of-order, duplicate, stale, restarted, inconsistent and
 * overlong transfers. Every chunk header the tests offer is one the encoder
 * accepts, so the record is judged only on what a decoder lets through.
 */
#include "chunk.h"

#include <criterion/criterion.h>
#include <string.h>

#define CHUNK GDML_CHUNK_ELEMS

/* A chunk header: chunk `index` of transfer seq, of a tensor of total
 * elements sent in `chunks` chunks. */
static gdml_msg_header chunk_header(uint64_t seq, uint64_t total, uint64_t index, uint64_t chunks)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_PUSH, "us-east/w0");
    h.seq = seq;
    h.encoding = GDML_ENC_CODEC;
    h.total = total;
    h.offset = index * CHUNK;
    h.chunks = chunks;
    h.plen = 8;
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = 0;
    cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_OK,
                 "test bug: seq %llu chunk %llu of %llu is not a valid header",
                 (unsigned long long)seq, (unsigned long long)index, (unsigned long long)chunks);
    return h;
}

/* Offers a chunk for a tensor of want_total elements. */
static gdml_chunk_verdict offer_to(gdml_transfer *t, uint64_t seq, uint64_t total, uint64_t index,
                                   uint64_t chunks, uint64_t want_total, bool *starts,
                                   gdml_errmsg *e)
{
    gdml_msg_header h = chunk_header(seq, total, index, chunks);
    *starts = !*starts; /* offer must set it either way */
    return gdml_transfer_offer(t, &h, want_total, starts, e);
}

/* Offers a chunk of the tensor the transfer expects. */
static gdml_chunk_verdict offer(gdml_transfer *t, uint64_t seq, uint64_t total, uint64_t index,
                                uint64_t chunks, bool *starts)
{
    return offer_to(t, seq, total, index, chunks, total, starts, NULL);
}

/* Offers a chunk that must be NEW; starts must be as wanted. */
static void expect_new(gdml_transfer *t, uint64_t seq, uint64_t total, uint64_t index,
                       uint64_t chunks, bool want_starts)
{
    bool starts = !want_starts;
    gdml_chunk_verdict v = offer(t, seq, total, index, chunks, &starts);
    cr_assert_eq(v, GDML_CHUNK_NEW, "seq %llu chunk %llu: verdict %d", (unsigned long long)seq,
                 (unsigned long long)index, (int)v);
    cr_assert_eq(starts, want_starts, "seq %llu chunk %llu: starts %d", (unsigned long long)seq,
                 (unsigned long long)index, starts);
}

/* ---- the grid ---- */

Test(chunk, count_at_the_edges)
{
    cr_assert_eq(gdml_chunk_count(0), 0);
    cr_assert_eq(gdml_chunk_count(1), 1);
    cr_assert_eq(gdml_chunk_count(CHUNK - 1), 1);
    cr_assert_eq(gdml_chunk_count(CHUNK), 1);
    cr_assert_eq(gdml_chunk_count(CHUNK + 1), 2);
    cr_assert_eq(gdml_chunk_count(2 * CHUNK), 2);
    cr_assert_eq(gdml_chunk_count(2 * CHUNK + 1), 3);
    cr_assert_eq(gdml_chunk_count(GDML_MSG_MAX_ELEMS), 16384);
    cr_assert_eq(gdml_chunk_count((uint64_t)1 << 40), ((uint64_t)1 << 40) / CHUNK);
}

Test(chunk, len_at_the_edges)
{
    cr_assert_eq(gdml_chunk_len(1, 0), 1);
    cr_assert_eq(gdml_chunk_len(CHUNK - 1, 0), CHUNK - 1);
    cr_assert_eq(gdml_chunk_len(CHUNK, 0), CHUNK);
    cr_assert_eq(gdml_chunk_len(CHUNK + 1, 0), CHUNK);
    cr_assert_eq(gdml_chunk_len(CHUNK + 1, CHUNK), 1);
    cr_assert_eq(gdml_chunk_len(3 * CHUNK, 2 * CHUNK), CHUNK);
    cr_assert_eq(gdml_chunk_len(GDML_MSG_MAX_ELEMS, 0), CHUNK);
    cr_assert_eq(gdml_chunk_len(GDML_MSG_MAX_ELEMS, 16383 * CHUNK), CHUNK - 1);
}

Test(chunk, chunks_of_the_grid_cover_the_tensor_exactly)
{
    const uint64_t totals[] = {
        1, 7, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 3, 64 * CHUNK, GDML_MSG_MAX_ELEMS};
    for (size_t i = 0; i < sizeof totals / sizeof totals[0]; i++) {
        uint64_t n = gdml_chunk_count(totals[i]), sum = 0;
        for (uint64_t c = 0; c < n; c++) {
            uint64_t len = gdml_chunk_len(totals[i], c * CHUNK);
            cr_assert(len >= 1 && len <= CHUNK, "total %llu chunk %llu: %llu elements",
                      (unsigned long long)totals[i], (unsigned long long)c,
                      (unsigned long long)len);
            if (c + 1 < n)
                cr_assert_eq(len, CHUNK, "only the last chunk may be short");
            sum += len;
        }
        cr_assert_eq(sum, totals[i]);
    }
}

/* ---- the transfer record ---- */

Test(chunk, init_sizes_the_record_for_a_max_total)
{
    const struct {
        uint64_t max_total;
        size_t words;
    } cases[] = {{0, 1},           {1, 1},
                 {64 * CHUNK, 1},  {64 * CHUNK + 1, 2},
                 {128 * CHUNK, 2}, {GDML_MSG_MAX_ELEMS, 256}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gdml_transfer t;
        memset(&t, 0x5a, sizeof t);
        cr_assert_eq(gdml_transfer_init(&t, cases[i].max_total), GDML_OK);
        cr_assert_eq(t.words, cases[i].words, "max_total %llu",
                     (unsigned long long)cases[i].max_total);
        cr_assert_not_null(t.seen);
        for (size_t k = 0; k < t.words; k++)
            cr_assert_eq(t.seen[k], 0);
        cr_assert_eq(t.seq, 0);
        cr_assert_eq(t.received, 0);
        cr_assert_eq(t.abandoned, 0);
        cr_assert_not(gdml_transfer_complete(&t), "a fresh record is complete");
        gdml_transfer_fini(&t);
        cr_assert_null(t.seen);
        cr_assert_eq(t.words, 0);
        gdml_transfer_fini(&t); /* twice, and on a zeroed record */
    }
}

Test(chunk, largest_tensor_fits_a_record_sized_for_it)
{
    gdml_transfer t;
    cr_assert_eq(gdml_transfer_init(&t, GDML_MSG_MAX_ELEMS), GDML_OK);
    uint64_t n = gdml_chunk_count(GDML_MSG_MAX_ELEMS);
    expect_new(&t, 1, GDML_MSG_MAX_ELEMS, n - 1, 2, true);
    expect_new(&t, 1, GDML_MSG_MAX_ELEMS, 0, 2, false);
    cr_assert(gdml_transfer_complete(&t));
    gdml_transfer_fini(&t);
}

Test(chunk, single_chunk_transfer_completes)
{
    gdml_transfer t;
    cr_assert_eq(gdml_transfer_init(&t, 100), GDML_OK);
    expect_new(&t, 1, 100, 0, 1, true);
    cr_assert(gdml_transfer_complete(&t));
    cr_assert_eq(t.seq, 1);
    cr_assert_eq(t.total, 100);
    cr_assert_eq(t.expected, 1);
    cr_assert_eq(t.received, 1);
    bool starts = true;
    cr_assert_eq(offer(&t, 1, 100, 0, 1, &starts), GDML_CHUNK_DUPLICATE);
    cr_assert_not(starts);
    cr_assert(gdml_transfer_complete(&t), "a duplicate undid completion");
    cr_assert_eq(t.abandoned, 0);
    gdml_transfer_fini(&t);
}

Test(chunk, multi_chunk_transfer_completes_out_of_order)
{
    const uint64_t total = 5 * CHUNK + 3; /* 6 chunks, the last of 3 elements */
    const uint64_t order[] = {3, 0, 5, 1, 4, 2};
    gdml_transfer t;
    cr_assert_eq(gdml_transfer_init(&t, total), GDML_OK);
    for (size_t i = 0; i < 6; i++) {
        cr_assert_not(gdml_transfer_complete(&t), "complete after %zu of 6", i);
        expect_new(&t, 9, total, order[i], 6, i == 0);
        cr_assert_eq(t.received, i + 1);
    }
    cr_assert(gdml_transfer_complete(&t));
    gdml_transfer_fini(&t);
}

/* Calls f on every permutation of a[k..n). */
static void permute(uint64_t *a, size_t k, size_t n, void (*f)(const uint64_t *, size_t))
{
    if (k == n) {
        f(a, n);
        return;
    }
    for (size_t i = k; i < n; i++) {
        uint64_t x = a[k];
        a[k] = a[i];
        a[i] = x;
        permute(a, k + 1, n, f);
        a[i] = a[k];
        a[k] = x;
    }
}

static void offer_in_order(const uint64_t *order, size_t n)
{
    gdml_transfer t;
    cr_assert_eq(gdml_transfer_init(&t, n * CHUNK), GDML_OK);
    for (size_t i = 0; i < n; i++) {
        cr_assert_not(gdml_transfer_complete(&t));
        expect_new(&t, 4, n * CHUNK, order[i], n, i == 0);
    }
    cr_assert(gdml_transfer_complete(&t));
    gdml_transfer_fini(&t);
}

Test(chunk, every_arrival_order_completes)
{
    uint64_t a[5] = {0, 1, 2, 3, 4};
    permute(a, 0, 5, offer_in_order);
}

Test(chunk, chunks_beyond_the_first_word_of_the_bitmap)
{
    const uint64_t n = 130; /* three words */
    gdml_transfer t;
    cr_assert_eq(gdml_transfer_init(&t, n * CHUNK), GDML_OK);
    cr_assert_eq(t.words, 3);
    for (uint64_t i = n; i-- > 0;)
        expect_new(&t, 2, n * CHUNK, i, n, i == n - 1);
    cr_assert(gdml_transfer_complete(&t));
    const uint64_t again[] = {0, 63, 64, 127, 128, 129};
    for (size_t i = 0; i < sizeof again / sizeof again[0]; i++) {
        bool starts = false;
        cr_assert_eq(offer(&t, 2, n * CHUNK, again[i], n, &starts), GDML_CHUNK_DUPLICATE,
                     "chunk %llu", (unsigned long long)again[i]);
    }
    gdml_transfer_fini(&t);
}

Test(chunk, duplicate_chunk_is_reported_and_not_counted)
{
    gdml_transfer t;
    cr_assert_eq(gdml_transfer_init(&t, 3 * CHUNK), GDML_OK);
    expect_new(&t, 5, 3 * CHUNK, 1, 3, true);
    bool starts = true;
    cr_assert_eq(offer(&t, 5, 3 * CHUNK, 1, 3, &starts), GDML_CHUNK_DUPLICATE);
    cr_assert_not(starts);
    cr_assert_eq(t.received, 1);
    cr_assert_not(gdml_transfer_complete(&t));
    /* A duplicate of another index is still new. */
    expect_new(&t, 5, 3 * CHUNK, 0, 3, false);
    cr_assert_eq(t.received, 2);
    gdml_transfer_fini(&t);
}

Test(chunk, chunk_of_an_older_seq_is_stale)
{
    gdml_transfer t;
    cr_assert_eq(gdml_transfer_init(&t, 3 * CHUNK), GDML_OK);
    expect_new(&t, 10, 3 * CHUNK, 0, 3, true);
    bool starts = true;
    cr_assert_eq(offer(&t, 9, 3 * CHUNK, 1, 3, &starts), GDML_CHUNK_STALE);
    cr_assert_not(starts);
    cr_assert_eq(offer(&t, 1, 3 * CHUNK, 0, 3, &starts), GDML_CHUNK_STALE);
    cr_assert_eq(t.seq, 10, "a stale chunk changed the transfer");
    cr_assert_eq(t.received, 1);
    cr_assert_eq(t.abandoned, 0);
    /* The current transfer goes on. */
    expect_new(&t, 10, 3 * CHUNK, 1, 3, false);
    expect_new(&t, 10, 3 * CHUNK, 2, 3, false);
    cr_assert(gdml_transfer_complete(&t));
    gdml_transfer_fini(&t);
}

Test(chunk, chunk_of_a_newer_seq_restarts_and_counts_the_abandoned)
{
    gdml_transfer t;
    cr_assert_eq(gdml_transfer_init(&t, 3 * CHUNK), GDML_OK);
    expect_new(&t, 5, 3 * CHUNK, 0, 3, true);
    expect_new(&t, 5, 3 * CHUNK, 2, 3, false);
    /* seq 6 replaces seq 5, which lacked chunk 1. */
    expect_new(&t, 6, 3 * CHUNK, 1, 2, true);
    cr_assert_eq(t.abandoned, 1);
    cr_assert_eq(t.seq, 6);
    cr_assert_eq(t.expected, 2);
    cr_assert_eq(t.received, 1);
    /* What seq 5 sent is forgotten: its chunk 0 is new for seq 6. */
    expect_new(&t, 6, 3 * CHUNK, 0, 2, false);
    cr_assert(gdml_transfer_complete(&t));
    bool starts = true;
    cr_assert_eq(offer(&t, 5, 3 * CHUNK, 1, 3, &starts), GDML_CHUNK_STALE);
    /* Replacing a whole transfer abandons nothing. */
    expect_new(&t, 7, 3 * CHUNK, 2, 1, true);
    cr_assert_eq(t.abandoned, 1);
    cr_assert(gdml_transfer_complete(&t));
    /* Two more left unfinished: each counts once. */
    expect_new(&t, 8, 3 * CHUNK, 0, 3, true);
    expect_new(&t, 20, 3 * CHUNK, 0, 3, true);
    expect_new(&t, 21, 3 * CHUNK, 0, 3, true);
    cr_assert_eq(t.abandoned, 3);
    gdml_transfer_fini(&t);
}

Test(chunk, total_mismatch_is_bad)
{
    gdml_transfer t;
    cr_assert_eq(gdml_transfer_init(&t, 3 * CHUNK), GDML_OK);
    bool starts = true;
    gdml_errmsg e = {{0}};
    cr_assert_eq(offer_to(&t, 1, 2 * CHUNK, 0, 2, 3 * CHUNK, &starts, &e), GDML_CHUNK_BAD);
    cr_assert_not(starts);
    cr_assert(strstr(e.text, "PUSH chunk of a 524288-element tensor; expected 786432"), "%s",
              e.text);
    cr_assert_eq(t.seq, 0, "a bad chunk started a transfer");
    /* Mid-transfer: refused, and the transfer is left as it was. */
    expect_new(&t, 2, 3 * CHUNK, 0, 3, true);
    cr_assert_eq(offer_to(&t, 2, 3 * CHUNK + 1, 1, 3, 3 * CHUNK, &starts, NULL), GDML_CHUNK_BAD);
    cr_assert_eq(offer_to(&t, 3, 3 * CHUNK - 1, 1, 3, 3 * CHUNK, &starts, NULL), GDML_CHUNK_BAD);
    cr_assert_eq(t.seq, 2);
    cr_assert_eq(t.received, 1);
    cr_assert_eq(t.abandoned, 0);
    gdml_transfer_fini(&t);
}

Test(chunk, tensor_larger_than_the_record_is_bad)
{
    gdml_transfer t;
    cr_assert_eq(gdml_transfer_init(&t, CHUNK), GDML_OK); /* room for 64 chunks */
    bool starts = true;
    gdml_errmsg e = {{0}};
    cr_assert_eq(offer_to(&t, 1, 65 * CHUNK, 0, 1, 65 * CHUNK, &starts, &e), GDML_CHUNK_BAD);
    cr_assert_not(starts);
    cr_assert(strstr(e.text, "larger than this link carries"), "%s", e.text);
    cr_assert_eq(t.seq, 0);
    gdml_transfer_fini(&t);
}

Test(chunk, changing_the_chunk_count_mid_transfer_is_bad)
{
    gdml_transfer t;
    cr_assert_eq(gdml_transfer_init(&t, 4 * CHUNK), GDML_OK);
    expect_new(&t, 3, 4 * CHUNK, 0, 3, true);
    bool starts = true;
    gdml_errmsg e = {{0}};
    cr_assert_eq(offer_to(&t, 3, 4 * CHUNK, 1, 4, 4 * CHUNK, &starts, &e), GDML_CHUNK_BAD);
    cr_assert_not(starts);
    cr_assert(
        strstr(e.text, "PUSH seq 3: a chunk says the transfer has 4 chunks, an earlier one 3"),
        "%s", e.text);
    cr_assert_eq(offer(&t, 3, 4 * CHUNK, 1, 2, &starts), GDML_CHUNK_BAD);
    cr_assert_eq(t.expected, 3);
    cr_assert_eq(t.received, 1);
    /* The chunk refused was not marked: with the right count it is new. */
    expect_new(&t, 3, 4 * CHUNK, 1, 3, false);
    gdml_transfer_fini(&t);
}

Test(chunk, more_chunks_than_announced_is_bad)
{
    /* A sparse transfer: 2 of a grid of 4 chunks. */
    gdml_transfer t;
    cr_assert_eq(gdml_transfer_init(&t, 4 * CHUNK), GDML_OK);
    expect_new(&t, 8, 4 * CHUNK, 3, 2, true);
    cr_assert_not(gdml_transfer_complete(&t));
    expect_new(&t, 8, 4 * CHUNK, 1, 2, false);
    cr_assert(gdml_transfer_complete(&t));
    bool starts = true;
    gdml_errmsg e = {{0}};
    cr_assert_eq(offer_to(&t, 8, 4 * CHUNK, 0, 2, 4 * CHUNK, &starts, &e), GDML_CHUNK_BAD);
    cr_assert_not(starts);
    cr_assert(strstr(e.text, "PUSH seq 8: more chunks than the 2 announced"), "%s", e.text);
    cr_assert_eq(t.received, 2);
    cr_assert(gdml_transfer_complete(&t));
    /* A repeat of one that came is a duplicate, not bad. */
    cr_assert_eq(offer(&t, 8, 4 * CHUNK, 3, 2, &starts), GDML_CHUNK_DUPLICATE);
    gdml_transfer_fini(&t);
}

Test(chunk, missing_chunk_leaves_the_transfer_incomplete)
{
    gdml_transfer t;
    cr_assert_eq(gdml_transfer_init(&t, 3 * CHUNK), GDML_OK);
    expect_new(&t, 1, 3 * CHUNK, 0, 3, true);
    expect_new(&t, 1, 3 * CHUNK, 2, 3, false);
    bool starts = false;
    cr_assert_eq(offer(&t, 1, 3 * CHUNK, 2, 3, &starts), GDML_CHUNK_DUPLICATE);
    cr_assert_not(gdml_transfer_complete(&t));
    cr_assert_eq(t.received, 2);
    cr_assert_eq(t.expected, 3);
    gdml_transfer_fini(&t);
}

Test(chunk, reset_forgets_the_transfer)
{
    gdml_transfer t;
    cr_assert_eq(gdml_transfer_init(&t, 3 * CHUNK), GDML_OK);
    gdml_transfer_reset(&t); /* nothing to abandon yet */
    cr_assert_eq(t.abandoned, 0);
    expect_new(&t, 4, 3 * CHUNK, 0, 3, true);
    gdml_transfer_reset(&t);
    cr_assert_eq(t.abandoned, 1, "an unfinished transfer reset is not counted");
    cr_assert_eq(t.seq, 0);
    cr_assert_eq(t.received, 0);
    cr_assert_not(gdml_transfer_complete(&t));
    /* The same seq starts afresh: its chunk 0 is new again. */
    expect_new(&t, 4, 3 * CHUNK, 0, 1, true);
    cr_assert(gdml_transfer_complete(&t));
    gdml_transfer_reset(&t);
    cr_assert_eq(t.abandoned, 1, "a whole transfer reset counts as abandoned");
    /* After a reset an older seq is no longer stale: nothing is current. */
    expect_new(&t, 2, 3 * CHUNK, 1, 1, true);
    gdml_transfer_fini(&t);
}

/*
 * Sequence numbers start at 1 (msg.h) and t->seq == 0 means "no transfer",
 * but the decoder accepts seq 0. A chunk of seq 0 then opens a new transfer
 * every time it arrives: the same chunk is NEW again (starts set, the
 * receiver clears and re-applies), and a transfer of seq 0 never completes.
 * Either verdict other than NEW for the repeat is acceptable.
 */
Test(chunk, seq_zero_chunk_is_not_new_twice)
{
    gdml_transfer t;
    cr_assert_eq(gdml_transfer_init(&t, 2 * CHUNK), GDML_OK);
    bool starts = false;
    gdml_chunk_verdict first = offer(&t, 0, 2 * CHUNK, 0, 2, &starts);
    gdml_chunk_verdict again = offer(&t, 0, 2 * CHUNK, 0, 2, &starts);
    cr_assert(!(first == GDML_CHUNK_NEW && again == GDML_CHUNK_NEW),
              "the same seq-0 chunk was accepted as new twice (starts %d)", starts);
    gdml_transfer_fini(&t);
}
