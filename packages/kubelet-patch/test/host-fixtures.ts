import { cpSync } from 'node:fs';
import { join } from 'node:path';
import type { SystemdControl } from '../src/index.js';

/** Test helpers around the fixture host trees: copies, snapshots, a recording systemd. */

export const FIXTURES = join(import.meta.dirname, 'fixtures');
export const GOLDEN = join(import.meta.dirname, 'golden');

/** Every fixture layout the patcher changes (Bottlerocket is refused at detection). */
export const LAYOUTS = [
  'gke-cos',
  'gke-ubuntu',
  'eks-al2',
  'eks-al2023',
  'eks-al2023-config-dir',
  'aks',
  'aks-no-config-file',
  'kubeadm-deb',
  'kubeadm-rpm',
] as const;

let copies = 0;

/** A fresh copy of a fixture host tree under `scratch`; returns its root. */
export function copyOf(scratch: string, fixture: string): string {
  const root = join(scratch, `${fixture}-${copies++}`, 'host');
  cpSync(join(FIXTURES, fixture), root, { recursive: true, verbatimSymlinks: true });
  return root;
}

export { snapshot, withoutFailureRecord } from './snapshot.js';

/** A systemd seam that records what it is asked and can be told to fail. */
export function recorder(
  options: { unreachable?: boolean; failRestart?: (n: number) => boolean } = {},
): { connect: () => Promise<SystemdControl>; calls: string[] } {
  const calls: string[] = [];
  let restarts = 0;
  return {
    calls,
    connect: async () => {
      if (options.unreachable) throw new Error('connect ENOENT /run/dbus/system_bus_socket');
      return {
        reload: async () => {
          calls.push('reload');
        },
        restartUnit: async (name) => {
          calls.push(`restart ${name}`);
          return options.failRestart?.(++restarts) ? 'failed' : 'done';
        },
        waitActive: async () => {},
        stopUnit: async (name) => {
          calls.push(`stop ${name}`);
          return 'done';
        },
        close: () => {},
      };
    },
  };
}

/** The error a promise rejects with; fails the test when it resolves. */
export async function rejected<T extends Error>(p: Promise<unknown>): Promise<T> {
  return p.then(
    () => {
      throw new Error('expected a refusal');
    },
    (e: T) => e,
  );
}
