#!/usr/bin/env python3
"""docker/install-deps.sh prints one line per step and keeps apt's output in a log.

It runs the script with stand-ins for dpkg-query, apt-get and sudo first in
PATH, so no package is installed or looked up:
  - everything installed: one line, and apt-get is never run;
  - packages missing, apt succeeding (and printing a lot): one line per step,
    none of apt's output on the terminal, all of it in the log;
  - apt-get install failing: the step says so, the log's last lines (with
    apt's error) are printed, and the script exits with apt's status;
  - apt-get update failing: the same, and install is never tried;
  - an unknown flag: exit status 2.
Usage: test_install_deps.py SOURCE_DIR
"""
import os
import re
import stat
import subprocess
import sys
import tempfile

SOURCE = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
SCRIPT = os.path.join(SOURCE, "docker", "install-deps.sh")

FAKES = {
    # Installed when FAKE_INSTALLED=all; otherwise nothing is.
    "dpkg-query": """#!/bin/sh
[ "$FAKE_INSTALLED" = all ] && printf 'install ok installed' && exit 0
exit 1
""",
    # Logs each call; prints apt-like noise; fails the step FAKE_APT_FAIL names.
    "apt-get": """#!/bin/sh
echo "$*" >>"$FAKE_CALLS"
i=0
while [ $i -lt 200 ]; do echo "Get:$i http://deb.example/debian bookworm/main noise-$i"; i=$((i+1)); done
if [ "$1" = "$FAKE_APT_FAIL" ]; then
  echo "E: Unable to locate package imaginary-package" >&2
  exit 100
fi
exit 0
""",
    "sudo": """#!/bin/sh
exec "$@"
""",
}

failures = []
checks = 0


def check(cond, what, out=""):
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}\n{out}")
    else:
        print(f"ok: {what}")


def run(tmp, installed, fail, *args):
    bindir = os.path.join(tmp, "bin")
    os.makedirs(bindir, exist_ok=True)
    for name, text in FAKES.items():
        path = os.path.join(bindir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, stat.S_IRWXU)
    calls = os.path.join(tmp, "calls")
    if os.path.exists(calls):
        os.unlink(calls)
    log = os.path.join(tmp, "deps.log")
    env = dict(os.environ, PATH=bindir + ":" + os.environ.get("PATH", "/usr/bin:/bin"),
               FAKE_INSTALLED=installed, FAKE_APT_FAIL=fail, FAKE_CALLS=calls,
               GDML_DEPS_LOG=log)
    p = subprocess.run(["bash", SCRIPT, *args], env=env, capture_output=True, text=True,
                       timeout=60)
    called = open(calls).read().splitlines() if os.path.exists(calls) else []
    logged = open(log).read() if os.path.exists(log) else ""
    return p, called, logged


with tempfile.TemporaryDirectory() as tmp:
    p, called, _ = run(tmp, "all", "", "--build")
    out = p.stdout + p.stderr
    check(p.returncode == 0, "all installed: exit 0", out)
    check(len(out.splitlines()) == 1 and
          re.fullmatch(r"install-deps: all \d+ packages already installed", out.strip()),
          "all installed: exactly one line", out)
    check(called == [], "all installed: apt-get not run", "\n".join(called))

    p, called, logged = run(tmp, "none", "", "--runtime")
    out = p.stdout + p.stderr
    lines = out.splitlines()
    check(p.returncode == 0, "missing, apt ok: exit 0", out)
    check(len(lines) == 3 and lines[0] == "install-deps: apt-get update ... ok"
          and re.match(r"install-deps: installing \d+ packages \(libzmq5 ", lines[1])
          and lines[1].endswith(" ... ok") and lines[2].startswith("install-deps: done"),
          "missing, apt ok: one line per step", out)
    check("noise" not in out, "missing, apt ok: none of apt's output on the terminal", out)
    check(logged.count("noise-") == 400, "missing, apt ok: all of apt's output in the log",
          logged[:300])
    check(len(called) == 2 and called[0].startswith("update")
          and called[1].startswith("install -y") and "liblmdb0" in called[1],
          "missing, apt ok: update, then install of the missing packages", "\n".join(called))

    p, called, logged = run(tmp, "none", "install")
    out = p.stdout + p.stderr
    check(p.returncode == 100, f"install fails: exits with apt's status (got {p.returncode})", out)
    check("install-deps: installing" in p.stdout and "failed (exit status 100)" in p.stdout,
          "install fails: the step says failed", out)
    check("E: Unable to locate package imaginary-package" in p.stderr
          and "the last 20 lines of" in p.stderr and tmp in p.stderr,
          "install fails: the log's tail and its path are printed", out)
    check(p.stderr.count("noise-") < 20, "install fails: only the log's tail is printed", out)

    p, called, _ = run(tmp, "none", "update")
    out = p.stdout + p.stderr
    check(p.returncode == 100 and "apt-get update ... failed" in p.stdout,
          "update fails: the step says failed", out)
    check(len(called) == 1, "update fails: install is not tried", "\n".join(called))

    p, _, _ = run(tmp, "all", "", "--bogus")
    check(p.returncode == 2 and "unknown mode" in p.stderr, "unknown flag: status 2",
          p.stdout + p.stderr)

passed = checks - len(failures)
print(f"{passed} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
