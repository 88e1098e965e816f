#!/usr/bin/env bash
# Installs the Debian 12 packages gdml needs. Used by README's quick start,
# by .ci/run and tests/run.sh, and by docker/Dockerfile.
#
#   bash docker/install-deps.sh               everything to build, test, benchmark
#                                             and run the main job (the default)
#   bash docker/install-deps.sh --build       only what building the programs needs
#                                             (the image's build stage)
#   bash docker/install-deps.sh --runtime     only the shared libraries the programs
#                                             load (the image's final stage)
#   bash docker/install-deps.sh --containers  the container tools: podman, runc,
#                                             netavark, aardvark-dns, iptables,
#                                             catatonit, podman-compose, mmdebstrap
#                                             (docker/build-image.sh, the compose
#                                             and Kubernetes tests)
#
# Idempotent: packages already installed are left as they are. It prints one
# line per step; apt's output goes to a log file (GDML_DEPS_LOG, by default
# $TMPDIR/gdml-install-deps.log), whose end is printed when a step fails.
set -euo pipefail

build=(build-essential pkg-config meson ninja-build
       libzmq3-dev libmsgpack-dev libopenblas-dev liblmdb-dev libinih-dev zlib1g-dev
       libmicrohttpd-dev libsodium-dev)
runtime=(libzmq5 libmsgpackc2 libopenblas0-pthread liblmdb0 libinih1 zlib1g libmicrohttpd12 libsodium23)
containers=(podman runc netavark aardvark-dns iptables catatonit podman-compose mmdebstrap uidmap python3 python3-yaml)

mode=${1:---all}
case "$mode" in
  --all)
    packages=("${build[@]}"
              libcriterion-dev clang libclang-rt-14-dev
              dataset-fashion-mnist
              gnuplot-nox lmdb-utils iproute2 python3 python3-yaml prometheus) ;;
  --build) packages=("${build[@]}") ;;
  --runtime) packages=("${runtime[@]}") ;;
  --containers) packages=("${containers[@]}") ;;
  *) echo "install-deps: unknown mode '$mode' (--all, --build, --runtime or --containers)" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi

# apt's own output (hundreds of lines on a fresh machine) goes to a log, so
# that the quick start shows the job; each step is one line here, and a
# failed step prints the log's end. GDML_DEPS_LOG names another log file.
log=${GDML_DEPS_LOG:-${TMPDIR:-/tmp}/gdml-install-deps.log}
: >"$log" || { echo "install-deps: cannot write the log file '$log'; set GDML_DEPS_LOG to a writable path" >&2; exit 1; }

# step WHAT COMMAND...: runs COMMAND with its output in the log.
step() {
  local what=$1
  shift
  printf 'install-deps: %s ... ' "$what"
  echo "+ $*" >>"$log"
  local rc=0
  "$@" >>"$log" 2>&1 </dev/null || rc=$?
  if [ $rc -eq 0 ]; then
    echo ok
    return 0
  fi
  echo "failed (exit status $rc)"
  {
    echo "install-deps: the last 20 lines of $log:"
    tail -n 20 "$log" | sed 's/^/  /'
    echo "install-deps: the whole output is in $log"
  } >&2
  exit $rc
}

export DEBIAN_FRONTEND=noninteractive
step "apt-get update" $sudo apt-get update -q
step "installing ${#missing[@]} packages (${missing[*]})" \
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-deps: done; apt's output is in $log"
