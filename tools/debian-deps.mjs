#!/usr/bin/env node
// @ts-check
/**
 * Installs the Debian packages listed in tools/debian-packages.txt that are not installed yet
 * (`apt-get update` first, once). A no-op when all are present. Runs on any Node >= 20.
 *
 *   node tools/debian-deps.mjs [--check]     --check: list missing ones, exit 1 if any
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const listFile = join(dirname(fileURLToPath(import.meta.url)), 'debian-packages.txt');

/** Package names from the list's text: one per line, `#` starts a comment. @param {string} text */
export function parseList(text) {
  const names = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) continue;
    if (!/^[a-z0-9][a-z0-9+.-]+$/.test(line))
      throw new Error(`not a Debian package name: "${line}"`);
    names.push(line);
  }
  return names;
}

/** @param {string[]} names @returns {string[]} the ones dpkg does not have installed */
export function missingPackages(names) {
  return names.filter((name) => {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax
    const format = '-f=${Status}';
    const q = spawnSync('dpkg-query', ['-W', format, name], { encoding: 'utf8' });
    return q.status !== 0 || !q.stdout.includes('install ok installed');
  });
}

function main() {
  const missing = missingPackages(parseList(readFileSync(listFile, 'utf8')));
  if (missing.length === 0) return;
  if (process.argv.includes('--check')) {
    process.stdout.write(`${missing.join('\n')}\n`);
    process.exit(1);
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write(
      `debian-deps: missing ${missing.join(' ')}; run as root or install them\n`,
    );
    process.exit(1);
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  process.stderr.write(`debian-deps: installing ${missing.join(' ')}\n`);
  for (const args of [
    ['update', '-qq'],
    ['install', '-y', '-qq', '--no-install-recommends', ...missing],
  ]) {
    const r = spawnSync('apt-get', args, { stdio: ['ignore', 'inherit', 'inherit'], env });
    if (r.status !== 0) {
      process.stderr.write(`debian-deps: apt-get ${args[0]} failed (exit ${r.status})\n`);
      process.exit(1);
    }
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
