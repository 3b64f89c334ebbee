// Every values file in tests/helm/values/ (and the chart's defaults): `helm lint --strict` passes,
// and `helm template` renders manifests the strict schemas accept.
//
//   node --test tests/helm/values.test.mjs
//
// EVGATE_API_VERSIONS (comma separated, e.g. monitoring.coreos.com/v1) is passed to helm as
// --api-versions, EVGATE_KUBE_VERSION (default 1.31.0) as --kube-version; CTest runs this file
// once without and once with the Prometheus Operator's API.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, existsSync } from 'node:fs';
import path from 'node:path';
import { CHART, DEFAULT_KUBE_VERSION, helm, render, validateDocs } from './render.mjs';

const here = path.dirname(new URL(import.meta.url).pathname);
const valuesDir = path.join(here, 'values');
const apiVersions = (process.env.EVGATE_API_VERSIONS || '').split(',').map((s) => s.trim()).filter(Boolean);
const kubeVersion = DEFAULT_KUBE_VERSION;
const files = existsSync(valuesDir)
  ? readdirSync(valuesDir).filter((f) => f.endsWith('.yaml') || f.endsWith('.yml')).sort()
  : [];
const cases = [['(chart defaults)', []], ...files.map((f) => [f, [path.join(valuesDir, f)]])];
const api = apiVersions.length ? ` --api-versions ${apiVersions.join(',')}` : '';

for (const [name, values] of cases) {
  test(`${name}: helm lint --strict --kube-version ${kubeVersion}`, () => {
    const args = ['lint', '--strict', CHART, '--kube-version', kubeVersion];
    for (const v of values) args.push('--values', v);
    helm(args);   // throws with helm's output when lint fails
  });

  test(`${name}: helm template --kube-version ${kubeVersion}${api} validates`, () => {
    const docs = render({ values, apiVersions, kubeVersion });
    assert.ok(docs.length > 0, 'rendered no manifest');
    assert.deepEqual(validateDocs(docs), []);
    if (apiVersions.includes('monitoring.coreos.com/v1')) return;
    const monitoring = docs.filter((d) => d.apiVersion?.startsWith('monitoring.coreos.com/'));
    assert.deepEqual(monitoring.map((d) => `${d.kind}/${d.metadata?.name}`), [],
                     'Prometheus Operator objects rendered although the cluster does not have its API');
  });
}
