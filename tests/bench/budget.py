#!/usr/bin/env python3
"""The communication-budget benchmark (docs/benchmarks.md).

Runs the same geo-distributed job (config/bench-budget.ini for softmax
regression, config/bench-budget-mlp.ini for the 784-256-128-10 MLP:
Fashion-MNIST, 4 regions, Dirichlet alpha 0.5) under each WAN policy, on every
model seed (--seeds) and split seed (--splits), and reports per policy the
medians over those runs of the final test accuracy, the cross-DC bytes
(counted from the real ZeroMQ frames) and the bytes it took to reach the target
accuracy (the centralized runs' median accuracy minus 0.5 points) *and hold it*:
the bytes at the first version after which every evaluated version stays at or
above the target, to the end, for at least HOLD_ROUNDS rounds of H steps. A
run that touches the target once and falls back has not reached it. Ratios
are against full synchronization and against shipping the gzipped raw data of
the non-central regions to one DC. Writes docs/bench/budget[-mlp].csv (the
medians), budget[-mlp]-runs.csv (every run) and a plot of accuracy against
cross-DC megabytes, and checks from the byte logs that a budget in bytes per
second was never exceeded over any 1 s window.

    python3 tests/bench/budget.py [--model softmax|mlp] [--seeds 1,2,3] [--splits 7,8]
                                  [--only NAME ...] [--build build] [--out docs/bench]
"""
import argparse
import csv
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
H = 100            # local steps between syncs in the periodic policies
HOLD_ROUNDS = 5    # rounds of H steps a run must stay at the target, to its end
BUDGET = 6000      # bytes per second per link and direction, for the budgeted policy


def both(encoder, k=None):
    s = ["server.encoder=" + encoder, "coordinator.encoder=" + encoder]
    if k is not None:
        s += ["server.k_fraction=%g" % k, "coordinator.k_fraction=%g" % k]
    return s


SCAFFOLD = ["server.drift_correction=scaffold"]


def policy(name, what, overrides, steps_per_eval=H):
    return {"name": name, "what": what, "set": overrides, "steps_per_eval": steps_per_eval}


def softmax_policies():
    lr_decay = 0.93
    return [
        policy("centralized", "all data in one region: no WAN training traffic; the data must be "
               "shipped", ["launch.regions=central"]),
        policy("fullsync", "dense f32 every step, no compression (a plain parameter server)",
               ["server.sync_every=1", "coordinator.rounds=%d" % (60 * H),
                "coordinator.eval_every=50", "server.lr_decay=%.8f" % lr_decay ** (1.0 / H)],
               steps_per_eval=50),
        policy("periodic-dense", "dense f32 every %d local steps, SCAFFOLD" % H, SCAFFOLD),
        policy("topk-ef", "top-k (10%, f32 values) with error feedback, both directions, no drift "
               "correction", both("topk", 0.1)),
        policy("int8", "int8, error feedback, both directions, SCAFFOLD", both("int8") + SCAFFOLD),
        policy("significance", "Gaia's significance filter (1% relative change, at most 10%), "
               "both directions", both("significance", 0.1) +
               ["server.threshold=0.01", "coordinator.threshold=0.01"]),
        policy("topk-int8", "top-k (10%) + int8 with error feedback, both directions, no drift "
               "correction", both("topk+int8", 0.1)),
        policy("int4", "int4, error feedback, both directions, SCAFFOLD", both("int4") + SCAFFOLD),
        policy("int2", "int2, error feedback, both directions, SCAFFOLD", both("int2") + SCAFFOLD),
        policy("topk-int4", "top-k (10%) + int4 with error feedback, both directions, no drift "
               "correction", both("topk+int4", 0.1)),
        policy("topk-int2", "top-k (10%) + int2 with error feedback, both directions, no drift "
               "correction", both("topk+int2", 0.1)),
        policy("randk-int4", "random-k (10%) + int4 with error feedback, both directions, no "
               "drift correction", both("randk+int4", 0.1)),
        policy("budget-%dBps" % BUDGET,
               "int4, SCAFFOLD, under %d B/s per link and direction: every %d steps, held until "
               "the budget allows the message" % (BUDGET, H),
               both("int4") + SCAFFOLD + ["budget.up_bytes_per_s=%d" % BUDGET,
                                          "budget.down_bytes_per_s=%d" % BUDGET,
                                          "budget.min_message_bytes=4200"]),
        policy("auto-%dBps" % BUDGET, "encoder = auto, SCAFFOLD: the controller chooses H, "
               "encoder and k under %d B/s per link and direction" % BUDGET,
               both("auto") + SCAFFOLD + ["budget.up_bytes_per_s=%d" % BUDGET,
                               "budget.down_bytes_per_s=%d" % BUDGET,
                               "budget.min_message_bytes=1000"]),
    ]


def mlp_policies():
    return [
        policy("centralized", "all data in one region, 8 workers (the same 512 samples a step as "
               "the 4 regions' 2 workers each): no WAN traffic; the data must be shipped",
               ["launch.regions=central", "launch.workers=8"]),
        policy("int4", "int4, error feedback, both directions, SCAFFOLD", both("int4") + SCAFFOLD),
        policy("topk-int4", "top-k (10%) + int4 with error feedback, both directions, no drift "
               "correction", both("topk+int4", 0.1)),
        policy("topk-int2", "top-k (3%) + int2 with error feedback, both directions, no drift "
               "correction", both("topk+int2", 0.03)),
    ]


MLP_PARAMS = 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
REGIONS = 4


def estimated_fullsync(central_runs, target):
    """Full sync of the MLP is not run (it would move about 1 GB every 130 steps): its bytes to
    target are estimated, from below, as the dense f32 tensor (4 bytes a parameter, no headers)
    up and down on each of the 4 links every step, times the steps the centralized run (the
    same 512 samples a step) took to reach and hold the target."""
    steps = []
    for r in central_runs:
        b, held = held_at_target(r["rounds"], target, HOLD_ROUNDS)
        if b is None:
            return None
        steps.append(r["rounds"][len(r["rounds"]) - held]["version"] * H)
    return 2 * REGIONS * 4 * MLP_PARAMS * statistics.median(steps)


MODELS = {
    "softmax": {"config": "bench-budget.ini", "policies": softmax_policies, "suffix": "",
                "yrange": "0.70:0.86"},
    "mlp": {"config": "bench-budget-mlp.ini", "policies": mlp_policies, "suffix": "-mlp",
            "yrange": "0.70:0.90"},
}


def run_policy(build, config, work, pol, seed, split):
    run_dir = os.path.join(work, "%s-s%d-d%d" % (pol["name"], seed, split))
    cmd = ["nice", os.path.join(build, "gdml-launch"), "--config", config, "--run-dir", run_dir,
           "--set", "model.seed=%d" % seed, "--set", "launch.seed=%d" % split]
    for o in pol["set"]:
        cmd += ["--set", o]
    start = time.monotonic()
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if out.returncode != 0:
        sys.exit("policy %s (seed %d, split %d) failed (exit %d):\n%s" %
                 (pol["name"], seed, split, out.returncode, out.stdout[-3000:]))
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    rounds = []
    with open(os.path.join(run_dir, "rounds.csv")) as f:
        for row in csv.DictReader(f):
            r = {k: float(v) for k, v in row.items()}
            if not math.isnan(r["accuracy"]):
                rounds.append(r)
    return {"summary": summary, "rounds": rounds, "run_dir": run_dir, "seed": seed,
            "split": split, "seconds": time.monotonic() - start}


def held_at_target(rounds, target, min_evals):
    """(bytes, evaluations held): the bytes at the first evaluated version from which every
    later one is at or above target, if at least min_evals of them are; else (None, held)."""
    held = 0
    for r in reversed(rounds):
        if r["accuracy"] < target:
            break
        held += 1
    if held < min_evals or held == 0:
        return None, held
    first = rounds[len(rounds) - held]
    return int(first["wan_up"] + first["wan_down"]), held


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
                sends.setdefault(key, []).append((int(row["mono_ms"]), int(row["bytes"])))
    worst = 0
    for rows in sends.values():
        rows.sort()
        lo, total = 0, 0
        for t, b in rows:
            total += b
            while rows[lo][0] <= t - window_ms:
                total -= rows[lo][1]
                lo += 1
            worst = max(worst, total)
    return worst, sum(len(v) for v in sends.values())


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


def load():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def median_or_none(values):
    """The median, where None (never reached) counts as larger than any number."""
    if not values:
        return None
    ordered = sorted(values, key=lambda v: (v is None, v or 0))
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    a, b = ordered[mid - 1], ordered[mid]
    return None if a is None or b is None else (a + b) / 2


def plot(results, target, raw_gzip, out_png, model):
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        print("gnuplot not found: no plot (bash docker/install-deps.sh installs it)")
        return
    data = out_png[:-4] + ".dat"
    names = []
    with open(data, "w") as f:
        for name, runs in results.items():
            if name == "centralized":
                continue
            names.append(name)
            f.write('# %s (seed %d, split %d)\n' % (name, runs[0]["seed"], runs[0]["split"]))
            for row in runs[0]["rounds"]:
                f.write("%.6f %.4f\n" % ((row["wan_up"] + row["wan_down"]) / 1e6, row["accuracy"]))
            f.write("\n\n")
    plots = ", ".join('"%s" index %d with linespoints pt 7 ps 0.4 title "%s"' % (data, i, n)
                      for i, n in enumerate(names))
    script = f"""
set terminal pngcairo size 1100,650 font ",11"
set output "{out_png}"
set logscale x
set xlabel "cross-DC megabytes (up + down, log scale)"
set ylabel "test accuracy of the global model"
set yrange [{MODELS[model]["yrange"]}]
set key bottom right
set grid
set title "Fashion-MNIST, {model}, 4 regions, Dirichlet 0.5 (first seed): accuracy against WAN bytes"
set arrow from graph 0, first {target} to graph 1, first {target} nohead dt 2 lc rgb "black"
set label "target {target:.4f}" at graph 0.01, first {target + 0.003}
set arrow from {raw_gzip / 1e6}, graph 0 to {raw_gzip / 1e6}, graph 1 nohead dt 3 lc rgb "red"
set label "gzipped raw data" at {raw_gzip / 1e6}, graph 0.05 right offset -0.5,0 tc rgb "red"
plot {plots}
"""
    subprocess.run([gnuplot], input=script, text=True, check=True)
    os.remove(data)


def fmt_mb(b):
    return "%.3f" % (b / 1e6) if b is not None else "never"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="softmax")
    ap.add_argument("--seeds", default="1,2,3", help="model seeds, comma-separated")
    ap.add_argument("--splits", default="7,8", help="split seeds, comma-separated")
    ap.add_argument("--only", nargs="*", help="run only these policies (centralized always runs)")
    ap.add_argument("--fullsync-bytes", type=float,
                    help="full sync's median bytes to target, when it is not run (--only)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "bench"))
    ap.add_argument("--work", help="keep run directories here (default: a temporary one)")
    args = ap.parse_args()
    spec = MODELS[args.model]
    config = os.path.join(ROOT, "config", spec["config"])
    seeds = [int(s) for s in args.seeds.split(",")]
    splits = [int(s) for s in args.splits.split(",")]
    policies = [p for p in spec["policies"]()
                if not args.only or p["name"] in args.only or p["name"] == "centralized"]
    work = args.work or tempfile.mkdtemp(prefix="gdml-bench-")
    os.makedirs(args.out, exist_ok=True)
    began = time.monotonic()
    print("machine:", machine(), "load %.1f" % load())
    results = {}
    for pol in policies:
        results[pol["name"]] = []
        for seed in seeds:
            for split in splits:
                r = run_policy(args.build, config, work, pol, seed, split)
                results[pol["name"]].append(r)
                s = r["summary"]
                print("  ran %-18s seed %d split %d: final %.4f, %.3f MB cross-DC, %.1f s, "
                      "load %.1f" % (pol["name"], seed, split, s["final_accuracy"],
                                     (s["wan_bytes_up"] + s["wan_bytes_down"]) / 1e6,
                                     s["wall_seconds"], load()), flush=True)

    central = [r["summary"]["final_accuracy"] for r in results["centralized"]]
    target = round(statistics.median(central) - 0.005, 6)
    any_run = next(r for n, runs in results.items() if n != "centralized" for r in runs) \
        if len(results) > 1 else results["centralized"][0]
    raw_gzip = any_run["summary"]["raw_data_gzip_bytes"]
    raw = any_run["summary"]["raw_data_bytes"]

    run_rows, rows = [], []
    medians = {}
    for pol in policies:
        name = pol["name"]
        min_evals = max(1, HOLD_ROUNDS * H // pol["steps_per_eval"])
        per_run = []
        for r in results[name]:
            s = r["summary"]
            if name == "centralized":
                # Its bytes are the raw data, gzipped; it holds the target if its accuracy does.
                to_t, held = held_at_target(r["rounds"], target, min_evals)
                up, down = raw_gzip, 0
                to_t = raw_gzip if to_t is not None else None
            else:
                up, down = s["wan_bytes_up"], s["wan_bytes_down"]
                to_t, held = held_at_target(r["rounds"], target, min_evals)
            per_run.append({"final": s["final_accuracy"], "up": up, "down": down,
                            "to_target": to_t, "held": held, "wall": s["wall_seconds"]})
            run_rows.append({"policy": name, "seed": r["seed"], "split": r["split"],
                             "final_accuracy": "%.4f" % s["final_accuracy"],
                             "bytes_up": up, "bytes_down": down,
                             "bytes_to_target_held": to_t if to_t is not None else "",
                             "evaluations_held": held, "wall_seconds": "%.1f" % s["wall_seconds"]})
        medians[name] = {
            "final": statistics.median(p["final"] for p in per_run),
            "up": statistics.median(p["up"] for p in per_run),
            "down": statistics.median(p["down"] for p in per_run),
            "to_target": median_or_none([p["to_target"] for p in per_run]),
            "held_runs": sum(p["to_target"] is not None for p in per_run),
            "runs": len(per_run),
            "held_min": min(p["held"] for p in per_run),
            "wall": statistics.median(p["wall"] for p in per_run),
        }
    full = medians["fullsync"]["to_target"] if "fullsync" in medians else args.fullsync_bytes
    if full is None and args.model == "mlp":
        full = estimated_fullsync(results["centralized"], target)
        print("full sync (estimated from the centralized runs' steps): %s MB to target" %
              fmt_mb(full))
    for pol in policies:
        m = medians[pol["name"]]
        t = m["to_target"]
        rows.append({
            "policy": pol["name"], "what": pol["what"],
            "seeds": "%d x %d" % (len(seeds), len(splits)),
            "final_accuracy": "%.4f" % m["final"], "target_accuracy": "%.4f" % target,
            "runs_held_target": "%d/%d" % (m["held_runs"], m["runs"]),
            "min_evaluations_held": m["held_min"],
            "bytes_up": int(m["up"]), "bytes_down": int(m["down"]),
            "bytes_total": int(m["up"] + m["down"]),
            "bytes_to_target_held": int(t) if t is not None else "",
            "wall_seconds": "%.1f" % m["wall"],
            "ratio_vs_fullsync": "%.1f" % (full / t) if t and full else "",
            "ratio_vs_raw_gzip": "%.1f" % (raw_gzip / t) if t else "",
        })
    suffix = spec["suffix"]
    csv_path = os.path.join(args.out, "budget%s.csv" % suffix)
    for path, table in ((csv_path, rows),
                        (os.path.join(args.out, "budget%s-runs.csv" % suffix), run_rows)):
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(table[0].keys()))
            w.writeheader()
            w.writerows(table)

    print()
    print("%s: target accuracy %.4f (centralized median %.4f - 0.005, over %d runs); raw data of "
          "the non-central regions %.2f MB, %.2f MB gzipped" %
          (args.model, target, statistics.median(central), len(central), raw / 1e6,
           raw_gzip / 1e6))
    print("medians over %d seeds x %d split seeds; 'to target' = reached and held for the last "
          ">= %d rounds" % (len(seeds), len(splits), HOLD_ROUNDS))
    print("%-18s %7s %6s %8s %9s %13s %7s %9s %9s" %
          ("policy", "final", "held", "min held", "total MB", "to-target MB", "wall s",
           "x fullsync", "x raw gz"))
    for row in rows:
        t = row["bytes_to_target_held"]
        print("%-18s %7s %6s %8d %9.3f %13s %7s %9s %9s" %
              (row["policy"], row["final_accuracy"], row["runs_held_target"],
               row["min_evaluations_held"], row["bytes_total"] / 1e6,
               fmt_mb(t if t != "" else None), row["wall_seconds"],
               row["ratio_vs_fullsync"] or "-", row["ratio_vs_raw_gzip"] or "-"))

    ok = True
    budgeted = [n for n in results if n.startswith(("budget-", "auto-"))]
    for name in budgeted:
        for r in results[name]:
            worst, n = worst_window(r["run_dir"])
            ok = ok and worst <= BUDGET
            print("budget check (%s, seed %d, split %d): %d messages; the fullest 1 s window held "
                  "%d bytes of %d: %s" % (name, r["seed"], r["split"], n, worst, BUDGET,
                                           "OK" if worst <= BUDGET else "EXCEEDED"))
    png = os.path.join(args.out, "budget%s.png" % suffix)
    if len(results) > 1:
        plot(results, target, raw_gzip, png, args.model)
    print("wrote %s and %s; the benchmark took %.0f s" % (csv_path, png, time.monotonic() - began))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
