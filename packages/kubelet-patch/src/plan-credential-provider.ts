import { posix } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { KubeletLayout } from './detect.js';
import { EditError } from './edit.js';
import { PlanError, quote } from './errors.js';
import type { HostRoot } from './host-root.js';
import {
  EXECUTABLE_NAME,
  executableChange,
  installDirFor,
  refuseNoexec,
  rulesChange,
} from './install.js';
import { type FileChange, type LargeContent, type Plan, plan } from './plan.js';
import { flagRoute, refuseBrokenConfig } from './plan-image-service.js';
import {
  mayOverlap,
  type ProviderConfig,
  ProviderConfigError,
  parseProviderConfig,
  providerConfigYaml,
  withProvider,
} from './provider-config.js';

/**
 * The `CredentialProviderConfig` the patcher writes when kubelet has none: under /etc, where a
 * kubeadm node keeps its own kubelet files.
 */
export const CREDENTIAL_PROVIDER_CONFIG =
  '/etc/kubernetes/kubelet-image-service/credential-provider-config.yaml';

/**
 * The file the patcher adds when `--image-credential-provider-config` names a directory
 * (kubelet merges its `*.json`, `*.yaml`, `*.yml` files in name order): last, after the node's.
 */
export const CREDENTIAL_PROVIDER_DROP_IN = '99-kubelet-image-service.yaml';

/** Options of {@link planCredentialProvider}. */
export interface CredentialProviderOptions {
  /** The kubelet-image-service executable to install in kubelet's plugin directory. */
  readonly executable: LargeContent;
  /** The rules file's bytes, installed at `RULES_PATH`. */
  readonly rules: Buffer;
  /**
   * The `providers[]` entry for kubelet (what `credentialProviderConfig(rules)` of
   * @org/cri-image-service builds); its `name` must be `EXECUTABLE_NAME`.
   */
  readonly provider: Readonly<Record<string, unknown>>;
  /** The bytes before the patcher's last apply, from its state record, by host path. */
  readonly originals?: ReadonlyMap<string, Buffer | null>;
  /** `/proc/self/mountinfo` text to judge a noexec mount by; default: read it. */
  readonly mountinfo?: string;
}

/** `kubelet.config.k8s.io/v1`: the one config version that knows `tokenAttributes`. */
const CONFIG_V1 = 'kubelet.config.k8s.io/v1';

const HEADER =
  '# Written by node-patcher (docker-registry-proxy): kubelet asks kubelet-image-service for\n# pull credentials. `node-patcher revert` removes this file.\n';

/**
 * Plans `apply --mode credential-provider`: kubelet runs kubelet-image-service as an exec
 * credential-provider plugin (KEP-2133, reference sheet §3). The executable goes to kubelet's
 * `--image-credential-provider-bin-dir` (kubelet runs plugins from that one directory) or, when
 * kubelet has none, to `installDirFor(layout)`; the rules to `RULES_PATH`; and the provider
 * entry to kubelet's config:
 *
 * 1. `--image-credential-provider-config` names a file (GKE, EKS, AKS): the entry is appended
 *    to its `providers` (replaced on a re-apply), everything else in the file kept;
 * 2. it names a directory (recent kubelets merge its files): a file of our own in it,
 *    {@link CREDENTIAL_PROVIDER_DROP_IN};
 * 3. neither flag (kubeadm): a config of our own, {@link CREDENTIAL_PROVIDER_CONFIG}, and both
 *    flags added to kubelet's flag variable (env file, or a unit drop-in: daemon-reload).
 *
 * There is no guard drop-in: kubelet refuses to start when a configured plugin is missing, so
 * the executable goes to a persistent directory and the transaction rolls back when kubelet
 * does not come back healthy.
 *
 * Throws `PlanError`: `BAD_OPTION` for a provider entry not named `EXECUTABLE_NAME`,
 * `CONFIG_INVALID` for a config that does not parse or is not a `CredentialProviderConfig`,
 * `NOT_OURS` for a provider of our name the patcher did not add, `UNSAFE_EDIT` for one flag
 * without the other, a noexec plugin directory or an edit that would not read back. Nothing
 * has been written then.
 *
 * @example
 * const p = planCredentialProvider(layout, new HostRoot('/host'), {
 *   executable: largeContentOf('/opt/kubelet-image-service'),
 *   rules: readFileSync('/config/rules.yaml'),
 *   provider: credentialProviderConfig(rules).providers[0],
 * });
 * p.notes; // the route taken and why
 */
export function planCredentialProvider(
  layout: KubeletLayout,
  host: HostRoot,
  options: CredentialProviderOptions,
): Plan {
  const provider = checkProvider(options.provider);
  refuseBrokenConfig(layout);
  const { imageCredentialProviderConfig: configFlag, imageCredentialProviderBinDir: binDirFlag } =
    layout.kubelet.flags;
  if ((configFlag === null) !== (binDirFlag === null))
    throw new PlanError(
      'UNSAFE_EDIT',
      configFlag === null
        ? `kubelet has --image-credential-provider-bin-dir=${quote(binDirFlag ?? '')} but no --image-credential-provider-config; kubelet needs both to run plugins, so set or remove the other first; nothing was changed`
        : `kubelet has --image-credential-provider-config=${quote(configFlag)} but no --image-credential-provider-bin-dir; kubelet needs both to run plugins, so set or remove the other first; nothing was changed`,
    );
  for (const [flag, value] of [
    ['image-credential-provider-config', configFlag],
    ['image-credential-provider-bin-dir', binDirFlag],
  ] as const)
    if (value !== null && (!value.startsWith('/') || posix.normalize(value) !== value))
      throw new PlanError(
        'UNSAFE_EDIT',
        `--${flag}=${quote(value)} is not an absolute, normalised path; nothing was changed`,
      );

  const notes: string[] = [];
  const binDir = binDirFlag ?? installDirFor(layout);
  refuseNoexec(host, binDir, options.mountinfo);
  notes.push(
    binDirFlag === null
      ? `kubelet has no plugin directory: installing ${EXECUTABLE_NAME} in ${binDir}, a persistent directory that allows executables`
      : `kubelet runs plugins from its --image-credential-provider-bin-dir ${binDir} only: installing ${EXECUTABLE_NAME} there`,
  );
  const changes: FileChange[] = [
    executableChange(
      host,
      posix.join(binDir, EXECUTABLE_NAME),
      options.executable,
      'the credential-provider plugin kubelet runs',
    ),
    rulesChange(host, options.rules),
  ];
  let reload = false;

  const resolved = configFlag === null ? null : host.resolve(configFlag);
  if (configFlag === null || configFlag === CREDENTIAL_PROVIDER_CONFIG) {
    // Our own config: on a node we patched before, the flags already name it.
    notes.push(
      configFlag === null
        ? `kubelet has no credential-provider config: writing ${CREDENTIAL_PROVIDER_CONFIG} and adding --image-credential-provider-config and --image-credential-provider-bin-dir`
        : `kubelet reads the credential-provider config node-patcher wrote, ${CREDENTIAL_PROVIDER_CONFIG}`,
    );
    changes.push(
      ownConfig(host, CREDENTIAL_PROVIDER_CONFIG, provider, 'credential-provider config'),
    );
    const r = flagRoute(layout, host, {
      'image-credential-provider-config': CREDENTIAL_PROVIDER_CONFIG,
      'image-credential-provider-bin-dir': binDir,
    });
    changes.push(r.change);
    reload = r.reload;
    notes.push(`the two flags go to ${r.change.path} (${r.change.why})`);
  } else if (resolved !== null && host.list(resolved.hostPath) !== null) {
    const path = posix.join(resolved.hostPath, CREDENTIAL_PROVIDER_DROP_IN);
    notes.push(
      `--image-credential-provider-config ${configFlag} is a directory kubelet merges in name order: adding ${path}`,
    );
    for (const other of otherDropIns(host, resolved.hostPath)) {
      if (other.config.providers.some((p) => p.name === EXECUTABLE_NAME))
        throw new PlanError(
          'NOT_OURS',
          `${other.path} already declares a provider named ${EXECUTABLE_NAME}, which node-patcher did not write (kubelet refuses a name twice); it is left alone and nothing was changed`,
        );
      notes.push(...overlapNotes(other.config.providers, provider));
    }
    changes.push(ownConfig(host, path, provider, 'drop-in credential-provider config'));
  } else {
    changes.push(providerEntry(host, configFlag, provider, options.originals, notes));
  }
  notes.push(
    'no guard drop-in: kubelet does not start when a configured plugin is missing from its directory, so the executable goes to a persistent directory and the change is rolled back when kubelet does not come back healthy',
  );
  return plan({
    mode: 'credential-provider',
    changes,
    reload,
    restart: ['kubelet.service'],
    notes,
  });
}

/** Checks the provider entry the caller built; the name is the executable's. */
function checkProvider(provider: unknown): Readonly<Record<string, unknown>> {
  if (provider === null || typeof provider !== 'object' || Array.isArray(provider))
    throw new PlanError(
      'BAD_OPTION',
      'provider must be one CredentialProviderConfig providers[] entry',
    );
  const p = provider as Record<string, unknown>;
  if (p.name !== EXECUTABLE_NAME)
    throw new PlanError(
      'BAD_OPTION',
      `provider.name must be ${JSON.stringify(EXECUTABLE_NAME)} (the executable's name in the plugin directory), got ${quote(String(p.name))}`,
    );
  const images = p.matchImages;
  if (
    !Array.isArray(images) ||
    images.length === 0 ||
    !images.every((m) => typeof m === 'string' && m !== '')
  )
    throw new PlanError('BAD_OPTION', 'provider.matchImages must list at least one image glob');
  let copy: unknown;
  try {
    copy = JSON.parse(JSON.stringify(p));
  } catch {
    copy = undefined;
  }
  // Written to YAML or JSON: anything JSON would drop or change (undefined, a Date) is refused.
  if (!isDeepStrictEqual(p, copy))
    throw new PlanError(
      'BAD_OPTION',
      'provider must be plain data (strings, numbers, lists, maps)',
    );
  return copy as Record<string, unknown>;
}

/** A whole config file of our own holding only our provider. */
function ownConfig(
  host: HostRoot,
  path: string,
  provider: Readonly<Record<string, unknown>>,
  what: string,
): FileChange {
  return {
    path,
    before: host.readBytes(path)?.bytes ?? null,
    after: Buffer.from(providerConfigYaml(HEADER, [provider])),
    mode: 0o644,
    why: `${what} with the ${EXECUTABLE_NAME} provider`,
    owned: true,
  };
}

/** The config files of a directory kubelet merges, other than ours, parsed. */
function otherDropIns(host: HostRoot, dir: string): { path: string; config: ProviderConfig }[] {
  const out: { path: string; config: ProviderConfig }[] = [];
  for (const name of host.list(dir) ?? []) {
    if (name === CREDENTIAL_PROVIDER_DROP_IN || !/\.(json|ya?ml)$/.test(name)) continue;
    const path = posix.join(dir, name);
    const file = host.readBytes(path);
    if (file === null) continue;
    out.push({ path, config: parse(path, file.bytes) });
  }
  return out;
}

function parse(path: string, bytes: Buffer, what = ''): ProviderConfig {
  try {
    return parseProviderConfig(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    const why =
      err instanceof ProviderConfigError
        ? err.message
        : err instanceof TypeError
          ? 'is not UTF-8 text'
          : (err as Error).message;
    throw new PlanError(
      'CONFIG_INVALID',
      `${path}${what} ${why}; kubelet could not load it either: fix it first, nothing was changed`,
    );
  }
}

/**
 * Our entry in kubelet's own config file: appended to `providers`, or replaced where the
 * patcher put it before. A provider of our name that the file had before the patcher's first
 * apply is someone else's.
 */
function providerEntry(
  host: HostRoot,
  path: string,
  provider: Readonly<Record<string, unknown>>,
  originals: ReadonlyMap<string, Buffer | null> | undefined,
  notes: string[],
): FileChange {
  const file = host.readBytes(path);
  if (file === null)
    throw new PlanError(
      'CONFIG_INVALID',
      `--image-credential-provider-config names ${path}, which does not exist (kubelet cannot start like this); fix it first, nothing was changed`,
    );
  const current = parse(file.hostPath, file.bytes);
  const original = originals?.has(file.hostPath)
    ? (originals.get(file.hostPath) ?? null)
    : file.bytes;
  // The file as it was before node-patcher's first apply (null: node-patcher created it).
  const before =
    original === null
      ? null
      : original === file.bytes
        ? current
        : parse(file.hostPath, original, ' (as it was before node-patcher)');
  if (before?.providers.some((p) => p.name === EXECUTABLE_NAME))
    throw new PlanError(
      'NOT_OURS',
      `${file.hostPath} already has a provider named ${EXECUTABLE_NAME} that node-patcher did not add; it is left alone and nothing was changed`,
    );
  if ('tokenAttributes' in provider && current.apiVersion !== CONFIG_V1)
    throw new PlanError(
      'UNSAFE_EDIT',
      `${file.hostPath} is ${quote(current.apiVersion ?? 'without apiVersion')}, but the rules need tokenAttributes (service-account tokens), which only ${CONFIG_V1} has; nothing was changed`,
    );
  const index = current.providers.findIndex((p) => p.name === EXECUTABLE_NAME);
  let text: string;
  try {
    text = withProvider(file.bytes.toString('utf8'), provider, index === -1 ? null : index);
  } catch (err) {
    if (err instanceof EditError)
      throw new PlanError('UNSAFE_EDIT', `${file.hostPath}: ${err.message}; nothing was changed`);
    throw err;
  }
  notes.push(
    `kubelet reads credential providers from ${file.hostPath}: ${index === -1 ? 'adding' : 'keeping'} the ${EXECUTABLE_NAME} provider ${index === -1 ? 'after' : 'among'} the node's own, the rest of the file as it is`,
  );
  notes.push(
    ...overlapNotes(
      current.providers.filter((p) => p.name !== EXECUTABLE_NAME),
      provider,
    ),
  );
  return {
    path: file.hostPath,
    before: file.bytes,
    after: Buffer.from(text),
    mode: file.mode,
    why: `the ${EXECUTABLE_NAME} provider in kubelet's CredentialProviderConfig`,
  };
}

/** One note per provider whose images may also be ours: kubelet runs both, earlier first. */
function overlapNotes(
  providers: readonly Readonly<Record<string, unknown>>[],
  ours: Readonly<Record<string, unknown>>,
): string[] {
  const mine = (ours.matchImages as string[]) ?? [];
  const out: string[] = [];
  for (const p of providers) {
    const theirs = Array.isArray(p.matchImages)
      ? p.matchImages.filter((m): m is string => typeof m === 'string')
      : [];
    const shared = theirs.filter((t) => mine.some((m) => mayOverlap(t, m)));
    if (shared.length > 0)
      out.push(
        `${String(p.name)} also matches ${shared.map((s) => JSON.stringify(s)).join(', ')}: kubelet runs both plugins for those images and tries the credentials of the provider listed first (${String(p.name)}) first`,
      );
  }
  return out;
}
