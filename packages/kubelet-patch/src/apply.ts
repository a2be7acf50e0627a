import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { posix } from 'node:path';
import { type DetectOptions, detectLayout, type KubeletLayout } from './detect.js';
import { TransactionError } from './errors.js';
import { HostRoot, MAX_FILE_BYTES } from './host-root.js';
import { contentSha256, largeContentOf, type PatchMode, type Plan, renderDiff } from './plan.js';
import { planContainerdMirror } from './plan-containerd-mirror.js';
import { planCredentialProvider } from './plan-credential-provider.js';
import { endpointSocket, planImageService, STATE_DIR } from './plan-image-service.js';
import { planInstallService, type ServiceUnitPaths } from './plan-install-service.js';
import {
  applyPlan,
  originalBytes,
  readState,
  recoverInterrupted,
  revertState,
  type SystemdControl,
  type TransactionContext,
  type TransactionResult,
} from './transaction.js';

/** Options shared by `apply` and `revert`. */
export interface NodeOptions {
  /** Where the host's `/` is mounted. */
  readonly hostRoot: string;
  /** Host path of the state directory; default `/var/lib/node-patcher`. */
  readonly stateDir?: string;
  readonly connectSystemd: () => Promise<SystemdControl>;
  /** Resolves once kubelet is healthy (healthz `ok`); rejects with the reason at its timeout. */
  readonly waitHealthy: () => Promise<void>;
  /** Per restart job and per wait for `active`; default 120 s. */
  readonly restartTimeoutMs?: number;
  readonly log?: (line: string) => void;
  readonly detect?: DetectOptions;
}

/** Options of {@link applyToNode}. */
export interface ApplyOptions extends NodeOptions {
  readonly mode: PatchMode;
  /** image-service: `unix:///PATH` kubelet is pointed at. */
  readonly endpoint?: string;
  /** Print the diff, touch nothing. */
  readonly dryRun?: boolean;
  /**
   * image-service: resolves when the endpoint answers a CRI ImageService call, given the
   * socket's path as this process sees it (under the host root); rejects otherwise.
   */
  readonly checkEndpoint?: (socketPath: string) => Promise<void>;
  /** containerd-mirror: the proxy URL, the registries it serves, and `--set-config-path`. */
  readonly mirror?: string;
  readonly registries?: readonly string[];
  readonly setConfigPath?: boolean;
  /**
   * image-service `--install-service`: install this executable (a local path) with these rules
   * (a local path) as the host service serving `endpoint`, start it, and only then switch
   * kubelet. `unit` renders its unit file (`@org/cri-image-service`'s `hostServiceUnit`).
   */
  readonly installService?: {
    readonly executable: string;
    readonly rules: string;
    readonly unit: (paths: ServiceUnitPaths) => string;
  };
  /** `/proc/self/mountinfo` text, for tests; default: read it. */
  readonly mountinfo?: string;
  /** credential-provider: local path of the kubelet-image-service executable to install. */
  readonly executable?: string;
  /** Local path of the rules file installed at `RULES_PATH` (credential-provider). */
  readonly rules?: string;
  /**
   * credential-provider: kubelet's `providers[]` entry for the plugin, as
   * `credentialProviderConfig(rules).providers[0]` of @org/cri-image-service builds it.
   */
  readonly provider?: Readonly<Record<string, unknown>>;
}

/** What {@link applyToNode} did or, with `dryRun`, would do. */
export interface ApplyOutcome {
  readonly layout: KubeletLayout;
  /** With `installService`: the plan that installs and starts the service, run first. */
  readonly install: Plan | null;
  readonly plan: Plan;
  /** The unified diff of the plan's changes. */
  readonly diff: string;
  /** Null for a dry run. */
  readonly result: TransactionResult | null;
}

function context(options: NodeOptions, host: HostRoot): TransactionContext {
  return {
    host,
    stateDir: options.stateDir ?? STATE_DIR,
    connectSystemd: options.connectSystemd,
    waitHealthy: options.waitHealthy,
    restartTimeoutMs: options.restartTimeoutMs ?? 120_000,
    log: options.log ?? (() => {}),
  };
}

/**
 * `node-patcher apply`: detects the layout, finishes or rolls back an interrupted earlier run,
 * plans the mode's change from the files as they are, and runs it as a transaction
 * (see `applyPlan`). Throws a `KubeletPatchError` subclass when it refuses or rolls back.
 */
export async function applyToNode(options: ApplyOptions): Promise<ApplyOutcome> {
  const host = new HostRoot(options.hostRoot);
  const ctx = context(options, host);
  if (options.mode === 'image-service' && options.endpoint === undefined)
    throw new TypeError('--mode image-service needs --endpoint unix:///PATH');
  const state = readState(host, ctx.stateDir);
  if (state !== null && state.phase !== 'applied' && !options.dryRun) {
    await recoverInterrupted(ctx);
  }
  const layout = await detectLayout(options.hostRoot, options.detect);
  const settled = readState(host, ctx.stateDir);
  const usable = settled !== null && settled.phase === 'applied' ? settled : null;
  const originals = usable ? originalBytes(host, ctx.stateDir, usable) : new Map();
  const install =
    options.mode === 'image-service' && options.installService && options.endpoint
      ? planInstallService(layout, host, {
          executable: largeContentOf(options.installService.executable),
          rules: readLocal(options.installService.rules),
          endpoint: options.endpoint,
          unit: options.installService.unit,
          ...(options.mountinfo !== undefined ? { mountinfo: options.mountinfo } : {}),
        })
      : null;
  const plan = planFor(options, layout, host, originals, ctx.stateDir);
  const diff = (() => {
    const d = renderDiff([...(install?.changes ?? []), ...plan.changes]);
    return state !== null && state.phase !== 'applied'
      ? `# an earlier run was interrupted (${state.phase}): apply rolls it back first\n${d}`
      : d;
  })();
  if (options.dryRun) return { layout, install, plan, diff, result: null };
  const fingerprint = fingerprintOf([install, plan]);
  refuseFailedBefore(host, ctx.stateDir, fingerprint);
  let installed: TransactionResult | null = null;
  if (install !== null && install.changes.length > 0) {
    for (const note of install.notes) ctx.log(note);
    installed = await remembered(ctx, fingerprint, () => applyPlan(ctx, install));
  }
  if (plan.changes.length > 0 && options.mode === 'image-service' && options.endpoint) {
    try {
      await checkEndpoint(host, options.endpoint, options.checkEndpoint);
    } catch (err) {
      // The service this run installed is active but does not answer: take it away again.
      if (installed !== null) {
        ctx.log('the installed service does not answer: removing it again');
        await revertState(ctx);
      }
      throw err;
    }
  }
  for (const note of plan.notes) ctx.log(note);
  const result = await remembered(ctx, fingerprint, () => applyPlan(ctx, plan));
  forgetFailure(host, ctx.stateDir);
  return {
    layout,
    install,
    plan,
    diff,
    result: {
      changed: [...(installed?.changed ?? []), ...result.changed],
      restarted: [...(installed?.restarted ?? []), ...result.restarted],
      notes: result.notes,
    },
  };
}

/** image-service: the endpoint's socket exists on the host and answers a CRI call. */
async function checkEndpoint(
  host: HostRoot,
  endpoint: string,
  check: ((socketPath: string) => Promise<void>) | undefined,
): Promise<void> {
  const socket = endpointSocket(endpoint);
  const local = host.resolve(socket);
  if (local === null)
    throw new TransactionError(
      'ENDPOINT_DOWN',
      `${socket} does not exist on the host: start the image service first (or pass --install-service); nothing was changed`,
    );
  if (!check) return;
  try {
    await check(local.localPath);
  } catch (err) {
    throw new TransactionError(
      'ENDPOINT_DOWN',
      `${endpoint} does not answer a CRI ImageService call (${(err as Error).message}); nothing was changed`,
      { cause: err },
    );
  }
}

/**
 * The failure record, `<stateDir>/failed.json`: the fingerprint of a change that was rolled
 * back (kubelet did not come back on it) and why. The DaemonSet's init step runs apply again
 * and again after a failure; without this record every retry would restart kubelet twice more.
 * The same change is refused until `revert` clears the record; a different change (new
 * endpoint, new executable, the node's files changed) is tried.
 */
function failurePath(stateDir: string): string {
  return posix.join(stateDir, 'failed.json');
}

function fingerprintOf(plans: readonly (Plan | null)[]): string {
  const hash = createHash('sha256');
  for (const p of plans) {
    if (p === null) continue;
    hash.update(`${p.mode}\n`);
    for (const c of p.changes)
      hash.update(`${c.path} ${c.after === null ? '-' : contentSha256(c.after)}\n`);
  }
  return hash.digest('hex');
}

function refuseFailedBefore(host: HostRoot, stateDir: string, fingerprint: string): void {
  const file = host.readText(failurePath(stateDir));
  if (file === null) return;
  let record: { fingerprint?: unknown; reason?: unknown; at?: unknown };
  try {
    record = JSON.parse(file.text);
  } catch {
    return; // not ours to trust: try again, and a failure writes a good one
  }
  if (record?.fingerprint !== fingerprint) return;
  throw new TransactionError(
    'FAILED_BEFORE',
    `this same change was rolled back at ${String(record.at).slice(0, 40)} (${String(record.reason).slice(0, 300)}); it is not tried again until the cause is fixed and node-patcher revert clears ${failurePath(stateDir)}; nothing was changed`,
  );
}

async function remembered(
  ctx: TransactionContext,
  fingerprint: string,
  run: () => Promise<TransactionResult>,
): Promise<TransactionResult> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof TransactionError && err.code === 'ROLLED_BACK')
      ctx.host.writeAtomic(
        failurePath(ctx.stateDir),
        Buffer.from(
          `${JSON.stringify({ fingerprint, reason: err.message, at: new Date().toISOString() }, null, 2)}\n`,
        ),
        { mode: 0o600 },
      );
    throw err;
  }
}

function forgetFailure(host: HostRoot, stateDir: string): void {
  if (!host.exists(failurePath(stateDir))) return;
  host.remove(failurePath(stateDir));
  // the record was all that kept the state directory after a rollback: the node is as it was
  host.removeEmptyDir(stateDir);
}

/** A local file given on the command line (the rules), at most 1 MiB. */
function readLocal(path: string): Buffer {
  const bytes = readFileSync(path);
  if (bytes.length > MAX_FILE_BYTES)
    throw new TypeError(`${path} is over ${MAX_FILE_BYTES} bytes; refused`);
  return bytes;
}

function planFor(
  options: ApplyOptions,
  layout: KubeletLayout,
  host: HostRoot,
  originals: ReadonlyMap<string, Buffer | null>,
  stateDir: string,
): Plan {
  switch (options.mode) {
    case 'image-service':
      return planImageService(layout, host, {
        endpoint: options.endpoint as string,
        stateDir,
        originals,
      });
    case 'containerd-mirror':
      if (options.mirror === undefined || options.registries === undefined)
        throw new TypeError('--mode containerd-mirror needs --mirror URL and --registries LIST');
      return planContainerdMirror(layout, host, {
        mirror: options.mirror,
        registries: options.registries,
        setConfigPath: options.setConfigPath ?? false,
      });
    case 'credential-provider':
      if (
        options.executable === undefined ||
        options.rules === undefined ||
        options.provider === undefined
      )
        throw new TypeError(
          '--mode credential-provider needs --plugin FILE, --rules FILE and the provider entry',
        );
      return planCredentialProvider(layout, host, {
        executable: largeContentOf(options.executable),
        rules: readLocal(options.rules),
        provider: options.provider,
        originals,
        ...(options.mountinfo !== undefined ? { mountinfo: options.mountinfo } : {}),
      });
    default:
      throw new TypeError(`--mode ${options.mode} is not built yet`);
  }
}

/** `node-patcher revert`: see `revertState`. */
export async function revertNode(options: NodeOptions): Promise<TransactionResult> {
  const host = new HostRoot(options.hostRoot);
  const ctx = context(options, host);
  const result = await revertState(ctx);
  forgetFailure(host, ctx.stateDir);
  return result;
}
