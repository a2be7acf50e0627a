import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { healthzUrl, KUBELET_HEALTHZ, waitHealthy } from './health.js';

const closers: Array<() => void> = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

/** A healthz answering from a script of (status, body) pairs, then the last one forever. */
async function healthz(script: Array<[number, string]>): Promise<{ url: URL; hits: () => number }> {
  let n = 0;
  const server = createServer((_req, res) => {
    const [status, body] = script[Math.min(n++, script.length - 1)] as [number, string];
    res.writeHead(status).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => server.close());
  const { port } = server.address() as AddressInfo;
  return { url: new URL(`http://127.0.0.1:${port}/healthz`), hits: () => n };
}

describe('waitHealthy', () => {
  it('needs `settle` ok answers in a row: one failure in between starts over', async () => {
    const h = await healthz([
      [200, 'ok'],
      [500, '[-]syncloop failed'],
      [200, 'ok'],
      [200, 'ok\n'],
    ]);
    await waitHealthy(h.url, { timeoutMs: 5000, intervalMs: 10, settle: 2 });
    expect(h.hits()).toBe(4);
  });

  it('times out naming the last answer', async () => {
    const h = await healthz([[503, 'not ready']]);
    await expect(waitHealthy(h.url, { timeoutMs: 300, intervalMs: 50 })).rejects.toThrow(
      /did not answer ok .*last: 503 "not ready"/,
    );
  });

  it('a closed port is an answer too (ECONNREFUSED), and times out', async () => {
    const h = await healthz([[200, 'ok']]);
    closers.pop()?.();
    await new Promise((r) => setTimeout(r, 50));
    await expect(waitHealthy(h.url, { timeoutMs: 300, intervalMs: 50 })).rejects.toThrow(
      /ECONNREFUSED/,
    );
  });
});

describe('healthzUrl', () => {
  it('takes kubelet default and plain http', () => {
    expect(healthzUrl(KUBELET_HEALTHZ).port).toBe('10248');
  });
  it.each(['https://127.0.0.1:10250/healthz', 'http://u:p@127.0.0.1/healthz', 'nope'])(
    'refuses %s',
    (u) => {
      expect(() => healthzUrl(u)).toThrow(TypeError);
    },
  );
});
