import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseEnvFile } from './env-file.js';

describe('parseEnvFile', () => {
  it.each([
    [
      'A=1\nB=two words\n',
      [
        ['A', '1'],
        ['B', 'two words'],
      ],
    ],
    ['A="quoted # not a comment"', [['A', 'quoted # not a comment']]],
    ["A='single $X \\n'", [['A', 'single $X \\n']]],
    ['A="esc \\" \\\\ \\$ \\q"', [['A', 'esc " \\ $ \\q']]],
    ['A=trailing   \t\n', [['A', 'trailing']]],
    ['A="  kept  "  ', [['A', '  kept  ']]],
    ['  A = spaced', [['A', 'spaced']]],
    ['A=line one \\\n  continued', [['A', 'line one   continued']]],
    ['A="multi\nline"', [['A', 'multi\nline']]],
    [
      'A=1\nA=2',
      [
        ['A', '1'],
        ['A', '2'],
      ],
    ],
    ['# comment\n; comment\n\nA=', [['A', '']]],
    ['A=no newline at the end', [['A', 'no newline at the end']]],
    [
      'A=1\r\nB=2\r\n',
      [
        ['A', '1'],
        ['B', '2'],
      ],
    ],
  ])('%j', (text, assignments) => {
    expect(parseEnvFile(text)).toEqual({ assignments, invalidLines: [] });
  });

  it('skips and reports lines that are not assignments to a valid name', () => {
    expect(parseEnvFile('GOOD=1\nexport BAD=2\njust words\n9X=3\nA="open\nLAST=ok')).toEqual({
      assignments: [['GOOD', '1']],
      invalidLines: [2, 3, 4, 5],
    });
  });

  it('reads back any value written double-quoted with escapes', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (value) => {
        const written = `V="${value.replace(/[\\"`$]/g, (c) => `\\${c}`)}"\n`;
        expect(parseEnvFile(written).assignments).toEqual([['V', value]]);
      }),
    );
  });
});
