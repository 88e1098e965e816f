#!/usr/bin/env python3
"""wan_job.py - a whole gdml job over an emulated WAN, with faults on a schedule.

The coordinator runs in its own network namespace, and each data center
(its regional server and workers, talking over that namespace's loopback)
in another; the links between them go through gdml-wanem (wan.py). The
processes are started by hand, the way an operator runs gdml across hosts:
gdml-split, gdml-keys, then each program with its flags. CURVE is on across
the WAN.

    python3 tests/wan/wan_job.py --delay-ms 50 --rate 50mbit
    python3 tests/wan/wan_job.py --delay-ms 50 --rate 50mbit --loss eu-west=0.05
    python3 tests/wan/wan_job.py --cut eu-west@3+30          # partitioned 3..33 s
    python3 tests/wan/wan_job.py --kill coordinator@4        # SIGKILL, then restart
    python3 tests/wan/wan_job.py --kill server:us-east@4 --kill worker:eu-west.w1@5:stay
    python3 tests/wan/wan_job.py --slow ap-south=3           # its workers wait 3 ms a step

--delay-ms is one way, so 50 gives a 100 ms round trip. Times in --cut and
--kill count from the first committed version. A killed process is started
again after --restart-after seconds unless its spec ends in ":stay".

It prints one line per global version and ends with a JSON summary (also
written to RUN_DIR/wan-summary.json): completion, final accuracy, wall and
training time, time to --target, versions stored, versions missing and
deltas merged twice (from `gdml-models verify`), WAN bytes, worker
utilization, and for each restart the seconds until the restarted process
contributed again. Exit status 0 if the job completed and the history
audit holds.

Needs root (network namespaces). Uses the build in $GDML_BUILD_DIR or build/.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import history  # noqa: E402
from wan import Wan  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COORD_PORT = 7000   # inside the coordinator's own namespace: nothing else binds there
SERVER_PORT = 7100  # inside each data center's namespace


def build_dir():
    return os.path.abspath(os.environ.get("GDML_BUILD_DIR", os.path.join(ROOT, "build")))


def program(name):
    path = os.path.join(build_dir(), name)
    if not os.access(path, os.X_OK):
        raise RuntimeError("no %s; build first (meson compile -C %s)" % (path, build_dir()))
    return path


def read_ini(path):
    """{section: {key: value}} of a gdml INI file (comments after ';' dropped)."""
    out, sec = {}, None
    with open(path) as f:
        lines = f.readlines()
    for line in lines:
        line = line.split(";")[0].split("#")[0].strip()
        if not line:
            continue
        if line.startswith("["):
            sec = out.setdefault(line.strip("[]").strip(), {})
        elif "=" in line and sec is not None:
            k, v = line.split("=", 1)
            sec[k.strip()] = v.strip()
    return out


class Job:
    def __init__(self, args, wan, run_dir):
        self.a = args
        self.wan = wan
        self.run = run_dir
        ini = read_ini(args.config)
        for kv in args.set:
            sk, v = kv.split("=", 1)
            s, k = sk.split(".", 1)
            ini.setdefault(s, {})[k] = v
        launch = ini.get("launch", {})
        self.regions = launch.get("regions", "us-east,eu-west,ap-south").split(",")
        self.workers = int(launch.get("workers", "2"))
        self.seed = int(launch.get("seed", "42"))
        self.rounds = int(ini.get("coordinator", {}).get("rounds", "40"))
        self.t0 = time.monotonic()
        self.first_version_t = None
        self.versions = []            # (t, version, accuracy)
        self.events = []              # what happened when, for the summary
        self.procs = {}               # role name -> (Popen, argv, node, log)
        self.restarts = []            # {process, killed_s, restarted_s, contributed_s}
        self.lock = threading.Lock()
        self.restarting = set()       # roles killed on schedule and not yet started again
        self.wall0 = time.time()      # log lines carry wall-clock times

    # ---- setup ----

    def common_args(self):
        out = ["--config", os.path.abspath(self.a.config)]
        for kv in self.a.set:
            out += ["--set", kv]
        return out

    def prepare(self):
        os.makedirs(os.path.join(self.run, "logs"), exist_ok=True)
        keys = os.path.join(self.run, "keys")
        r = subprocess.run([program("gdml-split"), os.path.join(self.run, "data"),
                            *self.common_args()], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError("gdml-split failed:\n" + r.stderr)
        for name in ["coordinator"] + self.regions:
            r = subprocess.run([program("gdml-keys"), "new", name, "--dir", keys],
                               capture_output=True, text=True)
            if r.returncode:
                raise RuntimeError("gdml-keys failed:\n" + r.stderr)
        with open(os.path.join(keys, "coordinator.allow"), "w") as allow:
            for name in self.regions:
                with open(os.path.join(keys, name + ".pub")) as pub:
                    allow.write(pub.read())

    def start(self, role, node, argv, stdout=None):
        log = os.path.join(self.run, "logs", role.replace(" ", "-").replace(":", "-") + ".log")
        p = self.wan.popen(node, argv, log, stdout=stdout)
        self.procs[role] = (p, argv, node, log)
        return p

    def coordinator_argv(self):
        keys = os.path.join(self.run, "keys")
        return [program("gdml-coordinator"), *self.common_args(),
                "--listen", "tcp://%s:%d" % (self.wan.addr("coordinator"), COORD_PORT),
                "--store", os.path.join(self.run, "store"),
                "--regions", str(len(self.regions)), "--members", ",".join(self.regions),
                "--eval-images", self.a.test_images, "--eval-labels", self.a.test_labels,
                "--key", os.path.join(keys, "coordinator.key"),
                "--allow", os.path.join(keys, "coordinator.allow"),
                "--byte-log", os.path.join(self.run, "logs", "bytes-coordinator.csv")]

    def start_coordinator(self):
        p = self.start("coordinator", "coordinator", self.coordinator_argv(),
                       stdout=subprocess.PIPE)
        threading.Thread(target=self.read_progress, args=(p,), daemon=True).start()

    def start_server(self, region):
        keys = os.path.join(self.run, "keys")
        argv = [program("gdml-server"), *self.common_args(), "--name", region,
                "--listen", "tcp://127.0.0.1:%d" % SERVER_PORT,
                "--coordinator", "tcp://%s:%d" % (self.wan.addr("coordinator"), COORD_PORT),
                "--workers", str(self.workers),
                "--key", os.path.join(keys, region + ".key"),
                "--coordinator-key", os.path.join(keys, "coordinator.pub"),
                "--byte-log", os.path.join(self.run, "logs", "bytes-%s.csv" % region),
                "--checkpoint", os.path.join(self.run, "checkpoints", region)]
        self.start("server:" + region, region, argv)

    def start_worker(self, region, w):
        data = os.path.join(self.run, "data", region)
        slow = self.a.slow.get(region, 0)
        argv = [program("gdml-worker"), *self.common_args(), "--name", "%s.w%d" % (region, w),
                "--server", "tcp://127.0.0.1:%d" % SERVER_PORT,
                "--images", os.path.join(data, "train-images-idx3-ubyte"),
                "--labels", os.path.join(data, "train-labels-idx1-ubyte"),
                "--shard-index", str(w), "--shard-count", str(self.workers),
                "--seed", str(self.seed * 1000 + self.regions.index(region) * 64 + w)]
        if region in self.a.slow:
            argv += ["--step-delay-ms", str(slow)]
        self.start("worker:%s.w%d" % (region, w), region, argv)

    # ---- progress ----

    def now(self):
        return time.monotonic() - self.t0

    def read_progress(self, p):
        for line in p.stdout:
            line = line.decode(errors="replace")
            m = re.match(r"round=\d+ version=(\d+) accuracy=([0-9.naNN-]+)", line)
            if not m:
                continue
            t, v, acc = self.now(), int(m.group(1)), float(m.group(2))
            with self.lock:
                if self.first_version_t is None:
                    self.first_version_t = t
                self.versions.append((t, v, acc))
            if not self.a.quiet:
                print("%7.2f s  version %4d  accuracy %.4f" % (t, v, acc), flush=True)

    # ---- faults ----

    def since_first(self):
        with self.lock:
            return None if self.first_version_t is None else self.now() - self.first_version_t

    def kill_and_restart(self, role, stay):
        p, argv, node, log = self.procs[role]
        if not stay:
            self.restarting.add(role)
        self.wan.kill(p)
        killed = self.now()
        self.events.append("%.2f s: killed %s" % (killed, role))
        if stay:
            return
        time.sleep(self.a.restart_after)
        if role == "coordinator":
            self.start_coordinator()
        else:
            self.start(role, node, argv)
        restarted = self.now()
        self.restarting.discard(role)
        self.events.append("%.2f s: restarted %s" % (restarted, role))
        self.restarts.append({"process": role, "killed_s": round(killed, 3),
                              "restarted_s": round(restarted, 3), "log": log})

    def plan(self):
        """The faults to inject, (seconds after the first version, what, argument), in order."""
        todo = []
        for spec in self.a.cut:
            m = re.fullmatch(r"([\w.-]+)@([\d.]+)\+([\d.]+)", spec)
            if not m or m.group(1) not in self.regions:
                raise RuntimeError("--cut REGION@START+SECONDS, not %r" % spec)
            r, s, d = m.group(1), float(m.group(2)), float(m.group(3))
            todo.append((s, "cut", r))
            todo.append((s + d, "heal", r))
        for spec in self.a.kill:
            m = re.fullmatch(r"([\w.:-]+)@([\d.]+)(:stay)?", spec)
            if not m:
                raise RuntimeError("--kill ROLE@SECONDS[:stay], not %r" % spec)
            role = m.group(1)
            if role not in self.procs:
                raise RuntimeError("--kill: no process %r (coordinator, server:REGION, "
                                   "worker:REGION.wN)" % role)
            todo.append((float(m.group(2)), "kill", (role, bool(m.group(3)))))
        return sorted(todo, key=lambda x: x[0])

    def run_faults(self, todo):
        for at, what, arg in todo:
            while True:
                s = self.since_first()
                if s is not None and s >= at:
                    break
                if self.procs["coordinator"][0].poll() == 0:
                    return
                time.sleep(0.02)
            if what == "cut":
                self.wan.cut(arg)
                self.events.append("%.2f s: cut %s" % (self.now(), arg))
            elif what == "heal":
                self.wan.heal(arg)
                self.events.append("%.2f s: healed %s" % (self.now(), arg))
            else:
                self.kill_and_restart(*arg)

    # ---- the run ----

    def execute(self):
        self.prepare()
        self.t0 = time.monotonic()  # times count from the processes' start
        self.wall0 = time.time()
        self.start_coordinator()
        for r in self.regions:
            self.start_server(r)
            for w in range(self.workers):
                self.start_worker(r, w)
        faults = threading.Thread(target=self.run_faults, args=(self.plan(),), daemon=True)
        faults.start()
        deadline = time.monotonic() + self.a.timeout
        completed = False
        while time.monotonic() < deadline:
            rc = self.procs["coordinator"][0].poll()
            if rc == 0:
                completed = True
                break
            if rc is not None and "coordinator" not in self.restarting:
                time.sleep(0.2)  # a scheduled kill may have just begun
                if "coordinator" not in self.restarting and \
                        self.procs["coordinator"][0].poll() not in (None, 0):
                    break        # it failed on its own
            time.sleep(0.05)
        end = self.now()
        # The regions and workers end after the coordinator's STOP.
        for role, (p, *_rest) in list(self.procs.items()):
            if role != "coordinator":
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    pass
        return completed, end

    def audit(self):
        return history.verify(program("gdml-models"), os.path.join(self.run, "store"))

    def resumed_regions(self):
        """Regions whose restarted server continued from its checkpoint."""
        out = []
        for r in self.regions:
            log = self.procs["server:" + r][3]
            with open(log, errors="replace") as f:
                if " resume checkpoint=" in f.read():
                    out.append(r)
        return out

    def utilization(self):
        """Mean over workers of the share of their training time spent computing gradients."""
        shares = []
        for role, (_p, _a, _n, log) in self.procs.items():
            if not role.startswith("worker:"):
                continue
            with open(log, errors="replace") as f:
                text = f.read()
            found = re.findall(r"utilization=([0-9.]+)", text)
            if found:
                shares.append(float(found[-1]))
        return round(sum(shares) / len(shares), 4) if shares else None

    def recovery(self):
        """Seconds from each restart until the restarted process contributed again."""
        out = []
        for r in self.restarts:
            role = r["process"]
            after = r["restarted_s"]
            when = None
            with self.lock:
                versions = list(self.versions)
            if role == "coordinator":
                when = next((t for t, _v, _a in versions if t > after), None)
            elif role.startswith("server:"):
                # Its next merged delta: the first version after the restart that lists it.
                when = self.region_contributed_after(role[7:], after)
            else:
                when = self.worker_pushed_after(r["log"], after)
            r = dict(r)
            r.pop("log")
            r["contributes_s"] = None if when is None else round(when - after, 3)
            out.append(r)
        return out

    def region_contributed_after(self, region, after):
        """When the first version after a restart that merged a delta of region was seen."""
        with self.lock:
            times = {v: t for t, v, _a in self.versions}
        merged = history.region_merges(program("gdml-models"), os.path.join(self.run, "store"),
                                       region)
        return min((times[v] for v in merged if v in times and times[v] > after), default=None)

    def worker_pushed_after(self, log, after):
        """When a restarted worker pushed its first gradient (it logs "first_model")."""
        return min((t for t in history.log_times(log, "first_model", self.wall0) if t > after),
                   default=None)


def parse_kv(items, cast):
    out = {}
    for it in items:
        k, _, v = it.partition("=")
        out[k] = cast(v)
    return out


def parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--config", default=os.path.join(ROOT, "config", "local-job.ini"))
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--delay-ms", type=float, default=0, help="one-way delay of every WAN link")
    ap.add_argument("--jitter-ms", type=float, default=0)
    ap.add_argument("--rate", default="0", help="rate cap of every WAN link, e.g. 50mbit")
    ap.add_argument("--loss", action="append", default=[], metavar="REGION=P",
                    help="random loss on a region's link, both ways")
    ap.add_argument("--cut", action="append", default=[], metavar="REGION@START+SECONDS")
    ap.add_argument("--kill", action="append", default=[], metavar="ROLE@SECONDS[:stay]")
    ap.add_argument("--slow", action="append", default=[], metavar="REGION=MS",
                    help="the region's workers wait MS before each gradient")
    ap.add_argument("--restart-after", type=float, default=0.5)
    ap.add_argument("--target", type=float, default=None, help="accuracy to time")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--seed", type=int, default=1, help="seed of the emulated links")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--sysctl", action="append", default=[], metavar="KEY=VALUE",
                    help="a kernel setting in every namespace, e.g. "
                    "net.ipv4.tcp_slow_start_after_idle=0")
    ap.add_argument("--initcwnd", type=int, default=0,
                    help="TCP's initial congestion window on the WAN routes (0: the kernel's)")
    ap.add_argument("--test-images", default="/usr/share/datasets/fashion-mnist/"
                    "t10k-images-idx3-ubyte.gz")
    ap.add_argument("--test-labels", default="/usr/share/datasets/fashion-mnist/"
                    "t10k-labels-idx1-ubyte.gz")
    return ap


def parse(argv):
    a = parser().parse_args(argv)
    a.loss = parse_kv(a.loss, float)
    a.slow = parse_kv(a.slow, int)
    return a


def run(a):
    """Runs the job a describes; returns its summary (also in RUN_DIR/wan-summary.json)."""
    why = Wan.available()
    if why:
        raise RuntimeError("the WAN harness " + why)
    run_dir = a.run_dir or tempfile.mkdtemp(prefix="gdml-wan-")
    os.makedirs(run_dir, exist_ok=True)
    job_regions = read_ini(a.config).get("launch", {}).get(
        "regions", "us-east,eu-west,ap-south")
    for kv in a.set:
        if kv.startswith("launch.regions="):
            job_regions = kv.split("=", 1)[1]
    nodes = ["coordinator"] + job_regions.split(",")
    sysctls = dict(kv.split("=", 1) for kv in a.sysctl)
    with Wan(nodes, seed=a.seed, sysctls=sysctls, initcwnd=a.initcwnd) as wan:
        for r in nodes[1:]:
            params = {"delay": a.delay_ms, "jitter": a.jitter_ms, "rate": a.rate}
            if r in a.loss:
                params["loss"] = a.loss[r]
            wan.both("coordinator", r, **params)
        job = Job(a, wan, run_dir)
        completed, end = job.execute()
        stats = wan.stats()
    accs = [acc for _t, _v, acc in job.versions]
    summary = {"completed": completed, "wall_s": round(end, 3),
               "training_s": None if job.first_version_t is None else
               round(end - job.first_version_t, 3),
               "versions_reported": len(job.versions),
               "final_accuracy": accs[-1] if accs else None,
               "last5_accuracy": round(sum(accs[-5:]) / len(accs[-5:]), 4) if accs else None,
               "delay_ms": a.delay_ms, "jitter_ms": a.jitter_ms, "rate": a.rate,
               "loss": a.loss, "cuts": a.cut, "kills": a.kill, "slow": a.slow,
               "utilization": job.utilization(), "events": job.events,
               "run_dir": run_dir}
    if a.target is not None:
        hit = next((t for t, _v, acc in job.versions if acc >= a.target), None)
        summary["target"] = a.target
        summary["time_to_target_s"] = None if hit is None else round(hit, 3)
        summary["version_at_target"] = next(
            (v for _t, v, acc in job.versions if acc >= a.target), None)
        first = job.first_version_t or 0
        summary["training_to_target_s"] = None if hit is None else round(hit - first, 3)
    summary.update(job.audit())
    summary["restarts"] = job.recovery()
    summary["resumed_from_checkpoint"] = job.resumed_regions()
    summary["wan_packets"] = {"%s>%s" % k: v for k, v in stats.items()}
    with open(os.path.join(run_dir, "wan-summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    summary["ok"] = bool(completed and summary.get("verify_ok") and
                         summary.get("versions_missing") == 0 and
                         summary.get("double_merges") == 0)
    if not a.run_dir and summary["ok"] and not os.environ.get("GDML_KEEP_RUN"):
        shutil.rmtree(run_dir, ignore_errors=True)
    return summary


def main():
    a = parse(sys.argv[1:])
    # A signal ends the run through the harness's with-block, which removes everything.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        summary = run(a)
    except RuntimeError as e:
        sys.exit("wan_job: %s" % e)
    print(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
