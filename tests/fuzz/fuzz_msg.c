/* fuzz_msg.c - the wire header decoder: any bytes as one received frame. */
#include "fuzz.h"

#include "msg.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gdml_msg_header h;
    const uint8_t *payload = NULL;
    uint32_t other = 0;
    gdml_errmsg e;
    if (gdml_msg_decode(data, size, &h, &payload, &other, &e) == GDML_OK) {
        /* What decodes must encode back, and to a frame that decodes the same. */
        uint8_t buf[GDML_MSG_HEADER_MAX];
        size_t len;
        if (gdml_msg_encode(&h, buf, sizeof buf, &len) != GDML_OK)
            abort();
        gdml_msg_header again;
        if (h.plen == 0 && gdml_msg_decode(buf, len, &again, NULL, NULL, &e) != GDML_OK)
            abort();
        if (payload < data || payload + h.plen != data + size)
            abort();
    }
    return 0;
}
