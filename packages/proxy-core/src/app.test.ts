import { createHash } from 'node:crypto';
import { json, type StandIn, startStandIn } from '@org/tools/stand-ins';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createProxyApp } from './app.js';
import { requestInfo } from './observe.js';

const MANIFEST = JSON.stringify({
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  layers: [],
});
const MANIFEST_DIGEST = `sha256:${createHash('sha256').update(MANIFEST).digest('hex')}`;
const BLOB = Buffer.from('0123456789abcdefghij');
const BLOB_DIGEST = `sha256:${createHash('sha256').update(BLOB).digest('hex')}`;
let upstream: StandIn;
let mode: 'normal' | 'wrong-manifest' | 'huge-manifest' | 'slow' | 'delayed' = 'normal';

beforeAll(async () => {
  upstream = await startStandIn(async (req, res) => {
    if (mode === 'slow') await new Promise((r) => setTimeout(r, 500));
    if (mode === 'delayed') await new Promise((r) => setTimeout(r, 100));
    const m = /^\/v2\/(.+)\/(manifests|blobs|tags)\/(.+)$/.exec(req.path);
    if (!m) return json(res, 404, { errors: [{ code: 'NOT_FOUND', message: 'no' }] });
    const [, name, kind] = m;
    if (name !== 'up/team/app') {
      return json(res, 404, {
        errors: [
          {
            code: 'NAME_UNKNOWN',
            message: 'repository name not known to registry',
            detail: { name },
          },
        ],
      });
    }
    if (kind === 'manifests') {
      const body =
        mode === 'wrong-manifest'
          ? `${MANIFEST} `
          : mode === 'huge-manifest'
            ? 'x'.repeat(2048)
            : MANIFEST;
      res.writeHead(200, {
        'content-type': 'application/vnd.oci.image.manifest.v1+json',
        'docker-content-digest': MANIFEST_DIGEST,
        'content-length': Buffer.byteLength(body),
        'x-upstream-secret': 'internal',
        'www-authenticate': 'Bearer realm="https://upstream.example/token"',
        'keep-alive': 'timeout=5',
      });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    if (kind === 'blobs') {
      const range = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers.range ?? ''));
      if (range) {
        const [from, to] = [Number(range[1]), Number(range[2])];
        if (from >= BLOB.length) {
          res.writeHead(416, { 'content-range': `bytes */${BLOB.length}` });
          res.end();
          return;
        }
        res.writeHead(206, {
          'content-range': `bytes ${from}-${to}/${BLOB.length}`,
          'content-length': to - from + 1,
          'accept-ranges': 'bytes',
        });
        res.end(BLOB.subarray(from, to + 1));
        return;
      }
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': BLOB.length,
        'docker-content-digest': BLOB_DIGEST,
      });
      res.end(BLOB);
      return;
    }
    json(
      res,
      200,
      { name: 'up/team/app', tags: ['v1', 'v2'] },
      {
        link: `<${upstream.url}/v2/up/team/app/tags/list?last=v2&n=2>; rel="next"`,
      },
    );
  });
});
afterAll(() => upstream.close());
beforeEach(() => {
  upstream.requests.length = 0;
  mode = 'normal';
});

type OciErrors = { errors: Array<{ code: string; message: string; detail?: unknown }> };
async function errorOf(res: Response) {
  return ((await res.json()) as OciErrors).errors[0];
}

function app(extra: Partial<Parameters<typeof createProxyApp>[0]> = {}) {
  return createProxyApp({
    upstreams: [{ name: 'local', prefix: 'mirror', url: upstream.url, repositoryPrefix: 'up' }],
    manifestMaxBytes: 1024,
    ...extra,
  });
}

describe('createProxyApp', () => {
  it('answers the version check', async () => {
    const res = await app().request('/v2/');
    expect(res.status).toBe(200);
    expect(res.headers.get('docker-distribution-api-version')).toBe('registry/2.0');
    expect(upstream.requests).toHaveLength(0);
  });

  it('proxies a manifest by tag: Accept forwarded, digest and type kept, upstream-only headers dropped', async () => {
    const res = await app().request('/v2/mirror/team/app/manifests/v1', {
      headers: {
        accept: 'application/vnd.oci.image.manifest.v1+json',
        authorization: 'Bearer client-token',
      },
    });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(MANIFEST);
    expect(res.headers.get('docker-content-digest')).toBe(MANIFEST_DIGEST);
    expect(res.headers.get('content-type')).toBe('application/vnd.oci.image.manifest.v1+json');
    for (const h of ['x-upstream-secret', 'www-authenticate', 'keep-alive'])
      expect(res.headers.get(h)).toBeNull();
    const sent = upstream.requests[0];
    expect(sent?.path).toBe('/v2/up/team/app/manifests/v1');
    expect(sent?.headers.accept).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(sent?.headers.authorization).toBeUndefined();
  });

  it('records what it learnt about each request for logs and metrics', async () => {
    const manifest = new Request('http://proxy.test/v2/mirror/team/app/manifests/v1');
    expect((await app().request(manifest)).status).toBe(200);
    expect(requestInfo(manifest)).toEqual({
      kind: 'manifest',
      repository: 'mirror/team/app',
      reference: 'v1',
      identity: 'anonymous',
      upstream: 'local',
      digest: MANIFEST_DIGEST,
    });
    const missing = new Request('http://proxy.test/v2/mirror/other/manifests/v1');
    expect((await app().request(missing)).status).toBe(404);
    expect(requestInfo(missing).digest).toBeUndefined();
    expect(requestInfo(missing).upstream).toBe('local');
    const blob = new Request(`http://proxy.test/v2/mirror/team/app/blobs/${BLOB_DIGEST}`);
    await (await app().request(blob)).arrayBuffer();
    expect(requestInfo(blob)).toMatchObject({ kind: 'blob', upstream: 'local' });
  });

  it('verifies a manifest fetched by digest', async () => {
    expect((await app().request(`/v2/mirror/team/app/manifests/${MANIFEST_DIGEST}`)).status).toBe(
      200,
    );
    mode = 'wrong-manifest';
    const res = await app().request(`/v2/mirror/team/app/manifests/${MANIFEST_DIGEST}`);
    expect(res.status).toBe(502);
    expect((await errorOf(res))?.code).toBe('DIGEST_INVALID');
  });

  it("refuses a tag whose manifest does not match the upstream's own digest header", async () => {
    mode = 'wrong-manifest';
    expect((await app().request('/v2/mirror/team/app/manifests/v1')).status).toBe(502);
  });

  it('caps manifests', async () => {
    mode = 'huge-manifest';
    const res = await app().request('/v2/mirror/team/app/manifests/v1');
    expect(res.status).toBe(502);
    expect((await errorOf(res))?.code).toBe('MANIFEST_INVALID');
  });

  it('answers HEAD without a body', async () => {
    const res = await app().request('/v2/mirror/team/app/manifests/v1', { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.headers.get('docker-content-digest')).toBe(MANIFEST_DIGEST);
    expect(await res.text()).toBe('');
  });

  it('streams blobs and passes ranges through (206, 416)', async () => {
    const full = await app().request(`/v2/mirror/team/app/blobs/${BLOB_DIGEST}`);
    expect(Buffer.from(await full.arrayBuffer())).toEqual(BLOB);
    const part = await app().request(`/v2/mirror/team/app/blobs/${BLOB_DIGEST}`, {
      headers: { range: 'bytes=5-9' },
    });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe('bytes 5-9/20');
    expect(await part.text()).toBe('56789');
    const beyond = await app().request(`/v2/mirror/team/app/blobs/${BLOB_DIGEST}`, {
      headers: { range: 'bytes=50-60' },
    });
    expect(beyond.status).toBe(416);
  });

  it('rewrites the repository name and Link header of tag lists', async () => {
    const res = await app().request('/v2/mirror/team/app/tags/list?n=2');
    expect(await res.json()).toEqual({ name: 'mirror/team/app', tags: ['v1', 'v2'] });
    expect(res.headers.get('link')).toBe('</v2/mirror/team/app/tags/list?last=v2&n=2>; rel="next"');
    expect(upstream.requests[0]?.url.search).toBe('?n=2');
  });

  it('passes upstream errors through with names rewritten', async () => {
    const res = await app().request('/v2/mirror/other/manifests/v1');
    expect(res.status).toBe(404);
    expect(await errorOf(res)).toMatchObject({
      code: 'NAME_UNKNOWN',
      detail: { name: 'mirror/other' },
    });
  });

  it.each([
    ['PUT', '/v2/mirror/team/app/manifests/v1'],
    ['POST', '/v2/mirror/team/app/blobs/uploads/'],
    ['DELETE', `/v2/mirror/team/app/blobs/${BLOB_DIGEST}`],
    ['PATCH', '/v2/mirror/team/app/blobs/uploads/abc'],
  ])('refuses %s %s with UNSUPPORTED, nothing sent upstream', async (method, path) => {
    const res = await app().request(path, { method });
    expect(res.status).toBe(405);
    expect((await errorOf(res))?.code).toBe('UNSUPPORTED');
    expect(upstream.requests).toHaveLength(0);
  });

  it.each([
    '/v2/mirror/team%2Fapp/manifests/v1',
    '/v2/mirror/Team/manifests/v1',
    '/v2/mirror/team/app/manifests/-x',
    '/v2/other/app/manifests/v1',
    '/v2/_catalog',
  ])('refuses %s without asking upstream', async (path) => {
    const res = await app().request(path);
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect((await errorOf(res))?.code).toMatch(
      /NAME_INVALID|MANIFEST_INVALID|NAME_UNKNOWN|UNSUPPORTED/,
    );
    expect(upstream.requests).toHaveLength(0);
  });

  it('answers 502 for an unreachable upstream and 504 for a slow one', async () => {
    const down = createProxyApp({
      upstreams: [{ name: 'down', prefix: '', url: 'http://127.0.0.1:9' }],
    });
    const res = await down.request('/v2/team/app/manifests/v1');
    expect(res.status).toBe(502);
    expect((await errorOf(res))?.message).toContain('unreachable');
    mode = 'slow';
    const slow = await app({ upstreamTimeoutMs: 100 }).request('/v2/mirror/team/app/manifests/v1');
    expect(slow.status).toBe(504);
  });
});

describe('routing by Host and containerd ns', () => {
  const routed = () =>
    createProxyApp({
      upstreams: [
        { name: 'nowhere', prefix: '', url: 'http://127.0.0.1:9' },
        {
          name: 'vanity',
          prefix: '',
          url: upstream.url,
          repositoryPrefix: 'up',
          hosts: ['vanity.example.com'],
        },
        { name: 'mirror', prefix: '', url: upstream.url, ns: ['registry.example.org'] },
      ],
    });

  it('picks the upstream by the Host header', async () => {
    const res = await routed().request('/v2/team/app/manifests/v1', {
      headers: { host: 'vanity.example.com' },
    });
    expect(res.status).toBe(200);
    expect(upstream.requests[0]?.path).toBe('/v2/up/team/app/manifests/v1');
  });

  it("picks the upstream by containerd's ns parameter, and does not forward it", async () => {
    const res = await routed().request('/v2/up/team/app/manifests/v1?ns=registry.example.org');
    expect(res.status).toBe(200);
    expect(upstream.requests[0]?.url.search).toBe('');
  });
});

describe('coalescing', () => {
  it('makes one upstream manifest fetch for 200 concurrent identical pulls', async () => {
    mode = 'delayed';
    const a = app();
    const all = await Promise.all(
      Array.from({ length: 200 }, () =>
        a.request(`/v2/mirror/team/app/manifests/${MANIFEST_DIGEST}`),
      ),
    );
    expect(all.every((r) => r.status === 200)).toBe(true);
    expect(new Set(await Promise.all(all.map((r) => r.text())))).toEqual(new Set([MANIFEST]));
    expect(upstream.requests.filter((r) => r.path.includes('/manifests/'))).toHaveLength(1);
    // once done, the next pull fetches again (in-flight sharing, not a cache)
    await a.request(`/v2/mirror/team/app/manifests/${MANIFEST_DIGEST}`);
    expect(upstream.requests.filter((r) => r.path.includes('/manifests/'))).toHaveLength(2);
  });
});
