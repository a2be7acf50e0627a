import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type DockerRegistry,
  freePort,
  type OciImage,
  pushImage,
  type StandIn,
  startDockerRegistry,
  startStandIn,
} from '@org/tools/stand-ins';
import { calculateJwkThumbprint, exportJWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { type Started, start } from './start.js';

/**
 * The hostile-input corpus (test/hostile/*.yaml, format in test/hostile/README.md) against the
 * built binary with token auth, in front of a real docker-registry reached through counting
 * forwarders, and a redirecting upstream whose storage target counts what reaches it. Requests
 * are written byte-exact on a socket (no URL normalisation), one connection per case.
 */

interface TokenSpec {
  /** `ES256` (ours, default), `none`, `HS256-public-key`, `HS256-public-jwk`, `ES256-foreign`, `RS256-foreign`. */
  alg?: string;
  /** `ours` (default), `missing`, `foreign`, or a literal kid. */
  kid?: string;
  /** Claims set or overridden; durations `+1h` / `-90s` are relative to now; null drops one. */
  claims?: Record<string, unknown>;
  /** Default access: pull on this repository (default team/app). */
  repository?: string;
  /** `strip`, `flip`, `tamper-payload`. */
  signature?: string;
  /** Extra protected-header fields (jku, x5u, jwk, crit). */
  header?: Record<string, unknown>;
}

interface Case {
  name: string;
  attacks: string;
  method?: string;
  /** The request target, sent as is (required unless `raw`). */
  path?: string;
  /** Header lines in order (duplicates allowed); `{token}` is replaced by the case's token. */
  headers?: Array<[string, string]>;
  token?: TokenSpec;
  /** Big inputs: one header of `bytes`, or `count` small headers. */
  generate?: { header?: { name: string; bytes: number }; headers?: number };
  /** What the redirecting upstream answers blob GETs with (`{storage}` = storage host:port). */
  redirectTo?: string;
  /** Raw request bytes instead of method/path/headers (`\r\n` written as is). */
  raw?: string;
  expect: {
    status: number | number[];
    codes?: string[];
    upstream?: number;
    storage?: number;
    /** The 401 challenge's params that must be there (realm and service always checked). */
    challenge?: Record<string, string>;
    message?: string;
    /** For /token answers: the decoded token's access claim. */
    access?: unknown[];
    /** The body must not contain these strings. */
    bodyExcludes?: string[];
  };
}

const corpusDir = join(import.meta.dirname, 'hostile');
const files = readdirSync(corpusDir).filter((f) => f.endsWith('.yaml'));
const corpus = files.map((f) => ({
  file: f,
  cases: parseYaml(readFileSync(join(corpusDir, f), 'utf8')) as Case[],
}));

const dir = mkdtempSync(join(tmpdir(), 'registry-proxy-hostile-'));
let registry: DockerRegistry;
let image: OciImage;
let proxy: Started;
let publicUrl: string;
let service: string;
let privateKey: KeyObject;
let publicKey: KeyObject;
let kid: string;
const foreign = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const foreignRsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
let redirecting: StandIn;
let storage: StandIn;
let location = '';
const forwarders: Array<{ server: Server; count: number; headers: string[][] }> = [];

/** A loopback forwarder to the real registry that counts (and records headers of) what it forwards. */
async function startForwarder(target: string) {
  const entry = { server: undefined as unknown as Server, count: 0, headers: [] as string[][] };
  const to = new URL(target);
  entry.server = createServer((req, res) => {
    entry.count++;
    entry.headers.push(Object.keys(req.headers));
    const up = httpRequest(
      {
        host: to.hostname,
        port: to.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: to.host },
      },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => entry.server.listen(0, '127.0.0.1', () => r()));
  forwarders.push(entry);
  return `http://127.0.0.1:${(entry.server.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  registry = await startDockerRegistry();
  image = await pushImage(registry, dir, 'acme/app', [{ 'etc/motd': 'hostile\n' }]);
  const main = await startForwarder(registry.url);
  const vanity = await startForwarder(registry.url);
  storage = await startStandIn((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.end('storage bytes');
  });
  redirecting = await startStandIn((req, res) => {
    if (req.path === '/same-origin/blob') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end('same-origin bytes');
      return;
    }
    if (/^\/v2\/.+\/blobs\/sha256:[0-9a-f]{64}$/.test(req.path)) {
      res.writeHead(307, { location: location.replaceAll('{self}', redirecting.host) });
      res.end();
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}');
  });
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  privateKey = pair.privateKey;
  publicKey = pair.publicKey;
  const keyFile = join(dir, 'signing.pem');
  writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  kid = await calculateJwkThumbprint(await exportJWK(publicKey));
  const port = await freePort();
  publicUrl = `http://127.0.0.1:${port}`;
  service = `127.0.0.1:${port}`;
  const config = join(dir, 'proxy.yaml');
  writeFileSync(
    config,
    [
      `server: { listen: "127.0.0.1:${port}", publicUrl: "${publicUrl}" }`,
      'auth:',
      `  signingKeyFile: ${keyFile}`,
      '  loginRateLimit: { maxFailuresPerUser: 1000, maxFailuresPerAddress: 1000 }',
      '  plugins:',
      '    - { name: users, type: static, users: [ { username: alice, password: alice-pw } ] }',
      '  policy:',
      '    - identities: ["users:alice"]',
      '      repositories: ["team/**", "redir/**", "allowed/**", "app", "other/**"]',
      '      actions: [pull]',
      'upstreams:',
      `  - { name: main, prefix: team, url: "${main}", repositoryPrefix: acme }`,
      `  - { name: vanity, prefix: "", url: "${vanity}", repositoryPrefix: acme, hosts: ["vanity.example.com"] }`,
      `  - { name: redir, prefix: redir, url: "${redirecting.url}" }`,
      `  - { name: allowed, prefix: allowed, url: "${redirecting.url}", allowInternalRedirects: ["127.0.0.0/8", "::1"] }`,
    ].join('\n'),
  );
  proxy = await start(['serve', '--config', config]);
}, 120_000);

afterAll(async () => {
  await proxy?.stop();
  for (const f of forwarders) {
    f.server.closeAllConnections();
    await new Promise<void>((r) => f.server.close(() => r()));
  }
  await redirecting?.close();
  await storage?.close();
  await registry?.close();
  rmSync(dir, { recursive: true, force: true });
});

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

/** `{x:N}` repeats x N times; `{digest}`, `{manifest}`, `{service}`, `{issuer}`, `{storage}`, `{storage-port}` are the run's values. */
function fill(text: string): string {
  return text
    .replace(/\{([^{}]+?):(\d+)\}/g, (_, chunk: string, n: string) => chunk.repeat(Number(n)))
    .replaceAll('{digest}', image.layerDigests[0] ?? '')
    .replaceAll('{manifest}', image.manifestDigest)
    .replaceAll('{service}', encodeURIComponent(service))
    .replaceAll('{issuer}', new URL(publicUrl).origin)
    .replaceAll('{storage-port}', String(storage.port))
    .replaceAll('{storage}', storage.host);
}

function time(value: unknown, now: number): unknown {
  if (typeof value !== 'string') return value;
  if (value.includes('{')) return fill(value);
  const m = /^([+-])(\d+)([smhd])$/.exec(value);
  if (!m) return value;
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[m[3] as 's'] ?? 1;
  return now + (m[1] === '-' ? -1 : 1) * Number(m[2]) * unit;
}

/** A token as the case describes it: ours, or forged. */
async function makeToken(spec: TokenSpec): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = {
    iss: new URL(publicUrl).origin,
    aud: service,
    sub: 'users:alice',
    iat: now,
    nbf: now,
    exp: now + 600,
    access: [{ type: 'repository', name: fill(spec.repository ?? 'team/app'), actions: ['pull'] }],
  };
  for (const [k, v] of Object.entries(spec.claims ?? {})) {
    if (v === null) delete claims[k];
    else claims[k] = time(v, now);
  }
  const alg = spec.alg ?? 'ES256';
  const kidValue =
    spec.kid === undefined || spec.kid === 'ours'
      ? kid
      : spec.kid === 'foreign'
        ? await calculateJwkThumbprint(await exportJWK(foreign.publicKey))
        : spec.kid === 'missing'
          ? undefined
          : spec.kid;
  const header: Record<string, unknown> = {
    typ: 'JWT',
    ...(kidValue === undefined ? {} : { kid: kidValue }),
    ...(spec.header ?? {}),
  };
  if (header.jwk === 'foreign') header.jwk = await exportJWK(foreign.publicKey);
  let token: string;
  if (alg.startsWith('none') || alg === 'None' || alg === 'NONE') {
    token = `${b64({ ...header, alg: alg.replace(/-.*/, '') })}.${b64(claims)}.`;
  } else if (alg.startsWith('HS')) {
    const [name, source] = alg.split(/-(.*)/) as [string, string];
    const secret =
      source === 'public-jwk'
        ? Buffer.from(JSON.stringify(await exportJWK(publicKey)))
        : source === 'public-der'
          ? (publicKey.export({ type: 'spki', format: 'der' }) as Buffer)
          : Buffer.from(publicKey.export({ type: 'spki', format: 'pem' }) as string);
    token = await new SignJWT(claims)
      .setProtectedHeader({ ...header, alg: name })
      .sign(new Uint8Array(secret));
  } else if (header.crit !== undefined) {
    // jose refuses to sign unknown critical extensions; a forger would not care
    const input = `${b64({ ...header, alg: 'ES256' })}.${b64(claims)}`;
    const signature = sign('sha256', Buffer.from(input), {
      key: privateKey,
      dsaEncoding: 'ieee-p1363',
    });
    token = `${input}.${signature.toString('base64url')}`;
  } else {
    const key =
      alg === 'ES256-foreign'
        ? foreign.privateKey
        : alg === 'RS256-foreign'
          ? foreignRsa.privateKey
          : privateKey;
    token = await new SignJWT(claims)
      .setProtectedHeader({ ...header, alg: alg.replace(/-.*/, '') })
      .sign(key);
  }
  const [h, p, s = ''] = token.split('.');
  if (spec.signature === 'strip') return `${h}.${p}.`;
  if (spec.signature === 'flip') {
    const sig = Buffer.from(s, 'base64url');
    sig[0] = (sig[0] ?? 0) ^ 1;
    return `${h}.${p}.${sig.toString('base64url')}`;
  }
  if (spec.signature === 'tamper-payload') {
    const body = JSON.parse(Buffer.from(p ?? '', 'base64url').toString()) as Record<
      string,
      unknown
    >;
    body.access = [{ type: 'repository', name: 'other/secret', actions: ['pull', 'push'] }];
    return `${h}.${b64(body)}.${s}`;
  }
  return token;
}

interface Answer {
  status: number;
  headers: Map<string, string>;
  body: string;
}

/** Sends `bytes` on a fresh connection and reads the answer until the server closes it. */
function exchange(bytes: Buffer): Promise<Answer> {
  const { port } = new URL(publicUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', (err) => {
      // A server that answers and then resets (a refused oversized request) still answered.
      if (chunks.length > 0) socket.emit('end');
      else reject(err);
    });
    socket.once('end', () => {
      socket.destroy();
      const all = Buffer.concat(chunks);
      const split = all.indexOf('\r\n\r\n');
      const head = all.subarray(0, split === -1 ? all.length : split).toString('latin1');
      const [statusLine = '', ...lines] = head.split('\r\n');
      const headers = new Map<string, string>();
      for (const line of lines) {
        const at = line.indexOf(':');
        if (at > 0) headers.set(line.slice(0, at).toLowerCase(), line.slice(at + 1).trim());
      }
      let body = split === -1 ? Buffer.alloc(0) : all.subarray(split + 4);
      if (headers.get('transfer-encoding') === 'chunked') {
        const out: Buffer[] = [];
        let at = 0;
        for (;;) {
          const eol = body.indexOf('\r\n', at);
          if (eol === -1) break;
          const size = Number.parseInt(body.subarray(at, eol).toString(), 16);
          if (!size) break;
          out.push(body.subarray(eol + 2, eol + 2 + size));
          at = eol + 2 + size + 2;
        }
        body = Buffer.concat(out);
      }
      resolve({
        status: Number(statusLine.split(' ')[1] ?? 0),
        headers,
        body: body.toString('utf8'),
      });
    });
    socket.write(bytes);
  });
}

async function requestBytes(c: Case): Promise<Buffer> {
  const host = new URL(publicUrl).host;
  if (c.raw !== undefined)
    return Buffer.from(c.raw.replaceAll('{host}', host).replaceAll('\\r\\n', '\r\n'), 'latin1');
  const token = c.token ? await makeToken(c.token) : undefined;
  const lines: Array<[string, string]> = [];
  const given = (c.headers ?? []).map(
    ([k, v]) => [k, fill(v).replaceAll('{token}', token ?? '')] as [string, string],
  );
  if (!given.some(([k]) => k.toLowerCase() === 'host')) lines.push(['Host', host]);
  if (token !== undefined && !given.some(([k]) => k.toLowerCase() === 'authorization'))
    lines.push(['Authorization', `Bearer ${token}`]);
  lines.push(...given);
  if (c.generate?.header) lines.push([c.generate.header.name, 'x'.repeat(c.generate.header.bytes)]);
  for (let i = 0; i < (c.generate?.headers ?? 0); i++) lines.push([`x-junk-${i}`, String(i)]);
  lines.push(['Connection', 'close']);
  const path = fill(c.path ?? '/');
  const head = `${c.method ?? 'GET'} ${path} HTTP/1.1\r\n${lines.map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n`;
  return Buffer.from(head, 'latin1');
}

const upstreamCount = () =>
  forwarders.reduce((n, f) => n + f.count, 0) + redirecting.requests.length;

describe.each(corpus)('hostile input: $file', ({ cases }) => {
  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_, c) => {
    location = fill(c.redirectTo ?? '');
    const before = { upstream: upstreamCount(), storage: storage.requests.length };
    const res = await exchange(await requestBytes(c));
    const why = `${c.attacks}\n${res.status} ${res.body.slice(0, 400)}`;
    const statuses = Array.isArray(c.expect.status) ? c.expect.status : [c.expect.status];
    expect(statuses, why).toContain(res.status);
    if (c.expect.codes) {
      const body = JSON.parse(res.body) as { errors?: Array<{ code: string }> };
      expect(
        body.errors?.map((e) => e.code),
        why,
      ).toEqual(c.expect.codes);
    }
    if (c.expect.message) expect(res.body, why).toMatch(new RegExp(c.expect.message));
    for (const s of c.expect.bodyExcludes ?? []) expect(res.body, why).not.toContain(s);
    if (res.status === 401) {
      const challenge = res.headers.get('www-authenticate') ?? '';
      if ((c.path ?? c.raw?.split(' ')[1] ?? '').startsWith('/token')) {
        // RFC 9110 §15.5.2: every 401 carries a challenge; the token endpoint's is Basic
        expect(challenge, why).toBe(`Basic realm="${service}"`);
      } else {
        expect(challenge, why).toMatch(/^Bearer /);
        const params = Object.fromEntries(
          [...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]),
        );
        expect(params.realm, why).toBe(`${publicUrl}/token`);
        expect(params.service, why).toBe(service);
        for (const [k, v] of Object.entries(c.expect.challenge ?? {}))
          expect(params[k], `${why}\nchallenge ${k}`).toBe(v);
      }
    }
    if (c.expect.access) {
      const { token } = JSON.parse(res.body) as { token: string };
      const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as {
        access: unknown[];
        sub: string;
      };
      expect(claims.access, why).toEqual(c.expect.access);
    }
    // the proxy sends its requests before it answers; a forwarder may still be counting
    await new Promise((r) => setTimeout(r, 20));
    expect(upstreamCount() - before.upstream, `${why}\nupstream requests`).toBe(
      c.expect.upstream ?? 0,
    );
    expect(storage.requests.length - before.storage, `${why}\nstorage requests`).toBe(
      c.expect.storage ?? 0,
    );
  });
});

describe('after the corpus', () => {
  it('the proxy still serves a pull, forwards none of the junk headers, and kept running', async () => {
    const token = await makeToken({});
    const res = await exchange(
      Buffer.from(
        `GET /v2/team/app/manifests/v1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`,
      ),
    );
    expect(res.status).toBe(200);
    expect(res.headers.get('docker-content-digest')).toBe(image.manifestDigest);
    expect(proxy.child.exitCode).toBeNull();
    const seen = new Set(forwarders.flatMap((f) => f.headers.flat()));
    for (const h of ['authorization', 'x-junk-1', 'x-forwarded-host', 'forwarded', 'cookie'])
      expect(seen.has(h), h).toBe(false);
  });
});
