import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidReferenceError } from './errors.js';
import {
  parseImageReference,
  validateDigest,
  validateRepositoryName,
  validateTag,
} from './reference.js';

/**
 * Fuzzing the checks the proxy runs on every request path (names, tags, digests) with hostile
 * material: whatever they accept is safe to put into an upstream URL.
 */
const hostilePiece = fc.constantFrom(
  '..',
  '.',
  '/',
  '//',
  '%2e',
  '%2f',
  '%252e',
  '\\',
  '%5c',
  '%00',
  '\0',
  ' ',
  '\r\n',
  '?',
  '#',
  ';',
  '@',
  ':',
  'A',
  'É',
  '\u2024',
);
const lower = fc.stringMatching(/^[a-z0-9]{1,8}$/);
/** A valid name with hostile pieces spliced in. */
const spliced = fc
  .tuple(fc.array(fc.oneof(lower, hostilePiece), { minLength: 1, maxLength: 8 }), lower)
  .map(([parts, tail]) => `${parts.join('')}${tail}`);
const anyText = fc.oneof(
  fc.string({ maxLength: 300 }),
  fc.string({ unit: 'binary', maxLength: 80 }),
  spliced,
);

const onlyOwnErrors = (fn: () => unknown) => {
  try {
    fn();
    return true;
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidReferenceError);
    expect((err as InvalidReferenceError).code).toMatch(/^[A-Z_]+$/);
    return false;
  }
};

describe('reference checks under hostile input', () => {
  it('validateRepositoryName: only its own error; what it accepts is URL-safe', () => {
    fc.assert(
      fc.property(anyText, (name) => {
        if (!onlyOwnErrors(() => validateRepositoryName(name))) return;
        expect(name.length).toBeLessThanOrEqual(255);
        expect(name).toMatch(
          /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/,
        );
        expect(name.split('/')).not.toContain('..');
        expect(name).not.toMatch(/[%\\\s?#;@:A-Z]/);
      }),
      { numRuns: 3000 },
    );
  });

  it('validateTag: only its own error; accepted tags follow the grammar and fit 128', () => {
    fc.assert(
      fc.property(anyText, (tag) => {
        if (!onlyOwnErrors(() => validateTag(tag))) return;
        expect(tag).toMatch(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/);
      }),
      { numRuns: 3000 },
    );
  });

  it('validateDigest: only its own error; accepted digests carry no path or query bytes', () => {
    const digestish = fc.oneof(
      anyText,
      fc
        .tuple(fc.constantFrom('sha256', 'sha512', 'SHA256', 'md5', ''), anyText)
        .map(([a, h]) => `${a}:${h}`),
    );
    fc.assert(
      fc.property(digestish, (digest) => {
        if (!onlyOwnErrors(() => validateDigest(digest))) return;
        expect(digest).toMatch(
          /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/,
        );
        if (digest.startsWith('sha256:')) expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
      }),
      { numRuns: 3000 },
    );
  });

  it('parseImageReference never yields a repository with traversal or uppercase', () => {
    fc.assert(
      fc.property(
        fc.tuple(
          fc.constantFrom('', 'registry.example.com/', 'localhost:5000/'),
          spliced,
          fc.constantFrom('', ':v1', ':..', '@sha256:..'),
        ),
        ([host, name, suffix]) => {
          let ref: ReturnType<typeof parseImageReference>;
          try {
            ref = parseImageReference(`${host}${name}${suffix}`);
          } catch (err) {
            expect(err).toBeInstanceOf(InvalidReferenceError);
            return;
          }
          expect(ref.repository.split('/')).not.toContain('..');
          expect(ref.repository).not.toMatch(/[A-Z%\\\s]/);
          expect(() => validateRepositoryName(ref.repository)).not.toThrow();
        },
      ),
      { numRuns: 3000 },
    );
  });
});
