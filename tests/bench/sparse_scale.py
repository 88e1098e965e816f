#!/usr/bin/env python3
"""sparse_scale.py - sparse logistic regression at scale: a job of a million
features on synthetic LIBSVM data, with what each link moves against what a
dense model of the same size would move.

    python3 tests/bench/sparse_scale.py [--features 1000000] [--samples 1000000]
                                        [--nnz 20] [--rounds 40] [--runs 3]

- Data: gdml-synth writes samples + 50,000 rows from one seed (a known true
  model); the last 50,000 are the test set.
- The job: config/local-job.ini (3 regions, 2 workers each, Dirichlet 0.5)
  with [model] kind = sparselr and Adam at the regional servers.
- Reported, medians over --runs: wall time, samples trained per second,
  final test accuracy against the true model's, each worker's LAN bytes per
  push (PUSH + PULL up, MODEL down) against a dense gradient's, the WAN
  bytes per version and region against a dense delta's, and the peak RSS of
  each kind of process (sampled from /proc every 0.2 s).

Writes docs/bench/sparse_scale.json.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TEST_ROWS = 50000


def program(build, name):
    path = os.path.join(build, name)
    if not os.path.exists(path):
        sys.exit("%s is missing: build first (meson compile -C %s)" % (path, build))
    return path


def split_lines(src, train, test, n_train):
    with open(src) as f, open(train, "w") as a, open(test, "w") as b:
        for i, line in enumerate(f):
            (a if i < n_train else b).write(line)


class RssSampler:
    """Peak VmHWM of every process whose command line names the run dir, by program."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.peak = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def sample(self):
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    argv = f.read().split(b"\0")
                if not any(self.run_dir.encode() in a for a in argv):
                    continue
                name = os.path.basename(argv[0].decode())
                with open("/proc/%s/status" % pid) as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            kb = int(line.split()[1])
                            self.peak[name] = max(self.peak.get(name, 0), kb)
            except (OSError, ValueError):
                continue

    def loop(self):
        while not self.stop.is_set():
            self.sample()
            time.sleep(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def worker_bytes(logs):
    """Up and down LAN bytes per push, summed over every worker's log."""
    pushes = up = down = 0
    for name in os.listdir(logs):
        if not name.startswith("worker-"):
            continue
        with open(os.path.join(logs, name)) as f:
            m = re.search(r" done pushes=(\d+) lan_up=(\d+) lan_down=(\d+)", f.read())
        if m:
            pushes += int(m.group(1))
            up += int(m.group(2))
            down += int(m.group(3))
    return up / pushes, down / pushes, pushes


def one_run(a, build, data_dir, train, test, i):
    run_dir = os.path.join(data_dir, "run%d" % i)
    argv = [program(build, "gdml-launch"), "--config", os.path.join(ROOT, "config", "local-job.ini"),
            "--run-dir", run_dir, "--train-data", train, "--test-data", test,
            "--set", "model.kind=sparselr", "--set", "model.inputs=%d" % a.features,
            "--set", "model.classes=2", "--set", "server.optimizer=%s" % a.optimizer,
            "--set", "server.learning_rate=%g" % a.lr, "--set", "coordinator.rounds=%d" % a.rounds,
            "--set", "coordinator.timeout_ms=120000", "--set", "server.timeout_ms=120000",
            "--set", "worker.timeout_ms=120000"]
    with RssSampler(run_dir) as rss:
        t0 = time.monotonic()
        out = subprocess.run(argv, capture_output=True, text=True)
        wall = time.monotonic() - t0
    if out.returncode != 0:
        sys.exit("run %d failed (%d):\n%s\n%s" % (i, out.returncode, out.stdout[-3000:], out.stderr[-3000:]))
    with open(os.path.join(run_dir, "summary.json")) as f:
        s = json.load(f)
    up, down, pushes = worker_bytes(os.path.join(run_dir, "logs"))
    regions = s["regions"]
    r = {
        "wall_s": round(wall, 2),
        "training_s": s["wall_seconds"],
        "samples_per_s": round(pushes * 64 / s["wall_seconds"]),
        "final_accuracy": s["final_accuracy"],
        "lan_up_bytes_per_push": round(up),
        "lan_down_bytes_per_push": round(down),
        "wan_up_bytes_per_version_region": round(s["wan_bytes_up"] / s["versions_stored"] / regions),
        "wan_down_bytes_per_version_region": round(s["wan_bytes_down"] / s["versions_stored"] / regions),
        "peak_rss_mb": {k: round(v / 1024, 1) for k, v in sorted(rss.peak.items())},
    }
    shutil.rmtree(run_dir, ignore_errors=True)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--features", type=int, default=1000000)
    ap.add_argument("--samples", type=int, default=1000000, help="training rows")
    ap.add_argument("--nnz", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--optimizer", default="adam")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "bench", "sparse_scale.json"))
    a = ap.parse_args()

    data_dir = tempfile.mkdtemp(prefix="gdml-sparse-")
    try:
        every = os.path.join(data_dir, "all.svm")
        train, test = os.path.join(data_dir, "train.svm"), os.path.join(data_dir, "test.svm")
        t0 = time.monotonic()
        out = subprocess.run([program(a.build, "gdml-synth"), every, "--samples", str(a.samples + TEST_ROWS),
                              "--features", str(a.features), "--nnz", str(a.nnz), "--seed", "7"],
                             capture_output=True, text=True, check=True)
        synth_s = time.monotonic() - t0
        true_acc = float(re.search(r"true model accuracy ([0-9.]+)", out.stdout).group(1))
        split_lines(every, train, test, a.samples)
        os.remove(every)
        runs = [one_run(a, a.build, data_dir, train, test, i) for i in range(a.runs)]
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

    def med(key):
        return statistics.median(r[key] for r in runs)

    keys = a.nnz * 64 + 1
    dense = 4 * (a.features + 1)
    result = {
        "machine": "2-core Debian 12 VM (shared)",
        "features": a.features, "train_rows": a.samples, "nnz_per_row": a.nnz,
        "rounds": a.rounds, "runs": a.runs, "synth_seconds": round(synth_s, 2),
        "true_model_accuracy": true_acc,
        "dense_bytes": dense, "keys_per_batch_at_most": keys,
        "median": {k: med(k) for k in runs[0] if k != "peak_rss_mb"},
        "peak_rss_mb_max": {p: max(r["peak_rss_mb"].get(p, 0) for r in runs)
                            for p in runs[0]["peak_rss_mb"]},
        "runs_detail": runs,
    }
    m = result["median"]
    print("sparse logistic regression: %d features, %d rows of %d, %d rounds, median of %d runs"
          % (a.features, a.samples, a.nnz, a.rounds, a.runs))
    print("  data written in %.1f s; true model accuracy %.4f" % (synth_s, true_acc))
    print("  training %.1f s, %d samples/s; final accuracy %.4f"
          % (m["training_s"], m["samples_per_s"], m["final_accuracy"]))
    print("  LAN per push: %d B up, %d B down; a dense gradient is %d B (%.0fx)"
          % (m["lan_up_bytes_per_push"], m["lan_down_bytes_per_push"], dense,
             dense / m["lan_up_bytes_per_push"]))
    print("  WAN per version and region: %d B up, %d B down; a dense delta is %d B (%.1fx up)"
          % (m["wan_up_bytes_per_version_region"], m["wan_down_bytes_per_version_region"], dense,
             dense / m["wan_up_bytes_per_version_region"]))
    print("  peak RSS (MB): %s" % ", ".join("%s %.0f" % kv for kv in result["peak_rss_mb_max"].items()))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print("wrote %s" % a.out)


if __name__ == "__main__":
    main()
