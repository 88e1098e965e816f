/* err.c - error descriptions and the gdml_errmsg helpers. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *gdml_strerror(gdml_err err)
{
    switch (err) {
    case GDML_OK:
        return "success";
    case GDML_ERR_NOMEM:
        return "out of memory";
    case GDML_ERR_IO:
        return "input/output error";
    case GDML_ERR_INVALID:
        return "invalid argument";
    case GDML_ERR_CONFIG:
        return "bad configuration";
    case GDML_ERR_FORMAT:
        return "malformed data";
    case GDML_ERR_PROTO:
        return "malformed or unexpected message";
    case GDML_ERR_VERSION:
        return "protocol version mismatch";
    case GDML_ERR_NOTFOUND:
        return "not found";
    case GDML_ERR_TIMEOUT:
        return "timed out";
    case GDML_ERR_AGAIN:
        return "not ready";
    case GDML_ERR_STORE:
        return "model store failure";
    case GDML_ERR_TRANSPORT:
        return "transport failure";
    case GDML_ERR_INTERRUPTED:
        return "interrupted";
    case GDML_ERR_EXISTS:
        return "already exists";
    case GDML_ERR_NOSPACE:
        return "no space left on the disk";
    }
    return "unknown error";
}

gdml_err gdml_errmsg_set(gdml_errmsg *e, gdml_err code, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->text, sizeof e->text, fmt, ap);
        va_end(ap);
    }
    return code;
}

void gdml_errmsg_prefix(gdml_errmsg *e, const char *fmt, ...)
{
    if (!e)
        return;
    char prefix[GDML_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t plen = (size_t)n < sizeof prefix ? (size_t)n : sizeof prefix - 1;
    size_t olen = strnlen(e->text, sizeof e->text - 1);
    if (plen + olen > sizeof e->text - 1)
        olen = sizeof e->text - 1 - plen;
    memmove(e->text + plen, e->text, olen);
    memcpy(e->text, prefix, plen);
    e->text[plen + olen] = '\0';
}
