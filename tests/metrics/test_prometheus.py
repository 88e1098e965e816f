#!/usr/bin/env python3
"""test_prometheus.py - a real Prometheus scrapes a running gdml job.

Starts the small job of metrics_job.py, then Debian's prometheus on
loopback (a port found free by binding port 0, its storage in this test's
temporary directory) with a generated config that scrapes every process of
the job each second (static targets read from RUN_DIR/*.metrics). Once the
targets are up, it queries Prometheus's HTTP API (/api/v1/query) twice and
checks that gdml's counters moved in between: WAN bytes per link, worker
samples, merges. Skipped (77) if prometheus is not installed.

    python3 tests/metrics/test_prometheus.py        (a meson test)
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from metrics_job import Job, check, failures, free_port  # noqa: E402



def query(base, expr):
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        doc = json.load(r)
    if doc.get("status") != "success":
        raise RuntimeError(f"{expr}: {doc}")
    return doc["data"]["result"]


def scalar(base, expr):
    result = query(base, expr)
    return float(result[0]["value"][1]) if result else 0.0


def wait_for(what, cond, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if cond():
                return True
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what}: not within {timeout} s")


def main():
    prometheus = shutil.which("prometheus")
    if not prometheus:
        print("prometheus: skipped: not installed (bash docker/install-deps.sh)")
        return 77
    with tempfile.TemporaryDirectory(prefix="gdml-prom-") as tmp:
        job = Job(os.path.join(tmp, "run"))
        prom = None
        try:
            addrs = job.addresses(want=5)
            targets = [{"targets": [a], "labels": {"process": n}} for n, a in sorted(addrs.items())]
            config = os.path.join(tmp, "prometheus.yml")
            with open(config, "w") as f:
                # JSON is YAML: the config needs no YAML writer.
                json.dump({"global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                           "scrape_configs": [{"job_name": "gdml", "static_configs": targets}]}, f)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            log = open(os.path.join(tmp, "prometheus.log"), "w")
            prom = subprocess.Popen(
                [prometheus, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
                 f"--storage.tsdb.path={os.path.join(tmp, 'tsdb')}"],
                stdout=log, stderr=subprocess.STDOUT)
            wait_for("prometheus ready", lambda: urllib.request.urlopen(
                base + "/-/ready", timeout=2).status == 200, 30)
            wait_for("every target up", lambda: scalar(base, 'sum(up{job="gdml"})') == len(addrs), 20)
            check(True, f"prometheus scrapes all {len(addrs)} processes of the job")
            wait_for("a first version", lambda: scalar(
                base, 'max(gdml_global_version{role="coordinator"})') >= 1, 30)
            exprs = {
                "coordinator WAN bytes": 'sum(gdml_wan_bytes_total{role="coordinator"})',
                "worker samples": 'sum(gdml_samples_total{role="worker"})',
                "merges": 'sum(gdml_merges_total)',
            }
            before = {k: scalar(base, e) for k, e in exprs.items()}
            time.sleep(4)
            after = {k: scalar(base, e) for k, e in exprs.items()}
            for k in exprs:
                check(after[k] > before[k], f"{k} grew in Prometheus: {before[k]:.0f} -> {after[k]:.0f}")
            links = query(base, 'rate(gdml_wan_bytes_total{role="coordinator",direction="up"}[5s])')
            check({r["metric"].get("link") for r in links} == {"us-east", "eu-west"},
                  "a WAN byte rate per link: " + ", ".join(
                      f'{r["metric"].get("link")} {float(r["value"][1]):.0f} B/s' for r in links))
            acc = scalar(base, 'gdml_accuracy_ratio{role="coordinator",dataset="test"}')
            check(0.1 < acc <= 1, f"test accuracy in Prometheus: {acc:.4f}")
        finally:
            if prom:
                prom.terminate()
                try:
                    prom.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    prom.kill()
                    prom.wait()
            job.stop()
    print(f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
