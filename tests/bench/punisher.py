#!/usr/bin/env python3
"""punisher.py - the punisher soak: kill -9 a random process of a running job,
coordinator included, every 20-40 s for 10 failures, with gdml-launch's
supervisor restarting each; then the same job without faults.

    python3 tests/bench/punisher.py [--kills 10] [--every-ms 30000] [--keep]

It reports completion, final accuracy against the fault-free run, versions
lost (missing from the store) and deltas merged twice (gdml-models verify),
and for each failure the seconds from the restart until the restarted
process contributed again:
  - the coordinator: its next committed version;
  - a regional server: the next version that merges a delta of its region;
  - a worker: its first gradient after the restart (it logs "first_model").
Writes docs/bench/punisher.json. Takes about 2 x (kills x every x 4/3 + 30 s) of
wall time (about 15 minutes by default).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(os.environ.get("GDML_BUILD_DIR", os.path.join(ROOT, "build")))
sys.path.insert(0, os.path.join(ROOT, "tests", "wan"))
import history  # noqa: E402

# A job long enough for the faults: rounds of about half a second, a learning
# rate that still learns at the end.
JOB = ["--set", "worker.step_delay_ms=4", "--set", "server.lr_decay=0.995",
       "--set", "net.peer_timeout_ms=3000", "--set", "coordinator.round_deadline_ms=2000"]


def launch(run_dir, rounds, extra):
    argv = [os.path.join(BUILD, "gdml-launch"), "--config",
            os.path.join(ROOT, "config", "local-job.ini"), "--run-dir", run_dir,
            "--set", "coordinator.rounds=%d" % rounds, *JOB, *extra]
    t = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True)
    return r, time.monotonic() - t


def summary(run_dir):
    with open(os.path.join(run_dir, "summary.json")) as f:
        return json.load(f)


def audit(run_dir):
    return history.verify(os.path.join(BUILD, "gdml-models"), os.path.join(run_dir, "store"))


def version_times(run_dir):
    """{version: seconds since the launcher started} from rounds.csv."""
    out = {}
    with open(os.path.join(run_dir, "rounds.csv")) as f:
        for line in f.readlines()[1:]:
            v, ms = line.split(",")[:2]
            out[int(v)] = int(ms) / 1000.0
    return out


def recovery(run_dir, s):
    times = version_times(run_dir)
    out = []
    for d in s["deaths"]:
        restarted = d["restarted_s"]
        name = d["process"]
        when = None
        if restarted is not None:
            if name == "coordinator":
                when = min((t for t in times.values() if t > restarted), default=None)
            elif name.startswith("server "):
                region = name.split(" ", 1)[1]
                merged = history.region_merges(os.path.join(BUILD, "gdml-models"),
                                               os.path.join(run_dir, "store"), region)
                when = min((times[v] for v in merged if v in times and times[v] > restarted),
                           default=None)
            elif name.startswith("worker "):
                log = os.path.join(run_dir, "logs", "worker-%s.log" % name.split(" ", 1)[1])
                when = min((t for t in history.log_times(log, "first_model",
                                                         s["start_unix_ms"] / 1000.0)
                            if t > restarted), default=None)
        out.append({"process": name, "died_s": d["died_s"], "restarted_s": restarted,
                    "contributes_s": None if when is None else round(when - restarted, 3)})
    return out


def median(xs):
    xs = sorted(xs)
    return None if not xs else (xs[len(xs) // 2] if len(xs) % 2 else
                                (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--every-ms", type=int, default=30000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the run directories")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "bench", "punisher.json"))
    a = ap.parse_args()
    # Rounds take about half a second: enough for every kill even if every
    # interval comes out at its longest (4/3 of --every-ms), and half a
    # minute more for the last restart's recovery.
    rounds = int((a.kills * a.every_ms * 4 / 3000.0 + 30) / 0.5)
    tmp = tempfile.mkdtemp(prefix="gdml-punisher-")
    faulty, clean = os.path.join(tmp, "faults"), os.path.join(tmp, "clean")
    print("punisher: %d kills every %d-%d s, %d rounds; runs in %s" %
          (a.kills, a.every_ms * 2 // 3000, a.every_ms * 4 // 3000, rounds, tmp), flush=True)
    r, wall = launch(faulty, rounds, ["--chaos-every-ms", str(a.every_ms), "--chaos-kills",
                                      str(a.kills), "--chaos-seed", str(a.seed),
                                      "--restart-limit", str(a.kills + 1)])
    for line in r.stdout.splitlines():
        if line.startswith("gdml-launch: chaos") or line.startswith("gdml-launch: restarted"):
            print("  " + line, flush=True)
    completed = r.returncode == 0
    result = {"machine": os.uname().nodename, "kills_asked": a.kills, "every_ms": a.every_ms,
              "rounds": rounds, "completed": completed, "wall_s": round(wall, 1)}
    if completed:
        s = summary(faulty)
        result.update({"final_accuracy": s["final_accuracy"], "chaos_kills": s["chaos_kills"]})
        result.update(audit(faulty))
        result["failures"] = recovery(faulty, s)
    else:
        result["launcher_output"] = r.stdout[-3000:] + r.stderr[-3000:]
    r2, wall2 = launch(clean, rounds, [])
    if r2.returncode == 0:
        result["fault_free_accuracy"] = summary(clean)["final_accuracy"]
        result["fault_free_wall_s"] = round(wall2, 1)
    secs = [f["contributes_s"] for f in result.get("failures", []) if f["contributes_s"] is not None]
    result["recovery_median_s"] = median(secs)
    result["recovery_worst_s"] = max(secs) if secs else None
    result["recovered"] = "%d of %d" % (len(secs), len(result.get("failures", [])))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    if not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    ok = (completed and result.get("versions_missing") == 0 and result.get("double_merges") == 0
          and result.get("chaos_kills") == a.kills)
    if completed and result.get("chaos_kills") != a.kills:
        print("punisher: the job ended after %s of %d kills" % (result.get("chaos_kills"), a.kills))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
