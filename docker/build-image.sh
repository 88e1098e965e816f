#!/usr/bin/env bash
# docker/build-image.sh - builds the gdml image (docker/Dockerfile) with docker
# where a Docker engine answers, else with podman under docker/containers.conf.
# When no Debian 12 base image is present and none can be pulled (no registry
# reachable), it makes one from Debian's packages: mmdebstrap --variant=minbase
# bookworm, imported as gdml-debian:12.
#
#   bash docker/build-image.sh
#
# Environment: GDML_IMAGE (the tag, default gdml:latest), GDML_ENGINE (docker or
# podman: skip the detection), GDML_BASE_IMAGE (a Debian 12 image to build on,
# default debian:12). Prints the image's size and the build's time at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

image=${GDML_IMAGE:-gdml:latest}
engine=${GDML_ENGINE:-}
if [ -z "$engine" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    engine=docker
  elif command -v podman >/dev/null; then
    engine=podman
  else
    echo "build-image: neither a Docker engine nor podman found (bash docker/install-deps.sh --containers installs podman)" >&2
    exit 1
  fi
fi
if [ "$engine" = podman ]; then
  export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/docker/containers.conf}
fi
start=$(date +%s)

base=${GDML_BASE_IMAGE:-debian:12}
bootstrapped=gdml-debian:12
if $engine image inspect "$base" >/dev/null 2>&1; then
  echo "build-image: building on $base"
elif $engine pull "docker.io/library/$base" >/dev/null 2>&1; then
  base=docker.io/library/$base
  echo "build-image: building on $base (pulled)"
elif $engine image inspect "$bootstrapped" >/dev/null 2>&1; then
  base=$bootstrapped
  echo "build-image: no registry answers; building on $base, bootstrapped earlier"
else
  command -v mmdebstrap >/dev/null || {
    echo "build-image: $base cannot be pulled and mmdebstrap is missing (bash docker/install-deps.sh --containers)" >&2
    exit 1
  }
  echo "build-image: no registry answers; bootstrapping $bootstrapped from Debian packages (mmdebstrap)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # Documentation, manuals and translations are left out; merged /usr without
  # the usrmerge package (which would pull in perl).
  mmdebstrap --quiet --variant=minbase \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    bookworm "$tmp/base.tar"
  $engine import "$tmp/base.tar" "$bootstrapped" >/dev/null
  base=$bootstrapped
fi

# --network host: the build's apt-get reaches Debian's mirror the way the host
# does (podman's default build network may not).
$engine build --network host -f docker/Dockerfile --build-arg "BASE=$base" -t "$image" .

size=$($engine image inspect -f '{{.Size}}' "$image")
echo "build-image: $image is $((size / 1000000)) MB ($size bytes), built in $(( $(date +%s) - start )) s with $engine"
