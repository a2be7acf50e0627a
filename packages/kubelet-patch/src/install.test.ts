import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PlanError } from './errors.js';
import { HostRoot } from './host-root.js';
import { mountOf, refuseNoexec } from './install.js';

const base = mkdtempSync(join(tmpdir(), 'kubelet-patch-install-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));

/** A mount table as a COS node's patcher pod sees it: the host's / at /host, /home noexec. */
function table(root: string): string {
  return [
    '22 1 0:21 / / rw,relatime - overlay overlay rw',
    `40 22 8:1 / ${root} ro,relatime - ext2 /dev/dm-0 ro`,
    `41 40 8:1 /home ${root}/home rw,nosuid,nodev,noexec,relatime - ext4 /dev/sda1 rw`,
    `42 41 8:1 /home/kubernetes/bin ${root}/home/kubernetes/bin rw,nosuid,nodev,relatime - ext4 /dev/sda1 rw`,
    `43 40 0:30 / ${root}/with\\040space rw,noexec - tmpfs tmpfs rw`,
  ].join('\n');
}

describe('mountOf', () => {
  it('picks the longest mount point holding the path, with its options', () => {
    const t = table('/host');
    expect(mountOf('/host/home/kubernetes/bin/x', t)?.options).not.toContain('noexec');
    expect(mountOf('/host/home/kubernetes/lib', t)?.options).toContain('noexec');
    expect(mountOf('/host/home', t)?.point).toBe('/host/home');
    expect(mountOf('/host/homework', t)?.point).toBe('/host');
    expect(mountOf('/elsewhere', t)?.point).toBe('/');
    expect(mountOf('/host/with space/x', t)?.options).toContain('noexec');
  });
});

describe('refuseNoexec', () => {
  it('refuses a directory on a noexec mount, judging a missing one by its parent', () => {
    const root = join(base, 'host');
    mkdirSync(join(root, 'home/kubernetes/bin'), { recursive: true });
    mkdirSync(join(root, 'opt'), { recursive: true });
    const host = new HostRoot(root);
    const t = table(host.root);
    expect(() => refuseNoexec(host, '/home/kubernetes/bin', t)).not.toThrow();
    expect(() => refuseNoexec(host, '/opt/kubelet-image-service/bin', t)).not.toThrow();
    let err: unknown;
    try {
      refuseNoexec(host, '/home/kubernetes/other/bin', t);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PlanError);
    expect((err as PlanError).message).toMatch(/noexec mount/);
  });
});
