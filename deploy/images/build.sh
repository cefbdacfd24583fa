#!/usr/bin/env bash
# Build the deployment images (`make deploy-images`; docs/operator.md, "Images"):
#
#   hposteer/service    `hposteer serve`: the service extra plus the PostgreSQL driver (psycopg)
#   hposteer/pilot      `hposteer pilot`: the client only (httpx, pydantic, docker)
#   hposteer/postgres   Debian's PostgreSQL 15, only for trying the compose file and the k8s trial overlay
#
# As images/build.sh (docs/containers.md): FROM the local base (debootstrap; no registry here), Python
# packages from wheels built on the host because pip inside a build cannot reach an index, the classic
# builder (Debian's docker.io has no BuildKit). Third-party wheels are exactly the files uv.lock pins
# (images/locked_wheels.py: the versions and hashes the tests ran with). hposteer's own wheel is built
# by uv from an sdist with a fixed SOURCE_DATE_EPOCH, so unchanged sources give a byte-identical wheel
# and Docker's layer cache makes a second run take seconds.
#
#   deploy/images/build.sh                      all three
#   deploy/images/build.sh service pilot        some of them
#   BASE_IMAGE=python:3.11-slim deploy/images/build.sh   elsewhere, from an official image
#   TAG=0.1.0 deploy/images/build.sh            tag other than latest
set -euo pipefail
cd "$(dirname "$0")/../.."
BASE_IMAGE="${BASE_IMAGE:-hposteer/base:bookworm}"
TAG="${TAG:-latest}"
export DOCKER_BUILDKIT=0
UV="${UV:-.tools/uv/bin/uv}"   # `make deploy-images` installs the locked uv there (docs/dependencies.md)
export UV
PYTHON=python3

if [ "$BASE_IMAGE" = "hposteer/base:bookworm" ]; then
  images/build-base.sh
fi

quietly() {  # run a step; show its output only when it fails
  local log
  log="$(mktemp)"
  if ! "$@" >"$log" 2>&1; then
    grep -v -e "^WARNING: Location" -e DEPRECATED -e BuildKit -e environment-variable "$log" >&2 || true
    rm -f "$log"
    echo "deploy-images: failed: $*" >&2
    exit 1
  fi
  rm -f "$log"
}

# requirements.txt of an image, from pyproject.toml: the base dependencies, plus for the service its
# extra and the PostgreSQL driver (the `postgresql` extra); uv.lock decides every version.
requirements() {
  "$PYTHON" - "$1" <<'PY'
import sys
import tomllib

with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
reqs = list(project["dependencies"])
extras = project["optional-dependencies"]
if sys.argv[1] == "service":
    reqs += extras["service"] + extras["postgresql"]
print("\n".join(reqs))
PY
}

# hposteer's wheel, built once per run by uv from an sdist (no stale build/ or egg-info of the work tree).
WORK="$(mktemp -d /tmp/hposteer-deploy-images.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
hposteer_wheel() {
  [ -d "$WORK/dist" ] && return
  echo "deploy-images: wheel of hposteer"
  SOURCE_DATE_EPOCH=315532800 quietly "$UV" build --quiet --out-dir "$WORK/dist" .
}

python_image() {  # $1: service | pilot: fill deploy/images/$1/wheelhouse and hposteer-wheel
  local name="$1" ctx="deploy/images/$1"
  mkdir -p "$ctx/wheelhouse" "$ctx/hposteer-wheel"
  requirements "$name" > "$ctx/wheelhouse/requirements.txt"
  echo "deploy-images: wheels for hposteer/$name (versions and hashes from uv.lock)"
  quietly python3 images/locked_wheels.py "$ctx/wheelhouse" "$ctx/wheelhouse/requirements.txt"
  hposteer_wheel
  rm -f "$ctx"/hposteer-wheel/*.whl
  cp "$WORK"/dist/hposteer-*.whl "$ctx/hposteer-wheel/"
}

if [ $# -eq 0 ]; then
  set -- postgres service pilot
fi
for name in "$@"; do
  case "$name" in
    service) python_image "$name" ;;
    pilot) python_image "$name" ;;
    postgres) ;;
    *) echo "deploy-images: unknown image $name (postgres, service, pilot)" >&2; exit 2 ;;
  esac
  image="hposteer/$name:$TAG"
  echo "deploy-images: building $image from $BASE_IMAGE"
  quietly docker build --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$image" "deploy/images/$name"
  echo "deploy-images: $image $(docker image inspect -f '{{.Id}}' "$image" | cut -c8-19)" \
    "$(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')"
done
