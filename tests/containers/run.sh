#!/usr/bin/env bash
# tests/containers/run.sh - the containers for real, under podman: installs the
# container tools (docker/install-deps.sh --containers), builds the image from
# this checkout (docker/build-image.sh), runs the compose cluster with a
# coordinator killed mid-job (test_compose.py) and plays the Kubernetes
# manifests (test_kube.py). tests/run.sh calls it after the suite; it takes
# about 4 minutes on a 2-core machine (2 more to bootstrap the base image
# the first time). Needs root.
#
# GDML_ENGINE=docker runs the same image build and compose test under a
# Docker engine (and docker-compose) instead; kube play is podman's, so that
# test is skipped there.
set -euo pipefail
cd "$(dirname "$0")/../.."

export GDML_CONTAINER_TESTS=required GDML_ENGINE=${GDML_ENGINE:-podman}
[ "$GDML_ENGINE" = docker ] || bash docker/install-deps.sh --containers
bash docker/build-image.sh
status=0
python3 tests/containers/test_compose.py || status=1
python3 tests/containers/test_kube.py || [ $? = 77 ] || status=1
exit $status
