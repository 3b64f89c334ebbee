// The strict manifest validator's own tests: node --test tests/helm/validate.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseDocuments, validateDocs, validateText } from './validate.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

function deployment() {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: 'evgate',
      namespace: 'default',
      labels: { 'app.kubernetes.io/name': 'evgate', 'helm.sh/chart': 'evgate-0.1.0' },
      annotations: { 'checksum/config': 'abc', 'example.com/free text': 'any value at all' },
    },
    spec: {
      replicas: 2,
      revisionHistoryLimit: 3,
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: '25%' } },
      selector: { matchLabels: { 'app.kubernetes.io/name': 'evgate' } },
      template: {
        metadata: { labels: { 'app.kubernetes.io/name': 'evgate' }, annotations: { 'prometheus.io/scrape': 'true' } },
        spec: {
          serviceAccountName: 'evgate',
          automountServiceAccountToken: false,
          terminationGracePeriodSeconds: 30,
          securityContext: { runAsNonRoot: true, runAsUser: 65532, fsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [{
            name: 'evgate',
            image: 'evgate:0.1.0',
            imagePullPolicy: 'IfNotPresent',
            args: ['--config', '/etc/evgate/evgate.yaml'],
            ports: [{ name: 'admin', containerPort: 9901, protocol: 'TCP' }, { name: 'metrics', containerPort: 9902 }],
            resources: { requests: { cpu: '100m', memory: '64Mi' }, limits: { cpu: 1, memory: '128Mi' } },
            securityContext: {
              readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] },
            },
            livenessProbe: { grpc: { port: 9901 }, periodSeconds: 10 },
            readinessProbe: { httpGet: { path: '/metrics', port: 'metrics' } },
            env: [{ name: 'POD', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
            volumeMounts: [{ name: 'config', mountPath: '/etc/evgate', readOnly: true }],
          }],
          volumes: [{ name: 'config', configMap: { name: 'evgate' } }],
        },
      },
    },
  };
}

const container = (d) => d.spec.template.spec.containers[0];

function problemsAfter(mutate, make = deployment) {
  const doc = make();
  mutate(doc);
  return validateDocs([doc]);
}

test('a correct Deployment passes', () => {
  assert.deepEqual(validateDocs([deployment()]), []);
});

test('IntOrString and Quantity fields take both forms', () => {
  assert.deepEqual(problemsAfter((d) => {
    d.spec.strategy.rollingUpdate = { maxUnavailable: '50%', maxSurge: 1 };
    container(d).readinessProbe.httpGet.port = 9902;
    container(d).resources = { requests: { cpu: 0.5, memory: 67108864 }, limits: { cpu: '2', memory: '1Gi' } };
  }), []);
});

test('a misspelt key fails at every depth', () => {
  const cases = [
    [(d) => { d.metdata = d.metadata; }, '/metdata'],
    [(d) => { d.spec.replica = 2; }, '/spec/replica'],
    [(d) => { d.spec.template.spec.serviceAcountName = 'x'; }, '/spec/template/spec/serviceAcountName'],
    [(d) => { d.spec.template.metadata.label = {}; }, '/spec/template/metadata/label'],
    [(d) => { container(d).imagePullpolicy = 'Always'; }, '/spec/template/spec/containers/0/imagePullpolicy'],
    [(d) => { container(d).securityContext.readOnlyRootFilesystm = true; },
      '/spec/template/spec/containers/0/securityContext/readOnlyRootFilesystm'],
    [(d) => { container(d).securityContext.capabilities.dorp = ['ALL']; },
      '/spec/template/spec/containers/0/securityContext/capabilities/dorp'],
    [(d) => { d.spec.template.spec.securityContext.seccompProfile.typ = 'x'; },
      '/spec/template/spec/securityContext/seccompProfile/typ'],
    [(d) => { container(d).livenessProbe.grpc.prot = 9901; }, '/spec/template/spec/containers/0/livenessProbe/grpc/prot'],
    [(d) => { container(d).readinessProbe.periodSecond = 5; }, '/spec/template/spec/containers/0/readinessProbe/periodSecond'],
    [(d) => { container(d).ports[1].contanerPort = 1; }, '/spec/template/spec/containers/0/ports/1/contanerPort'],
    [(d) => { container(d).resources.request = {}; }, '/spec/template/spec/containers/0/resources/request'],
    [(d) => { d.spec.template.spec.volumes[0].configMap.nam = 'x'; }, '/spec/template/spec/volumes/0/configMap/nam'],
    [(d) => { d.spec.strategy.rollingUpdate.maxUnavaliable = 1; }, '/spec/strategy/rollingUpdate/maxUnavaliable'],
  ];
  for (const [mutate, where] of cases) {
    const problems = problemsAfter(mutate);
    assert.ok(problems.includes(`Deployment/evgate: ${where}: unknown field`),
              `${where}: expected an unknown-field problem, got ${JSON.stringify(problems)}`);
  }
});

test('wrong types and values fail', () => {
  const cases = [
    [(d) => { d.spec.replicas = '2'; }, 'Deployment/evgate: /spec/replicas: must be number'],
    [(d) => { container(d).ports = { name: 'admin' }; }, 'Deployment/evgate: /spec/template/spec/containers/0/ports: must be array'],
    [(d) => { container(d).env = [{ name: 'A', value: true }]; }, 'Deployment/evgate: /spec/template/spec/containers/0/env/0/value: must be string'],
    [(d) => { d.metadata.labels.version = 1; }, 'Deployment/evgate: /metadata/labels/version: must be string'],
    [(d) => { d.spec.strategy.rollingUpdate.maxSurge = true; }, 'Deployment/evgate: /spec/strategy/rollingUpdate/maxSurge: must be string,number'],
    [(d) => { container(d).imagePullPolicy = 'Sometimes'; },
      'Deployment/evgate: /spec/template/spec/containers/0/imagePullPolicy: must be one of "Always", "IfNotPresent", "Never"'],
    [(d) => { d.apiVersion = 'apps/v1'; d.spec.template.spec.containers[0].name = undefined; delete container(d).name; },
      'Deployment/evgate: /spec/template/spec/containers/0/name: required field missing'],
    [(d) => { delete d.metadata.name; }, 'Deployment/<no name>: /metadata/name: required field missing'],
    [(d) => { d.metadata.name = 'Evgate_1'; }, 'Deployment/Evgate_1: /metadata/name: invalid name "Evgate_1"'],
    [(d) => { d.metadata.labels.version = 'has spaces'; }, 'Deployment/evgate: /metadata/labels/version: invalid label value "has spaces"'],
    [(d) => { d.spec.template.metadata.labels['a/b/c'] = 'x'; }, 'Deployment/evgate: /spec/template/metadata/labels/a~1b~1c: invalid label key'],
  ];
  for (const [mutate, expected] of cases) {
    const problems = problemsAfter(mutate);
    assert.ok(problems.includes(expected), `expected ${JSON.stringify(expected)} in ${JSON.stringify(problems)}`);
  }
});

test('integers, int32 ranges, quantities, durations and percentages are checked', () => {
  const cases = [
    [(d) => { d.spec.replicas = 1.5; }, 'Deployment/evgate: /spec/replicas: must be integer'],
    [(d) => { container(d).ports[0].containerPort = 2 ** 40; },
      'Deployment/evgate: /spec/template/spec/containers/0/ports/0/containerPort: must be a valid int32'],
    [(d) => { container(d).resources.limits.memory = '128MB'; },
      'Deployment/evgate: /spec/template/spec/containers/0/resources/limits/memory: must be a valid quantity'],
    [(d) => { container(d).resources.requests.cpu = '100 m'; },
      'Deployment/evgate: /spec/template/spec/containers/0/resources/requests/cpu: must be a valid quantity'],
    [(d) => { d.spec.strategy.rollingUpdate.maxSurge = '25'; },
      'Deployment/evgate: /spec/strategy/rollingUpdate/maxSurge: must be an integer or a percentage ("25%"), not "25"'],
  ];
  for (const [mutate, expected] of cases) {
    const problems = problemsAfter(mutate);
    assert.ok(problems.includes(expected), `expected ${JSON.stringify(expected)} in ${JSON.stringify(problems)}`);
  }
  const monitor = { apiVersion: 'monitoring.coreos.com/v1', kind: 'ServiceMonitor', metadata: { name: 's' },
                    spec: { selector: {}, endpoints: [{ port: 'metrics', interval: '15 seconds' }] } };
  assert.match(validateDocs([monitor]).join('\n'), /^ServiceMonitor\/s: \/spec\/endpoints\/0\/interval: must match /);
});

test('apiVersion and kind must match the schema', () => {
  assert.match(problemsAfter((d) => { d.apiVersion = 'apps/v1beta1'; }).join('\n'), /no schema for apiVersion "apps\/v1beta1" kind "Deployment"/);
  assert.match(problemsAfter((d) => { d.kind = 'Deploymnet'; }).join('\n'), /no schema for apiVersion "apps\/v1" kind "Deploymnet"/);
  assert.match(problemsAfter((d) => { delete d.kind; }).join('\n'), /apiVersion and kind must be strings/);
});

test('an unknown kind fails, even a well-formed one', () => {
  const problems = validateDocs([{ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' }, spec: {} }]);
  assert.equal(problems.length, 1);
  assert.match(problems[0], /^Widget\/w: \/: no schema for apiVersion "example.com\/v1" kind "Widget"/);
});

test('the other kinds the chart uses have schemas and close their objects', () => {
  const ok = [
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 's' },
      spec: { selector: { a: 'b' }, ports: [{ name: 'admin', port: 9901, targetPort: 'admin' }, { port: 9902, targetPort: 9902 }] } },
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, data: { 'evgate.yaml': 'listeners: []\n' } },
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 's' }, type: 'Opaque', stringData: { token: 'x' } },
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 's' }, automountServiceAccountToken: false },
    { apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: 'p' },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } } },
    { apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: 'd' },
      spec: { selector: { matchLabels: { a: 'b' } }, template: { metadata: { labels: { a: 'b' } }, spec: { containers: [{ name: 'c', image: 'i' }] } } } },
    { apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 'd' },
      spec: { serviceName: 'd', selector: { matchLabels: { a: 'b' } }, template: { spec: { containers: [{ name: 'c', image: 'i' }] } },
              volumeClaimTemplates: [{ metadata: { name: 'state' }, spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } } }] } },
    { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'n' },
      spec: { podSelector: {}, policyTypes: ['Ingress'], ingress: [{ ports: [{ port: 9901 }, { port: 'metrics', protocol: 'TCP' }] }] } },
    { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: { name: 'p' }, spec: { maxUnavailable: '25%', selector: { matchLabels: { a: 'b' } } } },
    { apiVersion: 'autoscaling/v2', kind: 'HorizontalPodAutoscaler', metadata: { name: 'h' },
      spec: { scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'd' }, minReplicas: 1, maxReplicas: 3,
              metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } } }] } },
    { apiVersion: 'monitoring.coreos.com/v1', kind: 'ServiceMonitor', metadata: { name: 's' },
      spec: { selector: { matchLabels: { a: 'b' } }, endpoints: [{ port: 'metrics', interval: '15s' }] } },
    { apiVersion: 'monitoring.coreos.com/v1', kind: 'PodMonitor', metadata: { name: 'p' },
      spec: { selector: { matchLabels: { a: 'b' } }, podMetricsEndpoints: [{ port: 'metrics', path: '/metrics' }] } },
    { apiVersion: 'monitoring.coreos.com/v1', kind: 'PrometheusRule', metadata: { name: 'r' },
      spec: { groups: [{ name: 'g', rules: [{ alert: 'Down', expr: 'up == 0', for: '5m', labels: { severity: 'page' }, annotations: { summary: 'x' } }] }] } },
  ];
  assert.deepEqual(validateDocs(ok), []);
  const typos = [
    [ok[0], (d) => { d.spec.ports[0].targetport = 1; }, '/spec/ports/0/targetport'],
    [ok[1], (d) => { d.datas = {}; }, '/datas'],
    [ok[6], (d) => { d.spec.volumeClaimTemplates[0].spec.storageclass = 'x'; }, '/spec/volumeClaimTemplates/0/spec/storageclass'],
    [ok[7], (d) => { d.spec.ingress[0].port = []; }, '/spec/ingress/0/port'],
    [ok[8], (d) => { d.spec.maxunavailable = 1; }, '/spec/maxunavailable'],
    [ok[9], (d) => { d.spec.metrics[0].resource.target.averageUtilisation = 1; }, '/spec/metrics/0/resource/target/averageUtilisation'],
    [ok[10], (d) => { d.spec.endpoints[0].intervall = '1s'; }, '/spec/endpoints/0/intervall'],
    [ok[11], (d) => { d.spec.podMetricsEndpoint = []; }, '/spec/podMetricsEndpoint'],
    [ok[12], (d) => { d.spec.groups[0].rules[0].expression = 'x'; }, '/spec/groups/0/rules/0/expression'],
  ];
  for (const [doc, mutate, where] of typos) {
    const copy = structuredClone(doc);
    mutate(copy);
    const problems = validateDocs([copy]);
    assert.ok(problems.includes(`${copy.kind}/${copy.metadata.name}: ${where}: unknown field`),
              `${where}: ${JSON.stringify(problems)}`);
  }
});

test('YAML: several documents, empty ones skipped, Lists item by item, YAML 1.1 booleans', () => {
  const text = [
    '# Source: evgate/templates/empty.yaml', '---', '---',
    'apiVersion: v1', 'kind: ConfigMap', 'metadata: {name: a}', 'data: {x: "1"}', '---',
    'apiVersion: v1', 'kind: List', 'items:',
    '- {apiVersion: v1, kind: ServiceAccount, metadata: {name: sa}}',
    '- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}, data: {x: on}}',
    '- {apiVersion: v1, kind: Gadget, metadata: {name: g}}',
  ].join('\n');
  const docs = parseDocuments(text);
  assert.equal(docs.filter((d) => d !== null).length, 2);
  assert.deepEqual(validateDocs(docs), [
    'List/<no name>: /items/1: ConfigMap/b: /data/x: must be string',   // `on` is true in YAML 1.1
    'List/<no name>: /items/2: Gadget/g: /: no schema for apiVersion "v1" kind "Gadget" (add it to KINDS in tests/helm/generate-schemas.mjs)',
  ]);
  assert.match(validateText('a: [\n', 'f.yaml')[0], /^f\.yaml: <yaml>: \/: /);
  assert.match(validateText('a: 1\na: 2\n', 'f.yaml')[0], /^f\.yaml: <yaml>: \/: .*[Mm]ap keys must be unique/);
});

test('the command line: FILE: Kind/name: /path: message, exit 1 on any problem', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'evgate-validate-'));
  try {
    const good = path.join(dir, 'good.yaml');
    const bad = path.join(dir, 'bad.yaml');
    writeFileSync(good, 'apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa}\n');
    writeFileSync(bad, 'apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa}\nautomount: true\n---\nkind: Foo\napiVersion: v9\nmetadata: {name: f}\n');
    const run = (args, input) => spawnSync(process.execPath, [path.join(here, 'validate.mjs'), ...args], { encoding: 'utf8', input });
    let r = run([good]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    r = run([good, bad]);
    assert.equal(r.status, 1);
    assert.equal(r.stdout, `${bad}: ServiceAccount/sa: /automount: unknown field\n` +
                           `${bad}: Foo/f: /: no schema for apiVersion "v9" kind "Foo" (add it to KINDS in tests/helm/generate-schemas.mjs)\n`);
    r = run([], 'apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa, labelz: {}}\n');
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '<stdin>: ServiceAccount/sa: /metadata/labelz: unknown field\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
