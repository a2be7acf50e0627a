import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, createServer as createNetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { CriBackend, createImageServiceServer, listenUnix, shutdown } from '@org/cri-image-service';
import { RegistryAuth } from '@org/registry-auth';
import {
  type Containerd,
  type SystemdStandIn,
  startContainerd,
  startSystemdBus,
  startSystemdPrivateSocket,
} from '@org/tools/stand-ins';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';

/**
 * The node patcher as its real binary against a node made of real parts where they exist: a
 * fixture host tree, systemd's D-Bus API served on a private dbus-daemon (or peer-to-peer, as
 * PID 1's private socket), the image service (@org/cri-image-service) on the host-root socket
 * in front of a real containerd, and a kubelet healthz whose answer depends on what "kubelet"
 * read from the host files at its last restart.
 */

const main = join(import.meta.dirname, '..', 'dist', 'main.js');
const fixtures = join(
  import.meta.dirname,
  '..',
  '..',
  '..',
  'packages',
  'kubelet-patch',
  'test',
  'fixtures',
);
const SOCKET = '/run/kubelet-image-service/cri.sock';
const ENDPOINT = `unix://${SOCKET}`;
const CONFIG = '/var/lib/kubelet/config.yaml';

const scratch = mkdtempSync(join(tmpdir(), 'np-'));
let containerd: Containerd;
beforeAll(async () => {
  containerd = await startContainerd();
}, 60_000);
afterAll(async () => {
  await containerd?.close();
  rmSync(scratch, { recursive: true, force: true });
});

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

let copies = 0;
function hostRoot(fixture = 'kubeadm-deb'): string {
  const root = join(scratch, `${copies++}`);
  cpSync(join(fixtures, fixture), root, { recursive: true, verbatimSymlinks: true });
  return root;
}

/** The image service, serving on the host-root socket, forwarding to the real containerd. */
async function imageService(root: string): Promise<grpc.Server> {
  mkdirSync(join(root, 'run/kubelet-image-service'), { recursive: true });
  const server = createImageServiceServer({
    backend: new CriBackend(`unix://${containerd.socket}`),
    rules: [],
    auth: new RegistryAuth(),
  });
  await listenUnix(server, `unix://${join(root, SOCKET)}`);
  cleanups.push(() => shutdown(server, 1000));
  return server;
}

/**
 * kubelet as the patcher sees it: the systemd stand-in's restart hook records what kubelet
 * would read (its config file at that moment) and the healthz answers from that.
 */
interface Node {
  readonly root: string;
  readonly systemd: SystemdStandIn;
  readonly healthz: string;
  /** When true, a kubelet started on the patched config never turns healthy. */
  breakPatched: boolean;
  /** What kubelet read at each restart: 'patched' or 'original'. */
  readonly starts: string[];
}

async function node(
  root: string,
  options: { peer?: boolean; config?: string; onRestart?: (n: number) => void } = {},
): Promise<Node> {
  const config = options.config ?? CONFIG;
  const socketPath = options.peer
    ? join(root, 'run/systemd/private')
    : join(root, 'run/dbus/system_bus_socket');
  const systemd = options.peer
    ? await startSystemdPrivateSocket({ socketPath })
    : await startSystemdBus({ socketPath });
  cleanups.push(() => systemd.close());
  const state: { healthy: boolean } = { healthy: true };
  const n: Node = {
    root,
    systemd,
    healthz: '',
    breakPatched: false,
    starts: [],
  };
  systemd.onRestart = (unit) => {
    if (unit !== 'kubelet.service') return 'active';
    const patched = readFileSync(join(root, config), 'utf8').includes(ENDPOINT);
    n.starts.push(patched ? 'patched' : 'original');
    state.healthy = !(patched && n.breakPatched);
    options.onRestart?.(n.starts.length);
    return 'active';
  };
  const server: Server = createServer((_req, res) => {
    if (state.healthy) res.end('ok');
    else res.writeHead(500).end('[-]runtime failed: image service');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  const { port } = server.address() as AddressInfo;
  return Object.assign(n, { healthz: `http://127.0.0.1:${port}/healthz` });
}

interface Run {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the built binary; `started` gets the child so a test can kill it. */
function run(args: string[], started?: (child: ChildProcess) => void): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [main, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    started?.(child);
  });
}

function applyArgs(n: Node, extra: string[] = []): string[] {
  return [
    'apply',
    '--host-root',
    n.root,
    '--mode',
    'image-service',
    '--endpoint',
    ENDPOINT,
    '--systemd-bus',
    n.systemd.address,
    '--kubelet-healthz',
    n.healthz,
    '--timeout',
    '8',
    ...extra,
  ];
}

function revertArgs(n: Node): string[] {
  return [
    'revert',
    '--host-root',
    n.root,
    '--systemd-bus',
    n.systemd.address,
    '--kubelet-healthz',
    n.healthz,
    '--timeout',
    '8',
  ];
}

/** Files, modes, owners and digests under the host root (sockets and the run dir skipped). */
function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string, rel: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const key = `${rel}/${name}`;
      if (key === '/run') continue;
      const st = lstatSync(path);
      const meta = `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
      if (st.isSymbolicLink()) out[key] = `link ${readlinkSync(path)}`;
      else if (st.isDirectory()) {
        out[key] = `dir ${meta}`;
        walk(path, key);
      } else
        out[key] = `file ${meta} ${createHash('sha256').update(readFileSync(path)).digest('hex')}`;
    }
  };
  walk(root, '');
  return out;
}

/**
 * Takes away the failure record a rollback leaves (and the directories made only for it),
 * returning its reason: everything else must be as it was.
 */
function dropFailureRecord(root: string, before: Record<string, string>): string {
  const failed = join(root, 'var/lib/node-patcher/failed.json');
  const { reason } = JSON.parse(readFileSync(failed, 'utf8')) as { reason: string };
  rmSync(failed);
  for (const dir of ['/var/lib/node-patcher', '/var/lib', '/var'])
    if (!(dir in before)) rmSync(join(root, dir), { recursive: true });
  return reason;
}

const systemdCalls = (n: Node) =>
  n.systemd.calls
    .filter((c) => ['Reload', 'RestartUnit'].includes(c.method))
    .map((c) =>
      c.method === 'Reload' ? 'Reload' : `RestartUnit ${String(c.args[0])} ${String(c.args[1])}`,
    );

describe('node-patcher apply / revert, real binary, real D-Bus', () => {
  it('switches kubelet over, is a no-op the second time, and reverts byte for byte', async () => {
    const root = hostRoot();
    await imageService(root);
    const n = await node(root);
    const before = snapshot(root);

    const dry = await run(applyArgs(n, ['--dry-run']));
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain(`+imageServiceEndpoint: "${ENDPOINT}"`);
    expect(snapshot(root)).toEqual(before);
    expect(systemdCalls(n)).toEqual([]);

    const first = await run(applyArgs(n));
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(
      /^applied image-service: \d+ file\(s\) written; restarted kubelet.service\n$/,
    );
    expect(systemdCalls(n)).toEqual(['Reload', 'RestartUnit kubelet.service replace']);
    expect(n.starts).toEqual(['patched']);
    expect(readFileSync(join(root, CONFIG), 'utf8')).toContain(ENDPOINT);

    const second = await run(applyArgs(n));
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toBe('already applied: nothing changed, nothing restarted\n');
    expect(systemdCalls(n)).toHaveLength(2);

    const reverted = await run(revertArgs(n));
    expect(reverted.code, reverted.stderr).toBe(0);
    expect(systemdCalls(n)).toEqual([
      'Reload',
      'RestartUnit kubelet.service replace',
      'Reload',
      'RestartUnit kubelet.service replace',
    ]);
    expect(n.starts).toEqual(['patched', 'original']);
    expect(snapshot(root)).toEqual(before);
  }, 30_000);

  it('speaks to systemd peer-to-peer on its private socket when no bus daemon runs', async () => {
    const root = hostRoot('gke-cos');
    await imageService(root);
    const n = await node(root, { peer: true, config: '/home/kubernetes/kubelet-config.yaml' });
    // No --systemd-bus: the default finds no system bus socket and falls back to the private one.
    const args = applyArgs(n).filter(
      (a, i, all) => a !== '--systemd-bus' && all[i - 1] !== '--systemd-bus',
    );
    const out = await run(args);
    expect(out.code, out.stderr).toBe(0);
    expect(systemdCalls(n)).toEqual(['Reload', 'RestartUnit kubelet.service replace']);
  });

  it('kubelet does not come back healthy: rolled back, restarted twice, original files back, exit 1', async () => {
    const root = hostRoot();
    await imageService(root);
    const n = await node(root);
    n.breakPatched = true;
    const before = snapshot(root);
    const out = await run(applyArgs(n));
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(
      /node-patcher: .*healthz .* did not answer ok .*; the original files are back/,
    );
    expect(systemdCalls(n)).toEqual([
      'Reload',
      'RestartUnit kubelet.service replace',
      'Reload',
      'RestartUnit kubelet.service replace',
    ]);
    expect(n.starts).toEqual(['patched', 'original']);
    expect(dropFailureRecord(root, before)).toMatch(/healthz/);
    expect(snapshot(root)).toEqual(before);
    const failed = join(root, 'var/lib/node-patcher/failed.json');
    mkdirSync(join(failed, '..'), { recursive: true });
    writeFileSync(failed, '{"fingerprint":"0"}\n');

    // The DaemonSet's init step runs again with back-off: a different record is no reason to
    // refuse, the real one is, and kubelet is not restarted for it.
    const retried = await run(applyArgs(n));
    expect(retried.code).toBe(1);
    expect(n.starts).toEqual(['patched', 'original', 'patched', 'original']);
    const refused = await run(applyArgs(n));
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /this same change was rolled back at .*node-patcher revert clears/,
    );
    expect(n.starts.length).toBe(4);
    const cleared = await run(revertArgs(n));
    expect(cleared.code, cleared.stderr).toBe(0);
    expect(existsSync(failed)).toBe(false);
  }, 60_000);

  it('D-Bus unreachable: refused, nothing written', async () => {
    const root = hostRoot();
    await imageService(root);
    const n = await node(root);
    const before = snapshot(root);
    const args = applyArgs(n).map((a) =>
      a === n.systemd.address ? `unix:path=${join(root, 'run/nobody')}` : a,
    );
    const out = await run(args);
    expect(out.code, out.stderr).toBe(1);
    expect(out.stderr.trimEnd().split('\n').at(-1)).toMatch(
      /^node-patcher: cannot reach systemd over D-Bus \(.*ENOENT.*\); nothing was changed$/,
    );
    expect(snapshot(root)).toEqual(before);
  });

  it('the image service is not answering: refused, nothing written, nothing restarted', async () => {
    const root = hostRoot();
    const n = await node(root);
    const before = snapshot(root);
    const absent = await run(applyArgs(n));
    expect(absent.code).toBe(1);
    expect(absent.stderr).toMatch(/does not exist on the host.*nothing was changed/);
    // A socket that accepts connections but is no CRI service.
    mkdirSync(join(root, 'run/kubelet-image-service'), { recursive: true });
    const sockets = new Set<Socket>();
    const impostor = createNetServer((s) => {
      sockets.add(s);
      s.on('error', () => {});
      s.end('HTTP/1.1 400 Bad Request\r\n\r\n');
    });
    await new Promise<void>((r) => impostor.listen(join(root, SOCKET), r));
    cleanups.push(() => {
      for (const s of sockets) s.destroy();
      impostor.close();
    });
    const dead = await run(applyArgs(n));
    expect(dead.code).toBe(1);
    expect(dead.stderr).toMatch(/does not answer a CRI ImageService call.*nothing was changed/);
    expect(systemdCalls(n)).toEqual([]);
    expect(snapshot(root)).toEqual(before);
  });

  it('killed between writing and restarting: the next run rolls back from the state record and converges', async () => {
    const root = hostRoot();
    await imageService(root);
    const before = snapshot(root);
    let child: ChildProcess | undefined;
    const n = await node(root);
    // Kill the patcher the moment systemd is asked to reload: files written, no restart yet.
    const reload = n.systemd.calls.push.bind(n.systemd.calls);
    n.systemd.calls.push = (...calls) => {
      const r = reload(...calls);
      if (calls.some((c) => c.method === 'Reload') && child) {
        child.kill('SIGKILL');
        child = undefined;
      }
      return r;
    };
    const killed = await run(applyArgs(n), (c) => {
      child = c;
    });
    expect(killed.signal).toBe('SIGKILL');
    const state = JSON.parse(readFileSync(join(root, 'var/lib/node-patcher/state.json'), 'utf8'));
    expect(state.phase).toBe('written');
    expect(readFileSync(join(root, CONFIG), 'utf8')).toContain(ENDPOINT);

    const next = await run(applyArgs(n));
    expect(next.code, next.stderr).toBe(0);
    expect(next.stderr).toMatch(/an earlier run stopped while written: rolling back/);
    expect(n.starts).toEqual(['original', 'patched']);
    expect(
      JSON.parse(readFileSync(join(root, 'var/lib/node-patcher/state.json'), 'utf8')).phase,
    ).toBe('applied');

    const reverted = await run(revertArgs(n));
    expect(reverted.code, reverted.stderr).toBe(0);
    expect(snapshot(root)).toEqual(before);
    expect(existsSync(join(root, 'var/lib/node-patcher'))).toBe(false);
  }, 30_000);
});

describe('node-patcher apply --install-service, real binary, real D-Bus', () => {
  const UNIT = 'kubelet-image-service.service';
  const rules = join(
    import.meta.dirname,
    '..',
    '..',
    'kubelet-image-service',
    'examples',
    'rules.yaml',
  );

  /** The executable to install: any file will do, the stand-in systemd does not run it. */
  function executable(): string {
    const file = join(scratch, `kubelet-image-service-${copies++}`);
    writeFileSync(file, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    return file;
  }

  /**
   * systemd starting the installed unit: its unit file must be there and name an installed,
   * executable file; "starting" it serves the image service on the host-root socket.
   */
  function serveOnStart(n: Node, options: { fails?: boolean } = {}): string[] {
    const execStarts: string[] = [];
    n.systemd.units.set(UNIT, 'inactive');
    const kubelet = n.systemd.onRestart;
    n.systemd.onRestart = async (unit) => {
      if (unit !== UNIT) return (await kubelet?.(unit)) ?? 'active';
      const text = readFileSync(join(n.root, 'etc/systemd/system', UNIT), 'utf8');
      const exec = /^ExecStart=(\S+) serve/m.exec(text)?.[1] ?? '';
      execStarts.push(exec);
      expect(statSync(join(n.root, exec)).mode & 0o111).not.toBe(0);
      if (options.fails) return 'failed';
      await imageService(n.root);
      return 'active';
    };
    return execStarts;
  }

  it('installs, starts the service before kubelet, is a no-op again, and reverts (stopping it)', async () => {
    const root = hostRoot('kubeadm-deb');
    const n = await node(root);
    const execStarts = serveOnStart(n);
    const before = snapshot(root);
    const file = executable();
    const args = applyArgs(n, ['--install-service', file, '--rules', rules]);

    const dry = await run([...args, '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(
      /^# installing kubelet-image-service at \/opt\/kubelet-image-service\/bin\/kubelet-image-service/m,
    );
    expect(dry.stdout).toContain('+++ b/etc/systemd/system/kubelet-image-service.service');
    expect(snapshot(root)).toEqual(before);

    const out = await run(args);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toMatch(/restarted kubelet-image-service\.service, kubelet\.service\n$/);
    expect(systemdCalls(n)).toEqual([
      'Reload',
      `RestartUnit ${UNIT} replace`,
      'Reload',
      'RestartUnit kubelet.service replace',
    ]);
    expect(execStarts).toEqual(['/opt/kubelet-image-service/bin/kubelet-image-service']);
    expect(n.starts).toEqual(['patched']);
    const unit = readFileSync(join(root, 'etc/systemd/system', UNIT), 'utf8');
    expect(unit).toContain(
      '--backend cri --backend-endpoint unix:///var/run/containerd/containerd.sock\n',
    );
    expect(unit).toMatch(/^Before=kubelet\.service$/m);
    expect(readFileSync(join(root, 'etc/kubelet-image-service/rules.yaml'))).toEqual(
      readFileSync(rules),
    );

    const again = await run(args);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toBe('already applied: nothing changed, nothing restarted\n');
    expect(systemdCalls(n).length).toBe(4);

    const reverted = await run(revertArgs(n));
    expect(reverted.code, reverted.stderr).toBe(0);
    expect(n.systemd.calls.map((c) => `${c.method} ${String(c.args[0] ?? '')}`).slice(-3)).toEqual([
      'Reload ',
      'RestartUnit kubelet.service',
      `StopUnit ${UNIT}`,
    ]);
    expect(n.systemd.units.get(UNIT)).toBe('inactive');
    expect(snapshot(root)).toEqual(before);
  }, 60_000);

  it('the service fails to start: nothing of it is left, kubelet never restarted, exit 1', async () => {
    const root = hostRoot('gke-cos');
    const n = await node(root);
    serveOnStart(n, { fails: true });
    const before = snapshot(root);
    const out = await run(applyArgs(n, ['--install-service', executable(), '--rules', rules]));
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/restart job of kubelet-image-service\.service ended "failed"/);
    expect(n.starts).toEqual([]);
    expect(existsSync(join(root, 'home/kubernetes/bin/kubelet-image-service'))).toBe(false);
    expect(dropFailureRecord(root, before)).toMatch(/ended "failed"/);
    expect(snapshot(root)).toEqual(before);
  }, 60_000);

  it('refuses bad arguments with exit 2 before touching anything', async () => {
    const root = hostRoot('kubeadm-deb');
    const n = await node(root);
    const before = snapshot(root);
    const bad = join(scratch, 'bad-rules.yaml');
    writeFileSync(bad, 'rules: [{ match: [] }]\n');
    for (const [extra, message] of [
      [['--install-service', executable()], /--install-service needs --rules FILE/],
      [['--install-service', join(scratch, 'missing'), '--rules', rules], /is not a file/],
      [['--install-service', executable(), '--rules', bad], /--rules: /],
    ] as const) {
      const out = await run(applyArgs(n, [...extra]));
      expect(out.code, out.stderr).toBe(2);
      expect(out.stderr).toMatch(message);
    }
    expect(n.systemd.calls).toEqual([]);
    expect(snapshot(root)).toEqual(before);
  }, 60_000);
});

describe('node-patcher apply --mode containerd-mirror, real binary', () => {
  it('writes hosts.toml files and reverts them without systemd (nothing restarts)', async () => {
    const root = hostRoot('gke-ubuntu');
    const before = snapshot(root);
    const args = ['--host-root', root, '--systemd-bus', `unix:path=${join(root, 'run/nobody')}`];
    const out = await run([
      'apply',
      ...args,
      '--mode',
      'containerd-mirror',
      '--mirror',
      'https://registry-proxy.example.com',
      '--registries',
      'gcr.io,docker.io',
    ]);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toBe('applied containerd-mirror: 2 file(s) written; restarted nothing\n');
    const hosts = readFileSync(join(root, 'etc/containerd/hosts.d/gcr.io/hosts.toml'), 'utf8');
    expect(hosts).toContain('[host."https://registry-proxy.example.com"]');
    const reverted = await run(['revert', ...args]);
    expect(reverted.code, reverted.stderr).toBe(0);
    expect(snapshot(root)).toEqual(before);
  });
});

describe('node-patcher apply --mode credential-provider, real binary, real D-Bus', () => {
  it('installs the plugin, adds both flags on kubeadm, is a no-op the second time, and reverts byte for byte', async () => {
    const root = hostRoot('kubeadm-deb');
    const dir = mkdtempSync(join(scratch, 'plugin-'));
    const plugin = join(dir, 'kubelet-image-service');
    // Answers the patcher's check the way the real executable does: exit 0.
    writeFileSync(
      plugin,
      '#!/bin/sh\n[ "$1" = credential-provider-config ] && [ "$2" = --config ] && [ -f "$3" ] && exit 0\nexit 3\n',
      { mode: 0o755 },
    );
    const rules = join(dir, 'rules.yaml');
    writeFileSync(
      rules,
      'rules:\n  - match: ["docker.example.com"]\n    credentials: { provider: gcp }\n',
    );
    const config = '/etc/kubernetes/kubelet-image-service/credential-provider-config.yaml';
    const flags = '/etc/default/kubelet';
    // What kubelet would read at each restart: does its command line name our config?
    const sawProvider: boolean[] = [];
    const n = await node(root, {
      config: flags,
      onRestart: () => {
        sawProvider.push(readFileSync(join(root, flags), 'utf8').includes(config));
      },
    });
    const before = snapshot(root);
    const args = [
      'apply',
      '--host-root',
      root,
      '--mode',
      'credential-provider',
      '--plugin',
      plugin,
      '--rules',
      rules,
      '--systemd-bus',
      n.systemd.address,
      '--kubelet-healthz',
      n.healthz,
      '--timeout',
      '8',
    ];

    const first = await run(args);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toBe(
      'applied credential-provider: 4 file(s) written; restarted kubelet.service\n',
    );
    expect(systemdCalls(n)).toEqual(['RestartUnit kubelet.service replace']);
    expect(sawProvider).toEqual([true]);
    expect(readFileSync(join(root, flags), 'utf8')).toContain(
      `--image-credential-provider-config=${config} --image-credential-provider-bin-dir=/opt/kubelet-image-service/bin`,
    );
    const installed = join(root, 'opt/kubelet-image-service/bin/kubelet-image-service');
    expect(readFileSync(installed)).toEqual(readFileSync(plugin));
    expect(lstatSync(installed).mode & 0o777).toBe(0o755);
    expect(readFileSync(join(root, 'etc/kubelet-image-service/rules.yaml'))).toEqual(
      readFileSync(rules),
    );
    const provider = parseYaml(readFileSync(join(root, config), 'utf8')).providers;
    expect(provider).toEqual([
      {
        name: 'kubelet-image-service',
        matchImages: ['docker.example.com'],
        defaultCacheDuration: '5m',
        apiVersion: 'credentialprovider.kubelet.k8s.io/v1',
        args: ['credential-provider', '--config', '/etc/kubelet-image-service/rules.yaml'],
      },
    ]);

    const second = await run(args);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toBe('already applied: nothing changed, nothing restarted\n');
    expect(systemdCalls(n)).toHaveLength(1);

    const reverted = await run(revertArgs(n));
    expect(reverted.code, reverted.stderr).toBe(0);
    expect(systemdCalls(n)).toEqual([
      'RestartUnit kubelet.service replace',
      'RestartUnit kubelet.service replace',
    ]);
    expect(sawProvider).toEqual([true, false]);
    expect(snapshot(root)).toEqual(before);
  }, 30_000);
});
