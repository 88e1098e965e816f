/*
 * fuzz_seeds.c - writes the seed corpus of every fuzz target into DIR
 * (meson compile -C build fuzz-seeds writes tests/fuzz/corpus): well-formed
 * frames of every type, codec payloads of every encoder, IDX files, and
 * whole sessions of the two state machines, so that fuzzing starts from
 * input that reaches deep, and mutates it from there.
 */
#include "sm_input.h"

#include "codec.h"
#include "idx.h"
#include "msg.h"
#include "util.h"
#include "wan.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *out_dir;

static void save(const char *target, const char *name, const void *data, size_t len)
{
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/%s", out_dir, target);
    gdml_mkdir_p(dir, NULL);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len) {
        fprintf(stderr, "fuzz-seeds: cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

/* A growing buffer of records (sm_input.h). */
typedef struct rec {
    uint8_t b[1 << 16];
    size_t n;
} rec;

static void add(rec *r, int kind, int name, int route, const void *bytes, size_t len)
{
    r->b[r->n++] = (uint8_t)kind;
    r->b[r->n++] = (uint8_t)(name | route << 3);
    r->b[r->n++] = (uint8_t)len;
    r->b[r->n++] = (uint8_t)(len >> 8);
    if (bytes)
        memcpy(r->b + r->n, bytes, len);
    else
        memset(r->b + r->n, 0, len); /* a tick: only the length counts */
    r->n += len;
}

static void add_frame(rec *r, int kind, int name, int route, gdml_blob *f)
{
    size_t len;
    const void *v = gdml_blob_view(f, &len);
    add(r, kind, name, route, v, len);
}

static gdml_blob *control(gdml_msg_type type, const char *from, uint64_t seq, uint64_t version,
                          uint64_t step, uint64_t count, const char *text)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, type, from);
    h.seq = seq;
    h.version = version;
    h.step = step;
    h.count = count;
    snprintf(h.text, sizeof h.text, "%s", text ? text : "");
    gdml_blob *f = NULL;
    gdml_frame_header_only(&h, &f);
    return f;
}

static gdml_blob *tensor(gdml_msg_type type, const char *from, uint64_t seq, uint64_t version,
                         uint64_t step, uint64_t count, const char *text, size_t n,
                         const char *spec)
{
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = 0.01f * sinf((float)i + (float)seq);
    gdml_codec *c = NULL;
    gdml_codec_new(spec, n, 1, &c, NULL);
    size_t k;
    gdml_codec_params p = {.k = n / 3 + 1, .threshold = 0.01};
    gdml_codec_select(c, x, &p, &k);
    gdml_msg_header h;
    gdml_msg_header_init(&h, type, from);
    h.seq = seq;
    h.version = version;
    h.step = step;
    h.count = count;
    h.lr_steps = 0.5;
    snprintf(h.text, sizeof h.text, "%s", text ? text : "");
    gdml_wan_update u;
    gdml_codec_frames(c, &h, x, NULL, false, &u, NULL);
    gdml_blob *f = gdml_blob_ref(u.frames[0]);
    gdml_wan_update_fini(&u);
    gdml_codec_destroy(&c);
    free(x);
    return f;
}

static void seeds_msg(void)
{
    for (int t = 1; t <= GDML_MSG_TYPE_MAX; t++) {
        char name[32];
        gdml_blob *f = control((gdml_msg_type)t, "a", 7, 3, 2, 100, t == 8 ? "why" : NULL);
        size_t len;
        const void *v = gdml_blob_view(f, &len);
        snprintf(name, sizeof name, "control-%d", t);
        save("msg", name, v, len);
        gdml_blob_unref(&f);
    }
    gdml_blob *f = tensor(GDML_MSG_DELTA, "a", 9, 1, 1, 100, NULL, 15, "dense");
    size_t len;
    const void *v = gdml_blob_view(f, &len);
    save("msg", "delta", v, len);
    gdml_blob_unref(&f);
    /* A held-out score: vrows, vok, vloss, vver. */
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_HEARTBEAT, "a");
    h.seq = 10;
    h.version = 4;
    h.val = (gdml_score){.rows = 512, .correct = 400, .loss = 0.625};
    h.val_version = 3;
    gdml_frame_header_only(&h, &f);
    v = gdml_blob_view(f, &len);
    save("msg", "scored", v, len);
    gdml_blob_unref(&f);
    uint8_t buf[512];
    gdml_msg_encode_v1_refusal("upgrade", buf, sizeof buf, &len);
    save("msg", "v1", buf, len);
}

static void seeds_codec(void)
{
    static const char *const specs[] = {"dense", "f16", "bf16", "int8", "int4", "int2", "sign",
                                        "topk+f32", "randk+int8", "significance+int4", "topk+sign"};
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        size_t n = 300;
        float x[300], ref[300];
        for (size_t i = 0; i < n; i++) {
            x[i] = sinf((float)i);
            ref[i] = 1;
        }
        gdml_codec *c = NULL;
        gdml_codec_new(specs[s], n, 1, &c, NULL);
        uint8_t out[4 + 4096];
        size_t len;
        gdml_codec_params p = {.k = 40, .threshold = 0.5, .ref = ref};
        gdml_codec_encode(c, x, &p, out + 4, sizeof out - 4, &len, NULL);
        out[0] = (uint8_t)(n - 1);
        out[1] = (uint8_t)((n - 1) >> 8);
        out[2] = out[3] = 0;
        char name[64];
        snprintf(name, sizeof name, "%s", specs[s]);
        for (char *q = name; *q; q++)
            if (*q == '+')
                *q = '-';
        save("codec", name, out, len + 4);
        gdml_codec_destroy(&c);
    }
}

static void seeds_idx(void)
{
    uint8_t data[2 * 3 * 3];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 13);
    gdml_idx images = {.ndim = 3, .dims = {2, 3, 3}, .data = data, .size = sizeof data};
    gdml_idx labels = {.ndim = 1, .dims = {2}, .data = data, .size = 2};
    char path[4200];
    const char *names[] = {"images", "images.gz", "labels", "labels.gz"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/idx/%s", out_dir, names[i]);
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/idx", out_dir);
        gdml_mkdir_p(dir, NULL);
        gdml_idx_write(path, i < 2 ? &images : &labels, NULL);
    }
}

static void seeds_coord(void)
{
    rec r = {.n = 0};
    /* names: 0 a, 1 b; routes: 0 ra, 1 rb */
    gdml_blob *f;
    add_frame(&r, 0, 0, 0, f = control(GDML_MSG_HELLO, "a", 100, 0, 0, 1000, NULL));
    gdml_blob_unref(&f);
    add_frame(&r, 0, 1, 1, f = control(GDML_MSG_HELLO, "b", 200, 0, 0, 3000, NULL));
    gdml_blob_unref(&f);
    for (uint64_t v = 0; v < 4; v++) {
        add_frame(&r, 0, 0, 0, f = tensor(GDML_MSG_DELTA, "a", 101 + v, v, v + 1, 1000, NULL, 15, "dense"));
        gdml_blob_unref(&f);
        add_frame(&r, 0, 1, 1, f = tensor(GDML_MSG_DELTA, "b", 201 + v, v, v + 1, 3000, NULL, 15, "dense"));
        gdml_blob_unref(&f);
        add(&r, 1, 0, 0, NULL, 30);
    }
    add_frame(&r, 0, 0, 0, f = control(GDML_MSG_HEARTBEAT, "a", 300, 1, 0, 0, NULL));
    gdml_blob_unref(&f);
    add_frame(&r, 0, 0, 0, f = control(GDML_MSG_LEAVE, "a", 301, 1, 0, 0, "bye"));
    gdml_blob_unref(&f);
    save("coord_sm", "session", r.b, r.n);
}

static void seeds_region(void)
{
    rec r = {.n = 0};
    gdml_blob *f;
    /* names: 2 a.w0, 7 a.w1, 5 coordinator; routes: 2 rw0, 3 rw1, 5 up */
    add_frame(&r, 0, 2, 2, f = control(GDML_MSG_HELLO, "a.w0", 10, 0, 0, 500, NULL));
    gdml_blob_unref(&f);
    add_frame(&r, 0, 7, 3, f = control(GDML_MSG_HELLO, "a.w1", 20, 0, 0, 500, NULL));
    gdml_blob_unref(&f);
    add_frame(&r, 3, 5, 5,
              f = tensor(GDML_MSG_WELCOME, "coordinator", 1000, 0, 0, 1, "softmax 4 3", 15, "dense"));
    gdml_blob_unref(&f);
    for (uint64_t s = 0; s < 4; s++) {
        add_frame(&r, 0, 2, 2, f = tensor(GDML_MSG_PUSH, "a.w0", 11 + s, 0, s, 64, NULL, 15, "dense"));
        gdml_blob_unref(&f);
        add_frame(&r, 0, 7, 3, f = tensor(GDML_MSG_PUSH, "a.w1", 21 + s, 0, s, 64, NULL, 15, "dense"));
        gdml_blob_unref(&f);
        if (s % 2 == 1) {
            add_frame(&r, 3, 5, 5, f = tensor(GDML_MSG_GLOBAL, "coordinator", 1001 + s, s / 2 + 1,
                                              0, 0, NULL, 15, "dense"));
            gdml_blob_unref(&f);
        }
    }
    add_frame(&r, 3, 5, 5, f = control(GDML_MSG_ERROR, "coordinator", 1100, 0, 0, 0, "no"));
    gdml_blob_unref(&f);
    add_frame(&r, 3, 5, 5, f = control(GDML_MSG_STOP, "coordinator", 1101, 0, 0, 0, "done"));
    gdml_blob_unref(&f);
    save("region_sm", "session", r.b, r.n);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_seeds DIR\n");
        return 2;
    }
    out_dir = argv[1];
    seeds_msg();
    seeds_codec();
    seeds_idx();
    seeds_coord();
    seeds_region();
    printf("seed corpus written under %s\n", out_dir);
    return 0;
}
