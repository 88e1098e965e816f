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
# Idempotent: packages already installed are left as they are.
set -euo pipefail

build=(build-essential pkg-config meson ninja-build
       libzmq3-dev libmsgpack-dev libopenblas-dev liblmdb-dev libinih-dev zlib1g-dev libsodium-dev)
runtime=(libzmq5 libmsgpackc2 libopenblas0-pthread liblmdb0 libinih1 zlib1g libsodium23)
containers=(podman runc netavark aardvark-dns iptables catatonit podman-compose mmdebstrap uidmap python3 python3-yaml)

mode=${1:---all}
case "$mode" in
  --all)
    packages=("${build[@]}"
              libcriterion-dev clang libclang-rt-14-dev
              dataset-fashion-mnist
              gnuplot-nox lmdb-utils iproute2 python3 python3-yaml) ;;
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
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
