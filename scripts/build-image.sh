#!/usr/bin/env bash
# Builds the evgate container image (deploy/Dockerfile) on this machine, with nothing but Debian's
# mirror: no container registry is needed.
#
#   scripts/build-image.sh [TAG]     TAG defaults to $EVGATE_IMAGE, else localhost/evgate:dev
#
# 1. The base image localhost/evgate-base:bookworm ($EVGATE_BASE_IMAGE): a debootstrap minbase
#    rootfs of Debian 12, imported into podman. Made once; skipped when it exists already.
# 2. buildah builds deploy/Dockerfile FROM that base (both stages), with cached layers, so a
#    second run only recompiles when the sources changed.
#
# Needs root and the packages scripts/setup.sh installs (debootstrap, buildah, podman, runc).
# Tools are run as podman/buildah expect on these machines (docs/container.md): runc with
# cgroupfs, and a containers.conf of our own (build/container/containers.conf, through
# CONTAINERS_CONF) that clears the default ulimits; nothing under /etc is changed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

tag=${1:-${EVGATE_IMAGE:-localhost/evgate:dev}}
base=${EVGATE_BASE_IMAGE:-localhost/evgate-base:bookworm}
suite=bookworm
mirror=${EVGATE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${EVGATE_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
work=$root/build/container

step() { echo "build-image: $*" >&2; }
die() {
  echo "build-image: error: $*" >&2
  exit 1
}
on_exit() {
  local status=$?
  [ "$status" -eq 0 ] || echo "build-image: FAILED (exit $status)" >&2
}
trap on_exit EXIT

if [ "$(id -u)" -ne 0 ]; then
  # Under ctest (tests/container) a machine without root skips the image tests instead of failing.
  if [ -n "${EVGATE_SKIP_WITHOUT_ROOT:-}" ]; then
    echo "build-image: skipped: needs root (debootstrap and podman's root storage)"
    exit 77
  fi
  die "must run as root (debootstrap and podman's root storage); try sudo"
fi
for tool in debootstrap podman buildah runc; do
  command -v "$tool" >/dev/null || die "$tool is missing: run scripts/setup.sh"
done

mkdir -p "$work"
# One build at a time on this machine (two ctest runs, or a developer and a test).
exec 9>"$work/lock"
flock 9
# crun and podman's default ulimits (nofile beyond what this VM allows) fail here.
printf '[containers]\ndefault_ulimits = []\n' >"$work/containers.conf"
export CONTAINERS_CONF=$work/containers.conf
podman=(podman --runtime runc --cgroup-manager=cgroupfs)

# --- 1. base image ----------------------------------------------------------------------------
if "${podman[@]}" image exists "$base"; then
  step "base image $base exists: skipping debootstrap"
else
  start=$SECONDS
  rootfs=$work/rootfs
  rm -rf "$rootfs"
  step "debootstrap --variant=minbase $suite $rootfs $mirror"
  debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    die "debootstrap failed; see $work/debootstrap.log (last lines: $(tail -3 "$work/debootstrap.log"))"
  # apt inside the image: the same mirror as here, with updates and security fixes.
  cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
EOF
  # Like the official slim images: no docs (but the copyright files), man pages or translations,
  # now or in packages installed later; no package lists or .debs kept (every Dockerfile step
  # runs apt-get update first).
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/01-evgate-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
  printf 'APT::Keep-Downloaded-Packages "false";\n' >"$rootfs/etc/apt/apt.conf.d/01-evgate-clean"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  step "podman import -> $base"
  tar -C "$rootfs" -c . | "${podman[@]}" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    - "$base" >/dev/null
  rm -rf "$rootfs"
  step "base image $base made in $((SECONDS - start)) s"
fi

# --- 2. the image -----------------------------------------------------------------------------
start=$SECONDS
step "buildah bud -f deploy/Dockerfile -t $tag (FROM $base)"
buildah --cgroup-manager=cgroupfs bud \
  --isolation chroot --network host --layers \
  --build-arg "BASE_IMAGE=$base" \
  -f deploy/Dockerfile -t "$tag" .
step "image $tag built in $((SECONDS - start)) s"
"${podman[@]}" image ls --format '{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}' "$tag" >&2
