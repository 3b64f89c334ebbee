// Unit tests of the Helm chart helm/evgate: `node --test tests/helm/`.
//
// Every case renders the chart with the real helm (tests/helm/render.mjs: `helm template
// --kube-version 1.31.0`), and every rendered manifest is checked strictly (validateDocs: JSON
// schemas of the Kubernetes and Prometheus Operator types, misspelt fields included). Then the
// fields evgate's behaviour depends on are asserted one by one: probes, security contexts, the
// shutdown sequence, what rolls the pods, the NetworkPolicy, the configuration file the pods read,
// and the monitoring objects made from deploy/prometheus/rules.yaml and deploy/grafana/evgate.json.

import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { render, validateDocs, helm as runHelm, HELM } from './render.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const chartDir = path.join(root, 'helm/evgate');
const valuesDir = path.join(here, 'values');
const valueFiles = fs.readdirSync(valuesDir).filter((f) => f.endsWith('.yaml')).sort();
const KUBE = '1.31.0';
const MONITORING = 'monitoring.coreos.com/v1';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'evgate-chart-test-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let tmpCount = 0;

// A values file holding `obj`, for values --set cannot express (lists of maps).
function valuesFile(obj) {
  const file = path.join(tmp, `values-${++tmpCount}.yaml`);
  fs.writeFileSync(file, YAML.stringify(obj));
  return file;
}

function vf(name) {
  return path.join(valuesDir, name);
}

async function renderWith({ files = [], objs = [], set, api = false } = {}) {
  const values = [...files.map(vf), ...objs.map(valuesFile)];
  const docs = await render({
    values,
    ...(set ? { set } : {}),
    apiVersions: api ? [MONITORING] : [],
    kubeVersion: KUBE,
    release: 'rel',
    namespace: 'default',
  });
  return docs.filter((d) => d && typeof d === 'object');
}

async function renderFails(opts, pattern) {
  await assert.rejects(async () => renderWith(opts), pattern);
}

const WORKLOAD_KINDS = ['Deployment', 'DaemonSet', 'StatefulSet'];
const workload = (docs) => {
  const w = docs.filter((d) => WORKLOAD_KINDS.includes(d.kind));
  assert.equal(w.length, 1, 'exactly one workload');
  return w[0];
};
const podSpec = (docs) => workload(docs).spec.template.spec;
const container = (docs) => {
  const cs = podSpec(docs).containers;
  assert.equal(cs.length, 1, 'one container');
  return cs[0];
};
const ofKind = (docs, kind) => docs.filter((d) => d.kind === kind);
const one = (docs, kind, name) => {
  const found = docs.filter((d) => d.kind === kind && (name === undefined || d.metadata.name === name));
  assert.equal(found.length, 1, `exactly one ${kind}${name ? ' ' + name : ''}, got ${found.length}`);
  return found[0];
};
const configMap = (docs) => one(docs, 'ConfigMap', 'rel-evgate-config');
const evgateYaml = (docs) => YAML.parse(configMap(docs).data['evgate.yaml']);
const podAnnotations = (docs) => workload(docs).spec.template.metadata.annotations ?? {};
const portOf = (address) => Number(/:(\d+)$/.exec(address)[1]);

// evgate durations (docs/configuration.md) in seconds.
function durationSeconds(d) {
  if (d === 0 || d === '0') return 0;
  const m = /^(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)$/.exec(String(d));
  assert.ok(m, `a duration: ${d}`);
  return Number(m[1]) * { ns: 1e-9, us: 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 }[m[2]];
}

const chartValues = YAML.parse(fs.readFileSync(path.join(chartDir, 'values.yaml'), 'utf8'));

// ---------------------------------------------------------------------------------------------
describe('every values file renders and passes strict validation', () => {
  for (const file of valueFiles) {
    for (const api of [false, true]) {
      test(`${file}${api ? ' with ' + MONITORING : ''}`, async () => {
        const docs = await renderWith({ files: [file], api });
        assert.ok(docs.length > 0);
        assert.deepEqual(validateDocs(docs), []);
        for (const d of docs) {
          assert.equal(d.metadata.labels['app.kubernetes.io/name'], 'evgate', `${d.kind} ${d.metadata.name}`);
          assert.equal(d.metadata.labels['app.kubernetes.io/instance'], 'rel');
          assert.equal(d.metadata.labels['app.kubernetes.io/managed-by'], 'Helm');
          assert.ok(d.metadata.labels['helm.sh/chart'].startsWith('evgate-'));
        }
        const names = docs.map((d) => `${d.kind}/${d.metadata.name}`);
        assert.equal(new Set(names).size, names.length, `duplicate objects: ${names}`);
      });
    }
  }
});

describe('defaults', () => {
  test('a Deployment of 2 with its ConfigMap, token Secret, Services, NetworkPolicy and PDB', async () => {
    const docs = await renderWith({ files: ['defaults.yaml'] });
    const kinds = docs.map((d) => `${d.kind}/${d.metadata.name}`).sort();
    assert.deepEqual(kinds, [
      'ConfigMap/rel-evgate-config',
      'Deployment/rel-evgate',
      'NetworkPolicy/rel-evgate',
      'PodDisruptionBudget/rel-evgate',
      'Secret/rel-evgate-admin-token',
      'Service/rel-evgate-admin',
      'Service/rel-evgate-headless',
      'Service/rel-evgate-metrics',
    ]);
    const dep = workload(docs);
    assert.equal(dep.spec.replicas, 2);
    assert.deepEqual(dep.spec.selector.matchLabels, {
      'app.kubernetes.io/name': 'evgate',
      'app.kubernetes.io/instance': 'rel',
    });
    for (const [k, v] of Object.entries(dep.spec.selector.matchLabels)) {
      assert.equal(dep.spec.template.metadata.labels[k], v);
    }
    assert.deepEqual(dep.spec.strategy, { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: 0 } });
  });

  test('one container, the image at the appVersion, started on the mounted configuration', async () => {
    const docs = await renderWith({ files: ['defaults.yaml'] });
    const c = container(docs);
    const chart = YAML.parse(fs.readFileSync(path.join(chartDir, 'Chart.yaml'), 'utf8'));
    assert.equal(c.image, `evgate:${chart.appVersion}`);
    assert.deepEqual(c.args, ['--config', '/etc/evgate/evgate.yaml']);
    assert.equal(c.command, undefined, 'the image ENTRYPOINT runs evgate');
  });

  test('Chart.yaml: apiVersion v2, application, appVersion = project VERSION in CMakeLists.txt', () => {
    const chart = YAML.parse(fs.readFileSync(path.join(chartDir, 'Chart.yaml'), 'utf8'));
    const version = /project\(evgate VERSION (\S+)/.exec(fs.readFileSync(path.join(root, 'CMakeLists.txt'), 'utf8'))[1];
    assert.equal(chart.apiVersion, 'v2');
    assert.equal(chart.type, 'application');
    assert.equal(chart.appVersion, version);
  });
});

// ---------------------------------------------------------------------------------------------
describe('the configuration file', () => {
  test('minimal.yaml: listeners and clusters pass through; the chart sets addresses, token and state file', async () => {
    const docs = await renderWith({ files: ['minimal.yaml'] });
    const cfg = evgateYaml(docs);
    const given = YAML.parse(fs.readFileSync(vf('minimal.yaml'), 'utf8')).config;
    assert.deepEqual(cfg.listeners, given.listeners);
    assert.deepEqual(cfg.clusters, given.clusters);
    assert.equal(cfg.admin.address, '0.0.0.0:9901');
    assert.equal(cfg.admin.health_address, '0.0.0.0:9903');
    assert.equal(cfg.metrics.address, '0.0.0.0:9902');
    assert.equal(cfg.admin.token_file, '/var/run/secrets/evgate/admin/token');
    assert.equal(cfg.admin.read_only_token_file, undefined);
    assert.equal(cfg.admin.insecure, undefined);
    assert.equal(cfg.admin.tls, undefined);
    assert.equal(cfg.state_file, '/var/lib/evgate/state.yaml');
    assert.equal(cfg.config_watch, true);
    assert.equal(cfg.drain_timeout, '30s');
    assert.equal(cfg.max_buffered_bytes, 0);
    assert.equal(cfg.workers, 0);
    assert.equal(cfg.rollOnChange, undefined, 'chart-only keys stay out of evgate.yaml');
    // Only keys evgate knows (docs/configuration.md) reach the file.
    assert.equal(cfg.listener_sockets, 'auto');
    assert.equal(cfg.metrics.listener_detail, 'full');
    const known = ['workers', 'listener_sockets', 'drain_timeout', 'max_buffered_bytes', 'state_file', 'config_watch', 'admin', 'metrics', 'log', 'access_log', 'clusters', 'listeners'];
    for (const k of Object.keys(cfg)) assert.ok(known.includes(k), `unknown top-level key ${k}`);
  });

  // The rendered file must be one evgate accepts: its own parser says so (when it is built).
  const evgateBin = [process.env.EVGATE_BIN, path.join(root, 'build/release/daemon/evgate')].find((p) => p && fs.existsSync(p));
  test('evgate --check-config accepts the rendered file of every values file', { skip: !evgateBin && 'evgate is not built (build/release/daemon/evgate)' }, async () => {
    for (const file of valueFiles) {
      const docs = await renderWith({ files: [file] });
      const cfgFile = path.join(tmp, `evgate-${file}`);
      fs.writeFileSync(cfgFile, configMap(docs).data['evgate.yaml']);
      const out = execFileSync(evgateBin, ['--check-config', cfgFile], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
      assert.equal(out.trim(), 'ok', file);
    }
  });

  test('the ports evgate binds are the ports the pod declares', async () => {
    const docs = await renderWith({ files: ['full.yaml'] });
    const cfg = evgateYaml(docs);
    const ports = Object.fromEntries(container(docs).ports.map((p) => [p.name, p.containerPort]));
    assert.equal(ports.admin, portOf(cfg.admin.address));
    assert.equal(ports.metrics, portOf(cfg.metrics.address));
    assert.equal(ports.health, portOf(cfg.admin.health_address));
    assert.deepEqual(
      Object.values(ports).sort(),
      [portOf(cfg.admin.address), portOf(cfg.metrics.address), portOf(cfg.admin.health_address), ...cfg.listeners.map((l) => portOf(l.bind))].sort(),
    );
    for (const p of container(docs).ports) {
      assert.match(p.name, /^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/, 'IANA_SVC_NAME');
      assert.match(p.name, /[a-z]/);
    }
    assert.deepEqual(container(docs).ports.map((p) => p.name), ['admin', 'metrics', 'health', 'web', 'tls-passthrough', 'postgres']);
  });

  test('listener names become valid port names (daemonset.yaml: "8443" -> l-8443)', async () => {
    const docs = await renderWith({ files: ['daemonset.yaml'] });
    assert.deepEqual(container(docs).ports.map((p) => p.name), ['admin', 'metrics', 'health', 'web', 'l-8443']);
    const cfg = evgateYaml(docs);
    assert.equal(cfg.admin.address, '[::]:9901');
    assert.equal(cfg.drain_timeout, '500ms');
  });

  test('full.yaml: TLS, mutual TLS and both tokens point at the mounted files', async () => {
    const docs = await renderWith({ files: ['full.yaml'] });
    const cfg = evgateYaml(docs);
    const c = container(docs);
    const spec = podSpec(docs);
    const mountOf = (file) => {
      const m = c.volumeMounts.find((vm) => file.startsWith(vm.mountPath + '/'));
      assert.ok(m, `a volume is mounted for ${file}`);
      const vol = spec.volumes.find((v) => v.name === m.name);
      return { mount: m, vol, key: file.slice(m.mountPath.length + 1) };
    };
    const expect = [
      [cfg.admin.token_file, 'rel-evgate-admin-token', 'token'],
      [cfg.admin.read_only_token_file, 'rel-evgate-admin-token', 'read-only-token'],
      [cfg.admin.tls.cert_file, 'evgate-admin-tls', 'tls.crt'],
      [cfg.admin.tls.key_file, 'evgate-admin-tls', 'tls.key'],
      [cfg.admin.tls.client_ca_file, 'evgate-admin-client-ca', 'ca.crt'],
    ];
    for (const [file, secret, key] of expect) {
      const { mount, vol, key: k } = mountOf(file);
      assert.equal(mount.subPath, undefined, 'no subPath: Secret updates reach the file');
      assert.equal(mount.readOnly, true);
      assert.equal(vol.secret.secretName, secret, file);
      assert.ok(vol.secret.items.some((i) => i.key === key && i.path === k), `${secret}/${key} at ${file}`);
    }
    assert.equal(cfg.admin.max_watchers, 16);
    assert.equal(cfg.admin.max_message_size, '8MiB');
    const secret = one(docs, 'Secret', 'rel-evgate-admin-token');
    assert.equal(Buffer.from(secret.data.token, 'base64').toString(), 'full-test-admin-token');
    assert.equal(Buffer.from(secret.data['read-only-token'], 'base64').toString(), 'full-test-read-only-token');
  });

  test('the ConfigMap is mounted as a directory, never with subPath', async () => {
    for (const file of valueFiles) {
      const docs = await renderWith({ files: [file] });
      const m = container(docs).volumeMounts.find((vm) => vm.name === 'config');
      assert.equal(m.mountPath, '/etc/evgate');
      assert.equal(m.subPath, undefined);
      const vol = podSpec(docs).volumes.find((v) => v.name === 'config');
      assert.equal(vol.configMap.name, configMap(docs).metadata.name);
      assert.equal(container(docs).args[1], `${m.mountPath}/evgate.yaml`);
    }
  });

  test('the state file lives on a writable volume: emptyDir, or a claim per pod in a StatefulSet', async () => {
    const dep = await renderWith({ files: ['minimal.yaml'] });
    const depState = podSpec(dep).volumes.find((v) => v.name === 'state');
    assert.ok(depState.emptyDir);
    assert.equal(container(dep).volumeMounts.find((m) => m.name === 'state').mountPath, path.dirname(evgateYaml(dep).state_file));

    const sts = await renderWith({ files: ['full.yaml'] });
    const w = workload(sts);
    assert.equal(w.kind, 'StatefulSet');
    assert.equal(w.spec.replicas, 3);
    assert.equal(podSpec(sts).volumes.find((v) => v.name === 'state'), undefined, 'no emptyDir next to the claim');
    const [claim] = w.spec.volumeClaimTemplates;
    assert.equal(claim.metadata.name, 'state');
    assert.equal(claim.spec.resources.requests.storage, '128Mi');
    assert.equal(claim.spec.storageClassName, 'fast-ssd');
    assert.equal(container(sts).volumeMounts.find((m) => m.name === 'state').mountPath, path.dirname(evgateYaml(sts).state_file));
    assert.equal(w.spec.serviceName, 'rel-evgate-headless');
    assert.ok(one(sts, 'Service', 'rel-evgate-headless'));
    assert.deepEqual(w.spec.persistentVolumeClaimRetentionPolicy, { whenDeleted: 'Delete', whenScaled: 'Retain' });
  });

  test('stateFile=false leaves state_file out', async () => {
    const docs = await renderWith({ files: ['minimal.yaml'], objs: [{ stateFile: false }] });
    assert.equal(evgateYaml(docs).state_file, undefined);
  });
});

// ---------------------------------------------------------------------------------------------
describe('probes', () => {
  for (const file of valueFiles) {
    test(`${file}: native grpc probes on the health port; liveness and readiness ask different services`, async () => {
      const docs = await renderWith({ files: [file] });
      const c = container(docs);
      const healthPort = c.ports.find((p) => p.name === 'health').containerPort;
      assert.equal(portOf(evgateYaml(docs).admin.health_address), healthPort);
      for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
        assert.ok(c[probe], probe);
        assert.equal(c[probe].grpc.port, healthPort, `${probe} on the health port`);
        assert.equal(c[probe].httpGet, undefined);
        assert.equal(c[probe].tcpSocket, undefined);
        assert.equal(c[probe].exec, undefined);
      }
      assert.equal(c.livenessProbe.grpc.service, 'evgate.liveness', 'liveness stays SERVING while draining');
      assert.equal(c.startupProbe.grpc.service, 'evgate.liveness');
      assert.equal(c.readinessProbe.grpc.service, '', 'readiness turns NOT_SERVING when a drain starts');
      assert.notEqual(c.livenessProbe.grpc.service, c.readinessProbe.grpc.service);
    });
  }

  test('probes are tunable and can be turned off', async () => {
    const docs = await renderWith({
      files: ['minimal.yaml'],
      objs: [{ probes: { startup: { enabled: false }, liveness: { periodSeconds: 7, failureThreshold: 9 } } }],
    });
    const c = container(docs);
    assert.equal(c.startupProbe, undefined);
    assert.equal(c.livenessProbe.periodSeconds, 7);
    assert.equal(c.livenessProbe.failureThreshold, 9);
  });
});

// ---------------------------------------------------------------------------------------------
describe('security', () => {
  for (const file of valueFiles) {
    test(`${file}: non-root, read-only root, no privilege escalation, all capabilities dropped, seccomp`, async () => {
      const docs = await renderWith({ files: [file] });
      const pod = podSpec(docs);
      const c = container(docs);
      assert.equal(pod.securityContext.runAsNonRoot, true);
      assert.equal(pod.securityContext.runAsUser, 10001);
      assert.equal(pod.securityContext.runAsGroup, 10001);
      assert.equal(pod.securityContext.fsGroup, 10001);
      assert.deepEqual(pod.securityContext.seccompProfile, { type: 'RuntimeDefault' });
      assert.equal(pod.automountServiceAccountToken, false);
      assert.equal(c.securityContext.allowPrivilegeEscalation, false);
      assert.equal(c.securityContext.readOnlyRootFilesystem, true);
      assert.equal(c.securityContext.privileged, false);
      assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
      const lowPorts = YAML.parse(fs.readFileSync(vf(file), 'utf8'))?.securityContext?.bindLowPorts === true;
      if (lowPorts) {
        assert.deepEqual(c.securityContext.capabilities.add, ['NET_BIND_SERVICE']);
      } else {
        assert.equal(c.securityContext.capabilities.add, undefined, 'no capability added without bindLowPorts');
        assert.equal(pod.securityContext.sysctls, undefined);
      }
      // Everything evgate writes is on a volume.
      const mounts = c.volumeMounts.map((m) => m.mountPath);
      assert.ok(mounts.includes('/tmp'));
      assert.ok(mounts.includes('/var/lib/evgate'));
    });
  }

  test('bindLowPorts adds NET_BIND_SERVICE and the unprivileged-port sysctl', async () => {
    const docs = await renderWith({ files: ['full.yaml'] });
    assert.deepEqual(container(docs).securityContext.capabilities, { add: ['NET_BIND_SERVICE'], drop: ['ALL'] });
    assert.deepEqual(podSpec(docs).securityContext.sysctls, [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }]);
  });

  test('a listener below port 1024 without bindLowPorts is refused', async () => {
    await renderFails(
      { files: ['minimal.yaml'], objs: [{ config: { listeners: [{ name: 'https', bind: '0.0.0.0:443', cluster: 'backends' }] } }] },
      /below 1024.*bindLowPorts/s,
    );
  });

  test('the admin API is never open by default: no token and no mTLS fails unless admin.insecure', async () => {
    await renderFails({ files: ['minimal.yaml'], objs: [{ admin: { token: { enabled: false } } }] }, /admin\.token\.enabled=true or admin\.tls\.clientCA\.enabled=true/);
    const docs = await renderWith({ files: ['minimal.yaml'], objs: [{ admin: { token: { enabled: false }, insecure: true } }] });
    assert.equal(evgateYaml(docs).admin.insecure, true);
    assert.equal(evgateYaml(docs).admin.token_file, undefined);
    assert.equal(ofKind(docs, 'Secret').length, 0);
    const mtls = await renderWith({
      files: ['minimal.yaml'],
      objs: [{ admin: { token: { enabled: false }, tls: { enabled: true, secretName: 's', clientCA: { enabled: true } } } }],
    });
    assert.equal(evgateYaml(mtls).admin.tls.client_ca_file, '/var/run/secrets/evgate/client-ca/ca.crt');
    assert.equal(podSpec(mtls).volumes.find((v) => v.name === 'admin-client-ca').secret.secretName, 's', 'CA from the TLS Secret by default');
  });

  test('a generated token: 48 printable characters in the chart Secret under key "token"', async () => {
    const docs = await renderWith({ files: ['defaults.yaml'] });
    const token = Buffer.from(one(docs, 'Secret').data.token, 'base64').toString();
    assert.match(token, /^[A-Za-z0-9]{48}$/);
    assert.equal(podSpec(docs).volumes.find((v) => v.name === 'admin-token').secret.secretName, 'rel-evgate-admin-token');
  });

  test('admin.existingSecret: no Secret rendered, the pods mount the named one', async () => {
    const docs = await renderWith({ files: ['daemonset.yaml'] });
    assert.equal(ofKind(docs, 'Secret').length, 0);
    const vol = podSpec(docs).volumes.find((v) => v.name === 'admin-token');
    assert.equal(vol.secret.secretName, 'evgate-admin-credentials');
    assert.deepEqual(vol.secret.items, [{ key: 'token', path: 'token' }]);
  });
});

// ---------------------------------------------------------------------------------------------
describe('shutdown', () => {
  for (const file of valueFiles) {
    test(`${file}: preStop sleep, then SIGTERM drains within the grace period`, async () => {
      const docs = await renderWith({ files: [file] });
      const c = container(docs);
      const cmd = c.lifecycle.preStop.exec.command;
      assert.equal(cmd[0], '/bin/sleep');
      assert.equal(cmd.length, 2);
      const sleep = Number(cmd[1]);
      assert.ok(sleep >= 1);
      const drain = durationSeconds(evgateYaml(docs).drain_timeout);
      const grace = podSpec(docs).terminationGracePeriodSeconds;
      assert.ok(grace > sleep + drain, `grace ${grace} > preStop ${sleep} + drain ${drain}`);
    });
  }

  test('defaults: sleep 5 s, drain 30 s, grace 45 s', async () => {
    const docs = await renderWith({ files: ['defaults.yaml'] });
    assert.deepEqual(container(docs).lifecycle.preStop.exec.command, ['/bin/sleep', '5']);
    assert.equal(podSpec(docs).terminationGracePeriodSeconds, 45);
  });

  test('the computed grace period follows drain_timeout, rounded up', async () => {
    const cases = [['2m', 5 + 120 + 10], ['500ms', 5 + 1 + 10], ['1.5s', 5 + 2 + 10], [0, 5 + 0 + 10]];
    for (const [drain, grace] of cases) {
      const docs = await renderWith({ objs: [{ config: { drain_timeout: drain } }] });
      assert.equal(podSpec(docs).terminationGracePeriodSeconds, grace, `drain_timeout ${drain}`);
    }
  });

  test('a grace period that does not cover preStop + drain is refused', async () => {
    await renderFails({ objs: [{ shutdown: { terminationGracePeriodSeconds: 35 } }] }, /terminationGracePeriodSeconds \(35\) must be larger/);
    const docs = await renderWith({ objs: [{ shutdown: { terminationGracePeriodSeconds: 36 } }] });
    assert.equal(podSpec(docs).terminationGracePeriodSeconds, 36);
  });
});

// ---------------------------------------------------------------------------------------------
describe('what rolls the pods', () => {
  const base = YAML.parse(fs.readFileSync(vf('full.yaml'), 'utf8'));
  const variant = (mutate) => {
    const v = structuredClone(base);
    mutate(v);
    return v;
  };
  const template = (docs) => workload(docs).spec.template;

  // Changes evgate applies in place (config_watch): the ConfigMap changes, the pod template does not.
  const live = {
    'a listener limit': (v) => { v.config.listeners[0].max_connections = 501; },
    'a listener timeout and allow list': (v) => { v.config.listeners[0].idle_timeout = '20m'; v.config.listeners[0].allow = ['10.0.0.0/8']; },
    'a listener cluster': (v) => { v.config.listeners[1].cluster = 'db'; },
    'cluster endpoints': (v) => { v.config.clusters[0].endpoints = ['10.0.0.12:9000']; },
    'a new cluster': (v) => { v.config.clusters.push({ name: 'extra', endpoints: ['10.0.9.9:1'] }); },
    'pausing a listener': (v) => { v.config.listeners[0].paused = true; },
  };
  // Changes evgate cannot take in place: the pod template changes.
  const restart = {
    'the admin port': (v) => { v.admin.port = 9911; },
    'the admin token': (v) => { v.admin.token.value = 'another-admin-token'; },
    'the read-only token': (v) => { v.admin.readOnlyToken.value = 'another-read-only-token'; },
    'the TLS Secret': (v) => { v.admin.tls.secretName = 'other-tls'; },
    'the metrics port': (v) => { v.metrics.port = 9912; },
    'the health port': (v) => { v.health = { port: 9913 }; },
    workers: (v) => { v.config.workers = 3; },
    listener_sockets: (v) => { v.config.listener_sockets = 'per_worker'; },
    'the listener metrics detail': (v) => { v.metrics.listenerDetail = 'full'; },
    'the log level': (v) => { v.config.log.level = 'info'; },
    'the access log': (v) => { v.config.access_log = { mode: 'stdout' }; },
    'admin.max_watchers': (v) => { v.config.admin.max_watchers = 17; },
    'config_watch': (v) => { v.config.config_watch = false; },
  };

  test('rollOnChange false: live changes keep the pod template, change the ConfigMap', async () => {
    const before = await renderWith({ objs: [base] });
    assert.ok(podAnnotations(before)['checksum/restart']);
    assert.equal(podAnnotations(before)['checksum/config'], undefined);
    for (const [what, mutate] of Object.entries(live)) {
      const afterDocs = await renderWith({ objs: [variant(mutate)] });
      assert.deepEqual(template(afterDocs), template(before), `${what} must not roll the pods`);
      assert.notDeepEqual(evgateYaml(afterDocs), evgateYaml(before), `${what} reaches the ConfigMap`);
    }
  });

  test('rollOnChange false: changes that need a restart change checksum/restart', async () => {
    const before = await renderWith({ objs: [base] });
    const sum = podAnnotations(before)['checksum/restart'];
    for (const [what, mutate] of Object.entries(restart)) {
      const afterDocs = await renderWith({ objs: [variant(mutate)] });
      assert.notEqual(podAnnotations(afterDocs)['checksum/restart'], sum, `${what} must roll the pods`);
    }
  });

  test('the generated token does not make every render roll the pods', async () => {
    const a = await renderWith({ files: ['minimal.yaml'] });
    const b = await renderWith({ files: ['minimal.yaml'] });
    assert.deepEqual(template(a), template(b));
  });

  test('rollOnChange true: any configuration change rolls the pods (checksum/config)', async () => {
    const before = await renderWith({ objs: [variant((v) => { v.config.rollOnChange = true; })] });
    const sum = podAnnotations(before)['checksum/config'];
    assert.match(sum, /^[0-9a-f]{64}$/);
    assert.equal(podAnnotations(before)['checksum/restart'], undefined);
    for (const [what, mutate] of Object.entries({ ...live, ...restart })) {
      const afterDocs = await renderWith({ objs: [variant((v) => { v.config.rollOnChange = true; mutate(v); })] });
      assert.notEqual(podAnnotations(afterDocs)['checksum/config'], sum, `${what} must roll the pods`);
    }
  });

  test('podListenerPorts false: adding a listener keeps the pod template', async () => {
    const v0 = variant((v) => { v.podListenerPorts = false; });
    const v1 = variant((v) => { v.podListenerPorts = false; v.config.listeners.push({ name: 'new', bind: '0.0.0.0:7000', cluster: 'db' }); });
    const a = await renderWith({ objs: [v0] });
    const b = await renderWith({ objs: [v1] });
    assert.deepEqual(template(b), template(a));
    assert.ok(one(b, 'Service', 'rel-evgate').spec.ports.some((p) => p.port === 7000), 'the Service gets the port');
  });
});

// ---------------------------------------------------------------------------------------------
describe('services', () => {
  test('no listeners: no listeners Service (a Service needs ports)', async () => {
    const docs = await renderWith({ files: ['defaults.yaml'] });
    assert.equal(docs.filter((d) => d.kind === 'Service' && d.metadata.name === 'rel-evgate').length, 0);
  });

  test('full.yaml: a LoadBalancer with mapped ports, externalTrafficPolicy and source ranges', async () => {
    const docs = await renderWith({ files: ['full.yaml'] });
    const svc = one(docs, 'Service', 'rel-evgate');
    assert.equal(svc.spec.type, 'LoadBalancer');
    assert.equal(svc.spec.externalTrafficPolicy, 'Local');
    assert.deepEqual(svc.spec.loadBalancerSourceRanges, ['203.0.113.0/24']);
    assert.equal(svc.metadata.annotations['service.beta.kubernetes.io/aws-load-balancer-type'], 'nlb');
    assert.deepEqual(
      svc.spec.ports.map(({ name, port, targetPort }) => ({ name, port, targetPort })),
      [
        { name: 'web', port: 80, targetPort: 8080 },
        { name: 'tls-passthrough', port: 443, targetPort: 443 },
        { name: 'postgres', port: 5432, targetPort: 5432 },
      ],
    );
    assert.equal(svc.spec.ports[2].appProtocol, 'postgresql');
    assert.deepEqual(svc.spec.selector, workload(docs).spec.selector.matchLabels);
  });

  test('daemonset.yaml: NodePort with a fixed nodePort', async () => {
    const docs = await renderWith({ files: ['daemonset.yaml'] });
    const svc = one(docs, 'Service', 'rel-evgate');
    assert.equal(svc.spec.type, 'NodePort');
    assert.equal(svc.spec.ports.find((p) => p.name === 'web').nodePort, 30080);
    assert.equal(workload(docs).kind, 'DaemonSet');
    assert.equal(workload(docs).spec.replicas, undefined);
    assert.equal(podSpec(docs).hostNetwork, true);
    assert.equal(podSpec(docs).dnsPolicy, 'ClusterFirstWithHostNet');
    assert.equal(podSpec(docs).topologySpreadConstraints, undefined);
    assert.equal(ofKind(docs, 'PodDisruptionBudget').length, 0, 'no PDB for a DaemonSet');
  });

  test('externalTrafficPolicy with a ClusterIP Service is refused', async () => {
    await renderFails({ files: ['minimal.yaml'], objs: [{ service: { externalTrafficPolicy: 'Local' } }] }, /NodePort and LoadBalancer/);
  });

  test('the admin Service is ClusterIP; the headless Service lists not-ready pods on the admin port', async () => {
    const docs = await renderWith({ files: ['minimal.yaml'] });
    const admin = one(docs, 'Service', 'rel-evgate-admin');
    assert.equal(admin.spec.type, 'ClusterIP');
    assert.deepEqual(admin.spec.ports.map((p) => [p.name, p.port, p.targetPort]), [['admin', 9901, 'admin']]);
    const headless = one(docs, 'Service', 'rel-evgate-headless');
    assert.equal(headless.spec.clusterIP, 'None');
    assert.equal(headless.spec.publishNotReadyAddresses, true);
    assert.ok(headless.spec.ports.some((p) => p.name === 'admin' && p.port === 9901));
    const metrics = one(docs, 'Service', 'rel-evgate-metrics');
    assert.deepEqual(metrics.spec.ports.map((p) => [p.name, p.port, p.targetPort]), [['metrics', 9902, 'metrics']]);
    for (const svc of [admin, headless, metrics]) {
      for (const p of svc.spec.ports) {
        assert.ok(container(docs).ports.some((cp) => cp.name === p.targetPort), `${svc.metadata.name} targets a named pod port`);
      }
    }
  });

  test('loopback and port-0 listeners are not exposed', async () => {
    const docs = await renderWith({
      files: ['minimal.yaml'],
      objs: [{ config: { listeners: [
        { name: 'web', bind: '0.0.0.0:8080', cluster: 'backends' },
        { name: 'local', bind: '127.0.0.1:7000', cluster: 'backends' },
        { name: 'local6', bind: '[::1]:7001', cluster: 'backends' },
        { name: 'any', bind: '0.0.0.0:0', cluster: 'backends' },
      ] } }],
    });
    assert.equal(evgateYaml(docs).listeners.length, 4, 'evgate runs them all');
    assert.deepEqual(one(docs, 'Service', 'rel-evgate').spec.ports.map((p) => p.name), ['web']);
    assert.deepEqual(container(docs).ports.map((p) => p.name), ['admin', 'metrics', 'health', 'web']);
  });

  test('two listeners that sanitize to one port name are refused with the value to set', async () => {
    await renderFails(
      {
        files: ['minimal.yaml'],
        objs: [{ config: { listeners: [
          { name: 'web_a', bind: '0.0.0.0:8080', cluster: 'backends' },
          { name: 'web.a', bind: '0.0.0.0:8081', cluster: 'backends' },
        ] } }],
      },
      /port name "web-a" is already used.*service\.ports\.web\.a\.name/s,
    );
  });
});

// ---------------------------------------------------------------------------------------------
describe('NetworkPolicy', () => {
  const ruleFor = (np, port) => np.spec.ingress.filter((r) => r.ports?.some((p) => p.port === port));

  test('defaults: admin only from the release\'s own pods, metrics from anywhere, Ingress only', async () => {
    const docs = await renderWith({ files: ['minimal.yaml'] });
    const np = one(docs, 'NetworkPolicy');
    assert.deepEqual(np.spec.policyTypes, ['Ingress']);
    assert.deepEqual(np.spec.podSelector.matchLabels, workload(docs).spec.selector.matchLabels);
    const [admin] = ruleFor(np, 9901);
    assert.deepEqual(admin.from, [{ podSelector: { matchLabels: workload(docs).spec.selector.matchLabels } }]);
    assert.equal(ruleFor(np, 9901).length, 1);
    const [metrics] = ruleFor(np, 9902);
    assert.equal(metrics.from, undefined, 'metrics from anywhere by default');
    const [listeners] = ruleFor(np, 8080);
    assert.equal(listeners.from, undefined, 'listeners from anywhere by default');
    assert.equal(ruleFor(np, 9903).length, 0, 'health: kubelet only');
    // No rule opens everything on every port.
    for (const r of np.spec.ingress) assert.ok(r.ports?.length > 0);
  });

  test('full.yaml: admin, metrics and listeners from the chosen peers', async () => {
    const docs = await renderWith({ files: ['full.yaml'] });
    const np = one(docs, 'NetworkPolicy');
    const [admin] = ruleFor(np, 9901);
    assert.equal(admin.ports.length, 1);
    assert.deepEqual(admin.from[1], {
      namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'platform-tools' } },
      podSelector: { matchLabels: { app: 'evgate-operator' } },
    });
    const [metrics] = ruleFor(np, 9902);
    assert.deepEqual(metrics.from, [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }]);
    const [listeners] = ruleFor(np, 8080);
    assert.deepEqual(listeners.ports.map((p) => p.port), [8080, 443, 5432]);
    assert.deepEqual(listeners.from, [{ ipBlock: { cidr: '10.0.0.0/8' } }, { ipBlock: { cidr: '203.0.113.0/24' } }]);
  });

  test('can be turned off', async () => {
    const docs = await renderWith({ files: ['autoscaling.yaml'] });
    assert.equal(ofKind(docs, 'NetworkPolicy').length, 0);
  });
});

// ---------------------------------------------------------------------------------------------
describe('scaling and disruption', () => {
  test('autoscaling.yaml: an autoscaling/v2 HPA on the Deployment, which leaves replicas to it', async () => {
    const docs = await renderWith({ files: ['autoscaling.yaml'] });
    const hpa = one(docs, 'HorizontalPodAutoscaler');
    assert.equal(hpa.apiVersion, 'autoscaling/v2');
    assert.deepEqual(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: 'rel-evgate' });
    assert.equal(hpa.spec.minReplicas, 3);
    assert.equal(hpa.spec.maxReplicas, 12);
    assert.deepEqual(hpa.spec.metrics.map((m) => [m.resource.name, m.resource.target.averageUtilization]), [['cpu', 60], ['memory', 80]]);
    assert.equal(workload(docs).spec.replicas, undefined);
    assert.ok(one(docs, 'PodDisruptionBudget'));
    assert.ok(podAnnotations(docs)['checksum/config']);
    assert.ok(!container(docs).ports.some((p) => p.name === 'web'), 'podListenerPorts false');
  });

  test('autoscaling with a StatefulSet or DaemonSet is refused', async () => {
    await renderFails({ objs: [{ kind: 'StatefulSet', autoscaling: { enabled: true } }] }, /Deployment only/);
  });

  test('persistence without a StatefulSet is refused', async () => {
    await renderFails({ objs: [{ persistence: { enabled: true } }] }, /needs kind StatefulSet/);
  });

  test('a single replica gets no PDB (it would block node drains); minAvailable wins when set', async () => {
    const single = await renderWith({ objs: [{ replicaCount: 1 }] });
    assert.equal(ofKind(single, 'PodDisruptionBudget').length, 0);
    const full = await renderWith({ files: ['full.yaml'] });
    const pdb = one(full, 'PodDisruptionBudget');
    assert.equal(pdb.spec.minAvailable, 2);
    assert.equal(pdb.spec.maxUnavailable, undefined);
    assert.deepEqual(pdb.spec.selector.matchLabels, workload(full).spec.selector.matchLabels);
  });

  test('pods spread over zones and nodes by default, softly', async () => {
    const docs = await renderWith({ files: ['minimal.yaml'] });
    const tsc = podSpec(docs).topologySpreadConstraints;
    assert.deepEqual(tsc.map((t) => [t.topologyKey, t.whenUnsatisfiable, t.maxSkew]), [
      ['topology.kubernetes.io/zone', 'ScheduleAnyway', 1],
      ['kubernetes.io/hostname', 'ScheduleAnyway', 1],
    ]);
    for (const t of tsc) assert.deepEqual(t.labelSelector.matchLabels, workload(docs).spec.selector.matchLabels);
  });

  test('full.yaml: scheduling values pass through', async () => {
    const docs = await renderWith({ files: ['full.yaml'] });
    const pod = podSpec(docs);
    assert.equal(pod.priorityClassName, 'system-cluster-critical');
    assert.deepEqual(pod.nodeSelector, { 'node-role.example.com/gateway': 'true' });
    assert.equal(pod.tolerations[0].key, 'dedicated');
    assert.ok(pod.affinity.nodeAffinity);
    assert.equal(pod.serviceAccountName, 'rel-evgate');
    assert.equal(one(docs, 'ServiceAccount').automountServiceAccountToken, false);
    assert.deepEqual(pod.imagePullSecrets, [{ name: 'registry-credentials' }]);
  });
});

// ---------------------------------------------------------------------------------------------
describe('monitoring', () => {
  const rules = YAML.parse(fs.readFileSync(path.join(root, 'deploy/prometheus/rules.yaml'), 'utf8'));
  const dashboard = JSON.parse(fs.readFileSync(path.join(root, 'deploy/grafana/evgate.json'), 'utf8'));

  test('the chart ships deploy/ files through symbolic links, not copies', () => {
    for (const [link, target] of [['files/rules.yaml', 'deploy/prometheus/rules.yaml'], ['files/evgate.json', 'deploy/grafana/evgate.json']]) {
      const p = path.join(chartDir, link);
      assert.ok(fs.lstatSync(p).isSymbolicLink(), `${link} is a symlink`);
      assert.equal(fs.realpathSync(p), fs.realpathSync(path.join(root, target)));
    }
  });

  test('with the Prometheus Operator API: a ServiceMonitor that sets job="evgate" on the metrics Service', async () => {
    const docs = await renderWith({ files: ['full.yaml'], api: true });
    const sm = one(docs, 'ServiceMonitor');
    const [ep] = sm.spec.endpoints;
    assert.equal(ep.port, 'metrics');
    assert.equal(ep.path, '/metrics');
    assert.equal(ep.interval, '10s');
    assert.deepEqual(ep.relabelings[0], { action: 'replace', targetLabel: 'job', replacement: 'evgate' });
    assert.equal(ep.relabelings[1].targetLabel, 'node', 'user relabelings come after');
    assert.equal(sm.metadata.labels.release, 'kube-prometheus-stack');
    // It selects the metrics Service, and only that one.
    const selected = ofKind(docs, 'Service').filter((s) =>
      Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => s.metadata.labels[k] === v));
    assert.deepEqual(selected.map((s) => s.metadata.name), ['rel-evgate-metrics']);
    assert.ok(selected[0].spec.ports.some((p) => p.name === ep.port));
    assert.deepEqual(sm.spec.namespaceSelector, { matchNames: [selected[0].metadata.namespace] });
  });

  test('PodMonitor instead, on the pods\' metrics port', async () => {
    const docs = await renderWith({ files: ['full.yaml'], objs: [{ metrics: { monitor: { kind: 'PodMonitor' } } }], api: true });
    assert.equal(ofKind(docs, 'ServiceMonitor').length, 0);
    const pm = one(docs, 'PodMonitor');
    assert.equal(pm.spec.podMetricsEndpoints[0].port, 'metrics');
    assert.deepEqual(pm.spec.podMetricsEndpoints[0].relabelings[0], { action: 'replace', targetLabel: 'job', replacement: 'evgate' });
    assert.deepEqual(pm.spec.selector.matchLabels, workload(docs).spec.selector.matchLabels);
    assert.deepEqual(validateDocs(docs), []);
  });

  test('the PrometheusRule is deploy/prometheus/rules.yaml', async () => {
    const docs = await renderWith({ files: ['full.yaml'], api: true });
    const pr = one(docs, 'PrometheusRule');
    assert.deepEqual(pr.spec, rules);
    assert.ok(pr.spec.groups.some((g) => g.rules.some((r) => r.alert === 'EvgateDown' && r.expr.includes('job="evgate"'))));
  });

  test('the dashboard ConfigMap holds deploy/grafana/evgate.json with the sidecar label', async () => {
    const docs = await renderWith({ files: ['full.yaml'] });
    const cm = one(docs, 'ConfigMap', 'rel-evgate-dashboard');
    assert.equal(cm.metadata.labels.grafana_dashboard, '1');
    assert.equal(cm.metadata.namespace, 'monitoring');
    assert.equal(cm.metadata.annotations.grafana_folder, 'Networking');
    assert.deepEqual(JSON.parse(cm.data['evgate.json']), dashboard);
  });

  test('without the API: no ServiceMonitor, PodMonitor or PrometheusRule, even when enabled', async () => {
    const docs = await renderWith({ files: ['full.yaml'], api: false });
    for (const kind of ['ServiceMonitor', 'PodMonitor', 'PrometheusRule']) assert.equal(ofKind(docs, kind).length, 0, kind);
    assert.ok(one(docs, 'ConfigMap', 'rel-evgate-dashboard'), 'the dashboard needs no operator');
  });

  test('off by default, with or without the API', async () => {
    const docs = await renderWith({ files: ['defaults.yaml'], api: true });
    for (const kind of ['ServiceMonitor', 'PodMonitor', 'PrometheusRule']) assert.equal(ofKind(docs, kind).length, 0, kind);
    assert.equal(docs.filter((d) => d.metadata.name === 'rel-evgate-dashboard').length, 0);
  });
});

// ---------------------------------------------------------------------------------------------
describe('values schema', () => {
  test('a misspelt top-level key fails helm template', async () => {
    await renderFails({ objs: [{ replicas: 3 }] }, /replicas/);
    await renderFails({ files: ['defaults.yaml'], set: { wrkers: 1 } }, /wrkers/);
  });

  test('a misspelt key in a section or in a listener fails', async () => {
    await renderFails({ objs: [{ admin: { tokn: { enabled: true } } }] }, /tokn/);
    await renderFails({ objs: [{ config: { listeners: [{ name: 'web', bnd: '0.0.0.0:8080', cluster: 'c' }] } }] }, /bnd/);
    await renderFails({ objs: [{ config: { clusters: [{ name: 'c', endpoints: ['10.0.0.1:1'], lb: 'round_robbin' }] } }] }, /lb|round_robbin/);
  });

  test('keys the chart owns are not accepted in config', async () => {
    await renderFails({ objs: [{ config: { state_file: '/x' } }] }, /state_file/);
    await renderFails({ objs: [{ config: { admin: { address: '0.0.0.0:1' } } }] }, /address/);
    await renderFails({ objs: [{ config: { metrics: { address: '0.0.0.0:1' } } }] }, /metrics/);
  });

  test('wrong types and enums fail', async () => {
    await renderFails({ objs: [{ kind: 'ReplicaSet' }] }, /kind/);
    await renderFails({ objs: [{ config: { drain_timeout: '30 seconds' } }] }, /drain_timeout/);
    await renderFails({ objs: [{ service: { type: 'ExternalName' } }] }, /type/);
  });

  test('the schema is self-contained: no remote $ref', () => {
    const text = fs.readFileSync(path.join(chartDir, 'values.schema.json'), 'utf8');
    const schema = JSON.parse(text);
    assert.equal(schema.additionalProperties, false);
    for (const m of text.matchAll(/"\$ref":\s*"([^"]*)"/g)) assert.ok(m[1].startsWith('#/'), m[1]);
    // Every top-level value has a schema, and every schema'd key has a default in values.yaml.
    assert.deepEqual(Object.keys(chartValues).sort(), Object.keys(schema.properties).filter((k) => k !== 'global').sort());
  });
});

// ---------------------------------------------------------------------------------------------
describe('README', () => {
  const readme = fs.readFileSync(path.join(chartDir, 'README.md'), 'utf8');
  const rows = new Map();
  for (const line of readme.split('\n')) {
    const m = /^\| `([A-Za-z0-9_.]+)` \| ([^|]+) \| `(.*)` \| (.+) \|$/.exec(line);
    if (m) rows.set(m[1], { type: m[2].trim(), def: m[3], desc: m[4] });
  }

  test('the values table lists every key of values.yaml', () => {
    const missing = [];
    const walk = (node, prefix) => {
      for (const [k, v] of Object.entries(node)) {
        const p = prefix ? `${prefix}.${k}` : k;
        if (rows.has(p)) continue; // documented (a map documented as a whole stops here)
        if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0) walk(v, p);
        else missing.push(p);
      }
    };
    walk(chartValues, '');
    assert.deepEqual(missing, [], 'values.yaml keys missing from README.md\'s table');
  });

  test('every row of the table is a key of values.yaml with that default', () => {
    for (const [p, row] of rows) {
      let v = chartValues;
      for (const k of p.split('.')) {
        assert.ok(v && typeof v === 'object' && k in v, `README row ${p} is not in values.yaml`);
        v = v[k];
      }
      assert.deepEqual(JSON.parse(row.def), v, `README default of ${p}`);
      assert.ok(row.desc.trim().length > 10, `README description of ${p}`);
    }
  });

  test('every documented value has its comment in values.yaml', () => {
    // The table's descriptions come from the "# --" comment right above each key: a key that is
    // a table row must have one, so values.yaml and README.md say the same thing.
    const lines = fs.readFileSync(path.join(chartDir, 'values.yaml'), 'utf8').split('\n');
    const stack = [];
    const commented = new Map();
    lines.forEach((line, i) => {
      const m = /^(\s*)([A-Za-z_][\w.-]*):(\s|$)/.exec(line);
      if (!m) return;
      while (stack.length && stack[stack.length - 1].indent >= m[1].length) stack.pop();
      stack.push({ indent: m[1].length, key: m[2] });
      const c = /^\s*# -- (\S.*)$/.exec(lines[i - 1] ?? '');
      if (c) commented.set(stack.map((s) => s.key).join('.'), c[1]);
    });
    const uncommented = [...rows.keys()].filter((p) => !commented.has(p));
    assert.deepEqual(uncommented, [], 'table rows without a "# --" comment in values.yaml');
    for (const [p, row] of rows) {
      assert.equal(row.desc.replaceAll('&#124;', '|'), commented.get(p), `README description of ${p} = its values.yaml comment`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
describe('helm lint and package', () => {
  const helm = fs.existsSync(HELM) ? HELM : undefined;

  test('helm lint --strict with every values file', { skip: !helm && 'no helm binary (scripts/setup-k8s-tools.sh)' }, () => {
    for (const file of valueFiles) {
      runHelm(['lint', '--strict', chartDir, '-f', vf(file)]);
    }
  });

  test('helm package puts the linked rules and dashboard into the archive', { skip: !helm && 'no helm binary' }, () => {
    const out = fs.mkdtempSync(path.join(tmp, 'pkg-'));
    runHelm(['package', chartDir, '-d', out]);
    const [tgz] = fs.readdirSync(out).filter((f) => f.endsWith('.tgz'));
    execFileSync('tar', ['-xzf', path.join(out, tgz), '-C', out]);
    const packed = path.join(out, 'evgate');
    assert.ok(!fs.lstatSync(path.join(packed, 'files/rules.yaml')).isSymbolicLink());
    assert.equal(fs.readFileSync(path.join(packed, 'files/rules.yaml'), 'utf8'), fs.readFileSync(path.join(root, 'deploy/prometheus/rules.yaml'), 'utf8'));
    assert.equal(fs.readFileSync(path.join(packed, 'files/evgate.json'), 'utf8'), fs.readFileSync(path.join(root, 'deploy/grafana/evgate.json'), 'utf8'));
    // The packaged chart renders the same objects as the source tree.
    const docs = runHelm(['template', 'rel', path.join(out, tgz), '--kube-version', KUBE, '--api-versions', MONITORING, '-f', vf('full.yaml')]);
    const rule = YAML.parseAllDocuments(docs).map((d) => d.toJS()).find((d) => d?.kind === 'PrometheusRule');
    assert.deepEqual(rule.spec, YAML.parse(fs.readFileSync(path.join(root, 'deploy/prometheus/rules.yaml'), 'utf8')));
  });

  test('NOTES.txt shows how to reach the admin API and the metrics', { skip: !helm && 'no helm binary' }, () => {
    const out = runHelm(['install', 'rel', chartDir, '--dry-run=client', '--namespace', 'default', '-f', vf('full.yaml')]);
    const notes = out.slice(out.indexOf('NOTES:'));
    assert.match(notes, /kubectl -n default exec statefulset\/rel-evgate -- evgatectl --address 127\.0\.0\.1:9901 --token-file \/var\/run\/secrets\/evgate\/admin\/token/);
    assert.match(notes, /evgatectl --fanout --address rel-evgate-headless\.default\.svc:9901/);
    assert.match(notes, /port-forward statefulset\/rel-evgate 9902:9902/);
    assert.match(notes, /does not\s+serve monitoring\.coreos\.com\/v1/, 'warns that the monitors were left out');
  });
});
