import { randomBytes } from 'node:crypto';
import { createServer, get, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { type FaultProxy, startFaultProxy } from './stand-ins/fault-proxy.js';

const blob = randomBytes(256 * 1024);
let target: Server;
let fault: FaultProxy;

beforeAll(async () => {
  target = createServer((req, res) => {
    res.writeHead(200, { 'content-length': blob.length, 'x-path': req.url ?? '' });
    res.end(blob);
  });
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  fault = await startFaultProxy(`http://127.0.0.1:${(target.address() as AddressInfo).port}`);
});
afterAll(async () => {
  await fault.close();
  target.closeAllConnections();
  await new Promise((r) => target.close(r));
});
beforeEach(() => fault.clear());

interface Got {
  res?: IncomingMessage;
  body: Buffer;
  error?: NodeJS.ErrnoException;
  complete: boolean;
}

/** A GET through the forwarder, with whatever arrived and how it ended. */
function fetchRaw(path: string, until?: (got: Got) => boolean): Promise<Got> {
  return new Promise((resolve) => {
    const got: Got = { body: Buffer.alloc(0), complete: false };
    const req = get(`${fault.url}${path}`, { agent: false }, (res) => {
      got.res = res;
      res.on('data', (c: Buffer) => {
        got.body = Buffer.concat([got.body, c]);
        if (until?.(got)) resolve(got);
      });
      res.on('end', () => {
        got.complete = res.complete;
        resolve(got);
      });
      res.on('error', (err) => {
        got.error = err;
        resolve(got);
      });
      res.on('aborted', () => resolve(got));
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      got.error = err;
      resolve(got);
    });
  });
}

it('passes requests through and counts them per path', async () => {
  const got = await fetchRaw('/v2/a/blobs/x?q=1');
  expect(got.res?.statusCode).toBe(200);
  expect(got.body.equals(blob)).toBe(true);
  expect(got.res?.headers['x-path']).toBe('/v2/a/blobs/x?q=1');
  expect(fault.count(/\/blobs\//)).toBe(1);
  expect(fault.count(/\/blobs\//, 'HEAD')).toBe(0);
});

it('resets the connection after N body bytes; the client sees an incomplete body', async () => {
  fault.fault({ path: /\/blobs\//, action: { kind: 'reset', afterBytes: 1000 } });
  const got = await fetchRaw('/v2/a/blobs/y');
  expect(got.res?.statusCode).toBe(200);
  expect(got.body.length).toBe(1000);
  expect(got.complete).toBe(false);
  expect(fault.seen.at(-1)?.action).toBe('reset');
});

it('stalls after N body bytes until cleared, then the connection ends short', async () => {
  fault.fault({ path: /\/blobs\//, action: { kind: 'stall', afterBytes: 5000 } });
  const pending = fetchRaw('/v2/a/blobs/z');
  // Ask again after the stall began: the forwarder answers other requests meanwhile.
  while (fault.count(/\/blobs\/z/) === 0) await new Promise((r) => setTimeout(r, 20));
  const other = await fetchRaw('/v2/a/manifests/v1');
  expect(other.body.equals(blob)).toBe(true);
  fault.clear();
  const got = await pending;
  expect(got.body.length).toBe(5000);
  expect(got.complete).toBe(false);
});

it('answers a status with headers instead of forwarding, for the given number of times', async () => {
  fault.fault({
    path: /\/manifests\//,
    times: 2,
    action: { kind: 'status', status: 429, headers: { 'retry-after': '7' }, body: 'slow down' },
  });
  for (const expected of [429, 429, 200]) {
    const got = await fetchRaw('/v2/a/manifests/v1');
    expect(got.res?.statusCode).toBe(expected);
    if (expected === 429) {
      expect(got.res?.headers['retry-after']).toBe('7');
      expect(got.body.toString()).toBe('slow down');
    }
  }
});

it('refuses (resets) a request, or every connection while down', async () => {
  fault.fault({ method: 'GET', times: 1, action: { kind: 'refuse' } });
  expect((await fetchRaw('/x')).error?.code).toBe('ECONNRESET');
  await fault.down();
  expect((await fetchRaw('/x')).error?.code).toBe('ECONNREFUSED');
  await fault.up();
  expect((await fetchRaw('/x')).res?.statusCode).toBe(200);
});

it('re-frames a body as chunked when asked, and never ends a cut one with the last chunk', async () => {
  fault.fault({ times: 1, action: { kind: 'pass', chunked: true } });
  const whole = await fetchRaw('/c');
  expect(whole.res?.headers['transfer-encoding']).toBe('chunked');
  expect(whole.res?.headers['content-length']).toBeUndefined();
  expect(whole.body.equals(blob)).toBe(true);
  fault.fault({ times: 1, action: { kind: 'reset', afterBytes: 10, chunked: true } });
  const cut = await fetchRaw('/c');
  expect(cut.res?.headers['transfer-encoding']).toBe('chunked');
  expect(cut.body.length).toBe(10);
  expect(cut.complete).toBe(false);
});

it('never answers with stall-headers until cleared', async () => {
  fault.fault({ times: 1, action: { kind: 'stall-headers' } });
  const pending = fetchRaw('/h');
  while (fault.count(/^\/h$/) === 0) await new Promise((r) => setTimeout(r, 20));
  fault.clear();
  const got = await pending;
  expect(got.res).toBeUndefined();
  expect(got.error?.code).toBe('ECONNRESET');
});
