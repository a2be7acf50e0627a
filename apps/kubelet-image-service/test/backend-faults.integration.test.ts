/**
 * `kubelet-image-service serve` (the single executable) when the runtime behind it fails: the
 * containerd socket disappears and comes back, the socket path becomes a plain file, and
 * backends that accept connections and then never answer. kubelet must get a prompt, clear gRPC
 * status, never a hang beyond its own deadline, never a crash; our process must not leak file
 * descriptors; once the runtime is back the next call succeeds without restarting us. And a pull
 * that takes long: no deadline of ours, kubelet's deadline and cancellation reach containerd.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { createServer as createHttp2Server, type ServerHttp2Stream } from 'node:http2';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  type Containerd,
  type DockerRegistry,
  imageSpecRequest,
  protoMessage,
  pushImage,
  startContainerd,
  startDockerRegistry,
} from '@org/tools/stand-ins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const executable = join(
  import.meta.dirname,
  '..',
  'dist',
  'sea',
  `kubelet-image-service-linux-${process.arch === 'x64' ? 'amd64' : process.arch}`,
);
const dir = mkdtempSync(join(tmpdir(), 'kis-faults-'));
const rules = join(dir, 'rules.yaml');
writeFileSync(
  rules,
  'rules:\n  - match: ["registry.invalid"]\n    credentials: { provider: static, username: u, password: p }\n',
);
const identity = (b: Buffer) => b;
let containerd: Containerd;
const services: Service[] = [];

interface Service {
  readonly child: ChildProcess;
  readonly socket: string;
  readonly client: grpc.Client;
  output(): string;
}

/** Starts our binary in front of `backend` and waits for its `serving` line. */
async function startService(
  name: string,
  backend: string,
  options: { env?: NodeJS.ProcessEnv; rules?: string } = {},
): Promise<Service> {
  const socket = join(dir, name, 'cri.sock');
  const child = spawn(
    executable,
    [
      'serve',
      '--config',
      options.rules ?? rules,
      '--listen',
      `unix://${socket}`,
      '--backend-endpoint',
      backend,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env },
  );
  let output = '';
  child.stdout?.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (output += c.toString()));
  for (let i = 0; !output.includes('"msg":"serving"'); i++) {
    if (child.exitCode !== null || i > 600) throw new Error(`no serving line: ${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const service = {
    child,
    socket,
    // as kubelet's client: keepalive pings every second would expose a server that punishes them
    client: new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure(), {
      'grpc.keepalive_time_ms': 1000,
      'grpc.keepalive_timeout_ms': 5000,
    }),
    output: () => output,
  };
  services.push(service);
  return service;
}

/** One unary call as kubelet makes it; `deadlineMs` undefined is PullImage's (none). */
function call(
  client: grpc.Client,
  method: string,
  options: { deadlineMs?: number; request?: Buffer; signal?: AbortSignal } = {},
): Promise<{ code: grpc.status; details: string; response?: Buffer }> {
  return new Promise((resolve) => {
    const c = client.makeUnaryRequest(
      method.startsWith('/') ? method : `/runtime.v1.ImageService/${method}`,
      identity,
      identity,
      options.request ?? Buffer.alloc(0),
      options.deadlineMs === undefined ? {} : { deadline: Date.now() + options.deadlineMs },
      (err, response) =>
        resolve(
          err
            ? { code: err.code, details: err.details }
            : { code: grpc.status.OK, details: '', response: response as Buffer },
        ),
    );
    options.signal?.addEventListener('abort', () => c.cancel(), { once: true });
  });
}

/** `grpc.health.v1.Health/Check` for the image service: SERVING, NOT_SERVING or a status name. */
async function health(client: grpc.Client): Promise<string> {
  const request = protoMessage([[1, 'runtime.v1.ImageService']]);
  const answer = await call(client, '/grpc.health.v1.Health/Check', {
    deadlineMs: 20_000,
    request,
  });
  if (answer.code !== grpc.status.OK) return grpc.status[answer.code] ?? String(answer.code);
  return ['UNKNOWN', 'SERVING', 'NOT_SERVING'][answer.response?.[1] ?? 0] ?? 'UNKNOWN';
}

/** Our process's open file descriptors, by kind (`socket`, `anon_inode:[eventpoll]`, a path). */
function openFds(pid: number): Map<string, number> {
  const kinds = new Map<string, number>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`).replace(/\[\d+\]$/, '');
    } catch {
      continue; // closed while listing
    }
    kinds.set(target, (kinds.get(target) ?? 0) + 1);
  }
  return kinds;
}
const sockets = (pid: number) => openFds(pid).get('socket:') ?? 0;

/** Waits until `probe` holds (a bound, not an expectation: the machines are shared). */
async function until(what: string, probe: () => boolean): Promise<void> {
  for (let i = 0; !probe(); i++) {
    if (i > 400) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

let registry: DockerRegistry;
let forwarder: Forwarder;

/**
 * A loopback forwarder in front of the registry, as containerd's mirror: blob bodies are sent
 * at `bytesPerSecond`, so a pull takes as long as the test wants. It records each blob response
 * and whether it was cut off before its end (containerd cancelled the pull).
 */
interface Forwarder {
  readonly url: string;
  readonly blobs: { path: string; aborted: boolean; finished: boolean }[];
  readonly requests: string[];
  close(): Promise<void>;
}

async function startForwarder(upstream: string, bytesPerSecond: number): Promise<Forwarder> {
  const blobs: Forwarder['blobs'] = [];
  const requests: string[] = [];
  const server = createHttpServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const target = new URL(req.url ?? '/', upstream);
    const up = httpRequest(
      target,
      { method: req.method, headers: { ...req.headers, host: target.host } },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        if (!/\/blobs\/sha256:/.test(req.url ?? '') || req.method !== 'GET') {
          upRes.pipe(res);
          return;
        }
        const record = { path: req.url ?? '', aborted: false, finished: false };
        blobs.push(record);
        res.on('close', () => {
          if (!res.writableFinished) record.aborted = true;
          upRes.destroy();
        });
        const slice = Math.max(1, Math.floor(bytesPerSecond / 10));
        let pending = Buffer.alloc(0);
        let ended = false;
        const tick = setInterval(() => {
          if (res.destroyed) return clearInterval(tick);
          const chunk = pending.subarray(0, slice);
          pending = pending.subarray(chunk.length);
          if (chunk.length > 0) res.write(chunk);
          if (pending.length === 0 && ended) {
            clearInterval(tick);
            record.finished = true;
            res.end();
          }
        }, 100);
        upRes.on('data', (c: Buffer) => (pending = Buffer.concat([pending, c])));
        upRes.on('end', () => (ended = true));
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${address.port}`,
    blobs,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

beforeAll(async () => {
  containerd = await startContainerd();
  registry = await startDockerRegistry();
  // 256 KiB/s: a 1.5 MiB layer takes about 6 s, longer than every timer on our path that the
  // test can shrink (see the package's long-pull test) and long enough for kubelet-style deadlines
  forwarder = await startForwarder(registry.url, 256 * 1024);
  containerd.mirror(registry.host, forwarder.url);
}, 120_000);

afterAll(async () => {
  for (const s of services) {
    s.client.close();
    s.child.kill('SIGKILL');
  }
  await containerd?.close();
  await forwarder?.close();
  await registry?.close();
  rmSync(dir, { recursive: true, force: true });
});

const UNAVAILABLE_WITHIN_CONNECT_WAIT = 20_000;

describe('the runtime socket disappears and comes back', () => {
  it('answers UNAVAILABLE and NOT_SERVING while it is gone, leaks no socket, and the first call after it is back succeeds', async () => {
    const ours = await startService('gone', `unix://${containerd.socket}`);
    const pid = ours.child.pid as number;
    expect((await call(ours.client, 'ImageFsInfo', { deadlineMs: 20_000 })).code).toBe(0);
    expect(await health(ours.client)).toBe('SERVING');
    const baseline = sockets(pid);
    for (let round = 0; round < 2; round++) {
      await containerd.stop();
      // PullImage as kubelet sends it, with no deadline: answered, not left hanging
      const pull = await call(ours.client, 'PullImage', {
        request: imageSpecRequest(`${registry.host}/none:v1`),
      });
      expect(pull.code).toBe(grpc.status.UNAVAILABLE);
      expect(pull.details).toContain(containerd.socket);
      for (let i = 0; i < 3; i++) {
        const listed = await call(ours.client, 'ListImages', {
          deadlineMs: UNAVAILABLE_WITHIN_CONNECT_WAIT,
        });
        expect(listed.code).toBe(grpc.status.UNAVAILABLE);
      }
      expect(await health(ours.client)).toBe('NOT_SERVING');
      expect(sockets(pid)).toBeLessThanOrEqual(baseline);
      await containerd.start();
      // the first call, no retry: the reconnect back-off of our channel is capped
      expect((await call(ours.client, 'ImageFsInfo', { deadlineMs: 20_000 })).code).toBe(0);
      expect(await health(ours.client)).toBe('SERVING');
      expect(sockets(pid)).toBe(baseline);
    }
    expect(ours.child.exitCode).toBe(null);
    expect(ours.output()).not.toMatch(/Error:|at .*\.js:\d+/);
  }, 180_000);

  it('treats a plain file at the socket path as a runtime that is down', async () => {
    const ours = await startService('file', `unix://${containerd.socket}`);
    expect((await call(ours.client, 'ImageFsInfo', { deadlineMs: 20_000 })).code).toBe(0);
    await containerd.stop();
    writeFileSync(containerd.socket, 'not a socket\n');
    const pull = await call(ours.client, 'PullImage', {
      request: imageSpecRequest(`${registry.host}/none:v1`),
    });
    expect(pull.code).toBe(grpc.status.UNAVAILABLE);
    expect(pull.details).toMatch(/ECONNREFUSED/);
    expect(await health(ours.client)).toBe('NOT_SERVING');
    rmSync(containerd.socket);
    await containerd.start();
    expect((await call(ours.client, 'ImageFsInfo', { deadlineMs: 20_000 })).code).toBe(0);
    expect(ours.child.exitCode).toBe(null);
  }, 120_000);
});

describe('a runtime that accepts and never answers', () => {
  it('at the connection (no HTTP/2 handshake): UNAVAILABLE after the connect wait, or the caller deadline first', async () => {
    const path = join(dir, 'mute.sock');
    const held: Socket[] = [];
    const mute: Server = createNetServer((socket) => held.push(socket));
    await new Promise<void>((resolve) => mute.listen(path, resolve));
    try {
      const ours = await startService('mute', `unix://${path}`);
      const short = await call(ours.client, 'ImageFsInfo', { deadlineMs: 500 });
      expect(short.code).toBe(grpc.status.DEADLINE_EXCEEDED);
      const pull = await call(ours.client, 'PullImage', {
        request: imageSpecRequest(`${registry.host}/none:v1`),
      });
      expect(pull.code).toBe(grpc.status.UNAVAILABLE);
      expect(pull.details).toMatch(/accepted the connection but did not answer/);
      expect(await health(ours.client)).toBe('NOT_SERVING');
      expect(held.length).toBeGreaterThan(0);
      expect(ours.child.exitCode).toBe(null);
    } finally {
      for (const s of held) s.destroy();
      await new Promise((resolve) => mute.close(resolve));
    }
  }, 60_000);

  it("at the call (HTTP/2 up): no deadline of ours; kubelet's deadline and cancellation reach the runtime", async () => {
    const path = join(dir, 'stuck.sock');
    const streams: { path: string; timeout: string | undefined; closed: boolean }[] = [];
    const open = new Set<ServerHttp2Stream>();
    const stuck = createHttp2Server();
    stuck.on('stream', (stream, headers) => {
      const record = {
        path: String(headers[':path']),
        timeout: headers['grpc-timeout'] as string | undefined,
        closed: false,
      };
      streams.push(record);
      open.add(stream);
      stream.on('close', () => {
        record.closed = true;
        open.delete(stream);
      });
      stream.resume(); // read the request, never answer it
    });
    await new Promise<void>((resolve) => stuck.listen(path, resolve));
    try {
      const ours = await startService('stuck', `unix://${path}`);
      const pid = ours.child.pid as number;
      // kubelet's ImageFsInfo deadline: the runtime gets it (grpc-timeout) and the call ends
      const fs = await call(ours.client, 'ImageFsInfo', { deadlineMs: 1500 });
      expect(fs.code).toBe(grpc.status.DEADLINE_EXCEEDED);
      const fsStream = streams.find((s) => s.path.endsWith('/ImageFsInfo'));
      expect(fsStream?.timeout).toMatch(/^\d+[HMSmun]$/);
      await until('the runtime call to end', () => fsStream?.closed === true);
      const baseline = sockets(pid);

      // PullImage without a deadline: we add none, so it stays open until kubelet cancels
      const cancel = new AbortController();
      const pull = call(ours.client, 'PullImage', {
        request: imageSpecRequest(`${registry.host}/slow:v1`),
        signal: cancel.signal,
      });
      await until('the pull to reach the runtime', () =>
        streams.some((s) => s.path.endsWith('/PullImage')),
      );
      const pullStream = streams.find((s) => s.path.endsWith('/PullImage'));
      expect(pullStream?.timeout).toBeUndefined();
      await new Promise((r) => setTimeout(r, 3000));
      expect(pullStream?.closed).toBe(false);
      cancel.abort();
      expect((await pull).code).toBe(grpc.status.CANCELLED);
      await until('the runtime call to be cancelled', () => pullStream?.closed === true);
      expect(open.size).toBe(0);
      expect(sockets(pid)).toBe(baseline);
      expect(ours.child.exitCode).toBe(null);
    } finally {
      for (const s of open) s.close();
      await new Promise((resolve) => stuck.close(resolve));
    }
  }, 60_000);
});

describe('a pull that takes long', () => {
  it('completes with no deadline of ours while kubelet pings; a kubelet deadline or cancel stops containerd pulling', async () => {
    const layer = (n: number) => [{ [`opt/blob-${n}.bin`]: randomBytes(1536 * 1024) }];
    for (const name of ['long', 'deadline'])
      await pushImage(registry, dir, `team/${name}`, layer(1));
    const ours = await startService('long', `unix://${containerd.socket}`);

    const long = await call(ours.client, 'PullImage', {
      request: imageSpecRequest(`${registry.host}/team/long:v1`),
    });
    expect(long.code, long.details).toBe(grpc.status.OK);
    expect(long.response?.subarray(2).toString()).toMatch(/^sha256:[0-9a-f]{64}$/);
    const longBlob = forwarder.blobs.find((b) => b.finished);
    expect(longBlob).toBeDefined();

    const before = forwarder.blobs.length;
    const cut = await call(ours.client, 'PullImage', {
      request: imageSpecRequest(`${registry.host}/team/deadline:v1`),
      deadlineMs: 2500,
    });
    expect(cut.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    // containerd got the deadline and dropped the download half-way
    await until('containerd to cancel its download', () =>
      forwarder.blobs.slice(before).some((b) => b.aborted),
    );
    const { stdout } = await containerd.ctr(['-n', 'k8s.io', 'images', 'ls', '-q']);
    expect(stdout.split('\n')).toContain(`${registry.host}/team/long:v1`);
    expect(stdout.split('\n')).not.toContain(`${registry.host}/team/deadline:v1`);
    expect(ours.child.exitCode).toBe(null);
  }, 120_000);

  it('a pull kubelet cancels while credentials are still being fetched never reaches containerd', async () => {
    const bin = join(dir, 'bin');
    mkdirSync(bin, { recursive: true });
    const helper = join(bin, 'docker-credential-slow');
    writeFileSync(helper, '#!/bin/sh\nsleep 3\necho \'{"Username":"u","Secret":"s"}\'\n');
    chmodSync(helper, 0o755);
    const config = join(dir, 'docker-config.json');
    writeFileSync(config, JSON.stringify({ credHelpers: { [registry.host]: 'slow' } }));
    const slowRules = join(dir, 'slow-rules.yaml');
    writeFileSync(
      slowRules,
      `rules:\n  - match: ["${registry.host}/team/never"]\n    credentials: { provider: docker-config, configFile: ${config} }\n`,
    );
    const ours = await startService('creds', `unix://${containerd.socket}`, {
      env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` },
      rules: slowRules,
    });
    const before = forwarder.requests.length;
    const cancel = new AbortController();
    const pull = call(ours.client, 'PullImage', {
      request: imageSpecRequest(`${registry.host}/team/never:v1`),
      signal: cancel.signal,
    });
    await new Promise((r) => setTimeout(r, 500));
    cancel.abort();
    expect((await pull).code).toBe(grpc.status.CANCELLED);
    // the helper answers after 3 s; the pull must not start then
    await new Promise((r) => setTimeout(r, 4000));
    expect(forwarder.requests.slice(before).filter((r) => r.includes('team/never'))).toEqual([]);
    expect(ours.output()).toMatch(/"msg":"pull".*"result":"CANCELLED"/);
  }, 60_000);
});
