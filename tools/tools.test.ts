import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkDependencies } from './check-deps.mjs';
import { parseList } from './debian-deps.mjs';
import { summarize, summaryLine } from './run-tests.mjs';

const temps: string[] = [];
afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'tools-test-'));
  temps.push(root);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

describe('run-tests summary', () => {
  it('adds up every vitest JSON report, failed suites counting as failures', () => {
    const root = tree({
      '@org/a.json': JSON.stringify({
        numPassedTests: 10,
        numFailedTests: 1,
        numPendingTests: 2,
        numTodoTests: 1,
      }),
      '@org/b.json': JSON.stringify({
        numPassedTests: 5,
        numFailedTests: 0,
        numFailedTestSuites: 1,
      }),
      'notes.txt': 'ignored',
    });
    const totals = summarize(root);
    expect(totals).toEqual({
      passed: 15,
      failed: 2,
      skipped: 3,
      files: ['@org/a.json', '@org/b.json'],
    });
    expect(summaryLine(totals)).toBe('15 passed, 2 failed, 3 skipped');
    expect(summaryLine({ passed: 4, failed: 0, skipped: 0 })).toBe('4 passed, 0 failed');
  });

  it('reads nothing from a folder that is not there', () => {
    expect(summarize(join(tmpdir(), 'no-such-reports-dir'))).toEqual({
      passed: 0,
      failed: 0,
      skipped: 0,
      files: [],
    });
  });
});

describe('check-deps', () => {
  const pkg = (name: string, deps: Record<string, string> = {}) =>
    JSON.stringify({ name, dependencies: deps, devDependencies: { '@org/tools': 'workspace:*' } });

  it('passes this repository', () => {
    expect(checkDependencies(join(import.meta.dirname, '..'))).toEqual([]);
  });

  it('finds upward, app, undeclared, deep and escaping imports; e2e/ may depend on apps', () => {
    const root = tree({
      'packages/registry-domains/package.json': pkg('@org/registry-domains', {
        '@org/registry-auth': 'workspace:*',
      }),
      'packages/registry-domains/src/index.ts':
        "import { x } from '@org/cloud-credentials';\nexport { x };\n",
      'packages/registry-auth/package.json': pkg('@org/registry-auth', {
        '@org/proxy': 'workspace:*',
      }),
      'packages/registry-auth/src/a.ts':
        "export { y } from '@org/registry-domains/src/reference.js';\nimport '../../proxy-core/src/x.js';\n",
      'packages/mystery/package.json': pkg('@org/mystery'),
      'apps/proxy/package.json': pkg('@org/proxy', { '@org/registry-auth': 'workspace:*' }),
      'apps/proxy/src/main.ts': "const m = await import('@org/registry-auth');\nvoid m;\n",
      'apps/proxy/src/main.test.ts':
        "import { startStandIn } from '@org/tools/stand-ins';\nvoid startStandIn;\n",
      'apps/proxy/src/other.test.ts': "import { x } from '@org/tools/internal.js';\nvoid x;\n",
      'tools/package.json': JSON.stringify({
        name: '@org/tools',
        exports: { './stand-ins': './stand-ins/index.ts' },
      }),
      'e2e/package.json': pkg('@org/e2e', { '@org/proxy': 'workspace:*' }),
      'e2e/test/run.test.ts':
        "import { startStandIn } from '@org/tools/stand-ins';\nimport { y } from '@org/registry-auth';\nvoid startStandIn;\nvoid y;\n",
    });
    const problems = checkDependencies(root);
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(
          /registry-domains: @org\/registry-domains may not depend on @org\/registry-auth/,
        ),
        expect.stringMatching(
          /index\.ts: imports @org\/cloud-credentials, which package\.json does not declare/,
        ),
        expect.stringMatching(/registry-auth: depends on the app @org\/proxy/),
        expect.stringMatching(
          /a\.ts: deep import @org\/registry-domains\/src\/reference\.js, which/,
        ),
        expect.stringMatching(
          /other\.test\.ts: deep import @org\/tools\/internal\.js, which @org\/tools does not export/,
        ),
        expect.stringMatching(
          /a\.ts: imports @org\/registry-domains, which package\.json does not declare/,
        ),
        expect.stringMatching(
          /a\.ts: relative import \.\.\/\.\.\/proxy-core\/src\/x\.js leaves packages\/registry-auth/,
        ),
        expect.stringMatching(/mystery: @org\/mystery is not in tools\/check-deps\.mjs ALLOWED/),
        expect.stringMatching(
          /e2e\/test\/run\.test\.ts: imports @org\/registry-auth, which package\.json does not declare/,
        ),
      ]),
    );
    expect(problems).toHaveLength(9);
    // e2e/ runs the apps' binaries: its dependency on an app is the point
    expect(problems.filter((p) => p.startsWith('e2e: depends on the app'))).toEqual([]);
    // main.test.ts imports a subpath that a declared package exports: fine
    expect(problems.filter((p) => p.includes('main.test.ts'))).toEqual([]);
  });
});

describe('debian-packages list', () => {
  it('reads names, skipping comments and blank lines', () => {
    expect(parseList('# header\n\nskopeo  # 3/7 client\ndocker-registry\n')).toEqual([
      'skopeo',
      'docker-registry',
    ]);
  });

  it('refuses anything that is not a package name', () => {
    expect(() => parseList('skopeo; rm -rf /\n')).toThrow(/not a Debian package name/);
  });
});
