import { type Slapd, startSlapd } from '@org/tools/stand-ins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLdapPlugin, escapeDnValue, escapeFilterValue, type LdapOptions } from './ldap.js';
import { authenticateLogin } from './login.js';

/** Against a real slapd: users alice and bob in group platform, carol only in dev. */
let slapd: Slapd;
beforeAll(async () => {
  slapd = await startSlapd([
    { uid: 'alice', password: 'alice-pw', groups: ['platform'] },
    { uid: 'bob', password: 'bob-pw', groups: ['platform', 'dev'] },
    { uid: 'carol', password: 'carol-pw', groups: ['dev'] },
  ]);
});
afterAll(() => slapd?.close());

const searchThenBind = (extra: Partial<LdapOptions> = {}) =>
  createLdapPlugin({
    name: 'corp',
    url: slapd.url,
    bindDn: slapd.adminDn,
    bindPassword: slapd.adminPassword,
    userSearchBase: `ou=people,${slapd.suffix}`,
    ...extra,
  });

describe('the ldap plugin against a real slapd', () => {
  it('search-then-bind: identity with groups from memberOf', async () => {
    expect(await searchThenBind().authenticate({ username: 'bob', password: 'bob-pw' })).toEqual({
      ok: true,
      identity: {
        plugin: 'corp',
        subject: 'bob',
        groups: expect.arrayContaining(['platform', 'dev']),
        claims: { dn: `uid=bob,ou=people,${slapd.suffix}` },
      },
    });
  });

  it('refuses a wrong password, an unknown user and an empty password (no anonymous bind)', async () => {
    const p = searchThenBind();
    expect(await p.authenticate({ username: 'alice', password: 'wrong' })).toEqual({
      ok: false,
      reason: 'BAD_PASSWORD',
    });
    expect(await p.authenticate({ username: 'mallory', password: 'x' })).toEqual({
      ok: false,
      reason: 'UNKNOWN_USER',
    });
    expect((await p.authenticate({ username: 'alice', password: '' })).ok).toBe(false);
  });

  it('is not fooled by LDAP injection in the username', async () => {
    const p = searchThenBind();
    for (const username of ['*', 'al*', 'alice)(uid=*', '*)(|(uid=*', 'alice\\2a', '(uid=alice)']) {
      for (const password of ['alice-pw', 'bob-pw']) {
        expect((await p.authenticate({ username, password })).ok).toBe(false);
      }
    }
    // the directory matches usernames case-insensitively; the subject is the directory's
    expect(await p.authenticate({ username: 'ALICE', password: 'alice-pw' })).toMatchObject({
      ok: true,
      identity: { subject: 'alice' },
    });
  });

  it('binds with a DN template, over StartTLS and over LDAPS with the CA file', async () => {
    const template = `uid={username},ou=people,${slapd.suffix}`;
    for (const p of [
      createLdapPlugin({ name: 'corp', url: slapd.url, userDnTemplate: template }),
      createLdapPlugin({
        name: 'corp',
        url: slapd.url,
        startTls: true,
        caFile: slapd.caFile,
        userDnTemplate: template,
      }),
      createLdapPlugin({
        name: 'corp',
        url: slapd.ldapsUrl,
        caFile: slapd.caFile,
        userDnTemplate: template,
      }),
      searchThenBind({ url: slapd.ldapsUrl, caFile: slapd.caFile }),
    ]) {
      expect(await p.authenticate({ username: 'alice', password: 'alice-pw' })).toMatchObject({
        ok: true,
        identity: { subject: 'alice', groups: ['platform'] },
      });
      expect((await p.authenticate({ username: 'alice', password: 'bob-pw' })).ok).toBe(false);
    }
    // a template with an injected DN component is escaped, never a different entry
    const p = createLdapPlugin({ name: 'corp', url: slapd.url, userDnTemplate: template });
    expect((await p.authenticate({ username: 'bob,ou=people', password: 'bob-pw' })).ok).toBe(
      false,
    );
  });

  it('groups from a group search', async () => {
    const p = searchThenBind({
      groups: { from: 'search', searchBase: `ou=groups,${slapd.suffix}` },
    });
    const result = await p.authenticate({ username: 'carol', password: 'carol-pw' });
    expect(result).toMatchObject({ ok: true, identity: { groups: ['dev'] } });
  });

  it('reuses one service connection for many logins', async () => {
    const p = searchThenBind();
    const before = (slapd.log().match(/BIND dn="cn=admin[^"]*" method=128/g) ?? []).length;
    await Promise.all(
      ['alice', 'bob', 'carol', 'alice', 'bob'].map((u) =>
        p.authenticate({ username: u, password: `${u}-pw` }),
      ),
    );
    const after = (slapd.log().match(/BIND dn="cn=admin[^"]*" method=128/g) ?? []).length;
    expect(after - before).toBe(1);
  });

  it('is UNAVAILABLE when the directory cannot be reached, within the timeout', async () => {
    const p = createLdapPlugin({
      name: 'corp',
      url: 'ldap://127.0.0.1:9',
      userSearchBase: 'ou=people,dc=example,dc=org',
      timeoutMs: 1000,
    });
    expect(await authenticateLogin([p], { username: 'alice', password: 'alice-pw' })).toEqual({
      ok: false,
      reason: 'UNAVAILABLE',
    });
  });
});

describe('escaping', () => {
  it.each([
    ['alice', 'alice'],
    ['*', '\\2a'],
    ['a)(uid=*', 'a\\29\\28uid=\\2a'],
    ['back\\slash', 'back\\5cslash'],
    ['nul\0', 'nul\\00'],
  ])('filter value %j -> %j', (input, expected) => {
    expect(escapeFilterValue(input)).toBe(expected);
  });
  it.each([
    ['alice', 'alice'],
    ['bob,ou=people', 'bob\\,ou\\=people'],
    ['#hash', '\\#hash'],
    [' lead', '\\ lead'],
    ['trail ', 'trail\\ '],
    ['a+b"c<d>e;f\\g', 'a\\+b\\"c\\<d\\>e\\;f\\\\g'],
  ])('DN value %j -> %j', (input, expected) => {
    expect(escapeDnValue(input)).toBe(expected);
  });
});
