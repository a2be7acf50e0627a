import { createPolicy, createStaticUsersPlugin } from '@org/auth-plugins';
import { type StandIn, startStandIn } from '@org/tools/stand-ins';
import type { Hono } from 'hono';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createProxyApp } from './app.js';
import { LoginThrottle } from './login-throttle.js';
import { requestInfo } from './observe.js';
import { createTokenService } from './token-service.js';

const REALM = 'https://docker.example.com/token';
const SERVICE = 'docker.example.com';
const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
let upstream: StandIn;
let app: Hono;

beforeAll(async () => {
  upstream = await startStandIn((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' });
    res.end('{"schemaVersion":2}');
  });
  const tokens = await createTokenService({
    plugins: [
      createStaticUsersPlugin({
        name: 'users',
        users: [{ username: 'alice', password: 'wonderland' }],
      }),
    ],
    policy: createPolicy([
      { identities: ['users:alice'], repositories: ['team-a/**'], actions: ['pull'] },
    ]),
    issuer: 'https://docker.example.com',
    service: SERVICE,
  });
  app = createProxyApp({
    upstreams: [{ name: 'up', prefix: '', url: upstream.url }],
    auth: { tokens, realm: REALM, service: SERVICE },
  });
});
afterAll(() => upstream.close());
beforeEach(() => {
  upstream.requests.length = 0;
});

async function token(auth: string | undefined, scope: string): Promise<string> {
  const res = await app.request(`/token?service=${SERVICE}&scope=${encodeURIComponent(scope)}`, {
    headers: auth === undefined ? {} : { authorization: auth },
  });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { token: string; access_token: string; expires_in: number };
  expect(body.access_token).toBe(body.token);
  expect(body.expires_in).toBeGreaterThanOrEqual(60);
  return body.token;
}

async function code(res: Response): Promise<string | undefined> {
  return ((await res.json()) as { errors: Array<{ code: string }> }).errors[0]?.code;
}

describe('client authentication', () => {
  it('challenges the version check and every repository request, with the scope to ask for', async () => {
    const ping = await app.request('/v2/');
    expect(ping.status).toBe(401);
    expect(ping.headers.get('www-authenticate')).toBe(
      `Bearer realm="${REALM}",service="${SERVICE}"`,
    );
    const manifest = await app.request('/v2/team-a/app/manifests/v1');
    expect(manifest.status).toBe(401);
    expect(manifest.headers.get('www-authenticate')).toBe(
      `Bearer realm="${REALM}",service="${SERVICE}",scope="repository:team-a/app:pull"`,
    );
    expect(await code(manifest)).toBe('UNAUTHORIZED');
    expect(upstream.requests).toHaveLength(0);
  });

  it('serves a pull with a token from GET /token (Basic), and the ping with any valid token', async () => {
    const t = await token(basic('alice', 'wonderland'), 'repository:team-a/app:pull');
    expect((await app.request('/v2/', { headers: { authorization: `Bearer ${t}` } })).status).toBe(
      200,
    );
    const pull = new Request('http://proxy.test/v2/team-a/app/manifests/v1', {
      headers: { authorization: `Bearer ${t}` },
    });
    const res = await app.request(pull);
    expect(res.status).toBe(200);
    expect(upstream.requests[0]?.headers.authorization).toBeUndefined();
    expect(requestInfo(pull).identity).toBe('users:alice');
  });

  it('issues from the OAuth2 POST form too, and answers docker login (no scope)', async () => {
    const res = await app.request('/token', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'password',
        username: 'alice',
        password: 'wonderland',
        service: SERVICE,
        scope: 'repository:team-a/app:pull',
        client_id: 'containerd',
      }),
    });
    expect(res.status).toBe(200);
    const t = ((await res.json()) as { access_token: string }).access_token;
    expect(
      (
        await app.request('/v2/team-a/app/manifests/v1', {
          headers: { authorization: `Bearer ${t}` },
        })
      ).status,
    ).toBe(200);
    await token(basic('alice', 'wonderland'), '');
    const refresh = await app.request('/token', {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'x' }),
    });
    expect(refresh.status).toBe(400);
  });

  it('never lets a token for team-a read team-b: DENIED, nothing fetched upstream', async () => {
    const t = await token(
      basic('alice', 'wonderland'),
      'repository:team-a/app:pull repository:team-b/app:pull',
    );
    const res = await app.request('/v2/team-b/app/manifests/v1', {
      headers: { authorization: `Bearer ${t}` },
    });
    expect(res.status).toBe(401);
    expect(await code(res)).toBe('DENIED');
    expect(res.headers.get('www-authenticate')).toContain('error="insufficient_scope"');
    expect(upstream.requests).toHaveLength(0);
  });

  it('refuses a wrong password, a bogus Authorization header and a forged token', async () => {
    for (const auth of [
      basic('alice', 'nope'),
      'Basic !!!',
      `Basic ${'A'.repeat(5000)}`,
      'Negotiate abc',
    ]) {
      const res = await app.request('/token?scope=repository:team-a/app:pull', {
        headers: { authorization: auth },
      });
      expect(res.status).toBe(401);
      expect(await code(res)).toBe('UNAUTHORIZED');
    }
    const forged = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"sub":"users:alice"}').toString('base64url')}.`;
    for (const auth of [
      `Bearer ${forged}`,
      'Bearer not-a-jwt',
      'Bearer',
      basic('alice', 'wonderland'),
    ]) {
      const res = await app.request('/v2/team-a/app/manifests/v1', {
        headers: { authorization: auth },
      });
      expect(res.status).toBe(401);
    }
    expect(upstream.requests).toHaveLength(0);
  });

  it('gives anonymous clients a token with no access when the policy grants them nothing', async () => {
    const t = await token(undefined, 'repository:team-a/app:pull');
    expect(
      (
        await app.request('/v2/team-a/app/manifests/v1', {
          headers: { authorization: `Bearer ${t}` },
        })
      ).status,
    ).toBe(401);
  });

  it('refuses a token request for another service and publishes the JWKS', async () => {
    expect((await app.request('/token?service=other')).status).toBe(400);
    const jwks = (await (await app.request('/.well-known/jwks.json')).json()) as {
      keys: Array<Record<string, unknown>>;
    };
    expect(jwks.keys[0]).toMatchObject({ kty: 'EC', alg: 'ES256' });
    expect(jwks.keys[0]).not.toHaveProperty('d');
  });
});

describe('failed-login limits', () => {
  it('answers 429 with Retry-After once a username or an address failed too often, and lets others in', async () => {
    let t = 1_000_000;
    const throttled = createProxyApp({
      upstreams: [{ name: 'up', prefix: '', url: upstream.url }],
      auth: {
        tokens: await createTokenService({
          plugins: [
            createStaticUsersPlugin({
              name: 'users',
              users: [
                { username: 'alice', password: 'wonderland' },
                { username: 'bob', password: 'builder' },
              ],
            }),
          ],
          policy: createPolicy([]),
          issuer: 'https://docker.example.com',
          service: SERVICE,
        }),
        realm: REALM,
        service: SERVICE,
        loginThrottle: new LoginThrottle({
          maxFailuresPerUser: 3,
          maxFailuresPerAddress: 1000,
          windowSeconds: 60,
          now: () => t,
        }),
      },
    });
    const attempt = (user: string, password: string) =>
      throttled.request(`/token?service=${SERVICE}`, {
        headers: { authorization: basic(user, password) },
      });
    for (let i = 0; i < 3; i++) expect((await attempt('alice', `guess-${i}`)).status).toBe(401);
    const blocked = await attempt('alice', 'wonderland'); // even the right password, for now
    expect(blocked.status).toBe(429);
    expect(blocked.headers.get('retry-after')).toBe('60');
    expect(await code(blocked)).toBe('TOOMANYREQUESTS');
    expect((await attempt('bob', 'builder')).status).toBe(200);
    t += 61_000;
    expect((await attempt('alice', 'wonderland')).status).toBe(200);
  });

  it('keeps bounded memory: the oldest usernames are forgotten first', () => {
    const throttle = new LoginThrottle({ maxFailuresPerUser: 1, maxEntries: 100 });
    throttle.failed('first', undefined);
    expect(throttle.retryAfter('first', undefined)).toBeGreaterThan(0);
    for (let i = 0; i < 100; i++) throttle.failed(`spray-${i}`, undefined);
    expect(throttle.retryAfter('first', undefined)).toBe(0);
    expect(throttle.retryAfter('spray-99', undefined)).toBeGreaterThan(0);
  });

  it('counts per address too', () => {
    const throttle = new LoginThrottle({ maxFailuresPerAddress: 2, maxFailuresPerUser: 100 });
    throttle.failed('a', '10.0.0.1');
    throttle.failed('b', '10.0.0.1');
    expect(throttle.retryAfter('c', '10.0.0.1')).toBeGreaterThan(0);
    expect(throttle.retryAfter('c', '10.0.0.2')).toBe(0);
  });
});
