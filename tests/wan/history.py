"""history.py - what a finished job's store and logs say, for the fault
scenarios, the WAN benchmark and the punisher soak: the history audit of
`gdml-models verify`, the versions that merged a region's delta, and when a
log line was written."""

import calendar
import os
import re
import subprocess
import time


def verify(models, store):
    """gdml-models verify's verdict: checksums and the history audit, as a dict."""
    r = subprocess.run([models, "verify", "--store", store], capture_output=True, text=True)
    m = re.search(r"history: versions (\d+)\.\.(\d+), (\d+) missing.*?; (\d+) contributions, "
                  r"(\d+) merged twice", r.stdout)
    if not m:
        return {"verify_ok": False, "verify_output": r.stdout + r.stderr}
    return {"verify_ok": r.returncode == 0, "first_version": int(m.group(1)),
            "last_version": int(m.group(2)), "versions_missing": int(m.group(3)),
            "contributions": int(m.group(4)), "double_merges": int(m.group(5))}


def region_merges(models, store, region):
    """The versions that merged a new delta of region (its sequence number moved), in order."""
    r = subprocess.run([models, "list", "--store", store], capture_output=True, text=True)
    out, prev = [], None
    for line in r.stdout.splitlines():
        parts = line.split()
        if not parts or not parts[0].isdigit():
            continue
        for tok in parts[8:]:
            name, _, seq = tok.partition("#")
            if name != region:
                continue
            if prev is not None and seq != prev:
                out.append(int(parts[0]))
            prev = seq
    return out


def log_times(path, needle, start_unix_s):
    """Seconds after start_unix_s of each line of the log at path that contains needle
    (none if there is no such log)."""
    out = []
    if not os.path.exists(path):
        return out
    with open(path, errors="replace") as f:
        for line in f:
            if needle not in line:
                continue
            m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d+)Z", line)
            if m:
                t = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
                out.append(t + float("0." + m.group(2)) - start_unix_s)
    return out
