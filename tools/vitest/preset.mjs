// @ts-check
/**
 * The vitest settings every project shares. Each run also writes a JSON report to
 * `reports/vitest/<package name>.json` at the repo root; `tools/run-tests.mjs` adds those up into
 * the one summary line CI prints (Nx caches the file as the test target's output).
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * @param {string} configUrl the project's `import.meta.url` in its vitest.config.ts
 * @param {import('vitest/config').ViteUserConfig['test']} [overrides]
 * @returns {import('vitest/config').ViteUserConfig}
 */
export function projectConfig(configUrl, overrides = {}) {
  const root = dirname(fileURLToPath(configUrl));
  // Nx names projects after their package.json `name`; the report file follows it.
  const name = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).name;
  const report = join(repoRoot, 'reports', 'vitest', `${name}.json`);
  return {
    test: {
      include: ['src/**/*.test.ts', '*.test.ts', 'test/**/*.test.ts'],
      // Benchmarks run with `--reporter=default` (package "bench" scripts) so that they do not
      // overwrite these test counts.
      reporters: ['default', ['json', { outputFile: report }]],
      benchmark: { include: ['bench/**/*.bench.ts'] },
      // Many tests start real programs (registries, skopeo, dockerd): on a busy 2-core machine a
      // process start alone can take seconds. Generous bounds, never a timing assertion.
      testTimeout: 30_000,
      hookTimeout: 180_000,
      ...overrides,
    },
  };
}
