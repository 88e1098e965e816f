/*
 * test_actions.c - the FIFO of actions between a state machine and its
 * event loop (action.h): order, growth past the first capacity while the
 * queue wraps around, and frame ownership: a SEND holds its own reference,
 * so the caller's unref leaves the frame readable, and releasing the popped
 * action or finishing the queue frees it.
 *
 * Whether a blob is freed is observed as in test_blob.c, through glibc's
 * count of mmap'd bytes: a blob of many megabytes is mmap'd, and its last
 * unref unmaps it at once.
 */
#include "action.h"
#include "msg.h"

#include <criterion/criterion.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BIG (32u << 20)

static size_t mapped_bytes(void)
{
    return mallinfo2().hblkhd;
}

/* False under a sanitizer's allocator, which glibc's counters do not see. */
static bool frees_observable(void)
{
    size_t base = mapped_bytes();
    void *volatile p = malloc(BIG);
    bool seen = p && mapped_bytes() >= base + BIG;
    free(p);
    return seen;
}

static void push_exit(gdml_actions *a, int id)
{
    gdml_action act;
    memset(&act, 0, sizeof act);
    act.kind = GDML_ACT_EXIT;
    act.status = id;
    snprintf(act.text, sizeof act.text, "action %d", id);
    cr_assert_eq(gdml_actions_push(a, &act), GDML_OK);
}

static int pop_id(gdml_actions *a)
{
    gdml_action act;
    cr_assert(gdml_actions_pop(a, &act), "the queue is empty");
    cr_assert_eq(act.kind, GDML_ACT_EXIT);
    char want[32];
    snprintf(want, sizeof want, "action %d", act.status);
    cr_assert_str_eq(act.text, want);
    gdml_action_release(&act);
    return act.status;
}

/* A sealed HEARTBEAT frame with seq. */
static gdml_blob *heartbeat(uint64_t seq)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_HEARTBEAT, "us-east");
    h.seq = seq;
    gdml_blob *f = NULL;
    cr_assert_eq(gdml_frame_header_only(&h, &f), GDML_OK);
    return f;
}

static uint64_t frame_seq(gdml_blob *f)
{
    size_t len;
    const uint8_t *bytes = gdml_blob_view(f, &len);
    gdml_msg_header h;
    const uint8_t *payload;
    gdml_errmsg e;
    cr_assert_eq(gdml_msg_decode(bytes, len, &h, &payload, NULL, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(h.type, GDML_MSG_HEARTBEAT);
    return h.seq;
}

Test(actions, a_zeroed_queue_is_empty)
{
    gdml_actions a;
    memset(&a, 0, sizeof a);
    gdml_action act;
    cr_assert_eq(gdml_actions_count(&a), 0);
    cr_assert_not(gdml_actions_pop(&a, &act));
    gdml_actions_fini(&a);
    gdml_actions_fini(&a);
}

Test(actions, actions_come_out_in_the_order_they_went_in)
{
    gdml_actions a = {0};
    gdml_action act;
    memset(&act, 0, sizeof act);
    act.kind = GDML_ACT_COMMIT;
    cr_assert_eq(gdml_actions_push(&a, &act), GDML_OK);
    act.kind = GDML_ACT_DROP;
    act.link = GDML_LINK_DOWN;
    act.peer.len = 2;
    memcpy(act.peer.id, "p1", 2);
    cr_assert_eq(gdml_actions_push(&a, &act), GDML_OK);
    gdml_peer to = {.len = 2};
    memcpy(to.id, "p2", 2);
    gdml_blob *f = heartbeat(7);
    cr_assert_eq(gdml_actions_send(&a, GDML_LINK_UP, &to, f), GDML_OK);
    cr_assert_eq(gdml_actions_send(&a, GDML_LINK_UP, NULL, f), GDML_OK);
    gdml_blob_unref(&f);
    push_exit(&a, 3);
    cr_assert_eq(gdml_actions_count(&a), 5);

    gdml_action out;
    cr_assert(gdml_actions_pop(&a, &out));
    cr_assert_eq(out.kind, GDML_ACT_COMMIT);
    cr_assert(gdml_actions_pop(&a, &out));
    cr_assert_eq(out.kind, GDML_ACT_DROP);
    cr_assert_eq(out.link, GDML_LINK_DOWN);
    cr_assert(out.peer.len == 2 && memcmp(out.peer.id, "p1", 2) == 0);
    cr_assert(gdml_actions_pop(&a, &out));
    cr_assert_eq(out.kind, GDML_ACT_SEND);
    cr_assert_eq(out.link, GDML_LINK_UP);
    cr_assert(gdml_peer_eq(&out.peer, &to));
    cr_assert_eq(frame_seq(out.frame), 7);
    gdml_action_release(&out);
    cr_assert_null(out.frame);
    cr_assert(gdml_actions_pop(&a, &out));
    cr_assert_eq(out.kind, GDML_ACT_SEND);
    cr_assert_eq(out.peer.len, 0, "no peer: the link's only one");
    cr_assert_eq(frame_seq(out.frame), 7, "the second send's reference outlived the first");
    gdml_action_release(&out);
    cr_assert_eq(pop_id(&a), 3);
    cr_assert_eq(gdml_actions_count(&a), 0);
    cr_assert_not(gdml_actions_pop(&a, &out));
    gdml_action_release(&out); /* safe with no frame */
    gdml_actions_fini(&a);
}

Test(actions, the_queue_grows_past_its_capacity_while_wrapped_around)
{
    gdml_actions a = {0};
    int next_in = 0, next_out = 0;
    /* Wrap the first ring (16) around, then grow it three times. */
    for (int i = 0; i < 10; i++)
        push_exit(&a, next_in++);
    for (int i = 0; i < 7; i++)
        cr_assert_eq(pop_id(&a), next_out++);
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 40; i++)
            push_exit(&a, next_in++);
        for (int i = 0; i < 15; i++)
            cr_assert_eq(pop_id(&a), next_out++);
        cr_assert_eq(gdml_actions_count(&a), (size_t)(next_in - next_out));
    }
    while (next_out < next_in)
        cr_assert_eq(pop_id(&a), next_out++);
    cr_assert_eq(gdml_actions_count(&a), 0);
    gdml_actions_fini(&a);
}

Test(actions, send_takes_its_own_reference)
{
    gdml_actions a = {0};
    gdml_blob *f = heartbeat(42);
    cr_assert_eq(gdml_actions_send(&a, GDML_LINK_DOWN, NULL, f), GDML_OK);
    gdml_blob_unref(&f);
    cr_assert_null(f);
    /* Overwrite what malloc would hand out again, were the frame freed. */
    for (int i = 0; i < 8; i++) {
        gdml_blob *junk = heartbeat(1000 + (uint64_t)i);
        gdml_blob_unref(&junk);
    }
    gdml_action out;
    cr_assert(gdml_actions_pop(&a, &out));
    cr_assert_eq(frame_seq(out.frame), 42, "the caller's unref freed the queued frame");
    gdml_action_release(&out);
    gdml_actions_fini(&a);

    if (!frees_observable())
        cr_skip_test("glibc's malloc counters are not in use");
    size_t base = mapped_bytes();
    gdml_blob *big = NULL;
    cr_assert_eq(gdml_blob_new(BIG, &big), GDML_OK);
    memset(gdml_blob_data(big), 0x5c, BIG);
    cr_assert_eq(gdml_actions_send(&a, GDML_LINK_DOWN, NULL, big), GDML_OK);
    gdml_blob_unref(&big);
    cr_assert_geq(mapped_bytes(), base + BIG, "the caller's unref freed the queued blob");
    cr_assert(gdml_actions_pop(&a, &out));
    const uint8_t *d = gdml_blob_data(out.frame);
    cr_assert(d[0] == 0x5c && d[BIG - 1] == 0x5c);
    cr_assert_geq(mapped_bytes(), base + BIG, "popping freed the blob");
    gdml_action_release(&out);
    cr_assert_lt(mapped_bytes(), base + BIG, "releasing the action did not free the blob");
    gdml_actions_fini(&a);
}

Test(actions, fini_releases_every_queued_frame)
{
    gdml_actions a = {0};
    for (int i = 0; i < 40; i++) { /* past the first capacity */
        gdml_blob *f = heartbeat((uint64_t)i + 1);
        cr_assert_eq(gdml_actions_send(&a, GDML_LINK_UP, NULL, f), GDML_OK);
        gdml_blob_unref(&f);
        push_exit(&a, i);
    }
    cr_assert_eq(gdml_actions_count(&a), 80);
    gdml_actions_fini(&a);
    cr_assert_eq(gdml_actions_count(&a), 0);
    cr_assert_null(a.q);
    /* The queue is usable again. */
    push_exit(&a, 5);
    cr_assert_eq(pop_id(&a), 5);
    gdml_actions_fini(&a);

    if (!frees_observable())
        cr_skip_test("glibc's malloc counters are not in use");
    size_t base = mapped_bytes();
    for (int i = 0; i < 3; i++) {
        gdml_blob *big = NULL;
        cr_assert_eq(gdml_blob_new(BIG, &big), GDML_OK);
        memset(gdml_blob_data(big), i, BIG);
        cr_assert_eq(gdml_actions_send(&a, GDML_LINK_DOWN, NULL, big), GDML_OK);
        gdml_blob_unref(&big);
    }
    cr_assert_geq(mapped_bytes(), base + 3 * (size_t)BIG);
    gdml_actions_fini(&a);
    cr_assert_lt(mapped_bytes(), base + BIG, "fini left queued blobs allocated");
}
