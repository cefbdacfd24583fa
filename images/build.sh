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
PIP="${PIP:-.venv/bin/pip}"
[ -x "$PIP" ] || PIP="python3 -m pip"
# Wheels that lie on this machine's disk (the CPU build of torch here) are taken from there.
FIND_LINKS=()
[ -d /opt/wheels ] && FIND_LINKS=(--find-links /opt/wheels)

if [ "$BASE_IMAGE" = "hposteer/base:bookworm" ]; then
  images/build-base.sh
fi
if [ $# -eq 0 ]; then
  set -- $(ls -d evaluation_images/*/ steering_images/*/ 2>/dev/null | sed 's:/$::')
fi
for dir in "$@"; do
  [ -f "$dir/Dockerfile" ] || continue
  kind="$(basename "$(dirname "$dir")")"   # evaluation_images | steering_images
  image="hposteer/${kind%_images}-$(basename "$dir")"
  mkdir -p "$dir/wheelhouse"
  if [ -f "$dir/requirements.txt" ]; then
    echo "images: wheels for $image"
    $PIP wheel --quiet "${FIND_LINKS[@]}" --wheel-dir "$dir/wheelhouse" -r "$dir/requirements.txt" 2>&1 \
      | grep -v "^WARNING: Location" || true
  fi
  if [ -x "$dir/prepare.sh" ]; then  # e.g. a wheel of hposteer itself, for the steering images
    "$dir/prepare.sh" "$dir/wheelhouse"
  fi
  echo "images: building $image from $BASE_IMAGE"
  DOCKER_BUILDKIT=0 docker build --quiet --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$image" "$dir" >/dev/null
  echo "images: $image $(docker image inspect -f '{{.Id}}' "$image" | cut -c8-19) $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')"
done
