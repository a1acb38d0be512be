#!/usr/bin/env bash
# Starts a Docker engine when none answers, and makes an offline debian:bookworm-slim base image
# (Docker Hub may be unreachable). Needs root and Debian's apt. Idempotent: safe to run twice.
set -euo pipefail
log_dir=${AIRLOCK_CI_LOG_DIR:-/tmp}

apt_install() {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null 2>&1 || apt_install docker.io iptables
  nohup dockerd >"$log_dir/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see $log_dir/dockerd.log" >&2; exit 1; }
fi

if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
  root=$(mktemp -d)
  # mktemp makes it 0700 and the imported image keeps that mode for /: engines without an overlay
  # (rootless Podman on vfs) then refuse every non-root user of the image
  chmod 755 "$root"
  # minbase only: a bare base, so `airlock doctor` has something real to fail on
  debootstrap --variant=minbase bookworm "$root" >"$log_dir/debootstrap.log" 2>&1 ||
    { echo "debootstrap failed; see $log_dir/debootstrap.log" >&2; exit 1; }
  tar -C "$root" -c . | docker import - debian:bookworm-slim >/dev/null
  rm -rf "$root"
fi
docker image inspect debian:bookworm-slim --format 'base image ready: {{.Id}}'
