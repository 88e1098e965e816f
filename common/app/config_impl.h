/*
 * config_impl.h - private to the configuration module: the row type of the
 * key table (config_keys.c) that loading, checking, --help and the docs
 * (config.c) are built from.
 */
#ifndef GDML_CONFIG_IMPL_H
#define GDML_CONFIG_IMPL_H

#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum key_type { KEY_INT, KEY_REAL, KEY_STRING, KEY_ENUM } key_type;

/* Checks a string value's format; on failure writes the reason into why. */
typedef gdml_err (*key_check_fn)(const char *value, gdml_errmsg *why);

typedef struct key_def {
    const char *section, *key;
    size_t offset, size; /* the field in gdml_config */
    key_type type;
    const char *def;            /* default, as text, applied like any value */
    int64_t imin, imax;         /* KEY_INT: imin <= v <= imax */
    double rmin, rmax;          /* KEY_REAL: rmin < v <= rmax (rmin <= v with rmin_in) */
    bool rmin_in;               /* KEY_REAL: rmin itself is allowed (it turns something off) */
    const char *const *choices; /* KEY_ENUM: NULL-terminated */
    bool required;              /* KEY_STRING: "" means unset; check() refuses it */
    key_check_fn check;         /* KEY_STRING: format check for non-empty values */
    const char *allowed;        /* KEY_STRING with check: what check accepts */
    const char *brief;          /* the same, in a few words for --help */
    const char *flag;           /* "--sync-every", or NULL */
    const char *meta;           /* the flag's value placeholder in --help */
    const char *help;
} key_def;

extern const key_def gdml_config_keys[];
extern const size_t gdml_config_n_keys;

#endif
