"""metrics_job.py - what the metrics tests share: a small gdml job run by
gdml-launch on loopback (its processes write their metrics addresses to
RUN_DIR/NAME.metrics), a plain HTTP GET, and the exposition text parsed.

Uses the build in $GDML_BUILD_DIR or build/.
"""

import glob
import os
import re
import signal
import socket
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


failures = []


def check(cond, what):
    """Prints what was checked; a failure is remembered for the exit status."""
    print(("ok: " if cond else "FAIL: ") + what)
    if not cond:
        failures.append(what)


def build_dir():
    return os.path.abspath(os.environ.get("GDML_BUILD_DIR", os.path.join(ROOT, "build")))


def program(name):
    return os.path.join(build_dir(), name)


def free_port():
    """A port no one holds now: bind port 0 and read back what the kernel gave."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(address, path="/metrics", method="GET", timeout=5):
    """(status, headers dict, body) of one HTTP/1.0 request to HOST:PORT."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as s:
        s.sendall(f"{method} {path} HTTP/1.0\r\nHost: {address}\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
    return status, headers, body.decode()


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """{(name, frozenset of label pairs): value} and {name: type} of an exposition text."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            if not m:
                raise ValueError(f"not an exposition line: {line!r}")
            labels = frozenset(LABEL.findall(m.group(3) or ""))
            samples[(m.group(1), labels)] = float(m.group(4))
    return samples, types


def total(samples, name, **want):
    """The sum of name's series whose labels include want."""
    return sum(v for (n, labels), v in samples.items()
               if n == name and all((k, w) in labels for k, w in want.items()))


class Job:
    """gdml-launch on config/local-job.ini in run_dir, slowed so that it runs for a while."""

    def __init__(self, run_dir, rounds=400, step_delay_ms=5):
        self.run_dir = run_dir
        self.log = open(os.path.join(os.path.dirname(run_dir), "launch.out"), "w")
        self.proc = subprocess.Popen(
            [program("gdml-launch"), "--config", os.path.join(ROOT, "config", "local-job.ini"),
             "--run-dir", run_dir, "--regions", "us-east,eu-west", "--workers", "1",
             "--set", f"coordinator.rounds={rounds}",
             "--set", f"worker.step_delay_ms={step_delay_ms}"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def addresses(self, want=5, timeout=60):
        """{name: HOST:PORT} of the job's processes, once want of them have written theirs."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gdml-launch exited with {self.proc.returncode}; see "
                                   f"{self.log.name}")
            found = {}
            for f in glob.glob(os.path.join(self.run_dir, "*.metrics")):
                text = open(f).read().strip()
                if text:
                    found[os.path.basename(f)[:-len(".metrics")]] = text
            if len(found) >= want:
                return found
            time.sleep(0.2)
        raise RuntimeError(f"no {want} metrics files in {self.run_dir} after {timeout} s")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the launcher stops its children itself
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever is left of the job
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.log.close()
