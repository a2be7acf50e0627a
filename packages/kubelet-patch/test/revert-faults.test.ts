import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HostFileError, SystemdBusError } from '../src/errors.js';
import { HostRoot } from '../src/host-root.js';
import {
  type ApplyOptions,
  applyToNode,
  readState,
  revertNode,
  type SystemdControl,
  TransactionError,
} from '../src/index.js';
import { type FileChange, plan } from '../src/plan.js';
import { applyPlan, revertState, type TransactionContext } from '../src/transaction.js';
import { copyOf, rejected, snapshot } from './host-fixtures.js';

/**
 * The failure paths of issue 7 under `revert` (and the ones `apply` lacked): systemd unreachable
 * or dropping mid-call, a restart job or healthz failing, a write failing half-way, a damaged,
 * foreign or newer state record, missing originals, a stop that fails, revert run twice, and a
 * revert interrupted between steps and run again. Each leaves the node fully patched (and
 * running) or fully original (byte for byte), says so in one line, and a re-run converges.
 */

const SOCKET = '/run/kubelet-image-service/cri.sock';
const STATE_DIR = '/var/lib/node-patcher';
const scratch = mkdtempSync(join(tmpdir(), 'kubelet-patch-revert-faults-'));
const servers: Server[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  rmSync(scratch, { recursive: true, force: true });
});

type Fault = Error | 'failed' | undefined;

/**
 * A systemd seam that records each call and answers it with `fault(call, n)`: an Error is
 * thrown (D-Bus gone mid-call), `'failed'` is the job's result, undefined is success. `n`
 * counts calls of that kind from 1.
 */
function systemd(fault: (call: string, n: number) => Fault = () => undefined): {
  connect: () => Promise<SystemdControl>;
  calls: string[];
} {
  const calls: string[] = [];
  const counts = new Map<string, number>();
  const answer = (call: string): Fault => {
    const kind = call.split(' ')[0] as string;
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
    calls.push(call);
    return fault(call, counts.get(kind) as number);
  };
  return {
    calls,
    connect: async () => ({
      reload: async () => {
        const f = answer('reload');
        if (f instanceof Error) throw f;
      },
      restartUnit: async (name) => {
        const f = answer(`restart ${name}`);
        if (f instanceof Error) throw f;
        return f ?? 'done';
      },
      waitActive: async () => {},
      stopUnit: async (name) => {
        const f = answer(`stop ${name}`);
        if (f instanceof Error) throw f;
        return f ?? 'done';
      },
      close: () => {},
    }),
  };
}

const dropped = () =>
  new SystemdBusError('DISCONNECTED', 'the D-Bus connection closed before systemd answered');

async function listen(root: string): Promise<void> {
  mkdirSync(join(root, 'run/kubelet-image-service'), { recursive: true });
  const server = createServer((s) => s.end());
  servers.push(server);
  await new Promise<void>((r) => server.listen(join(root, SOCKET), r));
}

function options(
  root: string,
  seam: { connect: () => Promise<SystemdControl> },
  extra: Partial<ApplyOptions> = {},
): ApplyOptions {
  return {
    hostRoot: root,
    mode: 'image-service',
    endpoint: `unix://${SOCKET}`,
    connectSystemd: seam.connect,
    waitHealthy: async () => {},
    checkEndpoint: async () => {},
    log: () => {},
    ...extra,
  };
}

/** A patched fixture node: its root, the snapshot before and after apply. */
async function patched(fixture: string) {
  const root = copyOf(scratch, fixture);
  await listen(root);
  const before = snapshot(root);
  await applyToNode(options(root, systemd()));
  return { root, before, after: snapshot(root) };
}

const phase = (root: string) => readState(new HostRoot(root), STATE_DIR)?.phase;
/** A snapshot without the node-patcher state directory (the files kubelet reads). */
const kubeletFiles = (snap: Record<string, string>) =>
  Object.fromEntries(Object.entries(snap).filter(([k]) => !k.startsWith('/var/lib/node-patcher')));

describe('revert when systemd or kubelet fails', () => {
  it('D-Bus unreachable: refused, nothing restored, exit-1 error; a re-run converges', async () => {
    const { root, before, after } = await patched('kubeadm-deb');
    const err = await rejected<TransactionError>(
      revertNode(
        options(root, {
          connect: async () => {
            throw new Error('connect ENOENT /run/dbus/system_bus_socket');
          },
        }),
      ),
    );
    expect(err.code).toBe('SYSTEMD_UNREACHABLE');
    expect(err.message).toMatch(/nothing was changed/);
    expect(err.message.split('\n')).toHaveLength(1);
    expect(snapshot(root)).toEqual(after);
    await revertNode(options(root, systemd()));
    expect(snapshot(root)).toEqual(before);
  });

  it('the restart job fails: originals back byte for byte, REVERT_UNHEALTHY; a re-run has nothing left to do', async () => {
    const { root, before } = await patched('gke-cos');
    const seam = systemd((call) => (call.startsWith('restart') ? 'failed' : undefined));
    const err = await rejected<TransactionError>(revertNode(options(root, seam)));
    expect(err.code).toBe('REVERT_UNHEALTHY');
    expect(err.message).toMatch(/original files are back, but the restart job .* ended "failed"/);
    expect(snapshot(root)).toEqual(before);
    const again = systemd();
    const out = await revertNode(options(root, again));
    expect(out.notes).toEqual(['nothing to revert: no state record']);
    expect(again.calls).toEqual([]);
  });

  it('kubelet not healthy after revert: originals back, REVERT_UNHEALTHY naming healthz', async () => {
    const { root, before } = await patched('aks');
    const err = await rejected<TransactionError>(
      revertNode(
        options(root, systemd(), {
          waitHealthy: async () => {
            throw new Error('healthz did not answer ok (last: ECONNREFUSED)');
          },
        }),
      ),
    );
    expect(err.code).toBe('REVERT_UNHEALTHY');
    expect(err.message).toMatch(/original files are back, but healthz did not answer ok/);
    expect(snapshot(root)).toEqual(before);
  });

  it('D-Bus drops during the restart (revert interrupted between steps): the record stays and the re-run restarts kubelet on the originals', async () => {
    const { root, before } = await patched('kubeadm-rpm');
    const first = systemd((call, n) =>
      call.startsWith('restart') && n === 1 ? dropped() : undefined,
    );
    const err = await rejected<TransactionError>(revertNode(options(root, first)));
    expect(err.code).toBe('REVERT_UNHEALTHY');
    expect(err.message).toMatch(/did not restart kubelet.service .*run node-patcher revert again/);
    // the files kubelet reads are the originals already; kubelet still runs on the patched ones
    expect(kubeletFiles(snapshot(root))).toEqual(kubeletFiles(before));
    expect(phase(root)).toBe('reverting');
    const second = systemd();
    const out = await revertNode(options(root, second));
    expect(second.calls).toEqual(['reload', 'restart kubelet.service']);
    expect(out.restarted).toEqual(['kubelet.service']);
    expect(out.notes).toContain('finished an interrupted revert');
    expect(snapshot(root)).toEqual(before);
  });

  it('D-Bus drops at the daemon-reload: the same, and apply on that node finishes the revert first', async () => {
    const { root, before } = await patched('kubeadm-deb');
    const err = await rejected<TransactionError>(
      revertNode(
        options(
          root,
          systemd((call) => (call === 'reload' ? dropped() : undefined)),
        ),
      ),
    );
    expect(err.code).toBe('REVERT_UNHEALTHY');
    expect(phase(root)).toBe('reverting');
    // the DaemonSet's apply step comes first: it restarts kubelet on the originals, then patches
    const seam = systemd();
    await applyToNode(options(root, seam));
    expect(seam.calls).toEqual([
      'reload',
      'restart kubelet.service',
      'reload',
      'restart kubelet.service',
    ]);
    expect(phase(root)).toBe('applied');
    await revertNode(options(root, systemd()));
    expect(snapshot(root)).toEqual(before);
  });

  it('revert run twice: the second one changes and restarts nothing', async () => {
    const { root, before } = await patched('eks-al2');
    await revertNode(options(root, systemd()));
    const again = systemd();
    const out = await revertNode(options(root, again));
    expect(out.changed).toEqual([]);
    expect(again.calls).toEqual([]);
    expect(snapshot(root)).toEqual(before);
  });
});

describe('revert refuses a state record it cannot trust, touching nothing', () => {
  const stateFile = (root: string) => join(root, 'var/lib/node-patcher/state.json');
  it.each([
    ['not JSON', (root: string) => writeFileSync(stateFile(root), '{"version": 1, "mode": ')],
    [
      'from a newer node-patcher',
      (root: string) =>
        writeFileSync(
          stateFile(root),
          JSON.stringify({ ...JSON.parse(readFileSync(stateFile(root), 'utf8')), version: 2 }),
        ),
    ],
    [
      'foreign (a path outside the tree)',
      (root: string) => {
        const state = JSON.parse(readFileSync(stateFile(root), 'utf8'));
        state.files[0].path = '/etc/../etc/shadow';
        writeFileSync(stateFile(root), JSON.stringify(state));
      },
    ],
    [
      'with its saved originals missing',
      (root: string) => rmSync(join(root, 'var/lib/node-patcher/originals'), { recursive: true }),
    ],
  ])('%s: STATE_INVALID, exit 1, no file and no unit touched', async (_, damage) => {
    const { root } = await patched('kubeadm-deb');
    damage(root);
    const damaged = snapshot(root);
    const seam = systemd();
    const err = await rejected<TransactionError>(revertNode(options(root, seam)));
    expect(err).toBeInstanceOf(TransactionError);
    expect(err.code).toBe('STATE_INVALID');
    expect(err.message.split('\n')).toHaveLength(1);
    expect(seam.calls).toEqual([]);
    expect(snapshot(root)).toEqual(damaged);
  });
});

describe('apply when D-Bus drops mid-call', () => {
  it('at the daemon-reload: rolled back, restarted on the originals, files byte for byte', async () => {
    const root = copyOf(scratch, 'kubeadm-deb');
    await listen(root);
    const before = snapshot(root);
    const seam = systemd((call, n) => (call === 'reload' && n === 1 ? dropped() : undefined));
    const err = await rejected<TransactionError>(applyToNode(options(root, seam)));
    expect(err.code).toBe('ROLLED_BACK');
    expect(seam.calls).toEqual(['reload', 'reload', 'restart kubelet.service']);
    expect(kubeletFiles(snapshot(root))).toEqual(kubeletFiles(before));
    expect(phase(root)).toBeUndefined();
  });

  it('during the rollback too: the originals are back, the record says reverting, and the next run restarts kubelet on them', async () => {
    const root = copyOf(scratch, 'kubeadm-rpm');
    await listen(root);
    const before = snapshot(root);
    // kubelet restarted on the new files and turned unhealthy; then the bus went away
    const seam = systemd((call, n) => (call === 'reload' && n === 2 ? dropped() : undefined));
    let checks = 0;
    const err = await rejected<TransactionError>(
      applyToNode(
        options(root, seam, {
          waitHealthy: async () => {
            if (++checks === 1) throw new Error('healthz did not answer ok');
          },
        }),
      ),
    );
    expect(err.code).toBe('ROLLED_BACK');
    expect(err.message).toMatch(/systemd could not restart kubelet.service on them .*next run/);
    expect(kubeletFiles(snapshot(root))).toEqual(kubeletFiles(before));
    expect(phase(root)).toBe('reverting');
    const again = systemd();
    await revertNode(options(root, again));
    expect(again.calls).toEqual(['reload', 'restart kubelet.service']);
    expect(snapshot(root)).toEqual(before);
  });
});

/** A host whose disk fills up at one path: writes there fail with ENOSPC. */
class FullDisk extends HostRoot {
  failAt: string | null = null;
  override writeAtomic(
    hostPath: string,
    bytes: Uint8Array,
    options: { mode: number; owner?: { uid: number; gid: number } },
  ): void {
    if (hostPath === this.failAt)
      throw new HostFileError('WRITE_FAILED', hostPath, 'ENOSPC: no space left on device');
    super.writeAtomic(hostPath, bytes, options);
  }
}

describe('revert when a write fails half-way (a full disk)', () => {
  const change = (path: string, before: string, after: string): FileChange => ({
    path,
    before: Buffer.from(before),
    after: Buffer.from(after),
    mode: 0o644,
    why: 'test',
  });

  function node() {
    const root = join(scratch, `disk-${Math.random().toString(36).slice(2)}`);
    mkdirSync(join(root, 'etc/systemd/system'), { recursive: true });
    writeFileSync(join(root, 'etc/a.conf'), 'a original\n');
    writeFileSync(join(root, 'etc/b.conf'), 'b original\n');
    const host = new FullDisk(root);
    const seam = systemd();
    const logged: string[] = [];
    const ctx: TransactionContext = {
      host,
      stateDir: STATE_DIR,
      connectSystemd: seam.connect,
      waitHealthy: async () => {},
      restartTimeoutMs: 1000,
      log: (line) => logged.push(line),
    };
    return { root, host, seam, ctx, logged };
  }

  it('puts the patched bytes back, restarts nothing, keeps the record; a re-run restores all', async () => {
    const { root, host, seam, ctx } = node();
    const before = snapshot(root);
    await applyPlan(
      ctx,
      plan({
        mode: 'image-service',
        changes: [
          change('/etc/a.conf', 'a original\n', 'a patched\n'),
          change('/etc/b.conf', 'b original\n', 'b patched\n'),
        ],
        restart: ['kubelet.service'],
        notes: [],
      }),
    );
    const after = snapshot(root);
    seam.calls.length = 0;
    // revert goes last file first: b.conf is restored, then the disk is full at a.conf
    host.failAt = '/etc/a.conf';
    const err = await rejected<TransactionError>(revertState(ctx));
    expect(err.code).toBe('WRITE_FAILED');
    expect(err.message).toMatch(/ENOSPC.*hold node-patcher's version again, nothing was restarted/);
    expect(seam.calls).toEqual([]);
    expect(snapshot(root)).toEqual(after);
    expect(readState(host, STATE_DIR)?.phase).toBe('applied');
    host.failAt = null;
    await revertState(ctx);
    expect(seam.calls).toEqual(['restart kubelet.service']);
    expect(snapshot(root)).toEqual(before);
  });

  it('during an apply rollback: the new files stay with their record, and the next run rolls back', async () => {
    const { root, host, seam, ctx } = node();
    const before = snapshot(root);
    let checks = 0;
    const failing: TransactionContext = {
      ...ctx,
      waitHealthy: async () => {
        if (++checks === 1) {
          host.failAt = '/etc/a.conf';
          throw new Error('healthz did not answer ok');
        }
      },
    };
    const err = await rejected<TransactionError>(
      applyPlan(
        failing,
        plan({
          mode: 'image-service',
          changes: [
            change('/etc/a.conf', 'a original\n', 'a patched\n'),
            change('/etc/b.conf', 'b original\n', 'b patched\n'),
          ],
          restart: ['kubelet.service'],
          notes: [],
        }),
      ),
    );
    expect(err.code).toBe('WRITE_FAILED');
    expect(readFileSync(join(root, 'etc/a.conf'), 'utf8')).toBe('a patched\n');
    expect(readFileSync(join(root, 'etc/b.conf'), 'utf8')).toBe('b patched\n');
    expect(readState(host, STATE_DIR)?.phase).toBe('restarting');
    host.failAt = null;
    seam.calls.length = 0;
    await revertState(ctx);
    expect(seam.calls).toEqual(['restart kubelet.service']);
    expect(snapshot(root)).toEqual(before);
  });

  it('a stop of the installed service that fails is logged; the node is original and the record gone', async () => {
    const { root, ctx, logged } = node();
    const before = snapshot(root);
    const seam = systemd((call) =>
      call.startsWith('stop') ? new SystemdBusError('CALL_FAILED', 'Access denied') : undefined,
    );
    const withSeam: TransactionContext = { ...ctx, connectSystemd: seam.connect };
    await applyPlan(
      withSeam,
      plan({
        mode: 'image-service',
        changes: [
          {
            path: '/etc/systemd/system/tool.service',
            before: null,
            after: Buffer.from('[Service]\nExecStart=/opt/tool\n'),
            mode: 0o644,
            why: 'test',
          },
          change('/etc/a.conf', 'a original\n', 'a patched\n'),
        ],
        reload: true,
        restart: ['tool.service', 'kubelet.service'],
        installed: ['tool.service'],
        notes: [],
      }),
    );
    seam.calls.length = 0;
    const out = await revertState(withSeam);
    expect(seam.calls).toEqual(['reload', 'restart kubelet.service', 'stop tool.service']);
    expect(out.restarted).toEqual(['kubelet.service']);
    expect(logged.join('\n')).toMatch(/could not stop tool.service: Access denied/);
    expect(snapshot(root)).toEqual(before);
  });
});
