import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as api from './index.js';

const readme = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');

describe('README', () => {
  it.each(Object.keys(api))('documents %s', (name) => {
    expect(readme).toMatch(new RegExp(`\\b${name}\\b`));
  });

  it('has a section with an example for every function', () => {
    const functions = Object.entries(api)
      .filter(
        ([name, value]) => typeof value === 'function' && !/Error$|^ImageReference$/.test(name),
      )
      .map(([name]) => name);
    const sections = readme.split(/^## /m).slice(1);
    for (const name of functions) {
      const section = sections.find((s) => s.split('\n')[0]?.includes(name));
      expect(section, `a "## ${name}" section`).toBeDefined();
      expect(section, `an example calling ${name}`).toMatch(
        new RegExp(`\`\`\`ts[\\s\\S]*\\b${name}\\(`),
      );
    }
  });
});
