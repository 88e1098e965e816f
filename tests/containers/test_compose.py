#!/usr/bin/env python3
"""The compose cluster for real: docker/compose.yml under podman-compose.

Brings up a coordinator and 3 data centers (a regional server and 2 workers
each, one internal network per DC plus the WAN), with CURVE keys as secrets
(docker/make-keys.sh) and the data split into per-DC volumes; checks every
container's health check; scrapes the metrics of the coordinator, a server
and a worker twice and checks that their counters moved; kills the coordinator's process mid-job (SIGKILL,
as a crash) and checks that compose restarts it and that it resumes from its
volume, not from version 1; waits for the job to end and checks the test
accuracy and that the store holds exactly the versions reported, none lost,
none merged twice (gdml-models verify). Tears everything down on every exit
and fails if anything of its project is left.

    python3 tests/containers/test_compose.py      (root, podman; builds the image if missing)
    GDML_ENGINE=docker python3 tests/containers/test_compose.py   (a Docker engine, docker-compose)

Exits 77 (skipped) without the engine or its compose, unless
GDML_CONTAINER_TESTS=required. GDML_ACCURACY sets the threshold (0.75).
"""
import os
import re
import signal
import sys
import time

import container_support as ps

WHAT = "compose"
REGIONS = ["us-east", "eu-west", "ap-south"]
THRESHOLD = float(os.environ.get("GDML_ACCURACY", "0.75"))
# Long enough that the health checks and the kill land mid-job (config/
# coordinator.ini's 40 take about 5 s once every region has joined).
ROUNDS = int(os.environ.get("GDML_ROUNDS", "300"))


# podman-compose under podman; under Docker, docker-compose (1.x, Debian's),
# whose containers are named as podman-compose's: PROJECT_SERVICE_1.
COMPOSE = "podman-compose" if ps.ENGINE == "podman" else "docker-compose"


def compose(project, *args, timeout=600, check=True):
    return ps.run([COMPOSE, "-p", project, "-f",
                   os.path.join(ps.ROOT, "docker", "compose.yml"), *args],
                  env=compose.env, timeout=timeout, check=check)


# Log events, on stderr in the order they happened (the progress lines are on
# stdout, and the engine's logs come back as the two streams one after the other).
RESUME = re.compile(r" coordinator resume version=(\d+)")
COMMIT = re.compile(r" coordinator commit version=(\d+)")


def resume_point(stderr):
    """(head, first): the version the last restart resumed from and the first version it
    committed, or (None, None) if no restart resumed."""
    head, first = None, None
    for line in stderr.splitlines():
        m = RESUME.search(line)
        if m:
            head, first = int(m.group(1)), None
            continue
        m = COMMIT.search(line)
        if m and head is not None and first is None:
            first = int(m.group(1))
    return head, first


def main():
    ps.need([ps.ENGINE, COMPOSE], WHAT)
    ps.ensure_image(WHAT)
    project = ps.unique("gdmlc")
    tmp = ps.tempdir("gdml-compose-")
    compose.env = ps.env()
    compose.env["GDML_KEYS"] = os.path.join(tmp, "keys")
    compose.env["GDML_ROUNDS"] = str(ROUNDS)
    coordinator = f"{project}_coordinator_1"
    t0 = time.monotonic()

    def body():
        ps.make_keys(compose.env["GDML_KEYS"], REGIONS)
        compose(project, "up", "-d")
        ps.log(WHAT, f"project {project} up in {time.monotonic() - t0:.1f} s")

        def reported(n):
            return ps.reported(coordinator, n)
        ps.wait_for("version 1", reported(1), 300, every=0.25)

        # Every health check passes while the job runs.
        names = [f"{project}_coordinator_1"] + [f"{project}_server-{r}_1" for r in REGIONS] + \
                [f"{project}_worker-{r}-{i}_1" for r in REGIONS for i in (0, 1)]
        for n in names:
            ps.wait_for(f"{n} healthy", lambda: ps.healthy(n), 30)
        ps.log(WHAT, f"{len(names)} containers healthy")

        # Each role serves Prometheus metrics on 9464, and its counters move.
        at = ps.progress(ps.logs(coordinator))[-1][0]
        ps.check_metrics(WHAT, [(coordinator, 9464, "gdml_wan_bytes_total"),
                                (f"{project}_server-us-east_1", 9464, "gdml_wan_bytes_total"),
                                (f"{project}_worker-us-east-0_1", 9464, "gdml_samples_total")],
                         lambda: ps.wait_for(f"version {at + 3}", reported(at + 3), 120))

        # A crash: SIGKILL to the coordinator's process, from outside.
        _, _, restarts_before, pid = ps.state(coordinator)
        os.kill(pid, signal.SIGKILL)
        killed_at = ps.progress(ps.logs(coordinator))[-1][0]
        t_kill = time.monotonic()
        ps.log(WHAT, f"killed the coordinator (pid {pid}) after version {killed_at}")
        ps.wait_for("the coordinator restarted",
                    lambda: (lambda s: s and s[2] > restarts_before and s[0] == "running")(ps.state(coordinator)), 60)
        t_restart = time.monotonic()
        after = ps.wait_for("a version after the restart", reported(killed_at + 1), 120, every=0.25)
        seen = next(v for v, _ in after if v > killed_at)
        ps.log(WHAT, f"restarted in {t_restart - t_kill:.1f} s; version {seen} reported "
               f"{time.monotonic() - t_kill:.1f} s after the kill")

        ps.wait_for("the job to end", lambda: (lambda s: s and s[0] == "exited")(ps.state(coordinator)), 600)
        status, code, restarts, _ = ps.state(coordinator)
        if code != 0:
            raise RuntimeError(f"the coordinator exited {code}:\n{ps.logs(coordinator)[-3000:]}")
        final = ps.engine("logs", coordinator, check=False)
        prog = ps.progress(final.stdout + final.stderr)
        versions = [v for v, _ in prog]
        if versions != sorted(set(versions)) or versions[-1] != ROUNDS:
            raise RuntimeError(f"reported versions not increasing to {ROUNDS}: {versions}")
        # The log read right after the kill can miss the last version's line:
        # the coordinator may have committed it and written the line just
        # before it died, and the engine collects the line a moment later. So
        # the resume is judged from the whole log: the restarted coordinator
        # names the head it resumed from, which is at least the last version
        # seen before the kill, and its first version is the one after it.
        head, first = resume_point(final.stderr)
        if head is None or head < killed_at or first != head + 1 or versions.count(1) != 1:
            raise RuntimeError(f"no resume: killed after version {killed_at}; the restarted coordinator "
                               f"resumed from {head} and reported {first} first")
        accuracy = prog[-1][1]
        if not accuracy >= THRESHOLD:
            raise RuntimeError(f"final test accuracy {accuracy:.4f} below {THRESHOLD}")
        verify = ps.check_store(f"{project}_store", versions, ROUNDS)
        ps.log(WHAT, f"ok: {len(versions)} versions reported, {ROUNDS} stored, final accuracy "
               f"{accuracy:.4f} (>= {THRESHOLD}); coordinator killed after version {killed_at}, "
               f"restarted by its policy (restart count {restarts_before} -> {restarts}"
               f"{'; the earlier ones came while the split was writing the eval set' if restarts_before else ''}), "
               f"resumed at version {first}; "
               f"{verify}; {time.monotonic() - t0:.0f} s")

    def down():
        compose(project, "down", "-v", "-t", "2", timeout=300, check=False)
    return ps.run_test(WHAT, project, tmp, coordinator, body, down)


if __name__ == "__main__":
    sys.exit(main())
