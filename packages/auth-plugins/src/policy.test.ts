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

  it('denies everything without rules', () => {
    expect(createPolicy([]).grant(who('users', 'alice'), 'x', ['pull'])).toEqual([]);
  });

  it.each([
    [[{ identities: [], repositories: ['*'], actions: ['pull'] }], /policy\[0\]\.identities/],
    [[{ identities: ['*'], repositories: ['*'], actions: ['delete'] }], /policy\[0\]\.actions/],
  ])('refuses bad rules %#', (rules, message) => {
    expect(() => createPolicy(rules as never)).toThrow(message);
  });
});
