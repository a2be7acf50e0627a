import { execFileSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { afterAll, describe, expect, it } from 'vitest';
import { HostRoot } from '../src/host-root.js';
import {
  type ApplyOptions,
  applyToNode,
  GUARD_DROP_IN,
  PlanError,
  readState,
  revertNode,
  type SystemdControl,
  TransactionError,
} from '../src/index.js';
import {
  GOLDEN,
  LAYOUTS,
  recorder,
  rejected,
  snapshot,
  withoutFailureRecord,
} from './host-fixtures.js';

const FIXTURES = join(import.meta.dirname, 'fixtures');
const SOCKET = '/run/kubelet-image-service/cri.sock';
const ENDPOINT = `unix://${SOCKET}`;

const scratch = mkdtempSync(join(tmpdir(), 'kubelet-patch-apply-'));
const servers: Server[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  rmSync(scratch, { recursive: true, force: true });
});

let copies = 0;
function copyOf(fixture: string): string {
  const root = join(scratch, `${fixture}-${copies++}`, 'host');
  cpSync(join(FIXTURES, fixture), root, { recursive: true, verbatimSymlinks: true });
  return root;
}

/** A listening unix socket where the image service would be. */
async function listen(root: string): Promise<void> {
  mkdirSync(join(root, 'run/kubelet-image-service'), { recursive: true });
  const server = createServer((s) => s.end());
  servers.push(server);
  await new Promise<void>((r) => server.listen(join(root, SOCKET), r));
}

function options(
  root: string,
  systemd: { connect: () => Promise<SystemdControl> },
  extra: Partial<ApplyOptions> = {},
): ApplyOptions {
  return {
    hostRoot: root,
    mode: 'image-service',
    endpoint: ENDPOINT,
    connectSystemd: systemd.connect,
    waitHealthy: async () => {},
    checkEndpoint: async () => {},
    ...extra,
  };
}

describe('apply --mode image-service on every layout', () => {
  for (const fixture of LAYOUTS) {
    it(`${fixture}: the dry-run diff is the golden one, and touches nothing`, async () => {
      const root = copyOf(fixture);
      const before = snapshot(root);
      const out = await applyToNode(options(root, recorder(), { dryRun: true }));
      const golden = join(GOLDEN, `${fixture}.image-service.diff`);
      if (process.env.UPDATE_GOLDEN === '1') writeFileSync(golden, out.diff);
      expect(out.diff).toBe(readFileSync(golden, 'utf8'));
      expect(snapshot(root)).toEqual(before);
    });

    it(`${fixture}: apply then revert gives back every byte, mode and owner`, async () => {
      const root = copyOf(fixture);
      await listen(root);
      const before = snapshot(root);
      const systemd = recorder();
      const out = await applyToNode(options(root, systemd));
      expect(out.result?.changed.length).toBeGreaterThan(0);
      expect(systemd.calls).toEqual(['reload', 'restart kubelet.service']);
      expect(snapshot(root)).not.toEqual(before);
      expect(readState(new HostRoot(root), '/var/lib/node-patcher')?.phase).toBe('applied');

      // Twice: nothing changes, nothing restarts.
      const mid = snapshot(root);
      const again = await applyToNode(options(root, systemd));
      expect(again.plan.changes).toEqual([]);
      expect(systemd.calls).toEqual(['reload', 'restart kubelet.service']);
      expect(snapshot(root)).toEqual(mid);

      const reverted = await revertNode(options(root, systemd));
      expect(reverted.changed.length).toBe(out.result?.changed.length);
      expect(systemd.calls.slice(2)).toEqual(['reload', 'restart kubelet.service']);
      expect(snapshot(root)).toEqual(before);
    });
  }
});

describe('safety', () => {
  it('kubelet unhealthy after the restart: rolled back, restarted twice, originals back', async () => {
    const root = copyOf('kubeadm-deb');
    await listen(root);
    const before = snapshot(root);
    const systemd = recorder();
    let checks = 0;
    const err = await rejected<TransactionError>(
      applyToNode(
        options(root, systemd, {
          waitHealthy: async () => {
            if (++checks === 1) throw new Error('healthz did not answer ok (last: ECONNREFUSED)');
          },
        }),
      ),
    );
    expect(err).toBeInstanceOf(TransactionError);
    expect(err.code).toBe('ROLLED_BACK');
    expect(err.message).toMatch(/ECONNREFUSED.*original files are back/);
    expect(systemd.calls).toEqual([
      'reload',
      'restart kubelet.service',
      'reload',
      'restart kubelet.service',
    ]);
    expect(withoutFailureRecord(snapshot(root), before)).toEqual(before);
    // The DaemonSet retries: the same change is refused at once, kubelet left alone.
    const again = await rejected<TransactionError>(applyToNode(options(root, systemd)));
    expect(again.code).toBe('FAILED_BEFORE');
    expect(again.message).toMatch(/ECONNREFUSED/);
    expect(systemd.calls.length).toBe(4);
  });

  it('a restart job that fails is rolled back the same way', async () => {
    const root = copyOf('gke-cos');
    await listen(root);
    const before = snapshot(root);
    const systemd = recorder({ failRestart: (n) => n === 1 });
    const err = await rejected<TransactionError>(applyToNode(options(root, systemd)));
    expect(err.code).toBe('ROLLED_BACK');
    expect(err.message).toMatch(/restart job of kubelet.service ended "failed"/);
    expect(withoutFailureRecord(snapshot(root), before)).toEqual(before);
  });

  it('systemd unreachable: refused, nothing written', async () => {
    const root = copyOf('aks');
    await listen(root);
    const before = snapshot(root);
    const err = await rejected<TransactionError>(
      applyToNode(options(root, recorder({ unreachable: true }))),
    );
    expect(err.code).toBe('SYSTEMD_UNREACHABLE');
    expect(err.message).toMatch(/nothing was changed/);
    expect(snapshot(root)).toEqual(before);
  });

  it('image service absent or not answering: refused, nothing written', async () => {
    const root = copyOf('eks-al2023');
    const before = snapshot(root);
    const systemd = recorder();
    const absent = await rejected<TransactionError>(applyToNode(options(root, systemd)));
    expect(absent.code).toBe('ENDPOINT_DOWN');
    expect(absent.message).toMatch(/does not exist on the host/);
    await listen(root);
    const mid = snapshot(root);
    const down = await rejected<TransactionError>(
      applyToNode(
        options(root, systemd, {
          checkEndpoint: async () => {
            throw new Error('UNAVAILABLE: connection refused');
          },
        }),
      ),
    );
    expect(down.code).toBe('ENDPOINT_DOWN');
    expect(down.message).toMatch(/UNAVAILABLE/);
    expect(systemd.calls).toEqual([]);
    expect(snapshot(root)).toEqual(mid);
    expect(Object.keys(mid).length).toBeGreaterThan(Object.keys(before).length);
  });

  it.each([
    ['kubeadm-deb', '/var/lib/kubelet/config.yaml', 'kind: KubeletConfiguration\n  bad: [\n'],
    ['eks-al2023', '/etc/kubernetes/kubelet/config.json', '{"kind": "KubeletConfiguration",'],
  ])(
    '%s: a malformed config file is refused with its name, nothing written',
    async (f, path, text) => {
      const root = copyOf(f);
      await listen(root);
      writeFileSync(join(root, path), text);
      const before = snapshot(root);
      const systemd = recorder();
      const err = await rejected<PlanError>(applyToNode(options(root, systemd)));
      expect(err).toBeInstanceOf(PlanError);
      expect(err.code).toBe('CONFIG_INVALID');
      expect(err.message).toContain(path);
      expect(systemd.calls).toEqual([]);
      expect(snapshot(root)).toEqual(before);
    },
  );

  it('a file the patcher would own, written by someone else, is left alone', async () => {
    const root = copyOf('gke-cos');
    await listen(root);
    mkdirSync(join(root, 'etc/systemd/system/kubelet.service.d'), { recursive: true });
    writeFileSync(join(root, GUARD_DROP_IN), '[Service]\n# the operator\n');
    const before = snapshot(root);
    const err = await rejected<PlanError>(applyToNode(options(root, recorder())));
    expect(err.code).toBe('NOT_OURS');
    expect(snapshot(root)).toEqual(before);
  });

  it('another mode on a patched node is refused until revert', async () => {
    const root = copyOf('gke-cos');
    await listen(root);
    await applyToNode(options(root, recorder()));
    const state = join(root, 'var/lib/node-patcher/state.json');
    const record = JSON.parse(readFileSync(state, 'utf8'));
    writeFileSync(state, JSON.stringify({ ...record, mode: 'credential-provider' }));
    const err = await rejected<TransactionError>(applyToNode(options(root, recorder())));
    expect(err.code).toBe('MODE_CONFLICT');
  });

  it('a damaged state record is refused, not guessed at', async () => {
    const root = copyOf('gke-cos');
    await listen(root);
    mkdirSync(join(root, 'var/lib/node-patcher'), { recursive: true });
    writeFileSync(
      join(root, 'var/lib/node-patcher/state.json'),
      JSON.stringify({
        version: 1,
        mode: 'image-service',
        phase: 'applied',
        reload: false,
        restart: ['kubelet.service; rm -rf /'],
        files: [],
      }),
    );
    const err = await rejected<TransactionError>(revertNode(options(root, recorder())));
    expect(err.code).toBe('STATE_INVALID');
  });
});

describe('durability and interrupted runs', () => {
  it('a run interrupted after writing is rolled back and applied again', async () => {
    const root = copyOf('kubeadm-rpm');
    await listen(root);
    const before = snapshot(root);
    await applyToNode(options(root, recorder()));
    const patched = snapshot(root);
    const state = join(root, 'var/lib/node-patcher/state.json');
    writeFileSync(
      state,
      JSON.stringify({ ...JSON.parse(readFileSync(state, 'utf8')), phase: 'written' }),
    );
    const systemd = recorder();
    const dry = await applyToNode(options(root, systemd, { dryRun: true }));
    expect(dry.diff).toMatch(/^# an earlier run was interrupted \(written\)/);
    await applyToNode(options(root, systemd));
    expect(systemd.calls).toEqual([
      'reload',
      'restart kubelet.service',
      'reload',
      'restart kubelet.service',
    ]);
    expect(readState(new HostRoot(root), '/var/lib/node-patcher')?.phase).toBe('applied');
    expect(snapshot(root)).toEqual({
      ...patched,
      '/var/lib/node-patcher/state.json': expect.any(String),
    });
    await revertNode(options(root, systemd));
    expect(snapshot(root)).toEqual(before);
  });

  it('a node that put its files back (reboot) is patched again, and revert still knows the first original', async () => {
    const root = copyOf('gke-cos');
    await listen(root);
    const before = snapshot(root);
    const original = readFileSync(join(root, 'home/kubernetes/kubelet-config.yaml'));
    await applyToNode(options(root, recorder()));
    // COS rebuilds /etc and re-downloads the config: the guard drop-in is gone, the config is back.
    rmSync(join(root, GUARD_DROP_IN));
    writeFileSync(join(root, 'home/kubernetes/kubelet-config.yaml'), original);
    const systemd = recorder();
    const again = await applyToNode(options(root, systemd));
    expect(again.result?.changed).toEqual(['/home/kubernetes/kubelet-config.yaml', GUARD_DROP_IN]);
    expect(systemd.calls).toEqual(['reload', 'restart kubelet.service']);
    await revertNode(options(root, systemd));
    expect(snapshot(root)).toEqual(before);
  });

  it('a file the node rewrote differently (kubeadm upgrade) becomes the new original', async () => {
    const root = copyOf('kubeadm-deb');
    await listen(root);
    await applyToNode(options(root, recorder()));
    const upgraded =
      'apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n';
    writeFileSync(join(root, 'var/lib/kubelet/config.yaml'), upgraded);
    await applyToNode(options(root, recorder()));
    expect(readFileSync(join(root, 'var/lib/kubelet/config.yaml'), 'utf8')).toBe(
      `${upgraded}imageServiceEndpoint: "${ENDPOINT}"\n`,
    );
    await revertNode(options(root, recorder()));
    expect(readFileSync(join(root, 'var/lib/kubelet/config.yaml'), 'utf8')).toBe(upgraded);
  });

  it('revert leaves a file someone changed since, and says so', async () => {
    const root = copyOf('kubeadm-deb');
    await listen(root);
    await applyToNode(options(root, recorder()));
    writeFileSync(join(root, 'var/lib/kubelet/config.yaml'), 'kind: KubeletConfiguration\n');
    const out = await revertNode(options(root, recorder()));
    expect(out.notes.join('\n')).toMatch(/config\.yaml was changed by something else/);
    expect(readFileSync(join(root, 'var/lib/kubelet/config.yaml'), 'utf8')).toBe(
      'kind: KubeletConfiguration\n',
    );
    expect(existsSync(join(root, GUARD_DROP_IN))).toBe(false);
  });
});

describe('the guard', () => {
  /** Runs the guard's ExecStartPre= line with /bin/sh, host paths moved under the root. */
  function runGuard(root: string): void {
    const dropIn = readFileSync(join(root, GUARD_DROP_IN), 'utf8');
    const line = /^ExecStartPre=-\/bin\/sh -c '(.*)'$/m.exec(dropIn)?.[1];
    expect(line).toBeDefined();
    const script = (line as string).replaceAll('$$', '$').replace(/(?<=[ ])\//g, `${root}/`);
    execFileSync('/bin/sh', ['-c', script]);
  }

  it('socket absent: the config file goes back to the original; present: left patched', async () => {
    const root = copyOf('kubeadm-deb');
    await listen(root);
    const original = readFileSync(join(root, 'var/lib/kubelet/config.yaml'));
    await applyToNode(options(root, recorder()));
    const patched = readFileSync(join(root, 'var/lib/kubelet/config.yaml'));
    runGuard(root);
    expect(readFileSync(join(root, 'var/lib/kubelet/config.yaml'))).toEqual(patched);
    rmSync(join(root, SOCKET));
    runGuard(root);
    expect(readFileSync(join(root, 'var/lib/kubelet/config.yaml'))).toEqual(original);
  });

  it('socket absent: a drop-in config file the patcher added is removed', async () => {
    const root = copyOf('eks-al2023-config-dir');
    await listen(root);
    await applyToNode(options(root, recorder()));
    const dropIn = join(root, 'etc/kubernetes/kubelet/config.json.d/99-kubelet-image-service.conf');
    expect(existsSync(dropIn)).toBe(true);
    rmSync(join(root, SOCKET));
    runGuard(root);
    expect(existsSync(dropIn)).toBe(false);
  });

  it('never touches a file that no longer holds what the patcher wrote', async () => {
    const root = copyOf('gke-ubuntu');
    await listen(root);
    await applyToNode(options(root, recorder()));
    writeFileSync(
      join(root, 'home/kubernetes/kubelet-config.yaml'),
      'kind: KubeletConfiguration\n',
    );
    rmSync(join(root, SOCKET));
    runGuard(root);
    expect(readFileSync(join(root, 'home/kubernetes/kubelet-config.yaml'), 'utf8')).toBe(
      'kind: KubeletConfiguration\n',
    );
  });
});

describe('apply --mode containerd-mirror', () => {
  const mirror = (
    root: string,
    systemd: { connect: () => Promise<SystemdControl> },
    extra: Partial<ApplyOptions> = {},
  ) =>
    options(root, systemd, {
      mode: 'containerd-mirror',
      mirror: 'https://registry-proxy.example.com',
      registries: ['gcr.io', 'docker.io'],
      ...extra,
    });

  it.each(['gke-ubuntu', 'kubeadm-rpm'])(
    '%s: hosts.toml files under config_path, no restart, no systemd needed; revert removes them',
    async (fixture) => {
      const root = copyOf(fixture);
      const before = snapshot(root);
      const unreachable = recorder({ unreachable: true });
      const dry = await applyToNode(mirror(root, unreachable, { dryRun: true }));
      const golden = join(GOLDEN, `${fixture}.containerd-mirror.diff`);
      if (process.env.UPDATE_GOLDEN === '1') writeFileSync(golden, dry.diff);
      expect(dry.diff).toBe(readFileSync(golden, 'utf8'));
      const out = await applyToNode(mirror(root, unreachable));
      expect(out.result?.restarted).toEqual([]);
      for (const path of out.result?.changed ?? []) {
        const toml = parseToml(readFileSync(join(root, path), 'utf8')) as Record<string, unknown>;
        expect(toml.host).toEqual({
          'https://registry-proxy.example.com': { capabilities: ['pull', 'resolve'] },
        });
      }
      expect(readFileSync(join(root, out.result?.changed[1] ?? ''), 'utf8')).toContain(
        'server = "https://registry-1.docker.io"',
      );
      expect((await applyToNode(mirror(root, unreachable))).plan.changes).toEqual([]);
      await revertNode(mirror(root, unreachable));
      expect(snapshot(root)).toEqual(before);
    },
  );

  it('gke-cos: no config_path is refused, and with --set-config-path containerd restarts once', async () => {
    const root = copyOf('gke-cos');
    const before = snapshot(root);
    const systemd = recorder();
    const err = await rejected<PlanError>(applyToNode(mirror(root, systemd)));
    expect(err.code).toBe('UNSAFE_EDIT');
    expect(err.message).toMatch(/--set-config-path/);
    expect(snapshot(root)).toEqual(before);
    const dry = await applyToNode(mirror(root, systemd, { setConfigPath: true, dryRun: true }));
    const golden = join(GOLDEN, 'gke-cos.containerd-mirror.diff');
    if (process.env.UPDATE_GOLDEN === '1') writeFileSync(golden, dry.diff);
    expect(dry.diff).toBe(readFileSync(golden, 'utf8'));
    await applyToNode(mirror(root, systemd, { setConfigPath: true }));
    expect(systemd.calls).toEqual(['restart containerd.service']);
    await revertNode(mirror(root, systemd));
    expect(systemd.calls).toEqual(['restart containerd.service', 'restart containerd.service']);
    expect(snapshot(root)).toEqual(before);
  });

  it('an existing hosts.toml the patcher did not write is never overwritten', async () => {
    const root = copyOf('gke-ubuntu');
    mkdirSync(join(root, 'etc/containerd/hosts.d/docker.io'), { recursive: true });
    writeFileSync(
      join(root, 'etc/containerd/hosts.d/docker.io/hosts.toml'),
      'server = "https://mirror.corp"\n',
    );
    const before = snapshot(root);
    const err = await rejected<PlanError>(applyToNode(mirror(root, recorder())));
    expect(err.code).toBe('NOT_OURS');
    expect(err.message).toContain('/etc/containerd/hosts.d/docker.io/hosts.toml');
    expect(snapshot(root)).toEqual(before);
  });

  it.each([
    [{ mirror: 'https://u:p@proxy.example.com' }, /without credentials/],
    [{ mirror: 'ftp://proxy.example.com' }, /http\(s\) URL/],
    [{ registries: ['../etc'] }, /not a registry host/],
    [{ registries: ['GCR.io'] }, /not a registry host/],
    [{ registries: [] }, /at least one registry/],
  ] as const)('refuses %j', async (extra, message) => {
    const root = copyOf('gke-ubuntu');
    const before = snapshot(root);
    const err = await rejected<PlanError>(applyToNode(mirror(root, recorder(), extra)));
    expect(err.code).toBe('BAD_OPTION');
    expect(err.message).toMatch(message);
    expect(err.message).not.toContain('u:p');
    expect(snapshot(root)).toEqual(before);
  });
});
