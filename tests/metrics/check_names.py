#!/usr/bin/env python3
"""check_names.py - the metric names gdml's files use are the ones it exports.

The names each long-running program exports come from the program itself
(`--metrics-names`, printed from the one catalogue of metrics). Checked
against them:
- every metric name in a PromQL query of docker/grafana-dashboard.json;
- docs/operations.md's Metrics table, which lists exactly those names.

    python3 tests/metrics/check_names.py BUILD_DIR        (a meson test)
"""

import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
NAME = re.compile(r"\bgdml_[a-zA-Z0-9_:]+")


def exported():
    names = {}
    for prog in ("gdml-coordinator", "gdml-server", "gdml-worker"):
        out = subprocess.run([os.path.join(BUILD, prog), "--metrics-names"], capture_output=True,
                             text=True, check=True).stdout.split()
        if not out:
            sys.exit(f"{prog} --metrics-names printed nothing")
        for n in out:
            names.setdefault(n, []).append(prog)
    return names


def queries(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "expr" and isinstance(v, str):
                yield v
            else:
                yield from queries(v)
    elif isinstance(node, list):
        for v in node:
            yield from queries(v)


def main():
    names = exported()
    errors = []
    dash = json.load(open(os.path.join(ROOT, "docker", "grafana-dashboard.json")))
    exprs = list(queries(dash))
    if not exprs:
        errors.append("docker/grafana-dashboard.json has no PromQL query")
    used = set()
    for e in exprs:
        for n in NAME.findall(e):
            used.add(n)
            if n not in names:
                errors.append(f"docker/grafana-dashboard.json: '{n}' (in {e!r}) is not a metric "
                              "gdml exports")
    doc = open(os.path.join(ROOT, "docs", "operations.md")).read()
    section = re.search(r"^## Metrics\n(.*?)(?=^## |\Z)", doc, re.M | re.S)
    listed = set(re.findall(r"^\| `(gdml_[a-z0-9_]+)`", section.group(1), re.M)) if section else set()
    for n in sorted(set(names) - listed):
        errors.append(f"docs/operations.md: the Metrics section does not list {n}")
    for n in sorted(listed - set(names)):
        errors.append(f"docs/operations.md: lists {n}, which no program exports")
    for e in errors:
        print(e)
    print(f"metric names: {len(names)} exported, {len(used)} used by {len(exprs)} dashboard "
          f"queries, {len(listed)} documented; {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
