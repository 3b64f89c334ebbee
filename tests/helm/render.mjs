// Helpers for the chart's tests (node's test runner): render the chart with `helm template` and
// validate what comes out against the strict Kubernetes schemas.
//
//   import { render, validateDocs, find } from './render.mjs';
//   const docs = render({ values: ['tests/helm/values/hpa.yaml'], set: { replicaCount: 3 },
//                         apiVersions: ['monitoring.coreos.com/v1'] });
//   assert.deepEqual(validateDocs(docs), []);
//   const deploy = find(docs, 'Deployment');
//
// Paths: EVGATE_HELM (default build/tools/bin/helm) and EVGATE_CHART (default helm/evgate);
// relative paths (values files, the chart) are relative to the source tree's root, whatever the
// working directory. Synchronous, so tests can call it at the top level.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SOURCE_DIR } from './generate-schemas.mjs';
import { parseDocuments, validateDocs } from './validate.mjs';

export { validateDocs, parseDocuments, SOURCE_DIR };

export const HELM = process.env.EVGATE_HELM || path.join(SOURCE_DIR, 'build', 'tools', 'bin', 'helm');
export const CHART = process.env.EVGATE_CHART || path.join(SOURCE_DIR, 'helm', 'evgate');
export const DEFAULT_KUBE_VERSION = process.env.EVGATE_KUBE_VERSION || '1.31.0';

const fromRoot = (p) => path.resolve(SOURCE_DIR, p);

// helm keeps its caches and configuration in a private, throwaway place: nothing from the
// user's ~/.config/helm (repositories, plugins) can change what the chart renders.
let helmHome;
function helmEnv() {
  if (!helmHome) {
    helmHome = mkdtempSync(path.join(tmpdir(), 'evgate-helm-'));
    process.on('exit', () => rmSync(helmHome, { recursive: true, force: true }));
  }
  return {
    ...process.env,
    HELM_CACHE_HOME: path.join(helmHome, 'cache'),
    HELM_CONFIG_HOME: path.join(helmHome, 'config'),
    HELM_DATA_HOME: path.join(helmHome, 'data'),
    KUBECONFIG: path.join(helmHome, 'kubeconfig'),   // no cluster: template never contacts one
  };
}

// Runs helm with the arguments; returns its stdout, throws with its stderr when it fails.
export function helm(args, { input } = {}) {
  if (!existsSync(HELM)) {
    throw new Error(`${HELM} is missing: run scripts/setup-k8s-tools.sh`);
  }
  const r = spawnSync(HELM, args, {
    env: helmEnv(), encoding: 'utf8', input, maxBuffer: 64 * 1024 * 1024, cwd: SOURCE_DIR,
  });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    const err = new Error(`helm ${args.join(' ')} failed (exit ${r.status}):\n${r.stderr.trim()}`);
    err.stderr = r.stderr;
    err.stdout = r.stdout;
    err.status = r.status;
    throw err;
  }
  return r.stdout;
}

// The `helm template` arguments for the options of render().
export function templateArgs({
  values = [], set = {}, setString = {}, apiVersions = [], kubeVersion = DEFAULT_KUBE_VERSION,
  release = 'evgate', namespace = 'default', chart = CHART, showOnly = [], isUpgrade = false,
  extraArgs = [],
} = {}) {
  const args = ['template', release, fromRoot(chart), '--namespace', namespace];
  if (kubeVersion) args.push('--kube-version', kubeVersion);
  for (const v of apiVersions) args.push('--api-versions', v);
  for (const f of values) args.push('--values', fromRoot(f));
  // --set-json keeps types: numbers, booleans, null (deletes a default), lists and maps.
  for (const [k, v] of Object.entries(set)) args.push('--set-json', `${k}=${JSON.stringify(v)}`);
  for (const [k, v] of Object.entries(setString)) args.push('--set-string', `${k}=${v}`);
  for (const s of [].concat(showOnly)) args.push('--show-only', s);
  if (isUpgrade) args.push('--is-upgrade');
  args.push(...extraArgs);
  return args;
}

// Renders the chart; returns its documents as plain objects (empty documents dropped). Throws
// with helm's stderr when helm fails, and on YAML that does not parse.
export function renderText(options = {}) {
  return helm(templateArgs(options));
}

export function render(options = {}) {
  const text = renderText(options);
  return parseDocuments(text, 'helm template').filter((d) => d !== null && d !== undefined);
}

// The one document of this kind (and name, when given); throws when there is none or several.
export function find(docs, kind, name) {
  const found = docs.filter((d) => d.kind === kind && (name === undefined || d.metadata?.name === name));
  if (found.length !== 1) {
    const have = docs.map((d) => `${d.kind}/${d.metadata?.name}`).join(', ');
    throw new Error(`expected one ${kind}${name ? `/${name}` : ''}, found ${found.length} (documents: ${have})`);
  }
  return found[0];
}

// Every document of this kind.
export function findAll(docs, kind) {
  return docs.filter((d) => d.kind === kind);
}
