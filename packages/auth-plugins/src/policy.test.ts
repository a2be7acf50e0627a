import { describe, expect, it } from 'vitest';
import type { Identity } from './plugin.js';
import { createPolicy, globToRegExp } from './policy.js';

const who = (plugin: string, subject: string): Identity => ({
  plugin,
  subject,
  groups: [],
  claims: {},
});

describe('globToRegExp', () => {
  it.each([
    ['users:*', 'users:alice', true],
    ['users:*', 'users:team/alice', false],
    ['team-a/*', 'team-a/app', true],
    ['team-a/*', 'team-a/sub/app', false],
    ['team-a/**', 'team-a/sub/app', true],
    ['**', 'anything/at/all', true],
    ['team-a/*', 'team-b/app', false],
    ['Team-a/*', 'team-a/app', false],
    ['a.b', 'axb', false],
    ['lib(x)', 'lib(x)', true],
  ])('%s ~ %s: %s', (glob, value, expected) => {
    expect(globToRegExp(glob).test(value)).toBe(expected);
  });
});

describe('createPolicy', () => {
  const policy = createPolicy([
    { identities: ['users:*'], repositories: ['public/**'], actions: ['pull'] },
    { identities: ['users:alice'], repositories: ['team-a/*'], actions: ['pull', 'push'] },
    { identities: ['ci:deploy'], repositories: ['**'], actions: ['*'] },
    { identities: ['anonymous'], repositories: ['mirror/*'], actions: ['pull'] },
  ]);

  it.each([
    [who('users', 'alice'), 'team-a/app', ['pull', 'push'], ['pull', 'push']],
    [who('users', 'alice'), 'team-b/app', ['pull'], []],
    [who('users', 'bob'), 'team-a/app', ['pull'], []],
    [who('users', 'bob'), 'public/x/y', ['pull', 'push'], ['pull']],
    [who('ci', 'deploy'), 'any/thing', ['pull', 'push'], ['pull', 'push']],
    [undefined, 'mirror/app', ['pull'], ['pull']],
    [undefined, 'team-a/app', ['pull'], []],
    [who('other', 'alice'), 'team-a/app', ['pull'], []],
    [who('users', 'alice'), 'team-a/app', ['delete'], []],
  ])('%j on %s asking %j gets %j', (identity, repository, requested, granted) => {
    expect(policy.grant(identity, repository, requested).sort()).toEqual(granted);
  });

  it('matches on groups and on claims (globs; every named claim must match)', () => {
    const p = createPolicy([
      { identities: ['corp:*'], groups: ['platform'], repositories: ['**'], actions: ['pull'] },
      {
        identities: ['ci:**'], // OIDC subjects carry slashes: repo:acme/app:ref:...
        claims: { repository_owner: 'acme', ref: ['refs/heads/main', 'refs/tags/*'] },
        repositories: ['team-a/*'],
        actions: ['pull'],
      },
    ]);
    const corp = (groups: string[]): Identity => ({ ...who('corp', 'carol'), groups });
    expect(p.grant(corp(['platform', 'dev']), 'x/y', ['pull'])).toEqual(['pull']);
    expect(p.grant(corp(['dev']), 'x/y', ['pull'])).toEqual([]);
    const ci = (claims: Record<string, unknown>): Identity => ({
      ...who('ci', 'repo:acme/app'),
      claims,
    });
    expect(
      p.grant(ci({ repository_owner: 'acme', ref: 'refs/heads/main' }), 'team-a/app', ['pull']),
    ).toEqual(['pull']);
    expect(
      p.grant(ci({ repository_owner: 'acme', ref: 'refs/tags/v1' }), 'team-a/app', ['pull']),
    ).toEqual(['pull']);
    expect(
      p.grant(ci({ repository_owner: 'acme', ref: 'refs/heads/dev' }), 'team-a/app', ['pull']),
    ).toEqual([]);
    expect(
      p.grant(ci({ repository_owner: 'evil', ref: 'refs/heads/main' }), 'team-a/app', ['pull']),
    ).toEqual([]);
    expect(p.grant(ci({ ref: 'refs/heads/main' }), 'team-a/app', ['pull'])).toEqual([]);
    expect(
      p.grant(ci({ repository_owner: { nested: 'acme' }, ref: 'refs/heads/main' }), 'team-a/app', [
        'pull',
      ]),
    ).toEqual([]);
    expect(p.grant(undefined, 'x/y', ['pull'])).toEqual([]);
  });

  it('denies everything without rules', () => {
    expect(createPolicy([]).grant(who('users', 'alice'), 'x', ['pull'])).toEqual([]);
  });

  it.each([
    [[{ identities: [], repositories: ['*'], actions: ['pull'] }], /policy\[0\]\.identities/],
    [[{ identities: ['*'], repositories: ['*'], actions: ['delete'] }], /policy\[0\]\.actions/],
    [
      [{ identities: ['*'], repositories: ['*'], actions: ['pull'], groups: [] }],
      /policy\[0\]\.groups/,
    ],
    [
      [{ identities: ['*'], repositories: ['*'], actions: ['pull'], claims: {} }],
      /policy\[0\]\.claims/,
    ],
    [
      [{ identities: ['*'], repositories: ['*'], actions: ['pull'], claims: { a: [] } }],
      /policy\[0\]\.claims\.a/,
    ],
  ])('refuses bad rules %#', (rules, message) => {
    expect(() => createPolicy(rules as never)).toThrow(message);
  });
});
