/*
 * config.h - every configuration key gdml knows, read from INI files (inih)
 * and overridden from the command line.
 *
 * One table (config_keys.c) describes each key: section, name, type,
 * default, bounds or allowed values, the command-line flag that overrides it
 * (if any) and a one-line help text. Loading, validation, --help and
 * docs/config.md all come from that table, so a key is added in exactly one
 * place (and its field here). docs/config.md lists them all.
 *
 * A value that is wrong is refused with the file, line, section, key, the
 * value given and what is allowed, e.g.
 *   config/region.ini:7: [server] sync_every = "ten": not an integer; allowed: integer 1..1000000
 * Unknown sections and keys are refused the same way (with the known keys of
 * that section listed), so a typo never silently falls back to a default.
 */
#ifndef GDML_CONFIG_H
#define GDML_CONFIG_H

#include "dataset.h"
#include "dp.h"
#include "err.h"
#include "model.h"
#include "textdata.h"
#include "names.h"
#include "split.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct gdml_config {
    struct {
        char level[16];
        char format[8]; /* text or json */
    } log;
    struct {
        char format[16]; /* of the *data keys' files: auto, csv, libsvm */
        char header[8];  /* CSV: auto, yes, no */
        int64_t label_column;
    } data;
    struct {
        char kind[16];
        int64_t inputs, classes, seed;
        char hidden[128]; /* an mlp's hidden widths, "256,128"; "" for none */
    } model;
    struct {
        char listen[GDML_ENDPOINT_MAX];
        char store[GDML_PATH_MAX];
        int64_t regions, rounds, timeout_ms;
        char eval_images[GDML_PATH_MAX], eval_labels[GDML_PATH_MAX];
        char eval_data[GDML_PATH_MAX]; /* CSV or LIBSVM, instead of the IDX pair */
        int64_t eval_every;
        char endpoint_file[GDML_PATH_MAX];
        char encoder[32]; /* downlink encoder spec (codec.h) */
        double k_fraction, threshold;
        char byte_log[GDML_PATH_MAX];
        char members[GDML_PATH_MAX]; /* comma list of region names that may join; "" any */
        int64_t max_samples;
        int64_t round_deadline_ms;
        char consistency[16]; /* sync, quorum or async */
        int64_t quorum, max_staleness;
        double staleness_power;
    } coordinator;
    struct {
        char rule[16];
        double lr, momentum, beta1, beta2, epsilon;
        double max_delta_norm, max_change_norm;
    } merge;
    struct {
        char name[GDML_NAME_MAX];
        char listen[GDML_ENDPOINT_MAX], coordinator[GDML_ENDPOINT_MAX];
        int64_t workers, sync_every, timeout_ms;
        double learning_rate, lr_decay;
        char optimizer[16]; /* sgd, momentum or adam (optim.h) */
        double momentum, adam_beta1, adam_beta2, adam_epsilon;
        char endpoint_file[GDML_PATH_MAX];
        char sync_mode[16];        /* steps, time or budget */
        char drift_correction[16]; /* none or scaffold */
        char overlap[8];           /* "on" or "off" */
        char early_start[8];       /* "on" or "off" */
        char checkpoint[GDML_PATH_MAX]; /* directory of its LMDB checkpoint, or "" */
        char lan_consistency[8];        /* bsp, ssp or asp */
        int64_t ssp_staleness;
        int64_t sync_ms;
        char encoder[32]; /* uplink encoder spec (codec.h) */
        double k_fraction, threshold;
        char byte_log[GDML_PATH_MAX];
        int64_t max_worker_samples;
        double max_grad_norm;
    } server;
    struct {
        char curve[8], lan_curve[8];         /* "on" or "off" */
        char key[GDML_PATH_MAX];             /* this process's key pair (secret) */
        char allow[GDML_PATH_MAX];           /* who may connect to a CURVE link it binds */
        char coordinator_key[GDML_PATH_MAX]; /* server: the coordinator's public key */
        char server_key[GDML_PATH_MAX];      /* worker: its regional server's public key */
    } security;
    struct {
        int64_t heartbeat_ms, peer_timeout_ms, drop_after_ms, max_peer_bytes;
    } net;
    struct {
        int64_t map_mb, max_map_gb, keep_last, keep_every;
    } store;
    struct {
        char listen[GDML_ENDPOINT_MAX]; /* HOST:PORT of the Prometheus endpoint, or "off" */
        char file[GDML_PATH_MAX];       /* where to write the address bound, or "" */
    } metrics;
    struct {
        int64_t up_bytes_per_s, up_total_bytes, down_bytes_per_s, down_total_bytes;
        int64_t min_message_bytes;
        double target_ratio;
    } budget;
    struct {
        char dp[8]; /* "on" or "off" */
        double clip, noise_multiplier, delta, epsilon;
        int64_t seed;
    } privacy;
    struct {
        char name[GDML_NAME_MAX];
        char server[GDML_ENDPOINT_MAX];
        char images[GDML_PATH_MAX], labels[GDML_PATH_MAX];
        char data[GDML_PATH_MAX]; /* CSV or LIBSVM, instead of images and labels */
        int64_t batch_size, shard_index, shard_count, seed, timeout_ms, step_delay_ms;
        double holdout; /* fraction of the shard held out for validation */
        int64_t holdout_rows;
    } worker;
    struct {
        char regions[GDML_PATH_MAX];
        int64_t workers, seed;
        char split[16];
        double alpha;
        char train_images[GDML_PATH_MAX], train_labels[GDML_PATH_MAX];
        char test_images[GDML_PATH_MAX], test_labels[GDML_PATH_MAX];
        char train_data[GDML_PATH_MAX], test_data[GDML_PATH_MAX]; /* CSV or LIBSVM */
        char run_dir[GDML_PATH_MAX];
        char resume[8]; /* "on" or "off" */
        int64_t restart_limit, restart_backoff_ms;
        int64_t chaos_every_ms, chaos_kills, chaos_seed;
        char chaos_roles[64];
        char progress[8]; /* "auto", "live" or "plain" */
    } launch;
} gdml_config;

/*
 * [data]'s options for reading CSV and LIBSVM files; a LIBSVM row is as wide
 * as [model] inputs.
 */
void gdml_config_text_options(const gdml_config *cfg, gdml_text_options *out);

/*
 * Loads the data set that data (a CSV or LIBSVM file, read with [data]'s
 * options) names or, if data is empty, the IDX pair images and labels,
 * keeping rows i % shard_count == shard_index. With sparse, the rows come
 * as sparse rows whatever the file's format; else as dense ones. Errors as
 * the loaders'.
 */
gdml_err gdml_config_load_data(const gdml_config *cfg, const char *data, const char *images,
                               const char *labels, size_t shard_index, size_t shard_count,
                               bool sparse, gdml_dataset *out, gdml_errmsg *e);

/* The format data is read in: [data] format, or its name's (IDX if data is empty). */
gdml_data_format gdml_config_data_format(const gdml_config *cfg, const char *data);

/* The file a data set is named by, for messages: data, or images if data is empty. */
static inline const char *gdml_config_data_name(const char *data, const char *images)
{
    return *data ? data : images;
}

/*
 * gdml-split's and the launcher's split of the training set: launch.train_data
 * (CSV or LIBSVM, rows copied as they are) if set, else the IDX pair
 * launch.train_images and train_labels; see split.h.
 */
gdml_err gdml_config_split_data(const gdml_config *cfg, char (*names)[GDML_NAME_MAX],
                                unsigned regions, const char *dir, gdml_split_part *parts,
                                size_t *n_samples, gdml_errmsg *e);

/* The format of the files that split writes: IDX, CSV or LIBSVM. */
gdml_data_format gdml_config_split_format(const gdml_config *cfg);

/*
 * [privacy] as the mechanism's configuration (dp.h); false if privacy.dp
 * is off (out is then untouched). config_privacy.c.
 */
bool gdml_config_privacy(const gdml_config *cfg, gdml_dp_config *out);

/* Fills cfg with every key's default. */
void gdml_config_defaults(gdml_config *cfg);

/*
 * Reads an INI file into cfg, key by key, over what cfg holds already.
 * Returns GDML_ERR_IO if the file cannot be read, GDML_ERR_CONFIG for an
 * unknown section or key or a value outside its bounds; e says file:line.
 * Loading is all or nothing: on error cfg is unchanged.
 */
gdml_err gdml_config_load(gdml_config *cfg, const char *path, gdml_errmsg *e);

/*
 * Sets one key from its text value, validated as a file value would be.
 * origin names where the value came from for the error text ("--rounds",
 * "config/a.ini:3"). Returns GDML_ERR_CONFIG if section.key is unknown or the
 * value is not allowed.
 */
gdml_err gdml_config_set(gdml_config *cfg, const char *section, const char *key, const char *value,
                         const char *origin, gdml_errmsg *e);

/*
 * Finds the key that flag ("--rounds") overrides, in the first of sections
 * (NULL-terminated; NULL means all) that has one. Sets *section, *key and
 * *meta (the value placeholder, e.g. "N") and returns true, or returns false
 * if no key there has that flag.
 */
bool gdml_config_flag_key(const char *const *sections, const char *flag, const char **section,
                          const char **key, const char **meta);

/*
 * Checks what single keys cannot: required keys of the named sections are set,
 * worker.shard_index < worker.shard_count, names are valid, eval_images and
 * eval_labels are both set or both empty, launch.regions is a list of 1..64
 * distinct valid names. sections is NULL-terminated.
 */
gdml_err gdml_config_check(const gdml_config *cfg, const char *const *sections, gdml_errmsg *e);

/*
 * Splits a comma-separated list of names (launch.regions) into names[0..*n).
 * Returns GDML_ERR_CONFIG if a name is empty, invalid, repeated, or there are
 * more than cap.
 */
gdml_err gdml_config_split_names(const char *list, char (*names)[GDML_NAME_MAX], int cap, int *n,
                                 gdml_errmsg *e);

/* The model layout [model] describes; GDML_ERR_CONFIG with e saying what is
 * wrong (an mlp without hidden widths, say). gdml_config_check checks it for
 * programs with a [model] section. */
gdml_err gdml_config_layout(const gdml_config *cfg, gdml_layout *out, gdml_errmsg *e);

/* Returns the level parsed from cfg->log.level (always valid after load). */
int gdml_config_log_level(const gdml_config *cfg);

/* Returns the format parsed from cfg->log.format (always valid after load). */
int gdml_config_log_format(const gdml_config *cfg);

/*
 * Writes, for the named sections, one line per key: flag, section.key,
 * default, allowed values and help. Used by --help.
 */
void gdml_config_print_keys(const char *const *sections, void *file /* FILE * */);

/*
 * Writes every key of cfg to path as an INI file that gdml_config_load reads
 * back to the same values (gdml-launch hands its children the exact
 * configuration it runs with, and keeps it in the run directory).
 */
gdml_err gdml_config_write(const gdml_config *cfg, const char *path, gdml_errmsg *e);

/* Writes docs/config.md's key tables (markdown) for every section. */
void gdml_config_print_markdown(void *file /* FILE * */);

/* ---- command line ---------------------------------------------------- */

typedef struct gdml_program {
    const char *name;            /* "gdml-coordinator" */
    const char *summary;         /* one line: what the program does */
    const char *usage;           /* e.g. "[options]" or "list|show|export|eval [args]" */
    const char *const *sections; /* NULL-terminated: the sections this program reads */
    unsigned metrics_roles;      /* GDML_ROLE_* whose metrics it exports (--metrics-names); 0: none */
} gdml_program;

/*
 * Parses a program's command line into cfg, which must hold the defaults:
 *   --help, -h           print usage, flags and keys; *exit_now = true
 *   --version            print "<name> <GDML_VERSION>"; *exit_now = true
 *   --config FILE        load FILE first (only once)
 *   --set SECTION.KEY=VALUE   override one key of any section
 *   --<flag> VALUE or --<flag>=VALUE   override the key with that flag in one
 *                        of the program's sections
 * Overrides are applied after the file, whatever their order. Arguments that
 * do not start with "--" are positional: their indices are stored in
 * positional[0..*n_positional) (capacity cap). Then gdml_config_check runs on
 * the program's sections. Returns GDML_ERR_CONFIG with e set on any error.
 */
gdml_err gdml_cli_parse(const gdml_program *p, int argc, char **argv, gdml_config *cfg,
                        int *positional, int cap, int *n_positional, bool *exit_now,
                        gdml_errmsg *e);

#endif
