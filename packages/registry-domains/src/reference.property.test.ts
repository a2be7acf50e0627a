import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidReferenceError } from './errors.js';
import { parseImageReference } from './reference.js';

const alnum = fc.stringMatching(/^[a-z0-9]{1,6}$/);
const separator = fc.constantFrom('.', '_', '__', '-', '---');
const component = fc
  .tuple(alnum, fc.array(fc.tuple(separator, alnum), { maxLength: 3 }))
  .map(([first, rest]) => first + rest.map(([s, a]) => s + a).join(''));
const path = fc.array(component, { minLength: 1, maxLength: 4 }).map((c) => c.join('/'));
const label = fc.stringMatching(/^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?$/);
const port = fc.option(
  fc.integer({ min: 1, max: 65535 }).map((p) => `:${p}`),
  { nil: undefined },
);
const domain = fc
  .tuple(
    fc.oneof(
      fc.array(label, { minLength: 2, maxLength: 4 }).map((l) => l.join('.')),
      fc.constant('localhost'),
      fc.ipV4(),
      fc.constantFrom('[::1]', '[fe80::1:2]', '[2001:db8::42]'),
    ),
    port,
  )
  .map(([h, p]) => h + (p ?? ''));
const tag = fc.stringMatching(/^\w[\w.-]{0,20}$/);
const digest = fc.oneof(
  fc.stringMatching(/^[a-f0-9]{64}$/).map((h) => `sha256:${h}`),
  fc.stringMatching(/^[a-f0-9]{128}$/).map((h) => `sha512:${h}`),
);
const reference = fc
  .record({
    domain: fc.option(domain, { nil: undefined }),
    path,
    tag: fc.option(tag, { nil: undefined }),
    digest: fc.option(digest, { nil: undefined }),
  })
  // Without a domain, a first component holding "." is read as a registry host (docker's rule),
  // so such paths are generated only behind an explicit domain.
  .filter(({ domain, path }) => domain !== undefined || !/^[^/]*\.[^/]*\//.test(path))
  .map(({ domain, path, tag, digest }) => ({
    domain,
    path,
    tag,
    digest,
    text:
      (domain === undefined ? '' : `${domain}/`) +
      path +
      (tag === undefined ? '' : `:${tag}`) +
      (digest === undefined ? '' : `@${digest}`),
  }));

describe('parseImageReference properties', () => {
  it('round-trips: parseImageReference(ref.toString()) equals ref', () => {
    fc.assert(
      fc.property(reference, ({ text }) => {
        const ref = parseImageReference(text);
        const again = parseImageReference(ref.toString());
        expect({ ...again }).toEqual({ ...ref });
        expect(again.toString()).toBe(ref.toString());
      }),
      { numRuns: 2000 },
    );
  });

  it('keeps an explicit domain and path as written', () => {
    fc.assert(
      fc.property(reference, ({ domain, path, tag, digest, text }) => {
        fc.pre(domain !== undefined);
        const ref = parseImageReference(text);
        expect(ref.registry).toBe(domain);
        expect(ref.repository).toBe(path);
        expect(ref.tag).toBe(tag ?? (digest === undefined ? 'latest' : undefined));
        expect(ref.digest).toBe(digest);
      }),
      { numRuns: 1000 },
    );
  });

  it('throws nothing but InvalidReferenceError on arbitrary input', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 80 }),
          fc.string({ unit: 'grapheme', maxLength: 40 }),
          fc.stringMatching(/^[a-zA-Z0-9.:/@_\-[\]%]{0,60}$/),
        ),
        (input) => {
          try {
            const ref = parseImageReference(input);
            expect(parseImageReference(ref.toString()).toString()).toBe(ref.toString());
          } catch (err) {
            expect(err).toBeInstanceOf(InvalidReferenceError);
          }
        },
      ),
      { numRuns: 5000 },
    );
  });
});
