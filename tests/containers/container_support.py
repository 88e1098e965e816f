"""What the container tests share: the container engine (podman under the
project's containers.conf, or Docker with GDML_ENGINE=docker), the image,
unique names, progress lines, and a teardown that leaves nothing.

Every name a test creates starts with its own unique prefix, so two runs on
one machine never meet, and teardown removes by that prefix and by label.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE = os.environ.get("GDML_IMAGE", "gdml:latest")
ENGINE = os.environ.get("GDML_ENGINE", "podman")  # or docker
SKIP = 77  # meson's exit status for a skipped test

PROGRESS = re.compile(r"^round=(\d+) version=(\d+) accuracy=(\S+)")


def log(what, *args):
    print(f"{what}: " + " ".join(str(a) for a in args), flush=True)


def env():
    e = os.environ.copy()
    e.setdefault("CONTAINERS_CONF", os.path.join(ROOT, "docker", "containers.conf"))
    e.setdefault("GDML_IMAGE", IMAGE)
    return e


def run(args, check=True, timeout=600, **kw):
    """Runs a command, returns its CompletedProcess with text output."""
    p = subprocess.run(args, env=kw.pop("env", env()), capture_output=True, text=True,
                       timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def engine(*args, check=True, timeout=600):
    """Runs the container engine (podman or docker) with args."""
    return run([ENGINE, *args], check=check, timeout=timeout)


def healthy(container):
    """True once the container's health check passes."""
    if ENGINE == "podman":
        return engine("healthcheck", "run", container, check=False).returncode == 0
    p = engine("inspect", "-f", "{{.State.Health.Status}}", container, check=False)
    return p.stdout.strip() == "healthy"


def need(tools, what):
    """Exits with SKIP naming what is missing, unless GDML_CONTAINER_TESTS=required."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        msg = f"{what}: skipped: {', '.join(missing)} missing (bash docker/install-deps.sh --containers)"
        if os.environ.get("GDML_CONTAINER_TESTS") == "required":
            sys.exit(msg.replace("skipped", "failed"))
        print(msg)
        sys.exit(SKIP)


def ensure_image(what):
    """Builds the image with docker/build-image.sh unless it is there."""
    if engine("image", "inspect", IMAGE, check=False).returncode == 0:
        return
    log(what, f"no image {IMAGE}: building it (bash docker/build-image.sh)")
    t = time.monotonic()
    e = env()
    e["GDML_ENGINE"] = ENGINE
    p = run(["bash", os.path.join(ROOT, "docker", "build-image.sh")], env=e, timeout=1800)
    log(what, p.stdout.strip().splitlines()[-1], f"({time.monotonic() - t:.0f} s)")


def unique(prefix):
    return f"{prefix}{os.getpid()}{uuid.uuid4().hex[:6]}"


def tempdir(prefix):
    return tempfile.mkdtemp(prefix=prefix)


def make_keys(keys, regions):
    e = env()
    e["GDML_ENGINE"] = ENGINE
    run(["bash", os.path.join(ROOT, "docker", "make-keys.sh"), keys, *regions], env=e)


def progress(text):
    """[(version, accuracy)] of a coordinator's progress lines, in order."""
    out = []
    for line in text.splitlines():
        m = PROGRESS.match(line.strip())
        if m:
            out.append((int(m.group(2)), float(m.group(3))))
    return out


def logs(container):
    p = engine("logs", container, check=False)
    return p.stdout + p.stderr


def reported(container, n):
    """A condition for wait_for: the container's progress lines, once they reach version n."""
    def cond():
        p = progress(logs(container))
        return p if p and p[-1][0] >= n else None
    return cond


def wait_for(what, cond, timeout, every=0.5):
    """Polls cond() until it returns a true value, which it returns; fails after timeout s."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def state(container):
    """(status, exit code, restart count, pid) of a container, or None if it is gone."""
    p = engine("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}} {{.State.Pid}}",
               container, check=False)
    if p.returncode != 0:
        return None
    s, code, restarts, pid = p.stdout.split()
    return s, int(code), int(restarts), int(pid)


def scrape(container, port):
    """{series: value} from the Prometheus text that a running container
    serves on port. It is fetched from inside the container's network
    namespace (nsenter, with this host's python), since a DC's network is
    internal and a pod's ports are not published."""
    st = state(container)
    if not st or st[0] != "running":
        names = engine("ps", "--format", "{{.Names}}", check=False).stdout.split()
        raise RuntimeError(f"cannot scrape {container}: it is {st[0] if st else 'not there'} "
                           f"(running: {' '.join(names)})")
    pid = st[3]
    get = ("import sys, urllib.request; "
           f"sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:{port}/metrics', "
           "timeout=10).read().decode())")
    p = run(["nsenter", "-t", str(pid), "-n", sys.executable, "-c", get], check=False, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"cannot scrape {container} on port {port}: {p.stderr.strip()}")
    series = {}
    for line in p.stdout.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            series[name] = float(value)
    return series


def total(series, name):
    """The sum of every series of a metric, whatever its labels."""
    return sum(v for k, v in series.items() if k == name or k.startswith(name + "{"))


def check_metrics(what, targets, later):
    """Scrapes each (container, port, counter) of targets, waits for later()
    (a few more versions), and scrapes again: fails unless each counter (its
    series summed) has moved. Returns a line saying what moved."""
    first = {c: total(scrape(c, port), counter) for c, port, counter in targets}
    later()
    moved = []
    for c, port, counter in targets:
        now = total(scrape(c, port), counter)
        if not now > first[c]:
            raise RuntimeError(f"{c}: {counter} did not move ({first[c]:.0f} then {now:.0f})")
        moved.append(f"{c} {counter} {first[c]:.0f} -> {now:.0f}")
    log(what, "metrics scraped twice: " + "; ".join(moved))


def store_versions(volume):
    """The versions gdml-models lists in the LMDB store on a volume, and its verify's output."""
    listing = engine("run", "--rm", "--network", "none", "-v", f"{volume}:/store", IMAGE,
                     "gdml-models", "list", "--store", "/store").stdout
    verify = engine("run", "--rm", "--network", "none", "-v", f"{volume}:/store", IMAGE,
                    "gdml-models", "verify", "--store", "/store").stdout
    versions = []
    for line in listing.splitlines():
        f = line.split()
        if f and f[0].isdigit():
            versions.append(int(f[0]))
    return versions, verify


def kinds():
    """What a test may leave, pods first (removing one removes its containers),
    and the format of its names; Docker has no pods, and secrets only in swarm."""
    if ENGINE == "podman":
        return (("pod", "{{.Name}}"), ("ps", "{{.Names}}"), ("volume", "{{.Name}}"),
                ("network", "{{.Name}}"), ("secret", "{{.Name}}"))
    return (("ps", "{{.Names}}"), ("volume", "{{.Name}}"), ("network", "{{.Name}}"))


def leftovers(prefix, label=None):
    """Names of containers, pods, volumes, networks and secrets left that carry the prefix."""
    left = []
    for kind, fmt in kinds():
        args = [kind, "ls"] if kind not in ("ps",) else ["ps"]
        args += ["-a"] if kind in ("ps",) else []
        p = engine(*args, "--format", fmt, check=False)
        left += [f"{kind} {n}" for n in p.stdout.split() if n.startswith(prefix)]
    return left


def remove_all(prefix):
    """Removes every container, pod, volume, network and secret whose name starts with prefix."""
    for kind, fmt in kinds():
        args = ["ps", "-a"] if kind == "ps" else [kind, "ls"]
        names = [n for n in engine(*args, "--format", fmt, check=False).stdout.split()
                 if n.startswith(prefix)]
        if not names:
            continue
        if ENGINE == "podman":
            rm = {"ps": ["rm", "-f", "-t", "2"], "pod": ["pod", "rm", "-f", "-t", "2"],
                  "volume": ["volume", "rm", "-f"], "network": ["network", "rm", "-f"],
                  "secret": ["secret", "rm"]}[kind]
        else:
            rm = {"ps": ["rm", "-f"], "volume": ["volume", "rm", "-f"],
                  "network": ["network", "rm"]}[kind]
        engine(*rm, *names, check=False, timeout=120)


def check_store(volume, reported, last):
    """Fails unless the store on volume holds versions 1..last, every one
    reported among them, and gdml-models verify finds none missing and none
    merged twice; returns verify's summary line."""
    stored, verify = store_versions(volume)
    if stored != list(range(1, last + 1)) or not set(reported) <= set(stored):
        raise RuntimeError(f"store holds {stored}; reported {reported}")
    if "0 merged twice" not in verify or "0 missing" not in verify:
        raise RuntimeError(f"gdml-models verify: {verify}")
    return verify.strip().splitlines()[-1]


def run_test(what, prefix, tmp, coordinator, body, down):
    """Runs body(); says why it failed, with the coordinator's last log lines.
    Whatever happens, runs down(), removes everything named with prefix and the
    directory tmp, and fails if anything is left. Returns the exit status."""
    status = 1
    try:
        body()
        status = 0
    except Exception as e:
        print(f"{what}: FAILED: {e}", file=sys.stderr)
        print(logs(coordinator)[-2000:], file=sys.stderr)
    finally:
        down()
        remove_all(prefix)
        shutil.rmtree(tmp, ignore_errors=True)
        left = leftovers(prefix)
        if left:
            print(f"{what}: FAILED: left behind: {left}", file=sys.stderr)
            status = 1
    return status
