import { readFileSync } from 'node:fs';
import { posix } from 'node:path';
import type { KubeletLayout } from './detect.js';
import { PlanError } from './errors.js';
import type { HostRoot } from './host-root.js';
import type { FileChange, LargeContent } from './plan.js';

/**
 * What the image-service and credential-provider modes put on the host besides kubelet's own
 * files: the kubelet-image-service executable and its rules file.
 */

/** The executable's file name on the host (and the credential provider's name). */
export const EXECUTABLE_NAME = 'kubelet-image-service';

/** The rules file on the host; the service's `--config` and the plugin's `args` name it. */
export const RULES_PATH = '/etc/kubelet-image-service/rules.yaml';

/**
 * The persistent, exec-capable host directory the executable goes to when the node has no
 * credential-provider bin dir: on GKE `/home/kubernetes/bin` (COS mounts `/home` noexec and
 * `/` read-only, and its bootstrap remounts this one directory exec), elsewhere under `/opt`.
 */
export function installDirFor(layout: KubeletLayout): string {
  return layout.distribution === 'gke-cos' || layout.distribution === 'gke-ubuntu'
    ? '/home/kubernetes/bin'
    : '/opt/kubelet-image-service/bin';
}

/** The executable, copied in chunks, `0755`; the patcher owns it. */
export function executableChange(
  host: HostRoot,
  path: string,
  source: LargeContent,
  why: string,
): FileChange {
  const d = host.digest(path);
  return {
    path: canonical(host, path),
    before: d === null ? null : { sha256: d.sha256, size: d.size, localPath: d.localPath },
    after: source,
    mode: 0o755,
    why,
    owned: true,
  };
}

/**
 * The rules file, `0600` (it may hold static passwords), named in one line by `--dry-run`,
 * never printed; the patcher owns it.
 */
export function rulesChange(host: HostRoot, rules: Buffer): FileChange {
  return {
    path: RULES_PATH,
    before: host.readBytes(RULES_PATH)?.bytes ?? null,
    after: rules,
    mode: 0o600,
    why: 'the rules kubelet-image-service gets credentials by; not shown, it may hold passwords',
    owned: true,
    brief: true,
  };
}

/** A host path with its directory's symlinks resolved (the file itself need not exist). */
function canonical(host: HostRoot, path: string): string {
  const dir = host.resolve(posix.dirname(path));
  return dir === null ? path : posix.join(dir.hostPath, posix.basename(path));
}

/**
 * Refuses to install an executable into a host directory mounted `noexec` (COS's `/home` and
 * `/var`): kubelet or systemd could not run it, and kubelet would fail to start. The mount is
 * looked up in this process's mount table, where the host root's submounts appear with their
 * own options; a directory that does not exist yet is judged by its nearest existing parent.
 */
export function refuseNoexec(host: HostRoot, hostDir: string, mountinfo?: string): void {
  let dir = hostDir;
  let resolved = host.resolve(dir);
  while (resolved === null && dir !== '/') {
    dir = posix.dirname(dir);
    resolved = host.resolve(dir);
  }
  if (resolved === null) return;
  let table = mountinfo;
  if (table === undefined) {
    try {
      table = readFileSync('/proc/self/mountinfo', 'utf8');
    } catch {
      return; // no /proc: nothing to judge by
    }
  }
  const mount = mountOf(resolved.localPath, table);
  if (mount?.options.includes('noexec'))
    throw new PlanError(
      'UNSAFE_EDIT',
      `${hostDir} is on a noexec mount (${mount.point}): an executable there could not run; nothing was changed`,
    );
}

/** The mount (from `/proc/self/mountinfo` text) that holds a local path: the longest match. */
export function mountOf(
  localPath: string,
  mountinfo: string,
): { point: string; options: string[] } | null {
  let best: { point: string; options: string[] } | null = null;
  for (const line of mountinfo.split('\n')) {
    // id parent major:minor root mount-point mount-options [optional fields] - type source super
    const fields = line.split(' ');
    if (fields.length < 6) continue;
    const point = unescapeMount(fields[4] as string);
    const inside = point === '/' || localPath === point || localPath.startsWith(`${point}/`);
    if (!inside) continue;
    // Later lines mount over earlier ones at the same point.
    if (best === null || point.length >= best.point.length)
      best = { point, options: (fields[5] as string).split(',') };
  }
  return best;
}

/** Mount points escape space, tab, newline and backslash as `\ooo` octal. */
function unescapeMount(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) =>
    String.fromCharCode(Number.parseInt(oct, 8)),
  );
}
