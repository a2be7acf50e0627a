import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createPolicy, createStaticUsersPlugin } from '@org/auth-plugins';
import {
  type DockerRegistry,
  freePort,
  type OciImage,
  type OciIndexImage,
  type RegistryTokenServer,
  startDockerRegistry,
  startRegistryTokenServer,
  writeOciImage,
  writeOciIndex,
} from '@org/tools/stand-ins';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createProxyApp, createTokenService } from '../src/index.js';
import { serveOnLoopback } from './serve.js';

/**
 * Both sides token-authenticated, the way production looks: a real docker-registry with
 * `auth: token` trusting a Docker-Hub-like token server, our proxy in front with its own token
 * service, and the real skopeo as the client.
 */
const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'proxy-token-upstream-'));
const SERVICE = 'proxy.test';
let tokenServer: RegistryTokenServer;
let registry: DockerRegistry;
let single: OciImage;
let multi: OciIndexImage;
let proxy: string;
let closeProxy: (() => Promise<void>) | undefined;
let keyPair: Awaited<ReturnType<typeof generateKeyPair>>;
/** Every request the proxy sent upstream (registry and token server), by URL. */
const upstreamRequests: string[] = [];

const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

beforeAll(async () => {
  tokenServer = await startRegistryTokenServer({
    users: { pusher: 'push-secret', proxy: 'proxy-secret' },
    publicRepositories: ['library'],
  });
  registry = await startDockerRegistry({ token: tokenServer });
  single = writeOciImage(join(dir, 'single'), 'v1', [
    { 'etc/motd': 'token auth on both sides\n' },
    { 'opt/blob.bin': randomBytes(4 * 1024 * 1024) },
  ]);
  multi = writeOciIndex(join(dir, 'multi'), 'v1', [
    { os: 'linux', architecture: 'amd64', layers: [{ 'etc/arch': 'amd64\n' }] },
    { os: 'linux', architecture: 'arm64', layers: [{ 'etc/arch': 'arm64\n' }] },
  ]);
  const push = (src: string, dest: string, ...extra: string[]) =>
    run('skopeo', [
      'copy',
      ...extra,
      '--dest-tls-verify=false',
      '--dest-creds',
      'pusher:push-secret',
      src,
      `docker://${registry.host}/${dest}`,
    ]);
  await push(single.ref, 'team-a/app:v1');
  await push(single.ref, 'team-b/secret:v1');
  await push(single.ref, 'library/hello:latest');
  await push(multi.ref, 'team-a/multi:v1', '--all');

  keyPair = await generateKeyPair('ES256', { extractable: true });
  const plugins = [
    createStaticUsersPlugin({
      name: 'users',
      users: [
        { username: 'alice', password: 'wonderland' },
        { username: 'bob', password: 'builder' },
        { username: 'admin', password: 'root-of-trust' },
      ],
    }),
  ];
  const policy = createPolicy([
    { identities: ['users:alice'], repositories: ['team-a/**', 'hub/**'], actions: ['pull'] },
    { identities: ['users:bob'], repositories: ['team-b/**'], actions: ['pull'] },
    { identities: ['users:admin'], repositories: ['**'], actions: ['pull'] },
  ]);
  const port = await freePort();
  const served = await serveOnLoopback(
    createProxyApp({
      upstreams: [
        {
          name: 'private',
          prefix: '',
          url: registry.url,
          credentials: { provider: 'static', username: 'proxy', password: 'proxy-secret' },
        },
        // anonymous, like Docker Hub's public images
        { name: 'hub', prefix: 'hub', url: registry.url, dockerHubLibrary: true },
        {
          name: 'mirror',
          prefix: 'mirror',
          url: registry.url,
          repositoryPrefix: 'team-a',
          catalog: true,
          credentials: { provider: 'static', username: 'proxy', password: 'proxy-secret' },
        },
      ],
      auth: {
        tokens: await createTokenService({
          plugins,
          policy,
          issuer: 'http://proxy.test',
          service: SERVICE,
          keyPair,
        }),
        realm: `http://127.0.0.1:${port}/token`,
        service: SERVICE,
      },
      fetch: (input, init) => {
        upstreamRequests.push(String(input instanceof Request ? input.url : input));
        return fetch(input, init);
      },
    }),
    port,
  );
  proxy = served.host;
  closeProxy = served.close;
}, 120_000);

afterAll(async () => {
  await closeProxy?.();
  await registry?.close();
  await tokenServer?.close();
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  upstreamRequests.length = 0;
  tokenServer.fetches.length = 0;
});

const skopeo = (args: string[]) => run('skopeo', args, { maxBuffer: 16 << 20 });
const refused = async (args: string[]) => {
  const err = (await skopeo(args).then(
    () => ({ stderr: 'succeeded' }),
    (e: unknown) => e,
  )) as { stderr?: string };
  return err.stderr ?? '';
};

describe('a token-authenticated upstream behind our token-authenticated proxy', () => {
  it('copies a single-platform image byte for byte with the proxy credentials upstream', async () => {
    const out = join(dir, 'pulled-single');
    await skopeo([
      'copy',
      '--src-tls-verify=false',
      '--src-creds',
      'alice:wonderland',
      `docker://${proxy}/team-a/app:v1`,
      `dir:${out}`,
    ]);
    const manifest = readFileSync(join(out, 'manifest.json'));
    expect(sha256(manifest)).toBe(single.manifestDigest);
    for (const digest of single.layerDigests) {
      const hex = digest.slice(7);
      expect(
        readFileSync(join(out, hex)).equals(
          readFileSync(join(dir, 'single', 'blobs', 'sha256', hex)),
        ),
      ).toBe(true);
    }
    // upstream tokens were asked for with the proxy's account, for the upstream repository
    expect(tokenServer.fetches.length).toBeGreaterThan(0);
    for (const f of tokenServer.fetches) {
      expect(f).toMatchObject({ account: 'proxy', status: 200 });
      expect(f.scopes).toEqual(['repository:team-a/app:pull']);
    }
  });

  it('fetches one upstream token per scope however many pulls share it', async () => {
    const pulls = Array.from({ length: 6 }, () =>
      skopeo([
        'inspect',
        '--tls-verify=false',
        '--creds',
        'bob:builder',
        `docker://${proxy}/team-b/secret:v1`,
      ]),
    );
    for (const { stdout } of await Promise.all(pulls)) {
      expect(JSON.parse(stdout).Digest).toBe(single.manifestDigest);
    }
    const forScope = tokenServer.fetches.filter((f) =>
      f.scopes.includes('repository:team-b/secret:pull'),
    );
    expect(forScope).toHaveLength(1);
  });

  it('copies a multi-arch index with every platform, digests equal', async () => {
    const { stdout: raw } = await skopeo([
      'inspect',
      '--raw',
      '--tls-verify=false',
      '--creds',
      'alice:wonderland',
      `docker://${proxy}/team-a/multi:v1`,
    ]);
    expect(sha256(Buffer.from(raw))).toBe(multi.indexDigest);
    const out = join(dir, 'pulled-multi');
    await skopeo([
      'copy',
      '--all',
      '--src-tls-verify=false',
      '--src-creds',
      'alice:wonderland',
      `docker://${proxy}/team-a/multi:v1`,
      `oci:${out}:v1`,
    ]);
    const index = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8')) as {
      manifests: Array<{ digest: string }>;
    };
    expect(index.manifests[0]?.digest).toBe(multi.indexDigest);
    for (const platform of multi.platforms) {
      for (const digest of [platform.manifestDigest, ...platform.layerDigests]) {
        expect(existsSync(join(out, 'blobs', 'sha256', digest.slice(7)))).toBe(true);
      }
    }
  });

  it('pulls a public image through the anonymous token flow (Docker Hub style)', async () => {
    const { stdout } = await skopeo([
      'inspect',
      '--tls-verify=false',
      '--creds',
      'alice:wonderland',
      `docker://${proxy}/hub/hello:latest`,
    ]);
    expect(JSON.parse(stdout).Digest).toBe(single.manifestDigest);
    expect(tokenServer.fetches.length).toBeGreaterThan(0);
    for (const f of tokenServer.fetches) {
      expect(f.account).toBeUndefined();
      expect(f.scopes).toEqual(['repository:library/hello:pull']);
    }
  });
});

describe('the catalog', () => {
  const tokenFor = async (user: string, password: string) => {
    const res = await fetch(
      `http://${proxy}/token?service=${SERVICE}&scope=${encodeURIComponent('registry:catalog:*')}`,
      {
        headers: {
          authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`,
        },
      },
    );
    return ((await res.json()) as { token: string }).token;
  };

  it("lists the catalog upstream's repositories under its prefix, as clients name them, page by page", async () => {
    const token = await tokenFor('admin', 'root-of-trust');
    const headers = { authorization: `Bearer ${token}` };
    const all = await fetch(`http://${proxy}/v2/_catalog`, { headers });
    expect(all.status).toBe(200);
    expect(await all.json()).toEqual({ repositories: ['mirror/app', 'mirror/multi'] });

    const first = await fetch(`http://${proxy}/v2/_catalog?n=1`, { headers });
    expect(await first.json()).toEqual({ repositories: ['mirror/app'] });
    const link = first.headers.get('link');
    expect(link).toBe('</v2/_catalog?last=mirror%2Fapp&n=1>; rel="next"');
    const next = await fetch(`http://${proxy}${/<([^>]+)>/.exec(link ?? '')?.[1]}`, { headers });
    expect(await next.json()).toEqual({ repositories: ['mirror/multi'] });
    // the upstream scope asked for was the catalog's, with the proxy's account
    expect(tokenServer.fetches.some((f) => f.scopes.includes('registry:catalog:*'))).toBe(true);
  });

  it('is refused to identities the policy does not let pull everything', async () => {
    const token = await tokenFor('alice', 'wonderland');
    const res = await fetch(`http://${proxy}/v2/_catalog`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toContain('scope="registry:catalog:*"');
    expect(((await res.json()) as { errors: Array<{ code: string }> }).errors[0]?.code).toBe(
      'DENIED',
    );
    expect(upstreamRequests).toEqual([]);
  });
});

describe('refusals with the real client: nothing is fetched upstream', () => {
  const inspect = (...auth: string[]) => [
    'inspect',
    '--tls-verify=false',
    ...auth,
    `docker://${proxy}/team-a/app:v1`,
  ];
  const ourToken = async (
    claims: Record<string, unknown>,
    header: Record<string, unknown> = {},
    now = Date.now(),
  ) => {
    const tokens = await createTokenService({
      plugins: [],
      policy: createPolicy([]),
      issuer: 'http://proxy.test',
      service: SERVICE,
      keyPair,
      now: () => now,
    });
    const kid = tokens.jwks().keys[0]?.kid ?? '';
    const iat = Math.floor(now / 1000);
    return new SignJWT({ access: [], ...claims })
      .setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT', ...header })
      .setIssuer('http://proxy.test')
      .setSubject('users:alice')
      .setAudience(SERVICE)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(iat + 900)
      .sign(keyPair.privateKey);
  };
  const teamA = [{ type: 'repository', name: 'team-a/app', actions: ['pull'] }];

  it('a wrong password', async () => {
    expect(await refused(inspect('--creds', 'alice:wrong'))).toMatch(/unauthorized|401/i);
    expect(upstreamRequests).toEqual([]);
  });

  it("a user the policy does not let pull another team's repository", async () => {
    expect(await refused(inspect('--creds', 'bob:builder'))).toMatch(
      /unauthorized|denied|authentication required/i,
    );
    expect(upstreamRequests).toEqual([]);
  });

  it('a well-signed token granting another repository', async () => {
    const token = await ourToken({
      access: [{ type: 'repository', name: 'team-b/secret', actions: ['pull'] }],
    });
    expect(await refused(inspect('--registry-token', token))).toMatch(
      /unauthorized|denied|authentication required/i,
    );
    expect(upstreamRequests).toEqual([]);
  });

  it('an expired token (signed by our key two hours ago)', async () => {
    const token = await ourToken({ access: teamA }, {}, Date.now() - 2 * 3600_000);
    // control: the same token made now is accepted, so the refusal is the expiry
    const { stdout } = await skopeo(inspect('--registry-token', await ourToken({ access: teamA })));
    expect(JSON.parse(stdout).Digest).toBe(single.manifestDigest);
    upstreamRequests.length = 0;
    expect(await refused(inspect('--registry-token', token))).toMatch(
      /unauthorized|authentication required/i,
    );
    expect(upstreamRequests).toEqual([]);
  });

  it('an unsigned token (alg none) and an HS256 token keyed with our public key', async () => {
    const { kid } = (await ourTokenHeader()) ?? {};
    const claims = {
      iss: 'http://proxy.test',
      sub: 'users:alice',
      aud: SERVICE,
      iat: Math.floor(Date.now() / 1000),
      exp: Math.floor(Date.now() / 1000) + 900,
      access: teamA,
    };
    const part = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const none = `${part({ alg: 'none', typ: 'JWT', kid })}.${part(claims)}.`;
    const publicPem = new TextEncoder().encode(await exportSPKI(keyPair.publicKey));
    const hs256 = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT', ...(kid ? { kid } : {}) })
      .sign(publicPem);
    for (const token of [none, hs256]) {
      expect(await refused(inspect('--registry-token', token))).toMatch(
        /unauthorized|authentication required/i,
      );
    }
    expect(upstreamRequests).toEqual([]);

    async function ourTokenHeader() {
      const token = await ourToken({});
      return JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString()) as {
        kid?: string;
      };
    }
  });
});
