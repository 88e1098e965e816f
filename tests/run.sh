#!/usr/bin/env bash
# tests/run.sh - the test command (README's second quick-start command and
# .ci/run): installs what is missing, builds with warnings as errors, runs
# every unit, state-machine, fuzz-replay and integration test, fuzzes every
# fuzz target briefly (tests/fuzz/run.sh; GDML_FUZZ_SECONDS, default 20),
# runs the containers for real (tests/containers/run.sh), and prints one
# closing line of counts.
set -euo pipefail
cd "$(dirname "$0")/.."

bash docker/install-deps.sh
build=${GDML_TEST_BUILD_DIR:-build-tests}
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" --buildtype=debugoptimized -Dwerror=true >/dev/null
fi
meson compile -C "$build"
status=0
meson test -C "$build" --print-errorlogs --num-processes 2 "$@" || status=$?
fuzz_status=0
bash tests/fuzz/run.sh "${GDML_FUZZ_SECONDS:-20}" || fuzz_status=$?
# The containers for real: the image, the compose cluster with its
# coordinator killed, the Kubernetes manifests under kube play
# (tests/containers/run.sh; GDML_CONTAINERS=off leaves them out).
container_status=0
if [ "${GDML_CONTAINERS:-on}" != off ]; then
  bash tests/containers/run.sh || container_status=$?
fi

# One closing line counting individual Criterion tests (TAP subtests).
python3 - "$build/meson-logs/testlog.json" <<'PY'
import json, sys
passed = failed = skipped = 0
for line in open(sys.argv[1]):
    t = json.loads(line)
    subs = [l for l in t.get("stdout", "").splitlines() if l.startswith(("ok ", "not ok "))]
    if not subs:
        ok = t["result"] in ("OK", "EXPECTEDFAIL")
        passed += ok; skipped += t["result"] == "SKIP"; failed += not ok and t["result"] != "SKIP"
        continue
    for l in subs:
        if "# SKIP" in l: skipped += 1
        elif l.startswith("ok "): passed += 1
        else: failed += 1
print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
PY
[ $fuzz_status -eq 0 ] || echo "fuzz: a target found a crash (see above)"
[ $container_status -eq 0 ] || echo "containers: a container test failed (see above)"
[ $status -ne 0 ] && exit $status
[ $fuzz_status -ne 0 ] && exit $fuzz_status
exit $container_status
