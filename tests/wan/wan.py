"""wan.py - an emulated WAN on one machine, for gdml's tests and benchmarks.

Each node (the coordinator, each data center) gets its own network
namespace with loopback and a TUN device, wan0, addressed 10.77.0.<i+1>/24.
gdml-wanem (wanem.c) forwards packets between the wan0 devices in userspace
and applies, per direction, one-way delay, jitter, a rate cap, random loss
and cuts (partitions) that start and heal while a job runs. Real TCP runs
across it, so loss, retransmission and congestion control are the kernel's.
No netem is needed.

    with Wan(["coordinator", "us-east", "eu-west"]) as wan:
        wan.set("*", "*", delay=50, rate="50mbit")
        p = wan.popen("us-east", ["build/gdml-server", ...], log_path)
        wan.cut("eu-west"); ...; wan.heal("eu-west")

Everything it makes (namespaces, devices, processes) is removed when the
block ends, however it ends; namespaces left by a harness that was itself
killed are removed by the next one. Only its own namespaces are touched:
their names start with "gdmlwan<pid>-".

Needs root (network namespaces and /dev/net/tun). Wan.available() says
whether this host can run it, and why not.
"""

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import time

PREFIX = "gdmlwan"


def _ip(*args, check=True):
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args), r.stderr.strip()))
    return r


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def sweep_stale():
    """Removes namespaces of harnesses whose process is gone."""
    r = _ip("netns", "list", check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(r"^%s(\d+)-" % PREFIX, name)
        if m and not _alive(int(m.group(1))):
            _ip("netns", "delete", name, check=False)


def find_wanem():
    """The gdml-wanem binary of the build directory in use."""
    build = os.environ.get("GDML_BUILD_DIR", "build")
    path = os.path.join(build, "tests", "wan", "gdml-wanem")
    if not os.access(path, os.X_OK):
        raise RuntimeError("no %s: build first (meson compile -C %s)" % (path, build))
    return os.path.abspath(path)


class Wan:
    """An emulated WAN between named nodes (see the module's text)."""

    @staticmethod
    def available():
        """None if this host can run the harness, else why not."""
        if os.geteuid() != 0:
            return "needs root (network namespaces and /dev/net/tun)"
        if not shutil.which("ip"):
            return "needs the ip command (iproute2)"
        if not os.path.exists("/dev/net/tun"):
            return "needs /dev/net/tun"
        return None

    def __init__(self, nodes, seed=1, sysctls=None, initcwnd=0):
        if len(nodes) < 2 or len(nodes) > 32 or len(set(nodes)) != len(nodes):
            raise ValueError("2..32 distinct node names")
        self.nodes = list(nodes)
        self.seed = seed
        self.tag = "%s%d-%x" % (PREFIX, os.getpid(), id(self) & 0xFFFFFF)
        self.netns = {n: "%s-%d" % (self.tag, i) for i, n in enumerate(self.nodes)}
        self.procs = []
        self.wanem = None
        self.sysctls = dict(sysctls or {})  # per namespace, e.g. TCP tuning
        self.initcwnd = initcwnd            # TCP's initial window on the WAN route (0: default)

    # ---- lifetime ----

    def __enter__(self):
        why = Wan.available()
        if why:
            raise RuntimeError("the WAN harness " + why)
        sweep_stale()
        atexit.register(self.close)
        # SIGTERM (a test runner's timeout) unwinds through close() too.
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            for i, n in enumerate(self.nodes):
                ns = self.netns[n]
                _ip("netns", "add", ns)
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "tuntap", "add", "dev", "wan0", "mode", "tun")
                _ip("-n", ns, "addr", "add", "%s/24" % self.addr(n), "dev", "wan0")
                _ip("-n", ns, "link", "set", "wan0", "up")
                if self.initcwnd:
                    _ip("-n", ns, "route", "replace", "10.77.0.0/24", "dev", "wan0",
                        "initcwnd", str(self.initcwnd), "initrwnd", str(self.initcwnd))
                for k, v in self.sysctls.items():
                    subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "%s=%s" % (k, v)],
                                   check=True)
            args = [find_wanem(), "--seed", str(self.seed)]
            args += ["%s=%s" % (n, self.netns[n]) for n in self.nodes]
            self.wanem = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          text=True, bufsize=1)
            line = self.wanem.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError("gdml-wanem did not start (said %r)" % line)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Stops every process it started, then the forwarder, then removes the namespaces."""
        for p in self.procs:
            self._kill(p)
        self.procs = []
        if self.wanem:
            try:
                self.wanem.stdin.close()
            except OSError:
                pass
            try:
                self.wanem.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.wanem.kill()
                self.wanem.wait()
            self.wanem.stdout.close()
            self.wanem = None
        for ns in self.netns.values():
            _ip("netns", "delete", ns, check=False)

    @staticmethod
    def _kill(p, sig=signal.SIGKILL):
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        if p.stdout:
            p.stdout.close()

    # ---- addresses and processes ----

    def addr(self, node):
        """The node's address on the WAN."""
        return "10.77.0.%d" % (self.nodes.index(node) + 1)

    def popen(self, node, argv, log_path=None, stdout=None):
        """Starts argv inside node's namespace, in its own process group."""
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL
        p = subprocess.Popen(["ip", "netns", "exec", self.netns[node], *argv],
                             stdout=stdout if stdout is not None else out,
                             stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
        if log_path:
            out.close()
        self.procs.append(p)
        return p

    def run(self, node, argv, timeout=60):
        """Runs argv inside node's namespace to completion; returns CompletedProcess."""
        return subprocess.run(["ip", "netns", "exec", self.netns[node], *argv],
                              capture_output=True, text=True, timeout=timeout)

    def kill(self, p, sig=signal.SIGKILL):
        """Signals one started process (its group) and waits for it if it is SIGKILL."""
        if sig == signal.SIGKILL:
            self._kill(p)
        elif p.poll() is None:
            os.killpg(p.pid, sig)

    # ---- the links ----

    def _command(self, line):
        self.wanem.stdin.write(line + "\n")
        self.wanem.stdin.flush()
        out = []
        while True:
            reply = self.wanem.stdout.readline()
            if not reply:
                raise RuntimeError("gdml-wanem exited")
            reply = reply.strip()
            if reply == "ok":
                return out
            if reply.startswith("error: "):
                raise ValueError("gdml-wanem: %s (command: %s)" % (reply[7:], line))
            out.append(reply)

    def set(self, src, dst, **params):
        """Link parameters from src to dst (node names or "*"): delay=ms, jitter=ms,
        rate="50mbit", loss=0..1, queue=bytes."""
        kv = " ".join("%s=%s" % (k, v) for k, v in params.items())
        self._command("set %s %s %s" % (src, dst, kv))

    def both(self, a, b, **params):
        """The same parameters both ways between a and b."""
        self.set(a, b, **params)
        self.set(b, a, **params)

    def cut(self, node, other=None):
        """Partitions node from every other (or from other only)."""
        self._command("cut %s%s" % (node, " " + other if other else ""))

    def heal(self, node, other=None):
        self._command("heal %s%s" % (node, " " + other if other else ""))

    def stats(self):
        """{(src, dst): {passed, bytes, lost, cut, full}}."""
        links = {}
        for line in self._command("stats"):
            parts = line.split()
            if parts[0] == "link":
                links[(parts[1], parts[2])] = {
                    k: int(v) for k, v in (p.split("=") for p in parts[3:])}
        return links


def wait_for(pred, timeout, step=0.05):
    """Polls pred until it is true or timeout seconds pass; returns its last value."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step)
