import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  explainInstallFailure,
  NODE_VERSION,
  npmNetworkDefaults,
  readPins,
  satisfies,
  wanted,
} from './bootstrap.mjs';
import { freePort } from './stand-ins/registry.js';

const script = join(import.meta.dirname, 'bootstrap.mjs');
const temps: string[] = [];
afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

describe('satisfies', () => {
  const range = '^22.18.0 || >=24.11.0';
  it.each([
    ['v20.20.2', false],
    ['v22.17.9', false],
    ['v22.18.0', true],
    ['v22.99.0', true],
    ['v23.11.0', false],
    ['v24.10.0', false],
    ['v24.11.0', true],
    ['v26.1.0', true],
  ])('%s: %s', (version, expected) => {
    expect(satisfies(version, range)).toBe(expected);
  });

  it('refuses range syntax it does not understand rather than guessing', () => {
    expect(() => satisfies('v24.0.0', '~24.1.0')).toThrow(/unsupported engines term/);
  });
});

describe('wanted', () => {
  const pins = readPins();

  it('pins pnpm from packageManager and the engines range from package.json', () => {
    expect(pins.pnpm).toMatch(/^10\.\d+\.\d+$/);
    expect(pins.engines).toBe('^22.18.0 || >=24.11.0');
  });

  it('brings Node only when the system Node is too old', () => {
    expect(wanted(pins, 'v20.20.2')).toEqual({ pnpm: pins.pnpm, node: NODE_VERSION });
    expect(wanted(pins, 'v24.11.0')).toEqual({ pnpm: pins.pnpm });
    expect(satisfies(NODE_VERSION, pins.engines)).toBe(true);
  });
});

describe('explainInstallFailure', () => {
  it('reduces an unreachable registry to one line naming it', () => {
    const out =
      'npm error code ECONNREFUSED\nnpm error FetchError: request to http://127.0.0.1:9/pnpm failed, reason: connect ECONNREFUSED\n';
    const line = explainInstallFailure(out, 'pnpm@10.0.0');
    expect(line).toBe(
      'bootstrap: cannot reach the npm registry (http://127.0.0.1:9, ECONNREFUSED) to install pnpm@10.0.0; check the network or npm_config_registry',
    );
  });

  it('keeps the first meaningful npm error otherwise', () => {
    const out =
      'npm error code ETARGET\nnpm error notarget No matching version found for pnpm@99.0.0.\n';
    expect(explainInstallFailure(out, 'pnpm@99.0.0')).toBe(
      'bootstrap: npm could not install pnpm@99.0.0: notarget No matching version found for pnpm@99.0.0.',
    );
  });
});

describe('npmNetworkDefaults', () => {
  it('fails fast by default and lets the environment override each setting', () => {
    expect(npmNetworkDefaults({})).toContain('--fetch-retries=1');
    const tuned = npmNetworkDefaults({ npm_config_fetch_retries: '5' });
    expect(tuned.some((a) => a.startsWith('--fetch-retries'))).toBe(false);
    expect(tuned).toContain('--fetch-timeout=60000');
  });
});

describe('bootstrap.mjs', () => {
  it('fails with one clear line when the registry cannot be reached, leaving nothing behind', async () => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'bootstrap-'));
    temps.push(dir);
    const run = spawnSync(process.execPath, [script, 'path'], {
      encoding: 'utf8',
      env: {
        ...process.env,
        BOOTSTRAP_TOOLCHAIN_DIR: join(dir, 'toolchain'),
        npm_config_registry: `http://127.0.0.1:${port}/`,
        npm_config_cache: join(dir, 'npm-cache'),
        npm_config_fetch_retries: '0',
      },
      timeout: 120_000,
    });
    expect(run.status).toBe(1);
    const lines = run.stderr.trim().split('\n');
    expect(lines.at(-1)).toMatch(
      new RegExp(
        `^bootstrap: cannot reach the npm registry \\(http://127\\.0\\.0\\.1:${port}, ECONNREFUSED\\)`,
      ),
    );
    // the progress line, then the one error line
    expect(lines.filter((l) => !l.startsWith('bootstrap: installing'))).toHaveLength(1);
    expect(spawnSync('ls', ['-A', dir], { encoding: 'utf8' }).stdout.trim()).toBe('npm-cache');
  }, 60_000);

  it("is a no-op when the toolchain is complete (this repo's own)", () => {
    const check = spawnSync(process.execPath, [script, 'check'], { encoding: 'utf8' });
    expect(check.status).toBe(0);
    const again = spawnSync(process.execPath, [script, 'path'], { encoding: 'utf8' });
    expect(again.status).toBe(0);
    expect(again.stderr).toBe('');
    expect(again.stdout.trim()).toMatch(/\.toolchain\/node_modules\/\.bin$/);
  });

  it('runs a command with the toolchain first on PATH and passes its exit code through', () => {
    const run = spawnSync(
      process.execPath,
      [script, 'exec', '--', 'sh', '-c', 'command -v pnpm; exit 7'],
      {
        encoding: 'utf8',
      },
    );
    expect(run.status).toBe(7);
    expect(run.stdout.trim()).toMatch(/\.toolchain\/node_modules\/\.bin\/pnpm$/);
  });

  it('prints usage and exits 2 on bad arguments', () => {
    const run = spawnSync(process.execPath, [script, 'exec', 'pnpm'], { encoding: 'utf8' });
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/^usage:/);
  });
});
