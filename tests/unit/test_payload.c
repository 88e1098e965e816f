/*
 * test_payload.c - float tensors in and out of messages, over a real
 * ROUTER/DEALER pair: a good tensor arrives intact; a wrong encoding, a wrong
 * size, a missing payload and a non-finite value are each refused with the
 * peer's name.
 */
#include "../support.h"

#include "payload.h"
#include "transport.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

static gdml_transport *t;
static gdml_link *server, *client;

static void setup(void)
{
    char endpoint[GDML_ENDPOINT_MAX];
    cr_assert_eq(gdml_transport_new(&t, NULL), GDML_OK);
    cr_assert_eq(gdml_link_bind(t, "tcp://127.0.0.1:*", &server, NULL), GDML_OK);
    cr_assert_eq(gdml_link_endpoint(server, endpoint, sizeof endpoint), GDML_OK);
    cr_assert_eq(gdml_link_connect(t, endpoint, "region-x", &client, NULL), GDML_OK);
}

static void teardown(void)
{
    gdml_link_close(&client);
    gdml_link_close(&server);
    gdml_transport_destroy(&t);
}

/* Sends values[0..n) with the given encoding and receives it on the server. */
static void round_trip(const float *values, size_t n, gdml_encoding enc, gdml_rx *rx)
{
    gdml_blob *b;
    cr_assert_eq(gdml_payload_blob_f32(values, n, &b), GDML_OK);
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_DELTA, "region-x");
    h.seq = 1;
    gdml_errmsg e;
    cr_assert_eq(gdml_payload_send_f32(client, NULL, &h, b, 1000, &e), GDML_OK, "%s", e.text);
    gdml_blob_unref(&b);
    (void)enc;
    cr_assert_eq(gdml_link_recv(server, rx, 5000, &e), GDML_OK, "%s", e.text);
    rx->header.encoding = enc; /* what the reader sees; the wire always says dense f32 */
}

TestSuite(payload, .init = setup, .fini = teardown);

Test(payload, a_tensor_arrives_intact)
{
    float values[1000], out[1000];
    for (int i = 0; i < 1000; i++)
        values[i] = (float)i * 0.5f - 100.0f;
    gdml_rx rx;
    round_trip(values, 1000, GDML_ENC_DENSE_F32, &rx);
    cr_assert_eq(rx.header.sizes[0], sizeof values);
    gdml_errmsg e;
    cr_assert_eq(gdml_payload_read_f32(&rx, 0, out, 1000, &e), GDML_OK, "%s", e.text);
    cr_assert_arr_eq(out, values, sizeof values);
    gdml_rx_release(&rx);
}

Test(payload, wrong_size_is_refused_with_the_peer)
{
    float values[10] = {0}, out[11];
    gdml_rx rx;
    round_trip(values, 10, GDML_ENC_DENSE_F32, &rx);
    gdml_errmsg e;
    cr_assert_eq(gdml_payload_read_f32(&rx, 0, out, 11, &e), GDML_ERR_PROTO);
    cr_assert(strstr(e.text, "region-x") && strstr(e.text, "40 bytes") && strstr(e.text, "44"),
              "%s", e.text);
    cr_assert_eq(gdml_payload_read_f32(&rx, 1, out, 10, &e), GDML_ERR_PROTO);
    cr_assert(strstr(e.text, "no payload 1"), "%s", e.text);
    gdml_rx_release(&rx);
}

Test(payload, wrong_encoding_is_refused)
{
    float values[4] = {1, 2, 3, 4}, out[4];
    gdml_rx rx;
    round_trip(values, 4, GDML_ENC_NONE, &rx);
    gdml_errmsg e;
    cr_assert_eq(gdml_payload_read_f32(&rx, 0, out, 4, &e), GDML_ERR_PROTO);
    cr_assert(strstr(e.text, "encoding"), "%s", e.text);
    gdml_rx_release(&rx);
}

Test(payload, non_finite_values_are_refused)
{
    float bad[3][3] = {{1, NAN, 2}, {INFINITY, 0, 0}, {0, 0, -INFINITY}};
    for (int i = 0; i < 3; i++) {
        float out[3];
        gdml_rx rx;
        round_trip(bad[i], 3, GDML_ENC_DENSE_F32, &rx);
        gdml_errmsg e;
        cr_assert_eq(gdml_payload_read_f32(&rx, 0, out, 3, &e), GDML_ERR_PROTO, "case %d", i);
        cr_assert(strstr(e.text, "not a finite number"), "%s", e.text);
        gdml_rx_release(&rx);
    }
}
