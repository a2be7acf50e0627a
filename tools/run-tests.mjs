#!/usr/bin/env node
// @ts-check
/**
 * Runs the whole suite (lint, typecheck, build, test for every project, through Nx) and ends
 * with the one line CI reads: `N passed, N failed[, N skipped]`, the counts vitest reported.
 * The counts come from the JSON report each project's test run writes (tools/vitest/preset.mjs),
 * which Nx restores on a cache hit, so a cached run reports the same numbers.
 *
 *   node tools/run-tests.mjs [extra nx run-many args...]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const reportsDir = join(repoRoot, 'reports', 'vitest');
const summaryFile = join(repoRoot, 'reports', 'test-summary.txt');

/**
 * Adds up vitest JSON reports.
 * @param {string} dir
 * @returns {{ passed: number, failed: number, skipped: number, files: string[] }}
 */
export function summarize(dir) {
  const totals = { passed: 0, failed: 0, skipped: 0, files: /** @type {string[]} */ ([]) };
  if (!existsSync(dir)) return totals;
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.json')) continue;
    const file = join(entry.parentPath, entry.name);
    const report = JSON.parse(readFileSync(file, 'utf8'));
    totals.passed += report.numPassedTests ?? 0;
    totals.failed += (report.numFailedTests ?? 0) + (report.numFailedTestSuites ?? 0);
    totals.skipped += (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
    totals.files.push(relative(dir, file));
  }
  totals.files.sort();
  return totals;
}

/** @param {{ passed: number, failed: number, skipped: number }} t */
export function summaryLine(t) {
  return `${t.passed} passed, ${t.failed} failed${t.skipped > 0 ? `, ${t.skipped} skipped` : ''}`;
}

/** The projects that have a test target, as Nx sees them. */
function projectsWithTests() {
  const out = spawnSync('nx', ['show', 'projects', '--with-target', 'test', '--json'], {
    cwd: repoRoot,
    encoding: 'utf8',
    env: nxEnv(),
  });
  if (out.status !== 0) throw new Error(`nx show projects failed: ${out.stderr}`);
  return /** @type {string[]} */ (JSON.parse(out.stdout)).sort();
}

function nxEnv() {
  return { ...process.env, NX_DAEMON: 'false', NX_NO_CLOUD: 'true', NX_TUI: 'false' };
}

function main() {
  rmSync(reportsDir, { recursive: true, force: true });
  const nx = spawnSync(
    'nx',
    [
      'run-many',
      '-t',
      'lint',
      'typecheck',
      'build',
      'test',
      '--outputStyle=stream',
      ...process.argv.slice(2),
    ],
    { cwd: repoRoot, stdio: 'inherit', env: nxEnv() },
  );
  const totals = summarize(reportsDir);
  const expected = projectsWithTests();
  const missing = expected.filter((p) => !totals.files.includes(`${p}.json`));
  if (missing.length > 0) {
    process.stderr.write(`run-tests: no test report from ${missing.join(', ')}\n`);
    totals.failed += missing.length;
  }
  const line = summaryLine(totals);
  mkdirSync(dirname(summaryFile), { recursive: true });
  writeFileSync(summaryFile, `${line}\n`);
  process.stdout.write(`${line}\n`);
  const ok = nx.status === 0 && totals.failed === 0 && totals.passed > 0;
  process.exit(ok ? 0 : 1);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
