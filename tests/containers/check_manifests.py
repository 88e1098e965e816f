#!/usr/bin/env python3
"""Parses docker/compose.yml and docker/k8s/*.yaml and cross-checks them with
the programs, without starting a container:

- every gdml program they run exists in the build, and every flag they pass
  is one its --help lists;
- every path they pass lies under something mounted in that container, every
  --config is a file of config/, and the ConfigMap holds config/ byte for byte;
- every endpoint names a service (or Service) that listens on that port, the
  ports agree with config/*.ini and with the programs' defaults, and the health
  checks look for those ports;
- every key of config/*.ini is one docs/config.md (the config table) lists;
- the shape: 3 regions, each a server and 2 workers; a network per DC plus the
  WAN, workers only on their DC's; the store on a named volume or a persistent
  volume; keys from secrets, 0400 under Kubernetes; a non-root user.

    python3 tests/containers/check_manifests.py BUILD_DIR     (a meson test)
"""
import configparser
import os
import re
import shlex
import subprocess
import sys

try:
    import yaml
except ImportError:
    print("manifests: skipped: python3-yaml missing (bash docker/install-deps.sh)")
    sys.exit(77)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
REGIONS = ["us-east", "eu-west", "ap-south"]
PATH_FLAGS = {"--config", "--store", "--key", "--allow", "--coordinator-key", "--server-key",
              "--images", "--labels", "--eval-images", "--eval-labels", "--checkpoint",
              "--endpoint-file", "--train-images", "--train-labels"}
errors = []
_help = {}


def fail(where, msg):
    errors.append(f"{where}: {msg}")


def help_text(prog):
    if prog not in _help:
        exe = os.path.join(BUILD, prog)
        if not os.access(exe, os.X_OK):
            _help[prog] = None
        else:
            _help[prog] = subprocess.run([exe, "--help"], capture_output=True, text=True).stdout
    return _help[prog]


def ini(name):
    c = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
    c.read(os.path.join(ROOT, "config", name))
    return c


def port(endpoint):
    m = re.fullmatch(r"tcp://([^:]+):(\d+)", endpoint)
    return (m.group(1), int(m.group(2))) if m else (None, None)


def invocations(argv):
    """The gdml command lines in argv: argv itself, or each of a sh -c script's."""
    if argv and argv[0] == "sh":
        out = []
        for piece in re.split(r"&&|;", argv[-1]):
            words = shlex.split(piece)
            if words and words[0].startswith("gdml-"):
                out.append(words)
        return out
    return [argv] if argv and argv[0].startswith("gdml-") else []


def check_invocation(where, argv, mounts):
    """Flags against --help; path values under mounts. Returns {flag: value}."""
    prog = argv[0]
    text = help_text(prog)
    if text is None:
        fail(where, f"{prog} is not a program of the build ({BUILD})")
        return {}
    flags = {}
    i = 1
    while i < len(argv):
        a = argv[i]
        if a.startswith("--"):
            if not re.search(r"(^|\s)" + re.escape(a) + r"(\s|=|$)", text, re.M):
                fail(where, f"{prog} has no flag {a} (see {prog} --help)")
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                flags[a] = argv[i + 1]
                i += 1
        i += 1
    for f, v in flags.items():
        if f in PATH_FLAGS and not any(v == m or v.startswith(m.rstrip("/") + "/") for m in mounts):
            fail(where, f"{f} {v} is under nothing mounted in the container ({sorted(mounts)})")
        if f == "--config":
            name = os.path.basename(v)
            if not os.path.isfile(os.path.join(ROOT, "config", name)):
                fail(where, f"--config {v}: config/{name} does not exist")
    return flags


def listen_port(name, prog):
    """The listen port of config/NAME and of PROG's built-in default; they must agree."""
    section = "coordinator" if prog == "gdml-coordinator" else "server"
    p = port(ini(name)[section]["listen"])[1]
    text = help_text(prog) or ""
    m = re.search(section + r"\.listen \(default tcp://[^:]+:(\d+)", text)
    if not m or int(m.group(1)) != p:
        fail(f"config/{name}", f"listen port {p} is not {prog}'s default ({m and m.group(1)})")
    return p


def check_config_keys():
    doc = open(os.path.join(ROOT, "docs", "config.md")).read()
    table = {}
    for sec, body in re.findall(r"^## \[(\w+)\]\n(.*?)(?=^## |\Z)", doc, re.M | re.S):
        table[sec] = set(re.findall(r"^\| `(\w+)` \|", body, re.M))
    for name in ("coordinator.ini", "region.ini", "worker.ini"):
        c = ini(name)
        for sec in c.sections():
            for key in c[sec]:
                if key not in table.get(sec, ()):
                    fail(f"config/{name}", f"[{sec}] {key} is not a key of docs/config.md")


def check_compose(coord_port, server_port):
    where = "docker/compose.yml"
    doc = yaml.safe_load(open(os.path.join(ROOT, "docker", "compose.yml")))
    svcs, nets = doc["services"], doc["networks"]
    want = {"split", "coordinator"} | {f"server-{r}" for r in REGIONS} | \
           {f"worker-{r}-{i}" for r in REGIONS for i in (0, 1)}
    if set(svcs) != want:
        fail(where, f"services {sorted(svcs)}, expected {sorted(want)}")
    for r in REGIONS:
        if not (nets.get(f"dc-{r}") or {}).get("internal"):
            fail(where, f"network dc-{r} missing or not internal")
    listens = {"coordinator": coord_port}
    listens.update({f"server-{r}": server_port for r in REGIONS})
    for name, s in svcs.items():
        w = f"{where}: {name}"
        mounts = {re.sub(r"\$\{[^}]*\}", "X", v).split(":")[1] for v in s.get("volumes", [])}
        mounts |= {"/run/secrets/" + (x["target"] if isinstance(x, dict) else x) for x in s.get("secrets", [])}
        mounts |= set(s.get("tmpfs", []))
        if "../config:/etc/gdml/config:ro" not in s.get("volumes", []) and name != "split":
            fail(w, "config/ is not mounted at /etc/gdml/config")
        for argv in invocations(s["command"]):
            flags = check_invocation(w, argv, mounts)
            for f in ("--coordinator", "--server"):
                if f in flags:
                    host, p = port(flags[f])
                    if host not in svcs or listens.get(host) != p:
                        fail(w, f"{f} {flags[f]}: no service {host} listening on {p}")
                    elif not set(s["networks"]) & set(svcs[host]["networks"]):
                        fail(w, f"shares no network with {host}")
            if "--regions" in flags and flags["--regions"].split(",") != REGIONS:
                fail(w, f"--regions {flags['--regions']} is not {REGIONS}")
        nets_of = set(s.get("networks", []))
        if name.startswith("worker-") and nets_of != {f"dc-{name.split('-', 1)[1].rsplit('-', 1)[0]}"}:
            fail(w, f"a worker on networks {sorted(nets_of)}: only its DC's")
        if name.startswith("server-") and nets_of != {"wan", f"dc-{name[7:]}"}:
            fail(w, f"a server on networks {sorted(nets_of)}: the WAN and its DC's")
        if name == "coordinator":
            if nets_of != {"wan"}:
                fail(w, "the coordinator is on more than the WAN")
            if s.get("restart") != "on-failure":
                fail(w, "the coordinator is not restarted on failure")
            if "store:/var/lib/gdml/store" not in s["volumes"] or "store" not in doc["volumes"]:
                fail(w, "the store is not on the named volume store")
        if name != "split":
            test = " ".join(s.get("healthcheck", {}).get("test", []))
            for p in re.findall(r":([0-9A-F]{4}) 01", test):
                if int(p, 16) not in (coord_port, server_port):
                    fail(w, f"health check looks for port {int(p, 16)}")
            if not test:
                fail(w, "no health check")
    for sec in doc.get("secrets", {}).values():
        if not sec.get("file", "").startswith("${GDML_KEYS"):
            fail(where, f"secret file {sec} not under GDML_KEYS")


def pod_specs(docs):
    for d in docs:
        if d["kind"] in ("StatefulSet", "Deployment"):
            yield d, d["spec"]["template"]["spec"]


def check_k8s(coord_port, server_port):
    docs = []
    for f in sorted(os.listdir(os.path.join(ROOT, "docker", "k8s"))):
        if f.endswith(".yaml"):
            docs += [(f, d) for d in yaml.safe_load_all(open(os.path.join(ROOT, "docker", "k8s", f))) if d]
    kinds = [d["kind"] for _, d in docs]
    by = {(d["kind"], d["metadata"]["name"]): d for _, d in docs}
    for k, n in [("StatefulSet", "gdml-coordinator"), ("Service", "gdml-coordinator"), ("ConfigMap", "gdml-config")] + \
                [("Deployment", f"gdml-{r}") for r in REGIONS]:
        if (k, n) not in by:
            fail("docker/k8s", f"no {k} {n} (has {kinds})")
    cm = by.get(("ConfigMap", "gdml-config"), {}).get("data", {})
    for name in ("coordinator.ini", "region.ini", "worker.ini"):
        if cm.get(name) != open(os.path.join(ROOT, "config", name)).read():
            fail("docker/k8s/configmap.yaml", f"{name} differs from config/{name}")
    sts = by.get(("StatefulSet", "gdml-coordinator"))
    svc = by.get(("Service", "gdml-coordinator"))
    if sts and svc:
        labels = sts["spec"]["template"]["metadata"]["labels"]
        if any(labels.get(k) != v for k, v in svc["spec"]["selector"].items()):
            fail("docker/k8s/coordinator.yaml", "the Service selects no coordinator pod")
        if [p["port"] for p in svc["spec"]["ports"]] != [coord_port]:
            fail("docker/k8s/coordinator.yaml", f"the Service's port is not {coord_port}")
        if sts["spec"].get("serviceName") != "gdml-coordinator":
            fail("docker/k8s/coordinator.yaml", "the StatefulSet's serviceName is not its Service")
    services = {d["metadata"]["name"]: [p["port"] for p in d["spec"]["ports"]]
                for _, d in docs if d["kind"] == "Service"}
    for d, spec in pod_specs([d for _, d in docs]):
        w = f"docker/k8s: {d['kind']} {d['metadata']['name']}"
        vols = {v["name"]: v for v in spec["volumes"]}
        claims = {c["metadata"]["name"] for c in d["spec"].get("volumeClaimTemplates", [])}
        sc = spec.get("securityContext", {})
        if sc.get("runAsUser", 0) == 0:
            fail(w, "runs as root")
        for v in vols.values():
            if "secret" in v and v["secret"].get("defaultMode") != 0o400:
                fail(w, f"secret volume {v['name']} is not defaultMode 0400")
            if "configMap" in v and ("ConfigMap", v["configMap"]["name"]) not in by:
                fail(w, f"no ConfigMap {v['configMap']['name']}")
        for c in spec.get("initContainers", []) + spec["containers"]:
            cw = f"{w} container {c['name']}"
            for m in c.get("volumeMounts", []):
                if m["name"] not in vols and m["name"] not in claims:
                    fail(cw, f"mounts an undeclared volume {m['name']}")
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            listen = {}
            for argv in invocations(c.get("command", []) + c.get("args", [])):
                flags = check_invocation(cw, argv, mounts)
                if argv[0] == "gdml-coordinator":
                    ports = [p["containerPort"] for p in c.get("ports", [])]
                    if ports != [coord_port]:
                        fail(cw, f"containerPort {ports}, the coordinator listens on {coord_port}")
                    if flags.get("--store") not in {m["mountPath"] for m in c["volumeMounts"] if m["name"] in claims}:
                        fail(cw, "the store is not on the persistent volume")
                if argv[0] == "gdml-server":
                    listen = port(flags.get("--listen", f"tcp://0.0.0.0:{server_port}"))
                    host, p = port(flags["--coordinator"])
                    if p not in services.get(host, []):
                        fail(cw, f"--coordinator {flags['--coordinator']}: no Service {host} on port {p}")
                if argv[0] == "gdml-worker":
                    servers = [port(a) for cc in spec["containers"] for a in cc.get("args", [])
                               if a.startswith("tcp://127.0.0.1:")]
                    if port(flags["--server"]) not in servers:
                        fail(cw, f"--server {flags['--server']}: its pod's server listens elsewhere")
                if "--regions" in flags and flags["--regions"].split(",") != REGIONS:
                    fail(cw, f"--regions {flags['--regions']} is not {REGIONS}")
            probe = " ".join(sum((c.get(p, {}).get("exec", {}).get("command", [])
                                  for p in ("livenessProbe", "readinessProbe")), []))
            for p in re.findall(r":([0-9A-F]{4}) 01", probe):
                if int(p, 16) not in (coord_port, server_port):
                    fail(cw, f"probe looks for port {int(p, 16)}")


def main():
    coord_port = listen_port("coordinator.ini", "gdml-coordinator")
    server_port = listen_port("region.ini", "gdml-server")
    check_config_keys()
    check_compose(coord_port, server_port)
    check_k8s(coord_port, server_port)
    checked = sorted(_help)
    if errors:
        print("\n".join(errors))
        print(f"manifests: {len(errors)} problems")
        return 1
    print(f"manifests: compose.yml and docker/k8s agree with {', '.join(checked)} and config/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
