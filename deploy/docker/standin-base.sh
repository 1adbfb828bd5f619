#!/bin/sh
# A stand-in for the official base image (python:3.11-slim-bookworm), made from Debian's own packages, for
# machines that cannot pull from Docker Hub (this project's CI). Same Debian release (bookworm); Python is
# Debian's python3.11 in /usr/bin instead of a python.org build in /usr/local/bin. Only for building and
# testing the image here: production builds use the pinned official image (deploy/README.md §1).
#
#   deploy/docker/standin-base.sh [IMAGE] [CACHE_DIR]
#   podman build --build-arg BASE_IMAGE=localhost/gxbackend-base:python3.11-bookworm -f deploy/docker/Dockerfile .
#
# Needs root, debootstrap and podman (or ENGINE=docker). The root filesystem is kept as a tarball in CACHE_DIR
# (default var/container), so only the first run downloads Debian packages (~40 MB).
set -eu
image=${1:-localhost/gxbackend-base:python3.11-bookworm}
cache=${2:-var/container}
engine=${ENGINE:-podman}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=python3.11,python3.11-venv,python3-distutils,python3-pip-whl,python3-setuptools-whl,ca-certificates
# Named after its package list, so a change of the list makes a new one.
key=$(echo "$packages $mirror" | sha256sum | cut -c1-12)
tarball="$cache/standin-base-bookworm-$key.tar"

mkdir -p "$cache"
if [ -s "$tarball" ] && [ "$("$engine" image inspect --format '{{index .Labels "gx.standin"}}' "$image" 2>/dev/null)" = "$key" ]
then
  echo "$image"  # already imported from this tarball: keeps the build's layer cache
  exit 0
fi
if [ ! -s "$tarball" ]; then
  rootfs=$(mktemp -d "${TMPDIR:-/var/tmp}/gx-standin-XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -n 20 "$cache/debootstrap.log" >&2; echo "debootstrap failed (log: $cache/debootstrap.log)" >&2; exit 1; }
  # The official image's `python`; apt's lists and caches are not part of a base image.
  ln -sf python3.11 "$rootfs/usr/bin/python"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/* "$rootfs"/debootstrap
  tar --numeric-owner -C "$rootfs" -cf "$tarball.partial" .
  mv "$tarball.partial" "$tarball"
fi
"$engine" import --quiet --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' --change "LABEL gx.standin=$key" \
  --message "stand-in for python:3.11-slim-bookworm (debootstrap + Debian python3.11)" "$tarball" "$image" >/dev/null
echo "$image"
