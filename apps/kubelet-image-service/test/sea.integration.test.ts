/**
 * What ships to nodes, as it ships: the single executables scripts/sea.mjs builds (ELF files for
 * their architecture with the app injected, answering exactly as the app does under Node; the
 * arm64 one runs under qemu-user), the systemd unit the host service runs from, and the image the
 * node patcher copies the executable out of, built and run by a real dockerd on a base with no
 * Node in it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  cpSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  type Containerd,
  type Dockerd,
  startContainerd,
  startDockerd,
  writeGlibcRootfs,
} from '@org/tools/stand-ins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const app = join(import.meta.dirname, '..');
const sea = join(app, 'dist', 'sea');
const ARCHES = ['amd64', 'arm64'] as const;
type Arch = (typeof ARCHES)[number];
/** ELF e_machine of each: EM_X86_64, EM_AARCH64. */
const MACHINE: Record<Arch, number> = { amd64: 0x3e, arm64: 0xb7 };
/** How this machine runs each one: natively, or under qemu-user with the cross libc. */
const hostArch: Arch = process.arch === 'arm64' ? 'arm64' : 'amd64';
const RUNNER: Record<Arch, string[]> = {
  amd64: hostArch === 'amd64' ? [] : ['/usr/bin/qemu-x86_64-static', '-L', '/usr/x86_64-linux-gnu'],
  arm64:
    hostArch === 'arm64' ? [] : ['/usr/bin/qemu-aarch64-static', '-L', '/usr/aarch64-linux-gnu'],
};
const executable = (arch: Arch) => join(sea, `kubelet-image-service-linux-${arch}`);
const FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

const dir = mkdtempSync(join(tmpdir(), 'kis-sea-'));
const UPSTREAM = { user: 'node-puller', password: 'sea-secret-5d1' };
const rules = join(dir, 'rules.yaml');
writeFileSync(
  rules,
  [
    'rules:',
    '  - match: ["registry.example.com:5000", "*.registry.example.com"]',
    `    credentials: { provider: static, username: ${UPSTREAM.user}, password: ${UPSTREAM.password} }`,
    '',
  ].join('\n'),
);
const request = (image: string) =>
  JSON.stringify({
    apiVersion: 'credentialprovider.kubelet.k8s.io/v1',
    kind: 'CredentialProviderRequest',
    image,
  });
const REQUESTS = {
  matched: request('eu.registry.example.com/team/app:1.0'),
  unmatched: request('quay.io/team/app:1.0'),
  malformed: '{"apiVersion": "credentialprovider.kubelet.k8s.io/v1", "kind": ',
};

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command with `input` on stdin and a PATH with no Node on it. */
function run(command: readonly string[], input = ''): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const [file, ...args] = command;
    const p = spawn(file as string, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { PATH: '/nonexistent' },
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
    p.stdin.end(input);
  });
}

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

let containerd: Containerd | undefined;
let dockerd: Dockerd | undefined;

beforeAll(async () => {
  containerd = await startContainerd();
  dockerd = await startDockerd({ containerdSocket: containerd.socket });
}, 300_000);

afterAll(async () => {
  await dockerd?.close();
  await containerd?.close();
  rmSync(dir, { recursive: true, force: true });
}, 120_000);

describe('the single executables', () => {
  it('are ELF executables for their architecture with the app injected, as SHA256SUMS says', () => {
    const sums = readFileSync(join(sea, 'SHA256SUMS'), 'utf8');
    for (const arch of ARCHES) {
      const file = readFileSync(executable(arch));
      expect(file.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
      expect(file[4]).toBe(2); // 64-bit
      expect(file.readUInt16LE(18)).toBe(MACHINE[arch]);
      // postject flips the fuse to :1 when it injects the blob; a plain node binary has :0
      expect(file.includes(`${FUSE}:1`)).toBe(true);
      expect(file.includes(`${FUSE}:0`)).toBe(false);
      const digest = createHash('sha256').update(file).digest('hex');
      expect(sums).toContain(`${digest}  kubelet-image-service-linux-${arch}\n`);
    }
  });

  it('answer kubelet exactly as the app under Node does, on both architectures, without Node', async () => {
    const args = ['credential-provider', '--config', rules];
    for (const [name, input] of Object.entries(REQUESTS)) {
      const expected = await run([process.execPath, join(app, 'dist', 'main.js'), ...args], input);
      for (const arch of ARCHES) {
        const got = await run([...RUNNER[arch], executable(arch), ...args], input);
        expect({ arch, name, ...got }).toEqual({ arch, name, ...expected });
      }
    }
    // and what they all answered is right, so the comparison above compared something
    const matched = await run([executable(hostArch), ...args], REQUESTS.matched);
    expect(JSON.parse(matched.stdout)).toMatchObject({
      kind: 'CredentialProviderResponse',
      cacheKeyType: 'Registry',
      auth: { 'eu.registry.example.com': { username: UPSTREAM.user, password: UPSTREAM.password } },
    });
    const malformed = await run([executable(hostArch), ...args], REQUESTS.malformed);
    expect(malformed.code).toBe(1);
    expect(malformed.stderr.trim().split('\n')).toHaveLength(1);
  }, 120_000);
});

/** A unit file's `Key=` command lines, continuation lines joined, split into words. */
function commandsOf(unit: string, key: string): string[][] {
  return unit
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .filter((line) => line.startsWith(`${key}=`))
    .map((line) =>
      line
        .slice(key.length + 1)
        .trim()
        .split(/\s+/),
    );
}

describe('the systemd unit (deploy/kubelet-image-service.service)', () => {
  const unit = readFileSync(join(app, 'deploy', 'kubelet-image-service.service'), 'utf8');

  it('passes systemd-analyze verify with no warning, ordered before kubelet and not tied to it', async () => {
    const root = join(dir, 'root');
    cpSync('/usr/lib/systemd/system', join(root, 'usr', 'lib', 'systemd', 'system'), {
      recursive: true,
    });
    const binary = commandsOf(unit, 'ExecStart')[0]?.[0] ?? '';
    expect(binary).toMatch(/^\/opt\/kubelet-image-service\/bin\/kubelet-image-service$/);
    // verify checks the command exists and is executable, inside --root
    mkdirSync(dirname(join(root, binary)), { recursive: true });
    writeFileSync(join(root, binary), '#!/bin/sh\n');
    chmodSync(join(root, binary), 0o755);
    const unitPath = '/etc/systemd/system/kubelet-image-service.service';
    mkdirSync(dirname(join(root, unitPath)), { recursive: true });
    writeFileSync(join(root, unitPath), unit);
    const verified = await run([
      '/usr/bin/systemd-analyze',
      'verify',
      `--root=${root}`,
      '--man=no',
      unitPath,
    ]);
    expect(verified).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(unit).toMatch(/^Before=kubelet\.service$/m);
    // kubelet must start without us (6/7's guard falls back to the runtime): no hard ties
    expect(unit).not.toMatch(/^(?:Requires|BindsTo|RequiredBy|PartOf)=.*kubelet/m);
    expect(unit).toMatch(/^WantedBy=multi-user\.target$/m);
  });

  it('runs its own ExecStart and ExecStartPost: the probe succeeds once containerd answers through it', async () => {
    const socket = join(dir, 'run', 'kubelet-image-service', 'cri.sock');
    const rewrite = (words: string[]) =>
      words.map((word) =>
        word
          .replace('/opt/kubelet-image-service/bin/kubelet-image-service', executable(hostArch))
          .replace('/etc/kubelet-image-service/rules.yaml', rules)
          .replace('/run/kubelet-image-service/cri.sock', socket)
          .replace('/run/containerd/containerd.sock', containerd?.socket ?? ''),
      );
    const [start] = commandsOf(unit, 'ExecStart').map(rewrite);
    const [post] = commandsOf(unit, 'ExecStartPost').map(rewrite);
    if (!start || !post) expect.unreachable('the unit has no ExecStart or ExecStartPost');
    expect(post).toContain('probe');
    const [file, ...args] = start;
    const child: ChildProcess = spawn(file as string, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    try {
      const probed = await run(post);
      expect(probed, stderr).toEqual({ code: 0, stdout: '', stderr: '' });
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  }, 60_000);
});

describe('the image (Dockerfile), built and run by a real dockerd', () => {
  it('builds with no network, runs without Node, and hands out the executable unchanged', async () => {
    const docker = dockerd?.docker ?? expect.unreachable('dockerd did not start');
    const dockerfile = join(app, 'Dockerfile');
    const base = /^ARG BASE_IMAGE=(\S+)$/m.exec(readFileSync(dockerfile, 'utf8'))?.[1];
    if (!base) expect.unreachable('the Dockerfile has no `ARG BASE_IMAGE=<image>`');
    // the base stood in for under its own name: glibc and friends, no Node, no shell
    await docker(['import', writeGlibcRootfs(dir, executable(hostArch)), base]);
    const context = join(dir, 'context');
    mkdirSync(context);
    const file = `kubelet-image-service-linux-${hostArch}`;
    try {
      linkSync(executable(hostArch), join(context, file));
    } catch {
      copyFileSync(executable(hostArch), join(context, file));
    }
    const tag = 'kubelet-image-service:test';
    await docker([
      'build',
      '--network',
      'none',
      '--build-arg',
      `TARGETARCH=${hostArch}`,
      '--build-arg',
      'REVISION=test',
      '-f',
      dockerfile,
      '-t',
      tag,
      context,
    ]);
    const { stdout: inspected } = await docker([
      'image',
      'inspect',
      '--format',
      '{{json .Config}}',
      tag,
    ]);
    expect(JSON.parse(inspected)).toMatchObject({
      User: '65532:65532',
      Entrypoint: ['/usr/local/bin/kubelet-image-service'],
      Labels: { 'org.opencontainers.image.revision': 'test' },
    });

    const { stdout: answered } = await docker(
      [
        'run',
        '--rm',
        '-i',
        '--network',
        'none',
        '--read-only',
        '-v',
        `${rules}:/rules.yaml:ro`,
        tag,
        'credential-provider',
        '--config',
        '/rules.yaml',
      ],
      { input: REQUESTS.matched },
    );
    expect(JSON.parse(answered)).toMatchObject({
      auth: { 'eu.registry.example.com': { username: UPSTREAM.user } },
    });

    // how the node patcher gets it: out of a created (never started) container
    const { stdout: id } = await docker(['create', tag]);
    const out = join(dir, 'copied-out');
    try {
      await docker(['cp', `${id.trim()}:/usr/local/bin/kubelet-image-service`, out]);
    } finally {
      await docker(['rm', id.trim()]);
    }
    expect(sha256(out)).toBe(sha256(executable(hostArch)));
  }, 600_000);
});
