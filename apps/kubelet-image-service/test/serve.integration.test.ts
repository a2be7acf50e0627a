/**
 * `kubelet-image-service serve` (the single executable for this machine's architecture, as the
 * host service runs it) between a client speaking as kubelet and a
 * real containerd, pulling from a real docker-registry with htpasswd that only the rules hold
 * credentials for: the pull lands in containerd, one JSON log line says so, the metrics count
 * it, and SIGTERM stops it cleanly.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  type Containerd,
  criCall,
  type DockerRegistry,
  imageSpecRequest,
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
const dir = mkdtempSync(join(tmpdir(), 'kis-serve-'));
const UPSTREAM = { user: 'node-puller', password: 'upstream-secret-77b' };
let registry: DockerRegistry;
let containerd: Containerd;
let child: ChildProcess | undefined;
let stdout = '';
let stderr = '';

function runOnce(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(executable, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.stderr.on('data', (c: Buffer) => (err += c.toString()));
    p.on('close', (code) => resolve({ code, stdout: out, stderr: err }));
  });
}

const lines = () =>
  stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);

async function waitFor<T>(what: string, probe: () => T | undefined): Promise<T> {
  for (let i = 0; i < 600; i++) {
    const got = probe();
    if (got !== undefined) return got;
    if (child?.exitCode !== null) throw new Error(`exited while waiting for ${what}: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no ${what}: ${stdout} ${stderr}`);
}

beforeAll(async () => {
  registry = await startDockerRegistry({ htpasswd: UPSTREAM });
  await pushImage(
    registry,
    dir,
    'team/app',
    [{ 'etc/motd': 'served to kubelet\n' }, { 'opt/random.bin': randomBytes(256 * 1024) }],
    { credentials: UPSTREAM },
  );
  containerd = await startContainerd();
  containerd.mirror(registry.host, registry.url);
});

afterAll(async () => {
  child?.kill('SIGKILL');
  await containerd?.close();
  await registry?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('kubelet-image-service serve (the single executable)', () => {
  it('refuses bad flags and bad rules with one line on stderr', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'rules: [{ match: [], credentials: { provider: nope } }]\n');
    const rulesErr = await runOnce(['serve', '--config', bad]);
    expect(rulesErr.code).toBe(1);
    expect(rulesErr.stderr.trim().split('\n')).toHaveLength(1);
    expect(rulesErr.stderr).toMatch(/invalid .*bad\.yaml/);
    const backend = await runOnce(['serve', '--config', bad, '--backend', 'podman']);
    expect(backend.code).toBe(2);
    expect(backend.stderr).toMatch(/use cri or docker/);
    const flag = await runOnce(['serve', '--config', bad, '--name', 'x']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/unknown option "--name" for serve/);
  });

  it('serves kubelet, pulls with the rule credentials, logs and counts the pull, stops on SIGTERM', async () => {
    const rules = join(dir, 'rules.yaml');
    writeFileSync(
      rules,
      [
        'rules:',
        `  - match: ["${registry.host}/team"]`,
        `    credentials: { provider: static, username: ${UPSTREAM.user}, password: ${UPSTREAM.password} }`,
        '',
      ].join('\n'),
    );
    const socket = join(dir, 'run', 'kis', 'cri.sock');
    child = spawn(
      executable,
      [
        'serve',
        '--config',
        rules,
        '--listen',
        `unix://${socket}`,
        '--backend-endpoint',
        `unix://${containerd.socket}`,
        '--metrics-listen',
        '127.0.0.1:0',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout?.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    const serving = await waitFor('the serving line', () =>
      lines().find((l) => l.msg === 'serving'),
    );
    expect(serving).toMatchObject({ listen: `unix://${socket}`, backend: 'cri' });
    // the unit's ExecStartPost: SERVING, since containerd answers behind it
    const probe = await runOnce(['probe', '--listen', `unix://${socket}`, '--timeout', '20']);
    expect(probe).toMatchObject({ code: 0, stderr: '' });

    const client = new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure());
    const image = `${registry.host}/team/app:v1`;
    const response = await criCall(client, 'PullImage', imageSpecRequest(image));
    client.close();
    expect(response.subarray(2).toString()).toMatch(/^sha256:[0-9a-f]{64}$/);
    const { stdout: listed } = await containerd.ctr(['-n', 'k8s.io', 'images', 'ls', '-q']);
    expect(listed.split('\n')).toContain(image);

    const pull = await waitFor('the pull line', () => lines().find((l) => l.msg === 'pull'));
    expect(pull).toMatchObject({
      level: 'info',
      image,
      rule: 0,
      provider: 'static',
      injected: true,
      result: 'OK',
    });
    expect(typeof pull.durationMs).toBe('number');
    const metrics = await (await fetch(`http://${serving.metrics as string}/metrics`)).text();
    expect(metrics).toContain(
      'kubelet_image_service_pulls_total{rule="0",injected="true",result="OK"} 1',
    );
    expect(metrics).toMatch(
      /kubelet_image_service_forwarded_call_duration_seconds_count\{method="PullImage",result="OK"\} 1/,
    );
    expect(metrics).toContain(
      'kubelet_image_service_credential_fetches_total{provider="static",result="ok"} 1',
    );
    expect(stdout + stderr).not.toContain(UPSTREAM.password);

    const exited = new Promise<number | null>((resolve) =>
      child?.once('exit', (code) => resolve(code)),
    );
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(lines().at(-1)).toMatchObject({ msg: 'stopped' });
    expect(existsSync(socket)).toBe(false);
  });
});
