/* names.c - the rule for region and worker names (names.h). */
#include "names.h"

#include <ctype.h>
#include <string.h>

bool gdml_name_ok(const char *s)
{
    size_t len = strnlen(s, GDML_NAME_MAX);
    if (len < 1 || len >= GDML_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
            return false;
    return true;
}
