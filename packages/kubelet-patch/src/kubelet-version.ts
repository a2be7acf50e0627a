import { execFile } from 'node:child_process';

/** The kubelet executable of the host, as found from the unit's ExecStart=. */
export interface KubeletBinary {
  /** Its canonical path on the host. */
  readonly hostPath: string;
  /** The same file under the host root, the path this process can run. */
  readonly localPath: string;
}

/**
 * Runs `<kubelet> --version` and resolves to its standard output; rejects when the binary
 * cannot run here (noexec mount, another architecture, a timeout). Injected into
 * `detectLayout` so tests answer for the binary.
 */
export type VersionRunner = (binary: KubeletBinary) => Promise<string>;

/** How long `kubelet --version` may take before it counts as not runnable. */
const VERSION_TIMEOUT_MS = 10_000;

/**
 * The default {@link VersionRunner}: runs the host's kubelet with `--version`, an empty
 * environment, a 10 s timeout and at most 64 KiB of output.
 */
export const runKubeletVersion: VersionRunner = (binary) =>
  new Promise((resolve, reject) => {
    execFile(
      binary.localPath,
      ['--version'],
      { env: {}, timeout: VERSION_TIMEOUT_MS, maxBuffer: 64 * 1024, encoding: 'utf8' },
      (err, stdout) => (err ? reject(err) : resolve(stdout)),
    );
  });

const VERSION_LINE = /^Kubernetes (v\d{1,4}\.\d{1,4}\.\d{1,6}(?:[-+][0-9A-Za-z.+-]{1,100})?)$/;

/**
 * Reads the version from `kubelet --version` output (`Kubernetes v1.31.5-gke.1068000`), or
 * null when the output is anything else.
 */
export function parseVersionOutput(stdout: string): string | null {
  return VERSION_LINE.exec(stdout.trim())?.[1] ?? null;
}

/**
 * Reads the installed version of the `kubelet` package from dpkg's status database
 * (`/var/lib/dpkg/status`, Debian and Ubuntu hosts that installed kubelet from a .deb, as
 * kubeadm's install guide does): `Version: 1.31.2-1.1` gives `v1.31.2`. Null when the package
 * is not installed or its version is not a plain x.y.z.
 */
export function versionFromDpkgStatus(text: string): string | null {
  for (const stanza of text.split(/\n[ \t]*\n/)) {
    const fields = new Map<string, string>();
    for (const line of stanza.split('\n')) {
      const m = /^([A-Za-z0-9-]+):[ \t]*(.*)$/.exec(line);
      if (m) fields.set((m[1] as string).toLowerCase(), (m[2] as string).trim());
    }
    if (fields.get('package') !== 'kubelet') continue;
    if (fields.get('status')?.split(/\s+/)[2] !== 'installed') continue;
    const upstream = /^(?:\d+:)?(\d+\.\d+\.\d+)(?:-[0-9A-Za-z.+~]+)?$/.exec(
      fields.get('version') ?? '',
    )?.[1];
    return upstream === undefined ? null : `v${upstream}`;
  }
  return null;
}
