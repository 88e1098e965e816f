#!/usr/bin/env bash
# docker/make-keys.sh - makes the CURVE keys of a containerized cluster with the
# image's own gdml-keys (docs/security.md): coordinator.key/.pub, one pair per
# region and regions.allow (the regions' .pub files together). The files belong
# to the image's user (uid 10001), the .key files mode 0600, so that containers
# running as that user can read them as compose secrets.
#
#   bash docker/make-keys.sh DIR [REGION ...]     (default us-east eu-west ap-south)
#
# Environment: GDML_IMAGE (default gdml:latest), GDML_ENGINE (docker or podman),
# GDML_KEYS_OWNER (the uid the files are for, default 10001; your own to hand
# them to kubectl, for example GDML_KEYS_OWNER=$(id -u)).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: bash docker/make-keys.sh DIR [REGION ...]" >&2; exit 2; }
mkdir -p "$1"
dir=$(cd "$1" && pwd); shift
owner=${GDML_KEYS_OWNER:-10001}
[[ "$owner" =~ ^[0-9]+$ ]] || { echo "make-keys: GDML_KEYS_OWNER must be a numeric uid" >&2; exit 2; }
cd "$(dirname "$0")/.."
regions=("$@")
[ ${#regions[@]} -gt 0 ] || regions=(us-east eu-west ap-south)
image=${GDML_IMAGE:-gdml:latest}
engine=${GDML_ENGINE:-}
if [ -z "$engine" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker; else engine=podman; fi
fi
[ "$engine" = podman ] && export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/docker/containers.conf}

# Root inside a throw-away container with no network, only to hand the files
# to their owner at the end.
$engine run --rm --network none --user 0:0 -v "$dir:/keys" -e "OWNER=$owner" "$image" sh -ec '
  for name in coordinator "$@"; do gdml-keys new "$name" --dir /keys >/dev/null; done
  : > /keys/regions.allow
  for name in "$@"; do cat "/keys/$name.pub" >> /keys/regions.allow; done
  chown "$OWNER:$OWNER" /keys/*
  chmod 0600 /keys/*.key' sh "${regions[@]}"
echo "make-keys: coordinator and ${regions[*]} in $dir, for uid $owner"
