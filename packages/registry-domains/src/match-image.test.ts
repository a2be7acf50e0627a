import { describe, expect, it } from 'vitest';
import { InvalidReferenceError } from './errors.js';
import { compileImagePattern, matchImage } from './match-image.js';

/**
 * [pattern, image, match]. Rows 1-26 are the kubelet `URLsMatchStr` cases from
 * shared/reference/kubernetes-node.md §3.6 (kubernetes keyring tests and the sheet's own);
 * rows 24 and 25 are patterns kubelet accepts but never matches, which we refuse (below).
 */
const cases: [string, string, boolean][] = [
  ['*.kubernetes.io', 'prefix.kubernetes.io/app', true],
  ['prefix.*.io', 'prefix.kubernetes.io/app', true],
  ['prefix.kubernetes.*', 'prefix.kubernetes.io/app', true],
  ['*-good.kubernetes.io', 'prefix-good.kubernetes.io/app', true],
  ['*.kubernetes.io/blah', 'prefix.kubernetes.io/blah', true],
  ['prefix.*.io/foo', 'prefix.kubernetes.io/foo/bar', true],
  ['*.kubernetes.io:1111/blah', 'prefix.kubernetes.io:1111/blah', true],
  ['*.kubernetes.io', 'kubernetes.io/app', false],
  ['*.*.kubernetes.io', 'prefix.kubernetes.io/app', false],
  ['kubernetes.io', 'kubernetes.com/app', false],
  ['k*.io', 'quay.io/app', false],
  ['*.kubernetes.io:1234/blah', 'prefix.kubernetes.io:1111/blah', false],
  ['prefix.*.io/foo', 'prefix.kubernetes.io:1111/foo/bar', false],
  ['bar.example.com/pong', 'bar.example.com/pongz', true],
  ['bar.example.com/pong/', 'bar.example.com/pongz', false],
  ['registry.io', 'registry.io:5000/img', false],
  ['*.io', 'gcr.k8s.io/app', false],
  ['*.dkr.ecr.*.amazonaws.com', '123456789012.dkr.ecr.us-east-1.amazonaws.com/app', true],
  ['gcr.io', 'us.gcr.io/proj/img', false],
  ['*.gcr.io', 'gcr.io/proj/img', false],
  ['docker.io', 'nginx', true],
  ['index.docker.io', 'nginx', false],
  ['reg[0-9].example.com', 'reg1.example.com/x', true],
  ['10.0.0.*:5000', '10.0.0.7:5000/app', true],
  // more: tags and digests are ignored, paths are raw prefixes, classes, escapes, case
  ['*.gcr.io', 'eu.gcr.io/proj/img:v1', true],
  [
    '*-docker.pkg.dev',
    `europe-west1-docker.pkg.dev/acme/images/app@sha256:${'a'.repeat(64)}`,
    true,
  ],
  ['docker.io/library', 'alpine:3.20', true],
  ['docker.io/bitnami/', 'bitnami/redis', true],
  ['docker.io/bitnami/', 'library/redis', false],
  ['*.azurecr.io', 'reg.azurecr.io/team/app', true],
  ['*.azurecr.io', 'reg.westeurope.data.azurecr.io/app', false],
  ['app*.k8s.io', 'apps.k8s.io/x', true],
  ['app*.k8s.io', 'ap.k8s.io/x', false],
  ['reg[^0-9].example.com', 'rega.example.com/x', true],
  ['reg[^0-9].example.com', 'reg1.example.com/x', false],
  ['reg[a-c][x-z].example.com', 'regby.example.com/x', true],
  ['reg\\x.example.com', 'regx.example.com/x', true],
  ['*', 'localhost/app', true],
  ['*', 'docker.io/library/nginx', false],
  ['*.*', 'docker.io/library/nginx', true],
  ['*.*:5000', 'docker.io/library/nginx', false],
  ['localhost:5000', 'localhost:5000/app', true],
  ['[::1]:5000', '[::1]:5000/app', true],
  ['[::1]:5000', '[::2]:5000/app', false],
  ['Registry.io', 'registry.io/app', false],
  ['registry.io', 'Registry.io/app', false],
  ['*.example.com', 'a.example.com/App', false],
];

describe('matchImage', () => {
  it('has at least 20 glob cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(20);
  });

  it.each(cases)('%s ~ %s: %s', (pattern, image, expected) => {
    expect(matchImage(pattern, image)).toBe(expected);
  });

  it.each([
    ['https://registry.io', 'a scheme'],
    ['reg?.example.com', 'a "?" (a URL query to kubelet)'],
    ['registry.io#x', 'a "#" (a URL fragment to kubelet)'],
    ['registry.io:*', 'a glob in the port'],
    ['registry.io:', 'an empty port'],
    ['user@registry.io', 'user info'],
    ['', 'nothing'],
    ['/path/only', 'no host'],
    ['reg[.example.com', 'an unclosed class'],
    ['reg[].example.com', 'an empty class'],
    ['reg[z-a].example.com', 'a reversed range'],
    ['reg\\', 'a trailing escape'],
    ['reg].example.com', 'a stray "]"'],
    ['reg istry.io', 'a space'],
    ['registry.io/%2e%2e', 'a percent escape'],
  ])('refuses %j (%s) with PATTERN_INVALID', (pattern) => {
    let caught: unknown;
    try {
      compileImagePattern(pattern);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InvalidReferenceError);
    expect((caught as InvalidReferenceError).code).toBe('PATTERN_INVALID');
  });

  it('matches nothing for an image that is not a valid reference', () => {
    expect(matchImage('*', 'Not/A Valid:Image')).toBe(false);
    expect(matchImage('docker.io', '')).toBe(false);
  });

  it('compiles once and matches many', () => {
    const p = compileImagePattern('*.dkr.ecr.*.amazonaws.com');
    expect(p.pattern).toBe('*.dkr.ecr.*.amazonaws.com');
    expect(p.matches('111111111111.dkr.ecr.eu-west-1.amazonaws.com/a')).toBe(true);
    expect(p.matches('111111111111.dkr.ecr.eu-west-1.amazonaws.com.cn/a')).toBe(false);
  });

  it('does not backtrack catastrophically on many stars', () => {
    const label = 'a'.repeat(60);
    expect(matchImage(`${'*a'.repeat(30)}b.io`, `${label}.io/x`)).toBe(false);
  });
});
