#!/usr/bin/env bash
# Stand-ins for the public images our Dockerfile and compose files start from, for a
# machine that reaches Debian's and Python's package registries but not Docker Hub (CI
# here). Each gets the name the real image has, so Dockerfile.gpu and
# docker-compose.cpu.yml run unchanged:
#   python:3.11-slim        Debian bookworm's Python 3.11 in a venv at /usr/local
#   nginx:1.27-alpine       Debian's nginx 1.22
#   prom/prometheus:v3.5.0  Debian's Prometheus 2.42
# (Grafana has no Debian package: the compose file's grafana profile is not run here.)
# They start from a minimal Debian made with debootstrap and imported; the host's CA
# bundle is copied in, so that pip and apt inside builds reach the registries the way
# the host does (through the same TLS setup). Builds use the host's network.
# Idempotent: each image carries a label with the hash of its recipe (this script, and
# its Dockerfile for a stand-in) and is made again only when that changes; the builds
# reuse Docker's layer cache, so an unchanged image keeps its id and what is built on it
# stays cached. A real image of the same name (one that lacks the label, pulled on a
# machine that reaches Docker Hub) is left alone and used as it is.
set -euo pipefail
cd "$(dirname "$0")"
export DOCKER_BUILDKIT=0
DEBIAN_IMAGE=fer-ci/debian:bookworm
LABEL=org.fer-service.ci.recipe
recipe() { cat base-images.sh "$@" | sha256sum | cut -c1-16; }
declare -A STANDINS=(
  [python]=python:3.11-slim
  [nginx]=nginx:1.27-alpine
  [prometheus]=prom/prometheus:v3.5.0
)

label_of() {  # the recipe label of an image; "none" if it has none, "" if it is absent
  docker image inspect -f "{{or (index .Config.Labels \"$LABEL\") \"none\"}}" "$1" 2>/dev/null \
    || true
}

debian_base() {
  local recipe
  recipe=$(recipe)
  if [[ $(label_of "$DEBIAN_IMAGE") == "$recipe" ]]; then
    return
  fi
  local rootfs
  rootfs=$(mktemp -d "${TMPDIR:-/tmp}/fer-ci-rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  echo "base-images: debootstrap bookworm into $rootfs"
  nice -n "${NICE:-19}" debootstrap --variant=minbase --include=ca-certificates,passwd \
    bookworm "$rootfs" http://deb.debian.org/debian >"$rootfs.log" 2>&1 \
    || { tail -n 30 "$rootfs.log" >&2; exit 1; }
  rm -f "$rootfs.log"
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import -c "LABEL $LABEL=$recipe" -c 'ENV LANG=C.UTF-8' \
    -c 'CMD ["bash"]' - "$DEBIAN_IMAGE" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
}

for name in python nginx prometheus; do
  image=${STANDINS[$name]}
  recipe=$(recipe "standins/$name.Dockerfile")
  label=$(label_of "$image")
  if [[ $label == "$recipe" ]]; then
    echo "base-images: $image is up to date"
    continue
  elif [[ $label == none ]]; then
    echo "base-images: $image exists and is not a stand-in: using it as it is"
    continue
  fi
  debian_base
  echo "base-images: building the stand-in $image"
  nice -n "${NICE:-19}" docker build -q --network host --label "$LABEL=$recipe" \
    --build-arg "DEBIAN=$DEBIAN_IMAGE" -t "$image" -f "standins/$name.Dockerfile" standins \
    >/dev/null
done
