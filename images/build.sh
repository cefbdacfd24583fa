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
UV="${UV:-.tools/uv/bin/uv}"   # `make images` installs the locked uv there (docs/dependencies.md)
export UV
# Wheels that lie on this machine's disk (the CPU build of torch here) are taken from there; torch's
# +cpu build is the lock's version but not the lock's file, so its hash is not checked.
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

# hposteer's wheel, built once per run by uv from an sdist (so no stale build/ of the work tree gets in)
# with a fixed SOURCE_DATE_EPOCH: unchanged sources give a byte-identical wheel and a cached layer.
WORK="$(mktemp -d /tmp/hposteer-images.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
hposteer_wheel() {
  [ -d "$WORK/dist" ] && return
  SOURCE_DATE_EPOCH=315532800 quietly "$UV" build --quiet --out-dir "$WORK/dist" .
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
  echo "images: wheels for $image (versions and hashes from uv.lock)"
  # requirements.txt names the image's packages; uv.lock decides their versions and every dependency's
  quietly python3 images/locked_wheels.py "$dir/wheelhouse" "$dir/requirements.txt" --unhashed torch "${FIND_LINKS[@]}"
  if [ "$kind" = steering_images ]; then  # the steering images run hposteer's own optimiser code
    hposteer_wheel
    cp "$WORK"/dist/hposteer-*.whl "$dir/wheelhouse/"
  fi
  echo "images: building $image from $BASE_IMAGE"
  quietly docker build --build-arg "BASE_IMAGE=$BASE_IMAGE" -f "$dockerfile" -t "$image" "$dir"
  echo "images: $image $(docker image inspect -f '{{.Id}}' "$image" | cut -c8-19) $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')"
done
