/**
 * The real Docker Engine (dockerd + docker client) and containerd (ctr, CRI hosts.toml mirror)
 * pull through the proxy with its own token authentication on, from a real docker-registry that
 * only the proxy holds credentials for.
 *
 * In-process (not the built binary) because containerd's `ns` routing is a proxy-core option the
 * app's config file does not expose yet, and because the test reads the proxy's request log to
 * prove the bytes went through it. apps/proxy/test/container.integration.test.ts runs the built
 * binary, in its container.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createPolicy, createStaticUsersPlugin } from '@org/auth-plugins';
import {
  type Containerd,
  type Dockerd,
  type DockerRegistry,
  type OciImage,
  startContainerd,
  startDockerd,
  startDockerRegistry,
  writeOciImage,
} from '@org/tools/stand-ins';
import { Hono } from 'hono';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createProxyApp, createTokenService } from '../src/index.js';
import { serveOnLoopback } from './serve.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'proxy-engines-'));
const UPSTREAM = { user: 'puller', password: 'upstream-secret' };
let registry: DockerRegistry;
/** `team/app:v1` for docker, `team/tool:v1` for containerd: dockerd 20.10 keeps the manifests it
 * pulls in containerd's content store, so one image for both would let ctr skip fetches. */
let image: OciImage;
let tool: OciImage;
let containerd: Containerd | undefined;
let dockerd: Dockerd | undefined;
let proxy: { host: string; close: () => Promise<void> } | undefined;
/** Every request the proxy received: `METHOD /path?query`. */
const seen: string[] = [];

beforeAll(async () => {
  registry = await startDockerRegistry({ htpasswd: UPSTREAM });
  // a small layer and a few MiB of random bytes (gzip cannot shrink them)
  image = writeOciImage(join(dir, 'app'), 'v1', [
    { 'etc/motd': 'pulled by dockerd\n' },
    { 'opt/random.bin': randomBytes(6 * 1024 * 1024) },
  ]);
  tool = writeOciImage(join(dir, 'tool'), 'v1', [
    { 'etc/motd': 'pulled by containerd\n' },
    { 'opt/random.bin': randomBytes(6 * 1024 * 1024) },
  ]);
  for (const [built, repository] of [
    [image, 'team/app'],
    [tool, 'team/tool'],
  ] as const) {
    await run('skopeo', [
      'copy',
      '--dest-tls-verify=false',
      '--dest-creds',
      `${UPSTREAM.user}:${UPSTREAM.password}`,
      built.ref,
      `docker://${registry.host}/${repository}:v1`,
    ]);
  }

  // The realm must be absolute, so the app is made once the port is known.
  let inner: Hono | undefined;
  const front = new Hono();
  front.all('*', (c) => {
    const url = new URL(c.req.url);
    seen.push(`${c.req.method} ${url.pathname}${url.search}`);
    return inner ? inner.fetch(c.req.raw, c.env) : c.text('starting', 503);
  });
  proxy = await serveOnLoopback(front);
  const origin = `http://${proxy.host}`;
  const tokens = await createTokenService({
    plugins: [
      createStaticUsersPlugin({
        name: 'users',
        users: [
          { username: 'alice', password: 'wonderland' },
          { username: 'bob', password: 'builder' },
        ],
      }),
    ],
    policy: createPolicy([
      { identities: ['users:alice'], repositories: ['mirror/**', 'team/**'], actions: ['pull'] },
    ]),
    issuer: origin,
    service: proxy.host,
  });
  const credentials = {
    provider: 'static',
    username: UPSTREAM.user,
    password: UPSTREAM.password,
  } as const;
  inner = createProxyApp({
    upstreams: [
      // docker pull <proxy>/mirror/app:v1
      {
        name: 'docker',
        prefix: 'mirror',
        url: registry.url,
        repositoryPrefix: 'team',
        credentials,
      },
      // containerd mirrors <registry>/team/tool: the same name, and ?ns=<registry>
      { name: 'containerd', prefix: '', url: registry.url, ns: [registry.host], credentials },
    ],
    auth: { tokens, realm: `${origin}/token`, service: proxy.host },
  });

  containerd = await startContainerd();
  dockerd = await startDockerd({ containerdSocket: containerd.socket });
}, 300_000);

afterAll(async () => {
  await dockerd?.close();
  await containerd?.close();
  await proxy?.close();
  await registry?.close();
  rmSync(dir, { recursive: true, force: true });
}, 120_000);

beforeEach(() => {
  seen.length = 0;
});

/** The error a rejected command carries. */
async function failure(promise: Promise<unknown>): Promise<{ stderr: string; code: number }> {
  const err = (await promise.then(
    () => {
      throw new Error('the command succeeded; it should have been refused');
    },
    (e: unknown) => e,
  )) as { stderr?: string; code?: number };
  return { stderr: err.stderr ?? String(err), code: err.code ?? -1 };
}

describe('docker (real dockerd) through the proxy with token auth', () => {
  it('logs in and pulls by tag: the RepoDigest is the upstream manifest digest', async () => {
    const docker = dockerd?.docker ?? expect.unreachable('dockerd did not start');
    const host = proxy?.host ?? '';
    const login = await docker(['login', host, '-u', 'alice', '--password-stdin'], {
      input: 'wonderland\n',
    });
    expect(login.stdout).toMatch(/Login Succeeded/);

    await docker(['pull', `${host}/mirror/app:v1`]);
    const { stdout } = await docker([
      'image',
      'inspect',
      '--format',
      '{{json .RepoDigests}}',
      `${host}/mirror/app:v1`,
    ]);
    expect(JSON.parse(stdout)).toEqual([`${host}/mirror/app@${image.manifestDigest}`]);
    // the big layer came through the proxy, after dockerd fetched one of our tokens for it
    expect(seen).toContain(`GET /v2/mirror/app/blobs/${image.layerDigests[1]}`);
    expect(
      seen.some(
        (r) => r.startsWith('GET /token?') && r.includes('repository%3Amirror%2Fapp%3Apull'),
      ),
    ).toBe(true);
  }, 300_000);

  it('refuses a wrong password, and a user the policy grants nothing', async () => {
    const docker = dockerd?.docker ?? expect.unreachable('dockerd did not start');
    const host = proxy?.host ?? '';
    const login = await failure(
      docker(['login', host, '-u', 'alice', '--password-stdin'], { input: 'wrong\n' }),
    );
    expect(login.stderr).toMatch(/unauthorized: authentication failed/);

    // docker pull with stored credentials that do not work: a client config of their own
    for (const [user, password, refusal] of [
      ['alice', 'wrong', /unauthorized: authentication failed/],
      ['bob', 'builder', /denied: requested access to the resource is denied/],
    ] as const) {
      const config = join(dir, `docker-config-${user}`);
      mkdirSync(config, { recursive: true });
      const auth = Buffer.from(`${user}:${password}`).toString('base64');
      writeFileSync(join(config, 'config.json'), JSON.stringify({ auths: { [host]: { auth } } }));
      const pull = await failure(
        docker(['pull', `${host}/mirror/app:v1`], { env: { DOCKER_CONFIG: config } }),
      );
      expect(pull.stderr).toMatch(refusal);
    }
  }, 300_000);
});

describe('containerd (ctr, hosts.toml mirror) through the proxy with token auth', () => {
  const ref = () => `${registry.host}/team/tool:v1`;
  const pull = (...args: string[]) => {
    const ctr = containerd?.ctr ?? expect.unreachable('containerd did not start');
    return ctr(['-n', 'k8s.io', 'images', 'pull', '--plain-http', ...args, ref()]);
  };

  it('refuses a wrong password at the mirror', async () => {
    const hostsDir = containerd?.hostsDir ?? '';
    containerd?.mirror(registry.host, `http://${proxy?.host}`);
    const refused = await failure(pull('--hosts-dir', hostsDir, '--user', 'alice:wrong'));
    expect(refused.stderr).toMatch(/failed to fetch oauth token: unexpected status: 401/);
    expect(refused.stderr).toContain(`host="${proxy?.host}"`);
    // it was the proxy that refused: the mirror was asked, with containerd's ns parameter
    expect(seen).toContain(
      `HEAD /v2/team/tool/manifests/v1?ns=${encodeURIComponent(registry.host)}`,
    );
  }, 300_000);

  it('pulls through the mirror entry: the stored digest is the upstream manifest digest', async () => {
    const ctr = containerd?.ctr ?? expect.unreachable('containerd did not start');
    const hostsDir = containerd?.hostsDir ?? '';
    containerd?.mirror(registry.host, `http://${proxy?.host}`);
    await pull('--hosts-dir', hostsDir, '--user', 'alice:wonderland');

    const { stdout } = await ctr(['-n', 'k8s.io', 'images', 'ls']);
    const row = stdout.split('\n').find((line) => line.startsWith(`${ref()} `));
    expect(row?.split(/\s+/)[2]).toBe(tool.manifestDigest);
    // served by the proxy: the ns route answered the manifest and the big blob
    const ns = `ns=${encodeURIComponent(registry.host)}`;
    expect(seen).toContain(`HEAD /v2/team/tool/manifests/v1?${ns}`);
    expect(seen).toContain(`GET /v2/team/tool/manifests/${tool.manifestDigest}?${ns}`);
    expect(seen).toContain(`GET /v2/team/tool/blobs/${tool.layerDigests[1]}?${ns}`);
  }, 300_000);

  it('cannot pull the same reference without the mirror: only the proxy holds upstream credentials', async () => {
    const refused = await failure(pull('--user', 'alice:wonderland'));
    expect(refused.stderr).toMatch(
      new RegExp(`pulling from host ${registry.host} failed .*401 Unauthorized`),
    );
    expect(seen).toEqual([]);
  }, 300_000);
});
