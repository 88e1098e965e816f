#!/usr/bin/env python3
"""datapath.py - the server data path (issue 8): push+pull goodput and round
trips of a real gdml-server against raw ZeroMQ moving the same frames, in one
run.

    python3 tests/bench/datapath.py [--build build] [--quick] [--out docs/bench/datapath.json]

Runs bench_datapath (from --build, else $GDML_BUILD_DIR, else build/), which
for CURVE off and on, 1, 2, 4 and 8 workers and models of 1e3, 1e5, 1e7 and
1e8 floats starts a real gdml-server and a raw ZeroMQ ROUTER, and has the
same worker processes do push+pull rounds through each, alternating, rep by
rep (bench_datapath.c says exactly what each side does). Each figure here is
the median over the reps: goodput (payload both ways over wall time), the
reps' median and p99 round trip, and gdml's goodput as a fraction of raw
ZeroMQ's (the median of each rep's ratio: the two ran side by side).
Target: at least 0.70 of raw ZeroMQ at 1e7 floats, with CURVE off and on.

--quick: 1e3, 1e5 and 1e7 floats, 1 and 4 workers, 3 reps (about a minute).
The default run takes 7-10 minutes on a 2-core machine.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET_FLOATS = 10_000_000
TARGET_RATIO = 0.70


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.environ.get("GDML_BUILD_DIR",
                                                      os.path.join(ROOT, "build")))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "bench", "datapath.json"))
    ap.add_argument("--quick", action="store_true", help="fewer sizes, workers and reps")
    ap.add_argument("--floats", help="model sizes, e.g. 1e3,1e7 (bench_datapath's default: "
                    "1e3,1e5,1e7,1e8)")
    ap.add_argument("--workers", help="worker counts, e.g. 1,8 (default 1,2,4,8)")
    ap.add_argument("--curve", help="off, on or off,on (default)")
    ap.add_argument("--reps", type=int, help="reps per size below 1e8 (default 5)")
    ap.add_argument("--big-reps", type=int, help="reps at 1e8 floats (default 2)")
    return ap.parse_args()


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run_bench(a):
    exe = os.path.join(a.build, "tests", "bench", "bench_datapath")
    cmd = [exe]
    if a.quick:
        cmd.append("--quick")
    for flag, value in (("--floats", a.floats), ("--workers", a.workers),
                        ("--curve", a.curve), ("--reps", a.reps), ("--big-reps", a.big_reps)):
        if value is not None:
            cmd += [flag, str(value)]
    print("running:", " ".join(cmd), file=sys.stderr)
    lines = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as p:
        for line in p.stdout:
            line = line.strip()
            if not line.startswith("{"):
                continue
            row = json.loads(line)
            lines.append(row)
            if "skipped" in row:
                print(f"  curve {row['curve']:3} workers {row['workers']} floats {row['floats']:.0e}: "
                      f"skipped, {row['skipped']}", file=sys.stderr)
            else:
                print(f"  curve {row['curve']:3} workers {row['workers']} floats "
                      f"{row['floats']:.0e} {row['path']:4} rep {row['rep']}: "
                      f"{row['goodput_gbs']:.3f} GB/s (load {row['load']})", file=sys.stderr)
    if p.returncode != 0:
        sys.exit(f"bench_datapath failed (exit {p.returncode})")
    return cmd, lines


def summarize(lines):
    groups = {}
    for row in lines:
        key = (row["curve"], row["workers"], row["floats"])
        g = groups.setdefault(key, {"gdml": {}, "raw": {}, "skipped": row.get("skipped")})
        if "path" in row:
            g[row["path"]][row["rep"]] = row
    rows = []
    for (curve, workers, floats), g in sorted(groups.items(),
                                              key=lambda kv: (kv[0][0] == "on",) + kv[0][2:0:-1]):
        out = {"curve": curve, "workers": workers, "floats": floats}
        if g["skipped"]:
            out["skipped"] = g["skipped"]
            rows.append(out)
            continue
        reps = sorted(set(g["gdml"]) & set(g["raw"]))
        for path in ("gdml", "raw"):
            rs = [g[path][r] for r in reps]
            out[path] = {
                "goodput_gbs": statistics.median(r["goodput_gbs"] for r in rs),
                "rtt_median_ms": statistics.median(r["rtt_median_ms"] for r in rs),
                "rtt_p99_ms": statistics.median(r["rtt_p99_ms"] for r in rs),
                "rounds_per_rep": rs[0]["rounds"],
                "per_rep_goodput_gbs": [r["goodput_gbs"] for r in rs],
            }
        out["ratio"] = statistics.median(g["gdml"][r]["goodput_gbs"] / g["raw"][r]["goodput_gbs"]
                                         for r in reps)
        out["reps"] = len(reps)
        out["load"] = [g["gdml"][r]["load"] for r in reps]
        rows.append(out)
    return rows


def print_table(rows, load_start, load_end):
    print(f"load average at start {load_start}, at end {load_end}")
    print("| CURVE | workers | floats | gdml GB/s | raw GB/s | gdml/raw | gdml RTT median ms | "
          "gdml RTT p99 ms | raw RTT median ms | raw RTT p99 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        head = f"| {r['curve']} | {r['workers']} | {r['floats']:.0e} |"
        if "skipped" in r:
            print(head + f" skipped: {r['skipped']} | | | | | | |")
            continue
        g, w = r["gdml"], r["raw"]
        print(head + f" {g['goodput_gbs']:.3f} | {w['goodput_gbs']:.3f} | {r['ratio']:.2f} |"
              f" {g['rtt_median_ms']:.3f} | {g['rtt_p99_ms']:.3f} |"
              f" {w['rtt_median_ms']:.3f} | {w['rtt_p99_ms']:.3f} |")
    for curve in ("off", "on"):
        at = [r for r in rows if r["curve"] == curve and r["floats"] == TARGET_FLOATS
              and "ratio" in r]
        if at:
            worst = min(r["ratio"] for r in at)
            ratios = ", ".join(f"{r['workers']}w {r['ratio']:.2f}" for r in at)
            verdict = "met" if worst >= TARGET_RATIO else "NOT met"
            print(f"CURVE {curve}, 1e7 floats: gdml/raw {ratios}; target {TARGET_RATIO:.2f}: "
                  f"{verdict}")


def main():
    a = parse()
    load_start, started = loadavg(), time.time()
    cmd, lines = run_bench(a)
    load_end = loadavg()
    rows = summarize(lines)
    report = {
        "command": " ".join(["python3", "tests/bench/datapath.py"] + sys.argv[1:]),
        "bench": [os.path.basename(cmd[0])] + cmd[1:],
        "date": time.strftime("%Y-%m-%d", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release()},
        "load_start": load_start,
        "load_end": load_end,
        "target": {"floats": TARGET_FLOATS, "ratio": TARGET_RATIO},
        "rows": rows,
        "per_rep": lines,
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    print_table(rows, load_start, load_end)
    print(f"wrote {os.path.relpath(a.out)} in {report['seconds']:.0f} s")


if __name__ == "__main__":
    main()
