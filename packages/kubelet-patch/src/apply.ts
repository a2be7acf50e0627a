import { readFileSync } from 'node:fs';
import { type DetectOptions, detectLayout, type KubeletLayout } from './detect.js';
import { TransactionError } from './errors.js';
import { HostRoot } from './host-root.js';
import { largeContentOf, type PatchMode, type Plan, renderDiff } from './plan.js';
import { planContainerdMirror } from './plan-containerd-mirror.js';
import { planCredentialProvider } from './plan-credential-provider.js';
import { endpointSocket, planImageService, STATE_DIR } from './plan-image-service.js';
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
  const plan = planFor(options, layout, host, originals, ctx.stateDir);
  const diff = (() => {
    const d = renderDiff(plan.changes);
    return state !== null && state.phase !== 'applied'
      ? `# an earlier run was interrupted (${state.phase}): apply rolls it back first\n${d}`
      : d;
  })();
  if (options.dryRun) return { layout, plan, diff, result: null };
  if (plan.changes.length > 0 && options.mode === 'image-service' && options.endpoint) {
    const socket = endpointSocket(options.endpoint);
    const local = host.resolve(socket);
    const check = options.checkEndpoint;
    if (local === null)
      throw new TransactionError(
        'ENDPOINT_DOWN',
        `${socket} does not exist on the host: start the image service first (or pass --install-service); nothing was changed`,
      );
    if (check) {
      try {
        await check(local.localPath);
      } catch (err) {
        throw new TransactionError(
          'ENDPOINT_DOWN',
          `${options.endpoint} does not answer a CRI ImageService call (${(err as Error).message}); nothing was changed`,
          { cause: err },
        );
      }
    }
  }
  for (const note of plan.notes) ctx.log(note);
  const result = await applyPlan(ctx, plan);
  return { layout, plan, diff, result };
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
        rules: readFileSync(options.rules),
        provider: options.provider,
        originals,
      });
    default:
      throw new TypeError(`--mode ${options.mode} is not built yet`);
  }
}

/** `node-patcher revert`: see `revertState`. */
export async function revertNode(options: NodeOptions): Promise<TransactionResult> {
  const host = new HostRoot(options.hostRoot);
  return revertState(context(options, host));
}
