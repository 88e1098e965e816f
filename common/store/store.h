/*
 * store.h - the model-version store: every committed version, in LMDB.
 *
 * One LMDB environment (a directory) holds, per version, a metadata record,
 * the layout text, and named float32 tensors: "params" (the model) and the
 * state that resuming needs to continue exactly (a merge rule's momentum or
 * moments, a region's anchor and residuals). A version's tensors are written
 * in transactions of bounded size (so a commit holds at most 64 MiB of
 * dirty pages, whatever the model's size) and its metadata record last:
 * a reader sees a version whole or not at all, and a crash never leaves
 * half a version that anything reads. This is the only module that touches LMDB;
 * its error codes become gdml_err codes with readable text here.
 *
 * Damage is detected, not trusted: every tensor chunk and every metadata
 * record carries a CRC-32 that is checked on every read; a data file that is
 * shorter than LMDB's own pages say (truncated), empty, or not LMDB at all
 * is refused at open with a message naming the file, so it can never cause
 * a SIGBUS or be taken for a new store. Disk errors say what they are: a
 * full map grows (doubling, up to max_map_bytes), a full disk is reported as
 * a full disk.
 *
 * Versions are numbered 1, 2, ... and only grow. Each names its parent (the
 * version it was trained from: the one before, or the one an operator rolled
 * back to). Retention keeps the newest keep_last versions and every
 * keep_every-th; the others' pages are freed for reuse. gdml_store_rollback
 * makes an older version the one the next resume starts from, without
 * deleting anything.
 */
#ifndef GDML_STORE_H
#define GDML_STORE_H

#include "err.h"
#include "names.h"
#include "score.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GDML_STORE_MAX_REGIONS 64
#define GDML_STORE_MAX_TENSORS 8
#define GDML_STORE_TENSOR_NAME_MAX 32
#define GDML_LAYOUT_MAX 128
#define GDML_STORE_RULE_MAX 16

typedef struct gdml_store gdml_store;

typedef struct gdml_store_options {
    bool read_only;
    uint64_t map_bytes;     /* initial map size (0: 256 MiB); grows on demand */
    uint64_t max_map_bytes; /* the map never grows beyond (0: 1 TiB) */
    uint64_t keep_last;     /* retention: the newest this many versions (0: all) */
    uint64_t keep_every;    /* ... and every keep_every-th version (0: none) */
} gdml_store_options;

/* One region as a version records it. */
typedef struct gdml_region_part {
    char name[GDML_NAME_MAX];
    uint64_t seq;     /* highest sequence number of the region's merged so far */
    uint64_t samples; /* weight it was merged with in this version; 0 if it sent nothing */
    /* Metrics only: its workers' score on their held-out rows of version
     * val_version, as the delta merged into this version reported it
     * (val.rows 0: none). */
    gdml_score val;
    uint64_t val_version;
} gdml_region_part;

/* A tensor of a version, as stored: its name, size and checksum. */
typedef struct gdml_tensor_info {
    char name[GDML_STORE_TENSOR_NAME_MAX];
    uint64_t n;     /* floats */
    uint32_t crc32; /* of its float32 bytes, as written */
} gdml_tensor_info;

typedef struct gdml_version_meta {
    uint64_t version;        /* 1, 2, ... */
    uint64_t parent;         /* the version it came from; 0 for the first */
    uint64_t round;          /* coordinator round that produced it */
    int64_t time_ms;         /* commit time, milliseconds since the Unix epoch */
    uint64_t bytes_received; /* WAN bytes received up to this version */
    uint64_t bytes_sent;     /* WAN bytes sent up to this version */
    double accuracy, loss;   /* on the coordinator's eval set; NaN when not evaluated */
    /* What resuming needs besides the tensors: the writer's own sequence
     * number, its scalar state, and the rule its state belongs to. */
    uint64_t seq;
    double lr_steps;
    char rule[GDML_STORE_RULE_MAX];
    uint32_t n_regions;
    gdml_region_part regions[GDML_STORE_MAX_REGIONS];
    /* Differential privacy (docs/privacy.md): the largest epsilon, at
     * dp_delta, that any region has spent up to this version; both 0 for
     * a job without it. */
    double epsilon, dp_delta;
    uint32_t n_tensors; /* filled by gdml_store_commit and the readers */
    gdml_tensor_info tensors[GDML_STORE_MAX_TENSORS];
} gdml_version_meta;

/* A tensor to commit. */
typedef struct gdml_store_tensor {
    const char *name; /* [a-z0-9._-], shorter than GDML_STORE_TENSOR_NAME_MAX */
    const float *data;
    size_t n;
} gdml_store_tensor;

/*
 * Opens (creating the directory and files if needed, unless read_only) the
 * store at dir, with opts (NULL: defaults). Returns GDML_ERR_NOTFOUND if
 * read_only and there is no store there, GDML_ERR_FORMAT if the data file is
 * damaged, truncated, empty or not an LMDB store (e names the file and says
 * what to do), GDML_ERR_IO otherwise.
 */
gdml_err gdml_store_open(const char *dir, const gdml_store_options *opts, gdml_store **out,
                         gdml_errmsg *e);

/* Closes the store. NULL-safe; clears *s. */
void gdml_store_close(gdml_store **s);

/*
 * Commits one version: the tensors (which must include "params") in
 * transactions of at most 64 MiB, then meta (meta->version must be greater
 * than every version stored) and the layout text in the last of them, which
 * applies retention and clears a rollback. Grows the map before writing what might
 * not fit. A commit that fails leaves no part of the version readable. Returns
 * GDML_ERR_EXISTS if meta->version is not newer, GDML_ERR_INVALID for a bad
 * record, GDML_ERR_NOSPACE if the disk is full, GDML_ERR_STORE otherwise.
 */
gdml_err gdml_store_commit(gdml_store *s, const gdml_version_meta *meta, const char *layout,
                           const gdml_store_tensor *tensors, size_t n_tensors, gdml_errmsg *e);

/* The newest version, or GDML_ERR_NOTFOUND when the store is empty. */
gdml_err gdml_store_newest(gdml_store *s, uint64_t *version, gdml_errmsg *e);

/*
 * The version the next resume starts from: the rolled-back-to version if
 * there is one, else the newest. GDML_ERR_NOTFOUND when the store is empty.
 */
gdml_err gdml_store_head(gdml_store *s, uint64_t *version, gdml_errmsg *e);

/* How many versions the store holds. */
gdml_err gdml_store_count(gdml_store *s, uint64_t *count, gdml_errmsg *e);

/*
 * The score over every region of m that reports one, into *total (rows and
 * right predictions added up, the loss weighted by rows); returns how many
 * regions do.
 */
uint32_t gdml_store_meta_score(const gdml_version_meta *m, gdml_score *total);

/* Reads one version's metadata (checksum checked). GDML_ERR_NOTFOUND if absent. */
gdml_err gdml_store_meta(gdml_store *s, uint64_t version, gdml_version_meta *out, gdml_errmsg *e);

/* Reads one version's layout text into layout[GDML_LAYOUT_MAX]. */
gdml_err gdml_store_layout(gdml_store *s, uint64_t version, char layout[GDML_LAYOUT_MAX],
                           gdml_errmsg *e);

/*
 * Reads tensor `name` of a version into a malloc'd array the caller frees,
 * checking every chunk's checksum and the whole tensor's. GDML_ERR_NOTFOUND
 * if the version or the tensor is absent, GDML_ERR_FORMAT (e names version,
 * tensor and chunk) if it is damaged.
 */
gdml_err gdml_store_tensor_read(gdml_store *s, uint64_t version, const char *name, float **out,
                                size_t *n, gdml_errmsg *e);

/* Called for each version in ascending order; return non-zero to stop. */
typedef int (*gdml_store_visit_fn)(const gdml_version_meta *meta, void *user);

/* Visits every version's metadata in one read transaction. */
gdml_err gdml_store_each(gdml_store *s, gdml_store_visit_fn fn, void *user, gdml_errmsg *e);

/*
 * Checks every checksum of every version. Returns GDML_OK if all hold, else
 * GDML_ERR_FORMAT with e naming the first damage; *bad (if not NULL) gets the
 * number of damaged versions and *checked the number checked.
 */
gdml_err gdml_store_verify(gdml_store *s, uint64_t *checked, uint64_t *bad, gdml_errmsg *e);

/* What gdml_store_audit_history found. */
typedef struct gdml_store_audit {
    uint64_t versions, first, last;
    uint64_t missing;       /* numbers between first and last with no version (retention or loss) */
    uint64_t contributions; /* (version, region) pairs with a merged delta */
    uint64_t double_merges; /* contributions under a sequence number already merged */
    uint64_t double_version;               /* the first of them, if any */
    char double_region[GDML_NAME_MAX];
} gdml_store_audit;

/*
 * Walks every version's metadata and counts missing version numbers and
 * deltas merged twice (a region contributing under a sequence number it
 * already contributed under). Reading errors as gdml_store_each.
 */
gdml_err gdml_store_audit_history(gdml_store *s, gdml_store_audit *out, gdml_errmsg *e);

/* Makes version the head for the next resume, keeping every version. */
gdml_err gdml_store_rollback(gdml_store *s, uint64_t version, gdml_errmsg *e);

/* The map size in use now, in bytes (it grows with the data). */
uint64_t gdml_store_map_bytes(const gdml_store *s);

#endif
