import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseChallenges } from './challenge.js';

/** WWW-Authenticate comes from upstreams: any bytes, parsed without throwing or looping. */
const tokenChars = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}$/);
/** Quoted-string content: any printable text, `"` and `\` escaped when written. */
const quotedValue = fc.string({ maxLength: 40 }).map((s) => s.replace(/[\r\n\0]/g, ''));
const quote = (v: string) => `"${v.replace(/[\\"]/g, (c) => `\\${c}`)}"`;

const challenge = fc
  .tuple(
    tokenChars,
    fc.uniqueArray(
      fc.tuple(
        tokenChars,
        fc.oneof(
          quotedValue.map((v) => ({ value: v, written: quote(v) })),
          tokenChars.map((v) => ({ value: v, written: v })),
        ),
      ),
      { maxLength: 5, selector: ([name]) => name.toLowerCase() },
    ),
  )
  .map(([scheme, params]) => ({
    scheme,
    params,
    text: `${scheme} ${params.map(([n, v]) => `${n}=${v.written}`).join(', ')}`.trimEnd(),
  }));

describe('parseChallenges properties', () => {
  it('never throws on arbitrary text and always returns well-formed challenges', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 200 }),
          fc.string({ unit: 'binary', maxLength: 200 }),
          fc.stringMatching(/^[a-zA-Z ,="\\=:/.]{0,120}$/),
          fc.string({ minLength: 4000, maxLength: 8192 }).map((s) => s.slice(0, 8192)),
        ),
        (header) => {
          const out = parseChallenges(header);
          for (const c of out) {
            expect(c.scheme).toMatch(/^[!#$%&'*+.^_`|~0-9a-z-]+$/);
            for (const k of Object.keys(c.params)) expect(k).toBe(k.toLowerCase());
          }
        },
      ),
      { numRuns: 1500 },
    );
  });

  it('parses generated challenges back to their scheme and params (escapes included)', () => {
    fc.assert(
      fc.property(fc.array(challenge, { minLength: 1, maxLength: 3 }), (challenges) => {
        const parsed = parseChallenges(challenges.map((c) => c.text).join(', '));
        expect(parsed).toHaveLength(challenges.length);
        challenges.forEach((c, i) => {
          expect(parsed[i]?.scheme).toBe(c.scheme.toLowerCase());
          expect({ ...parsed[i]?.params }).toEqual(
            Object.fromEntries(c.params.map(([n, v]) => [n.toLowerCase(), v.value])),
          );
        });
      }),
      { numRuns: 2000 },
    );
  });

  it('gives nothing for headers over 8 KiB', () => {
    fc.assert(
      fc.property(challenge, fc.integer({ min: 8193, max: 20_000 }), (c, size) => {
        expect(parseChallenges(c.text.padEnd(size, ' '))).toEqual([]);
      }),
      { numRuns: 50 },
    );
  });
});
