#!/usr/bin/env bash
# tests/containers/run.sh - the containers for real, under podman: installs the
# container tools (docker/install-deps.sh --containers), builds the image from
# this checkout (docker/build-image.sh), runs the compose cluster with a
# coordinator killed mid-job (test_compose.py) and plays the Kubernetes
# manifests (test_kube.py). tests/run.sh calls it after the suite; it takes
# about 4 minutes on a 2-core machine (2 more to bootstrap the base image
# the first time). Needs root.
set -euo pipefail
cd "$(dirname "$0")/../.."

bash docker/install-deps.sh --containers
export GDML_CONTAINER_TESTS=required GDML_ENGINE=podman
bash docker/build-image.sh
status=0
python3 tests/containers/test_compose.py || status=1
python3 tests/containers/test_kube.py || status=1
exit $status
