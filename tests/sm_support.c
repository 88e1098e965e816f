/* sm_support.c - frames in, actions out, for the state machines' table tests. */
#include "sm_support.h"

#include "codec.h"
#include "wan.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

gdml_peer test_route(const char *s)
{
    gdml_peer p;
    memset(&p, 0, sizeof p);
    p.len = strlen(s);
    memcpy(p.id, s, p.len);
    return p;
}

void test_rx_from(test_rx *t, gdml_blob *frame, const char *name, const char *route)
{
    memset(t, 0, sizeof *t);
    size_t len;
    const void *view = gdml_blob_view(frame, &len);
    t->bytes = malloc(len ? len : 1);
    cr_assert_not_null(t->bytes);
    memcpy(t->bytes, view, len);
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_msg_decode(t->bytes, len, &t->rx.header, &t->rx.payload, NULL, &e), GDML_OK,
                 "a test frame does not decode: %s", e.text);
    t->rx.peer = test_route(route);
    snprintf(t->rx.name, sizeof t->rx.name, "%s", name);
    t->rx.authenticated = true;
    t->rx.wire_bytes = gdml_wire_bytes(len, true);
}

void test_rx_fini(test_rx *t)
{
    free(t->bytes);
    memset(t, 0, sizeof *t);
}

gdml_blob *test_control(gdml_msg_type type, const char *name, uint64_t seq, uint64_t version,
                        uint64_t step, uint64_t count)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, type, name);
    h.seq = seq;
    h.version = version;
    h.step = step;
    h.count = count;
    gdml_blob *f = NULL;
    cr_assert_eq(gdml_frame_header_only(&h, &f), GDML_OK);
    return f;
}

gdml_blob **test_tensor_frames(gdml_msg_header *h, const float *x, size_t n, const char *spec,
                               size_t *n_frames)
{
    gdml_codec *c = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_codec_new(spec ? spec : "dense", n, 1, &c, &e), GDML_OK, "%s", e.text);
    size_t k;
    gdml_codec_params p = {.k = n / 10 + 1, .threshold = 0.01};
    cr_assert_eq(gdml_codec_select(c, x, &p, &k), GDML_OK);
    gdml_wan_update u;
    cr_assert_eq(gdml_codec_frames(c, h, x, NULL, true, &u, &e), GDML_OK, "%s", e.text);
    gdml_codec_destroy(&c);
    *n_frames = u.n_frames;
    return u.frames; /* the caller frees them with test_frames_free */
}

void test_frames_free(gdml_blob **frames, size_t n)
{
    for (size_t i = 0; i < n; i++)
        gdml_blob_unref(&frames[i]);
    free(frames);
}

void test_actions_add(test_actions *t, gdml_action *act)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->a = realloc(t->a, t->cap * sizeof *t->a);
        cr_assert_not_null(t->a);
    }
    test_action *ta = &t->a[t->n++];
    memset(ta, 0, sizeof *ta);
    ta->act = *act; /* takes the frame's reference */
    if (act->kind == GDML_ACT_SEND) {
        size_t len;
        const uint8_t *view = gdml_blob_view(act->frame, &len);
        gdml_errmsg e = {{0}};
        cr_assert_eq(gdml_msg_decode(view, len, &ta->h, &ta->payload, NULL, &e), GDML_OK,
                     "a state machine sent a frame that does not decode: %s", e.text);
    }
}

void test_actions_clear(test_actions *t)
{
    for (size_t i = 0; i < t->n; i++)
        gdml_action_release(&t->a[i].act);
    t->n = 0;
}

static bool route_is(const test_action *a, const char *route)
{
    if (!route)
        return true;
    if (!*route)
        return a->act.link == GDML_LINK_UP;
    gdml_peer p = test_route(route);
    return a->act.link == GDML_LINK_DOWN && gdml_peer_eq(&a->act.peer, &p);
}

size_t test_count_sends(const test_actions *t, gdml_msg_type type, const char *route)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++)
        n += t->a[i].act.kind == GDML_ACT_SEND && t->a[i].h.type == type && route_is(&t->a[i], route);
    return n;
}

const test_action *test_find_send(const test_actions *t, gdml_msg_type type, const char *route)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->a[i].act.kind == GDML_ACT_SEND && t->a[i].h.type == type && route_is(&t->a[i], route))
            return &t->a[i];
    return NULL;
}

size_t test_count_kind(const test_actions *t, gdml_action_kind kind)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++)
        n += t->a[i].act.kind == kind;
    return n;
}
