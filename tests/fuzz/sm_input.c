/* sm_input.c - records of state-machine events from fuzz input (sm_input.h). */
#include "sm_input.h"

#include <stdio.h>
#include <string.h>

static const char *const names[] = {"a", "b", "a.w0", "b.w0", "c", "coordinator", "", "a.w1"};
static const char *const routes[] = {"ra", "rb", "rw0", "rw1", "rc", "up", "rx", "rw2"};

bool sm_next(const uint8_t **data, size_t *size, sm_record *r)
{
    if (*size < 4)
        return false;
    const uint8_t *d = *data;
    size_t len = (size_t)d[2] | (size_t)d[3] << 8;
    if (len > *size - 4)
        len = *size - 4;
    r->kind = d[0] % 4;
    r->name = names[d[1] % 8];
    r->route = routes[(d[1] >> 3) % 8];
    r->bytes = d + 4;
    r->len = len;
    *data += 4 + len;
    *size -= 4 + len;
    return true;
}

bool sm_rx(const sm_record *r, gdml_rx *rx)
{
    memset(rx, 0, sizeof *rx);
    rx->peer.len = strlen(r->route);
    memcpy(rx->peer.id, r->route, rx->peer.len);
    snprintf(rx->name, sizeof rx->name, "%s", r->name);
    rx->authenticated = true;
    rx->wire_bytes = r->len + 40;
    gdml_errmsg e;
    if (gdml_msg_decode(r->bytes, r->len, &rx->header, &rx->payload, NULL, &e) != GDML_OK) {
        rx->reason = GDML_REASON_MALFORMED;
        return false;
    }
    return true;
}
