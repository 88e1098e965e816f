#!/usr/bin/env python3
"""wan_mlp.py - the MLP job (config/mlp-job.ini: 784-256-128-10, 4 non-IID
regions) over the emulated WAN against the same job over loopback links, in
one run, on the WAN harness (tests/wan). The main job's WAN benchmark
(wan.py) times a job that reaches its target in about a second, so its
ratio mostly measures joining (handshakes over a 100 ms round trip); this
one times a job whose training, as real training does, outlasts the WAN's
fixed costs.

    sudo python3 tests/bench/wan_mlp.py [--runs 3] [--target 0.88]

Configurations (runs interleaved, medians of --runs):
- "as shipped": config/mlp-job.ini unchanged (overlap off: every round waits
  for its global model, dense float32 deltas);
- "overlap": the same with server.overlap = on, as docs/consistency.md
  advises for a WAN: the region trains on while its delta and the next
  global model are in flight;
each on the LAN (the same namespaces and forwarder, no delay, no rate cap)
and on the WAN (50 ms each way, 50 Mbit/s), the overlapped job also with 1%
loss on every link.

Full sync (a delta every step, overlap off) over the same WAN: its seconds
per step over --full-steps steps, and its steps to the target measured on the
LAN with the same learning-rate decay per step as the job's per round; their
product is labelled extrapolated. Writes docs/bench/wan_mlp.json.
"""

import argparse
import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def load_main_bench():
    """tests/bench/wan.py (run, med, WAN), by path: tests/wan/wan.py, which it
    imports in turn, has the same module name."""
    spec = importlib.util.spec_from_file_location("wan_bench", os.path.join(HERE, "wan.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


wanbench = load_main_bench()

CONFIG = os.path.join(ROOT, "config", "mlp-job.ini")
H = 100           # the job's server.sync_every
LR_DECAY = 0.98   # the job's server.lr_decay, per round of H steps


def job(*args):
    return ["--config", CONFIG, "--timeout", "1800", *args]


def summarize(runs):
    keys = ("time_to_target_s", "training_s", "wall_s", "final_accuracy", "last5_accuracy",
            "utilization")
    out = {k: wanbench.med([r[k] for r in runs]) for k in keys}
    out["runs"] = len(runs)
    out["each_time_to_target_s"] = [r["time_to_target_s"] for r in runs]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--target", type=float, default=0.88)
    ap.add_argument("--full-steps", type=int, default=30,
                    help="steps of full sync timed over the WAN")
    ap.add_argument("--full-lan-steps", type=int, default=6000,
                    help="at most this many full-sync steps on the LAN to find its steps to target")
    ap.add_argument("--skip-full", action="store_true", help="leave full sync out")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "bench", "wan_mlp.json"))
    a = ap.parse_args()

    wan, overlap = wanbench.WAN, ["--set", "server.overlap=on"]
    loss1 = []
    for r in wanbench.wan_job.read_ini(CONFIG)["launch"]["regions"].split(","):
        loss1 += ["--loss", r.strip() + "=0.01"]
    configs = {
        "lan": job(),
        "wan": job(*wan),
        "lan_overlap": job(*overlap),
        "wan_overlap": job(*wan, *overlap),
        "wan_overlap_loss1": job(*wan, *overlap, *loss1),
    }
    results = {k: [] for k in configs}
    for i in range(a.runs):
        for name, args in configs.items():
            s = wanbench.run(args, a.target)
            results[name].append(s)
            print("run %d %-18s to target %7s s  training %7.2f s  final %.4f  util %.3f" %
                  (i + 1, name, s["time_to_target_s"], s["training_s"], s["final_accuracy"],
                   s["utilization"] or 0), flush=True)
    table = {name: summarize(runs) for name, runs in results.items()}
    for name, row in table.items():
        lan = table["lan_overlap" if "overlap" in name else "lan"]
        t, l = row["time_to_target_s"], lan["time_to_target_s"]
        row["vs_lan"] = round(t / l, 3) if t and l else None
        row["training_vs_lan"] = round(row["training_s"] / lan["training_s"], 3)

    full = None
    if not a.skip_full:
        step_decay = "%.8f" % LR_DECAY ** (1.0 / H)
        per = wanbench.run(job(*wan, "--set", "server.sync_every=1", "--set",
                               "coordinator.rounds=%d" % a.full_steps, "--set",
                               "server.overlap=off", "--set", "coordinator.eval_every=1000000"),
                           a.target)
        per_step = per["training_s"] / a.full_steps
        lan = wanbench.run(job("--set", "server.sync_every=1", "--set",
                               "coordinator.rounds=%d" % a.full_lan_steps, "--set",
                               "server.overlap=off", "--set", "coordinator.eval_every=50",
                               "--set", "server.lr_decay=" + step_decay), a.target)
        steps = lan["version_at_target"]  # rounds are steps here
        best = min(t for t in (table["wan"]["time_to_target_s"],
                               table["wan_overlap"]["time_to_target_s"]) if t is not None)
        full = {"wan_seconds_per_step": round(per_step, 4),
                "lan_steps_to_target_approx": steps,
                "lan_steps_run": a.full_lan_steps,
                "lan_final_accuracy": lan["final_accuracy"],
                "wan_time_to_target_s_extrapolated":
                    round(per_step * steps, 1) if steps else None}
        # Not reached within the steps run: full sync needs more than that many.
        lower = per_step * (steps or a.full_lan_steps)
        full["gdml_speedup"] = round(lower / best, 1) if best else None
        full["gdml_speedup_is_lower_bound"] = steps is None

    out = {"machine": "%s, %d cores, load %.1f at the end" %
           (os.uname().nodename, os.cpu_count(), os.getloadavg()[0]),
           "target": a.target, "configs": table, "full_sync": full}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
