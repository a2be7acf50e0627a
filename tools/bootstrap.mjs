#!/usr/bin/env node
// @ts-check
/**
 * Brings the toolchain this repository needs without touching anything global.
 *
 * Runs on any Node >= 20 with no dependencies. When the running Node does not satisfy the root
 * package.json `engines.node`, it installs the `node` package (pinned below) from the npm
 * registry into `<repo>/.toolchain`; it always provides the pnpm that `packageManager` pins the
 * same way. The install goes to a temporary folder that is renamed into place, so an
 * interrupted run leaves nothing half-installed, and a second run is a no-op.
 *
 *   node tools/bootstrap.mjs                 ensure the toolchain, print its bin folder
 *   node tools/bootstrap.mjs exec -- CMD...  ensure it, then run CMD with it first on PATH
 *   node tools/bootstrap.mjs check           exit 0 when the toolchain is complete, else 1
 *
 * Environment: BOOTSTRAP_TOOLCHAIN_DIR overrides the folder (tests use it).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The Node the toolchain installs when the system one is too old (containers use 24 too). */
export const NODE_VERSION = '24.21.0';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** @returns {{ engines: string, pnpm: string }} */
export function readPins(root = repoRoot) {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const engines = pkg.engines?.node;
  const pm = /^pnpm@(\d+\.\d+\.\d+)$/.exec(pkg.packageManager ?? '');
  if (typeof engines !== 'string' || !pm?.[1]) {
    throw new Error('package.json must set engines.node and packageManager "pnpm@X.Y.Z"');
  }
  return { engines, pnpm: pm[1] };
}

/** @param {string} v */
function parseVersion(v) {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(v.trim());
  if (!m) throw new Error(`not a version: ${v}`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
}

/** @param {number[]} a @param {number[]} b */
function compare(a, b) {
  for (let i = 0; i < 3; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) - (b[i] ?? 0);
  return 0;
}

/**
 * Whether `version` satisfies an engines range made of `||`-joined `^X.Y.Z` and `>=X.Y.Z`
 * terms (the only forms package.json uses; anything else is refused rather than guessed).
 * @param {string} version @param {string} range
 */
export function satisfies(version, range) {
  const v = parseVersion(version);
  return range.split('||').some((term) => {
    const t = term.trim();
    const caret = /^\^(\d+\.\d+\.\d+)$/.exec(t);
    if (caret?.[1]) {
      const min = parseVersion(caret[1]);
      return v[0] === min[0] && compare(v, min) >= 0;
    }
    const gte = /^>=(\d+\.\d+\.\d+)$/.exec(t);
    if (gte?.[1]) return compare(v, parseVersion(gte[1])) >= 0;
    throw new Error(`unsupported engines term "${t}" (use ^X.Y.Z or >=X.Y.Z)`);
  });
}

/** @param {string} dir @param {string} name */
function installedVersion(dir, name) {
  try {
    return JSON.parse(readFileSync(join(dir, 'node_modules', name, 'package.json'), 'utf8'))
      .version;
  } catch {
    return undefined;
  }
}

/**
 * What the toolchain must hold for this machine.
 * @param {{ engines: string, pnpm: string }} pins @param {string} systemNode
 */
export function wanted(pins, systemNode) {
  /** @type {Record<string, string>} */
  const want = { pnpm: pins.pnpm };
  if (!satisfies(systemNode, pins.engines)) want.node = NODE_VERSION;
  return want;
}

/** @param {string} dir @param {Record<string, string>} want */
function isComplete(dir, want) {
  const bin = join(dir, 'node_modules', '.bin');
  return Object.entries(want).every(
    ([name, version]) => installedVersion(dir, name) === version && existsSync(join(bin, name)),
  );
}

/** The one line a failed install is reduced to. @param {string} output @param {string} what */
export function explainInstallFailure(output, what) {
  const code =
    /\b(ENOTFOUND|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EAI_AGAIN|ENETUNREACH|EHOSTUNREACH|ERR_SOCKET_TIMEOUT|CERT_\w+|UNABLE_TO_\w+)\b/.exec(
      output,
    )?.[1];
  const registry = /request to (\S+?) failed/.exec(output)?.[1];
  const where = registry ? new URL(registry).origin : 'the npm registry';
  if (code) {
    return `bootstrap: cannot reach the npm registry (${where}, ${code}) to install ${what}; check the network or npm_config_registry`;
  }
  const first = output
    .split('\n')
    .map((l) => l.replace(/^npm (error|ERR!)\s*/, '').trim())
    .find((l) => l && !/^code\b/.test(l));
  return `bootstrap: npm could not install ${what}: ${first ?? 'no output'}`;
}

/**
 * Installs what is missing and returns the bin folder to put first on PATH.
 * @param {{ dir?: string, quiet?: boolean }} [opts]
 */
export function ensureToolchain(opts = {}) {
  const dir = resolve(
    opts.dir ?? process.env.BOOTSTRAP_TOOLCHAIN_DIR ?? join(repoRoot, '.toolchain'),
  );
  const want = wanted(readPins(), process.version);
  const bin = join(dir, 'node_modules', '.bin');
  if (isComplete(dir, want)) return bin;

  const specs = Object.entries(want).map(([name, version]) => `${name}@${version}`);
  if (!opts.quiet) process.stderr.write(`bootstrap: installing ${specs.join(' ')} into ${dir}\n`);
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  writeFileSync(join(tmp, 'package.json'), `${JSON.stringify({ private: true }, null, 2)}\n`);
  const npm = spawnSync(
    'npm',
    [
      'install',
      '--prefix',
      tmp,
      '--no-audit',
      '--no-fund',
      '--no-save',
      '--ignore-scripts=false',
      '--loglevel=error',
      ...npmNetworkDefaults(process.env),
      ...specs,
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  if (npm.status !== 0 || !isComplete(tmp, want)) {
    rmSync(tmp, { recursive: true, force: true });
    const out = `${npm.error?.message ?? ''}\n${npm.stderr ?? ''}\n${npm.stdout ?? ''}`;
    throw new BootstrapError(explainInstallFailure(out, specs.join(' ')));
  }
  rmSync(dir, { recursive: true, force: true });
  try {
    renameSync(tmp, dir);
  } catch (err) {
    // Another bootstrap won the race; keep its result when it is complete.
    rmSync(tmp, { recursive: true, force: true });
    if (!isComplete(dir, want)) throw err;
  }
  return bin;
}

export class BootstrapError extends Error {
  /** @override */
  name = 'BootstrapError';
}

/**
 * Retry and timeout settings that fail an unreachable registry within seconds rather than
 * minutes; any of them set in the environment (`npm_config_fetch_retries`, ...) wins.
 * @param {NodeJS.ProcessEnv} env
 */
export function npmNetworkDefaults(env) {
  /** @type {Record<string, string>} */
  const defaults = {
    'fetch-retries': '1',
    'fetch-retry-mintimeout': '2000',
    'fetch-retry-maxtimeout': '10000',
    'fetch-timeout': '60000',
  };
  return Object.entries(defaults)
    .filter(([key]) => env[`npm_config_${key.replaceAll('-', '_')}`] === undefined)
    .map(([key, value]) => `--${key}=${value}`);
}

/** @param {string} bin @param {NodeJS.ProcessEnv} env */
export function withToolchainPath(bin, env = process.env) {
  return { ...env, PATH: [bin, env.PATH ?? ''].filter(Boolean).join(delimiter) };
}

/** @param {string[]} argv */
function main(argv) {
  const [command = 'path', ...rest] = argv;
  try {
    if (command === 'check') {
      const dir = process.env.BOOTSTRAP_TOOLCHAIN_DIR ?? join(repoRoot, '.toolchain');
      process.exit(isComplete(dir, wanted(readPins(), process.version)) ? 0 : 1);
    }
    const bin = ensureToolchain();
    if (command === 'path') {
      process.stdout.write(`${bin}\n`);
      return;
    }
    if (command !== 'exec' || rest[0] !== '--' || rest.length < 2) {
      process.stderr.write(
        'usage: node tools/bootstrap.mjs [path | check | exec -- CMD [ARGS...]]\n',
      );
      process.exit(2);
    }
    const [cmd = '', ...args] = rest.slice(1);
    const child = spawn(cmd, args, { stdio: 'inherit', env: withToolchainPath(bin) });
    for (const sig of /** @type {const} */ (['SIGINT', 'SIGTERM'])) {
      process.on(sig, () => child.kill(sig));
    }
    child.on('error', (err) => {
      process.stderr.write(`bootstrap: cannot run ${cmd}: ${err.message}\n`);
      process.exit(127);
    });
    child.on('exit', (code, signal) =>
      process.exit(code ?? 128 + (signal ? constants.signals[signal] : 0)),
    );
  } catch (err) {
    const message = err instanceof BootstrapError ? err.message : `bootstrap: ${String(err)}`;
    process.stderr.write(`${message.split('\n')[0]}\n`);
    process.exit(1);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2));
}
