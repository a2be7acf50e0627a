import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dechunk, rawGet } from './http-client.ts';

const BLOB = randomBytes(3 * 1024 * 1024 + 17);
const BLOB_DIGEST = `sha256:${createHash('sha256').update(BLOB).digest('hex')}`;

let server: Server;
let base: string;
const seen: { url: string; range?: string }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push({ url: req.url ?? '', ...(req.headers.range ? { range: req.headers.range } : {}) });
    if (req.url === '/blob') {
      res.writeHead(200, { 'content-length': String(BLOB.length) });
      res.end(BLOB);
    } else if (req.url === '/chunked') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('hello, ');
      res.end('chunked world');
    } else if (req.url === '/redirect') {
      res.writeHead(307, { location: '/blob' });
      res.end();
    } else if (req.url === '/short') {
      res.writeHead(200, { 'content-length': '100' });
      res.write('only ten b');
      setImmediate(() => res.socket?.destroy());
    } else {
      res.writeHead(404, { 'content-length': '0' }).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

describe('rawGet', () => {
  it('counts and hashes a Content-Length body it otherwise discards', async () => {
    const res = await rawGet(`${base}/blob`, { hash: true, readBuffer: 64 * 1024 });
    expect(res.status).toBe(200);
    expect(res.bodyBytes).toBe(BLOB.length);
    expect(res.digest).toBe(BLOB_DIGEST);
    expect(res.totalBytes).toBe(res.headerBytes + BLOB.length);
  });

  it('sends the given headers', async () => {
    await rawGet(`${base}/blob`, { headers: { range: 'bytes=0-9' } });
    expect(seen.at(-1)).toEqual({ url: '/blob', range: 'bytes=0-9' });
  });

  it('reads every byte of a client that stalls mid-body', async () => {
    const res = await rawGet(`${base}/blob`, {
      hash: true,
      readBuffer: 64 * 1024,
      stall: { afterBytes: 1024 * 1024, ms: 50 },
    });
    expect(res.digest).toBe(BLOB_DIGEST);
  });

  it('decodes a chunked body: payload bytes apart from the framing', async () => {
    const res = await rawGet(`${base}/chunked`, { hash: true });
    const payload = 'hello, chunked world';
    expect(res.headers['transfer-encoding']).toBe('chunked');
    expect(res.bodyBytes).toBe(payload.length);
    expect(res.digest).toBe(`sha256:${createHash('sha256').update(payload).digest('hex')}`);
    expect(res.totalBytes).toBeGreaterThan(res.headerBytes + payload.length);
  });

  it('returns a redirect with its Location and an empty body, not following it', async () => {
    const res = await rawGet(`${base}/redirect`);
    expect(res.status).toBe(307);
    expect(res.headers.location).toBe('/blob');
    expect(res.bodyBytes).toBe(0);
  });

  it('rejects a body shorter than its Content-Length', async () => {
    await expect(rawGet(`${base}/short`)).rejects.toThrow(/body ended after 10 of 100 bytes/);
  });

  it('rejects https URLs, which it does not speak', () => {
    expect(() => rawGet('https://127.0.0.1/')).toThrow(TypeError);
  });
});

describe('dechunk', () => {
  it('adds up the chunk sizes, ignoring extensions and trailers', () => {
    const body = Buffer.from('5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nx-trailer: 1\r\n\r\n');
    expect(dechunk(body)).toBe(6);
  });

  it.each([
    ['5\r\nhel', /inside a chunk/],
    ['5\r\nhello\r\n', /inside a chunk size line/],
    ['zz\r\n', /bad chunk size/],
  ])('refuses the broken framing %j', (text, message) => {
    expect(() => dechunk(Buffer.from(text))).toThrow(message);
  });
});
