#!/usr/bin/env python3
"""The differential-privacy benchmark (docs/benchmarks.md, docs/privacy.md).

Runs the softmax job of config/bench-budget.ini (Fashion-MNIST, 4 regions,
Dirichlet alpha 0.5) with each region's deltas clipped to privacy.clip and
noised, for a range of privacy budgets: for each target epsilon (at
delta = 1e-5, per region, over the job's rounds) it picks the smallest noise
multiplier that meets it, runs the job on a few noise seeds, and reports the
epsilon the job itself accounted (summary.json), the final and best test
accuracy. epsilon = inf is the same job without DP. Writes docs/bench/dp.csv.

    python3 tests/bench/dp.py [--build build] [--out docs/bench] [--seeds 1,2,3]
                              [--epsilons 1,4,16,64,256,1024] [--rounds 10] [--clip 1]

The noise multiplier is found with the accountant's own formula (full-batch
Gaussian mechanism, RDP, the conversion of Balle et al. 2020: docs/privacy.md);
the job recomputes epsilon independently, and the run fails if the two
disagree or the job's epsilon passes the target.
"""
import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "config", "bench-budget.ini")
DELTA = 1e-5


def epsilon(z, releases, delta=DELTA):
    """Epsilon of `releases` full-batch Gaussian releases of noise multiplier z
    (RDP alpha / 2z^2 per release, Balle et al. 2020's conversion, the same
    grid of orders as common/wan/rdp.c)."""
    best = math.inf
    for i in range(401):
        a = 1 + 10 ** ((i - 100) / 50)
        e = releases * a / (2 * z * z) + math.log1p(-1 / a) - (math.log(delta) + math.log(a)) / (a - 1)
        best = min(best, max(e, 0.0))
    return best


def noise_for(target, releases):
    """The smallest noise multiplier (to 1e-4 relative) whose epsilon meets target."""
    lo, hi = 1e-3, 1e6
    while hi / lo > 1.0001:
        mid = math.sqrt(lo * hi)
        if epsilon(mid, releases) <= target:
            hi = mid
        else:
            lo = mid
    return hi


def run(build, run_dir, overrides):
    cmd = [os.path.join(build, "gdml-launch"), "--config", CONFIG, "--run-dir", run_dir]
    for o in overrides:
        cmd += ["--set", o]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if out.returncode != 0:
        sys.exit("%s failed (exit %d):\n%s" % (" ".join(cmd), out.returncode, out.stdout[-3000:]))
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    best = 0.0
    with open(os.path.join(run_dir, "rounds.csv")) as f:
        for row in csv.DictReader(f):
            acc = float(row["accuracy"])
            if not math.isnan(acc):
                best = max(best, acc)
    return summary, best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "bench"))
    ap.add_argument("--work", help="keep run directories here (default: a temporary one)")
    ap.add_argument("--seeds", default="1,2,3", help="noise seeds (privacy.seed)")
    ap.add_argument("--epsilons", default="1,4,16,64,256,1024")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--sync-every", type=int, default=200)
    ap.add_argument("--clip", type=float, default=1.0)
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="gdml-dp-")
    seeds = [int(s) for s in args.seeds.split(",")]
    common = ["coordinator.rounds=%d" % args.rounds, "server.sync_every=%d" % args.sync_every,
              "log.level=warn"]
    rows = []
    targets = [float(e) for e in args.epsilons.split(",")] + [math.inf]
    for target in targets:
        z = noise_for(target, args.rounds) if math.isfinite(target) else 0.0
        for seed in seeds:
            name = "eps-%s-seed-%d" % (target, seed)
            extra = [] if z == 0 else [
                "privacy.dp=on", "privacy.clip=%g" % args.clip, "privacy.noise_multiplier=%.6f" % z,
                "privacy.delta=%g" % DELTA, "privacy.epsilon=%g" % target, "privacy.seed=%d" % seed]
            summary, best = run(args.build, os.path.join(work, name), common + extra)
            reported = summary.get("privacy", {}).get("epsilon", math.inf)
            if z and not (reported <= target * 1.0001 and
                          abs(reported - epsilon(z, args.rounds)) < 1e-3 * target):
                sys.exit("%s: the job accounted epsilon %g, this script %g (target %g)" %
                         (name, reported, epsilon(z, args.rounds), target))
            row = {"target_epsilon": target, "noise_multiplier": round(z, 6),
                   "clip": args.clip if z else "", "rounds": args.rounds,
                   "sync_every": args.sync_every, "seed": seed,
                   "epsilon_reported": round(reported, 4) if z else math.inf,
                   "final_accuracy": round(summary["final_accuracy"], 4),
                   "best_accuracy": round(best, 4)}
            rows.append(row)
            print("eps %-6g z %-9.4f seed %d: reported eps %-8.4g final %.4f best %.4f" %
                  (target, z, seed, reported, row["final_accuracy"], best), flush=True)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "dp.csv")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    print("\n| epsilon (delta 1e-5) | noise multiplier | final accuracy, median of %d seeds "
          "(min-max) | best accuracy, median |" % len(seeds))
    print("| --- | --- | --- | --- |")
    for target in targets:
        mine = [r for r in rows if r["target_epsilon"] == target]
        fin = [r["final_accuracy"] for r in mine]
        best = [r["best_accuracy"] for r in mine]
        print("| %s | %s | %.4f (%.4f-%.4f) | %.4f |" %
              ("inf (no DP)" if math.isinf(target) else "%g" % target,
               "-" if math.isinf(target) else "%.4f" % mine[0]["noise_multiplier"],
               statistics.median(fin), min(fin), max(fin), statistics.median(best)))
    print("wrote %s" % path)


if __name__ == "__main__":
    main()
