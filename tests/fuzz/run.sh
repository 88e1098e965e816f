#!/usr/bin/env bash
# tests/fuzz/run.sh [SECONDS] - fuzzes every target for SECONDS (default 20),
# two at a time. It builds the targets with clang, libFuzzer, AddressSanitizer
# and UndefinedBehaviorSanitizer in build-fuzz/, starts each from its seed
# corpus (tests/fuzz/corpus) and what earlier runs found (build-fuzz/corpus),
# and prints one line per target: executions, and crashes. A crash fails the
# run; its input is saved as build-fuzz/crashes/TARGET-*: copy it into
# tests/fuzz/regress/TARGET/ so that the test suite replays it from then on.
#
#   bash tests/fuzz/run.sh          # the test command's short run
#   bash tests/fuzz/run.sh 3600     # an hour per target
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-20}
build=${GDML_FUZZ_BUILD_DIR:-build-fuzz}
targets=(msg codec config idx coord_sm region_sm)
if ! command -v clang >/dev/null; then
  echo "fuzz: clang is not installed; bash docker/install-deps.sh installs it" >&2
  exit 1
fi
if [ ! -f "$build/build.ninja" ]; then
  CC=clang meson setup "$build" -Dfuzz=true -Dtests=false -Db_sanitize=address,undefined \
    -Db_lundef=false --buildtype=debugoptimized >/dev/null
fi
meson compile -C "$build" $(printf 'fuzz_%s ' "${targets[@]}") >/dev/null
mkdir -p "$build/crashes" "$build/logs"

fuzz() {
  local t=$1 work="$build/corpus/$1"
  mkdir -p "$work"
  # Under the sanitizers a hang, an out-of-memory or a leak is a finding too.
  "$build/tests/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$build/crashes/$t-" \
    "$work" "tests/fuzz/corpus/$t" >"$build/logs/$t.log" 2>&1
}

status=0
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  pids=()
  for t in "${targets[@]:i:2}"; do
    fuzz "$t" &
    pids+=($!)
  done
  for j in "${!pids[@]}"; do
    t=${targets[i + j]}
    if wait "${pids[j]}"; then result=ok; else result=CRASH; status=1; fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$build/logs/$t.log" | tail -1)
    printf 'fuzz: %-10s %12s executions in %ss: %s\n' "$t" "${execs:-?}" "$secs" "$result"
    [ "$result" = ok ] || tail -n 30 "$build/logs/$t.log" >&2
  done
done
exit $status
