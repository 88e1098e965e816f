/* inbox.c - receive one message; log and drop what the transport rejects. */
#include "inbox.h"

#include "log.h"

gdml_err gdml_inbox_recv(gdml_link *l, gdml_rx *rx, int timeout_ms, const char *from,
                         gdml_errmsg *e)
{
    gdml_errmsg why;
    gdml_err err = gdml_link_recv(l, rx, timeout_ms, &why);
    switch (err) {
    case GDML_OK:
        return GDML_OK;
    case GDML_ERR_AGAIN:
    case GDML_ERR_INTERRUPTED:
        return GDML_ERR_AGAIN;
    case GDML_ERR_PROTO:
    case GDML_ERR_VERSION:
        gdml_warn("rejected a message from %s: %s", from, why.text);
        return GDML_ERR_AGAIN;
    default:
        return gdml_errmsg_set(e, err, "receive from %s failed: %s", from, why.text);
    }
}
