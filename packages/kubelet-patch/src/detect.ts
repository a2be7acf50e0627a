import { lstatSync } from 'node:fs';
import { posix } from 'node:path';
import { type ContainerdConfigFacts, inspectContainerdConfig } from './containerd-config.js';
import { parseEnvFile } from './env-file.js';
import { HostFileError, LayoutError, printable, quote } from './errors.js';
import { HostRoot, MAX_FILE_BYTES } from './host-root.js';
import { type ConfigFormat, inspectKubeletConfig } from './kubelet-config.js';
import { findKubeletFlags, type KubeletFlags } from './kubelet-flags.js';
import {
  parseVersionOutput,
  runKubeletVersion,
  type VersionRunner,
  versionFromDpkgStatus,
} from './kubelet-version.js';
import {
  expandWords,
  parseCommandLine,
  parseEnvironmentAssignments,
  parseUnitFile,
  referencedVariables,
  UnitSyntaxError,
} from './systemd-unit.js';

/** The node layouts the patcher knows (reference sheet §4.1). */
export type Distribution = 'gke-cos' | 'gke-ubuntu' | 'eks-al2' | 'eks-al2023' | 'aks' | 'kubeadm';

/** The environment variables that carry kubelet's flags on the layouts above. */
export const ARGS_VARIABLES = [
  'KUBELET_OPTS',
  'KUBELET_FLAGS',
  'KUBELET_EXTRA_ARGS',
  'KUBELET_KUBEADM_ARGS',
  'KUBELET_ARGS',
  'NODEADM_KUBELET_ARGS',
] as const;
export type ArgsVariableName = (typeof ARGS_VARIABLES)[number];

/** systemd's unit search path for system units, highest priority first (systemd.unit(5)). */
export const UNIT_DIRS = [
  '/etc/systemd/system',
  '/run/systemd/system',
  '/usr/local/lib/systemd/system',
  '/usr/lib/systemd/system',
  '/lib/systemd/system',
] as const;

const UNIT_NAME = 'kubelet.service';
const OS_RELEASE_FILES = ['/etc/os-release', '/usr/lib/os-release'] as const;
const CONTAINERD_CONFIG = '/etc/containerd/config.toml';
const DPKG_STATUS = '/var/lib/dpkg/status';
/** Where systemd looks up an ExecStart= executable given without a path (systemd.service(5)). */
const EXEC_SEARCH_PATH = [
  '/usr/local/sbin',
  '/usr/local/bin',
  '/usr/sbin',
  '/usr/bin',
  '/sbin',
  '/bin',
];

/** The host's os-release(5). */
export interface OsRelease {
  readonly path: string;
  /** `ID`, lowercase: `cos`, `ubuntu`, `amzn`, `azurelinux`, `bottlerocket`, … */
  readonly id: string | null;
  readonly versionId: string | null;
  readonly prettyName: string | null;
}

/** An EnvironmentFile= of the kubelet unit. */
export interface EnvironmentFileInfo {
  readonly path: string;
  /** Written with a `-` prefix: systemd starts the unit without it. */
  readonly optional: boolean;
  readonly exists: boolean;
}

/** A flag-carrying variable the kubelet ExecStart= uses. */
export interface ArgsVariable {
  readonly name: ArgsVariableName;
  /** The file whose assignment systemd applies (unit, drop-in or env file), or null if unset. */
  readonly definedIn: string | null;
}

/** kubelet.service as systemd would load it. */
export interface KubeletUnit {
  readonly name: 'kubelet.service';
  readonly path: string;
  /** Drop-ins (`kubelet.service.d/*.conf`) in the order systemd applies them. */
  readonly dropIns: readonly string[];
  /** The ExecStart= words as written (prefixes and quotes removed, variables not expanded). */
  readonly execStart: readonly string[];
  /** The unit or drop-in whose ExecStart= is in effect. */
  readonly execStartIn: string;
  readonly environmentFiles: readonly EnvironmentFileInfo[];
  readonly argsVariables: readonly ArgsVariable[];
}

/** The kubelet program and its effective command line. */
export interface KubeletInfo {
  /** The executable ExecStart= runs, as a host path. */
  readonly binary: string;
  /** `v1.31.5-gke.1068000`-style, or null when neither the binary nor a file told. */
  readonly version: string | null;
  /** `binary` (from `--version`) or the host path of the file it was read from. */
  readonly versionSource: string | null;
  /** kubelet's arguments after systemd's variable expansion. */
  readonly args: readonly string[];
  readonly flags: KubeletFlags;
}

/** A kubelet config file (`--config`) or a drop-in of `--config-dir`. */
export interface KubeletConfigFile {
  readonly path: string;
  readonly exists: boolean;
  /** Null when the file does not exist. */
  readonly format: ConfigFormat | null;
  readonly parses: boolean;
  readonly error: string | null;
  readonly containerRuntimeEndpoint: string | null;
  readonly imageServiceEndpoint: string | null;
}

/** The `--config-dir` drop-in directory. */
export interface KubeletConfigDir {
  readonly path: string;
  readonly exists: boolean;
  /** Its `*.conf` files in the order kubelet merges them. */
  readonly files: readonly KubeletConfigFile[];
}

/** containerd's config.toml. */
export interface ContainerdInfo extends ContainerdConfigFacts {
  readonly path: string;
  readonly exists: boolean;
}

/** What `detectLayout` found: plain data, every path a host path. */
export interface KubeletLayout {
  readonly distribution: Distribution;
  readonly os: OsRelease | null;
  readonly kubelet: KubeletInfo;
  readonly unit: KubeletUnit;
  readonly config: KubeletConfigFile | null;
  readonly configDir: KubeletConfigDir | null;
  readonly credentialProvider: {
    readonly config: string | null;
    readonly binDir: string | null;
  } | null;
  readonly containerd: ContainerdInfo;
  /** Findings that do not stop detection (skipped lines, a binary that would not run, …). */
  readonly notes: readonly string[];
}

/** Options of {@link detectLayout}. */
export interface DetectOptions {
  /** Runs `kubelet --version`; default {@link runKubeletVersion}. */
  readonly runVersion?: VersionRunner;
  /** Largest file read from the host; default 1 MiB. */
  readonly maxFileBytes?: number;
}

/** Immutable hosts: refused whatever files they carry, with the route to use instead. */
const IMMUTABLE_HOSTS: Record<string, { name: string; why: string; instead: string }> = {
  bottlerocket: {
    name: 'Bottlerocket',
    why: "its root filesystem is a read-only dm-verity device and kubelet's configuration is rendered from its settings API at boot, so edited files would not last",
    instead:
      'set settings.kubernetes.credential-providers (the credential-provider route) and settings.container-registry through user data or apiclient in the admin container',
  },
  talos: {
    name: 'Talos Linux',
    why: 'it has no systemd and no writable kubelet files; kubelet is configured only through its machine configuration',
    instead:
      'change machine.kubelet (extraArgs, extraConfig) in the machine configuration with talosctl',
  },
};

/**
 * Describes the kubelet layout of the host whose root filesystem is mounted at `hostRoot`:
 * distribution, kubelet version, unit and drop-ins, env files, the config file and drop-in
 * directory, credential-provider flags and containerd's config. Reads files only, through
 * {@link HostRoot}; runs nothing but `kubelet --version` (through `options.runVersion`).
 *
 * Throws `LayoutError` for an immutable host (`IMMUTABLE_HOST`) or a layout it does not know
 * (`UNKNOWN_LAYOUT`), and `HostFileError` when a file it needs is refused (a symlink out of the
 * root, over the size cap, not a regular file, not UTF-8).
 *
 * @example
 * const layout = await detectLayout('/host');
 * layout.distribution;           // 'kubeadm'
 * layout.config?.path;           // '/var/lib/kubelet/config.yaml'
 * layout.unit.argsVariables;     // [{ name: 'KUBELET_KUBEADM_ARGS', definedIn: '/var/lib/kubelet/kubeadm-flags.env' }, …]
 */
export async function detectLayout(
  hostRoot: string,
  options: DetectOptions = {},
): Promise<KubeletLayout> {
  const runVersion = options.runVersion ?? runKubeletVersion;
  if (typeof runVersion !== 'function')
    throw new TypeError('options.runVersion must be a function');
  const maxFileBytes = options.maxFileBytes ?? MAX_FILE_BYTES;
  if (!Number.isSafeInteger(maxFileBytes) || maxFileBytes < 1)
    throw new TypeError('options.maxFileBytes must be a positive integer');
  let host: HostRoot;
  try {
    host = new HostRoot(hostRoot, { maxBytes: maxFileBytes });
  } catch (err) {
    throw new LayoutError(
      'HOST_ROOT_INVALID',
      { os: null, found: [] },
      `host root ${quote(hostRoot)} is not a readable directory (${(err as Error).message})`,
    );
  }
  return new Detection(host, runVersion).run();
}

class Detection {
  private readonly notes: string[] = [];
  /** What was found so far, for the message of a refusal. */
  private readonly found: string[] = [];
  private os: OsRelease | null = null;

  constructor(
    private readonly host: HostRoot,
    private readonly runVersion: VersionRunner,
  ) {}

  async run(): Promise<KubeletLayout> {
    const os = this.readOsRelease();
    this.os = os;
    this.found.push(
      os === null
        ? 'no os-release'
        : `os-release ID=${os.id ?? '(none)'} VERSION_ID=${os.versionId ?? '(none)'}`,
    );
    const unitPaths = this.findUnit();
    const immutable = os?.id ? IMMUTABLE_HOSTS[os.id] : undefined;
    if (immutable) {
      this.found.push(
        unitPaths === null ? 'no kubelet.service to patch' : `${unitPaths.path} (rendered)`,
      );
      const found = this.found.map(printable);
      throw new LayoutError(
        'IMMUTABLE_HOST',
        { os: os?.id ?? null, found },
        `${immutable.name} (${found.join(', ')}) is not patched: ${immutable.why}; instead, ${immutable.instead}`,
      );
    }
    if (unitPaths === null) {
      this.found.push(`no ${UNIT_NAME} in ${UNIT_DIRS.join(', ')}`);
      throw this.unknown();
    }
    const unit = this.loadUnit(unitPaths.path, unitPaths.dropIns);
    const kubelet = await this.kubelet(unit);
    const distribution = this.classify(os, unit, kubelet.binary);
    const { flags } = kubelet;
    return {
      distribution,
      os,
      kubelet,
      unit: {
        name: UNIT_NAME,
        path: unit.path,
        dropIns: unit.dropIns,
        execStart: unit.execStart,
        execStartIn: unit.execStartIn,
        environmentFiles: unit.environmentFiles,
        argsVariables: unit.argsVariables,
      },
      config: flags.config === null ? null : this.configFile(absolute(flags.config)),
      configDir: flags.configDir === null ? null : this.configDir(absolute(flags.configDir)),
      credentialProvider:
        flags.imageCredentialProviderConfig === null && flags.imageCredentialProviderBinDir === null
          ? null
          : {
              config: flags.imageCredentialProviderConfig,
              binDir: flags.imageCredentialProviderBinDir,
            },
      containerd: this.containerd(),
      notes: this.notes,
    };
  }

  private readOsRelease(): OsRelease | null {
    for (const path of OS_RELEASE_FILES) {
      const file = this.host.readText(path);
      if (file === null) continue;
      const values = new Map(parseEnvFile(file.text).assignments);
      return {
        path,
        id: values.get('ID')?.toLowerCase() ?? null,
        versionId: values.get('VERSION_ID') ?? null,
        prettyName: values.get('PRETTY_NAME') ?? null,
      };
    }
    return null;
  }

  /** The unit file systemd would load and its drop-ins, or null when there is no unit. */
  private findUnit(): { path: string; dropIns: string[] } | null {
    const dirs: string[] = [];
    const seen = new Set<string>();
    for (const dir of UNIT_DIRS) {
      const resolved = this.host.resolve(dir);
      if (resolved === null || seen.has(resolved.hostPath)) continue;
      seen.add(resolved.hostPath);
      dirs.push(dir);
    }
    let path: string | null = null;
    for (const dir of dirs) {
      const candidate = `${dir}/${UNIT_NAME}`;
      const link = this.host.linkTarget(candidate);
      if (link === null && !this.host.exists(candidate)) continue;
      if (link === '/dev/null') {
        this.found.push(`${candidate} masks ${UNIT_NAME} (a link to /dev/null)`);
        return null;
      }
      path = candidate;
      break;
    }
    if (path === null) return null;
    const byName = new Map<string, string>();
    for (const dir of dirs) {
      const dropInDir = `${dir}/${UNIT_NAME}.d`;
      for (const name of this.host.list(dropInDir) ?? []) {
        if (!name.endsWith('.conf') || byName.has(name)) continue;
        byName.set(name, `${dropInDir}/${name}`);
      }
    }
    const dropIns: string[] = [];
    for (const name of [...byName.keys()].sort()) {
      const dropIn = byName.get(name) as string;
      if (this.host.linkTarget(dropIn) === '/dev/null') {
        this.notes.push(`${dropIn} is masked (a link to /dev/null); skipped`);
        continue;
      }
      dropIns.push(dropIn);
    }
    return { path, dropIns };
  }

  private loadUnit(path: string, dropIns: string[]) {
    const execStarts: Array<{ value: string; file: string; line: number }> = [];
    let environment: Array<{ name: string; value: string; file: string }> = [];
    let environmentFiles: Array<{ path: string; optional: boolean }> = [];
    for (const file of [path, ...dropIns]) {
      const text = this.host.readText(file);
      if (text === null) continue;
      for (const a of parseUnitFile(text.text)) {
        if (a.section !== 'Service') continue;
        if (a.key === 'ExecStart') {
          if (a.value === '') execStarts.length = 0;
          else execStarts.push({ value: a.value, file, line: a.line });
        } else if (a.key === 'Environment') {
          if (a.value === '') {
            environment = [];
            continue;
          }
          let parsed: ReturnType<typeof parseEnvironmentAssignments>;
          try {
            parsed = parseEnvironmentAssignments(a.value);
          } catch (err) {
            this.notes.push(`${file}:${a.line}: Environment= skipped: ${(err as Error).message}`);
            continue;
          }
          for (const [name, value] of parsed.assignments) environment.push({ name, value, file });
          for (const word of parsed.invalid)
            this.notes.push(`${file}:${a.line}: Environment= word ${quote(word)} skipped`);
        } else if (a.key === 'EnvironmentFile') {
          if (a.value === '') {
            environmentFiles = [];
            continue;
          }
          const optional = a.value.startsWith('-');
          const envPath = optional ? a.value.slice(1) : a.value;
          if (!envPath.startsWith('/') || /[%*?[]/.test(envPath)) {
            this.notes.push(
              `${file}:${a.line}: EnvironmentFile=${quote(a.value)} is not a plain absolute path; not read`,
            );
            continue;
          }
          environmentFiles.push({ path: envPath, optional });
        }
      }
    }
    this.found.push(
      `${UNIT_NAME} at ${path}${dropIns.length ? ` with ${dropIns.join(', ')}` : ''}`,
    );
    const [exec] = execStarts;
    if (exec === undefined || execStarts.length > 1) {
      this.found.push(
        exec === undefined
          ? 'no ExecStart='
          : `${execStarts.length} ExecStart= lines (systemd refuses that for a service)`,
      );
      throw this.unknown();
    }
    // Environment= first, then the files in order, each overriding what came before
    // (systemd.exec(5), EnvironmentFile=).
    const env = new Map<string, string>();
    const definedIn = new Map<string, string>();
    for (const e of environment) {
      env.set(e.name, e.value);
      definedIn.set(e.name, e.file);
    }
    const files: EnvironmentFileInfo[] = [];
    for (const f of environmentFiles) {
      const text = this.host.readText(f.path);
      files.push({ path: f.path, optional: f.optional, exists: text !== null });
      if (text === null) {
        if (!f.optional)
          this.notes.push(`${f.path} is missing and not optional: systemd will not start kubelet`);
        continue;
      }
      const parsed = parseEnvFile(text.text);
      for (const [name, value] of parsed.assignments) {
        env.set(name, value);
        definedIn.set(name, f.path);
      }
      for (const n of parsed.invalidLines)
        this.notes.push(`${f.path}:${n}: not a NAME=value line; skipped`);
    }
    let command: ReturnType<typeof parseCommandLine>;
    try {
      command = parseCommandLine(exec.value);
    } catch (err) {
      if (!(err instanceof UnitSyntaxError)) throw err;
      this.found.push(`ExecStart= in ${exec.file}:${exec.line} is not valid (${err.message})`);
      throw this.unknown();
    }
    const variables = referencedVariables(command.args);
    const argsVariables = variables
      .filter((n): n is ArgsVariableName => (ARGS_VARIABLES as readonly string[]).includes(n))
      .map((name) => ({ name, definedIn: definedIn.get(name) ?? null }));
    this.found.push(
      `ExecStart=${command.executable}${variables.length ? ` using ${variables.map((v) => `$${v}`).join(' ')}` : ''}`,
    );
    let args: string[];
    try {
      args = command.noSubstitution ? [...command.args] : expandWords(command.args, env);
    } catch (err) {
      if (!(err instanceof UnitSyntaxError)) throw err;
      this.found.push(`a variable ExecStart= uses does not split into words (${err.message})`);
      throw this.unknown();
    }
    return {
      path,
      dropIns,
      execStart: command.words,
      execStartIn: exec.file,
      executable: command.executable,
      environmentFiles: files,
      argsVariables,
      args,
    };
  }

  private async kubelet(unit: ReturnType<Detection['loadUnit']>): Promise<KubeletInfo> {
    const binary = this.findExecutable(unit.executable);
    let version: string | null = null;
    let versionSource: string | null = null;
    const resolved = this.host.resolve(binary);
    if (resolved === null || !isFile(resolved.localPath)) {
      this.notes.push(`${binary} (kubelet) is not a file on the host; version read from files`);
    } else {
      try {
        const out = await this.runVersion(resolved);
        version = parseVersionOutput(out);
        if (version === null)
          this.notes.push(
            `${binary} --version printed ${quote(out.trim().split('\n')[0] ?? '')}, not "Kubernetes vX.Y.Z"; version read from files`,
          );
        else versionSource = 'binary';
      } catch (err) {
        this.notes.push(
          `${binary} --version did not run here (${runFailure(err)}); version read from files`,
        );
      }
    }
    if (version === null) {
      version = this.versionFromFiles();
      if (version !== null) versionSource = DPKG_STATUS;
    }
    return { binary, version, versionSource, args: unit.args, flags: findKubeletFlags(unit.args) };
  }

  private versionFromFiles(): string | null {
    let status: { text: string } | null;
    try {
      status = this.host.readText(DPKG_STATUS);
    } catch (err) {
      // The package database is only a fallback; a refusal here costs the version, not the run.
      if (!(err instanceof HostFileError)) throw err;
      this.notes.push(`${DPKG_STATUS} not read (${err.code}); kubelet version unknown`);
      return null;
    }
    return status === null ? null : versionFromDpkgStatus(status.text);
  }

  private findExecutable(executable: string): string {
    if (executable.startsWith('/')) return executable;
    for (const dir of EXEC_SEARCH_PATH) {
      const candidate = `${dir}/${executable}`;
      if (this.host.exists(candidate)) return candidate;
    }
    return `/usr/bin/${executable}`;
  }

  private configFile(path: string): KubeletConfigFile {
    const file = this.host.readText(path);
    if (file === null)
      return {
        path,
        exists: false,
        format: null,
        parses: false,
        error: 'the file does not exist',
        containerRuntimeEndpoint: null,
        imageServiceEndpoint: null,
      };
    return { path, exists: true, ...inspectKubeletConfig(file.text) };
  }

  private configDir(path: string): KubeletConfigDir {
    const names = this.host.list(path);
    return {
      path,
      exists: names !== null,
      files: (names ?? [])
        .filter((n) => n.endsWith('.conf'))
        .map((n) => this.configFile(posix.join(path, n))),
    };
  }

  private containerd(): ContainerdInfo {
    const file = this.host.readText(CONTAINERD_CONFIG);
    if (file === null)
      return {
        path: CONTAINERD_CONFIG,
        exists: false,
        parses: false,
        error: null,
        version: null,
        registryConfigPath: null,
        imports: [],
      };
    return { path: CONTAINERD_CONFIG, exists: true, ...inspectContainerdConfig(file.text) };
  }

  private classify(
    os: OsRelease | null,
    unit: { argsVariables: readonly ArgsVariable[] },
    binary: string,
  ): Distribution {
    const uses = (name: ArgsVariableName) => unit.argsVariables.some((v) => v.name === name);
    if (uses('NODEADM_KUBELET_ARGS')) return 'eks-al2023';
    if (uses('KUBELET_KUBEADM_ARGS')) return 'kubeadm';
    if (uses('KUBELET_FLAGS')) return 'aks';
    if (uses('KUBELET_OPTS') && binary.startsWith('/home/kubernetes/bin/')) {
      if (os?.id === 'cos') return 'gke-cos';
      if (os?.id === 'ubuntu') return 'gke-ubuntu';
    }
    if (uses('KUBELET_ARGS') && os?.id === 'amzn') return 'eks-al2';
    throw this.unknown();
  }

  private unknown(): LayoutError {
    const found = this.found.map(printable);
    return new LayoutError(
      'UNKNOWN_LAYOUT',
      { os: this.os?.id ?? null, found },
      `unknown kubelet layout (found: ${found.join('; ')}); node-patcher knows GKE COS and Ubuntu, EKS AL2, EKS AL2023 (nodeadm), AKS and kubeadm`,
    );
  }
}

function isFile(path: string): boolean {
  try {
    return lstatSync(path).isFile();
  } catch {
    return false;
  }
}

function absolute(path: string): string {
  return posix.resolve('/', path);
}

function runFailure(err: unknown): string {
  const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null };
  if (e?.killed) return 'timed out';
  if (typeof e?.code === 'string') return e.code;
  if (typeof e?.code === 'number') return `exit code ${e.code}`;
  if (e?.signal) return `killed by ${e.signal}`;
  return (e?.message ?? String(err)).split('\n')[0] ?? 'failed';
}
