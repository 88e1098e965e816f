#!/usr/bin/env bash
# docker/make-keys.sh - makes the CURVE keys of a containerized cluster with the
# image's own gdml-keys (docs/security.md): coordinator.key/.pub, one pair per
# region and regions.allow (the regions' .pub files together). The files belong
# to the image's user (uid 10001), the .key files mode 0600, so that containers
# running as that user can read them as compose secrets.
#
#   bash docker/make-keys.sh DIR [REGION ...]     (default us-east eu-west ap-south)
#
# Environment: GDML_IMAGE (default gdml:latest), GDML_ENGINE (docker or podman).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bash docker/make-keys.sh DIR [REGION ...]" >&2; exit 2; }
dir=$1; shift
regions=("$@")
[ ${#regions[@]} -gt 0 ] || regions=(us-east eu-west ap-south)
image=${GDML_IMAGE:-gdml:latest}
engine=${GDML_ENGINE:-}
if [ -z "$engine" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker; else engine=podman; fi
fi
[ "$engine" = podman ] && export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/docker/containers.conf}

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
# Root inside a throw-away container with no network, only to hand the files
# to uid 10001 at the end.
$engine run --rm --network none --user 0:0 -v "$dir:/keys" "$image" sh -ec '
  for name in coordinator "$@"; do gdml-keys new "$name" --dir /keys >/dev/null; done
  : > /keys/regions.allow
  for name in "$@"; do cat "/keys/$name.pub" >> /keys/regions.allow; done
  chown 10001:10001 /keys/*
  chmod 0600 /keys/*.key' sh "${regions[@]}"
echo "make-keys: coordinator and ${regions[*]} in $dir"
