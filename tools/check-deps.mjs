#!/usr/bin/env node
// @ts-check
/**
 * Enforces the dependency direction of ARCHITECTURE.md: apps -> packages, packages only on the
 * packages below them, never on apps (only the end-to-end project, e2e/, depends on apps, to
 * run their built binaries); every `@org/*` import declared in package.json; no deep imports
 * into another package; no relative import that leaves its project.
 *
 *   node tools/check-deps.mjs [repo root]     prints one line per violation, exits 1 if any
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Which workspace packages each package may depend on (directly). */
export const ALLOWED = /** @type {const} */ ({
  '@org/registry-domains': [],
  '@org/cloud-credentials': ['@org/registry-domains'],
  '@org/registry-auth': ['@org/cloud-credentials', '@org/registry-domains'],
  '@org/auth-plugins': ['@org/registry-domains'],
  '@org/proxy-core': [
    '@org/auth-plugins',
    '@org/registry-auth',
    '@org/cloud-credentials',
    '@org/registry-domains',
  ],
  '@org/cri-image-service': [
    '@org/registry-auth',
    '@org/cloud-credentials',
    '@org/registry-domains',
  ],
  '@org/kubelet-patch': ['@org/registry-domains'],
});

const IMPORT =
  /(?:^|[^.\w])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|(?:^|[^.\w])import\s*\(\s*['"]([^'"]+)['"]\s*\)|(?:^|[^.\w])import\s*['"]([^'"]+)['"]/gm;

/**
 * @param {string} root
 * @returns {string[]} violations
 */
export function checkDependencies(root) {
  /** @type {string[]} */
  const problems = [];
  /** @type {Map<string, { dir: string, kind: 'package' | 'app' | 'e2e', pkg: any }>} */
  const projects = new Map();
  /** Subpaths each workspace package exports (`./stand-ins`), for the deep-import rule. */
  /** @type {Map<string, Set<string>>} */
  const exported = new Map();
  for (const kind of /** @type {const} */ (['package', 'app'])) {
    const base = join(root, `${kind}s`);
    if (!existsSync(base)) continue;
    for (const name of readdirSync(base)) {
      const file = join(base, name, 'package.json');
      if (!existsSync(file)) continue;
      const pkg = JSON.parse(readFileSync(file, 'utf8'));
      projects.set(pkg.name, { dir: join(base, name), kind, pkg });
      exported.set(pkg.name, new Set(Object.keys(pkg.exports ?? {})));
    }
  }
  const e2eFile = join(root, 'e2e', 'package.json');
  if (existsSync(e2eFile)) {
    const pkg = JSON.parse(readFileSync(e2eFile, 'utf8'));
    projects.set(pkg.name, { dir: join(root, 'e2e'), kind: 'e2e', pkg });
  }
  const toolsFile = join(root, 'tools', 'package.json');
  if (existsSync(toolsFile)) {
    const tools = JSON.parse(readFileSync(toolsFile, 'utf8'));
    exported.set(tools.name, new Set(Object.keys(tools.exports ?? {})));
  }
  for (const [name, { dir, kind, pkg }] of projects) {
    const rel = relative(root, dir);
    const declared = new Set(
      ['dependencies', 'devDependencies', 'peerDependencies', 'optionalDependencies'].flatMap(
        (field) => Object.keys(pkg[field] ?? {}),
      ),
    );
    /** @type {readonly string[] | undefined} */
    const allowed =
      kind === 'package' ? ALLOWED[/** @type {keyof typeof ALLOWED} */ (name)] : undefined;
    if (kind === 'package' && allowed === undefined) {
      problems.push(
        `${rel}: ${name} is not in tools/check-deps.mjs ALLOWED; add it with its place in ARCHITECTURE.md`,
      );
      continue;
    }
    for (const dep of declared) {
      const target = projects.get(dep);
      if (!target) continue;
      if (target.kind === 'app' && kind !== 'e2e')
        problems.push(`${rel}: depends on the app ${dep}; nothing depends on apps but e2e/`);
      else if (allowed && !allowed.includes(dep)) {
        problems.push(
          `${rel}: ${name} may not depend on ${dep} (allowed: ${allowed.join(', ') || 'none'})`,
        );
      }
    }
    for (const file of sourceFiles(dir)) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(IMPORT)) {
        const spec = m[1] ?? m[2] ?? m[3] ?? '';
        const where = `${relative(root, file)}`;
        if (spec.startsWith('@org/')) {
          const [scope, base, ...rest] = spec.split('/');
          const target = `${scope}/${base}`;
          if (rest.length > 0 && !exported.get(target)?.has(`./${rest.join('/')}`)) {
            problems.push(`${where}: deep import ${spec}, which ${target} does not export`);
          }
          if (target !== name && !declared.has(target)) {
            problems.push(`${where}: imports ${target}, which package.json does not declare`);
          }
        } else if (spec.startsWith('.')) {
          const resolved = resolve(dirname(file), spec);
          if (!resolved.startsWith(dir + sep) && !isSharedConfig(root, file, resolved)) {
            problems.push(`${where}: relative import ${spec} leaves ${rel}`);
          }
        }
      }
    }
  }
  return problems;
}

/** vitest configs may use the shared preset in tools/vitest. */
function isSharedConfig(
  /** @type {string} */ root,
  /** @type {string} */ file,
  /** @type {string} */ target,
) {
  return (
    /vitest\.config\.[cm]?ts$/.test(file) && target.startsWith(join(root, 'tools', 'vitest') + sep)
  );
}

/** @param {string} dir @returns {string[]} */
function sourceFiles(dir) {
  /** @type {string[]} */
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === 'node_modules' || entry.name === 'dist') continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(path));
    else if (/\.(?:[cm]?ts|[cm]?js|tsx)$/.test(entry.name) && !entry.name.endsWith('.d.ts'))
      out.push(path);
  }
  return out;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), '..'));
  const problems = checkDependencies(root);
  for (const p of problems) process.stderr.write(`check-deps: ${p}\n`);
  process.exit(problems.length > 0 ? 1 : 0);
}
