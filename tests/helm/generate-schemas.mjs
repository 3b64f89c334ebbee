#!/usr/bin/env node
// The strict Kubernetes schemas: which kinds we know, where their generated JSON schemas are
// cached, and generating them from kubernetes-models' TypeScript types with
// ts-json-schema-generator (every object closed: additionalProperties false unless the type has
// an index signature, like metadata.labels), then compiling them with ajv to standalone code.
//
//   node tests/helm/generate-schemas.mjs [--force]
//
// generates them into build/tools/k8s-schemas/<key>/ (key: the hash of package-lock.json and of
// this file) unless they are there already (--force: regenerate). Also a module, used by
// validate.mjs (which generates them on first use when they are missing).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const HELM_TEST_DIR = path.dirname(fileURLToPath(import.meta.url));
export const SOURCE_DIR = path.resolve(HELM_TEST_DIR, '..', '..');

// [apiVersion, kind, module (package/path without .d.ts), interface name]
export const KINDS = [
  ['v1', 'ConfigMap', 'kubernetes-models/v1/ConfigMap', 'IConfigMap'],
  ['v1', 'Secret', 'kubernetes-models/v1/Secret', 'ISecret'],
  ['v1', 'Service', 'kubernetes-models/v1/Service', 'IService'],
  ['v1', 'ServiceAccount', 'kubernetes-models/v1/ServiceAccount', 'IServiceAccount'],
  ['v1', 'PersistentVolumeClaim', 'kubernetes-models/v1/PersistentVolumeClaim', 'IPersistentVolumeClaim'],
  ['v1', 'Pod', 'kubernetes-models/v1/Pod', 'IPod'],
  ['v1', 'Namespace', 'kubernetes-models/v1/Namespace', 'INamespace'],
  ['apps/v1', 'Deployment', 'kubernetes-models/apps/v1/Deployment', 'IDeployment'],
  ['apps/v1', 'DaemonSet', 'kubernetes-models/apps/v1/DaemonSet', 'IDaemonSet'],
  ['apps/v1', 'StatefulSet', 'kubernetes-models/apps/v1/StatefulSet', 'IStatefulSet'],
  ['batch/v1', 'Job', 'kubernetes-models/batch/v1/Job', 'IJob'],
  ['batch/v1', 'CronJob', 'kubernetes-models/batch/v1/CronJob', 'ICronJob'],
  ['networking.k8s.io/v1', 'NetworkPolicy', 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy', 'INetworkPolicy'],
  ['networking.k8s.io/v1', 'Ingress', 'kubernetes-models/networking.k8s.io/v1/Ingress', 'IIngress'],
  ['policy/v1', 'PodDisruptionBudget', 'kubernetes-models/policy/v1/PodDisruptionBudget', 'IPodDisruptionBudget'],
  ['autoscaling/v2', 'HorizontalPodAutoscaler', 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler', 'IHorizontalPodAutoscaler'],
  ['rbac.authorization.k8s.io/v1', 'Role', 'kubernetes-models/rbac.authorization.k8s.io/v1/Role', 'IRole'],
  ['rbac.authorization.k8s.io/v1', 'RoleBinding', 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding', 'IRoleBinding'],
  ['rbac.authorization.k8s.io/v1', 'ClusterRole', 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole', 'IClusterRole'],
  ['rbac.authorization.k8s.io/v1', 'ClusterRoleBinding', 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding', 'IClusterRoleBinding'],
  ['monitoring.coreos.com/v1', 'ServiceMonitor', '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor', 'IServiceMonitor'],
  ['monitoring.coreos.com/v1', 'PodMonitor', '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor', 'IPodMonitor'],
  ['monitoring.coreos.com/v1', 'PrometheusRule', '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule', 'IPrometheusRule'],
];

// The definition name of a kind in the generated schema: "apps.v1.Deployment", "v1.Service".
export function definitionName(apiVersion, kind) {
  return `${apiVersion.replaceAll('/', '.')}.${kind}`;
}

// The cache key: the lock file (pins every package the schemas come from) and this file (the
// kind list and the way they are generated).
export function schemaKey() {
  const h = createHash('sha256');
  h.update(readFileSync(path.join(HELM_TEST_DIR, 'package-lock.json')));
  h.update(readFileSync(fileURLToPath(import.meta.url)));
  return h.digest('hex').slice(0, 16);
}

function schemaBaseDir() {
  return process.env.EVGATE_K8S_SCHEMA_DIR || path.join(SOURCE_DIR, 'build', 'tools', 'k8s-schemas');
}

export function schemaCacheDir() {
  return path.join(schemaBaseDir(), schemaKey());
}

export function schemaFile() {
  return path.join(schemaCacheDir(), 'kubernetes.schema.json');
}

export function validatorsFile() {
  return path.join(schemaCacheDir(), 'validators.cjs');
}

// Generates the schema file (all kinds as definitions of one document, sharing their
// sub-definitions). Returns the path. Takes tens of seconds.
export async function generateSchemas({ log = () => {} } = {}) {
  const nodeModules = path.join(HELM_TEST_DIR, 'node_modules');
  if (!existsSync(path.join(nodeModules, 'ts-json-schema-generator'))) {
    throw new Error(`${nodeModules} is missing: run scripts/setup-k8s-tools.sh (npm ci --prefix tests/helm)`);
  }
  const { createGenerator } = await import('ts-json-schema-generator');
  const dir = schemaCacheDir();
  mkdirSync(dir, { recursive: true });
  const work = path.join(dir, `tmp-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });

  // The entry file: one exported alias per kind. Its imports resolve through `paths` to
  // tests/helm/node_modules, the packages' own imports through their "exports".
  const lines = KINDS.map(([apiVersion, kind, mod, iface], i) =>
    `import type { ${iface} as K${i} } from ${JSON.stringify(mod)};\n` +
    `export type ${definitionName(apiVersion, kind).replaceAll('.', '_')} = K${i};`);
  const entry = path.join(work, 'entry.ts');
  writeFileSync(entry, lines.join('\n') + '\n');
  const tsconfig = path.join(work, 'tsconfig.json');
  writeFileSync(tsconfig, JSON.stringify({
    compilerOptions: {
      target: 'ES2022',
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      strict: true,
      skipLibCheck: true,
      noEmit: true,
      types: [],
      baseUrl: nodeModules,
      paths: { '*': [path.join(nodeModules, '*')] },
    },
    files: [entry],
  }, null, 2));

  log(`generating schemas for ${KINDS.length} kinds from kubernetes-models' types...`);
  const started = Date.now();
  const generator = createGenerator({
    path: entry,
    tsconfig,
    type: '*',
    expose: 'export',
    topRef: true,
    jsDoc: 'none',          // descriptions only bloat the file; no type-changing annotations
    skipTypeCheck: true,
    additionalProperties: false,
    sortProps: true,
  });
  const generated = generator.createSchema('*');
  const schema = {
    $id: 'https://evgate.invalid/kubernetes.schema.json',
    definitions: {},
  };
  // Rename the entry aliases ("apps_v1_Deployment") to "apps.v1.Deployment" and keep the rest.
  const rename = new Map(KINDS.map(([apiVersion, kind]) => {
    const d = definitionName(apiVersion, kind);
    return [d.replaceAll('.', '_'), d];
  }));
  let text = JSON.stringify(generated.definitions);
  for (const [from, to] of rename) {
    text = text.replaceAll(`"#/definitions/${from}"`, `"#/definitions/${encodeURIComponent(to)}"`);
  }
  const defs = JSON.parse(text);
  for (const [name, def] of Object.entries(defs)) {
    schema.definitions[rename.get(name) ?? name] = def;
  }
  for (const [apiVersion, kind] of KINDS) {
    if (!schema.definitions[definitionName(apiVersion, kind)]) {
      throw new Error(`no definition generated for ${apiVersion} ${kind}`);
    }
  }
  checkClosed(schema);
  // The validators, compiled once here to standalone JavaScript: loading them costs tens of
  // milliseconds, compiling the schema seconds (every test process would pay it).
  writeFileSync(path.join(work, 'validators.cjs'), await standaloneValidators(schema));
  renameSync(path.join(work, 'validators.cjs'), validatorsFile());
  const out = schemaFile();
  writeFileSync(path.join(work, 'schema.json'), JSON.stringify(schema));
  renameSync(path.join(work, 'schema.json'), out);   // last: its presence means "all generated"
  rmSync(work, { recursive: true, force: true });
  // Schemas of other keys (an older lock file or generator) are stale.
  for (const entry of readdirSync(schemaBaseDir())) {
    if (/^[0-9a-f]{16}$/.test(entry) && entry !== schemaKey()) {
      rmSync(path.join(schemaBaseDir(), entry), { recursive: true, force: true });
    }
  }
  log(`wrote ${out} (${Object.keys(schema.definitions).length} definitions) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return out;
}

// The options every ajv instance validating manifests uses.
export const AJV_OPTIONS = { strict: true, allErrors: true, allowUnionTypes: true };

// A CommonJS module exporting one validate function per kind, named by definitionName().
async function standaloneValidators(schema) {
  const { default: Ajv } = await import('ajv');
  const { default: standaloneCode } = await import('ajv/dist/standalone/index.js');
  // No ajv-formats: the generated schemas use no `format` (strict mode would reject one).
  const ajv = new Ajv({ ...AJV_OPTIONS, code: { source: true, lines: false } });
  ajv.addSchema(schema);
  const refs = {};
  for (const [apiVersion, kind] of KINDS) {
    const name = definitionName(apiVersion, kind);
    refs[name] = `${schema.$id}#/definitions/${name}`;
  }
  return standaloneCode(ajv, refs);
}

// Every object schema must be closed: no `additionalProperties: true` (or missing) on an
// object with properties. Throws otherwise: a generator change must not silently loosen it.
function checkClosed(schema) {
  const open = [];
  const walk = (node, where) => {
    if (Array.isArray(node)) { node.forEach((n, i) => walk(n, `${where}/${i}`)); return; }
    if (!node || typeof node !== 'object') return;
    if (node.type === 'object' && node.properties && node.additionalProperties !== false) {
      open.push(where);
    }
    for (const [k, v] of Object.entries(node)) walk(v, `${where}/${k}`);
  };
  walk(schema, '#');
  if (open.length) throw new Error(`open object schemas: ${open.slice(0, 10).join(', ')}`);
}

// --- the command line ---------------------------------------------------------------------------
if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const force = process.argv.includes('--force');
  const file = schemaFile();
  if (!force && existsSync(file) && existsSync(validatorsFile())) {
    console.log(`schemas up to date: ${file}`);
  } else {
    await generateSchemas({ log: (m) => console.log(m) });
  }
}
