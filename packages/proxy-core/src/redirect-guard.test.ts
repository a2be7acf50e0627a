import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { type StandIn, startStandIn } from '@org/tools/stand-ins';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createProxyApp } from './app.js';
import { checkRedirect, internalKind, parseRedirectAllow, type Resolve } from './redirect-guard.js';

describe('internalKind', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.0.9', 'loopback'],
    ['::1', 'loopback'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['[::ffff:7f00:1]', 'loopback'],
    ['64:ff9b::7f00:1', 'loopback'],
    ['169.254.169.254', 'link-local'],
    ['::ffff:169.254.169.254', 'link-local'],
    ['fe80::1', 'link-local'],
    ['10.1.2.3', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['fd00::1', 'unique-local'],
    ['fc00::1', 'unique-local'],
    ['100.64.0.1', 'shared (CGNAT)'],
    ['100.127.255.255', 'shared (CGNAT)'],
    ['0.0.0.0', 'unspecified'],
    ['::', 'unspecified'],
    ['::7f00:1', 'IPv4-compatible'],
    ['224.0.0.1', 'multicast'],
    ['255.255.255.255', 'reserved'],
    ['not-an-ip', 'not an IP address'],
  ])('%s is %s', (address, kind) => {
    expect(internalKind(address)).toBe(kind);
  });

  it.each([
    '8.8.8.8',
    '1.1.1.1',
    '172.32.0.1',
    '172.15.255.255',
    '100.128.0.1',
    '11.0.0.1',
    '2001:4860:4860::8888',
    '::ffff:8.8.8.8',
    '64:ff9b::808:808',
  ])('%s is public', (address) => {
    expect(internalKind(address)).toBeUndefined();
  });
});

describe('parseRedirectAllow', () => {
  it('takes CIDRs, addresses and host[:port] names', () => {
    const allow = parseRedirectAllow(
      ['10.0.0.0/8', 'fd00::/8', '192.168.1.5', '[::1]', 'MinIO.internal', 'storage.internal:9000'],
      'x',
    );
    expect(allow.networks.check('10.9.9.9', 'ipv4')).toBe(true);
    expect(allow.networks.check('fd12::1', 'ipv6')).toBe(true);
    expect(allow.networks.check('192.168.1.5', 'ipv4')).toBe(true);
    expect(allow.networks.check('192.168.1.6', 'ipv4')).toBe(false);
    expect(allow.networks.check('::1', 'ipv6')).toBe(true);
    expect([...allow.hosts]).toEqual(['minio.internal', 'storage.internal:9000']);
  });

  it.each([
    [['10.0.0.0/33']],
    [['::/129']],
    [['http://storage.internal']],
    [['storage.internal/path']],
    [['*.internal']],
    [['host:99999']],
    [['']],
    [[42]],
    ['10.0.0.0/8'],
  ])('refuses %j naming the option', (entries) => {
    expect(() => parseRedirectAllow(entries, 'upstreams[0].allowInternalRedirects')).toThrow(
      /^upstreams\[0\]\.allowInternalRedirects/,
    );
  });
});

describe('checkRedirect', () => {
  const upstream = (allow: string[] = []) => ({
    name: 'up',
    base: new URL('http://127.0.0.1:5000'),
    redirectAllow: parseRedirectAllow(allow, 'allow'),
  });
  const publicResolve: Resolve = async () => ['93.184.216.34'];

  it.each([
    'http://127.0.0.1:5001/x',
    'http://127.0.0.2/x',
    'http://2130706433/x',
    'http://0x7f.1/x',
    'http://017700000001/x',
    'http://127.1/x',
    'http://[::ffff:127.0.0.1]/x',
    'http://[::1]/x',
    'http://0/x',
    'http://169.254.169.254/latest/meta-data/',
    'http://[fe80::1]/x',
    'http://10.0.0.1/x',
    'http://172.16.5.4/x',
    'http://192.168.0.1/x',
    'http://100.64.0.1/x',
    'http://[fd00::1]/x',
  ])('refuses %s (an internal address, however spelled)', async (url) => {
    await expect(checkRedirect(new URL(url), upstream(), publicResolve)).rejects.toMatchObject({
      status: 502,
      code: 'UNAVAILABLE',
      message: expect.stringMatching(/^upstream up redirected to an internal address/),
    });
  });

  it('refuses a name that resolves to an internal address (any of its addresses)', async () => {
    const resolve: Resolve = async () => ['93.184.216.34', '127.0.0.1'];
    await expect(
      checkRedirect(new URL('https://storage.example/b?sig=secret'), upstream(), resolve),
    ).rejects.toThrow(/internal address \(loopback\)/);
  });

  it('refuses a name that does not resolve, without echoing the URL', async () => {
    const resolve: Resolve = async () => {
      throw new Error('ENOTFOUND');
    };
    const err = await checkRedirect(
      new URL('https://nowhere.example/b?sig=secret'),
      upstream(),
      resolve,
    ).then(
      () => new Error('followed'),
      (e: unknown) => e as Error,
    );
    expect(err.message).toMatch(/does not resolve/);
    expect(err.message).not.toMatch(/nowhere|secret/);
  });

  it('follows the same origin, public hosts and what the allow-list names', async () => {
    const never: Resolve = async () => {
      throw new Error('not asked');
    };
    await checkRedirect(new URL('http://127.0.0.1:5000/other'), upstream(), never);
    await checkRedirect(new URL('https://storage.example/b'), upstream(), publicResolve);
    await checkRedirect(new URL('http://10.1.2.3:9000/b'), upstream(['10.0.0.0/8']), never);
    await checkRedirect(
      new URL('http://storage.internal:9000/b'),
      upstream(['storage.internal:9000']),
      never,
    );
    await checkRedirect(new URL('http://minio.internal/b'), upstream(['minio.internal']), never);
    await checkRedirect(
      new URL('http://[::ffff:10.0.0.1]/b'),
      upstream(['10.0.0.0/8']),
      publicResolve,
    );
    // a name entry with a port allows that port only
    await expect(
      checkRedirect(
        new URL('http://storage.internal:9001/b'),
        upstream(['storage.internal:9000']),
        async () => ['10.0.0.1'],
      ),
    ).rejects.toThrow(/private/);
  });
});

/**
 * Through the app, against a real upstream on loopback that redirects blob GETs to whatever a
 * test sets, and a storage stand-in that counts what reaches it.
 */
describe('redirects to internal addresses through the proxy', () => {
  const DIGEST = `sha256:${'a'.repeat(64)}`;
  let upstream: StandIn;
  let storage: StandIn;
  let location = '';
  beforeAll(async () => {
    storage = await startStandIn((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end('storage bytes');
    });
    upstream = await startStandIn((req, res) => {
      if (req.path === `/v2/team/app/blobs/${DIGEST}`) {
        res.writeHead(307, { location });
        res.end();
        return;
      }
      if (req.path === '/same-origin/blob') {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        res.end('same-origin bytes');
        return;
      }
      res.writeHead(404).end();
    });
  });
  afterAll(async () => {
    await upstream.close();
    await storage.close();
  });
  beforeEach(() => {
    storage.requests.length = 0;
  });

  const app = (extra: { allow?: string[]; resolveHost?: Resolve; redirect?: boolean } = {}) =>
    createProxyApp({
      upstreams: [
        {
          name: 'up',
          prefix: '',
          url: upstream.url,
          ...(extra.allow ? { allowInternalRedirects: extra.allow } : {}),
        },
      ],
      ...(extra.resolveHost ? { resolveHost: extra.resolveHost } : {}),
      ...(extra.redirect ? { blobs: { mode: 'redirect' as const } } : {}),
    });

  /** The app on a real node:http server, where blob GETs take the raw transport. */
  async function overNode(a: ReturnType<typeof app>, path: string) {
    const server = serve({ fetch: a.fetch, hostname: '127.0.0.1', port: 0 });
    await new Promise<void>((r) => server.once('listening', () => r()));
    try {
      const { port } = server.address() as AddressInfo;
      const res = await fetch(`http://127.0.0.1:${port}${path}`);
      return { status: res.status, text: await res.text() };
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  }
  const blob = `/v2/team/app/blobs/${DIGEST}`;
  const targets = () => [
    `http://localhost:${storage.port}/bucket/blob?X-Amz-Signature=secret`,
    `http://2130706433:${storage.port}/bucket/blob?X-Amz-Signature=secret`,
    `http://0x7f.1:${storage.port}/bucket/blob?X-Amz-Signature=secret`,
    `http://[::ffff:127.0.0.1]:${storage.port}/bucket/blob?X-Amz-Signature=secret`,
    `http://127.0.0.2:${storage.port}/bucket/blob?X-Amz-Signature=secret`,
    `http://0.0.0.0:${storage.port}/bucket/blob?X-Amz-Signature=secret`,
    'http://169.254.169.254/latest/meta-data/iam/security-credentials/',
  ];

  it.each([
    ['fetch', 'web'],
    ['node:http', 'node'],
  ])(
    'refuses every internal spelling with 502 and no storage request (%s transport)',
    async (_, how) => {
      for (const target of targets()) {
        location = target;
        const res =
          how === 'node'
            ? await overNode(app(), blob)
            : await Promise.resolve(app().request(blob)).then(async (r) => ({
                status: r.status,
                text: await r.text(),
              }));
        expect(res.status, target).toBe(502);
        const body = JSON.parse(res.text) as { errors: Array<{ code: string; message: string }> };
        expect(body.errors[0]?.code).toBe('UNAVAILABLE');
        expect(body.errors[0]?.message).toMatch(/^upstream up redirected to an internal address/);
        expect(res.text).not.toMatch(/secret|bucket|169\.254/);
      }
      expect(storage.requests).toHaveLength(0);
    },
  );

  it('refuses a host name resolving to loopback (DNS), and one that rebinds at connect', async () => {
    location = `http://storage.example:${storage.port}/bucket/blob`;
    const res = await app({ resolveHost: async () => ['127.0.0.1'] }).request(blob);
    expect(res.status).toBe(502);
    expect(await res.text()).toMatch(/internal address \(loopback\)/);
    // public when checked, loopback when the socket connects
    let calls = 0;
    const rebinding: Resolve = async () => (calls++ === 0 ? ['93.184.216.34'] : ['127.0.0.1']);
    const rebound = await overNode(app({ resolveHost: rebinding }), blob);
    expect(rebound.status).toBe(502);
    expect(rebound.text).toMatch(/internal address \(loopback\)/);
    expect(calls).toBe(2);
    expect(storage.requests).toHaveLength(0);
  });

  it('follows an allow-listed internal target, by network or by name', async () => {
    location = `http://localhost:${storage.port}/bucket/blob`;
    for (const allow of [['127.0.0.0/8', '::1'], [`localhost:${storage.port}`]]) {
      const res = await app({ allow }).request(blob);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('storage bytes');
      const node = await overNode(app({ allow }), blob);
      expect(node).toEqual({ status: 200, text: 'storage bytes' });
    }
    expect(storage.requests).toHaveLength(4);
  });

  it('keeps following redirects within the upstream origin, itself on loopback', async () => {
    location = `${upstream.url}/same-origin/blob`;
    expect(await overNode(app(), blob)).toEqual({ status: 200, text: 'same-origin bytes' });
    location = '/same-origin/blob';
    const res = await app().request(blob);
    expect(await res.text()).toBe('same-origin bytes');
  });

  it('hands internal targets to the client in blobs redirect mode (its network, not ours)', async () => {
    location = `http://127.0.0.2:${storage.port}/bucket/blob`;
    const res = await app({ redirect: true }).request(blob);
    expect(res.status).toBe(307);
    expect(res.headers.get('location')).toBe(location);
    expect(storage.requests).toHaveLength(0);
  });
});
