/* payload.c - checked copies of float32 tensors out of messages, and tensor sends. */
#include "payload.h"

#include <math.h>
#include <string.h>

gdml_err gdml_payload_read_f32(const gdml_rx *rx, size_t index, float *dst, size_t n,
                               gdml_errmsg *e)
{
    char who[GDML_PEER_ID_MAX * 4 + 1];
    const char *peer = rx->peer.len ? gdml_peer_str(&rx->peer, who, sizeof who) : rx->header.sender;
    const char *type = gdml_msg_type_name(rx->header.type);
    if (rx->header.encoding != GDML_ENC_DENSE_F32)
        return gdml_errmsg_set(e, GDML_ERR_PROTO, "%s from '%s': encoding %u, expected dense f32",
                               type, peer, (unsigned)rx->header.encoding);
    if (index >= rx->n_payloads)
        return gdml_errmsg_set(e, GDML_ERR_PROTO, "%s from '%s': no payload %zu (it has %zu)", type,
                               peer, index, rx->n_payloads);
    if (rx->payload_size[index] != n * sizeof(float))
        return gdml_errmsg_set(e, GDML_ERR_PROTO,
                               "%s from '%s': payload holds %zu bytes, the model needs %zu", type,
                               peer, rx->payload_size[index], n * sizeof(float));
    memcpy(dst, rx->payload[index], n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return gdml_errmsg_set(e, GDML_ERR_PROTO,
                                   "%s from '%s': value %zu is not a finite number", type, peer, i);
    return GDML_OK;
}

gdml_err gdml_payload_send_f32(gdml_link *l, const gdml_peer *peer, gdml_msg_header *h,
                               gdml_blob *b, int timeout_ms, gdml_errmsg *e)
{
    h->encoding = GDML_ENC_DENSE_F32;
    h->n_payloads = 1;
    h->sizes[0] = gdml_blob_size(b);
    return gdml_link_send(l, peer, h, &b, 1, timeout_ms, e);
}

gdml_err gdml_payload_blob_f32(const float *src, size_t n, gdml_blob **out)
{
    return gdml_blob_copy(src, n * sizeof(float), out);
}
