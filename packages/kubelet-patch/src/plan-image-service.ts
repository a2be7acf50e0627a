import { posix } from 'node:path';
import type { ArgsVariableName, KubeletLayout } from './detect.js';
import {
  EditError,
  environmentLine,
  MARKER,
  setConfigFields,
  setEnvAssignment,
  splitValue,
  withFlags,
  withoutOurLines,
} from './edit.js';
import { parseEnvFile } from './env-file.js';
import { PlanError } from './errors.js';
import type { HostRoot } from './host-root.js';
import { type Content, type FileChange, isLarge, type Plan, plan } from './plan.js';
import { parseEnvironmentAssignments, parseUnitFile } from './systemd-unit.js';

/** Where the patcher keeps its state record, original bytes and guard copies on the host. */
export const STATE_DIR = '/var/lib/node-patcher';

/** The kubelet drop-in config file the patcher writes where `--config-dir` is enabled. */
export const CONFIG_DROP_IN = '99-kubelet-image-service.conf';

/** The kubelet unit drop-in that carries a flag variable when no env file defines it. */
export const UNIT_DROP_IN = '/etc/systemd/system/kubelet.service.d/90-node-patcher.conf';

/** The kubelet unit drop-in with the guard (ExecStartPre) that falls back to the runtime. */
export const GUARD_DROP_IN =
  '/etc/systemd/system/kubelet.service.d/99-kubelet-image-service-guard.conf';

/**
 * Flag variables in the order the patcher prefers to add a flag to: the ones an operator owns
 * first, the ones a bootstrap tool regenerates (kubeadm's flags file) last.
 */
const PREFERRED: readonly ArgsVariableName[] = [
  'KUBELET_EXTRA_ARGS',
  'KUBELET_OPTS',
  'KUBELET_FLAGS',
  'NODEADM_KUBELET_ARGS',
  'KUBELET_ARGS',
  'KUBELET_KUBEADM_ARGS',
];

/** Characters allowed in a path the patcher writes into kubelet's configuration. */
const SAFE_PATH = /^\/[A-Za-z0-9._/-]*$/;

/**
 * Checks an image-service endpoint: `unix://` and an absolute, normalised path of plain
 * characters (it is written into config files, flags and a shell line). Returns the socket's
 * host path.
 */
export function endpointSocket(endpoint: string): string {
  if (!endpoint.startsWith('unix://'))
    throw new PlanError('BAD_OPTION', `--endpoint must be unix:///PATH, got ${show(endpoint)}`);
  const path = endpoint.slice('unix://'.length);
  if (!SAFE_PATH.test(path) || posix.normalize(path) !== path || path.length > 100)
    throw new PlanError(
      'BAD_OPTION',
      `--endpoint ${show(endpoint)}: the socket must be an absolute, normalised path of letters, digits and ._/- (at most 100 characters)`,
    );
  return path;
}

function show(s: string): string {
  return JSON.stringify(s.length > 120 ? `${s.slice(0, 120)}…` : s);
}

/** kubelet's minor version (`v1.31.5-gke.1` → 31), or null when unknown or not 1.x. */
export function kubeletMinor(version: string | null): number | null {
  const m = version === null ? null : /^v?1\.(\d+)\./.exec(version);
  return m ? Number(m[1]) : null;
}

/**
 * Plans `apply --mode image-service`: points kubelet's image service at `endpoint` by the least
 * invasive route the layout allows (issue 6/7):
 *
 * 1. `--image-service-endpoint` already on the command line: that flag, where it is defined
 *    (a config file setting would lose to it);
 * 2. `--config-dir` enabled (kubelet >= 1.28): a drop-in config file of our own;
 * 3. a config file (kubelet >= 1.27): `imageServiceEndpoint` in it;
 * 4. else the flag, added to the flag variable of an env file (restart only) or, when no env
 *    file defines one, to a unit drop-in of our own (daemon-reload, then restart).
 *
 * Also writes the guard: a kubelet drop-in whose `ExecStartPre=` puts the original file back
 * when the image service's socket is absent at kubelet's start, so kubelet starts against the
 * node's runtime instead of failing (not possible for route 4's unit drop-in, which only a
 * daemon-reload can change: the plan's notes say so).
 *
 * Throws `PlanError` for a config file that does not parse or an edit that cannot be made
 * safely; nothing has been written then.
 */
export function planImageService(
  layout: KubeletLayout,
  host: HostRoot,
  options: {
    endpoint: string;
    stateDir?: string;
    /** The bytes before the patcher's last apply, from its state record, by host path. */
    originals?: ReadonlyMap<string, Buffer | null>;
  },
): Plan {
  const socket = endpointSocket(options.endpoint);
  const stateDir = options.stateDir ?? STATE_DIR;
  const endpoint = options.endpoint;
  const notes: string[] = [];
  refuseBrokenConfig(layout);
  const minor = kubeletMinor(layout.kubelet.version);
  const changes: FileChange[] = [];
  let guarded: FileChange | null = null;
  let reload = false;

  if (layout.kubelet.flags.imageServiceEndpoint !== null) {
    notes.push('--image-service-endpoint is already on the command line: changing it there');
    const r = flagRoute(layout, host, { 'image-service-endpoint': endpoint });
    changes.push(r.change);
    reload = r.reload;
    guarded = r.reload ? null : r.change;
  } else if (layout.configDir !== null && minor !== null && minor >= 28) {
    const path = posix.join(layout.configDir.path, CONFIG_DROP_IN);
    const later = layout.configDir.files.filter(
      (f) => posix.basename(f.path) > CONFIG_DROP_IN && f.imageServiceEndpoint !== null,
    );
    if (later.length > 0)
      throw new PlanError(
        'UNSAFE_EDIT',
        `${later[0]?.path} sets imageServiceEndpoint after ${path} would; change or remove it first`,
      );
    notes.push(`kubelet ${layout.kubelet.version} reads --config-dir: adding the drop-in ${path}`);
    const change: FileChange = {
      path,
      before: read(host, path),
      after: Buffer.from(
        `# Written by node-patcher (docker-registry-proxy): kubelet pulls through the image service.\n# \`node-patcher revert\` removes this file.\napiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nimageServiceEndpoint: ${JSON.stringify(endpoint)}\n`,
      ),
      mode: 0o644,
      why: 'kubelet drop-in config setting imageServiceEndpoint',
      owned: true,
    };
    changes.push(change);
    guarded = change;
  } else if (layout.config?.exists && minor !== null && minor >= 27) {
    const file = host.readBytes(layout.config.path);
    if (file === null) throw new PlanError('UNSAFE_EDIT', `${layout.config.path} vanished`);
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(file.bytes);
      text = setConfigFields(text, layout.config.format ?? 'yaml', {
        imageServiceEndpoint: endpoint,
      });
    } catch (err) {
      throw editRefused(layout.config.path, err);
    }
    notes.push(
      `kubelet ${layout.kubelet.version} has no --config-dir: setting imageServiceEndpoint in ${file.hostPath}`,
    );
    const change: FileChange = {
      path: file.hostPath,
      before: file.bytes,
      after: Buffer.from(text),
      mode: file.mode,
      why: 'imageServiceEndpoint in the kubelet config file',
    };
    changes.push(change);
    guarded = change;
  } else {
    notes.push(
      minor === null
        ? 'kubelet version unknown: using the --image-service-endpoint flag, which every version reads'
        : layout.config === null || !layout.config.exists
          ? 'kubelet has no config file: using the --image-service-endpoint flag'
          : `kubelet ${layout.kubelet.version} predates imageServiceEndpoint in the config file (1.27): using the flag`,
    );
    const r = flagRoute(layout, host, { 'image-service-endpoint': endpoint });
    changes.push(r.change);
    reload = r.reload;
    guarded = r.reload ? null : r.change;
  }

  if (guarded === null) {
    notes.push(
      'no guard: the flag lives in a unit drop-in, which kubelet cannot switch back at start without a daemon-reload',
    );
  } else {
    const original = options.originals?.has(guarded.path)
      ? (options.originals.get(guarded.path) ?? null)
      : guarded.before;
    const guard = guardChanges(host, guarded, original, socket, stateDir);
    changes.push(...guard);
    reload = true;
    notes.push(
      `guard ${GUARD_DROP_IN}: when ${socket} is absent at kubelet's start, ${guarded.path} is put back as it was and kubelet uses its own runtime`,
    );
  }
  return plan({ mode: 'image-service', changes, reload, restart: ['kubelet.service'], notes });
}

/** Refuses a node whose kubelet config files do not parse: nothing is planned on guesses. */
export function refuseBrokenConfig(layout: KubeletLayout): void {
  const broken = [layout.config, ...(layout.configDir?.files ?? [])].find(
    (f) => f?.exists === true && !f.parses,
  );
  if (broken)
    throw new PlanError(
      'CONFIG_INVALID',
      `${broken.path} is not a valid KubeletConfiguration (${broken.error ?? 'does not parse'}); fix it first, nothing was changed`,
    );
}

function editRefused(path: string, err: unknown): PlanError {
  if (err instanceof EditError || err instanceof TypeError)
    return new PlanError('UNSAFE_EDIT', `${path}: ${err.message}; nothing was changed`);
  throw err;
}

function read(host: HostRoot, path: string): Buffer | null {
  return host.readBytes(path)?.bytes ?? null;
}

/**
 * Sets flags in kubelet's flag variable: in the env file that defines it (a restart is enough),
 * else in a unit drop-in of our own (needs daemon-reload).
 */
export function flagRoute(
  layout: KubeletLayout,
  host: HostRoot,
  flags: Readonly<Record<string, string>>,
): { change: FileChange; reload: boolean } {
  const variables = layout.unit.argsVariables;
  if (variables.length === 0)
    throw new PlanError(
      'UNSAFE_EDIT',
      `kubelet's ExecStart= (${layout.unit.execStartIn}) uses none of the flag variables the patcher knows; nothing was changed`,
    );
  const envFiles = new Set(layout.unit.environmentFiles.map((f) => f.path));
  // A variable that already carries one of the flags must be the one changed.
  const carrying = variables.find((v) =>
    variableHas(layout, host, v.name, v.definedIn, Object.keys(flags)),
  );
  const chosen =
    carrying ??
    [...variables].sort((a, b) => PREFERRED.indexOf(a.name) - PREFERRED.indexOf(b.name))[0];
  if (chosen === undefined) throw new Error('unreachable: no variables');
  if (chosen.definedIn !== null && envFiles.has(chosen.definedIn)) {
    const file = host.readBytes(chosen.definedIn);
    if (file === null) throw new PlanError('UNSAFE_EDIT', `${chosen.definedIn} vanished`);
    const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(file.bytes);
    const base = parseEnvFile(withoutOurLines(text));
    const value = base.assignments.filter(([n]) => n === chosen.name).at(-1)?.[1] ?? '';
    let after: string;
    try {
      after = setEnvAssignment(text, chosen.name, withFlags(splitValue(value), flags).join(' '));
    } catch (err) {
      throw editRefused(file.hostPath, err);
    }
    return {
      change: {
        path: file.hostPath,
        before: file.bytes,
        after: Buffer.from(after),
        mode: file.mode,
        why: `${chosen.name} in the env file kubelet's unit reads`,
      },
      reload: false,
    };
  }
  // Defined in the unit or a drop-in (or nowhere): our drop-in, after the others, wins.
  const files = [layout.unit.path, ...layout.unit.dropIns].filter((f) => f !== UNIT_DROP_IN);
  const value = chosen.definedIn !== null ? unitValue(host, files, chosen.name) : '';
  let line: string;
  try {
    line = environmentLine(chosen.name, withFlags(splitValue(value), flags).join(' '));
  } catch (err) {
    throw editRefused(UNIT_DROP_IN, err);
  }
  return {
    change: {
      path: UNIT_DROP_IN,
      before: read(host, UNIT_DROP_IN),
      after: Buffer.from(`${MARKER}\n[Service]\n${line}\n`),
      mode: 0o644,
      why: `${chosen.name} for kubelet.service, in a drop-in after the one defining it`,
      owned: true,
    },
    reload: true,
  };
}

function variableHas(
  layout: KubeletLayout,
  host: HostRoot,
  name: string,
  definedIn: string | null,
  flags: readonly string[],
): boolean {
  if (definedIn === null) return false;
  const envFiles = new Set(layout.unit.environmentFiles.map((f) => f.path));
  let value = '';
  if (envFiles.has(definedIn)) {
    const text = host.readText(definedIn)?.text ?? '';
    value =
      parseEnvFile(text)
        .assignments.filter(([n]) => n === name)
        .at(-1)?.[1] ?? '';
  } else value = unitValue(host, [layout.unit.path, ...layout.unit.dropIns], name);
  return splitValue(value).some((w) =>
    flags.some((f) => w === `--${f}` || w.startsWith(`--${f}=`)),
  );
}

/** The value `Environment=` lines of these unit files give a variable (the last one wins). */
function unitValue(host: HostRoot, files: readonly string[], name: string): string {
  let value = '';
  for (const path of files) {
    const text = host.readText(path)?.text;
    if (text === undefined) continue;
    for (const a of parseUnitFile(text)) {
      if (a.section !== 'Service' || a.key !== 'Environment') continue;
      for (const [n, v] of parseEnvironmentAssignments(a.value).assignments)
        if (n === name) value = v;
    }
  }
  return value;
}

/** Host path of the guard's copy of a file, in the state directory. */
export function guardCopy(stateDir: string, path: string, which: 'on' | 'off'): string {
  return posix.join(stateDir, 'guard', `${path.slice(1).replaceAll('/', '_')}.${which}`);
}

/**
 * The guard: a kubelet drop-in whose ExecStartPre= (a failure of which systemd ignores: `-`)
 * checks for the image service's socket and, when it is absent and the file still holds what
 * the patcher wrote, puts the original back (or removes a file the patcher added), so this
 * start of kubelet uses the node's own runtime. It never touches a file someone else changed
 * since. The copies it uses live in the state directory.
 */
function guardChanges(
  host: HostRoot,
  change: FileChange,
  original: Content | null,
  socket: string,
  stateDir: string,
): FileChange[] {
  if (isLarge(original) || isLarge(change.after))
    throw new Error('unreachable: the guarded file is a small config file');
  for (const p of [change.path, stateDir])
    if (!SAFE_PATH.test(p))
      throw new PlanError('UNSAFE_EDIT', `cannot guard ${show(p)}: unusual characters in the path`);
  const on = guardCopy(stateDir, change.path, 'on');
  const off = guardCopy(stateDir, change.path, 'off');
  const restore =
    original === null
      ? `rm -f ${change.path}`
      : `cp -p ${off} ${change.path}.np-tmp && mv -f ${change.path}.np-tmp ${change.path}`;
  // `$$` is a literal `$` in a unit file's command line.
  const script = `if [ ! -S ${socket} ] && [ -f ${on} ] && [ "$$(cat ${change.path} 2>/dev/null)" = "$$(cat ${on})" ]; then ${restore}; fi`;
  const dropIn = `${MARKER}\n# When the image service's socket is missing at kubelet's start, kubelet starts against the\n# node's own runtime: the file below is put back as it was before node-patcher changed it.\n[Service]\nExecStartPre=-/bin/sh -c '${script}'\n`;
  const out: FileChange[] = [
    {
      path: GUARD_DROP_IN,
      before: read(host, GUARD_DROP_IN),
      after: Buffer.from(dropIn),
      mode: 0o644,
      why: 'guard: kubelet falls back to its runtime when the image service socket is absent',
      owned: true,
    },
    {
      path: on,
      before: read(host, on),
      after: change.after,
      mode: 0o600,
      why: 'guard: the patched file, to recognise it',
      owned: true,
      brief: true,
    },
  ];
  if (original !== null)
    out.push({
      path: off,
      before: read(host, off),
      after: original,
      mode: change.mode,
      why: 'guard: the original file, to put back',
      owned: true,
      brief: true,
    });
  return out;
}
