import { execFile, execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { promisify } from 'node:util';
import {
  type DockerRegistry,
  freePort,
  makeCertificate,
  type OciImage,
  pushImage,
  startDockerRegistry,
} from '@org/tools/stand-ins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { start } from './start.js';

/** What an operator relies on: logs, audit lines, request ids, /metrics, TLS and its reload. */
const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'registry-proxy-ops-'));
let registry: DockerRegistry;
let image: OciImage;

beforeAll(async () => {
  registry = await startDockerRegistry();
  image = await pushImage(registry, dir, 'acme/app', [{ 'etc/motd': 'operations\n' }]);
}, 60_000);
afterAll(async () => {
  await registry?.close();
  rmSync(dir, { recursive: true, force: true });
});

function authConfig(
  port: number,
  extraServer = '',
  scheme = 'http',
  extraAuth: string[] = [],
): string {
  const htpasswd = join(dir, 'htpasswd');
  writeFileSync(
    htpasswd,
    execFileSync('htpasswd', ['-Bbn', 'alice', 'wonderland'], { encoding: 'utf8' }),
  );
  const config = join(dir, `proxy-${port}.yaml`);
  writeFileSync(
    config,
    [
      `server: { listen: "127.0.0.1:${port}", publicUrl: "${scheme}://127.0.0.1:${port}"${extraServer} }`,
      'auth:',
      ...extraAuth,
      `  plugins: [ { name: users, type: htpasswd, file: ${htpasswd} } ]`,
      '  policy: [ { identities: ["users:alice"], repositories: ["mirror/**"], actions: ["pull"] } ]',
      'upstreams:',
      `  - { name: local, prefix: mirror, url: "${registry.url}", repositoryPrefix: acme }`,
    ].join('\n'),
  );
  return config;
}

/** The certificate a TLS server presents, by SHA-256 fingerprint. */
function servedFingerprint(address: string): Promise<string> {
  const [host, port] = address.split(':');
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port: Number(port), rejectUnauthorized: false }, () => {
      resolve(socket.getPeerCertificate().fingerprint256);
      socket.end();
    });
    socket.on('error', reject);
  });
}

/** A self-signed certificate for 127.0.0.1 as `<name>.crt/.key`; returns its fingerprint. */
function makeCert(name: string): { certFile: string; keyFile: string; fingerprint: string } {
  const made = makeCertificate(dir, name, { subject: '/CN=127.0.0.1', san: 'IP:127.0.0.1' });
  return { ...made, fingerprint: new X509Certificate(readFileSync(made.certFile)).fingerprint256 };
}

/** A CA and a client certificate it signed (CN = `cn`), in a skopeo --cert-dir layout. */
function makeClientCert(name: string, cn: string): { caFile: string; certDir: string } {
  const certDir = join(dir, name);
  mkdirSync(certDir, { recursive: true });
  const ca = makeCertificate(dir, `${name}-ca`, { subject: `/CN=${name} clients CA` });
  const client = makeCertificate(dir, `${name}-client`, { subject: `/CN=${cn}/OU=nodes`, ca });
  // skopeo's --cert-dir takes a client pair as *.cert + *.key
  copyFileSync(client.certFile, join(certDir, 'client.cert'));
  copyFileSync(client.keyFile, join(certDir, 'client.key'));
  return { caFile: ca.certFile, certDir };
}

describe('operating the proxy', () => {
  it('logs each request with an id, one audit line per manifest pull, and never a secret', async () => {
    const port = await freePort();
    const proxy = await start(['serve', '--config', authConfig(port)]);
    try {
      await run('skopeo', [
        'copy',
        '--src-tls-verify=false',
        '--src-creds',
        'alice:wonderland',
        `docker://${proxy.address}/mirror/app:v1`,
        `oci:${join(dir, 'pulled')}:v1`,
      ]);
      const ping = await fetch(`http://${proxy.address}/v2/`, {
        headers: { 'x-request-id': 'trace-123' },
      });
      expect(ping.headers.get('x-request-id')).toBe('trace-123');
      for (const hostile of ['a "quoted" id', 'x'.repeat(300)]) {
        const res = await fetch(`http://${proxy.address}/v2/`, {
          headers: { 'x-request-id': hostile },
        });
        expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
      }
      await proxy.waitForLine((l) => l.requestId === 'trace-123');
      await proxy.waitForLine((l) => l.msg === 'manifest pull');

      const audit = proxy.lines.filter((l) => l.msg === 'manifest pull');
      expect(audit).toEqual([
        expect.objectContaining({
          audit: true,
          identity: 'users:alice',
          repository: 'mirror/app',
          reference: 'v1',
          digest: image.manifestDigest,
          upstream: 'local',
          requestId: expect.any(String),
        }),
      ]);
      const requests = proxy.lines.filter((l) => l.msg === 'request');
      const blob = requests.find((l) => l.route === 'blob' && l.status === 200);
      expect(blob).toMatchObject({ method: 'GET', upstream: 'local', identity: 'users:alice' });
      expect(blob?.bytes).toBeGreaterThan(0);
      expect(requests.find((l) => l.requestId === 'trace-123')).toMatchObject({
        route: 'ping',
        status: 401,
      });
      const ids = requests.map((l) => l.requestId);
      expect(new Set(ids).size).toBe(ids.length);
      const all = proxy.lines.map((l) => JSON.stringify(l)).join('\n');
      expect(all).not.toContain('wonderland');
      expect(all).not.toMatch(/Bearer |Basic |eyJ/);
    } finally {
      expect(await proxy.stop()).toBe(0);
    }
  });

  it('exports Prometheus metrics: requests by route/status/upstream, durations, bytes, process', async () => {
    const port = await freePort();
    const proxy = await start(['serve', '--config', authConfig(port)]);
    try {
      await run('skopeo', [
        'inspect',
        '--tls-verify=false',
        '--creds',
        'alice:wonderland',
        `docker://${proxy.address}/mirror/app:v1`,
      ]);
      await proxy.waitForLine((l) => l.route === 'manifest' && l.status === 200);
      const res = await fetch(`http://${proxy.address}/metrics`);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
      const text = await res.text();
      const value = (pattern: RegExp) => Number(pattern.exec(text)?.[1] ?? Number.NaN);
      expect(
        value(
          /registry_proxy_requests_total\{route="manifest",method="GET",status="200",upstream="local"\} (\d+)/,
        ),
      ).toBe(1);
      expect(
        value(
          /registry_proxy_requests_total\{route="ping",method="GET",status="401",upstream=""\} (\d+)/,
        ),
      ).toBeGreaterThanOrEqual(1);
      expect(
        value(/registry_proxy_requests_total\{route="token",method="GET",status="200".*\} (\d+)/),
      ).toBeGreaterThanOrEqual(1);
      expect(
        value(
          /registry_proxy_request_duration_seconds_count\{route="manifest",upstream="local"\} (\d+)/,
        ),
      ).toBe(1);
      expect(
        value(/registry_proxy_response_bytes_total\{route="manifest",upstream="local"\} (\d+)/),
      ).toBeGreaterThan(0);
      expect(value(/registry_proxy_process_resident_memory_bytes (\d+)/)).toBeGreaterThan(0);
      expect(text).toContain('# TYPE registry_proxy_upstream_token_fetches_total counter');
      expect(text).toContain('# TYPE registry_proxy_credential_cache_total counter');
      expect(text).not.toContain('alice');
    } finally {
      await proxy.stop();
    }
  });

  it('rotates the signing key: tokens signed before stay valid, both keys are published', async () => {
    const genKey = (file: string) =>
      execFileSync('openssl', [
        'genpkey',
        '-algorithm',
        'EC',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-out',
        file,
      ]);
    const [oldKey, newKey] = [join(dir, 'old.pem'), join(dir, 'new.pem')];
    genKey(oldKey);
    genKey(newKey);
    const port = await freePort();
    const basic = `Basic ${Buffer.from('alice:wonderland').toString('base64')}`;
    const tokenUrl = `http://127.0.0.1:${port}/token?service=127.0.0.1:${port}&scope=repository:mirror/app:pull`;
    const before = await start([
      'serve',
      '--config',
      authConfig(port, '', 'http', [`  signingKeyFile: ${oldKey}`]),
    ]);
    let token: string;
    try {
      token = (
        (await (await fetch(tokenUrl, { headers: { authorization: basic } })).json()) as {
          token: string;
        }
      ).token;
    } finally {
      await before.stop();
    }
    const after = await start([
      'serve',
      '--config',
      authConfig(port, '', 'http', [
        `  signingKeyFile: ${newKey}`,
        `  previousSigningKeyFiles: [${oldKey}]`,
      ]),
    ]);
    try {
      const jwks = (await (
        await fetch(`http://${after.address}/.well-known/jwks.json`)
      ).json()) as { keys: unknown[] };
      expect(jwks.keys).toHaveLength(2);
      const { stdout } = await run('skopeo', [
        'inspect',
        '--tls-verify=false',
        '--registry-token',
        token,
        `docker://${after.address}/mirror/app:v1`,
      ]);
      expect(JSON.parse(stdout).Digest).toBe(image.manifestDigest);
    } finally {
      await after.stop();
    }
    // without the previous key the same token is refused
    const dropped = await start([
      'serve',
      '--config',
      authConfig(port, '', 'http', [`  signingKeyFile: ${newKey}`]),
    ]);
    try {
      const err = (await run('skopeo', [
        'inspect',
        '--tls-verify=false',
        '--registry-token',
        token,
        `docker://${dropped.address}/mirror/app:v1`,
      ]).catch((e: unknown) => e)) as { stderr?: string };
      expect(err.stderr ?? 'succeeded').toMatch(/unauthorized|authentication required|401/i);
    } finally {
      await dropped.stop();
    }
  });

  it('lets nodes in by client certificate (mtls), e.g. containerd mirrors that cannot send passwords', async () => {
    const trusted = makeClientCert('trusted', 'node-1.example.com');
    const stranger = makeClientCert('stranger', 'node-1.example.com');
    const { certFile, keyFile } = makeCert('mtls-server');
    const port = await freePort();
    const config = join(dir, 'mtls.yaml');
    writeFileSync(
      config,
      [
        `server: { listen: "127.0.0.1:${port}", publicUrl: "https://127.0.0.1:${port}", tls: { certFile: "${certFile}", keyFile: "${keyFile}", clientCaFile: "${trusted.caFile}" } }`,
        'auth:',
        '  plugins: [ { name: nodes, type: mtls } ]',
        '  policy: [ { identities: ["nodes:*.example.com"], repositories: ["mirror/**"], actions: ["pull"] } ]',
        'upstreams:',
        `  - { name: local, prefix: mirror, url: "${registry.url}", repositoryPrefix: acme }`,
      ].join('\n'),
    );
    const proxy = await start(['serve', '--config', config]);
    try {
      const inspect = (...extra: string[]) =>
        run('skopeo', [
          'inspect',
          '--tls-verify=false',
          ...extra,
          `docker://${proxy.address}/mirror/app:v1`,
        ]);
      const { stdout } = await inspect('--cert-dir', trusted.certDir);
      expect(JSON.parse(stdout).Digest).toBe(image.manifestDigest);
      await proxy.waitForLine(
        (l) => l.msg === 'manifest pull' && l.identity === 'nodes:node-1.example.com',
      );
      for (const extra of [[], ['--cert-dir', stranger.certDir]]) {
        const err = (await inspect(...extra).catch((e: unknown) => e)) as { stderr?: string };
        expect(err.stderr ?? 'succeeded').toMatch(/denied|unauthorized|authentication required/i);
      }
    } finally {
      await proxy.stop();
    }
  });

  it('the network plugin: clients of an allowed network pull without credentials, loudly logged', async () => {
    for (const [cidr, allowed] of [
      ['127.0.0.0/8', true],
      ['10.0.0.0/8', false],
    ] as const) {
      const port = await freePort();
      const config = join(dir, `network-${allowed}.yaml`);
      writeFileSync(
        config,
        [
          `server: { listen: "127.0.0.1:${port}", publicUrl: "http://127.0.0.1:${port}" }`,
          'auth:',
          `  plugins: [ { name: lan, type: network, cidrs: ["${cidr}"] } ]`,
          '  policy: [ { identities: ["lan:*"], repositories: ["mirror/**"], actions: ["pull"] } ]',
          'upstreams:',
          `  - { name: local, prefix: mirror, url: "${registry.url}", repositoryPrefix: acme }`,
        ].join('\n'),
      );
      const proxy = await start(['serve', '--config', config]);
      try {
        expect(
          proxy.lines.some(
            (l) => l.level === 'warn' && String(l.msg).includes('without credentials'),
          ),
        ).toBe(true);
        const result = (await run('skopeo', [
          'inspect',
          '--tls-verify=false',
          `docker://${proxy.address}/mirror/app:v1`,
        ]).catch((e: unknown) => e)) as { stdout?: string; stderr?: string };
        if (allowed) expect(JSON.parse(result.stdout ?? '{}').Digest).toBe(image.manifestDigest);
        else
          expect(result.stderr ?? 'succeeded').toMatch(
            /denied|unauthorized|authentication required/i,
          );
      } finally {
        await proxy.stop();
      }
    }
  });

  it('slows password guessing: 429 with Retry-After after too many failures for a user', async () => {
    const port = await freePort();
    const proxy = await start([
      'serve',
      '--config',
      authConfig(port, '', 'http', [
        '  loginRateLimit: { maxFailuresPerUser: 3, windowSeconds: 120 }',
      ]),
    ]);
    try {
      const attempt = (password: string) =>
        fetch(`http://${proxy.address}/token?service=127.0.0.1:${port}`, {
          headers: {
            authorization: `Basic ${Buffer.from(`alice:${password}`).toString('base64')}`,
          },
        });
      for (let i = 0; i < 3; i++) expect((await attempt(`guess-${i}`)).status).toBe(401);
      const blocked = await attempt('wonderland');
      expect(blocked.status).toBe(429);
      expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThan(0);
    } finally {
      await proxy.stop();
    }
  });

  it('serves TLS and picks up a renewed certificate without a restart; a broken one is refused', async () => {
    const { certFile, keyFile, fingerprint: first } = makeCert('tls');
    const port = await freePort();
    const config = authConfig(
      port,
      `, tls: { certFile: "${certFile}", keyFile: "${keyFile}", reloadIntervalSeconds: 1 }`,
      'https',
    );
    const proxy = await start(['serve', '--config', config]);
    try {
      expect(proxy.lines.find((l) => l.msg === 'listening')).toMatchObject({ tls: true });
      expect(await servedFingerprint(proxy.address)).toBe(first);
      // skopeo speaks https to it (verification off: the test certificate is self-signed)
      const { stdout } = await run('skopeo', [
        'inspect',
        '--tls-verify=false',
        '--creds',
        'alice:wonderland',
        `docker://${proxy.address}/mirror/app:v1`,
      ]);
      expect(JSON.parse(stdout).Digest).toBe(image.manifestDigest);

      // renew the way cert-manager does: both files replaced
      const renewed = makeCert('new');
      const second = renewed.fingerprint;
      renameSync(renewed.keyFile, keyFile);
      renameSync(renewed.certFile, certFile);
      const deadline = Date.now() + 30_000;
      while ((await servedFingerprint(proxy.address)) !== second) {
        if (Date.now() > deadline) throw new Error('the renewed certificate was never served');
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(proxy.lines.some((l) => l.msg === 'tls certificate reloaded')).toBe(true);

      writeFileSync(certFile, 'not a certificate\n');
      await proxy.waitForLine((l) => String(l.msg).startsWith('tls certificate reload failed'));
      expect(await servedFingerprint(proxy.address)).toBe(second);
    } finally {
      await proxy.stop();
    }
  });
});
