#!/usr/bin/env python3
"""The communication-budget benchmark (docs/benchmarks.md).

Runs the same geo-distributed job (config/bench-budget.ini: Fashion-MNIST,
4 regions, Dirichlet alpha 0.5, fixed seeds) under each WAN policy, side by side
on this machine, and reports for each the final test accuracy, the cross-DC
bytes (counted from the real ZeroMQ frames) and the bytes it took to first
reach the target accuracy (the centralized run's accuracy minus 0.5 points),
with ratios against full synchronization and against shipping the gzipped raw
data of the non-central regions to one DC. Writes docs/bench/budget.csv and a
plot of accuracy against cross-DC megabytes, and checks from the byte logs that
a budget in bytes per second was never exceeded over any 1 s window.

    python3 tests/bench/budget.py [--build build] [--out docs/bench] [--only NAME ...]
"""
import argparse
import csv
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "config", "bench-budget.ini")
H = 100            # local steps between syncs in the periodic policies
LR_DECAY = 0.93    # per global version at H = 100 steps
BUDGET = 6000      # bytes per second per link and direction, for the budgeted policy

def both(encoder, k=None):
    s = ["server.encoder=" + encoder, "coordinator.encoder=" + encoder]
    if k is not None:
        s += ["server.k_fraction=%g" % k, "coordinator.k_fraction=%g" % k]
    return s

# name, what it is, --set overrides
SCAFFOLD = ["server.drift_correction=scaffold"]

# name, what it is, --set overrides
POLICIES = [
    ("centralized", "all data in one region: no WAN training traffic; the data must be shipped",
     ["launch.regions=central"]),
    ("fullsync", "dense f32 every step, no compression (a plain parameter server)",
     ["server.sync_every=1", "coordinator.rounds=%d" % (60 * H), "coordinator.eval_every=50",
      "server.lr_decay=%.8f" % LR_DECAY ** (1.0 / H)]),
    ("periodic-dense", "dense f32 every %d local steps, SCAFFOLD drift correction" % H, SCAFFOLD),
    ("topk-ef", "top-k (10%, f32 values) with error feedback, both directions", both("topk", 0.1)),
    ("int8", "int8 with per-block scales, error feedback, both directions, SCAFFOLD",
     both("int8") + SCAFFOLD),
    ("significance", "Gaia's significance filter (1% relative change, at most 10%), both directions",
     both("significance", 0.1) + ["server.threshold=0.01", "coordinator.threshold=0.01"]),
    ("topk-int8", "top-k (10%) + int8 with error feedback, both directions", both("topk+int8", 0.1)),
    ("int4", "int4 with per-block scales, error feedback, both directions, SCAFFOLD",
     both("int4") + SCAFFOLD),
    ("budget-%dBps" % BUDGET,
     "controller under %d B/s per link and direction: every %d steps, held until the budget "
     "allows the message; int4, SCAFFOLD" % (BUDGET, H),
     both("int4") + SCAFFOLD + ["budget.up_bytes_per_s=%d" % BUDGET,
                                "budget.down_bytes_per_s=%d" % BUDGET,
                                "budget.min_message_bytes=4200"]),
    ("auto-%dBps" % BUDGET, "encoder = auto: the controller chooses H, encoder and k under %d B/s "
     "per link and direction" % BUDGET,
     both("auto") + ["budget.up_bytes_per_s=%d" % BUDGET, "budget.down_bytes_per_s=%d" % BUDGET,
                     "budget.min_message_bytes=1000"]),
]

def run_policy(build, work, name, overrides):
    run_dir = os.path.join(work, name)
    cmd = [os.path.join(build, "gdml-launch"), "--config", CONFIG, "--run-dir", run_dir]
    for o in overrides:
        cmd += ["--set", o]
    start = time.monotonic()
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if out.returncode != 0:
        sys.exit("policy %s failed (exit %d):\n%s" % (name, out.returncode, out.stdout[-3000:]))
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    rounds = []
    with open(os.path.join(run_dir, "rounds.csv")) as f:
        for row in csv.DictReader(f):
            rounds.append({k: float(v) for k, v in row.items()})
    return {"summary": summary, "rounds": rounds, "run_dir": run_dir,
            "seconds": time.monotonic() - start}

def bytes_to_target(rounds, target):
    for r in rounds:
        if not math.isnan(r["accuracy"]) and r["accuracy"] >= target:
            return int(r["wan_up"] + r["wan_down"])
    return None

def worst_window(run_dir, window_ms=1000):
    """The largest number of bytes any sender put on one link direction in a window."""
    sends = {}
    logs = os.path.join(run_dir, "logs")
    for name in os.listdir(logs):
        if not name.startswith("bytes-"):
            continue
        region = name[len("bytes-"):-len(".csv")]
        with open(os.path.join(logs, name)) as f:
            for row in csv.DictReader(f):
                # A region's log holds what it sent up; the coordinator's what it sent down.
                if (region == "coordinator") != (row["direction"] == "down"):
                    continue
                key = (row["peer"] if region == "coordinator" else region, row["direction"])
                sends.setdefault(key, []).append((int(row["mono_ms"]), int(row["bytes"]),
                                                  float(row["rate"])))
    worst, worst_rate = 0, 0.0
    for key, rows in sends.items():
        rows.sort()
        lo, total = 0, 0
        for t, b, rate in rows:
            total += b
            while rows[lo][0] <= t - window_ms:
                total -= rows[lo][1]
                lo += 1
            if total > worst:
                worst, worst_rate = total, rate
    return worst, worst_rate, sum(len(v) for v in sends.values())

def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d cores, %s" % (model, os.cpu_count(), platform.platform())

def plot(results, target, raw_gzip, out_png):
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        print("gnuplot not found: no plot (bash docker/install-deps.sh installs it)")
        return
    data = out_png[:-4] + ".dat"
    with open(data, "w") as f:
        for name, r in results.items():
            if name == "centralized":
                continue
            f.write('# %s\n' % name)
            for row in r["rounds"]:
                if not math.isnan(row["accuracy"]):
                    f.write("%.6f %.4f\n" % ((row["wan_up"] + row["wan_down"]) / 1e6,
                                             row["accuracy"]))
            f.write("\n\n")
    names = [n for n in results if n != "centralized"]
    plots = ", ".join('"%s" index %d with linespoints pt 7 ps 0.4 title "%s"' % (data, i, n)
                      for i, n in enumerate(names))
    script = f"""
set terminal pngcairo size 1100,650 font ",11"
set output "{out_png}"
set logscale x
set xlabel "cross-DC megabytes (up + down, log scale)"
set ylabel "test accuracy of the global model"
set yrange [0.70:0.86]
set key bottom right
set grid
set title "Fashion-MNIST, 4 regions, non-IID (Dirichlet 0.5): accuracy against WAN bytes"
set arrow from graph 0, first {target} to graph 1, first {target} nohead dt 2 lc rgb "black"
set label "target {target:.4f}" at graph 0.01, first {target + 0.003}
set arrow from {raw_gzip / 1e6}, graph 0 to {raw_gzip / 1e6}, graph 1 nohead dt 3 lc rgb "red"
set label "gzipped raw data" at {raw_gzip / 1e6}, graph 0.05 right offset -0.5,0 tc rgb "red"
plot {plots}
"""
    subprocess.run([gnuplot], input=script, text=True, check=True)
    os.remove(data)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "bench"))
    ap.add_argument("--work", help="keep run directories here (default: a temporary one)")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="gdml-bench-")
    os.makedirs(args.out, exist_ok=True)
    print("machine:", machine())
    results = {}
    for name, what, overrides in POLICIES:
        results[name] = run_policy(args.build, work, name, overrides)
        s = results[name]["summary"]
        print("  ran %-16s final accuracy %.4f, %.2f MB cross-DC, %.1f s" %
              (name, s["final_accuracy"], (s["wan_bytes_up"] + s["wan_bytes_down"]) / 1e6,
               s["wall_seconds"]))

    central = results["centralized"]["summary"]
    target = round(central["final_accuracy"] - 0.005, 6)
    raw_gzip = results["periodic-dense"]["summary"]["raw_data_gzip_bytes"]
    raw = results["periodic-dense"]["summary"]["raw_data_bytes"]
    full = bytes_to_target(results["fullsync"]["rounds"], target)

    rows = []
    for name, what, _ in POLICIES:
        r = results[name]
        s = r["summary"]
        if name == "centralized":
            up, down, to_target, reached = raw_gzip, 0, raw_gzip, True
        else:
            up, down = s["wan_bytes_up"], s["wan_bytes_down"]
            to_target = bytes_to_target(r["rounds"], target)
            reached = to_target is not None
        rows.append({
            "policy": name,
            "final_accuracy": "%.4f" % s["final_accuracy"],
            "target_accuracy": "%.4f" % target,
            "reached_target": int(reached),
            "bytes_up": up, "bytes_down": down, "bytes_total": up + down,
            "bytes_to_target": to_target if reached else "",
            "wall_seconds": "%.1f" % s["wall_seconds"],
            "ratio_vs_fullsync": "%.1f" % (full / to_target) if reached and full else "",
            "ratio_vs_raw_gzip": "%.1f" % (raw_gzip / to_target) if reached else "",
        })
    csv_path = os.path.join(args.out, "budget.csv")
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)

    print()
    print("target accuracy %.4f (centralized %.4f - 0.005); raw data of the non-central regions "
          "%.2f MB, %.2f MB gzipped" % (target, central["final_accuracy"], raw / 1e6,
                                        raw_gzip / 1e6))
    print("%-16s %8s %7s %10s %10s %10s %12s %7s %9s %9s" %
          ("policy", "final", "target", "up MB", "down MB", "total MB", "to-target MB", "wall s",
           "x fullsync", "x raw gz"))
    for row in rows:
        to_t = "%.3f" % (row["bytes_to_target"] / 1e6) if row["bytes_to_target"] != "" else "never"
        print("%-16s %8s %7s %10.3f %10.3f %10.3f %12s %7s %9s %9s" %
              (row["policy"], row["final_accuracy"], "yes" if row["reached_target"] else "no",
               row["bytes_up"] / 1e6, row["bytes_down"] / 1e6, row["bytes_total"] / 1e6, to_t,
               row["wall_seconds"], row["ratio_vs_fullsync"] or "-",
               row["ratio_vs_raw_gzip"] or "-"))

    budget_name = "budget-%dBps" % BUDGET
    worst, rate, n = worst_window(results[budget_name]["run_dir"])
    ok = worst <= BUDGET
    print("\nbudget check (%s): %d messages; the fullest 1 s window on any link direction held "
          "%d bytes; budget %d B/s: %s" % (budget_name, n, worst, BUDGET, "OK" if ok else "EXCEEDED"))
    png = os.path.join(args.out, "budget.png")
    plot(results, target, raw_gzip, png)
    print("wrote %s and %s" % (csv_path, png))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1

if __name__ == "__main__":
    sys.exit(main())
