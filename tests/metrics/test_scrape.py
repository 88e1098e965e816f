#!/usr/bin/env python3
"""test_scrape.py - the real programs serve Prometheus metrics over HTTP.

A small job (gdml-launch: a coordinator, 2 regions, a worker each) runs on
loopback with metrics on their defaults (127.0.0.1, any free port, the
address in RUN_DIR/NAME.metrics). Each process is scraped twice, 2 s
apart: the text parses, every family has HELP and TYPE, and the counters
that training moves (WAN bytes, steps, samples) have grown. Then the bad
inputs: another path (404), another method (405), a metrics.listen that is
not HOST:PORT (refused at start, status 2) and one already in use (status 1,
saying so).

    python3 tests/metrics/test_scrape.py        (a meson test)
"""

import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from metrics_job import Job, check, failures, http_get, parse, program, total  # noqa: E402



def scrape_all(addrs):
    out = {}
    for name, addr in addrs.items():
        status, headers, body = http_get(addr)
        check(status == 200, f"{name}: GET /metrics answers 200 ({status})")
        check(headers.get("content-type", "").startswith("text/plain; version=0.0.4"),
              f"{name}: content type is Prometheus text 0.0.4 ({headers.get('content-type')})")
        out[name] = parse(body)
        helps = {l.split()[2] for l in body.splitlines() if l.startswith("# HELP ")}
        check(helps == set(out[name][1]), f"{name}: every family has HELP and TYPE")
    return out


def bad_inputs(tmp):
    # A port that is taken: the coordinator refuses to start and says why.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    r = subprocess.run([program("gdml-coordinator"), "--curve", "off", "--store",
                        os.path.join(tmp, "s1"), "--listen", "tcp://127.0.0.1:*",
                        "--metrics-listen", f"127.0.0.1:{port}"],
                       capture_output=True, text=True, timeout=30)
    holder.close()
    check(r.returncode == 1 and "cannot serve metrics on 127.0.0.1:" in r.stderr
          and "metrics.listen" in r.stderr,
          f"a metrics port in use: status 1 and a message saying what to do ({r.returncode}: "
          f"{r.stderr.strip()[-200:]})")
    r = subprocess.run([program("gdml-server"), "--name", "x", "--metrics-listen", "9464"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 2 and "metrics" in r.stderr and "HOST:PORT" in r.stderr,
          f"metrics.listen = 9464 (no host): refused with status 2 ({r.returncode}: "
          f"{r.stderr.strip()[-200:]})")


def main():
    with tempfile.TemporaryDirectory(prefix="gdml-metrics-") as tmp:
        job = Job(os.path.join(tmp, "run"))
        try:
            addrs = job.addresses(want=5)
            time.sleep(3)  # training under way
            first = scrape_all(addrs)
            time.sleep(2)
            second = scrape_all(addrs)
            c0, c1 = first["coordinator"][0], second["coordinator"][0]
            check(total(c1, "gdml_wan_bytes_total") > total(c0, "gdml_wan_bytes_total") > 0,
                  "coordinator: gdml_wan_bytes_total grew between the scrapes "
                  f"({total(c0, 'gdml_wan_bytes_total')} -> {total(c1, 'gdml_wan_bytes_total')})")
            check(total(c1, "gdml_global_version") >= total(c0, "gdml_global_version") >= 1,
                  "coordinator: gdml_global_version is committed and does not go back")
            check(total(c1, "gdml_accuracy_ratio", dataset="test") > 0.1,
                  "coordinator: test accuracy is exported")
            for link in ("us-east", "eu-west"):
                check(total(c1, "gdml_wan_bytes_total", link=link, direction="down") > 0,
                      f"coordinator: WAN bytes down to {link}")
            s0, s1 = first["server-us-east"][0], second["server-us-east"][0]
            check(total(s1, "gdml_steps_total") > total(s0, "gdml_steps_total"),
                  "server us-east: gdml_steps_total grew")
            check(total(s1, "gdml_wan_bytes_total", link="us-east", direction="up") > 0,
                  "server us-east: its uplink bytes")
            w0, w1 = first["worker-us-east.w0"][0], second["worker-us-east.w0"][0]
            check(total(w1, "gdml_samples_total") > total(w0, "gdml_samples_total"),
                  "worker: gdml_samples_total grew")
            check(total(w1, "gdml_samples_per_second") > 0, "worker: samples per second > 0")
            types = second["coordinator"][1]
            check(all(n.endswith("_total") == (t == "counter") for n, t in types.items()),
                  "counters, and only counters, end in _total")
            a = addrs["coordinator"]
            check(http_get(a, "/")[0] == 404, "GET / answers 404")
            check(http_get(a, "/metrics", method="POST")[0] == 405, "POST /metrics answers 405")
        finally:
            job.stop()
        bad_inputs(tmp)
    print(f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
