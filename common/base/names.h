/*
 * names.h - the sizes every layer agrees on for names, paths and endpoints,
 * and the one rule for what a region or worker name may be.
 */
#ifndef GDML_NAMES_H
#define GDML_NAMES_H

#include <stdbool.h>

#define GDML_PATH_MAX 1024
#define GDML_NAME_MAX 64 /* a region or worker name and its NUL */
#define GDML_ENDPOINT_MAX 256

/* True if s is a valid region or worker name: [A-Za-z0-9._-], 1..63 chars. */
bool gdml_name_ok(const char *s);

#endif
