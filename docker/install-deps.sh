#!/usr/bin/env bash
# Installs every Debian 12 package gdml needs to build, test, benchmark and run
# its main job. Used by README's quick start, by .ci/run and by docker/Dockerfile.
# Idempotent: packages already installed are left as they are.
set -euo pipefail

packages=(
  build-essential pkg-config meson ninja-build
  libzmq3-dev libmsgpack-dev libopenblas-dev liblmdb-dev libinih-dev zlib1g-dev
  libcriterion-dev clang libclang-rt-14-dev
  dataset-fashion-mnist
  gnuplot-nox lmdb-utils iproute2 python3
)

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
