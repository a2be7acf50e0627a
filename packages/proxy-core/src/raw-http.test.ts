import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, get as httpGet, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { type AddressInfo, createServer as createNetServer, type Socket } from 'node:net';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { nodeBodyOf, nodeFetch, pipeToClient } from './node-stream.js';
import { rawBodyOf, rawGet } from './raw-http.js';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function listen(server: Server | ReturnType<typeof createNetServer>): Promise<number> {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return (server.address() as AddressInfo).port;
}

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

async function bodyOf(res: Response): Promise<Buffer> {
  const raw = rawBodyOf(res);
  if (raw === undefined) throw new Error('not a raw answer');
  return collect(raw.toReadable());
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('rawGet', () => {
  it('reads a Content-Length body and reuses the connection for the next GET', async () => {
    const blob = randomBytes(5 * 1024 * 1024 + 17);
    let connections = 0;
    const server = createHttpServer((req, res) => {
      res.writeHead(200, {
        'content-length': blob.length,
        'x-seen-range': req.headers.range ?? '',
      });
      res.end(blob);
    });
    server.on('connection', () => connections++);
    const port = await listen(server);
    const url = new URL(`http://127.0.0.1:${port}/v2/a/blobs/x`);
    const first = await rawGet(url, { headers: { range: 'bytes=0-' } });
    expect(first.status).toBe(200);
    expect(first.headers.get('x-seen-range')).toBe('bytes=0-');
    expect(first.headers.get('content-length')).toBe(String(blob.length));
    expect(sha(await bodyOf(first))).toBe(sha(blob));
    const second = await rawGet(url, { headers: {} });
    expect(sha(await bodyOf(second))).toBe(sha(blob));
    expect(connections).toBe(1);
  });

  it('reads chunked and close-delimited bodies', async () => {
    const parts = [randomBytes(70_000), randomBytes(3), randomBytes(2_000_000)];
    const chunked = createHttpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      for (const p of parts) res.write(p);
      res.end();
    });
    const chunkedPort = await listen(chunked);
    const res = await rawGet(new URL(`http://127.0.0.1:${chunkedPort}/`), { headers: {} });
    expect(res.headers.get('transfer-encoding')).toBe('chunked');
    expect(sha(await bodyOf(res))).toBe(sha(Buffer.concat(parts)));

    const data = randomBytes(300_000);
    const closing = createNetServer((socket) => {
      socket.once('data', () => {
        socket.write('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n');
        socket.end(data);
      });
    });
    const closingPort = await listen(closing);
    const raw = await rawGet(new URL(`http://127.0.0.1:${closingPort}/`), { headers: {} });
    expect(sha(await bodyOf(raw))).toBe(sha(data));
  });

  it('fails a body the upstream cuts short, rather than ending it as if whole', async () => {
    const server = createNetServer((socket) => {
      socket.once('data', () => {
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n');
        socket.write(randomBytes(40_000), () => socket.destroy());
      });
    });
    const port = await listen(server);
    const res = await rawGet(new URL(`http://127.0.0.1:${port}/`), { headers: {} });
    await expect(bodyOf(res)).rejects.toThrow(/closed the connection mid-answer/);
  });

  it('refuses malformed answers and junk on an idle connection', async () => {
    const answers = [
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello',
      'NOT-HTTP garbage\r\n\r\n',
      'HTTP/1.1 100 Continue\r\n\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
    ];
    for (const answer of answers) {
      const server = createNetServer((socket) => {
        socket.once('data', () => socket.write(answer));
      });
      const port = await listen(server);
      const got = rawGet(new URL(`http://127.0.0.1:${port}/`), { headers: {} }).then(bodyOf);
      await expect(got, answer).rejects.toThrow(/malformed answer/);
    }
  });

  it('sends a GET again on a new connection when a reused one was dropped', async () => {
    let connections = 0;
    const server = createNetServer((socket) => {
      connections++;
      let answered = false;
      socket.on('data', () => {
        // one answer per connection; a second request finds the connection reset
        if (answered) socket.resetAndDestroy();
        else socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
        answered = true;
      });
    });
    const port = await listen(server);
    const url = new URL(`http://127.0.0.1:${port}/`);
    expect((await bodyOf(await rawGet(url, { headers: {} }))).toString()).toBe('ok');
    expect((await bodyOf(await rawGet(url, { headers: {} }))).toString()).toBe('ok');
    expect(connections).toBe(2);
  });

  it('refuses header and path injection before connecting', async () => {
    let connections = 0;
    const server = createNetServer(() => connections++);
    const port = await listen(server);
    const base = `http://127.0.0.1:${port}`;
    await expect(
      rawGet(new URL(`${base}/`), { headers: { range: 'bytes=0-\r\nx-evil: 1' } }),
    ).rejects.toThrow(/invalid request header/);
    await expect(rawGet(new URL(`${base}/`), { headers: { 'bad name': 'x' } })).rejects.toThrow(
      /invalid request header/,
    );
    await expect(rawGet(new URL(`${base}/`), { headers: { host: 'elsewhere' } })).rejects.toThrow(
      /invalid request header/,
    );
    await expect(rawGet(new URL('file:///etc/passwd'), { headers: {} })).rejects.toThrow(/scheme/);
    expect(connections).toBe(0);
  });

  it('stops mid-body when the signal aborts, and the upstream sees the connection close', async () => {
    let upstreamClosed: () => void = () => {};
    const closed = new Promise<void>((resolve) => {
      upstreamClosed = resolve;
    });
    const server = createHttpServer((_req, res) => {
      res.writeHead(200, { 'content-length': 1 << 30 });
      res.write(randomBytes(1 << 20));
      res.on('close', () => upstreamClosed());
    });
    const port = await listen(server);
    const abort = new AbortController();
    const res = await rawGet(new URL(`http://127.0.0.1:${port}/`), {
      headers: {},
      signal: abort.signal,
    });
    const stream = (rawBodyOf(res) as NonNullable<ReturnType<typeof rawBodyOf>>).toReadable();
    const failed = collect(stream);
    stream.once('data', () => abort.abort());
    await expect(failed).rejects.toThrow(/aborted/);
    await closed;
  });

  it('speaks TLS to an https upstream, checking its certificate', async () => {
    const dir = process.env.STAND_IN_TLS_DIR as string;
    const blob = randomBytes(3 * 1024 * 1024);
    const server = createHttpsServer(
      { key: readFileSync(join(dir, 'leaf.key')), cert: readFileSync(join(dir, 'leaf.crt')) },
      (_req, res) => {
        res.writeHead(200, { 'content-length': blob.length });
        res.end(blob);
      },
    );
    const port = await listen(server);
    const res = await rawGet(new URL(`https://localhost:${port}/`), { headers: {} });
    expect(sha(await bodyOf(res))).toBe(sha(blob));
    // the same server under a name its certificate does not carry
    await expect(
      rawGet(new URL(`https://127.0.0.2:${port}/`), { headers: {} }).catch((err: Error) => {
        throw new Error(`${err.message} ${String((err as { code?: string }).code)}`);
      }),
    ).rejects.toThrow(/ECONNREFUSED|IP: 127\.0\.0\.2|altnames/);
  });
});

/** A server piping every request's answer from the upstream on `upstreamPort`; its port. */
function startPipe(upstreamPort: number): Promise<number> {
  const proxy = createHttpServer(async (_req, outgoing) => {
    const res = await nodeFetch(new URL(`http://127.0.0.1:${upstreamPort}/`), {
      method: 'GET',
      headers: {},
    });
    pipeToClient(
      nodeBodyOf(res) as NonNullable<ReturnType<typeof nodeBodyOf>>,
      outgoing,
      res.status,
      res.headers,
    );
  });
  return listen(proxy);
}

describe('pipeToClient', () => {
  it('delivers every byte to several slow readers at once with pooled buffers', async () => {
    const blob = randomBytes(24 * 1024 * 1024 + 5);
    const upstream = createHttpServer((_req, res) => {
      res.writeHead(200, { 'content-length': blob.length });
      res.end(blob);
    });
    const upstreamPort = await listen(upstream);
    const proxyPort = await startPipe(upstreamPort);
    const slowRead = () =>
      new Promise<Buffer>((resolve, reject) => {
        httpGet(`http://127.0.0.1:${proxyPort}/`, (res) => {
          const parts: Buffer[] = [];
          let n = 0;
          res.on('data', (part: Buffer) => {
            parts.push(part);
            // every 64th chunk, stop reading for a moment so the proxy's writes back up
            if (++n % 64 === 0) {
              res.pause();
              setTimeout(() => res.resume(), 5);
            }
          });
          res.on('end', () => resolve(Buffer.concat(parts)));
          res.on('error', reject);
        }).on('error', reject);
      });
    const got = await Promise.all([slowRead(), slowRead(), slowRead(), slowRead()]);
    for (const body of got) {
      expect(body.length).toBe(blob.length);
      expect(sha(body)).toBe(sha(blob));
    }
  });

  it('closes the upstream connection when the client leaves mid-blob', async () => {
    let upstreamClosed: () => void = () => {};
    const closed = new Promise<void>((resolve) => {
      upstreamClosed = resolve;
    });
    const upstream = createHttpServer((_req, res) => {
      res.writeHead(200, { 'content-length': 1 << 30 });
      const chunk = randomBytes(1 << 20);
      const pump = () => {
        while (res.write(chunk)) {}
      };
      res.on('drain', pump);
      pump();
      res.on('close', () => upstreamClosed());
    });
    const upstreamPort = await listen(upstream);
    const proxyPort = await startPipe(upstreamPort);
    await new Promise<void>((resolve, reject) => {
      const req = httpGet(`http://127.0.0.1:${proxyPort}/`, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => {});
      setTimeout(() => reject(new Error('no data')), 20_000);
    });
    await closed;
  });
});
