import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  type DockerRegistry,
  type OciImage,
  startDockerRegistry,
  writeOciImage,
} from '@org/tools/stand-ins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createProxyApp } from '../src/index.js';
import { serveOnLoopback } from './serve.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'proxy-skopeo-'));
let registry: DockerRegistry;
let closeProxy: (() => Promise<void>) | undefined;
let proxy: string;
let image: OciImage;

beforeAll(async () => {
  registry = await startDockerRegistry();
  // one small layer and one of 64 MiB (random, so gzip keeps it large): streaming, not buffering
  image = writeOciImage(join(dir, 'image'), 'v1', [
    { 'etc/motd': 'through the proxy\n' },
    { 'opt/big.bin': randomBytes(64 * 1024 * 1024) },
  ]);
  for (const tag of ['v1', 'v2']) {
    await run('skopeo', [
      'copy',
      '--dest-tls-verify=false',
      image.ref,
      `docker://${registry.host}/team/app:${tag}`,
    ]);
  }
  const app = createProxyApp({
    upstreams: [
      { name: 'direct', prefix: '', url: registry.url },
      { name: 'mirror', prefix: 'mirror', url: registry.url, repositoryPrefix: 'team' },
    ],
  });
  const served = await serveOnLoopback(app);
  proxy = served.host;
  closeProxy = served.close;
}, 120_000);

afterAll(async () => {
  await closeProxy?.();
  await registry?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the proxy with the real skopeo and a real docker-registry', () => {
  it('copies an image byte for byte: manifest digest and every blob equal', async () => {
    const out = join(dir, 'pulled');
    await run(
      'skopeo',
      ['copy', '--src-tls-verify=false', `docker://${proxy}/team/app:v1`, `dir:${out}`],
      {
        maxBuffer: 1 << 20,
      },
    );
    const { stdout } = await run('skopeo', [
      'inspect',
      '--tls-verify=false',
      `docker://${proxy}/team/app:v1`,
    ]);
    expect(JSON.parse(stdout).Digest).toBe(image.manifestDigest);
    for (const digest of image.layerDigests) {
      const hex = digest.slice(7);
      expect(
        readFileSync(join(out, hex)).equals(
          readFileSync(join(dir, 'image', 'blobs', 'sha256', hex)),
        ),
      ).toBe(true);
    }
  }, 120_000);

  it('serves a prefix-rewritten route: list-tags and inspect by the client-facing name', async () => {
    const { stdout } = await run('skopeo', [
      'list-tags',
      '--tls-verify=false',
      `docker://${proxy}/mirror/app`,
    ]);
    expect(JSON.parse(stdout)).toEqual({ Repository: `${proxy}/mirror/app`, Tags: ['v1', 'v2'] });
    const inspected = await run('skopeo', [
      'inspect',
      '--tls-verify=false',
      `docker://${proxy}/mirror/app:v2`,
    ]);
    expect(JSON.parse(inspected.stdout).Digest).toBe(image.manifestDigest);
  });

  it('passes Range through on the node:http blob path: 206 with the right bytes, 416 past the end', async () => {
    const digest = image.layerDigests[1] as string;
    const file = readFileSync(join(dir, 'image', 'blobs', 'sha256', digest.slice(7)));
    const url = `http://${proxy}/v2/team/app/blobs/${digest}`;
    const part = await fetch(url, { headers: { range: 'bytes=1000-1999' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 1000-1999/${file.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(file.subarray(1000, 2000))).toBe(true);
    const past = await fetch(url, { headers: { range: `bytes=${file.length + 10}-` } });
    expect(past.status).toBe(416);
    await past.arrayBuffer();
    const whole = await fetch(url);
    expect(whole.headers.get('docker-content-digest')).toBe(digest);
    expect(Number(whole.headers.get('content-length'))).toBe(file.length);
    expect(Buffer.from(await whole.arrayBuffer()).equals(file)).toBe(true);
  });

  it('refuses a ".." in the raw request path instead of resolving it', async () => {
    const { status, body } = await rawGet(`/v2/mirror/../team/app/manifests/v1`);
    expect(status).toBe(400);
    expect(JSON.parse(body).errors[0].code).toBe('NAME_INVALID');
  });
});

/** A GET with the path exactly as given (fetch would normalise it). */
function rawGet(path: string): Promise<{ status: number; body: string }> {
  const [host, port] = proxy.split(':');
  return new Promise((resolve, reject) => {
    const req = request({ host, port: Number(port), path, method: 'GET' }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}
