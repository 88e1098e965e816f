#!/usr/bin/env python3
"""wan.py - gdml over an emulated WAN against the same job over loopback links,
in one run, on the WAN harness (tests/wan): time to the target accuracy,
worker utilization, full sync's time over the same WAN, and stragglers.

    sudo python3 tests/bench/wan.py [--runs 5] [--target 0.81] [--only lan wan ...]

- LAN: every link without delay or rate cap (the same namespaces and
  forwarder, so the only difference is the WAN).
- The main job (rounds of 100 steps, top-k+int2 deltas; lan_dense and
  wan_dense: the same with dense deltas, as it was before 2026-12-03), and the job tuned for a
  WAN as docs/consistency.md advises ("tuned"): the same 4000 steps in rounds
  of 200, whose training outlasts the WAN's round trip, with int8 deltas both
  ways (a delta fits in TCP's first flight) and the learning-rate decay per
  round matched to the same decay per step.
- WAN: 50 ms each way (100 ms round trip), 50 Mbit/s; also with 1% loss,
  and with TCP's initial window raised on the WAN routes (initcwnd 64), as
  an operator would tune a WAN route.
- Full sync: a delta every step (server.sync_every = 1), over the same WAN:
  its time per step, and its steps to the target measured over the LAN;
  their product is labelled extrapolated.
- Stragglers: one region's workers slowed to about a quarter of the others'
  speed; plain synchronous rounds, quorum (2 of 3) and async.

Times count from the moment every process was started. Runs of the
configurations are interleaved and each figure is the median of --runs.
Writes docs/bench/wan.json.
"""

import argparse
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "wan"))
import wan_job  # noqa: E402

WAN = ["--delay-ms", "50", "--rate", "50mbit"]


def run(args, target):
    s = wan_job.run(wan_job.parse(["--quiet", "--target", str(target), *args]))
    if not s["ok"]:
        raise RuntimeError("a run failed: %s" % json.dumps(s)[:2000])
    return s


def med(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 3) if xs else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--target", type=float, default=0.81)
    ap.add_argument("--out", help="default docs/bench/wan.json (wan-only.json with --only)")
    ap.add_argument("--only", nargs="*", help="run only these configurations, and neither "
                    "full sync nor the stragglers")
    a = ap.parse_args()
    a.out = a.out or os.path.join(ROOT, "docs", "bench",
                                  "wan-only.json" if a.only else "wan.json")
    # The main job (H = 100 steps, about 110-140 ms of training a round
    # here) and the WAN-tuned job: H = 200 (about 250 ms, longer than the
    # WAN's round trip), int8 both ways, the decay per step the main job's.
    tuned = ["--set", "server.sync_every=200", "--set", "coordinator.rounds=20",
             "--set", "server.lr_decay=%.6f" % (0.93 ** 2),
             "--set", "server.encoder=int8", "--set", "coordinator.encoder=int8"]
    dense = ["--set", "server.encoder=dense", "--set", "coordinator.encoder=dense",
             "--set", "server.lr_decay=0.93"]
    loss1 = ["--loss", "us-east=0.01", "--loss", "eu-west=0.01", "--loss", "ap-south=0.01"]
    configs = {
        "lan": [],
        "wan": WAN,
        "wan_loss1": WAN + loss1,
        "wan_initcwnd": WAN + ["--initcwnd", "64"],
        "wan_overlap_off": WAN + ["--set", "server.overlap=off"],
        "lan_tuned": tuned,
        "wan_tuned": WAN + tuned,
        "wan_tuned_loss1": WAN + tuned + loss1,
        "wan_tuned_overlap_off": WAN + tuned + ["--set", "server.overlap=off"],
        "wan_tuned_early_off": WAN + tuned + ["--set", "server.early_start=off"],
        # The main job before it sent top-k+int2 deltas (2026-12-03).
        "lan_dense": dense,
        "wan_dense": WAN + dense,
    }
    if a.only:
        unknown = set(a.only) - set(configs)
        if unknown:
            ap.error("no configuration %s; there are %s" % (", ".join(sorted(unknown)),
                                                             ", ".join(configs)))
        configs = {k: v for k, v in configs.items() if k in a.only}
    results = {k: [] for k in configs}
    for i in range(a.runs):
        for name, args in configs.items():
            s = run(args, a.target)
            results[name].append(s)
            print("run %d %-16s to target %6s s  training %6.2f s  final %.4f  util %.3f" %
                  (i + 1, name, s["time_to_target_s"], s["training_s"], s["final_accuracy"],
                   s["utilization"] or 0), flush=True)
    table = {}
    for name, runs in results.items():
        table[name] = {
            "time_to_target_s": med([r["time_to_target_s"] for r in runs]),
            "wall_s": med([r["wall_s"] for r in runs]),
            "training_s": med([r["training_s"] for r in runs]),
            "final_accuracy": med([r["final_accuracy"] for r in runs]),
            "utilization": med([r["utilization"] for r in runs]),
            "runs": len(runs),
        }
    for name in table:
        base = "lan_tuned" if "tuned" in name else "lan_dense" if "dense" in name else "lan"
        if base not in table:
            continue
        lan = table[base]["time_to_target_s"]
        t = table[name]["time_to_target_s"]
        table[name]["vs_lan"] = round(t / lan, 3) if t and lan else None
        table[name]["training_vs_lan"] = round(table[name]["training_s"] /
                                               table[base]["training_s"], 3)
    if a.only:
        out = {"machine": "%s, %d cores" % (os.uname().nodename, os.cpu_count()),
               "target": a.target, "configs": table}
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(out, f, indent=2)
        print(json.dumps(out, indent=2))
        return 0

    # Full sync over the same WAN: time per step, steps to target on the LAN.
    steps_wan = run(WAN + ["--set", "server.sync_every=1", "--set", "coordinator.rounds=30",
                           "--set", "server.overlap=off"], a.target)
    per_step = steps_wan["training_s"] / 30
    full_lan = run(["--set", "server.sync_every=1", "--set", "coordinator.rounds=4000",
                    "--set", "server.overlap=off", "--set", "server.lr_decay=0.9995"], a.target)
    steps_to_target = None
    if full_lan["time_to_target_s"] is not None:
        # Rounds are steps here; the version that first reached the target.
        steps_to_target = round(full_lan["time_to_target_s"] / full_lan["wall_s"] *
                                full_lan["versions_reported"])
    full = {"wan_seconds_per_step": round(per_step, 4),
            "lan_steps_to_target_approx": steps_to_target,
            "wan_time_to_target_s_extrapolated":
                round(per_step * steps_to_target, 1) if steps_to_target else None}
    gd = min(t for t in (table["wan"]["time_to_target_s"], table["wan_tuned"]["time_to_target_s"])
             if t is not None)
    full["gdml_speedup"] = round(full["wan_time_to_target_s_extrapolated"] / gd, 1) \
        if gd and full["wan_time_to_target_s_extrapolated"] else None

    # Stragglers: ap-south's workers wait 3 ms a step.
    slow = ["--slow", "ap-south=3"]
    strag = {}
    for name, args in {"sync": [], "quorum": ["--set", "coordinator.consistency=quorum"],
                       "async": ["--set", "coordinator.consistency=async",
                                 "--set", "coordinator.rounds=120"]}.items():
        s = run(slow + args, a.target)
        strag[name] = {"time_to_target_s": s["time_to_target_s"],
                       "final_accuracy": s["final_accuracy"], "wall_s": s["wall_s"]}
        print("straggler %-7s to target %6s s  final %.4f" %
              (name, s["time_to_target_s"], s["final_accuracy"]), flush=True)

    out = {"machine": "%s, %d cores" % (os.uname().nodename, os.cpu_count()),
           "target": a.target, "configs": table, "full_sync": full, "stragglers": strag}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
