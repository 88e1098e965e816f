#!/usr/bin/env python3
"""The main job with CURVE on its WAN links and without, side by side.

    python3 tests/bench/curve_job.py [RUNS] [--build DIR]

Runs `gdml-launch --config config/local-job.ini` RUNS times each way
(alternating, so that a noisy neighbour hits both alike) and prints the
median accuracy, wall time and cross-DC bytes of each, and their ratios.
"""
import json, os, statistics, subprocess, sys, tempfile

def main():
    args = sys.argv[1:]
    build = "build"
    if "--build" in args:
        i = args.index("--build")
        build = args[i + 1]
        del args[i:i + 2]
    runs = int(args[0]) if args else 5
    launch = os.path.join(build, "gdml-launch")
    results = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            for mode in ("on", "off"):
                run = os.path.join(tmp, f"{mode}-{i}")
                subprocess.run([launch, "--config", "config/local-job.ini", "--run-dir", run,
                                "--set", f"security.curve={mode}"],
                               check=True, stdout=subprocess.DEVNULL)
                with open(os.path.join(run, "summary.json")) as f:
                    s = json.load(f)
                results[mode].append((s["final_accuracy"], s["wall_seconds"],
                                      s["wan_bytes_up"] + s["wan_bytes_down"]))
    med = {m: [statistics.median(r[k] for r in v) for k in range(3)] for m, v in results.items()}
    print(f"main job, median of {runs} runs each")
    print(f"{'CURVE':6} {'accuracy':>9} {'wall s':>8} {'cross-DC MB':>12}")
    for m in ("on", "off"):
        a, w, b = med[m]
        print(f"{m:6} {a:9.4f} {w:8.2f} {b / 1e6:12.3f}")
    print(f"on / off: wall {med['on'][1] / med['off'][1]:.2f}x, "
          f"bytes {med['on'][2] / med['off'][2]:.4f}x")

if __name__ == "__main__":
    main()
