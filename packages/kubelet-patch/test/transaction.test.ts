import { createHash, randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PlanError, TransactionError } from '../src/errors.js';
import { HostRoot, MAX_FILE_BYTES } from '../src/host-root.js';
import { type FileChange, largeContentOf, type Plan, plan } from '../src/plan.js';
import {
  applyPlan,
  readState,
  revertState,
  type SystemdControl,
  type TransactionContext,
} from '../src/transaction.js';

/**
 * The transaction's less travelled paths, on plans built by hand: a write that fails half-way,
 * files too large to hold in memory (an installed executable), and units the patcher installs.
 */

const scratch = mkdtempSync(join(tmpdir(), 'kubelet-patch-transaction-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let roots = 0;
function newRoot(): string {
  const root = join(scratch, `host-${roots++}`);
  mkdirSync(join(root, 'etc'), { recursive: true });
  return root;
}

function recorder(): { calls: string[]; connect: () => Promise<SystemdControl> } {
  const calls: string[] = [];
  return {
    calls,
    connect: async () => ({
      reload: async () => {
        calls.push('reload');
      },
      restartUnit: async (name) => {
        calls.push(`restart ${name}`);
        return 'done';
      },
      waitActive: async () => {},
      stopUnit: async (name) => {
        calls.push(`stop ${name}`);
        return 'done';
      },
      close: () => {},
    }),
  };
}

function context(root: string, systemd = recorder(), waitHealthy = async () => {}) {
  const logged: string[] = [];
  const ctx: TransactionContext = {
    host: new HostRoot(root),
    stateDir: '/var/lib/node-patcher',
    connectSystemd: systemd.connect,
    waitHealthy,
    restartTimeoutMs: 1000,
    log: (line) => logged.push(line),
  };
  return { ctx, calls: systemd.calls, logged };
}

const small = (path: string, before: Buffer | null, after: Buffer | null): FileChange => ({
  path,
  before,
  after,
  mode: 0o644,
  why: 'test',
});

function sha(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

describe('a write that fails half-way', () => {
  it('puts back what it wrote, restarts nothing and leaves no state record', async () => {
    const root = newRoot();
    writeFileSync(join(root, 'etc/a.conf'), 'a original\n');
    // /etc/blocked is a file, so a file under it cannot be written.
    writeFileSync(join(root, 'etc/blocked'), 'not a directory\n');
    const { ctx, calls } = context(root);
    const p = plan({
      mode: 'image-service',
      changes: [
        small('/etc/a.conf', Buffer.from('a original\n'), Buffer.from('a patched\n')),
        small('/etc/new.conf', null, Buffer.from('new\n')),
        small('/etc/blocked/x.conf', null, Buffer.from('x\n')),
      ],
      restart: ['kubelet.service'],
      notes: [],
    });
    const err = await applyPlan(ctx, p).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransactionError);
    expect((err as TransactionError).code).toBe('WRITE_FAILED');
    expect((err as Error).message).toMatch(/put back and nothing was restarted/);
    expect(readFileSync(join(root, 'etc/a.conf'), 'utf8')).toBe('a original\n');
    expect(existsSync(join(root, 'etc/new.conf'))).toBe(false);
    expect(calls).toEqual([]);
    expect(readState(ctx.host, ctx.stateDir)).toBeNull();
    expect(existsSync(join(root, 'var/lib/node-patcher'))).toBe(false);
  });

  it('on a patched node, leaves the earlier patch and its state record as they were', async () => {
    const root = newRoot();
    writeFileSync(join(root, 'etc/a.conf'), 'a original\n');
    writeFileSync(join(root, 'etc/b.conf'), 'b original\n');
    writeFileSync(join(root, 'etc/blocked'), 'not a directory\n');
    const { ctx } = context(root);
    const first = plan({
      mode: 'image-service',
      changes: [small('/etc/a.conf', Buffer.from('a original\n'), Buffer.from('a v1\n'))],
      restart: ['kubelet.service'],
      notes: [],
    });
    await applyPlan(ctx, first);
    const stateBefore = readFileSync(join(root, 'var/lib/node-patcher/state.json'), 'utf8');
    const second = plan({
      mode: 'image-service',
      changes: [
        small('/etc/a.conf', Buffer.from('a v1\n'), Buffer.from('a v2\n')),
        small('/etc/b.conf', Buffer.from('b original\n'), Buffer.from('b v2\n')),
        small('/etc/blocked/x.conf', null, Buffer.from('x\n')),
      ],
      restart: ['kubelet.service'],
      notes: [],
    });
    await expect(applyPlan(ctx, second)).rejects.toMatchObject({ code: 'WRITE_FAILED' });
    expect(readFileSync(join(root, 'etc/a.conf'), 'utf8')).toBe('a v1\n');
    expect(readFileSync(join(root, 'etc/b.conf'), 'utf8')).toBe('b original\n');
    expect(readFileSync(join(root, 'var/lib/node-patcher/state.json'), 'utf8')).toBe(stateBefore);
    // Only the first apply's saved original is left.
    const originals = join(root, 'var/lib/node-patcher/originals');
    expect(existsSync(join(originals, sha(Buffer.from('a original\n'))))).toBe(true);
    expect(existsSync(join(originals, sha(Buffer.from('b original\n'))))).toBe(false);
    // And revert still gives the node back as it was.
    await revertState(ctx);
    expect(readFileSync(join(root, 'etc/a.conf'), 'utf8')).toBe('a original\n');
  });
});

describe('a node that rewrote a patched file (a reboot, its bootstrap, an upgrade)', () => {
  it('is detected and patched again, and revert gives back what the node wrote last', async () => {
    const root = newRoot();
    writeFileSync(join(root, 'etc/kubelet.env'), 'A=1\n');
    const { ctx, calls, logged } = context(root);
    const patch = (before: string) =>
      plan({
        mode: 'image-service',
        changes: [small('/etc/kubelet.env', Buffer.from(before), Buffer.from(`${before}B=2\n`))],
        restart: ['kubelet.service'],
        notes: [],
      });
    await applyPlan(ctx, patch('A=1\n'));
    // The node's bootstrap writes the file anew, with a new base.
    writeFileSync(join(root, 'etc/kubelet.env'), 'A=3\n');
    await applyPlan(ctx, patch('A=3\n'));
    expect(logged.join('\n')).toMatch(
      /\/etc\/kubelet\.env was rewritten since node-patcher applied/,
    );
    expect(readFileSync(join(root, 'etc/kubelet.env'), 'utf8')).toBe('A=3\nB=2\n');
    expect(calls.filter((c) => c.startsWith('restart'))).toHaveLength(2);
    await revertState(ctx);
    expect(readFileSync(join(root, 'etc/kubelet.env'), 'utf8')).toBe('A=3\n');
  });
});

describe('a file too large to hold in memory (an installed executable)', () => {
  const size = MAX_FILE_BYTES * 3 + 17;

  function source(name: string): string {
    const path = join(scratch, name);
    writeFileSync(path, randomBytes(size));
    return path;
  }

  function install(host: HostRoot, from: string): Plan {
    const after = largeContentOf(from);
    const d = host.digest('/opt/x/bin/tool');
    return plan({
      mode: 'image-service',
      changes: [
        {
          path: '/opt/x/bin/tool',
          before: d === null ? null : { sha256: d.sha256, size: d.size, localPath: d.localPath },
          after,
          mode: 0o755,
          why: 'the executable',
          owned: true,
        },
      ],
      restart: [],
      notes: [],
    });
  }

  it('is copied in chunks, verified, left alone when unchanged, and removed by revert', async () => {
    const root = newRoot();
    const { ctx } = context(root);
    const from = source('tool-v1');
    await applyPlan(ctx, install(ctx.host, from));
    const installed = join(root, 'opt/x/bin/tool');
    expect(readFileSync(installed).equals(readFileSync(from))).toBe(true);
    expect(statSync(installed).mode & 0o7777).toBe(0o755);
    // The same bytes again: no change at all.
    expect(install(ctx.host, from).changes).toEqual([]);
    // A new version replaces the one the patcher wrote; the original stays "absent".
    const v2 = source('tool-v2');
    await applyPlan(ctx, install(ctx.host, v2));
    expect(readFileSync(installed).equals(readFileSync(v2))).toBe(true);
    expect(readState(ctx.host, ctx.stateDir)?.files[0]?.original).toBeNull();
    await revertState(ctx);
    expect(existsSync(installed)).toBe(false);
    expect(existsSync(join(root, 'opt'))).toBe(false);
  });

  it('is never replaced when someone else put it there', async () => {
    const root = newRoot();
    mkdirSync(join(root, 'opt/x/bin'), { recursive: true });
    writeFileSync(join(root, 'opt/x/bin/tool'), randomBytes(size));
    const theirs = readFileSync(join(root, 'opt/x/bin/tool'));
    const { ctx } = context(root);
    const err = await applyPlan(ctx, install(ctx.host, source('tool-v3'))).catch((e) => e);
    expect(err).toBeInstanceOf(PlanError);
    expect((err as PlanError).code).toBe('NOT_OURS');
    expect(readFileSync(join(root, 'opt/x/bin/tool')).equals(theirs)).toBe(true);
    expect(readState(ctx.host, ctx.stateDir)).toBeNull();
  });

  it('refuses a source that changed since it was planned', async () => {
    const root = newRoot();
    const { ctx } = context(root);
    const from = source('tool-v4');
    const p = install(ctx.host, from);
    writeFileSync(from, randomBytes(size));
    await expect(applyPlan(ctx, p)).rejects.toMatchObject({ code: 'WRITE_FAILED' });
    expect(existsSync(join(root, 'opt/x/bin/tool'))).toBe(false);
    expect(readState(ctx.host, ctx.stateDir)).toBeNull();
  });
});

describe('units the patcher installs', () => {
  const unit = '/etc/systemd/system/tool.service';

  function installPlan(): Plan {
    return plan({
      mode: 'image-service',
      changes: [small(unit, null, Buffer.from('[Service]\nExecStart=/opt/tool\n'))],
      reload: true,
      restart: ['tool.service'],
      installed: ['tool.service'],
      notes: [],
    });
  }

  it('a rollback stops them instead of restarting them', async () => {
    const root = newRoot();
    const { ctx, calls } = context(root, recorder(), async () => {
      throw new Error('kubelet did not turn healthy');
    });
    await expect(applyPlan(ctx, installPlan())).rejects.toMatchObject({ code: 'ROLLED_BACK' });
    expect(calls).toEqual(['reload', 'restart tool.service', 'reload', 'stop tool.service']);
    expect(existsSync(join(root, unit.slice(1)))).toBe(false);
  });

  it('revert restarts kubelet on its original files first, then stops them', async () => {
    const root = newRoot();
    writeFileSync(join(root, 'etc/kubelet.env'), 'A=1\n');
    const { ctx, calls } = context(root);
    await applyPlan(ctx, installPlan());
    await applyPlan(
      ctx,
      plan({
        mode: 'image-service',
        changes: [small('/etc/kubelet.env', Buffer.from('A=1\n'), Buffer.from('A=2\n'))],
        restart: ['kubelet.service'],
        notes: [],
      }),
    );
    expect(readState(ctx.host, ctx.stateDir)?.installed).toEqual(['tool.service']);
    calls.length = 0;
    const out = await revertState(ctx);
    expect(calls).toEqual(['reload', 'restart kubelet.service', 'stop tool.service']);
    expect(out.restarted).toEqual(['kubelet.service']);
    expect(readFileSync(join(root, 'etc/kubelet.env'), 'utf8')).toBe('A=1\n');
    expect(existsSync(join(root, unit.slice(1)))).toBe(false);
  });
});
