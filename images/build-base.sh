#!/usr/bin/env bash
# Build the local base image hposteer/base:bookworm (Debian bookworm + python3) without any image
# registry: debootstrap a minimal root filesystem from the Debian mirror, then `docker import` it.
# Elsewhere, Dockerfiles take ARG BASE_IMAGE and can start from an official python image instead.
#
#   images/build-base.sh            build it unless the image exists already
#   FORCE=1 images/build-base.sh    rebuild it
#   MIRROR=http://... SUITE=bookworm images/build-base.sh
set -euo pipefail
IMAGE="${IMAGE:-hposteer/base:bookworm}"
SUITE="${SUITE:-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
PACKAGES="python3,python3-venv,ca-certificates,tzdata"
# The image records the hash of this script: a changed recipe rebuilds it.
RECIPE="$(sha256sum "$0" | cut -c1-16)"

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  echo "build-base: no Docker engine answers (install docker.io and start dockerd)" >&2
  exit 1
fi
have="$(docker image inspect -f '{{ index .Config.Labels "hposteer.recipe" }}' "$IMAGE" 2>/dev/null || true)"
if [ -z "${FORCE:-}" ] && [ "$have" = "$RECIPE" ]; then
  echo "build-base: $IMAGE is up to date (recipe $RECIPE); FORCE=1 rebuilds it"
  exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "build-base: debootstrap is missing (apt-get install debootstrap)" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "build-base: debootstrap needs root (device nodes, chroot)" >&2
  exit 1
fi

root="$(mktemp -d /tmp/hposteer-rootfs.XXXXXX)"
cleanup() {
  # debootstrap mounts /proc (and maybe more) inside the root: unmount before removing anything.
  for mounted in $(grep -o " $root[^ ]*" /proc/mounts | sort -r); do umount -l "$mounted" || true; done
  rm -rf --one-file-system "$root" "$root.log"
}
trap cleanup EXIT
echo "build-base: debootstrap $SUITE ($PACKAGES) from $MIRROR into $root"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" > "$root.log" 2>&1 || {
  tail -20 "$root.log" >&2; exit 1; }
rm -f "$root.log"
# Smaller and reproducible enough: no apt lists, caches or logs; a non-root user for payloads.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/* "$root"/usr/share/doc/* \
  "$root"/usr/share/man/* "$root"/usr/share/locale/*
chroot "$root" /usr/sbin/useradd --uid 1000 --create-home --shell /bin/sh hposteer
echo "build-base: importing as $IMAGE"
tar -C "$root" --numeric-owner -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/sh"]' \
  --change "LABEL hposteer.recipe=$RECIPE" \
  - "$IMAGE" >/dev/null
docker run --rm "$IMAGE" python3 -c 'import sys; print("build-base: ready, python", sys.version.split()[0])'
