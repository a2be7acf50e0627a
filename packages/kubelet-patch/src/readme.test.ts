import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as api from './index.js';

const readme = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');
const index = readFileSync(join(import.meta.dirname, 'index.ts'), 'utf8');

describe('README', () => {
  it.each(Object.keys(api))('documents %s', (name) => {
    expect(readme).toMatch(new RegExp(`\\b${name}\\b`));
  });

  it('documents every exported type', () => {
    const types = [...index.matchAll(/export type \{([^}]*)\}/g)].flatMap((m) =>
      (m[1] as string)
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    );
    expect(types.length).toBeGreaterThan(10);
    for (const name of types) expect(readme, name).toMatch(new RegExp(`\\b${name}\\b`));
  });

  it('has an example calling each entry point', () => {
    for (const name of [
      'detectLayout',
      'inspectKubeletConfig',
      'inspectContainerdConfig',
      'connectSystemd',
      'unitObjectPath',
    ]) {
      expect(readme, name).toMatch(new RegExp(`\`\`\`ts[^\`]*\\b${name}\\(`));
    }
  });
});
