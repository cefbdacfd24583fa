#!/usr/bin/env bash
# Build every image without a registry (`make images`; docs/containers.md): the base from
# debootstrap (images/build-base.sh), then each evaluation_images/NAME and steering_images/NAME
# that has a Dockerfile, from wheels built on the host (pip inside a build cannot reach an index).
# Images are named hposteer/evaluation-NAME and hposteer/steering-NAME. Docker's layer cache and
# the wheelhouses (ignored by git) make a second run fast.
#
#   images/build.sh                   everything
#   images/build.sh evaluation_images/sklearn-digits
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_IMAGE="${BASE_IMAGE:-hposteer/base:bookworm}"
export DOCKER_BUILDKIT=0  # Debian's docker.io 20.10 has no BuildKit: the classic builder
PIP="${PIP:-.venv/bin/pip}"
[ -x "$PIP" ] || PIP="python3 -m pip"
# Wheels that lie on this machine's disk (the CPU build of torch here) are taken from there.
FIND_LINKS=()
[ -d /opt/wheels ] && FIND_LINKS=(--find-links /opt/wheels)

if [ "$BASE_IMAGE" = "hposteer/base:bookworm" ]; then
  images/build-base.sh
fi
# Run a step, showing its output only when it fails (minus pip's and the CLI's usual noise).
quietly() {
  local log
  log="$(mktemp)"
  if ! "$@" >"$log" 2>&1; then
    grep -v -e "^WARNING: Location" -e DEPRECATED -e BuildKit -e environment-variable "$log" >&2 || true
    rm -f "$log"
    echo "images: failed: $*" >&2
    exit 1
  fi
  rm -f "$log"
}

if [ $# -eq 0 ]; then
  set -- evaluation_images/*/ steering_images/*/
fi
for dir in "$@"; do
  dir="${dir%/}"
  dockerfile="$dir/Dockerfile"
  [ -f "$dockerfile" ] || dockerfile="$(dirname "$dir")/Dockerfile"   # one Dockerfile for all steering images
  [ -f "$dockerfile" ] && [ -f "$dir/requirements.txt" ] || continue
  kind="$(basename "$(dirname "$dir")")"   # evaluation_images | steering_images
  image="hposteer/${kind%_images}-$(basename "$dir")"
  mkdir -p "$dir/wheelhouse"
  if [ -f "$dir/requirements.txt" ]; then
    echo "images: wheels for $image"
    quietly $PIP wheel --quiet "${FIND_LINKS[@]}" --wheel-dir "$dir/wheelhouse" -r "$dir/requirements.txt"
  fi
  if [ "$kind" = steering_images ]; then  # the steering images run hposteer's own optimiser code
    rm -f "$dir"/wheelhouse/hposteer-*.whl
    quietly $PIP wheel --quiet --no-deps --wheel-dir "$dir/wheelhouse" .
  fi
  echo "images: building $image from $BASE_IMAGE"
  quietly docker build --build-arg "BASE_IMAGE=$BASE_IMAGE" -f "$dockerfile" -t "$image" "$dir"
  echo "images: $image $(docker image inspect -f '{{.Id}}' "$image" | cut -c8-19) $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')"
done
