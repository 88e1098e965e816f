/*
 * config_keys.c - every configuration key gdml knows: one row each, with its
 * section, type, default, bounds or allowed values, command-line flag and
 * help text, and the checks for values that have a format. Loading,
 * validation, --help and docs/config.md all come from this table (config.c),
 * so a key is added here and in gdml_config (config.h), and nowhere else.
 */
#include "config_impl.h"

#include "codec.h"
#include "metrics_http.h"

#include <stdint.h>
#include <string.h>

/* ---- formats of string values ---- */

static gdml_err check_name(const char *value, gdml_errmsg *why)
{
    if (gdml_name_ok(value))
        return GDML_OK;
    return gdml_errmsg_set(why, GDML_ERR_CONFIG, "not a valid name");
}

static gdml_err check_endpoint(const char *value, gdml_errmsg *why)
{
    static const char *const schemes[] = {"tcp://", "ipc://", "inproc://"};
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        size_t n = strlen(schemes[i]);
        if (strncmp(value, schemes[i], n) == 0 && value[n])
            return GDML_OK;
    }
    return gdml_errmsg_set(why, GDML_ERR_CONFIG, "not a ZeroMQ endpoint");
}

static gdml_err check_metrics_listen(const char *value, gdml_errmsg *why)
{
    if (strcmp(value, "off") == 0 || gdml_metrics_address_ok(value))
        return GDML_OK;
    return gdml_errmsg_set(why, GDML_ERR_CONFIG, "not HOST:PORT or off");
}

static gdml_err check_encoder(const char *value, gdml_errmsg *why)
{
    if (strcmp(value, "auto") == 0) /* the controller chooses (controller.h) */
        return GDML_OK;
    return gdml_codec_spec_ok(value, why) ? GDML_OK : GDML_ERR_CONFIG;
}

static gdml_err check_member_list(const char *value, gdml_errmsg *why)
{
    char names[64][GDML_NAME_MAX];
    int n;
    return *value ? gdml_config_split_names(value, names, 64, &n, why) : GDML_OK;
}

static gdml_err check_regions(const char *value, gdml_errmsg *why)
{
    char names[64][GDML_NAME_MAX];
    int n;
    return gdml_config_split_names(value, names, 64, &n, why);
}

static gdml_err check_roles(const char *value, gdml_errmsg *why)
{
    char names[64][GDML_NAME_MAX];
    int n;
    gdml_err err = gdml_config_split_names(value, names, 64, &n, why);
    for (int i = 0; !err && i < n; i++)
        if (strcmp(names[i], "coordinator") != 0 && strcmp(names[i], "server") != 0 &&
            strcmp(names[i], "worker") != 0)
            err = gdml_errmsg_set(why, GDML_ERR_CONFIG, "'%s' is not coordinator, server or worker",
                                  names[i]);
    return err;
}

#define NAME_RULE "1..63 characters from A-Z a-z 0-9 . _ -"
#define ENDPOINT_RULE "tcp://HOST:PORT, ipc://PATH or inproc://NAME"
#define ENCODER_RULE                                                                               \
    "SELECTOR+QUANTIZER, either part alone, or dense; selectors all, topk, randk, significance; "  \
    "quantizers f32, f16, bf16, int8, int4, int2, sign; or auto (the budget controller chooses)"

/*
 * One macro per kind of row keeps each row of the table on a line or two.
 * clang-format would spread each macro over five lines; the table reads better dense.
 */
// clang-format off
#define AT(sec, k) .section = #sec, .key = #k, .offset = offsetof(gdml_config, sec.k), \
                   .size = sizeof(((gdml_config *)0)->sec.k)
#define INT(sec, k, d, lo, hi, f, h) {AT(sec, k), .type = KEY_INT, .def = d, .imin = lo, \
                                      .imax = hi, .flag = f, .meta = "N", .help = h}
#define REAL(sec, k, d, lo, hi, f, h) {AT(sec, k), .type = KEY_REAL, .def = d, .rmin = lo, \
                                       .rmax = hi, .flag = f, .meta = "X", .help = h}
#define REAL_FROM(sec, k, d, lo, hi, f, h) {AT(sec, k), .type = KEY_REAL, .def = d, .rmin = lo, \
                                            .rmin_in = true, .rmax = hi, .flag = f, .meta = "X", \
                                            .help = h}
#define ENUM(sec, k, d, ch, f, m, h) {AT(sec, k), .type = KEY_ENUM, .def = d, .choices = ch, \
                                      .flag = f, .meta = m, .help = h}
#define STR(sec, k, d, f, m, h) {AT(sec, k), .type = KEY_STRING, .def = d, .flag = f, .meta = m, \
                                 .help = h}
#define REQ(sec, k, f, m, h) {AT(sec, k), .type = KEY_STRING, .def = "", .required = true, \
                              .flag = f, .meta = m, .help = h}
#define NAME(sec, k, f, h) {AT(sec, k), .type = KEY_STRING, .def = "", .required = true, \
                            .check = check_name, .allowed = NAME_RULE, \
                            .brief = "1..63 of A-Za-z0-9._-", .flag = f, .meta = "NAME", .help = h}
#define ENCODER(sec, k, d, f, h) {AT(sec, k), .type = KEY_STRING, .def = d, \
                                  .check = check_encoder, .allowed = ENCODER_RULE, \
                                  .brief = "an encoder, e.g. topk+int8", .flag = f, \
                                  .meta = "SPEC", .help = h}
#define ENDPOINT(sec, k, d, f, h) {AT(sec, k), .type = KEY_STRING, .def = d, \
                                   .check = check_endpoint, .allowed = ENDPOINT_RULE, \
                                   .brief = "tcp://, ipc:// or inproc://", .flag = f, \
                                   .meta = "ENDPOINT", .help = h}
// clang-format on

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_formats[] = {"text", "json", NULL};
static const char *const model_kinds[] = {"softmax", "mlp", "sparselr", NULL};
static const char *const split_kinds[] = {"iid", "dirichlet", NULL};
static const char *const sync_modes[] = {"steps", "time", "budget", NULL};
static const char *const drift_corrections[] = {"none", "scaffold", NULL};
static const char *const on_off[] = {"on", "off", NULL};
static const char *const auto_on_off[] = {"auto", "on", "off", NULL};
static const char *const consistencies[] = {"sync", "quorum", "async", NULL};
static const char *const lan_consistencies[] = {"bsp", "ssp", "asp", NULL};
static const char *const data_formats[] = {"auto", "csv", "libsvm", NULL};
static const char *const csv_headers[] = {"auto", "yes", "no", NULL};
static const char *const optimizers[] = {"sgd", "momentum", "adam", NULL};
static const char *const progress_modes[] = {"auto", "live", "plain", NULL};
static const char *const merge_rules[] = {"fedavg", "sum", "fedavgm", "nesterov", "adam", NULL};

#define FASHION "/usr/share/datasets/fashion-mnist/"

/* Grouped by section; the order here is the order of --help and docs/config.md. */
const key_def gdml_config_keys[] = {
    ENUM(log, level, "info", log_levels, "--log-level", "LEVEL", "least severe messages to print"),
    ENUM(log, format, "text", log_formats, "--log-format", "FORMAT",
         "stderr lines as text (key=value fields) or json (one JSON object a line)"),

    ENUM(data, format, "auto", data_formats, "--data-format", "FORMAT",
         "format of the text data files (worker.data, launch.train_data, ...): auto is csv for "
         "*.csv and libsvm for *.svm, *.libsvm, *.txt, each plain or .gz"),
    ENUM(data, header, "auto", csv_headers, NULL, "auto|yes|no",
         "whether a CSV file's first line names its columns (auto: if a field of it is not a "
         "number)"),
    INT(data, label_column, "0", -1, 100000000, NULL,
        "the CSV column, from 0, that holds the class label (-1: the last)"),

    ENUM(model, kind, "softmax", model_kinds, NULL, "KIND", "model family to train"),
    INT(model, inputs, "784", 1, 100000000, NULL, "features per example (784 for 28x28 images)"),
    INT(model, classes, "10", 2, 256, NULL, "number of labels (labels are 8-bit)"),
    STR(model, hidden, "", NULL, "W1,W2,...",
        "an mlp's hidden layer widths, from the inputs' side, e.g. 256,128 (softmax: none)"),
    INT(model, seed, "1", 0, INT64_MAX, NULL, "seed of the initial parameters"),

    ENDPOINT(coordinator, listen, "tcp://0.0.0.0:7070", "--listen",
             "endpoint the regions connect to"),
    STR(coordinator, store, "gdml-store", "--store", "PATH",
        "LMDB directory that keeps every global model version"),
    INT(coordinator, regions, "3", 1, 64, "--regions", "regions that must join before round 1"),
    INT(coordinator, rounds, "30", 1, 1000000, "--rounds", "global rounds to run"),
    INT(coordinator, timeout_ms, "60000", 100, 86400000, "--timeout-ms",
        "how long to wait for a region before failing, in ms"),
    STR(coordinator, eval_images, "", "--eval-images", "PATH",
        "IDX test images scored after each round (empty: no evaluation)"),
    STR(coordinator, eval_labels, "", "--eval-labels", "PATH", "IDX test labels for eval_images"),
    STR(coordinator, eval_data, "", "--eval-data", "PATH",
        "CSV or LIBSVM test data scored after each round, instead of eval_images and eval_labels"),
    INT(coordinator, eval_every, "1", 1, 1000000, "--eval-every",
        "evaluate every this many versions (and always the last)"),
    STR(coordinator, endpoint_file, "", "--endpoint-file", "PATH",
        "file to write the bound endpoint to (empty: none)"),
    ENCODER(coordinator, encoder, "dense", "--encoder",
            "downlink encoder: how the global model's changes are sent to each region"),
    REAL(coordinator, k_fraction, "0.1", 0, 1, "--k-fraction",
         "entries a sparse downlink encoder sends, as a fraction of the model"),
    REAL(coordinator, threshold, "0.01", 0, 1000000, "--threshold",
         "significance filter: relative change that makes a parameter worth sending"),
    STR(coordinator, byte_log, "", "--byte-log", "PATH",
        "CSV file recording every WAN message sent and received (empty: none)"),
    {AT(coordinator, members), .type = KEY_STRING, .def = "", .check = check_member_list,
     .allowed = "empty, or a comma-separated list of distinct names, each " NAME_RULE,
     .brief = "names, comma-separated", .flag = "--members", .meta = "LIST",
     .help = "regions that may join (empty: any name; with CURVE, the allow-list decides too)"},
    INT(coordinator, max_samples, "1000000000", 1, 281474976710656, NULL,
        "the largest sample count a region may declare; a delta may weigh no more than its "
        "region declared"),
    INT(coordinator, round_deadline_ms, "0", 0, 86400000, "--round-deadline-ms",
        "a round that has a delta goes on without the regions still missing after this long "
        "(0: wait for every region heard from)"),
    ENUM(coordinator, consistency, "sync", consistencies, "--consistency", "MODE",
         "when a round merges: sync (every region heard from), quorum (coordinator.quorum of "
         "them) or async (each delta as it comes); docs/consistency.md"),
    INT(coordinator, quorum, "0", 0, 64, "--quorum",
        "quorum mode: deltas a round needs (0: a majority of the regions)"),
    INT(coordinator, max_staleness, "4", 0, 1000000, "--max-staleness",
        "a delta made this many versions or fewer behind the current one is merged, weighted "
        "down; older ones are refused"),
    REAL(coordinator, staleness_power, "0.5", 0, 16, "--staleness-power",
         "a delta tau versions behind is scaled by (1 + tau)^-power"),

    ENUM(merge, rule, "fedavg", merge_rules, "--merge", "RULE",
         "how regional deltas are merged: fedavg, sum, fedavgm, nesterov or adam"),
    REAL(merge, lr, "1", 0, 1000, "--server-lr", "server learning rate of the merge"),
    REAL(merge, momentum, "0.9", 0, 0.999999, "--momentum", "fedavgm and nesterov momentum"),
    REAL(merge, beta1, "0.9", 0, 0.999999, NULL, "adam first-moment decay"),
    REAL(merge, beta2, "0.99", 0, 0.999999, NULL, "adam second-moment decay"),
    REAL(merge, epsilon, "0.001", 0, 1, NULL, "adam denominator floor (tau)"),
    REAL(merge, max_delta_norm, "100000", 0, 1e30, NULL,
         "a region's delta with a larger L2 norm is dropped, not merged"),
    REAL(merge, max_change_norm, "100000", 0, 1e30, NULL,
         "a merge that would move the global model by more (L2) is not committed; the largest "
         "contributions are dropped until it would not"),

    NAME(server, name, "--name", "this region's name"),
    ENDPOINT(server, listen, "tcp://0.0.0.0:7071", "--listen",
             "endpoint this region's workers connect to"),
    ENDPOINT(server, coordinator, "tcp://127.0.0.1:7070", "--coordinator",
             "the global coordinator's endpoint"),
    INT(server, workers, "2", 1, 1024, "--workers", "workers that must join before training"),
    INT(server, sync_every, "50", 1, 1000000, "--sync-every", "local steps between syncs"),
    REAL(server, learning_rate, "0.1", 0, 100, "--learning-rate", "the optimizer's step size"),
    REAL(server, lr_decay, "1", 0, 1, "--lr-decay",
         "learning rate factor per global version: rate = learning_rate * lr_decay^version"),
    ENUM(server, optimizer, "sgd", optimizers, "--optimizer", "KIND",
         "how the step's mean gradient moves the live model: sgd, momentum or adam "
         "(docs/config.md; SCAFFOLD needs sgd)"),
    REAL(server, momentum, "0.9", 0, 0.999999, NULL, "optimizer = momentum: its decay"),
    REAL(server, adam_beta1, "0.9", 0, 0.999999, NULL, "optimizer = adam: first-moment decay"),
    REAL(server, adam_beta2, "0.999", 0, 0.999999, NULL, "optimizer = adam: second-moment decay"),
    REAL(server, adam_epsilon, "1e-8", 1e-12, 1, NULL, "optimizer = adam: denominator floor"),
    INT(server, timeout_ms, "60000", 100, 86400000, "--timeout-ms",
        "how long to wait for a worker or the coordinator, in ms"),
    STR(server, endpoint_file, "", "--endpoint-file", "PATH",
        "file to write the bound endpoint to (empty: none)"),
    ENUM(server, sync_mode, "steps", sync_modes, "--sync-mode", "MODE",
         "when to sync with the coordinator: every sync_every steps, every sync_ms, or as "
         "soon as the uplink budget has min_message_bytes after at least sync_every steps "
         "(training goes on until it has)"),
    INT(server, sync_ms, "1000", 1, 86400000, "--sync-ms",
        "ms between syncs when sync_mode = time"),
    ENUM(server, drift_correction, "none", drift_corrections, "--drift-correction", "KIND",
         "scaffold: correct each local step by the global minus the local mean gradient of the "
         "last round (control variates derived from the deltas, so no extra WAN bytes; paused "
         "for 5 rounds after a rejoin or a missed round, docs/consistency.md)"),
    ENUM(server, overlap, "auto", auto_on_off, "--overlap", "auto|on|off",
         "on: workers train on while a delta and its GLOBAL cross the WAN (docs/consistency.md); "
         "auto: on, unless drift_correction = scaffold, which overlap's stale round unsettles"),
    ENUM(server, early_start, "on", on_off, "--early-start", "on|off",
         "on: training starts from [model]'s initial parameters once the workers join, while "
         "the coordinator's model crosses the WAN; the first sync waits for it (its layout must "
         "be [model]'s: give the server the job's [model] section)"),
    STR(server, checkpoint, "", "--checkpoint", "PATH",
        "directory of the region's LMDB checkpoint, resumed from on restart (empty: none)"),
    ENUM(server, lan_consistency, "bsp", lan_consistencies, "--lan-consistency", "MODE",
         "inside the data center: bsp (a step waits for every live worker), ssp (a worker "
         "more than server.ssp_staleness gradients ahead of the slowest waits) or asp"),
    INT(server, ssp_staleness, "2", 1, 1000000, "--ssp-staleness",
        "ssp: how many gradients a worker may be ahead of the slowest live one"),
    ENCODER(server, encoder, "dense", "--encoder",
            "uplink encoder: how this region's delta is sent to the coordinator"),
    REAL(server, k_fraction, "0.1", 0, 1, "--k-fraction",
         "entries a sparse uplink encoder sends, as a fraction of the model"),
    REAL(server, threshold, "0.01", 0, 1000000, "--threshold",
         "significance filter: relative change that makes a parameter worth sending"),
    STR(server, byte_log, "", "--byte-log", "PATH",
        "CSV file recording every WAN message sent and received (empty: none)"),
    INT(server, max_worker_samples, "1000000000", 1, 281474976710656, NULL,
        "the largest sample count a worker may declare"),
    REAL(server, max_grad_norm, "100000", 0, 1e30, NULL,
         "a worker's gradient with a larger L2 norm is dropped"),

    ENUM(security, curve, "on", on_off, "--curve", "on|off",
         "CURVE (authenticated, encrypted) on the links between data centers"),
    ENUM(security, lan_curve, "off", on_off, "--lan-curve", "on|off",
         "CURVE between a regional server and its workers, inside a data center"),
    STR(security, key, "", "--key", "PATH",
        "this process's key file (gdml-keys new): its name and key pair; mode 0600"),
    STR(security, allow, "", "--allow", "PATH",
        "allow-list of the peers that may connect, one 'name = public key' each (cat their .pub "
        "files)"),
    STR(security, coordinator_key, "", "--coordinator-key", "PATH",
        "regional server: the coordinator's public key file (.pub)"),
    STR(security, server_key, "", "--server-key", "PATH",
        "worker: its regional server's public key file (.pub)"),

    INT(net, heartbeat_ms, "1000", 10, 600000, "--heartbeat-ms",
        "idle links send a heartbeat this often, and stalls are logged this often"),
    INT(net, peer_timeout_ms, "10000", 50, 86400000, "--peer-timeout-ms",
        "a peer silent for this long is not waited for (it may come back)"),
    INT(net, drop_after_ms, "10000", 50, 86400000, NULL,
        "a peer that takes nothing we send for this long is dropped"),
    INT(net, max_peer_bytes, "67108864", 33554432, 1099511627776, NULL,
        "unread bytes one connection may have in flight to this process before it is cut off"),

    INT(store, map_mb, "256", 1, 1073741824, NULL,
        "initial LMDB map size; it doubles whenever the store fills it"),
    INT(store, max_map_gb, "1024", 1, 1048576, NULL, "the map never grows beyond this"),
    INT(store, keep_last, "0", 0, INT64_MAX, "--keep-last",
        "retention: keep the newest this many versions (0: keep all)"),
    INT(store, keep_every, "0", 0, INT64_MAX, "--keep-every",
        "retention: also keep every this-many-th version (0: none beyond keep_last)"),

    {AT(metrics, listen), .type = KEY_STRING, .def = "127.0.0.1:0", .check = check_metrics_listen,
     .allowed = "off, or HOST:PORT ([V6]:PORT for IPv6); port 0 picks a free port",
     .brief = "HOST:PORT or off", .flag = "--metrics-listen", .meta = "HOST:PORT",
     .help = "where to serve Prometheus metrics (GET /metrics): loopback and any free port by "
             "default, logged and written to metrics.file; 0.0.0.0:PORT to let a Prometheus on "
             "another host scrape"},
    STR(metrics, file, "", "--metrics-file", "PATH",
        "file to write the metrics address bound to, HOST:PORT (empty: none)"),

    INT(budget, up_bytes_per_s, "0", 0, 1000000000000, "--up-bytes-per-s",
        "uplink budget: bytes per second over any 1 s window (0: unlimited)"),
    INT(budget, up_total_bytes, "0", 0, INT64_MAX, "--up-total-bytes",
        "uplink bytes in all (0: no cap)"),
    INT(budget, down_bytes_per_s, "0", 0, 1000000000000, "--down-bytes-per-s",
        "downlink budget the coordinator keeps for this region (0: unlimited)"),
    INT(budget, down_total_bytes, "0", 0, INT64_MAX, "--down-total-bytes",
        "downlink bytes in all (0: no cap)"),
    REAL_FROM(budget, target_ratio, "0", 0, 1000000, "--target-ratio",
              "encoder = auto: send at most 1/this of dense bytes per local step (0: no target)"),
    INT(budget, min_message_bytes, "1024", 64, 1000000000, "--min-message-bytes",
        "smallest delta worth sending; sync_mode = budget syncs once this many bytes are free"),

    ENUM(privacy, dp, "off", on_off, "--dp", "on|off",
         "on: each region clips its delta to privacy.clip and adds Gaussian noise before "
         "encoding, and the job accounts epsilon (docs/privacy.md)"),
    REAL(privacy, clip, "1", 0, 1e9, "--dp-clip", "L2 norm a region's delta is clipped to"),
    REAL(privacy, noise_multiplier, "1", 0, 1e6, "--dp-noise",
         "noise standard deviation per entry, as a multiple of privacy.clip"),
    REAL(privacy, delta, "1e-5", 0, 0.5, "--dp-delta", "the delta that epsilon is reported at"),
    REAL_FROM(privacy, epsilon, "0", 0, 1e9, "--dp-epsilon",
              "the job stops before any region's epsilon would pass this, and refuses to start "
              "if coordinator.rounds would (0: no limit)"),
    INT(privacy, seed, "0", 0, INT64_MAX, "--dp-seed",
        "0: noise from a random key (libsodium); else a key derived from this seed and the "
        "region's name, the same every run (tests only: it does not protect real data)"),

    NAME(worker, name, "--name", "this worker's name"),
    ENDPOINT(worker, server, "tcp://127.0.0.1:7071", "--server", "the regional server's endpoint"),
    STR(worker, images, "", "--images", "PATH",
        "IDX training images of this region (.gz or plain); or set data"),
    STR(worker, labels, "", "--labels", "PATH", "IDX training labels for images"),
    STR(worker, data, "", "--data", "PATH",
        "CSV or LIBSVM training data of this region (.gz or plain), instead of images and labels"),
    INT(worker, batch_size, "64", 1, 65536, "--batch-size", "examples per gradient"),
    INT(worker, shard_index, "0", 0, 1023, "--shard-index",
        "which shard of the region's data this worker reads (< shard_count)"),
    INT(worker, shard_count, "1", 1, 1024, "--shard-count", "shards the region's data is cut into"),
    INT(worker, seed, "1", 0, INT64_MAX, "--seed", "seed of the batch order and of the holdout"),
    REAL_FROM(worker, holdout, "0.1", 0, 0.5, "--holdout",
              "fraction of this worker's shard held out for validation: never trained on, scored "
              "once per model version and reported as metrics (0: none)"),
    INT(worker, holdout_rows, "256", 1, 65536, "--holdout-rows",
        "the most rows held out, which bounds what scoring a version costs"),
    INT(worker, timeout_ms, "60000", 100, 86400000, "--timeout-ms",
        "how long to wait for the server, in ms"),
    INT(worker, step_delay_ms, "0", 0, 600000, "--step-delay-ms",
        "wait this long before each gradient: a slow data center, for tests (0: none)"),

    {AT(launch, regions), .type = KEY_STRING, .def = "us-east,eu-west,ap-south",
     .check = check_regions,
     .allowed = "comma-separated list of 1..64 distinct names, each " NAME_RULE,
     .brief = "1..64 distinct names", .flag = "--regions", .meta = "LIST",
     .help = "regions to start, comma-separated"},
    INT(launch, workers, "2", 1, 64, "--workers", "workers per region"),
    ENUM(launch, split, "dirichlet", split_kinds, "--split", "KIND",
         "how training data is dealt to regions: iid, or label skew (dirichlet)"),
    REAL(launch, alpha, "0.5", 0, 1000000, "--alpha",
         "Dirichlet concentration of the split: smaller is more skewed"),
    INT(launch, seed, "42", 0, INT64_MAX, "--seed", "seed of the split"),
    STR(launch, train_images, FASHION "train-images-idx3-ubyte.gz", "--train-images", "PATH",
        "IDX training images to split across regions"),
    STR(launch, train_labels, FASHION "train-labels-idx1-ubyte.gz", "--train-labels", "PATH",
        "IDX training labels"),
    STR(launch, test_images, FASHION "t10k-images-idx3-ubyte.gz", "--test-images", "PATH",
        "IDX test images the coordinator scores"),
    STR(launch, test_labels, FASHION "t10k-labels-idx1-ubyte.gz", "--test-labels", "PATH",
        "IDX test labels"),
    STR(launch, train_data, "", "--train-data", "PATH",
        "CSV or LIBSVM training data to split across regions, instead of train_images and "
        "train_labels"),
    STR(launch, test_data, "", "--test-data", "PATH",
        "CSV or LIBSVM test data the coordinator scores, instead of test_images and test_labels"),
    STR(launch, run_dir, "", "--run-dir", "PATH",
        "directory for logs, shards and the store (empty: a new one under runs/)"),
    ENUM(launch, resume, "off", on_off, "--resume", "on|off",
         "on: --run-dir may hold an earlier run, whose store and checkpoints this run resumes"),
    INT(launch, restart_limit, "5", 0, 1000, "--restart-limit",
        "times one process that dies is started again before the job fails (0: never)"),
    INT(launch, restart_backoff_ms, "200", 0, 600000, "--restart-backoff-ms",
        "wait before a process that died is restarted; doubles with each quick death in a row, "
        "to 10 s"),
    INT(launch, chaos_every_ms, "0", 0, 86400000, "--chaos-every-ms",
        "kill -9 a random process every 2/3 to 4/3 of this many ms (0: never; for demos, tests "
        "and soaks)"),
    INT(launch, chaos_kills, "10", 0, 100000, "--chaos-kills", "how many processes chaos kills"),
    {AT(launch, chaos_roles), .type = KEY_STRING, .def = "coordinator,server,worker",
     .check = check_roles, .allowed = "comma-separated list of coordinator, server, worker",
     .brief = "coordinator,server,worker", .flag = "--chaos-roles", .meta = "LIST",
     .help = "which kinds of process chaos kills"},
    INT(launch, chaos_seed, "1", 0, INT64_MAX, "--chaos-seed", "seed of chaos's choices"),
    ENUM(launch, progress, "auto", progress_modes, "--progress", "auto|live|plain",
         "live: a display redrawn in place on the terminal; plain: one line per version; auto: "
         "live when stdout is a terminal and TERM is not dumb"),
};

const size_t gdml_config_n_keys = sizeof gdml_config_keys / sizeof gdml_config_keys[0];
