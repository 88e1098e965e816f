#!/usr/bin/env python3
"""The Kubernetes manifests for real, under `podman kube play`.

Plays docker/k8s/ (the ConfigMap, the coordinator, a Deployment per region)
with Secrets made from fresh CURVE keys (docker/make-keys.sh), waits for the
job to end (scraping the metrics of the coordinator, a server and a
worker on the way, twice, to see their counters move), and checks the test accuracy and that the coordinator's
persistent volume holds every version it reported (gdml-models verify).

What kube play cannot express is adapted here, and only here:
- a StatefulSet becomes the Pod it would run (named as its Service, so the
  regions' tcp://gdml-coordinator:7070 resolves), its volumeClaimTemplates
  a PersistentVolumeClaim;
- the Service is left out (on this one network the coordinator Pod's name is
  its address);
- every name gets the test's unique prefix, so that runs never meet;
- the coordinator trains GDML_ROUNDS versions (150), not the ConfigMap's 40,
  so that the metrics are scraped while the job runs;
- the pods restart containers on failure only (Kubernetes requires Always
  of a Deployment's), since podman 4.3 restarts init containers that ended
  well under Always;
- podman before 4.4 writes a Secret's files base64-encoded, so there each
  Secret is a directory of the same files instead (hostPath), which the
  init container copies all the same.

    python3 tests/containers/test_kube.py      (root, podman; builds the image if missing)

Exits 77 (skipped) without podman, unless GDML_CONTAINER_TESTS=required.
GDML_ACCURACY sets the threshold (0.75).
"""
import base64
import copy
import os
import shutil
import sys
import time

import yaml

import container_support as ps

WHAT = "kube"
REGIONS = ["us-east", "eu-west", "ap-south"]
THRESHOLD = float(os.environ.get("GDML_ACCURACY", "0.75"))
# More than config/coordinator.ini's 40 (set on the coordinator's command
# line), so that the metrics are scraped mid-job.
ROUNDS = int(os.environ.get("GDML_ROUNDS", "150"))
K8S = os.path.join(ps.ROOT, "docker", "k8s")


def podman_before(major, minor):
    v = ps.engine("version", "--format", "{{.Client.Version}}").stdout.strip().split(".")
    return (int(v[0]), int(v[1])) < (major, minor)


def secret(name, files):
    data = {k: base64.b64encode(open(p, "rb").read()).decode() for k, p in files.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": data}


def secret_dir(tmp, name, files):
    d = os.path.join(tmp, "secrets", name)
    os.makedirs(d)
    for k, p in files.items():
        shutil.copy(p, os.path.join(d, k))
    return d


def play_documents(prefix, keys, network_name):
    """The manifests, adapted for kube play as the module's docstring says."""
    docs = []
    for f in ("configmap.yaml", "coordinator.yaml", "regions.yaml"):
        docs += [d for d in yaml.safe_load_all(open(os.path.join(K8S, f))) if d]
    rename = {}
    for d in docs:
        n = d["metadata"]["name"]
        rename[n] = n.replace("gdml-", prefix + "-", 1)
    for r in REGIONS:
        rename[f"gdml-{r}-keys"] = f"{prefix}-{r}-keys"
    rename["gdml-coordinator-keys"] = f"{prefix}-coordinator-keys"
    files = {"gdml-coordinator-keys": {"coordinator.key": f"{keys}/coordinator.key",
                                       "regions.allow": f"{keys}/regions.allow"}}
    for r in REGIONS:
        files[f"gdml-{r}-keys"] = {f"{r}.key": f"{keys}/{r}.key",
                                   "coordinator.pub": f"{keys}/coordinator.pub"}
    as_dirs = podman_before(4, 4)
    out = [] if as_dirs else [secret(rename[n], f) for n, f in files.items()]
    for d in docs:
        kind = d["kind"]
        if kind == "Service":
            continue
        d = copy.deepcopy(d)
        d["metadata"]["name"] = rename[d["metadata"]["name"]]
        if kind == "ConfigMap":
            out.append(d)
            continue
        claims = []
        if kind == "StatefulSet":
            spec = d["spec"]["template"]["spec"]
            for c in d["spec"].get("volumeClaimTemplates", []):
                claim = f"{prefix}-{c['metadata']['name']}"
                claims.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                               "metadata": {"name": claim}, "spec": c["spec"]})
                spec["volumes"].append({"name": c["metadata"]["name"],
                                        "persistentVolumeClaim": {"claimName": claim}})
            d = {"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": d["metadata"]["name"],
                              "labels": d["spec"]["template"]["metadata"]["labels"]},
                 "spec": spec}
        spec = d["spec"] if kind == "StatefulSet" else d["spec"]["template"]["spec"]
        for v in spec["volumes"]:
            if "configMap" in v:
                v["configMap"]["name"] = rename[v["configMap"]["name"]]
            if "secret" in v and as_dirs:
                path = secret_dir(os.path.dirname(keys), rename[v["secret"]["secretName"]],
                                  files[v["secret"]["secretName"]])
                del v["secret"]
                v["hostPath"] = {"path": path, "type": "Directory"}
            elif "secret" in v:
                v["secret"]["secretName"] = rename[v["secret"]["secretName"]]
            if "hostPath" in v and v["hostPath"]["path"].endswith("fashion-mnist"):
                v["hostPath"]["path"] = os.environ.get("GDML_DATASET", v["hostPath"]["path"])
        # podman 4.3 applies the pod's restart policy to its init containers
        # too: under Always, one that ended is started again, and again.
        spec["restartPolicy"] = "OnFailure"
        for c in spec.get("initContainers", []) + spec["containers"]:
            c["image"] = ps.IMAGE
            # podman 4.3 publishes every containerPort on the host's same
            # port, so the pods' metrics ports (9464 in each) would collide
            # there; a cluster only declares them. The test scrapes them from
            # inside each pod's network namespace.
            c.pop("ports", None)
            c["args"] = [a.replace("tcp://gdml-coordinator:", f"tcp://{rename['gdml-coordinator']}:")
                         for a in c.get("args", [])]
            if c["name"] == "coordinator":
                c["args"] += ["--set", f"coordinator.rounds={ROUNDS}"]
        out += claims + [d]
    return out


def main():
    if ps.ENGINE != "podman":
        print(f"{WHAT}: skipped: kube play is podman's (GDML_ENGINE={ps.ENGINE})")
        return ps.SKIP
    ps.need(["podman"], WHAT)
    ps.ensure_image(WHAT)
    prefix = ps.unique("gdmlk")
    tmp = ps.tempdir("gdml-kube-")
    play = os.path.join(tmp, "play.yaml")
    network = f"{prefix}-net"
    coordinator = f"{prefix}-coordinator-coordinator"
    t0 = time.monotonic()

    def body():
        ps.make_keys(os.path.join(tmp, "keys"), REGIONS)
        with open(play, "w") as f:
            yaml.safe_dump_all(play_documents(prefix, os.path.join(tmp, "keys"), network), f)
        ps.engine("network", "create", network)
        ps.engine("kube", "play", "--network", network, play, timeout=600)
        ps.log(WHAT, f"{prefix}: played in {time.monotonic() - t0:.1f} s")

        # Each role serves Prometheus metrics on its containerPort, and its counters move.
        def reported(n):
            return ps.reported(coordinator, n)
        at = ps.wait_for("version 2", reported(2), 300, every=0.25)[-1][0]
        region = f"{prefix}-us-east-pod-0"  # kube play names a Deployment's pod so
        ps.check_metrics(WHAT, [(coordinator, 9464, "gdml_wan_bytes_total"),
                                (f"{region}-server", 9464, "gdml_wan_bytes_total"),
                                (f"{region}-worker-0", 9465, "gdml_samples_total")],
                         lambda: ps.wait_for(f"version {at + 3}", reported(at + 3), 120))

        def done():
            text = ps.logs(coordinator)
            return text if "\ndone versions=" in "\n" + text else None
        text = ps.wait_for("the job to end", done, 600, every=1)
        prog = ps.progress(text)
        versions = [v for v, _ in prog]
        if versions != list(range(1, ROUNDS + 1)):
            raise RuntimeError(f"reported versions {versions}")
        accuracy = prog[-1][1]
        if not accuracy >= THRESHOLD:
            raise RuntimeError(f"final test accuracy {accuracy:.4f} below {THRESHOLD}")
        # The job is over: stop the pods so that no restart touches the store.
        ps.engine("kube", "down", play, check=False, timeout=300)
        verify = ps.check_store(f"{prefix}-store", versions, ROUNDS)
        ps.log(WHAT, f"ok: {len(versions)} versions reported and stored, final accuracy {accuracy:.4f} "
               f"(>= {THRESHOLD}); {verify}; {time.monotonic() - t0:.0f} s")

    def down():
        if os.path.exists(play):
            ps.engine("kube", "down", play, check=False, timeout=300)
    return ps.run_test(WHAT, prefix, tmp, coordinator, body, down)


if __name__ == "__main__":
    sys.exit(main())
