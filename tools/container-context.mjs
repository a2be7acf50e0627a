// @ts-check
/**
 * Makes an app image's build context, so that `docker build` needs no network:
 *
 *   OUT/Dockerfile    APP/Dockerfile
 *   OUT/<dest>        each extra file the app names (the proxy: its default config.yaml)
 *   OUT/app/          `pnpm deploy --prod` of the app's package: package.json, dist/ and the
 *                     production node_modules, workspace packages copied in; type declarations
 *                     and tsbuildinfo files removed
 *
 * Each app's scripts/container-context.mjs calls this with its own directory and extra files;
 * run that one, after building the app: `node apps/<app>/scripts/container-context.mjs OUT`.
 *
 * pnpm 10 deploys without `inject-workspace-packages` only with `--legacy`; injecting would
 * change how every workspace package is linked for development, so this uses `--legacy`.
 * `--prefer-offline`: the store the workspace install filled is enough.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, lstatSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** @param {string} message @returns {never} */
function fail(message) {
  process.stderr.write(`container-context: ${message}\n`);
  process.exit(1);
}

/** Removes what only compilers and editors read; never follows symlinks. @param {string} dir */
function prune(dir) {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    const stat = lstatSync(path);
    if (stat.isDirectory()) prune(path);
    else if (stat.isFile() && /\.d\.[cm]?ts(\.map)?$|\.tsbuildinfo$/.test(entry)) rmSync(path);
  }
}

/**
 * @param {{ app: string, argv: readonly string[], extra?: ReadonlyArray<readonly [string, string]> }} options
 *   `app` the app's directory; `argv` the script's arguments (OUT_DIR); `extra` files to copy,
 *   `[path in the app, name in OUT]`
 */
export function containerContext({ app, argv, extra = [] }) {
  const out = argv[0];
  if (!out || argv.length > 1) fail('usage: container-context.mjs OUT_DIR');
  const target = resolve(out);
  if (existsSync(target) && readdirSync(target).length > 0)
    fail(`${target} is not empty; give a new or empty directory`);
  const name = JSON.parse(readFileSync(join(app, 'package.json'), 'utf8')).name;
  if (!existsSync(join(app, 'dist', 'main.js')))
    fail(`${relative(repo, app)}/dist/main.js is missing; run \`pnpm nx run ${name}:build\` first`);

  // bootstrap exec: the pnpm that packageManager pins, whatever is on PATH
  execFileSync(
    process.execPath,
    [
      join(repo, 'tools', 'bootstrap.mjs'),
      'exec',
      '--',
      'pnpm',
      '--filter',
      name,
      'deploy',
      '--legacy',
      '--prod',
      '--prefer-offline',
      '--config.reporter=silent',
      join(target, 'app'),
    ],
    { cwd: repo, stdio: ['ignore', 'ignore', 'inherit'] },
  );
  prune(join(target, 'app'));
  copyFileSync(join(app, 'Dockerfile'), join(target, 'Dockerfile'));
  for (const [from, to] of extra) copyFileSync(join(app, from), join(target, to));

  // the deployed app loads on this machine's Node (the image checks again on its own)
  execFileSync(process.execPath, [join(target, 'app', 'dist', 'main.js'), '--help'], {
    stdio: 'ignore',
  });
  process.stdout.write(`${target}\n`);
}
