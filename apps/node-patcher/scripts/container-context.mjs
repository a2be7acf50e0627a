#!/usr/bin/env node
// @ts-check
/**
 * Makes the node-patcher image's build context, so that `docker build` needs no network:
 *
 *   OUT/Dockerfile    apps/node-patcher/Dockerfile
 *   OUT/app/          `pnpm deploy --prod` of @org/node-patcher-app: package.json, dist/ and
 *                     the production node_modules, workspace packages copied in; type
 *                     declarations and tsbuildinfo files removed
 *
 * usage: node apps/node-patcher/scripts/container-context.mjs OUT   (after building the app)
 *
 * The same steps as the proxy's context (apps/proxy/scripts/container-context.mjs): `--legacy`
 * because pnpm 10 deploys without `inject-workspace-packages` only that way, `--prefer-offline`
 * because the store the workspace install filled is enough.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, lstatSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const app = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const repo = resolve(app, '..', '..');

/** @param {string} message @returns {never} */
function fail(message) {
  process.stderr.write(`container-context: ${message}\n`);
  process.exit(1);
}

const out = process.argv[2];
if (!out || process.argv.length > 3) fail('usage: container-context.mjs OUT_DIR');
const target = resolve(out);
if (existsSync(target) && readdirSync(target).length > 0)
  fail(`${target} is not empty; give a new or empty directory`);
if (!existsSync(join(app, 'dist', 'main.js')))
  fail('apps/node-patcher/dist/main.js is missing; run `pnpm nx run @org/node-patcher-app:build`');

execFileSync(
  process.execPath,
  [
    join(repo, 'tools', 'bootstrap.mjs'),
    'exec',
    '--',
    'pnpm',
    '--filter',
    '@org/node-patcher-app',
    'deploy',
    '--legacy',
    '--prod',
    '--prefer-offline',
    '--config.reporter=silent',
    join(target, 'app'),
  ],
  { cwd: repo, stdio: ['ignore', 'ignore', 'inherit'] },
);

/** Removes what only compilers and editors read; never follows symlinks. @param {string} dir */
function prune(dir) {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    const stat = lstatSync(path);
    if (stat.isDirectory()) prune(path);
    else if (stat.isFile() && /\.d\.[cm]?ts(\.map)?$|\.tsbuildinfo$/.test(entry)) rmSync(path);
  }
}
prune(join(target, 'app'));
copyFileSync(join(app, 'Dockerfile'), join(target, 'Dockerfile'));

// the deployed app loads on this machine's Node (the image checks again on its own)
execFileSync(process.execPath, [join(target, 'app', 'dist', 'main.js'), '--help'], {
  stdio: 'ignore',
});
process.stdout.write(`${target}\n`);
