import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HostRoot } from '../src/host-root.js';
import {
  type ApplyOptions,
  applyToNode,
  type PlanError,
  readState,
  revertNode,
  type ServiceUnitPaths,
  type SystemdControl,
  type TransactionError,
} from '../src/index.js';
import { rejected, snapshot, withoutFailureRecord } from './host-fixtures.js';

/**
 * `apply --mode image-service --install-service FILE`: the executable, its rules and its unit go
 * on the host and the service starts before kubelet is switched; failures take it away again.
 * systemd is a seam here whose "start" of the service opens the socket; the real binary against
 * a real dbus-daemon is in apps/node-patcher/test/apply.integration.test.ts.
 */

const FIXTURES = join(import.meta.dirname, 'fixtures');
const SOCKET = '/run/kubelet-image-service/cri.sock';
const ENDPOINT = `unix://${SOCKET}`;
const UNIT = 'kubelet-image-service.service';

const scratch = mkdtempSync(join(tmpdir(), 'kubelet-patch-install-service-'));
const servers: Server[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  rmSync(scratch, { recursive: true, force: true });
});

const EXECUTABLE = join(scratch, 'kubelet-image-service');
writeFileSync(EXECUTABLE, '#!/bin/sh\necho "kubelet-image-service $*"\n');
chmodSync(EXECUTABLE, 0o755);
const RULES = join(scratch, 'rules.yaml');
writeFileSync(
  RULES,
  'rules:\n  - match: [docker.example.com]\n    credentials: { provider: gcp }\n',
);

/** A stand-in for @org/cri-image-service's hostServiceUnit: the paths, one per line. */
const unit = (p: ServiceUnitPaths) =>
  `[Service]\nExecStart=${p.executable} serve --config ${p.rules} --listen ${p.listen} --backend-endpoint ${p.backendEndpoint}\n`;

let copies = 0;
function copyOf(fixture: string): string {
  const root = join(scratch, `${fixture}-${copies++}`, 'host');
  cpSync(join(FIXTURES, fixture), root, { recursive: true, verbatimSymlinks: true });
  return root;
}

/**
 * systemd as a seam: restarting the image-service unit "starts" it by opening the socket
 * (unless told the service fails), stopping it closes the socket.
 */
function systemdOf(
  root: string,
  options: { serviceFails?: boolean; kubeletUnhealthy?: boolean } = {},
): { calls: string[]; connect: () => Promise<SystemdControl> } {
  const calls: string[] = [];
  let server: Server | null = null;
  return {
    calls,
    connect: async () => ({
      reload: async () => {
        calls.push('reload');
      },
      restartUnit: async (name) => {
        calls.push(`restart ${name}`);
        if (name !== UNIT) return 'done';
        if (options.serviceFails) return 'failed';
        // The unit file the patcher wrote names the executable it installed.
        const text = readFileSync(join(root, 'etc/systemd/system', UNIT), 'utf8');
        const executable = /ExecStart=(\S+)/.exec(text)?.[1] ?? '';
        expect(statSync(join(root, executable)).mode & 0o111).not.toBe(0);
        mkdirSync(join(root, 'run/kubelet-image-service'), { recursive: true });
        server = createServer((s) => s.end());
        servers.push(server);
        await new Promise<void>((r) => server?.listen(join(root, SOCKET), r));
        return 'done';
      },
      waitActive: async () => {},
      stopUnit: async (name) => {
        calls.push(`stop ${name}`);
        await new Promise((r) => (server ? server.close(r) : r(undefined)));
        server = null;
        return 'done';
      },
      close: () => {},
    }),
  };
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
    installService: { executable: EXECUTABLE, rules: RULES, unit },
    mountinfo: '',
    connectSystemd: systemd.connect,
    waitHealthy: async () => {},
    checkEndpoint: async () => {},
    ...extra,
  };
}

describe('apply --install-service', () => {
  for (const [fixture, dir, runtime] of [
    ['gke-cos', '/home/kubernetes/bin', 'unix:///run/containerd/containerd.sock'],
    ['kubeadm-deb', '/opt/kubelet-image-service/bin', 'unix:///var/run/containerd/containerd.sock'],
    ['eks-al2023', '/opt/kubelet-image-service/bin', 'unix:///run/containerd/containerd.sock'],
  ] as const) {
    it(`${fixture}: installs into ${dir}, starts the service, then switches kubelet; revert undoes all`, async () => {
      const root = copyOf(fixture);
      const before = snapshot(root, ['/run']);
      const systemd = systemdOf(root);
      const out = await applyToNode(options(root, systemd));
      expect(systemd.calls).toEqual([
        'reload',
        `restart ${UNIT}`,
        'reload',
        'restart kubelet.service',
      ]);
      const installed = join(root, dir, 'kubelet-image-service');
      expect(readFileSync(installed)).toEqual(readFileSync(EXECUTABLE));
      expect(statSync(installed).mode & 0o7777).toBe(0o755);
      const rules = join(root, 'etc/kubelet-image-service/rules.yaml');
      expect(readFileSync(rules)).toEqual(readFileSync(RULES));
      expect(statSync(rules).mode & 0o7777).toBe(0o600);
      expect(readFileSync(join(root, 'etc/systemd/system', UNIT), 'utf8')).toBe(
        unit({
          executable: `${dir}/kubelet-image-service`,
          rules: '/etc/kubelet-image-service/rules.yaml',
          listen: ENDPOINT,
          backendEndpoint: runtime,
        }),
      );
      expect(
        readFileSync(
          join(root, 'etc/systemd/system/kubelet.service.d/95-kubelet-image-service.conf'),
          'utf8',
        ),
      ).toMatch(
        /^\[Unit\]\nWants=kubelet-image-service\.service\nAfter=kubelet-image-service\.service\n$/m,
      );
      expect(out.result?.restarted).toEqual([UNIT, 'kubelet.service']);
      expect(readState(new HostRoot(root), '/var/lib/node-patcher')?.installed).toEqual([UNIT]);

      // Again: nothing changes, nothing restarts.
      const mid = snapshot(root, ['/run']);
      const again = await applyToNode(options(root, systemd));
      expect(again.install?.changes).toEqual([]);
      expect(again.plan.changes).toEqual([]);
      expect(systemd.calls.length).toBe(4);
      expect(snapshot(root, ['/run'])).toEqual(mid);

      systemd.calls.length = 0;
      await revertNode(options(root, systemd));
      expect(systemd.calls).toEqual(['reload', 'restart kubelet.service', `stop ${UNIT}`]);
      expect(snapshot(root, ['/run'])).toEqual(before);
    });
  }

  it('the service does not start: rolled back, kubelet never restarted, and not tried again', async () => {
    const root = copyOf('kubeadm-deb');
    const before = snapshot(root, ['/run']);
    const systemd = systemdOf(root, { serviceFails: true });
    const err = await rejected<TransactionError>(applyToNode(options(root, systemd)));
    expect(err.code).toBe('ROLLED_BACK');
    expect(systemd.calls).toEqual(['reload', `restart ${UNIT}`, 'reload', `stop ${UNIT}`]);
    const failed = join(root, 'var/lib/node-patcher/failed.json');
    expect(JSON.parse(readFileSync(failed, 'utf8')).reason).toMatch(/ended "failed"/);
    expect(withoutFailureRecord(snapshot(root, ['/run']), before)).toEqual(before);

    // The DaemonSet's init step runs again: the same change is refused, systemd untouched.
    systemd.calls.length = 0;
    const again = await rejected<TransactionError>(applyToNode(options(root, systemd)));
    expect(again.code).toBe('FAILED_BEFORE');
    expect(again.message).toMatch(/node-patcher revert clears/);
    expect(systemd.calls).toEqual([]);

    // revert clears the record; a fixed service then goes in.
    await revertNode(options(root, systemd));
    expect(existsSync(failed)).toBe(false);
    const fixed = systemdOf(root);
    await applyToNode(options(root, fixed));
    expect(fixed.calls).toEqual(['reload', `restart ${UNIT}`, 'reload', 'restart kubelet.service']);
  });

  it('the service is active but does not answer: removed again, kubelet untouched', async () => {
    const root = copyOf('gke-cos');
    const before = snapshot(root, ['/run']);
    const systemd = systemdOf(root);
    const err = await rejected<TransactionError>(
      applyToNode(
        options(root, systemd, {
          checkEndpoint: async () => {
            throw new Error('UNAVAILABLE: no connection established');
          },
        }),
      ),
    );
    expect(err.code).toBe('ENDPOINT_DOWN');
    expect(systemd.calls).toEqual(['reload', `restart ${UNIT}`, 'reload', `stop ${UNIT}`]);
    expect(snapshot(root, ['/run'])).toEqual(before);
  });

  it('a kubelet that does not come back takes the service away with it', async () => {
    const root = copyOf('aks');
    const before = snapshot(root, ['/run']);
    const systemd = systemdOf(root);
    let checks = 0;
    const err = await rejected<TransactionError>(
      applyToNode(
        options(root, systemd, {
          waitHealthy: async () => {
            // healthy after the service starts (1), unhealthy on the switched kubelet (2)
            if (++checks === 2) throw new Error('healthz answered 500');
          },
        }),
      ),
    );
    expect(err.code).toBe('ROLLED_BACK');
    expect(systemd.calls).toEqual([
      'reload',
      `restart ${UNIT}`,
      'reload',
      'restart kubelet.service',
      'reload',
      'restart kubelet.service',
      `stop ${UNIT}`,
    ]);
    expect(withoutFailureRecord(snapshot(root, ['/run']), before)).toEqual(before);
  });

  it('refuses a noexec install directory and an endpoint outside the runtime directory', async () => {
    const root = copyOf('gke-cos');
    const before = snapshot(root, ['/run']);
    const systemd = systemdOf(root);
    const host = new HostRoot(root);
    const noexec = `1 0 8:1 / ${host.root} rw,noexec,relatime - ext4 /dev/sda1 rw\n`;
    const err = await rejected<PlanError>(
      applyToNode(options(root, systemd, { mountinfo: noexec })),
    );
    expect(err.code).toBe('UNSAFE_EDIT');
    expect(err.message).toMatch(/\/home\/kubernetes\/bin is on a noexec mount/);
    const elsewhere = await rejected<PlanError>(
      applyToNode(options(root, systemd, { endpoint: 'unix:///run/other/cri.sock' })),
    );
    expect(elsewhere.code).toBe('BAD_OPTION');
    expect(systemd.calls).toEqual([]);
    expect(snapshot(root, ['/run'])).toEqual(before);
  });

  it('never replaces an executable someone else put at the install path', async () => {
    const root = copyOf('kubeadm-deb');
    mkdirSync(join(root, 'opt/kubelet-image-service/bin'), { recursive: true });
    writeFileSync(join(root, 'opt/kubelet-image-service/bin/kubelet-image-service'), 'theirs\n');
    const before = snapshot(root, ['/run']);
    const systemd = systemdOf(root);
    const err = await rejected<PlanError>(applyToNode(options(root, systemd)));
    expect(err.code).toBe('NOT_OURS');
    expect(systemd.calls).toEqual([]);
    expect(snapshot(root, ['/run'])).toEqual(before);
  });

  it('--dry-run shows the install and the switch, touches nothing', async () => {
    const root = copyOf('kubeadm-deb');
    const before = snapshot(root, ['/run']);
    const out = await applyToNode(options(root, systemdOf(root), { dryRun: true }));
    expect(out.diff).toMatch(
      /Binary \/opt\/kubelet-image-service\/bin\/kubelet-image-service: absent -> \d+ bytes/,
    );
    expect(out.diff).toContain('+++ b/etc/systemd/system/kubelet-image-service.service');
    expect(out.diff).toContain('create /etc/kubelet-image-service/rules.yaml (the rules');
    expect(out.diff).not.toContain('provider: gcp');
    expect(out.result).toBeNull();
    expect(snapshot(root, ['/run'])).toEqual(before);
  });
});
