#!/usr/bin/env bash
# Build the deployment images (`make deploy-images`; docs/operator.md, "Images"):
#
#   hposteer/service    `hposteer serve`: the service extra plus the PostgreSQL driver (psycopg)
#   hposteer/pilot      `hposteer pilot`: the client only (httpx, pydantic, docker)
#   hposteer/postgres   Debian's PostgreSQL 15, only for trying the compose file and the k8s trial overlay
#
# As images/build.sh (docs/containers.md): FROM the local base (debootstrap; no registry here), Python
# packages from wheels built on the host because pip inside a build cannot reach an index, the classic
# builder (Debian's docker.io has no BuildKit). Third-party wheels are pinned to the versions installed in
# the project's .venv when there is one (the versions the tests ran with). hposteer's own wheel is built
# from a clean copy of the sources with a fixed SOURCE_DATE_EPOCH, so unchanged sources give a
# byte-identical wheel and Docker's layer cache makes a second run take seconds.
#
#   deploy/images/build.sh                      all three
#   deploy/images/build.sh service pilot        some of them
#   BASE_IMAGE=python:3.11-slim deploy/images/build.sh   elsewhere, from an official image
#   TAG=0.1.0 deploy/images/build.sh            tag other than latest
# shellcheck disable=SC2086  # $PIP may be a command with arguments ("python3 -m pip"): left unquoted
set -euo pipefail
cd "$(dirname "$0")/../.."
BASE_IMAGE="${BASE_IMAGE:-hposteer/base:bookworm}"
TAG="${TAG:-latest}"
export DOCKER_BUILDKIT=0
PIP="${PIP:-.venv/bin/pip}"
[ -x "${PIP%% *}" ] || PIP="python3 -m pip"
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3

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
# extra and the PostgreSQL driver (the `dev` extra has it, the `service` extra does not).
requirements() {
  "$PYTHON" - "$1" <<'PY'
import sys
import tomllib

with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
reqs = list(project["dependencies"])
if sys.argv[1] == "service":
    reqs += project["optional-dependencies"]["service"] + ["psycopg[binary]>=3.1"]
print("\n".join(reqs))
PY
}

# hposteer's wheel, built once per run from a clean copy (no stale build/ or egg-info of the work tree).
WORK="$(mktemp -d /tmp/hposteer-deploy-images.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
hposteer_wheel() {
  [ -d "$WORK/dist" ] && return
  mkdir -p "$WORK/src"
  tar -c --exclude=__pycache__ --exclude='*.pyc' pyproject.toml README.md service client | tar -x -C "$WORK/src"
  echo "deploy-images: wheel of hposteer"
  SOURCE_DATE_EPOCH=315532800 quietly $PIP wheel --quiet --no-deps --wheel-dir "$WORK/dist" "$WORK/src"
}

python_image() {  # $1: service | pilot: fill deploy/images/$1/wheelhouse and hposteer-wheel
  local name="$1" ctx="deploy/images/$1"
  mkdir -p "$ctx/wheelhouse" "$ctx/hposteer-wheel"
  requirements "$name" > "$ctx/wheelhouse/requirements.txt"
  # The image installs with the same constraints, so wheels of older runs lying in the wheelhouse are
  # never picked; the layer is rebuilt only when the requirements or the pinned versions change.
  : > "$ctx/wheelhouse/constraints.txt"
  if [ -x .venv/bin/pip ]; then
    .venv/bin/pip freeze --exclude-editable | grep -E '^[A-Za-z0-9._-]+==' > "$ctx/wheelhouse/constraints.txt" || true
  fi
  echo "deploy-images: wheels for hposteer/$name"
  quietly $PIP wheel --quiet --constraint "$ctx/wheelhouse/constraints.txt" --wheel-dir "$ctx/wheelhouse" \
    -r "$ctx/wheelhouse/requirements.txt"
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
