#!/bin/sh
# build-local-image.sh - build deploy/Containerfile and run `sidecar demo` in the image, on a
# Debian machine with no container registry: the base image is made locally with debootstrap.
#
# Usage (as root, from the repository root):
#   apt-get install podman buildah runc debootstrap
#   deploy/build-local-image.sh [IMAGE_TAG]
#
# What it does, and why each flag is there (see deploy/README.md, "Built and run here"):
# - debootstrap a bookworm minbase with python3 and python3-venv, imported as
#   localhost/bookworm-python:local (python:3.11-slim-bookworm stands in for it elsewhere);
#   the host's CA bundle is copied in, so pip works behind a TLS-inspecting proxy;
# - `buildah bud --isolation chroot --format docker`: chroot isolation needs no OCI runtime for
#   the RUN steps; the docker format keeps HEALTHCHECK (OCI images drop it);
# - `podman --runtime runc run --ulimit ...`: crun refused this kernel's hybrid cgroups and
#   raising rlimits; runc with limits at or below the current ones runs.
set -eu

tag=${1:-localhost/ai-stream-sidecar:dev}
work=${WORK:-/var/tmp/ai-stream-sidecar-image}
base=localhost/bookworm-python:local
limits="--ulimit nproc=4096:4096 --ulimit nofile=4096:4096"

if ! podman image exists "$base"; then
    mkdir -p "$work"
    [ -d "$work/rootfs/usr" ] || debootstrap --variant=minbase \
        --include=python3,python3-venv,ca-certificates bookworm "$work/rootfs" \
        http://deb.debian.org/debian
    cp /etc/ssl/certs/ca-certificates.crt "$work/rootfs/etc/ssl/certs/ca-certificates.crt"
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$work/rootfs/etc/pip.conf"
    tar -C "$work/rootfs" -c . | podman import - "$base"
fi

buildah bud --format docker --isolation chroot --build-arg "BASE=$base" \
    -f deploy/Containerfile -t "$tag" .
# shellcheck disable=SC2086
podman --runtime runc run --rm --network none $limits "$tag" demo --seconds 10
