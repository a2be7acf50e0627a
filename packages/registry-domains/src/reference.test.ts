import { describe, expect, it } from 'vitest';
import { type InvalidReferenceCode, InvalidReferenceError } from './errors.js';
import {
  ImageReference,
  parseImageReference,
  validateDigest,
  validateRepositoryName,
  validateTag,
} from './reference.js';

const H64 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const H128 = `${H64}${H64}`;
const H96 = H64 + H64.slice(0, 32);

type Fields = { registry: string; repository: string; tag?: string; digest?: string };

/** [input, registry, repository, tag, digest, canonical toString()] */
const valid: [string, string, string, string | undefined, string | undefined, string][] = [
  // Docker Hub normalisation
  ['alpine', 'docker.io', 'library/alpine', 'latest', undefined, 'docker.io/library/alpine:latest'],
  [
    'alpine:3.20',
    'docker.io',
    'library/alpine',
    '3.20',
    undefined,
    'docker.io/library/alpine:3.20',
  ],
  [
    'library/alpine',
    'docker.io',
    'library/alpine',
    'latest',
    undefined,
    'docker.io/library/alpine:latest',
  ],
  [
    'docker.io/alpine',
    'docker.io',
    'library/alpine',
    'latest',
    undefined,
    'docker.io/library/alpine:latest',
  ],
  [
    'docker.io/library/alpine:edge',
    'docker.io',
    'library/alpine',
    'edge',
    undefined,
    'docker.io/library/alpine:edge',
  ],
  [
    'index.docker.io/alpine',
    'docker.io',
    'library/alpine',
    'latest',
    undefined,
    'docker.io/library/alpine:latest',
  ],
  [
    'index.docker.io/bitnami/redis:7',
    'docker.io',
    'bitnami/redis',
    '7',
    undefined,
    'docker.io/bitnami/redis:7',
  ],
  [
    'registry-1.docker.io/library/nginx',
    'docker.io',
    'library/nginx',
    'latest',
    undefined,
    'docker.io/library/nginx:latest',
  ],
  [
    'registry-1.docker.io/nginx:1.27',
    'docker.io',
    'library/nginx',
    '1.27',
    undefined,
    'docker.io/library/nginx:1.27',
  ],
  [
    'bitnami/redis',
    'docker.io',
    'bitnami/redis',
    'latest',
    undefined,
    'docker.io/bitnami/redis:latest',
  ],
  ['a/b/c/d', 'docker.io', 'a/b/c/d', 'latest', undefined, 'docker.io/a/b/c/d:latest'],
  // domain vs first component
  ['localhost/app', 'localhost', 'app', 'latest', undefined, 'localhost/app:latest'],
  ['localhost:5000/app:v1', 'localhost:5000', 'app', 'v1', undefined, 'localhost:5000/app:v1'],
  [
    'localhost:5000',
    'docker.io',
    'library/localhost',
    '5000',
    undefined,
    'docker.io/library/localhost:5000',
  ],
  ['myhost/app', 'docker.io', 'myhost/app', 'latest', undefined, 'docker.io/myhost/app:latest'],
  ['myhost:5000/app', 'myhost:5000', 'app', 'latest', undefined, 'myhost:5000/app:latest'],
  ['Registry/app', 'Registry', 'app', 'latest', undefined, 'Registry/app:latest'],
  [
    'REGISTRY.EXAMPLE.COM/app',
    'REGISTRY.EXAMPLE.COM',
    'app',
    'latest',
    undefined,
    'REGISTRY.EXAMPLE.COM/app:latest',
  ],
  [
    '127.0.0.1:5000/team/app',
    '127.0.0.1:5000',
    'team/app',
    'latest',
    undefined,
    '127.0.0.1:5000/team/app:latest',
  ],
  ['[::1]:5000/app', '[::1]:5000', 'app', 'latest', undefined, '[::1]:5000/app:latest'],
  ['[fe80::1]/app:v2', '[fe80::1]', 'app', 'v2', undefined, '[fe80::1]/app:v2'],
  [
    'my-registry.example.com:443/a-b/c',
    'my-registry.example.com:443',
    'a-b/c',
    'latest',
    undefined,
    'my-registry.example.com:443/a-b/c:latest',
  ],
  [
    'xn--bcher-kva.example/app',
    'xn--bcher-kva.example',
    'app',
    'latest',
    undefined,
    'xn--bcher-kva.example/app:latest',
  ],
  // cloud registries
  [
    'gcr.io/my-project/app:1.0',
    'gcr.io',
    'my-project/app',
    '1.0',
    undefined,
    'gcr.io/my-project/app:1.0',
  ],
  [
    'europe-docker.pkg.dev/acme/images/app',
    'europe-docker.pkg.dev',
    'acme/images/app',
    'latest',
    undefined,
    'europe-docker.pkg.dev/acme/images/app:latest',
  ],
  [
    '123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:v1',
    '123456789012.dkr.ecr.eu-west-1.amazonaws.com',
    'team/app',
    'v1',
    undefined,
    '123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:v1',
  ],
  [
    'myreg.azurecr.io/app',
    'myreg.azurecr.io',
    'app',
    'latest',
    undefined,
    'myreg.azurecr.io/app:latest',
  ],
  // separators in path components
  ['a/b.c', 'docker.io', 'a/b.c', 'latest', undefined, 'docker.io/a/b.c:latest'],
  ['a/b_c', 'docker.io', 'a/b_c', 'latest', undefined, 'docker.io/a/b_c:latest'],
  ['a/b__c', 'docker.io', 'a/b__c', 'latest', undefined, 'docker.io/a/b__c:latest'],
  ['a/b-c', 'docker.io', 'a/b-c', 'latest', undefined, 'docker.io/a/b-c:latest'],
  ['a/b---c', 'docker.io', 'a/b---c', 'latest', undefined, 'docker.io/a/b---c:latest'],
  ['a/0', 'docker.io', 'a/0', 'latest', undefined, 'docker.io/a/0:latest'],
  // tags
  ['a/b:_', 'docker.io', 'a/b', '_', undefined, 'docker.io/a/b:_'],
  ['a/b:V1.2-rc_3', 'docker.io', 'a/b', 'V1.2-rc_3', undefined, 'docker.io/a/b:V1.2-rc_3'],
  [
    `a/b:${'t'.repeat(128)}`,
    'docker.io',
    'a/b',
    't'.repeat(128),
    undefined,
    `docker.io/a/b:${'t'.repeat(128)}`,
  ],
  // digests
  [
    `alpine@sha256:${H64}`,
    'docker.io',
    'library/alpine',
    undefined,
    `sha256:${H64}`,
    `docker.io/library/alpine@sha256:${H64}`,
  ],
  [
    `alpine:3@sha256:${H64}`,
    'docker.io',
    'library/alpine',
    '3',
    `sha256:${H64}`,
    `docker.io/library/alpine:3@sha256:${H64}`,
  ],
  [
    `gcr.io/p/a@sha512:${H128}`,
    'gcr.io',
    'p/a',
    undefined,
    `sha512:${H128}`,
    `gcr.io/p/a@sha512:${H128}`,
  ],
  [
    `gcr.io/p/a@sha384:${H96}`,
    'gcr.io',
    'p/a',
    undefined,
    `sha384:${H96}`,
    `gcr.io/p/a@sha384:${H96}`,
  ],
  [
    `localhost:5000/a:t@sha256:${H64}`,
    'localhost:5000',
    'a',
    't',
    `sha256:${H64}`,
    `localhost:5000/a:t@sha256:${H64}`,
  ],
  [
    `a/b@multihash+base58:${'A'.repeat(32)}`,
    'docker.io',
    'a/b',
    undefined,
    `multihash+base58:${'A'.repeat(32)}`,
    `docker.io/a/b@multihash+base58:${'A'.repeat(32)}`,
  ],
  [
    `a/b@blake3:${H64}`,
    'docker.io',
    'a/b',
    undefined,
    `blake3:${H64}`,
    `docker.io/a/b@blake3:${H64}`,
  ],
  // a 255-character path is still fine
  [
    `r.io/${'a'.repeat(255)}`,
    'r.io',
    'a'.repeat(255),
    'latest',
    undefined,
    `r.io/${'a'.repeat(255)}:latest`,
  ],
];

/** [input, code] */
const invalid: [string, InvalidReferenceCode][] = [
  ['', 'REFERENCE_EMPTY'],
  [`r.io/${'a/'.repeat(1100)}a`, 'REFERENCE_TOO_LONG'],
  [':tag', 'REFERENCE_INVALID_FORMAT'],
  [`@sha256:${H64}`, 'REFERENCE_INVALID_FORMAT'],
  [H64, 'NAME_IS_DIGEST'],
  ['Alpine', 'NAME_CONTAINS_UPPERCASE'],
  ['docker.io/Library/alpine', 'NAME_CONTAINS_UPPERCASE'],
  ['gcr.io/project/App', 'NAME_CONTAINS_UPPERCASE'],
  ['a//b', 'NAME_EMPTY_COMPONENT'],
  ['a/b/', 'NAME_EMPTY_COMPONENT'],
  ['gcr.io/', 'NAME_EMPTY_COMPONENT'],
  ['gcr.io//p/a', 'NAME_EMPTY_COMPONENT'],
  ['/a/b', 'NAME_EMPTY_COMPONENT'],
  ['a/../b', 'NAME_INVALID_COMPONENT'],
  ['gcr.io/p/..', 'NAME_INVALID_COMPONENT'],
  ['gcr.io/./a', 'NAME_INVALID_COMPONENT'],
  ['gcr.io/p%2Fa', 'NAME_INVALID_COMPONENT'],
  ['gcr.io/p%2e%2e/a', 'NAME_INVALID_COMPONENT'],
  ['a/-b', 'NAME_INVALID_COMPONENT'],
  ['a/b-', 'NAME_INVALID_COMPONENT'],
  ['a/.b', 'NAME_INVALID_COMPONENT'],
  ['a/b.', 'NAME_INVALID_COMPONENT'],
  ['a/b..c', 'NAME_INVALID_COMPONENT'],
  ['a/b___c', 'NAME_INVALID_COMPONENT'],
  ['a/b._c', 'NAME_INVALID_COMPONENT'],
  ['a/b c', 'NAME_INVALID_COMPONENT'],
  ['a/b\\c', 'NAME_INVALID_COMPONENT'],
  ['a/ü', 'NAME_INVALID_COMPONENT'],
  [`r.io/${'a'.repeat(256)}`, 'NAME_TOO_LONG'],
  [`${'a'.repeat(250)}`, 'NAME_TOO_LONG'],
  ['-bad.example.com/a', 'DOMAIN_INVALID'],
  ['bad-.example.com/a', 'DOMAIN_INVALID'],
  ['bad..example.com/a', 'DOMAIN_INVALID'],
  ['example.com./a', 'DOMAIN_INVALID'],
  ['ex_ample.com/a', 'DOMAIN_INVALID'],
  ['example.com:/a', 'DOMAIN_INVALID'],
  ['example.com:port/a', 'DOMAIN_INVALID'],
  ['[]:5000/a', 'DOMAIN_INVALID'],
  ['[::g]/a', 'DOMAIN_INVALID'],
  ['a:', 'TAG_INVALID'],
  ['a:-x', 'TAG_INVALID'],
  ['a:.x', 'TAG_INVALID'],
  ['a:x/y', 'DOMAIN_INVALID'],
  ['a:x:y', 'TAG_INVALID'],
  ['a:x+y', 'TAG_INVALID'],
  [`a:${'t'.repeat(129)}`, 'TAG_INVALID'],
  ['a@', 'DIGEST_INVALID'],
  ['a@sha256', 'DIGEST_INVALID'],
  ['a@sha256:', 'DIGEST_INVALID'],
  ['a@sha256:abc', 'DIGEST_INVALID'],
  [`a@sha256:${H64.toUpperCase()}`, 'DIGEST_INVALID'],
  [`a@sha256:${H64}0`, 'DIGEST_INVALID'],
  [`a@sha512:${H64}`, 'DIGEST_INVALID'],
  [`a@sha256:${H64.slice(0, 63)}g`, 'DIGEST_INVALID'],
  [`a@1sha:${H64}`, 'DIGEST_INVALID'],
  [`a@sha-:${H64}`, 'DIGEST_INVALID'],
  ['a@md5:0123456789abcdef', 'DIGEST_INVALID'],
  [`a@foo:${'z'.repeat(40)}`, 'DIGEST_INVALID'],
  [`a@sha256:${H64}@sha256:${H64}`, 'DIGEST_INVALID'],
];

describe('parseImageReference', () => {
  it('has at least 60 reference cases', () => {
    expect(valid.length + invalid.length).toBeGreaterThanOrEqual(60);
  });

  it.each(valid)('parses %j', (input, registry, repository, tag, digest, canonical) => {
    const ref = parseImageReference(input);
    const expected: Fields = { registry, repository };
    if (tag !== undefined) expected.tag = tag;
    if (digest !== undefined) expected.digest = digest;
    expect({ ...ref }).toEqual(expected);
    expect(ref).toBeInstanceOf(ImageReference);
    expect(ref.toString()).toBe(canonical);
    expect(ref.name).toBe(`${registry}/${repository}`);
    expect(JSON.stringify({ ref })).toBe(JSON.stringify({ ref: canonical }));
    // the canonical form parses to the same reference
    expect({ ...parseImageReference(canonical) }).toEqual(expected);
  });

  it.each(invalid)('refuses %j with %s', (input, code) => {
    let caught: unknown;
    try {
      parseImageReference(input);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InvalidReferenceError);
    const err = caught as InvalidReferenceError;
    expect(err.code).toBe(code);
    expect(err.reference).toBe(input);
    expect(err.message).toMatch(/^invalid reference ".*": \S/);
  });

  it('quotes hostile input safely and briefly in messages', () => {
    const hostile = `evil\n\u001b[31mred/${'x'.repeat(500)}`;
    const err = (() => {
      try {
        parseImageReference(hostile);
      } catch (e) {
        return e as InvalidReferenceError;
      }
      throw new Error('expected an error');
    })();
    expect(err.message).not.toContain('\n');
    expect(err.message).not.toContain('\u001b');
    expect(err.message.length).toBeLessThan(400);
  });

  it('rejects non-strings with a TypeError', () => {
    expect(() => parseImageReference(42 as unknown as string)).toThrow(TypeError);
  });
});

describe('validateRepositoryName / validateTag / validateDigest', () => {
  it.each([
    ['team/app', undefined],
    ['a', undefined],
    ['team/../app', 'NAME_INVALID_COMPONENT'],
    ['team%2Fapp', 'NAME_INVALID_COMPONENT'],
    ['Team/app', 'NAME_CONTAINS_UPPERCASE'],
    ['team//app', 'NAME_EMPTY_COMPONENT'],
    ['', 'REFERENCE_EMPTY'],
    ['a'.repeat(256), 'NAME_TOO_LONG'],
  ])('name %j -> %s', (name, code) => {
    if (code === undefined) expect(() => validateRepositoryName(name)).not.toThrow();
    else expect(() => validateRepositoryName(name)).toThrow(expect.objectContaining({ code }));
  });

  it('checks tags and digests alone', () => {
    expect(() => validateTag('v1.2.3')).not.toThrow();
    expect(() => validateTag('-x')).toThrow(expect.objectContaining({ code: 'TAG_INVALID' }));
    expect(() => validateDigest(`sha256:${H64}`)).not.toThrow();
    expect(() => validateDigest('sha256:abc')).toThrow(
      expect.objectContaining({ code: 'DIGEST_INVALID' }),
    );
  });
});
