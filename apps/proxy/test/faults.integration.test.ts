/**
 * Upstream faults, injected by a forwarder (tools/stand-ins startFaultProxy) between the built
 * registry-proxy binary and a real docker-registry / token server / metadata server: resets
 * and stalls mid-body, stalled headers, 5xx and 429, refused connections, a token service down,
 * a cloud credential source down or slow. Clients must get a correct error promptly (a test
 * timeout is the "never hangs" bound), retries must stay bounded, and the proxy must recover.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type DockerRegistry,
  type FaultProxy,
  type PushedImage,
  pushImage,
  type RegistryTokenServer,
  type StandIn,
  startDockerRegistry,
  startFaultProxy,
  startGceMetadata,
  startRegistryTokenServer,
} from '@org/tools/stand-ins';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connectionsTo, eventually, memory, openSockets, rawGet, unchunk, until } from './proc.js';
import { type Started, start } from './start.js';

const dir = mkdtempSync(join(tmpdir(), 'registry-proxy-faults-'));
const MiB = 1024 * 1024;
const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const MANIFEST_ACCEPT = 'application/vnd.oci.image.manifest.v1+json';
const closers: Array<() => Promise<unknown>> = [];

afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

function writeConfig(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

async function startProxy(config: string, env?: NodeJS.ProcessEnv): Promise<Started> {
  const proxy = await start(['serve', '--listen', '127.0.0.1:0', '--config', config], env);
  closers.push(() => proxy.stop());
  return proxy;
}

/** A GET through the proxy with fetch; body as text. */
async function get(
  proxy: Started,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; text: string }> {
  const res = await fetch(`http://${proxy.address}${path}`, { headers });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

const ociError = (text: string) =>
  (JSON.parse(text) as { errors: Array<{ code: string; message: string }> }).errors[0];

/** The value of one sample of the proxy's /metrics, 0 when absent. */
async function metric(proxy: Started, sample: string): Promise<number> {
  const text = await (await fetch(`http://${proxy.address}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line === undefined ? 0 : Number(line.slice(sample.length + 1));
}

describe('a flaky upstream registry', () => {
  let registry: DockerRegistry;
  let image: PushedImage;
  let fault: FaultProxy;
  let proxy: Started;
  let pid: number;
  let layer: string;
  let size: number;
  let blobPath: string;
  let manifestPath: string;
  let sockets: number;
  let rssKiB: number;
  const blobs = /\/blobs\//;
  const manifests = /\/manifests\//;

  beforeAll(async () => {
    registry = await startDockerRegistry();
    closers.push(() => registry.close());
    image = await pushImage(registry, dir, 'acme/app', [{ 'opt/blob.bin': randomBytes(4 * MiB) }]);
    fault = await startFaultProxy(registry.url, { keepAliveTimeoutMs: 500 });
    closers.push(() => fault.close());
    proxy = await startProxy(
      writeConfig(
        'flaky.yaml',
        [
          'server: { keepAliveTimeoutMs: 1000 }',
          'upstreams:',
          `  - { name: local, prefix: mirror, url: "${fault.url}", repositoryPrefix: acme }`,
          'upstreamTimeoutMs: 2000',
          'upstreamIdleTimeoutMs: 1000',
          'retries: { attempts: 3, backoffMs: 20, maxBackoffMs: 200, minPerWindow: 1000 }',
        ].join('\n'),
      ),
    );
    pid = proxy.child.pid as number;
    sockets = openSockets(pid);
    layer = image.layerDigests[0] as string;
    size = readFileSync(join(image.layout, 'blobs', 'sha256', layer.slice(7))).length;
    blobPath = `/v2/mirror/app/blobs/${layer}`;
    manifestPath = `/v2/mirror/app/manifests/${image.manifestDigest}`;
    // Warm up (modules loaded, pools made), then take the memory baseline with nothing in flight.
    expect(sha256((await rawGet(proxy.address, blobPath)).body)).toBe(layer);
    expect((await get(proxy, manifestPath, { accept: MANIFEST_ACCEPT })).status).toBe(200);
    await eventually(() => openSockets(pid) === sockets, 'warm-up connections closed');
    rssKiB = memory(pid).rss;
  });

  afterEach(async () => {
    fault.clear();
    // Every case leaves the proxy as it found it: no upstream or client socket left behind,
    // memory not grown by more than a few blobs' worth (the blob is 4 MiB).
    await eventually(() => openSockets(pid) === sockets, 'the proxy back to its baseline sockets');
    expect(memory(pid).rss - rssKiB).toBeLessThan(32 * 1024);
  });

  /** The blob through the proxy now, whole and right. */
  async function blobIsServed(): Promise<void> {
    const again = await rawGet(proxy.address, blobPath);
    expect(again.status).toBe(200);
    expect(again.complete).toBe(true);
    expect(sha256(again.body)).toBe(layer);
  }

  it('upstream resets mid-blob: the client connection is reset short of Content-Length, never ended clean; no retry after bytes went out; next GET is whole', async () => {
    fault.fault({ path: blobs, times: 1, action: { kind: 'reset', afterBytes: MiB } });
    const got = await rawGet(proxy.address, blobPath);
    expect(got.status).toBe(200);
    expect(Number(got.headers['content-length'])).toBe(size);
    expect(got.body.length).toBeLessThan(size);
    expect(got.complete).toBe(false);
    expect(got.ended).toBe('reset');
    expect(fault.count(blobs)).toBe(1 + 1); // the warm-up, and this one: not retried
    await blobIsServed();
  });

  it('upstream resets a chunked blob: no last chunk reaches the client, the connection is reset', async () => {
    fault.fault({ path: blobs, times: 1, action: { kind: 'pass', chunked: true } });
    const whole = await rawGet(proxy.address, blobPath);
    expect(whole.headers['transfer-encoding']).toBe('chunked');
    expect(whole.complete).toBe(true);
    expect(sha256(unchunk(whole.body))).toBe(layer);

    fault.fault({
      path: blobs,
      times: 1,
      action: { kind: 'reset', afterBytes: MiB, chunked: true },
    });
    const cut = await rawGet(proxy.address, blobPath);
    expect(cut.status).toBe(200);
    expect(cut.headers['transfer-encoding']).toBe('chunked');
    expect(cut.headers['content-length']).toBeUndefined();
    expect(cut.complete).toBe(false);
    expect(cut.ended).toBe('reset');
    expect(unchunk(cut.body).length).toBeLessThan(size);
  });

  it('upstream stalls mid-blob longer than upstreamIdleTimeoutMs: the client is reset, the upstream connection closed', async () => {
    fault.fault({ path: blobs, times: 1, action: { kind: 'stall', afterBytes: MiB } });
    const got = await rawGet(proxy.address, blobPath);
    expect(got.status).toBe(200);
    expect(got.body.length).toBeGreaterThanOrEqual(MiB);
    expect(got.body.length).toBeLessThan(size);
    expect(got.complete).toBe(false);
    expect(got.ended).toBe('reset');
    // The forwarder still holds its stalled side open; the proxy has let go of its own.
    await eventually(() => connectionsTo(pid, fault.port) === 0, 'the stalled upstream dropped');
    await blobIsServed();
  });

  it('upstream stalls mid-manifest: 502 UNAVAILABLE after the idle timeout instead of a hang', async () => {
    fault.fault({ path: manifests, times: 1, action: { kind: 'stall', afterBytes: 10 } });
    const got = await get(proxy, manifestPath, { accept: MANIFEST_ACCEPT });
    expect(got.status).toBe(502);
    expect(ociError(got.text)).toMatchObject({ code: 'UNAVAILABLE' });
    expect(ociError(got.text)?.message).toMatch(/sent nothing for 1000 ms/);
    expect((await get(proxy, manifestPath, { accept: MANIFEST_ACCEPT })).status).toBe(200);
  });

  it('upstream never answers: 504 after upstreamTimeoutMs, not retried', async () => {
    const before = fault.count(manifests);
    fault.fault({ path: manifests, times: 1, action: { kind: 'stall-headers' } });
    const got = await get(proxy, manifestPath, { accept: MANIFEST_ACCEPT });
    expect(got.status).toBe(504);
    expect(ociError(got.text)).toMatchObject({ code: 'UNAVAILABLE' });
    expect(ociError(got.text)?.message).toMatch(/did not answer within 2000 ms/);
    expect(fault.count(manifests) - before).toBe(1);
    expect((await get(proxy, manifestPath, { accept: MANIFEST_ACCEPT })).status).toBe(200);
  });

  it.each([502, 503, 504])(
    'upstream answers %i once: retried, the client gets the manifest, counted in /metrics',
    async (status) => {
      const before = fault.count(manifests);
      const retried = await metric(
        proxy,
        `registry_proxy_upstream_retries_total{upstream="local",reason="${status}"}`,
      );
      fault.fault({ path: manifests, times: 1, action: { kind: 'status', status } });
      const got = await get(proxy, manifestPath, { accept: MANIFEST_ACCEPT });
      expect(got.status).toBe(200);
      expect(sha256(Buffer.from(got.text))).toBe(image.manifestDigest);
      expect(fault.count(manifests) - before).toBe(2);
      expect(
        await metric(
          proxy,
          `registry_proxy_upstream_retries_total{upstream="local",reason="${status}"}`,
        ),
      ).toBe(retried + 1);
    },
  );

  it.each([502, 503, 504])(
    'upstream answers %i every time: passed on as UNAVAILABLE after exactly 3 attempts',
    async (status) => {
      const before = fault.count(manifests);
      fault.fault({ path: manifests, action: { kind: 'status', status, body: 'down' } });
      const got = await get(proxy, manifestPath, { accept: MANIFEST_ACCEPT });
      expect(got.status).toBe(status);
      expect(ociError(got.text)).toMatchObject({ code: 'UNAVAILABLE' });
      expect(fault.count(manifests) - before).toBe(3);
    },
  );

  it('a blob GET that meets 503 before any byte is retried and served whole', async () => {
    const before = fault.count(blobs);
    fault.fault({ path: blobs, times: 1, action: { kind: 'status', status: 503 } });
    await blobIsServed();
    expect(fault.count(blobs) - before).toBe(2);
  });

  it('upstream 500 is passed on, never retried', async () => {
    const before = fault.count(manifests);
    fault.fault({ path: manifests, times: 1, action: { kind: 'status', status: 500 } });
    const got = await get(proxy, manifestPath, { accept: MANIFEST_ACCEPT });
    expect(got.status).toBe(500);
    expect(ociError(got.text)).toMatchObject({ code: 'UNKNOWN' });
    expect(fault.count(manifests) - before).toBe(1);
  });

  it('upstream 429 with Retry-After is passed on with it (TOOMANYREQUESTS), never retried', async () => {
    const before = fault.count(manifests);
    fault.fault({
      path: manifests,
      times: 1,
      action: { kind: 'status', status: 429, headers: { 'retry-after': '7' } },
    });
    const got = await get(proxy, manifestPath, { accept: MANIFEST_ACCEPT });
    expect(got.status).toBe(429);
    expect(got.headers.get('retry-after')).toBe('7');
    expect(ociError(got.text)).toMatchObject({ code: 'TOOMANYREQUESTS' });
    expect(fault.count(manifests) - before).toBe(1);
  });

  it('upstream 503 asking for a long Retry-After is passed on at once, not waited for', async () => {
    const before = fault.count(blobs);
    fault.fault({
      path: blobs,
      times: 1,
      action: { kind: 'status', status: 503, headers: { 'retry-after': '120' } },
    });
    const got = await get(proxy, blobPath);
    expect(got.status).toBe(503);
    expect(got.headers.get('retry-after')).toBe('120');
    expect(fault.count(blobs) - before).toBe(1);
  });

  it('connections reset before an answer are retried; refused every time, 502 after 3 attempts', async () => {
    let before = fault.count(manifests);
    fault.fault({ path: manifests, times: 1, action: { kind: 'refuse' } });
    expect((await get(proxy, manifestPath, { accept: MANIFEST_ACCEPT })).status).toBe(200);
    expect(fault.count(manifests) - before).toBe(2);

    before = fault.count(manifests);
    fault.fault({ path: manifests, action: { kind: 'refuse' } });
    const got = await get(proxy, manifestPath, { accept: MANIFEST_ACCEPT });
    expect(got.status).toBe(502);
    expect(ociError(got.text)?.message).toMatch(/unreachable/);
    expect(fault.count(manifests) - before).toBe(3);
  });

  it('upstream down (connection refused): 502 at once; once it is back the next pull works', async () => {
    await fault.down();
    try {
      const got = await get(proxy, manifestPath, { accept: MANIFEST_ACCEPT });
      expect(got.status).toBe(502);
      expect(ociError(got.text)).toMatchObject({ code: 'UNAVAILABLE' });
      const blob = await rawGet(proxy.address, blobPath);
      expect(blob.status).toBe(502);
    } finally {
      await fault.up();
    }
    expect((await get(proxy, manifestPath, { accept: MANIFEST_ACCEPT })).status).toBe(200);
    await blobIsServed();
  });

  it('never forwards (so never retries) a non-idempotent request', async () => {
    const seen = fault.seen.length;
    for (const [method, path] of [
      ['PUT', manifestPath],
      ['DELETE', manifestPath],
      ['POST', '/v2/mirror/app/blobs/uploads/'],
      ['PATCH', '/v2/mirror/app/blobs/uploads/x'],
    ] as const) {
      const res = await fetch(`http://${proxy.address}${path}`, { method, body: 'x' });
      expect(res.status).toBe(405);
      expect(ociError(await res.text())).toMatchObject({ code: 'UNSUPPORTED' });
    }
    expect(fault.seen.length).toBe(seen);
  });
});

describe('the retry budget', () => {
  it('caps retries across requests when the upstream keeps failing, and says so in /metrics', async () => {
    const registry = await startDockerRegistry();
    closers.push(() => registry.close());
    const fault = await startFaultProxy(registry.url, { keepAliveTimeoutMs: 500 });
    closers.push(() => fault.close());
    const proxy = await startProxy(
      writeConfig(
        'budget.yaml',
        [
          'upstreams:',
          `  - { name: local, prefix: "", url: "${fault.url}" }`,
          'retries: { attempts: 3, backoffMs: 1, maxBackoffMs: 5, minPerWindow: 3, budgetRatio: 0.1, windowMs: 60000 }',
        ].join('\n'),
      ),
    );
    fault.fault({ action: { kind: 'status', status: 503 } });
    const requests = 20;
    for (let i = 0; i < requests; i++) {
      // distinct tags, so that no two share one upstream fetch
      const res = await fetch(`http://${proxy.address}/v2/app/manifests/t${i}`);
      expect(res.status).toBe(503);
      await res.body?.cancel();
    }
    const upstream = fault.count(/\/manifests\//);
    // Without a budget: 3 attempts each (60). With it: the floor (3) plus 10% of 20.
    expect(upstream).toBeGreaterThanOrEqual(requests + 3);
    expect(upstream).toBeLessThanOrEqual(requests + 3 + 0.1 * requests);
    expect(
      await metric(proxy, 'registry_proxy_upstream_retries_denied_total{upstream="local"}'),
    ).toBeGreaterThan(0);
  });
});

describe('upstream token service and cloud credential source faults', () => {
  let tokens: RegistryTokenServer;
  let tokenFault: FaultProxy;
  let registry: DockerRegistry;
  let image: PushedImage;
  const users = { pusher: 'pusher-pw', oauth2accesstoken: 'ya29.stand-in-token' };

  beforeAll(async () => {
    tokens = await startRegistryTokenServer({ users, expiresIn: 1 });
    closers.push(() => tokens.close());
    tokenFault = await startFaultProxy(new URL(tokens.realm).origin, { keepAliveTimeoutMs: 500 });
    closers.push(() => tokenFault.close());
    registry = await startDockerRegistry({
      token: { ...tokens, realm: `${tokenFault.url}/token` },
    });
    closers.push(() => registry.close());
    image = await pushImage(registry, dir, 'acme/secure', [{ 'opt/a.txt': 'secure' }], {
      credentials: { user: 'pusher', password: users.pusher },
    });
  });
  afterEach(() => tokenFault.clear());

  /** Upstream tokens live 1 s (cached 0.5 s): wait that out so the next request needs a new one. */
  const tokenExpired = () => new Promise((r) => setTimeout(r, 700));

  it('token service refused, 500, 503, stalled or down: clear 502/504, bounded retries, recovery', async () => {
    const proxy = await startProxy(
      writeConfig(
        'token.yaml',
        [
          'upstreams:',
          `  - { name: secure, prefix: "", url: "${registry.url}", credentials: { provider: static, username: pusher, password: "${users.pusher}" } }`,
          'upstreamTimeoutMs: 2000',
          'retries: { backoffMs: 10, maxBackoffMs: 50 }',
        ].join('\n'),
      ),
    );
    const path = `/v2/acme/secure/manifests/${image.manifestDigest}`;
    const pull = () => get(proxy, path, { accept: MANIFEST_ACCEPT });
    const token = /^\/token$/;
    expect((await pull()).status).toBe(200);

    const cases: Array<{
      action: Parameters<FaultProxy['fault']>[0]['action'];
      status: number;
      message: RegExp;
      asked: number;
    }> = [
      {
        action: { kind: 'refuse' },
        status: 502,
        message: /token service .* unreachable/,
        asked: 3,
      },
      { action: { kind: 'status', status: 500 }, status: 502, message: /answered 500/, asked: 1 },
      { action: { kind: 'status', status: 503 }, status: 502, message: /answered 503/, asked: 3 },
      {
        action: { kind: 'stall-headers' },
        status: 504,
        message: /did not answer within/,
        asked: 1,
      },
    ];
    for (const c of cases) {
      await tokenExpired();
      const before = tokenFault.count(token);
      tokenFault.fault({ path: token, action: c.action });
      const got = await pull();
      expect(got.status, JSON.stringify(c.action)).toBe(c.status);
      expect(ociError(got.text)).toMatchObject({ code: 'UNAVAILABLE' });
      expect(ociError(got.text)?.message).toMatch(c.message);
      expect(tokenFault.count(token) - before, JSON.stringify(c.action)).toBe(c.asked);
      // The password never leaks into an error.
      expect(got.text).not.toContain(users.pusher);
      tokenFault.clear();
      await tokenExpired();
      expect((await pull()).status).toBe(200);
    }

    // A 503 once is retried and the pull succeeds.
    await tokenExpired();
    tokenFault.fault({ path: token, times: 1, action: { kind: 'status', status: 503 } });
    const before = tokenFault.count(token);
    expect((await pull()).status).toBe(200);
    expect(tokenFault.count(token) - before).toBe(2);

    // Down altogether (connection refused), then back.
    await tokenExpired();
    await tokenFault.down();
    try {
      const got = await pull();
      expect(got.status).toBe(502);
      expect(ociError(got.text)?.message).toMatch(/token service .* unreachable/);
    } finally {
      await tokenFault.up();
    }
    expect((await pull()).status).toBe(200);
  });

  it('gcp credentials: cached ones keep serving while the metadata server is down until they expire; a slow source is a 504; recovery once it is back', async () => {
    const lifetime = 12;
    const metadata: StandIn & { readonly tokens: number } = await startGceMetadata({
      token: () => users.oauth2accesstoken,
      expiresIn: lifetime,
    });
    closers.push(() => metadata.close());
    const metaFault = await startFaultProxy(metadata.url, { keepAliveTimeoutMs: 500 });
    closers.push(() => metaFault.close());
    // A second way to the same registry, so that its credentials are cached apart (per host).
    const second = await startFaultProxy(registry.url, { keepAliveTimeoutMs: 500 });
    closers.push(() => second.close());
    const credentials = '{ provider: gcp, skipRegistryValidation: true }';
    const proxy = await startProxy(
      writeConfig(
        'gcp.yaml',
        [
          'upstreams:',
          `  - { name: gcp, prefix: one, url: "${registry.url}", repositoryPrefix: acme, credentials: ${credentials} }`,
          `  - { name: gcp2, prefix: two, url: "${second.url}", repositoryPrefix: acme, credentials: ${credentials} }`,
          'upstreamTimeoutMs: 2000',
        ].join('\n'),
      ),
      { GCE_METADATA_HOST: metaFault.host, HOME: dir },
    );
    const pull = (prefix: string) =>
      get(proxy, `/v2/${prefix}/secure/manifests/${image.manifestDigest}`, {
        accept: MANIFEST_ACCEPT,
      });
    const tokenPath = /\/service-accounts\/default\/token$/;

    const fetchedAt = Date.now();
    expect((await pull('one')).status).toBe(200);
    expect(metadata.tokens).toBe(1);

    // The metadata server hangs: the cached credentials keep serving the first upstream...
    metaFault.fault({ path: tokenPath, action: { kind: 'stall-headers' } });
    await tokenExpired();
    expect((await pull('one')).status).toBe(200);
    // ...and the second, which has none yet, gets a prompt 504 rather than hanging.
    const slow = await pull('two');
    expect(slow.status).toBe(504);
    expect(ociError(slow.text)?.message).toMatch(
      /credential source of upstream gcp2 did not answer within 2000 ms/,
    );

    // Down (connections reset): still served from the cache until the credentials expire.
    metaFault.clear();
    metaFault.fault({ path: tokenPath, action: { kind: 'refuse' } });
    const statuses: Array<{ at: number; status: number }> = [];
    while (Date.now() < fetchedAt + (lifetime + 20) * 1000) {
      const at = Date.now();
      const got = await pull('one');
      statuses.push({ at: at - fetchedAt, status: got.status });
      if (got.status !== 200) {
        expect([502, 504]).toContain(got.status);
        expect(ociError(got.text)).toMatchObject({ code: 'UNAVAILABLE' });
        expect(got.text).not.toContain(users.oauth2accesstoken);
        break;
      }
      await tokenExpired();
    }
    const firstFailure = statuses.find((s) => s.status !== 200);
    expect(firstFailure, JSON.stringify(statuses)).toBeDefined();
    // Every pull made well before the expiry was served (the cache refreshes from half-life
    // on, and failed refreshes do not drop credentials that are still valid).
    const early = statuses.filter((s) => s.at < (lifetime - 3) * 1000);
    expect(early.length).toBeGreaterThan(3);
    expect(early.every((s) => s.status === 200)).toBe(true);
    expect(metadata.tokens).toBe(1);

    // Back: the next pulls (after the failure backoff) succeed on both upstreams.
    metaFault.clear();
    await until(async () => (await pull('one')).status === 200, 'pulls through upstream one');
    await until(async () => (await pull('two')).status === 200, 'pulls through upstream two');
    expect(metadata.tokens).toBeGreaterThan(1);
  }, 120_000);
});
