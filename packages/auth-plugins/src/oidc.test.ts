import { createHmac } from 'node:crypto';
import { type OidcIssuer, startOidcIssuer } from '@org/tools/stand-ins';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { authenticateLogin } from './login.js';
import { createOidcPlugin } from './oidc.js';
import type { AuthPlugin } from './plugin.js';

let issuer: OidcIssuer;
let plugin: AuthPlugin;
const now = () => Math.floor(Date.now() / 1000);
const claims = (extra: Record<string, unknown> = {}) => ({
  iss: issuer.issuer,
  aud: 'docker.example.com',
  sub: 'repo:acme/app:ref:refs/heads/main',
  repository_owner: 'acme',
  groups: ['platform', 'dev'],
  iat: now(),
  exp: now() + 300,
  ...extra,
});
const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

beforeAll(async () => {
  issuer = await startOidcIssuer();
  plugin = createOidcPlugin({
    name: 'ci',
    issuer: issuer.issuer,
    audience: 'docker.example.com',
    groupsClaim: 'groups',
  });
});
afterAll(() => issuer.close());
afterEach(() => vi.useRealTimers());

const login = (password: string, username = '_oidc') => plugin.authenticate({ username, password });

describe('the oidc plugin', () => {
  it('accepts a token from the issuer: subject, groups and claims for the policy', async () => {
    const result = await login(issuer.sign(claims()));
    expect(result).toEqual({
      ok: true,
      identity: expect.objectContaining({
        plugin: 'ci',
        subject: 'repo:acme/app:ref:refs/heads/main',
        groups: ['platform', 'dev'],
        claims: expect.objectContaining({ repository_owner: 'acme' }),
      }),
    });
  });

  it('refuses wrong audience, wrong issuer, expired, not yet valid and missing sub', async () => {
    for (const bad of [
      claims({ aud: 'other.example.com' }),
      claims({ iss: 'https://evil.example.com' }),
      claims({ exp: now() - 120 }),
      claims({ nbf: now() + 600 }),
      claims({ sub: undefined }),
    ]) {
      expect(await login(issuer.sign(bad))).toEqual({ ok: false, reason: 'BAD_PASSWORD' });
    }
  });

  it('allows bounded clock skew', async () => {
    expect((await login(issuer.sign(claims({ exp: now() - 30 })))).ok).toBe(true);
  });

  it('refuses alg none, HS256 keyed with the public key, and a tampered payload', async () => {
    const none = `${b64({ alg: 'none', typ: 'JWT', kid: 'key-1' })}.${b64(claims())}.`;
    const header = b64({ alg: 'HS256', typ: 'JWT', kid: 'key-1' });
    const body = b64(claims());
    const hs256 = `${header}.${body}.${createHmac('sha256', issuer.publicKeyPem()).update(`${header}.${body}`).digest('base64url')}`;
    const [h, , sig] = issuer.sign(claims()).split('.');
    const tampered = `${h}.${b64(claims({ sub: 'admin' }))}.${sig}`;
    for (const token of [none, hs256, tampered]) {
      expect((await login(token)).ok).toBe(false);
    }
  });

  it('refuses a kid the issuer does not publish, and a flood of them reaches the issuer at most once', async () => {
    const before = issuer.jwksFetches();
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => login(issuer.sign(claims(), { kid: `unknown-${i}` }))),
    );
    expect(results.every((r) => !r.ok)).toBe(true);
    expect(issuer.jwksFetches() - before).toBeLessThanOrEqual(1);
  });

  it('follows key rotation: a new kid is fetched once the cooldown has passed', async () => {
    expect((await login(issuer.sign(claims()))).ok).toBe(true);
    issuer.rotate(false);
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 31_000 });
    expect((await login(issuer.sign(claims()))).ok).toBe(true);
  });

  it('is UNAVAILABLE when the issuer cannot be reached, never a crash', async () => {
    const down = createOidcPlugin({
      name: 'down',
      issuer: 'http://127.0.0.1:9', // discard port: nothing listens
      audience: 'docker.example.com',
    });
    expect(await down.authenticate({ username: '_oidc', password: issuer.sign(claims()) })).toEqual(
      { ok: false, reason: 'UNAVAILABLE' },
    );
  });

  it('refuses unsafe options', () => {
    for (const bad of [
      { issuer: 'http://issuer.example.com', audience: 'x' },
      { issuer: 'https://issuer.example.com', audience: [] },
      { issuer: 'https://issuer.example.com', audience: 'x', algorithms: ['HS256'] },
      { issuer: 'https://issuer.example.com', audience: 'x', algorithms: ['none'] },
      { issuer: 'https://issuer.example.com', audience: 'x', clockToleranceSeconds: 3600 },
    ]) {
      expect(() => createOidcPlugin({ name: 'x', ...bad } as never)).toThrow(TypeError);
    }
  });
});

describe('authenticateLogin routing', () => {
  const password: AuthPlugin = {
    name: 'users',
    type: 'static',
    authenticate: async (l) =>
      l.username === 'alice' && l.password === 'pw'
        ? { ok: true, identity: { plugin: 'users', subject: 'alice', groups: [], claims: {} } }
        : { ok: false, reason: 'BAD_PASSWORD' },
  };

  it('sends _oidc to the oidc plugins only, other names to password plugins, JWTs to both', async () => {
    const token = issuer.sign(claims());
    expect(
      (await authenticateLogin([password, plugin], { username: '_oidc', password: token })).ok,
    ).toBe(true);
    expect(
      (await authenticateLogin([password, plugin], { username: 'gha', password: token })).ok,
    ).toBe(true);
    expect(
      (await authenticateLogin([password, plugin], { username: 'alice', password: 'pw' })).ok,
    ).toBe(true);
    // a password login never reaches the oidc plugin, and _oidc never reaches password plugins
    expect(await authenticateLogin([plugin], { username: 'alice', password: 'pw' })).toEqual({
      ok: false,
      reason: 'NOT_FOR_THIS_PLUGIN',
    });
    expect(await authenticateLogin([password], { username: '_oidc', password: 'pw' })).toEqual({
      ok: false,
      reason: 'NOT_FOR_THIS_PLUGIN',
    });
  });
});
