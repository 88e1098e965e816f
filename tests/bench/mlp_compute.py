#!/usr/bin/env python3
"""mlp_compute.py - one worker's MLP training throughput (issue 8), against
OpenBLAS sgemm and against scikit-learn's MLPClassifier, in one run.

    python3 tests/bench/mlp_compute.py [--build build] [--out docs/bench/mlp_compute.json]

Runs bench_mlp (from --build, else $GDML_BUILD_DIR, else build/): samples/s,
GFLOP/s and fraction of the sgemm peak of the worker's gradient for each
batch size and thread count. Then, if scikit-learn is importable here or by
the system python (Debian: apt-get install python3-sklearn), trains
sklearn.neural_network.MLPClassifier of the same shape (784-256-128-10, ReLU,
solver sgd, no momentum, no L2, no shuffling) with partial_fit over the same
first --sklearn-samples rows, for the same batch sizes and under the same
OPENBLAS_NUM_THREADS (numpy's BLAS is OpenBLAS on Debian too), and merges
its samples/s and gdml's ratio over it into the JSON.

What each side does per sample: gdml the worker's loss and gradient
(mlp_loss_grad; the server applies the update); scikit-learn its loss,
gradient and SGD update, in float32 (the precision gdml computes in; its
default on float64 data would be float64, --sklearn-float64 adds that).
Targets: at least 50% of the sgemm peak at the worker's thread count (1),
and at least 2x scikit-learn's samples/s.

The machine is shared: --runs rounds each run bench_mlp and scikit-learn
(in alternating order), and every figure in the summary and at the top of
the JSON is the median over the rounds (a ratio: the median of each round's
ratio); "per_run" keeps each round's. The per-GEMM detail is the first
round's.
"""
import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = "/usr/share/datasets/fashion-mnist/"
SYSTEM_PYTHON = "/usr/bin/python3"  # where Debian's python3-sklearn installs
TARGET_FRACTION = 0.5
TARGET_RATIO = 2.0


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.environ.get("GDML_BUILD_DIR",
                                                      os.path.join(ROOT, "build")))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "bench", "mlp_compute.json"))
    ap.add_argument("--images", default=DATA + "train-images-idx3-ubyte.gz")
    ap.add_argument("--labels", default=DATA + "train-labels-idx1-ubyte.gz")
    ap.add_argument("--batches", default="64,256")
    ap.add_argument("--threads", default=None,
                    help="thread counts, e.g. 1,2 (bench_mlp's default: 1 and OpenBLAS's own)")
    ap.add_argument("--reps", type=int, default=7, help="timed repetitions of bench_mlp")
    ap.add_argument("--samples", type=int, default=32768, help="samples per bench_mlp rep")
    ap.add_argument("--sklearn-reps", type=int, default=5)
    ap.add_argument("--sklearn-samples", type=int, default=16384,
                    help="rows each timed partial_fit trains on")
    ap.add_argument("--sklearn-float64", action="store_true",
                    help="also time scikit-learn on float64 data, its default")
    ap.add_argument("--skip-sklearn", action="store_true")
    ap.add_argument("--runs", type=int, default=3, help="rounds of bench_mlp and scikit-learn")
    # Internal: this script runs itself under the python that has sklearn.
    ap.add_argument("--sklearn-child", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args()


# ---- gdml ----

def run_bench_mlp(a):
    exe = os.path.join(a.build, "tests", "bench", "bench_mlp")
    if not os.path.exists(exe):
        sys.exit("mlp_compute: %s not found; build first (meson setup build --buildtype=release "
                 "&& meson compile -C build) or pass --build" % exe)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench_mlp.json")
        cmd = [exe, "--images", a.images, "--labels", a.labels, "--batches", a.batches,
               "--reps", str(a.reps), "--samples", str(a.samples), "--out", out]
        if a.threads:
            cmd += ["--threads", a.threads]
        print("$ " + " ".join(cmd[:1] + [os.path.basename(c) if c == out else c
                                         for c in cmd[1:]]), flush=True)
        subprocess.run(cmd, check=True)
        with open(out) as f:
            return json.load(f)


# ---- scikit-learn, in the child ----

def read_idx(path, rows):
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    per_row = 1
    for d in dims[1:]:
        per_row *= d
    start = 4 + 4 * ndim
    return raw[start:start + rows * per_row], per_row


def load(images, labels, rows):
    import numpy as np
    pixels, dim = read_idx(images, rows)
    ys, _ = read_idx(labels, rows)
    # As gdml_dataset_load_idx scales them: v / 255 in float32.
    x = np.frombuffer(pixels, dtype=np.uint8).reshape(-1, dim).astype(np.float32) / np.float32(255)
    return x, np.frombuffer(ys, dtype=np.uint8).astype(np.int64)


def sklearn_samples_per_s(x, y, batch, reps):
    from sklearn.neural_network import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(256, 128), activation="relu", solver="sgd",
                        batch_size=batch, learning_rate_init=0.01, momentum=0.0, alpha=0.0,
                        shuffle=False, random_state=1)
    warm = min(len(x), 16 * batch)
    clf.partial_fit(x[:warm], y[:warm], classes=list(range(10)))
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        clf.partial_fit(x, y)
        rates.append(len(x) / (time.perf_counter() - t0))
    return statistics.median(rates)


def sklearn_child(a):
    import numpy as np
    import sklearn
    x, y = load(a.images, a.labels, a.sklearn_samples)
    dtypes = [np.float32] + ([np.float64] if a.sklearn_float64 else [])
    out = {"sklearn": sklearn.__version__, "numpy": np.__version__,
           "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
           "rows": len(x), "samples_per_s": {}}
    try:
        from threadpoolctl import threadpool_info
        out["blas"] = [{k: p.get(k) for k in ("internal_api", "num_threads", "version")}
                       for p in threadpool_info()]
    except ImportError:
        pass
    for dtype in dtypes:
        xd = x.astype(dtype)
        out["samples_per_s"][np.dtype(dtype).name] = {
            b: sklearn_samples_per_s(xd, y, int(b), a.sklearn_reps) for b in a.batches.split(",")}
    json.dump(out, sys.stdout)


# ---- scikit-learn, from the parent ----

def python_with_sklearn():
    for py in [sys.executable, SYSTEM_PYTHON]:
        if py and os.path.exists(py) and subprocess.run(
                [py, "-c", "import sklearn"], capture_output=True).returncode == 0:
            return py
    return None


def run_sklearn(a, py, threads):
    cmd = [py, os.path.abspath(__file__), "--sklearn-child", "--images", a.images,
           "--labels", a.labels, "--batches", a.batches, "--sklearn-reps", str(a.sklearn_reps),
           "--sklearn-samples", str(a.sklearn_samples)]
    if a.sklearn_float64:
        cmd.append("--sklearn-float64")
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    print("$ OPENBLAS_NUM_THREADS=%d %s (scikit-learn MLPClassifier)" % (threads, py), flush=True)
    r = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(r.stdout)


def sklearn_round(a, py, report):
    """One round of scikit-learn for every thread count: {threads: child's result}."""
    return {s["threads"]: run_sklearn(a, py, s["threads"]) for s in report["settings"]}


def rounds(a):
    """--runs rounds of (bench_mlp, scikit-learn or None), in alternating order."""
    py = None if a.skip_sklearn else python_with_sklearn()
    if not py and not a.skip_sklearn:
        print("scikit-learn is not installed (apt-get install python3-sklearn): "
              "reporting without it", flush=True)
    out = []
    for i in range(a.runs):
        print("round %d of %d" % (i + 1, a.runs), flush=True)
        if py and i % 2:
            # scikit-learn first, at the thread counts bench_mlp chose last round.
            sk = sklearn_round(a, py, out[-1][0])
            out.append((run_bench_mlp(a), sk))
        else:
            report = run_bench_mlp(a)
            out.append((report, sklearn_round(a, py, report) if py else None))
    return py, out


def med(xs):
    return statistics.median(xs)


def merge_batch(b, t, runs, has_sklearn, float64):
    """Medians over the rounds into b, the first round's batch entry at t threads."""
    per = []
    for report, sk in runs:
        s = next(x for x in report["settings"] if x["threads"] == t)
        r = next(x for x in s["batches"] if x["batch"] == b["batch"])
        one = {k: r[k] for k in ("samples_per_s", "gflops", "fraction_of_peak",
                                 "gemm_share_of_step")}
        one["sgemm_peak_gflops"] = s["sgemm_peak_gflops"]
        if has_sklearn:
            rates = sk[t]["samples_per_s"]
            one["sklearn_samples_per_s"] = round(rates["float32"][str(b["batch"])], 1)
            one["vs_sklearn"] = round(r["samples_per_s"] / one["sklearn_samples_per_s"], 3)
            if float64:
                one["sklearn_float64_samples_per_s"] = round(rates["float64"][str(b["batch"])], 1)
                one["vs_sklearn_float64"] = round(
                    r["samples_per_s"] / one["sklearn_float64_samples_per_s"], 3)
        per.append(one)
    for k in per[0]:
        if k != "sgemm_peak_gflops":
            b[k] = round(med([p[k] for p in per]), 4)
    b["per_run"] = per


def merge(a, py, runs):
    report = runs[0][0]
    has_sklearn = py is not None
    for s in report["settings"]:
        for b in s["batches"]:
            merge_batch(b, s["threads"], runs, has_sklearn, a.sklearn_float64)
        s["sgemm_peak_gflops"] = round(med([next(
            x for x in r["settings"] if x["threads"] == s["threads"])["sgemm_peak_gflops"]
            for r, _ in runs]), 2)
    report["runs"] = len(runs)
    if not has_sklearn:
        report["sklearn"] = {"installed": False,
                             "note": "scikit-learn not importable; apt-get install python3-sklearn"}
        return report
    first = runs[0][1][report["settings"][0]["threads"]]
    report["sklearn"] = {
        "installed": True, "version": first["sklearn"], "numpy": first["numpy"],
        "blas": {str(t): r.get("blas") for t, r in runs[0][1].items()},
        "rows": first["rows"], "reps": a.sklearn_reps,
        "dtype": "float32" + (" (and float64)" if a.sklearn_float64 else ""),
        "what": "partial_fit over the same first rows: loss, gradient and SGD update; hidden "
                "(256, 128), relu, sgd, momentum 0, alpha 0, no shuffle"}
    return report


# ---- report ----

def print_summary(report):
    f64 = any("vs_sklearn_float64" in b for s in report["settings"] for b in s["batches"])
    print("\nmedians of %d rounds" % report["runs"])
    print("threads batch  gdml samples/s  GFLOP/s  of sgemm peak  sklearn f32 samples/s"
          "  gdml/sklearn" + ("  sklearn f64 samples/s  gdml/sklearn f64" if f64 else ""))
    for s in report["settings"]:
        for b in s["batches"]:
            sk = b.get("sklearn_samples_per_s")
            line = "%7d %5d %15.0f %8.1f %13.1f%% %22s %13s" % (
                s["threads"], b["batch"], b["samples_per_s"], b["gflops"],
                100 * b["fraction_of_peak"], "%.0f" % sk if sk else "-",
                "%.2fx" % b["vs_sklearn"] if sk else "-")
            if f64:
                line += " %22.0f %17s" % (b["sklearn_float64_samples_per_s"],
                                          "%.2fx" % b["vs_sklearn_float64"])
            print(line)
    for s in (s for s in report["settings"] if s["worker_setting"]):
        for b in s["batches"]:
            ok = b["fraction_of_peak"] >= TARGET_FRACTION
            line = "batch %d, %d thread (the worker's): %.1f%% of the sgemm peak (target %d%%): %s" % (
                b["batch"], s["threads"], 100 * b["fraction_of_peak"], 100 * TARGET_FRACTION,
                "OK" if ok else "below")
            if "vs_sklearn" in b:
                line += "; %.2fx scikit-learn float32 (target %.0fx): %s" % (
                    b["vs_sklearn"], TARGET_RATIO, "OK" if b["vs_sklearn"] >= TARGET_RATIO
                    else "below")
            print(line)


def main():
    a = parse()
    if a.sklearn_child:
        sklearn_child(a)
        return
    py, runs = rounds(a)
    report = merge(a, py, runs)
    report["targets"] = {"fraction_of_peak": TARGET_FRACTION, "vs_sklearn": TARGET_RATIO}
    print_summary(report)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print("wrote " + a.out)


if __name__ == "__main__":
    main()
