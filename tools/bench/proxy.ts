#!/usr/bin/env node
/**
 * The proxy's load benchmark (a benchmark, not a test: it prints figures and PASS/MISS markers
 * against the targets, and exits 0 whatever the figures are). In one run it starts a real
 * upstream (docker-registry 2.8), nginx proxying it as the baseline, and our built proxy, and
 * measures blob throughput (1 and 8 streams), manifest load (wrk), our peak RSS at two blob
 * sizes and the bytes redirect mode moves through the proxy.
 *
 *   node tools/bench/proxy.ts [--size 1G] [--runs 3] [--seconds 10] [--json FILE] [--cpu-prof DIR]
 *
 * See tools/bench/README.md.
 */
import { spawnSync } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { writeOciImage } from '../stand-ins/oci-image.ts';
import { freePort, startDockerRegistry } from '../stand-ins/registry.ts';
import { rawGet } from './http-client.ts';
import { type LargeImage, writeLargeImage } from './layer.ts';
import {
  formatSize,
  formatTable,
  median,
  parseSize,
  splitRanges,
  type WrkResult,
} from './parse.ts';
import { type Cleanup, runWrk, startNginx, startProxy } from './processes.ts';
import { childrenOf, cpuMs, peakRss, rssOf } from './procfs.ts';
import { requirePrograms, runBench, step, versionOf } from './run.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const MANIFEST_ACCEPT = 'application/vnd.oci.image.manifest.v1+json';
const STREAMS = 8;

const USAGE = `usage: node tools/bench/proxy.ts [options]   (pnpm bench:proxy [options] from the root)

  --size SIZE       large blob size (binary units: 256M, 1G); default 1G
  --rss-size SIZE   second blob size for the RSS comparison; default SIZE/4
  --runs N          timed runs per blob measurement, the median is reported; default 3
  --seconds N       wrk duration per target for the manifest load; default 10
  --json FILE       also write the figures as JSON; default reports/bench/proxy.json
  --cpu-prof DIR    run our proxy (stream mode) with --cpu-prof, profiles written to DIR
`;

type Target = 'direct' | 'nginx' | 'ours';
const TARGETS: readonly Target[] = ['direct', 'nginx', 'ours'];

function options() {
  const { values } = parseArgs({
    options: {
      size: { type: 'string', default: '1G' },
      'rss-size': { type: 'string' },
      runs: { type: 'string', default: '3' },
      seconds: { type: 'string', default: '10' },
      json: { type: 'string', default: join(repoRoot, 'reports', 'bench', 'proxy.json') },
      'cpu-prof': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const size = parseSize(values.size);
  const rssSize = values['rss-size']
    ? parseSize(values['rss-size'])
    : Math.max(MiB, Math.round(size / 4 / MiB) * MiB);
  const runs = Number(values.runs);
  const seconds = Number(values.seconds);
  if (!Number.isInteger(runs) || runs < 1)
    throw new TypeError('--runs must be a whole number >= 1');
  if (!Number.isInteger(seconds) || seconds < 1)
    throw new TypeError('--seconds must be a whole number >= 1');
  return { size, rssSize, runs, seconds, json: values.json, cpuProf: values['cpu-prof'] };
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function close(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
}

/**
 * A registry that keeps blobs in object storage: blob GETs are answered with a 307 to a
 * pre-signed-looking URL on a separate loopback "storage" server, which serves the bytes and
 * counts them.
 */
async function startRedirectingUpstream(cleanup: Cleanup, blob: LargeImage['layer']) {
  const counts = { storageBytes: 0, storageGets: 0, upstreamBlobRequests: 0 };
  const storage = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://storage').pathname;
    if (req.method !== 'GET' || path !== `/bucket/${blob.digest}`) {
      res.writeHead(404).end();
      return;
    }
    counts.storageGets++;
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': String(blob.size),
    });
    const file = createReadStream(blob.path, { highWaterMark: MiB });
    file.on('data', (c) => {
      counts.storageBytes += c.length;
    });
    file.pipe(res);
  });
  const storageUrl = await listen(storage);
  cleanup.add('stop the storage stand-in', () => close(storage));
  const api = { 'docker-distribution-api-version': 'registry/2.0' };
  const upstream = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://upstream').pathname;
    if (path === '/v2/') {
      res.writeHead(200, { ...api, 'content-type': 'application/json' }).end('{}');
    } else if (
      path === `/v2/bench/app/blobs/${blob.digest}` &&
      (req.method === 'GET' || req.method === 'HEAD')
    ) {
      counts.upstreamBlobRequests++;
      res
        .writeHead(307, {
          ...api,
          location: `${storageUrl}/bucket/${blob.digest}?X-Amz-Signature=bench`,
        })
        .end();
    } else {
      res.writeHead(404, { ...api, 'content-type': 'application/json' }).end(
        JSON.stringify({
          errors: [{ code: 'BLOB_UNKNOWN', message: 'blob unknown to registry' }],
        }),
      );
    }
  });
  const url = await listen(upstream);
  cleanup.add('stop the redirecting upstream stand-in', () => close(upstream));
  return { url, counts };
}

function skopeoCopy(image: string, dest: string): void {
  const out = spawnSync(
    'skopeo',
    ['copy', '--quiet', '--dest-tls-verify=false', image, `docker://${dest}`],
    {
      encoding: 'utf8',
    },
  );
  if (out.status !== 0) throw new Error(`skopeo copy ${image} ${dest} failed:\n${out.stderr}`);
}

function proxyConfig(
  dir: string,
  name: string,
  upstream: string,
  blobs: 'stream' | 'redirect',
): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    [
      'server: { listen: "127.0.0.1:0" }',
      'upstreams:',
      `  - { name: bench, prefix: "", url: "${upstream}" }`,
      `blobs: { mode: ${blobs} }`,
      '',
    ].join('\n'),
  );
  return file;
}

const mibps = (bytes: number, ms: number) => bytes / MiB / (ms / 1000);

interface Figures {
  /** MiB/s of each run. */
  single: Record<Target, number[]>;
  multi: Record<Target, number[]>;
  /** CPU ms per GiB moved in the single-stream runs: the registry for direct, else the proxy. */
  cpuPerGiB: Record<Target, number[]>;
  load: Record<Target, WrkResult>;
  serial: Record<Target, WrkResult>;
  /** Fresh proxies, one per blob size: RSS after start and the peak while streaming. */
  rss: {
    size: number;
    label: string;
    startRss: number;
    /** Peak while streaming the blob to a client reading at full speed. */
    fullSpeed: number;
    /** Peak while streaming it to a client that stops reading for 1 s after 32 MiB. */
    stalled: number;
    method: string;
  }[];
  /** The proxy of the throughput runs: RSS after start. */
  startRss: number;
  throughputPeak: number;
  redirect: {
    proxyStatus: number;
    proxyBodyBytes: number;
    proxyResponseBytes: number;
    storageBytes: number;
    digestOk: boolean;
  };
  loadavg: { start: number; end: number };
}

async function main(cleanup: Cleanup): Promise<void> {
  const opts = options();
  requirePrograms({
    'docker-registry': 'docker-registry',
    skopeo: 'skopeo',
    nginx: 'nginx-light',
    wrk: 'wrk',
    tar: 'tar',
  });
  const loadAtStart = loadavg()[0] ?? 0;
  if (loadAtStart > cpus().length / 2)
    step(
      `load average is ${loadAtStart.toFixed(2)} on ${cpus().length} cores: other work competes, figures will be noisy`,
    );
  const proxyMain = join(repoRoot, 'apps', 'proxy', 'dist', 'main.js');
  if (!existsSync(proxyMain)) {
    step('apps/proxy/dist/main.js is missing: building @org/proxy-app');
    const built = spawnSync('pnpm', ['nx', 'run', '@org/proxy-app:build', '--outputStyle=static'], {
      cwd: repoRoot,
      stdio: 'inherit',
    });
    if (built.status !== 0) throw new Error('pnpm nx run @org/proxy-app:build failed');
  }
  const work = cleanup.dir(mkdtempSync(join(tmpdir(), 'registry-proxy-bench-')));

  step(`writing a ${formatSize(opts.size)} and a ${formatSize(opts.rssSize)} random layer`);
  const big = await writeLargeImage(join(work, 'big'), 'v1', opts.size);
  const second = await writeLargeImage(join(work, 'second'), 'v1', opts.rssSize);
  const small = writeOciImage(join(work, 'small'), 'v1', [
    { 'etc/bench.txt': 'registry-proxy bench\n' },
  ]);

  step('starting docker-registry and pushing with skopeo');
  const registry = await startDockerRegistry();
  cleanup.add('stop docker-registry', () => registry.close());
  const registryPids = childrenOf(process.pid, 'docker-registry');
  if (registryPids.length !== 1)
    throw new Error(`expected one docker-registry child process, found ${registryPids.length}`);
  skopeoCopy(big.ref, `${registry.host}/bench/app:v1`);
  skopeoCopy(second.ref, `${registry.host}/bench/app:second`);
  skopeoCopy(small.ref, `${registry.host}/bench/small:v1`);

  step(
    'starting nginx and our proxy (stream mode, and redirect mode before a redirecting upstream)',
  );
  const nginxListen = `127.0.0.1:${await freePort()}`;
  const nginx = await startNginx(cleanup, join(work, 'nginx'), nginxListen, registry.host);
  const nginxPids = [nginx.pid, ...childrenOf(nginx.pid)];
  const profDir = opts.cpuProf === undefined ? undefined : resolve(opts.cpuProf);
  if (profDir) mkdirSync(profDir, { recursive: true });
  const streamConfig = proxyConfig(work, 'stream', registry.url, 'stream');
  const ours = await startProxy(
    cleanup,
    proxyMain,
    streamConfig,
    profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [],
  );
  const oursStartRss = rssOf(ours.pid, 'VmRSS');
  const redirecting = await startRedirectingUpstream(cleanup, big.layer);
  const oursRedirect = await startProxy(
    cleanup,
    proxyMain,
    proxyConfig(work, 'redirect', redirecting.url, 'redirect'),
  );
  const base: Record<Target, string> = {
    direct: registry.url,
    nginx: `http://${nginxListen}`,
    ours: ours.url,
  };
  const serverPids: Record<Target, number[]> = {
    direct: registryPids,
    nginx: nginxPids,
    ours: [ours.pid],
  };
  const blobUrl = (target: Target, layer: LargeImage['layer']) =>
    `${base[target]}/v2/bench/app/blobs/${layer.digest}`;
  const manifestUrl = (target: Target) => `${base[target]}/v2/bench/small/manifests/v1`;

  step('checking every path serves the same bytes (sha256 of the blob, manifest digest)');
  for (const target of TARGETS) {
    const blob = await rawGet(blobUrl(target, big.layer), { hash: true });
    if (
      blob.status !== 200 ||
      blob.digest !== big.layer.digest ||
      blob.bodyBytes !== big.layer.size
    )
      throw new Error(
        `${target}: blob GET gave ${blob.status}, ${blob.bodyBytes} bytes, ${blob.digest}`,
      );
    const manifest = await rawGet(manifestUrl(target), {
      headers: { accept: MANIFEST_ACCEPT },
      hash: true,
    });
    if (manifest.status !== 200 || manifest.digest !== small.manifestDigest)
      throw new Error(`${target}: manifest GET gave ${manifest.status}, ${manifest.digest}`);
  }

  const perTarget = <T>(make: () => T) =>
    ({ direct: make(), nginx: make(), ours: make() }) as Record<Target, T>;
  // Each round starts with a different target, so that none always runs first or last.
  const rotate = (round: number) =>
    TARGETS.map((_, i) => TARGETS[(i + round) % TARGETS.length] as Target);
  const single = perTarget<number[]>(() => []);
  const multi = perTarget<number[]>(() => []);
  const cpuPerGiB = perTarget<number[]>(() => []);
  const ranges = splitRanges(big.layer.size, STREAMS);
  const throughputPhase = await peakRss(ours.pid, async () => {
    step(`blob throughput, 1 stream, ${opts.runs} runs per target`);
    for (let round = 0; round < opts.runs; round++) {
      for (const target of rotate(round)) {
        const cpuBefore = cpuMs(serverPids[target]);
        const res = await rawGet(blobUrl(target, big.layer));
        if (res.status !== 200 || res.bodyBytes !== big.layer.size)
          throw new Error(`${target}: blob GET gave ${res.status}, ${res.bodyBytes} bytes`);
        single[target].push(mibps(res.bodyBytes, res.ms));
        cpuPerGiB[target].push(((cpuMs(serverPids[target]) - cpuBefore) * GiB) / res.bodyBytes);
      }
    }
    step(`blob throughput, ${STREAMS} streams (Range requests), ${opts.runs} runs per target`);
    for (let round = 0; round < opts.runs; round++) {
      for (const target of rotate(round)) {
        const started = performance.now();
        const parts = await Promise.all(
          ranges.map((r) =>
            rawGet(blobUrl(target, big.layer), { headers: { range: `bytes=${r.start}-${r.end}` } }),
          ),
        );
        const ms = performance.now() - started;
        const bytes = parts.reduce((sum, p) => sum + p.bodyBytes, 0);
        if (parts.some((p) => p.status !== 206) || bytes !== big.layer.size)
          throw new Error(
            `${target}: range GETs gave ${parts.map((p) => p.status).join(',')}, ${bytes} bytes`,
          );
        multi[target].push(mibps(bytes, ms));
      }
    }
  });

  step(
    'peak RSS per blob size: a fresh proxy per size streams it to a full-speed client, then to one that stalls 1 s after 32 MiB',
  );
  const rss: Figures['rss'] = [];
  for (const [layer, nominal] of [
    [second.layer, opts.rssSize],
    [big.layer, opts.size],
  ] as const) {
    const fresh = await startProxy(cleanup, proxyMain, streamConfig);
    const startRss = rssOf(fresh.pid, 'VmRSS');
    const peaks: number[] = [];
    let method = '';
    for (const stall of [undefined, { afterBytes: 32 * MiB, ms: 1000 }]) {
      const measured = await peakRss(fresh.pid, async () => {
        const res = await rawGet(
          `${fresh.url}/v2/bench/app/blobs/${layer.digest}`,
          stall ? { stall } : {},
        );
        if (res.status !== 200 || res.bodyBytes !== layer.size)
          throw new Error(`ours: blob GET gave ${res.status}, ${res.bodyBytes} bytes`);
      });
      peaks.push(measured.peak);
      method = measured.method;
    }
    await fresh.stop();
    rss.push({
      size: layer.size,
      label: formatSize(nominal),
      startRss,
      fullSpeed: peaks[0] ?? 0,
      stalled: peaks[1] ?? 0,
      method,
    });
  }

  const serialSeconds = Math.max(2, Math.round(opts.seconds / 2));
  step(
    `manifest GETs: wrk -t2 -c50 -d${opts.seconds}s, then wrk -t1 -c1 -d${serialSeconds}s, per target (each after a 1 s warm-up)`,
  );
  const wrk = async (target: Target, threads: number, connections: number, seconds: number) => {
    const options = { threads, connections, headers: { Accept: MANIFEST_ACCEPT } };
    await runWrk(cleanup, manifestUrl(target), { ...options, seconds: 1 });
    const result = await runWrk(cleanup, manifestUrl(target), { ...options, seconds });
    const errors = Object.values(result.socketErrors).reduce((a, b) => a + b, 0);
    if (result.non2xx3xx > 0 || errors > 0) {
      throw new Error(
        `${target}: wrk saw ${result.non2xx3xx} non-2xx/3xx responses and ${errors} socket errors:\n${result.output}`,
      );
    }
    return result;
  };
  const load = {} as Record<Target, WrkResult>;
  const serial = {} as Record<Target, WrkResult>;
  for (const target of TARGETS) load[target] = await wrk(target, 2, 50, opts.seconds);
  for (const target of TARGETS) serial[target] = await wrk(target, 1, 1, serialSeconds);

  step('redirect mode: a blob GET through the proxy, then the Location from storage');
  const handOff = await rawGet(`${oursRedirect.url}/v2/bench/app/blobs/${big.layer.digest}`);
  const location = handOff.headers.location;
  if (handOff.status !== 307 || !location)
    throw new Error(`redirect mode answered ${handOff.status} without a Location`);
  const fromStorage = await rawGet(location, { hash: true });
  if (fromStorage.status !== 200)
    throw new Error(`storage answered ${fromStorage.status} for ${location}`);

  report(opts, big.layer, {
    single,
    multi,
    cpuPerGiB,
    load,
    serial,
    rss,
    startRss: oursStartRss,
    throughputPeak: throughputPhase.peak,
    redirect: {
      proxyStatus: handOff.status,
      proxyBodyBytes: handOff.bodyBytes,
      proxyResponseBytes: handOff.totalBytes,
      storageBytes: redirecting.counts.storageBytes,
      digestOk: fromStorage.digest === big.layer.digest && fromStorage.bodyBytes === big.layer.size,
    },
    loadavg: { start: loadAtStart, end: loadavg()[0] ?? 0 },
  });
  if (profDir) step(`our proxy writes its CPU profile to ${profDir} when it stops`);
}

function report(opts: ReturnType<typeof options>, blob: LargeImage['layer'], r: Figures): void {
  const by = (pick: (t: Target) => number) =>
    Object.fromEntries(TARGETS.map((t) => [t, pick(t)])) as Record<Target, number>;
  const single = by((t) => median(r.single[t]));
  const multi = by((t) => median(r.multi[t]));
  const cpu = by((t) => median(r.cpuPerGiB[t]));
  const rps = by((t) => r.load[t].requestsPerSec);
  const p50 = by((t) => r.load[t].latencyMs.p50);
  const p99 = by((t) => r.load[t].latencyMs.p99);
  const s50 = by((t) => r.serial[t].latencyMs.p50);
  const s99 = by((t) => r.serial[t].latencyMs.p99);
  const f = (n: number, digits = 1) => n.toFixed(digits);
  const x = (n: number) => `${n.toFixed(2)}x`;
  const ms = (n: number) => `${n >= 0 ? '+' : ''}${n.toFixed(2)} ms`;
  const ratios = (v: Record<Target, number>, digits = 1) => [
    f(v.direct, digits),
    f(v.nginx, digits),
    f(v.ours, digits),
    x(v.ours / v.nginx),
    x(v.ours / v.direct),
  ];
  const added = (v: Record<Target, number>) => [
    f(v.direct, 2),
    f(v.nginx, 2),
    f(v.ours, 2),
    ms(v.ours - v.nginx),
    ms(v.ours - v.direct),
  ];
  const rows: string[][] = [
    ['', 'direct', 'nginx', 'ours', 'ours/nginx', 'ours/direct'],
    ['blob GET, 1 stream (MiB/s)', ...ratios(single)],
    [`blob GET, ${STREAMS} streams (MiB/s)`, ...ratios(multi)],
    [
      'server CPU per GiB, 1 stream (s) [1]',
      ...ratios(
        by((t) => cpu[t] / 1000),
        2,
      ),
    ],
    ['manifest GET, 50 conns (req/s) [2]', ...ratios(rps, 0)],
    ['  latency p50 (ms)', ...added(p50)],
    ['  latency p99 (ms)', ...added(p99)],
    ['manifest GET, 1 conn, latency p50 (ms)', ...added(s50)],
    ['  latency p99 (ms)', ...added(s99)],
  ];
  const peakOf = (m: Figures['rss'][number]) => Math.max(m.fullSpeed, m.stalled);
  const rssText = r.rss.map((m) => `${m.label} blob ${f(peakOf(m) / MiB)} MiB`).join(', ');
  const maxRss = Math.max(...r.rss.map(peakOf));
  const rssRows: string[][] = [
    [
      `our RSS (MiB, ${r.rss[0]?.method ?? '?'})`,
      'after start',
      'full-speed client',
      'stalled client',
    ],
    ...r.rss.map((m) => [
      `fresh proxy, ${m.label} blob`,
      f(m.startRss / MiB),
      f(m.fullSpeed / MiB),
      f(m.stalled / MiB),
    ]),
    [
      `proxy of the throughput runs, ${formatSize(opts.size)} blob`,
      f(r.startRss / MiB),
      f(r.throughputPeak / MiB),
      '-',
    ],
  ];
  const targets: [boolean, string, string][] = [
    [
      single.ours >= 0.9 * single.nginx,
      'blob 1 stream >= 0.9x nginx',
      x(single.ours / single.nginx),
    ],
    [
      single.ours >= 0.6 * single.direct,
      'blob 1 stream >= 0.6x direct',
      x(single.ours / single.direct),
    ],
    [
      multi.ours >= 0.9 * multi.nginx,
      `blob ${STREAMS} streams >= 0.9x nginx`,
      x(multi.ours / multi.nginx),
    ],
    [
      multi.ours >= 0.6 * multi.direct,
      `blob ${STREAMS} streams >= 0.6x direct`,
      x(multi.ours / multi.direct),
    ],
    [
      rps.ours >= 0.5 * rps.nginx,
      'manifest req/s (50 conns) >= 0.5x nginx',
      x(rps.ours / rps.nginx),
    ],
    [
      p99.ours - p99.direct <= 2,
      'manifest p99 (50 conns) <= direct + 2 ms',
      ms(p99.ours - p99.direct),
    ],
    [maxRss < 150 * MiB, 'peak RSS < 150 MiB at both blob sizes', rssText],
    [
      r.redirect.proxyBodyBytes === 0 && r.redirect.digestOk,
      'redirect mode: 0 blob bytes through the proxy',
      `${r.redirect.proxyBodyBytes} body bytes`,
    ],
  ];
  const cores = cpus().length;
  const out = [
    '',
    `registry-proxy benchmark: blob ${formatSize(opts.size)} (${blob.size} bytes as a gzip layer), median of ${opts.runs} runs; wrk ${opts.seconds} s per target`,
    `machine: ${cores} cores (${cpus()[0]?.model.trim() ?? '?'}) shared by the client (this Node process, wrk), docker-registry, nginx and the proxy; everything on loopback; load average ${f(r.loadavg.start, 2)} at the start, ${f(r.loadavg.end, 2)} at the end`,
    `versions: node ${process.version}, ${versionOf('nginx', ['-v']).replace('nginx version: ', '')} (worker_processes auto), ${versionOf('docker-registry', ['--version'])}, ${versionOf('wrk', ['-v']).split(' [')[0]}`,
    '',
    formatTable(rows),
    '',
    '[1] user+system CPU of the server processes per GiB sent: direct = docker-registry, nginx = its master and workers, ours = the proxy.',
    '[2] ours answers identical manifest GETs in flight from one upstream fetch, so under 50 connections it can beat direct.',
    '',
    formatTable(rssRows),
    '',
    `redirect mode: the proxy answered ${r.redirect.proxyStatus} with ${r.redirect.proxyBodyBytes} body bytes (${r.redirect.proxyResponseBytes} bytes in all: status line, headers and framing); storage served ${r.redirect.storageBytes} bytes, sha256 ${r.redirect.digestOk ? 'matches' : 'DIFFERS'}`,
    '',
    'targets:',
    ...targets.map(
      ([ok, what, figure]) => `  ${ok ? 'PASS' : 'MISS'}  ${what.padEnd(46)} ${figure}`,
    ),
    '',
    'A benchmark, not a test: the figures vary with the machine and its load; it exits 0 either way.',
    '',
  ];
  process.stdout.write(out.join('\n'));
  const json = {
    date: new Date().toISOString(),
    blob: { nominalBytes: opts.size, bytes: blob.size, digest: blob.digest },
    runs: opts.runs,
    wrkSeconds: opts.seconds,
    cores,
    node: process.version,
    ...r,
    medians: { single, multi, cpuMsPerGiB: cpu },
    targets: targets.map(([pass, target, figure]) => ({ target, pass, figure })),
  };
  mkdirSync(dirname(opts.json), { recursive: true });
  writeFileSync(opts.json, `${JSON.stringify(json, null, 2)}\n`);
  step(`figures written to ${opts.json}`);
}

await runBench(main);
