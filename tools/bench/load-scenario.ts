#!/usr/bin/env node
/**
 * The proxy's load scenario (a benchmark, not a test: it prints figures and PASS/MISS markers
 * against the targets, and exits 0 whatever they are). Many clients pull a many-layer image the
 * way docker does (ping, token, manifest, config and layers, three blobs at a time), first
 * straight from a real docker-registry with `auth: token`, then through our built proxy with our
 * token auth in front and GCP credentials (metadata-server stand-in) behind, for a fixed time
 * each. It prints pulls/s, errors, manifest latency, the proxy's peak RSS, and how many upstream
 * tokens and cloud credentials the proxy fetched next to how many their lifetimes call for.
 *
 *   node tools/bench/load.ts [--clients 200] [--seconds 60] [--layers 10] [--layer-size 256K]
 *
 * See tools/bench/README.md.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startGceMetadata } from '../stand-ins/gce-metadata.ts';
import { pushImage } from '../stand-ins/oci-image.ts';
import { freePort, startDockerRegistry } from '../stand-ins/registry.ts';
import { startRegistryTokenServer } from '../stand-ins/registry-token.ts';
import {
  counterSum,
  formatSize,
  formatTable,
  parseBearerChallenge,
  parseSize,
  percentile,
  refreshesWithin,
} from './parse.ts';
import { type Cleanup, startProxy } from './processes.ts';
import { childrenOf, rssOf } from './procfs.ts';
import { requirePrograms, runBench, step, versionOf } from './run.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const KiB = 1024;
const MiB = 1024 * KiB;
const REPOSITORY = 'bench/app';
const TAG = 'v1';
const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');
/** docker's `max-concurrent-downloads` default. */
const BLOB_CONCURRENCY = 3;
const UPSTREAM_USER = 'oauth2accesstoken';
const UPSTREAM_PASSWORD = 'ya29.bench-load';
const CLIENT_USER = 'puller';
const CLIENT_PASSWORD = 'bench-load-password';

const USAGE = `usage: node tools/bench/load.ts [options]   (pnpm bench:load [options] from the root)

  --clients N          concurrent clients, each pulling in a loop; default 200
  --seconds N          how long each target is loaded; default 60
  --layers N           layers in the image; default 10
  --layer-size SIZE    bytes of random data per layer (binary units: 256K, 1M); default 256K
  --token-ttl N        expires_in of the upstream's tokens, seconds; default 60
  --credential-ttl N   expires_in of the GCP access tokens, seconds; default 120
  --json FILE          also write the figures as JSON; default reports/bench/load.json
  --cpu-prof DIR       run our proxy with --cpu-prof, the profile written to DIR when it stops
`;

function options() {
  const { values } = parseArgs({
    options: {
      clients: { type: 'string', default: '200' },
      seconds: { type: 'string', default: '60' },
      layers: { type: 'string', default: '10' },
      'layer-size': { type: 'string', default: '256K' },
      'token-ttl': { type: 'string', default: '60' },
      'credential-ttl': { type: 'string', default: '120' },
      json: { type: 'string', default: join(repoRoot, 'reports', 'bench', 'load.json') },
      'cpu-prof': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const whole = (name: string, text: string, min: number) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < min)
      throw new TypeError(`--${name} must be a whole number >= ${min}`);
    return n;
  };
  return {
    clients: whole('clients', values.clients, 1),
    seconds: whole('seconds', values.seconds, 1),
    layers: whole('layers', values.layers, 1),
    layerSize: parseSize(values['layer-size'], 1),
    tokenTtl: whole('token-ttl', values['token-ttl'], 20),
    credentialTtl: whole('credential-ttl', values['credential-ttl'], 20),
    json: values.json,
    cpuProf: values['cpu-prof'] === undefined ? undefined : resolve(values['cpu-prof']),
  };
}

interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
  /** `sha256:<hex>` of the body. */
  readonly digest: string;
}

/** One GET on a client's own keep-alive agent; the body is read whole and hashed. */
function get(agent: Agent, url: string, headers: Record<string, string>): Promise<Reply> {
  return new Promise((resolvePromise, reject) => {
    const req = request(url, { agent, headers }, (res) => {
      const hash = createHash('sha256');
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        hash.update(c);
        if (chunks.length < 64) chunks.push(c);
      });
      res.on('error', reject);
      res.on('end', () =>
        resolvePromise({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks),
          digest: `sha256:${hash.digest('hex')}`,
        }),
      );
    });
    req.on('error', reject);
    req.setTimeout(60_000, () => req.destroy(new Error('no answer within 60 s')));
    req.end();
  });
}

interface Image {
  readonly manifestDigest: string;
  /** The config and every layer. */
  readonly blobs: readonly string[];
}

interface Phase {
  readonly target: string;
  readonly seconds: number;
  readonly pulls: number;
  readonly errors: number;
  /** The first few distinct error messages. */
  readonly errorSamples: string[];
  /** Milliseconds of each manifest GET. */
  readonly manifestMs: number[];
  readonly requests: number;
  readonly bytes: number;
}

/**
 * `clients` loops, each pulling `image` the way docker does until `seconds` have passed: ping,
 * token (Basic) for the challenge's realm, manifest by tag, then the config and layers three at
 * a time, every body checked against its digest. A pull that fails counts as one error and the
 * client starts over.
 */
async function load(
  target: string,
  base: string,
  credentials: { user: string; password: string },
  image: Image,
  clients: number,
  seconds: number,
): Promise<Phase> {
  const basic = `Basic ${Buffer.from(`${credentials.user}:${credentials.password}`).toString('base64')}`;
  const phase = {
    target,
    seconds,
    pulls: 0,
    errors: 0,
    errorSamples: [] as string[],
    manifestMs: [] as number[],
    requests: 0,
    bytes: 0,
  };
  const started = performance.now();
  const deadline = started + seconds * 1000;
  const fail = (why: string) => {
    phase.errors++;
    if (phase.errorSamples.length < 5 && !phase.errorSamples.includes(why))
      phase.errorSamples.push(why);
  };
  const one = async (agent: Agent) => {
    const counted = async (url: string, headers: Record<string, string>) => {
      const reply = await get(agent, url, headers);
      phase.requests++;
      phase.bytes += reply.body.length;
      return reply;
    };
    const ping = await counted(`${base}/v2/`, {});
    if (ping.status !== 401) throw new Error(`ping answered ${ping.status}, not 401`);
    const challenge = parseBearerChallenge(String(ping.headers['www-authenticate'] ?? ''));
    const tokenUrl = new URL(challenge.realm);
    tokenUrl.searchParams.set('service', challenge.service);
    tokenUrl.searchParams.set('scope', `repository:${REPOSITORY}:pull`);
    const token = await counted(tokenUrl.href, { authorization: basic });
    if (token.status !== 200) throw new Error(`token answered ${token.status}`);
    const bearer = `Bearer ${(JSON.parse(token.body.toString()) as { token: string }).token}`;
    const t0 = performance.now();
    const manifest = await counted(`${base}/v2/${REPOSITORY}/manifests/${TAG}`, {
      accept: MANIFEST_ACCEPT,
      authorization: bearer,
    });
    phase.manifestMs.push(performance.now() - t0);
    if (manifest.status !== 200) throw new Error(`manifest answered ${manifest.status}`);
    if (manifest.digest !== image.manifestDigest) throw new Error('manifest digest differs');
    const queue = [...image.blobs];
    const worker = async () => {
      for (let digest = queue.shift(); digest; digest = queue.shift()) {
        const blob = await counted(`${base}/v2/${REPOSITORY}/blobs/${digest}`, {
          authorization: bearer,
        });
        if (blob.status !== 200) throw new Error(`blob GET answered ${blob.status}`);
        if (blob.digest !== digest) throw new Error('blob digest differs');
      }
    };
    await Promise.all(Array.from({ length: BLOB_CONCURRENCY }, worker));
  };
  const client = async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: BLOB_CONCURRENCY });
    try {
      while (performance.now() < deadline) {
        try {
          await one(agent);
          phase.pulls++;
        } catch (err) {
          fail(err instanceof Error ? err.message : String(err));
        }
      }
    } finally {
      agent.destroy();
    }
  };
  await Promise.all(Array.from({ length: clients }, client));
  return { ...phase, seconds: (performance.now() - started) / 1000 };
}

async function main(cleanup: Cleanup): Promise<void> {
  const opts = options();
  requirePrograms({ 'docker-registry': 'docker-registry', skopeo: 'skopeo' });
  const loadAtStart = loadavg()[0] ?? 0;
  if (loadAtStart > cpus().length / 2)
    step(
      `load average is ${loadAtStart.toFixed(2)} on ${cpus().length} cores: other work competes, figures will be noisy`,
    );
  const proxyMain = join(repoRoot, 'apps', 'proxy', 'dist', 'main.js');
  if (!existsSync(proxyMain))
    throw new Error('apps/proxy/dist/main.js is missing: run pnpm bench:load from the root');
  const work = cleanup.dir(mkdtempSync(join(tmpdir(), 'registry-proxy-load-')));

  step('starting the token server, docker-registry (auth: token) and the GCP metadata stand-in');
  const tokenServer = await startRegistryTokenServer({
    users: { [UPSTREAM_USER]: UPSTREAM_PASSWORD },
    expiresIn: opts.tokenTtl,
  });
  cleanup.add('stop the token server', () => tokenServer.close());
  const registry = await startDockerRegistry({ token: tokenServer });
  cleanup.add('stop docker-registry', () => registry.close());
  const registryPids = childrenOf(process.pid, 'docker-registry');
  const metadata = await startGceMetadata({
    token: () => UPSTREAM_PASSWORD,
    expiresIn: opts.credentialTtl,
  });
  cleanup.add('stop the metadata stand-in', () => metadata.close());

  step(
    `pushing ${REPOSITORY}:${TAG}, ${opts.layers} layers of ${formatSize(opts.layerSize)} random bytes, with skopeo`,
  );
  const layers = Array.from({ length: opts.layers }, (_, i) => ({
    [`layer-${i}.bin`]: randomBytes(opts.layerSize),
  }));
  const pushed = await pushImage(registry, work, REPOSITORY, layers, {
    tag: TAG,
    credentials: { user: UPSTREAM_USER, password: UPSTREAM_PASSWORD },
  });
  const manifestJson = JSON.parse(
    readFileSync(
      join(pushed.layout, 'blobs', 'sha256', pushed.manifestDigest.slice('sha256:'.length)),
      'utf8',
    ),
  ) as { config: { digest: string }; layers: { digest: string; size: number }[] };
  const image: Image = {
    manifestDigest: pushed.manifestDigest,
    blobs: [manifestJson.config.digest, ...manifestJson.layers.map((l) => l.digest)],
  };
  const pullBytes = manifestJson.layers.reduce((n, l) => n + l.size, 0);
  const pushFetches = tokenServer.fetches.length;

  step(
    `direct: ${opts.clients} clients pulling from docker-registry for ${opts.seconds} s (tokens from its token server)`,
  );
  const direct = await load(
    'direct',
    registry.url,
    { user: UPSTREAM_USER, password: UPSTREAM_PASSWORD },
    image,
    opts.clients,
    opts.seconds,
  );
  const directTokenFetches = tokenServer.fetches.length - pushFetches;

  step('starting our proxy: our token auth in front, GCP credentials behind');
  const port = await freePort();
  const configFile = join(work, 'proxy.yaml');
  writeFileSync(
    configFile,
    [
      `server: { listen: "127.0.0.1:${port}", publicUrl: "http://127.0.0.1:${port}" }`,
      'upstreams:',
      `  - { name: bench, prefix: "", url: "${registry.url}", credentials: { provider: gcp, skipRegistryValidation: true } }`,
      'auth:',
      '  plugins:',
      `    - { name: bench, type: static, users: [ { username: ${CLIENT_USER}, password: ${CLIENT_PASSWORD} } ] }`,
      '  policy:',
      '    - { identities: ["bench:*"], repositories: ["**"], actions: ["pull"] }',
      '',
    ].join('\n'),
  );
  process.env.GCE_METADATA_HOST = metadata.host;
  if (opts.cpuProf) mkdirSync(opts.cpuProf, { recursive: true });
  const ours = await startProxy(
    cleanup,
    proxyMain,
    configFile,
    opts.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProf}`] : [],
  );
  const startRss = rssOf(ours.pid, 'VmRSS');
  const upstreamFetchesBefore = tokenServer.fetches.length;
  const credentialFetchesBefore = metadata.tokens;
  step(`ours: ${opts.clients} clients pulling through the proxy for ${opts.seconds} s`);
  let peakMethod = 'VmHWM';
  try {
    writeFileSync(`/proc/${ours.pid}/clear_refs`, '5');
  } catch {
    peakMethod = 'VmHWM since start';
  }
  const proxied = await load(
    'ours',
    ours.url,
    { user: CLIENT_USER, password: CLIENT_PASSWORD },
    image,
    opts.clients,
    opts.seconds,
  );
  const peakRss = rssOf(ours.pid, 'VmHWM');
  const metrics = await (await fetch(`${ours.url}/metrics`)).text();
  const upstreamTokenFetches = tokenServer.fetches.length - upstreamFetchesBefore;
  const credentialFetches = metadata.tokens - credentialFetchesBefore;
  const metricTokenFetches = counterSum(metrics, 'registry_proxy_upstream_token_fetches_total');
  const metricCredentialFetches = counterSum(metrics, 'registry_proxy_credential_fetches_total');
  const loadAtEnd = loadavg()[0] ?? 0;

  // What the lifetimes call for over the run: the proxy renews upstream tokens a margin of
  // max(10 s, 10%) before expiry and cloud credentials max(5 min, 10%) before, both at most half
  // the lifetime, so a run of T seconds needs 1 + floor(T / (lifetime - margin)) per scope.
  const runMs = proxied.seconds * 1000;
  const tokenMs = opts.tokenTtl * 1000;
  const credentialMs = opts.credentialTtl * 1000;
  const tokenBudget = refreshesWithin(
    runMs,
    tokenMs,
    Math.min(Math.max(10_000, tokenMs / 10), tokenMs / 2),
  );
  const credentialBudget = refreshesWithin(
    runMs,
    credentialMs,
    Math.min(Math.max(300_000, credentialMs / 10), credentialMs / 2),
  );

  const f = (n: number, digits = 1) => n.toFixed(digits);
  const rate = (p: Phase) => p.pulls / p.seconds;
  const p50 = (p: Phase) => (p.manifestMs.length ? percentile(p.manifestMs, 50) : Number.NaN);
  const p99 = (p: Phase) => (p.manifestMs.length ? percentile(p.manifestMs, 99) : Number.NaN);
  const rows = [
    ['', 'direct', 'ours', 'ours/direct'],
    ['pulls/s', f(rate(direct)), f(rate(proxied)), `${f(rate(proxied) / rate(direct), 2)}x`],
    [
      'pulls (errors)',
      `${direct.pulls} (${direct.errors})`,
      `${proxied.pulls} (${proxied.errors})`,
      '',
    ],
    [
      'requests/s',
      f(direct.requests / direct.seconds, 0),
      f(proxied.requests / proxied.seconds, 0),
      '',
    ],
    [
      'manifest GET p50 / p99 (ms)',
      `${f(p50(direct))} / ${f(p99(direct))}`,
      `${f(p50(proxied))} / ${f(p99(proxied))}`,
      '',
    ],
    ['upstream token fetches', String(directTokenFetches), String(upstreamTokenFetches), ''],
  ];
  const targets: [boolean, string, string][] = [
    [proxied.errors === 0, 'errors through the proxy: 0', String(proxied.errors)],
    [
      upstreamTokenFetches <= tokenBudget,
      `upstream token fetches <= ${tokenBudget} (1 scope, ${opts.tokenTtl} s tokens)`,
      `${upstreamTokenFetches} (metric: ${metricTokenFetches})`,
    ],
    [
      credentialFetches >= 1 && credentialFetches <= credentialBudget,
      `credential fetches <= ${credentialBudget} (${opts.credentialTtl} s credentials)`,
      `${credentialFetches} (metric: ${metricCredentialFetches})`,
    ],
  ];
  const out = [
    '',
    `registry-proxy load: ${opts.clients} clients, ${opts.seconds} s per target, ${REPOSITORY}:${TAG} with ${opts.layers} layers of ${formatSize(opts.layerSize)} (${formatSize(pullBytes)} per pull), ${BLOB_CONCURRENCY} blobs at a time per client, every body checked against its digest`,
    `each pull: GET /v2/ (401), GET token with Basic, GET manifest by tag, GET config and layers; direct = docker-registry ${versionOf('docker-registry', ['--version']).split(' ').pop()} with auth: token, ours = our token auth (static login) in front of the same registry, GCP credentials from the metadata stand-in behind`,
    `machine: ${cpus().length} cores (${cpus()[0]?.model.trim() ?? '?'}) shared by the clients (this Node process), docker-registry, the stand-ins and the proxy; node ${process.version}; load average ${f(loadAtStart, 2)} at the start, ${f(loadAtEnd, 2)} at the end`,
    '',
    formatTable(rows),
    '',
    `our RSS: ${f(startRss / MiB)} MiB after start, peak ${f(peakRss / MiB)} MiB under load (${peakMethod}); docker-registry pid${registryPids.length === 1 ? '' : 's'} ${registryPids.join(', ')}`,
    '',
    'targets:',
    ...targets.map(
      ([ok, what, figure]) => `  ${ok ? 'PASS' : 'MISS'}  ${what.padEnd(52)} ${figure}`,
    ),
    ...(proxied.errorSamples.length
      ? ['', 'errors seen through the proxy:', ...proxied.errorSamples.map((e) => `  ${e}`)]
      : []),
    ...(direct.errorSamples.length
      ? ['', 'errors seen direct:', ...direct.errorSamples.map((e) => `  ${e}`)]
      : []),
    '',
    'A benchmark, not a test: the figures vary with the machine and its load; it exits 0 either way.',
    '',
  ];
  process.stdout.write(out.join('\n'));
  const summary = (p: Phase) => ({
    target: p.target,
    seconds: p.seconds,
    pulls: p.pulls,
    pullsPerSecond: rate(p),
    errors: p.errors,
    errorSamples: p.errorSamples,
    requests: p.requests,
    bytes: p.bytes,
    manifestMs: { p50: p50(p), p99: p99(p), count: p.manifestMs.length },
  });
  const json = {
    date: new Date().toISOString(),
    options: { ...opts, json: undefined },
    cores: cpus().length,
    node: process.version,
    loadavg: { start: loadAtStart, end: loadAtEnd },
    direct: { ...summary(direct), tokenFetches: directTokenFetches },
    ours: {
      ...summary(proxied),
      rss: { start: startRss, peak: peakRss, method: peakMethod },
      upstreamTokenFetches,
      metricTokenFetches,
      credentialFetches,
      metricCredentialFetches,
      budgets: { upstreamTokenFetches: tokenBudget, credentialFetches: credentialBudget },
    },
    targets: targets.map(([pass, target, figure]) => ({ target, pass, figure })),
  };
  mkdirSync(dirname(opts.json), { recursive: true });
  writeFileSync(opts.json, `${JSON.stringify(json, null, 2)}\n`);
  step(`figures written to ${opts.json}`);
}

await runBench(main);
