#!/usr/bin/env node
/**
 * The kubelet image service's forwarding benchmark (a benchmark, not a test: it prints figures
 * and a PASS/MISS marker, and exits 0 whatever they are). It starts a real containerd with one
 * pulled image and our built `kubelet-image-service serve` in front of it, then times unary calls
 * kubelet makes (ListImages, ImageStatus) through us and straight to containerd, in alternating
 * batches so both see the same machine, and prints p50/p99 and the added latency.
 *
 *   node tools/bench/cri.ts [--calls 2000] [--json FILE]
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { criCall as call, imageSpecRequest } from '../stand-ins/cri.ts';
import { startContainerd } from '../stand-ins/engines.ts';
import { pushImage } from '../stand-ins/oci-image.ts';
import { startDockerRegistry } from '../stand-ins/registry.ts';
import { formatTable, percentile } from './parse.ts';
import { type Cleanup, startProgram } from './processes.ts';
import { runBench, step } from './run.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BATCH = 100;
const WARM_UP = 200;
const TARGET_P50_MS = 1;

const USAGE = `usage: node tools/bench/cri.ts [options]   (pnpm bench:cri [options] from the root)

  --calls N     timed calls per method and target; default 2000
  --json FILE   also write the figures as JSON; default reports/bench/cri.json
`;

async function main(cleanup: Cleanup): Promise<void> {
  const { values } = parseArgs({
    options: {
      calls: { type: 'string', default: '2000' },
      json: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const calls = Number(values.calls);
  if (!Number.isInteger(calls) || calls < BATCH)
    throw new Error(`--calls must be a whole number >= ${BATCH}`);
  const json = values.json ?? join(repoRoot, 'reports', 'bench', 'cri.json');
  const main = join(repoRoot, 'apps', 'kubelet-image-service', 'dist', 'main.js');
  const dir = cleanup.dir(mkdtempSync(join(tmpdir(), 'bench-cri-')));
  step('starting docker-registry and containerd, pulling one image into containerd');
  const registry = await startDockerRegistry();
  cleanup.add('stop docker-registry', () => registry.close());
  await pushImage(registry, dir, 'team/app', [{ 'etc/motd': 'bench\n' }]);
  const containerd = await startContainerd();
  cleanup.add('stop containerd', () => containerd.close());
  containerd.mirror(registry.host, registry.url);
  const direct = new grpc.Client(`unix://${containerd.socket}`, grpc.credentials.createInsecure());
  cleanup.add('close the direct client', () => direct.close());
  const image = `${registry.host}/team/app:v1`;
  await call(direct, 'PullImage', imageSpecRequest(image));

  step('starting kubelet-image-service serve (the built binary)');
  const rules = join(dir, 'rules.yaml');
  writeFileSync(
    rules,
    'rules:\n  - match: ["registry.invalid"]\n    credentials: { provider: static, username: u, password: p }\n',
  );
  const socket = join(dir, 'run', 'cri.sock');
  mkdirSync(dirname(socket), { recursive: true });
  const server = startProgram(cleanup, process.execPath, [
    main,
    'serve',
    '--config',
    rules,
    '--listen',
    `unix://${socket}`,
    '--backend-endpoint',
    `unix://${containerd.socket}`,
  ]);
  for (let i = 0; !server.log().includes('"msg":"serving"'); i++) {
    if (i > 600 || server.child.exitCode !== null)
      throw new Error(`serve did not start: ${server.log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const ours = new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure());
  cleanup.add('close our client', () => ours.close());

  const methods = {
    ListImages: Buffer.alloc(0),
    ImageStatus: imageSpecRequest(image),
  } as const;
  const results: Record<string, Record<'direct' | 'ours', { p50: number; p99: number }>> = {};
  for (const [method, request] of Object.entries(methods)) {
    step(
      `${method}: ${WARM_UP} warm-up calls each, then ${calls} timed calls each in batches of ${BATCH}`,
    );
    for (let i = 0; i < WARM_UP; i++) {
      await call(direct, method, request);
      await call(ours, method, request);
    }
    const times = { direct: [] as number[], ours: [] as number[] };
    for (let done = 0; done < calls; done += BATCH) {
      for (const [target, client] of [
        ['direct', direct],
        ['ours', ours],
      ] as const) {
        for (let i = 0; i < BATCH; i++) {
          const started = performance.now();
          await call(client, method, request);
          times[target].push(performance.now() - started);
        }
      }
    }
    results[method] = {
      direct: { p50: percentile(times.direct, 50), p99: percentile(times.direct, 99) },
      ours: { p50: percentile(times.ours, 50), p99: percentile(times.ours, 99) },
    };
  }

  const ms = (v: number) => v.toFixed(3);
  const rows: string[][] = [
    ['', 'direct p50', 'ours p50', 'added p50', 'ratio p50', 'direct p99', 'ours p99', 'added p99'],
  ];
  for (const [method, r] of Object.entries(results)) {
    rows.push([
      `${method} (ms)`,
      ms(r.direct.p50),
      ms(r.ours.p50),
      `+${ms(r.ours.p50 - r.direct.p50)}`,
      `${(r.ours.p50 / r.direct.p50).toFixed(2)}x`,
      ms(r.direct.p99),
      ms(r.ours.p99),
      `+${ms(r.ours.p99 - r.direct.p99)}`,
    ]);
  }
  const containerdVersion = spawnSync('containerd', ['--version'], {
    encoding: 'utf8',
  }).stdout.trim();
  const out = [
    '',
    `kubelet-image-service forwarding benchmark: ${calls} sequential calls per method and target, in alternating batches of ${BATCH}`,
    `machine: ${cpus().length} cores (${cpus()[0]?.model.split(' ').slice(0, 2).join(' ')}), load average ${loadavg()[0]?.toFixed(2)}; node ${process.version}; ${containerdVersion}`,
    'direct = grpc-js client -> containerd CRI socket; ours = the same client -> kubelet-image-service serve -> containerd',
    '',
    formatTable(rows),
    '',
    'targets:',
    ...Object.entries(results).map(([method, r]) => {
      const added = r.ours.p50 - r.direct.p50;
      return `  ${added <= TARGET_P50_MS ? 'PASS' : 'MISS'}  ${method} added p50 <= ${TARGET_P50_MS} ms   +${ms(added)} ms`;
    }),
    '',
    'A benchmark, not a test: the figures vary with the machine and its load; it exits 0 either way.',
    '',
  ];
  process.stdout.write(out.join('\n'));
  mkdirSync(dirname(json), { recursive: true });
  writeFileSync(json, `${JSON.stringify({ calls, batch: BATCH, results }, null, 2)}\n`);
  step(`figures written to ${json}`);
}

await runBench(main);
