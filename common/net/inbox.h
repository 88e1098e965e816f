/*
 * inbox.h - receiving the next message the way every gdml program does:
 * a malformed message is logged with its peer and dropped, never fatal, and
 * the caller sees only good messages, "nothing yet", or a real failure.
 */
#ifndef GDML_INBOX_H
#define GDML_INBOX_H

#include "err.h"
#include "transport.h"

/*
 * Receives one message from l, waiting at most timeout_ms. Returns GDML_OK
 * with *rx to release; GDML_ERR_AGAIN if nothing came, a signal interrupted
 * the wait, or what came was rejected (logged as a warning naming `from` and
 * the peer); any other error with e saying "receive from <from> failed".
 */
gdml_err gdml_inbox_recv(gdml_link *l, gdml_rx *rx, int timeout_ms, const char *from,
                         gdml_errmsg *e);

#endif
