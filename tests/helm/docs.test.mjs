// The Kubernetes manifests shown in docs/deploy.md (every ```yaml block with an apiVersion) are
// valid under the same strict schemas as the chart's output, so a reader can apply them as
// written.
//
//   node --test tests/helm/docs.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { SOURCE_DIR, parseDocuments, validateDocs } from './render.mjs';

const doc = path.join(SOURCE_DIR, 'docs', 'deploy.md');
const blocks = [...readFileSync(doc, 'utf8').matchAll(/```yaml\n([\s\S]*?)```/g)]
  .map((match) => match[1])
  .filter((text) => /^apiVersion:/m.test(text));

test('docs/deploy.md shows at least one manifest', () => {
  assert.ok(blocks.length >= 1);
});

blocks.forEach((text, index) => {
  test(`docs/deploy.md manifest ${index + 1} is valid`, () => {
    const problems = validateDocs(parseDocuments(text, `${doc} manifest ${index + 1}`));
    assert.deepEqual(problems, []);
  });
});
