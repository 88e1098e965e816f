/*
 * store_impl.h - private to the store module (store.c: opening and
 * committing; store_record.c: the record formats and errors; store_read.c:
 * reading, verifying, rolling back). Its three files share the handle and
 * the helpers declared here; nothing else includes it.
 */
#ifndef GDML_STORE_IMPL_H
#define GDML_STORE_IMPL_H

#include "store.h"

#include <lmdb.h>

#include <stdbool.h>
#include <stdint.h>

#define STORE_FORMAT 2u
/* Meta records: format 2, and format 3 (2 plus each region's held-out
 * score), written only when some region has one, so a store trained
 * without holdouts reads as before. */
#define META_FORMAT_SCORES 3u
/* Format 4: format 3 and, before the final CRC, the privacy spent (epsilon
 * and delta, doubles); written only for a job with differential privacy. */
#define META_FORMAT_PRIVACY 4u
#define STORE_MAX_DBS 8
#define STORE_CHUNK ((size_t)1 << 20) /* floats per tensor chunk: 4 MiB */
#define DEFAULT_MAP ((uint64_t)256 << 20)
#define DEFAULT_MAX_MAP ((uint64_t)1 << 40)
#define META_MAX 16384
/* Below this much free space an I/O error on commit is taken for a full disk. */
#define LOW_SPACE ((uint64_t)16 << 20)

struct gdml_store {
    MDB_env *env;
    MDB_dbi meta, layout, tensor, control;
    gdml_store_options opts;
    uint64_t map;
    char *dir;
    char data_path[GDML_PATH_MAX + 16];
};


/* store_record.c: errors */
gdml_err store_fail(const gdml_store *s, gdml_errmsg *e, int rc, const char *what);
gdml_err store_damaged(const gdml_store *s, gdml_errmsg *e, uint64_t version, const char *what);

/* store_record.c: keys (big-endian) and the meta record */
void store_put_be(unsigned char *k, uint64_t v, int bytes);
uint64_t store_get_be(const unsigned char *k, int bytes);
/* Writes m's record into buf[0..cap); its length, or 0 if it does not fit. */
size_t store_meta_encode(const gdml_version_meta *m, unsigned char *buf, size_t cap);
/* Parses a record; NULL if it is whole and sound, else what is wrong. */
const char *store_meta_decode(uint64_t version, const MDB_val *val, gdml_version_meta *out);

/* store.c: transactions and lookups */
int store_txn_begin(gdml_store *s, bool write, MDB_txn **txn);
gdml_err store_begin(gdml_store *s, bool write, MDB_txn **txn, gdml_errmsg *e);
int store_get_version(gdml_store *s, MDB_txn *txn, MDB_dbi dbi, uint64_t v, MDB_val *val);
gdml_err store_meta_in(gdml_store *s, MDB_txn *txn, uint64_t v, gdml_version_meta *out,
                       gdml_errmsg *e);
gdml_err store_newest_in(gdml_store *s, MDB_txn *txn, uint64_t *v, gdml_errmsg *e);
int store_control_get(gdml_store *s, MDB_txn *txn, const char *name, uint64_t *v, int bytes);
int store_control_put(gdml_store *s, MDB_txn *txn, const char *name, uint64_t v, int bytes);

/* store_read.c: reads (or, with out NULL, only checks) tensor index of meta in txn. */
gdml_err store_read_tensor(gdml_store *s, MDB_txn *txn, const gdml_version_meta *meta,
                           uint32_t index, float *out, gdml_errmsg *e);

#endif
