import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  type DockerRegistry,
  type OciImage,
  pushImage,
  startDockerRegistry,
} from '@org/tools/stand-ins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createProxyApp, type ProxyCoreOptions } from '../src/index.js';
import { serveOnLoopback } from './serve.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'proxy-basic-'));
let registry: DockerRegistry;
let image: OciImage;
const closers: Array<() => Promise<void>> = [];

async function proxyFor(
  credentials: ProxyCoreOptions['upstreams'][number]['credentials'],
): Promise<string> {
  const app = createProxyApp({
    upstreams: [
      { name: 'htpasswd', prefix: '', url: registry.url, ...(credentials ? { credentials } : {}) },
    ],
  });
  const { host, close } = await serveOnLoopback(app);
  closers.push(close);
  return host;
}

beforeAll(async () => {
  registry = await startDockerRegistry({
    htpasswd: { user: 'puller', password: 'upstream-secret' },
  });
  image = await pushImage(registry, dir, 'team/app', [{ 'etc/motd': 'behind basic auth\n' }], {
    credentials: { user: 'puller', password: 'upstream-secret' },
  });
}, 60_000);

afterAll(async () => {
  for (const close of closers) await close();
  await registry?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('a Basic-auth upstream (real docker-registry with htpasswd)', () => {
  it('serves anonymous clients with the upstream credentials the proxy holds', async () => {
    const proxy = await proxyFor({
      provider: 'static',
      username: 'puller',
      password: 'upstream-secret',
    });
    const { stdout } = await run('skopeo', [
      'inspect',
      '--tls-verify=false',
      `docker://${proxy}/team/app:v1`,
    ]);
    expect(JSON.parse(stdout).Digest).toBe(image.manifestDigest);
  });

  it('fails with a clear error, and no secret, when it holds none', async () => {
    const proxy = await proxyFor(undefined);
    const err = (await run('skopeo', [
      'inspect',
      '--tls-verify=false',
      `docker://${proxy}/team/app:v1`,
    ]).catch((e: unknown) => e)) as {
      stderr: string;
    };
    expect(err.stderr).toMatch(/502 Bad Gateway/);
    const res = await fetch(`http://${proxy}/v2/team/app/manifests/v1`);
    const body = (await res.json()) as { errors: Array<{ code: string; message: string }> };
    expect(res.status).toBe(502);
    expect(body.errors[0]?.message).toMatch(/requires credentials; configure credentials for it/);
  });
});
