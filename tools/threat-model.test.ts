/**
 * docs/threat-model.md names the tests that cover each threat as `path: test name`; a renamed or
 * deleted test would leave a threat claimed covered by nothing, so each must exist.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const doc = readFileSync(join(root, 'docs', 'threat-model.md'), 'utf8');

/** Markdown wraps long names over lines. */
const oneLine = (text: string) => text.replace(/\s+/g, ' ').trim();

/** Every `path/to/file.test.ts: name` in backticks, and every name of a `file` (a; b; c) list. */
function references(text: string): { file: string; name: string }[] {
  const out: { file: string; name: string }[] = [];
  for (const m of text.matchAll(/`([\w./-]+\.test\.ts): ([^`]+)`(?:,\s+`([^`]+)`)*/g)) {
    const file = m[1] as string;
    // a reference may go on with more names of the same file: `file: a`, `b`, `c`
    const names = [...(m[0] as string).matchAll(/`([^`]+)`/g)].map((n) => n[1] as string);
    out.push({ file, name: oneLine((names[0] as string).slice(file.length + 2)) });
    for (const more of names.slice(1)) out.push({ file, name: oneLine(more) });
  }
  for (const m of text.matchAll(/`([\w./-]+\.test\.ts)` \(([^()]*(?:\([^()]*\)[^()]*)*)\)/g)) {
    for (const name of (m[2] as string).split(/;\s*/)) {
      if (name.trim()) out.push({ file: m[1] as string, name: oneLine(name) });
    }
  }
  return out;
}

describe('docs/threat-model.md', () => {
  const refs = references(doc);

  it('names tests', () => {
    expect(refs.length).toBeGreaterThan(20);
  });

  it.each(refs.map((r) => [r.file, r.name]))('%s has a test named %j', (file, name) => {
    const path = join(root, file);
    expect(existsSync(path), `${file} does not exist`).toBe(true);
    expect(readFileSync(path, 'utf8')).toContain(name);
  });

  it('finds names in both forms', () => {
    expect(
      references('`a/b.test.ts: one`, `two`; `c/d.test.ts` (three; four (4)); `e.test.ts`'),
    ).toEqual([
      { file: 'a/b.test.ts', name: 'one' },
      { file: 'a/b.test.ts', name: 'two' },
      { file: 'c/d.test.ts', name: 'three' },
      { file: 'c/d.test.ts', name: 'four (4)' },
    ]);
  });
});
