import { request } from 'node:http';
import { type StandIn, startStandIn } from '@org/tools/stand-ins';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createProxyApp } from '../src/index.js';
import { serveOnLoopback } from './serve.js';

const DIGEST = `sha256:${'e'.repeat(64)}`;
let upstream: StandIn;
let upstreamClosed: Promise<void>;

beforeAll(async () => {
  let closed: () => void = () => {};
  upstreamClosed = new Promise((r) => {
    closed = r;
  });
  // An endless blob: 64 KiB every 10 ms until the proxy hangs up.
  upstream = await startStandIn((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    const chunk = Buffer.alloc(64 * 1024, 1);
    const timer = setInterval(() => res.write(chunk), 10);
    res.on('close', () => {
      clearInterval(timer);
      closed();
    });
  });
});
afterAll(() => upstream.close());

it('closes the upstream connection when the client goes away mid-blob', async () => {
  const proxy = await serveOnLoopback(
    createProxyApp({ upstreams: [{ name: 'endless', prefix: '', url: upstream.url }] }),
  );
  try {
    const [host, port] = proxy.host.split(':');
    await new Promise<void>((resolve, reject) => {
      const req = request(
        { host, port: Number(port), path: `/v2/team/app/blobs/${DIGEST}` },
        (res) => {
          let received = 0;
          res.on('data', (c: Buffer) => {
            received += c.length;
            if (received > 256 * 1024) {
              req.destroy();
              resolve();
            }
          });
        },
      );
      req.on('error', (err) => (req.destroyed ? resolve() : reject(err)));
      req.end();
    });
    await expect(
      Promise.race([
        upstreamClosed.then(() => 'closed'),
        new Promise((r) => setTimeout(() => r('still open'), 5000)),
      ]),
    ).resolves.toBe('closed');
  } finally {
    await proxy.close();
  }
});
