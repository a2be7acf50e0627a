import { json, type StandIn, startStandIn } from '@org/tools/stand-ins';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createProxyApp } from './app.js';

const BASIC = `Basic ${Buffer.from('puller:s3cret').toString('base64')}`;
const D1 = `sha256:${'1'.repeat(64)}`;
const D2 = `sha256:${'2'.repeat(64)}`;
let upstream: StandIn;
let storage: StandIn;
const valid = new Set<string>();
let issued = 0;
let requireCreds = false;
let expiresIn = 300;

beforeAll(async () => {
  storage = await startStandIn((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.end('blob bytes from storage');
  });
  upstream = await startStandIn((req, res) => {
    if (req.path === '/token') {
      if (requireCreds && req.headers.authorization !== BASIC)
        return json(res, 401, { details: 'bad credentials' });
      if (
        req.url.searchParams.get('service') !== 'stand-in' ||
        req.url.searchParams.get('scope') !== 'repository:up/team/app:pull'
      ) {
        return json(res, 400, { details: 'wrong service or scope' });
      }
      const token = `tok-${++issued}`;
      valid.add(token);
      return json(res, 200, { token, access_token: token, expires_in: expiresIn });
    }
    if (req.path === '/storage/relative') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(`same-origin bytes, auth=${req.headers.authorization ?? 'none'}`);
      return;
    }
    const auth = String(req.headers.authorization ?? '');
    if (!valid.has(auth.replace(/^Bearer /, ''))) {
      res.writeHead(401, {
        'content-type': 'application/json',
        'www-authenticate': `Bearer realm="${upstream.url}/token",service="stand-in",scope="repository:up/team/app:pull"`,
      });
      res.end(
        JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }),
      );
      return;
    }
    if (req.path === `/v2/up/team/app/blobs/${D1}`) {
      res.writeHead(307, { location: `${storage.url}/bucket/blob?signature=abc` });
      res.end();
      return;
    }
    if (req.path === `/v2/up/team/app/blobs/${D2}`) {
      res.writeHead(302, { location: '/storage/relative' });
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' });
    res.end('{"schemaVersion":2}');
  });
});
afterAll(async () => {
  await upstream.close();
  await storage.close();
});
beforeEach(() => {
  valid.clear();
  issued = 0;
  requireCreds = false;
  expiresIn = 300;
  upstream.requests.length = 0;
  storage.requests.length = 0;
});

function app(
  extra: {
    credentials?: Parameters<typeof createProxyApp>[0]['upstreams'][number]['credentials'];
    allowInternalRedirects?: string[];
    now?: () => number;
    observer?: Parameters<typeof createProxyApp>[0]['observer'];
  } = {},
) {
  return createProxyApp({
    upstreams: [
      {
        name: 'protected',
        prefix: '',
        url: upstream.url,
        repositoryPrefix: 'up',
        ...(extra.credentials ? { credentials: extra.credentials } : {}),
        ...(extra.allowInternalRedirects
          ? { allowInternalRedirects: extra.allowInternalRedirects }
          : {}),
      },
    ],
    ...(extra.now ? { now: extra.now } : {}),
    ...(extra.observer ? { observer: extra.observer } : {}),
  });
}
const tokenRequests = () => upstream.requests.filter((r) => r.path === '/token');

describe('upstream authentication', () => {
  it('runs the anonymous token flow and caches the token', async () => {
    const a = app();
    for (let i = 0; i < 5; i++)
      expect((await a.request('/v2/team/app/manifests/v1')).status).toBe(200);
    expect(tokenRequests()).toHaveLength(1);
    expect(tokenRequests()[0]?.headers.authorization).toBeUndefined();
  });

  it('sends the configured credentials to the token service as Basic', async () => {
    requireCreds = true;
    const a = app({ credentials: { provider: 'static', username: 'puller', password: 's3cret' } });
    expect((await a.request('/v2/team/app/manifests/v1')).status).toBe(200);
    expect(tokenRequests()[0]?.headers.authorization).toBe(BASIC);
  });

  it('reports refused credentials as 502 without echoing them', async () => {
    requireCreds = true;
    const res = await app({
      credentials: { provider: 'static', username: 'puller', password: 'wrong' },
    }).request('/v2/team/app/manifests/v1');
    expect(res.status).toBe(502);
    const text = await res.text();
    expect(text).toContain('refused');
    expect(text).not.toContain('wrong');
  });

  it('tells the observer about each token fetch and its outcome', async () => {
    const seen: string[] = [];
    const observer = { upstreamTokenFetch: (u: string, ok: boolean) => seen.push(`${u}:${ok}`) };
    await app({ observer }).request('/v2/team/app/manifests/v1');
    requireCreds = true;
    await app({
      observer,
      credentials: { provider: 'static', username: 'puller', password: 'wrong' },
    }).request('/v2/team/app/manifests/v1');
    expect(seen).toEqual(['protected:true', 'protected:false']);
  });

  it('makes one token fetch for 50 concurrent requests', async () => {
    const a = app();
    const all = await Promise.all(
      Array.from({ length: 50 }, () => a.request('/v2/team/app/manifests/v1')),
    );
    expect(all.every((r) => r.status === 200)).toBe(true);
    expect(tokenRequests()).toHaveLength(1);
  });

  it('fetches a new token once the cached one is due', async () => {
    let t = 1_000_000;
    expiresIn = 60;
    const a = app({ now: () => t });
    await a.request('/v2/team/app/manifests/v1');
    t += 45_000; // 60 s token, 10 s margin: still good
    await a.request('/v2/team/app/manifests/v1');
    expect(tokenRequests()).toHaveLength(1);
    t += 10_000;
    await a.request('/v2/team/app/manifests/v1');
    expect(tokenRequests()).toHaveLength(2);
  });

  it('refreshes once and retries when a cached token is refused', async () => {
    const a = app();
    await a.request('/v2/team/app/manifests/v1');
    valid.clear(); // the upstream revoked it
    expect((await a.request('/v2/team/app/manifests/v1')).status).toBe(200);
    expect(tokenRequests()).toHaveLength(2);
  });

  it('follows a storage redirect itself without sending the upstream token there', async () => {
    // the storage stand-in is on loopback, which only an allow-list lets the proxy reach
    const res = await app({ allowInternalRedirects: ['127.0.0.1'] }).request(
      `/v2/team/app/blobs/${D1}`,
    );
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('blob bytes from storage');
    expect(storage.requests[0]?.url.search).toBe('?signature=abc');
    expect(storage.requests[0]?.headers.authorization).toBeUndefined();
  });

  it('resolves a relative same-origin redirect and keeps the upstream token for it', async () => {
    const res = await app().request(`/v2/team/app/blobs/${D2}`);
    expect(await res.text()).toBe('same-origin bytes, auth=Bearer tok-1');
  });
});

describe('blobs.mode redirect', () => {
  const redirecting = () =>
    createProxyApp({
      upstreams: [{ name: 'protected', prefix: '', url: upstream.url, repositoryPrefix: 'up' }],
      blobs: { mode: 'redirect' },
    });

  it('hands a storage redirect to the client: no blob byte passes the proxy', async () => {
    const res = await redirecting().request(`/v2/team/app/blobs/${D1}`);
    expect(res.status).toBe(307);
    expect(res.headers.get('location')).toBe(`${storage.url}/bucket/blob?signature=abc`);
    expect(storage.requests).toHaveLength(0);
  });

  it('still follows a same-origin redirect itself and streams', async () => {
    const res = await redirecting().request(`/v2/team/app/blobs/${D2}`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('same-origin bytes, auth=Bearer tok-1');
  });
});
