#!/usr/bin/env node
/**
 * node-patcher: switches kubelet on a node over to the image service (or containerd mirrors, or
 * a credential-provider plugin) from a privileged DaemonSet pod that mounts the host's root
 * filesystem, safely, and back. Argument parsing and wiring only; the logic is in
 * @org/kubelet-patch, the CRI check in @org/cri-image-service.
 */
import { type ExecFileException, execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  checkImageService,
  credentialProviderConfig,
  hostServiceUnit,
  loadRules,
  RulesError,
} from '@org/cri-image-service';
import {
  type ApplyOptions,
  applyToNode,
  connectSystemd,
  detectLayout,
  healthzUrl,
  KUBELET_HEALTHZ,
  KubeletPatchError,
  type NodeOptions,
  type PatchMode,
  revertNode,
  type SystemdControl,
  systemdAddressFor,
  waitHealthy,
} from '@org/kubelet-patch';

const USAGE = `usage: node-patcher detect --host-root DIR
       node-patcher apply  --host-root DIR --mode MODE [options]
       node-patcher revert --host-root DIR [options]
       node-patcher --help

  detect   prints the kubelet layout of the node whose root filesystem is mounted at DIR as
           JSON on stdout: distribution, kubelet version, unit and drop-ins, env files and the
           flag variable ExecStart uses, the config file, a --config-dir directory,
           credential-provider flags, containerd's config.
  apply    changes kubelet's configuration for MODE by the least invasive route the node
           allows, as a transaction: original bytes and a state record saved first, every file
           written atomically, daemon-reload and a restart of kubelet through systemd's D-Bus
           API, then a wait for the unit to be active and kubelet's healthz to answer ok; if it
           does not, the originals are put back and kubelet restarted again (exit 1). Running
           it again on a patched node changes and restarts nothing; an interrupted earlier run
           is rolled back first.
  revert   puts back the original bytes, modes and owners of every file apply changed (a
           file changed by something else since is left and reported), reloads, restarts
           kubelet and waits for it.

  --host-root DIR        where the host's / is mounted (a hostPath volume), e.g. /host
  --mode MODE            image-service: kubelet's image service is --endpoint
                         containerd-mirror: containerd sends pulls of --registries to --mirror
                         (hosts.toml files; no restart where containerd sets config_path)
                         credential-provider: kubelet runs --plugin as an exec credential
                         provider for the images --rules match (installed in kubelet's
                         --image-credential-provider-bin-dir, its provider added to kubelet's
                         config; a node without them gets both flags)
  --endpoint URL         unix:///PATH of the image service (a host path, checked at DIR/PATH
                         with a CRI ImageFsInfo call before kubelet is switched to it)
  --install-service FILE image-service: first install FILE (the kubelet-image-service
                         executable) on the host with --rules, as kubelet-image-service.service
                         serving --endpoint (a socket in /run/kubelet-image-service/), start it,
                         and only then switch kubelet; without it the endpoint must answer
  --mirror URL           containerd-mirror: the registry proxy, https://HOST[:PORT]
  --registries LIST      containerd-mirror: registries to send there, e.g. gcr.io,docker.io
  --set-config-path      containerd-mirror: containerd has no registry config_path, so add
                         config_path = "/etc/containerd/certs.d" and restart containerd
  --plugin FILE          credential-provider: the kubelet-image-service executable to install
                         (run first as FILE credential-provider-config --config RULES: it must
                         exit 0 within 10 s)
  --rules FILE           --install-service and credential-provider: the kubelet-image-service
                         rules file, checked, then installed at
                         /etc/kubelet-image-service/rules.yaml
  --systemd-bus ADDRESS  D-Bus address of systemd, e.g. unix:path=/host/run/dbus/system_bus_socket
                         (default: that socket under DIR, else systemd's private socket
                         DIR/run/systemd/private, which is spoken to without a bus daemon)
  --kubelet-healthz URL  kubelet's health endpoint (default ${KUBELET_HEALTHZ}; the pod needs
                         hostNetwork)
  --timeout SECONDS      for the restart and for kubelet to turn healthy (default 120)
  --state-dir PATH       host path of the state record and saved originals
                         (default /var/lib/node-patcher)
  --dry-run              apply: print the diff and the route taken, touch nothing

Exit codes: 0 done (or nothing to do), 1 refused or rolled back, 2 bad arguments.
`;

const COMMON = ['--host-root', '--systemd-bus', '--kubelet-healthz', '--timeout', '--state-dir'];
const FLAGS = {
  detect: ['--host-root'],
  apply: [
    ...COMMON,
    '--mode',
    '--endpoint',
    '--mirror',
    '--registries',
    '--set-config-path',
    '--install-service',
    '--plugin',
    '--rules',
    '--dry-run',
  ],
  revert: COMMON,
} as const;
type Command = keyof typeof FLAGS;
const BOOLEAN = new Set(['--dry-run', '--set-config-path']);
const MODES: readonly PatchMode[] = ['image-service', 'containerd-mirror', 'credential-provider'];

class Exit extends Error {
  constructor(
    readonly code: 1 | 2,
    message: string,
  ) {
    super(message);
  }
}

/** One line on stderr, then the exit code (set, not forced, so stdout drains first). */
function fail(message: string, code: 1 | 2): never {
  throw new Exit(code, message);
}

function parseArgs(
  argv: readonly string[],
): { command: Command; flags: Map<string, string>; hostRoot: string } | 'help' {
  if (argv.some((a) => a === '--help' || a === '-h') || argv[0] === 'help') return 'help';
  const [command, ...rest] = argv;
  if (command === undefined) fail('no command; try node-patcher --help', 2);
  if (!Object.hasOwn(FLAGS, command))
    fail(`unknown command ${JSON.stringify(command)}; try node-patcher --help`, 2);
  const known: readonly string[] = FLAGS[command as Command];
  const flags = new Map<string, string>();
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i] as string;
    const eq = arg.indexOf('=');
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    if (!known.includes(flag))
      fail(`unknown option ${JSON.stringify(arg)} for ${command}; try node-patcher --help`, 2);
    if (flags.has(flag)) fail(`${flag} is given twice`, 2);
    if (BOOLEAN.has(flag)) {
      if (eq !== -1) fail(`${flag} takes no value`, 2);
      flags.set(flag, 'true');
      continue;
    }
    const value = eq === -1 ? rest[++i] : arg.slice(eq + 1);
    if (value === undefined || value === '') fail(`${flag} needs a value`, 2);
    flags.set(flag, value);
  }
  const hostRoot = flags.get('--host-root');
  if (hostRoot === undefined) fail('--host-root DIR is required', 2);
  let isDir = false;
  try {
    isDir = statSync(hostRoot).isDirectory();
  } catch {
    // reported below
  }
  if (!isDir) fail(`--host-root ${JSON.stringify(hostRoot)} is not a directory`, 2);
  return { command: command as Command, flags, hostRoot };
}

function nodeOptions(flags: Map<string, string>, hostRoot: string): NodeOptions {
  const seconds = Number(flags.get('--timeout') ?? '120');
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 3600)
    fail('--timeout must be a whole number of seconds from 1 to 3600', 2);
  let healthz: URL;
  try {
    healthz = healthzUrl(flags.get('--kubelet-healthz') ?? KUBELET_HEALTHZ);
  } catch (err) {
    fail((err as Error).message, 2);
  }
  const stateDir = flags.get('--state-dir');
  if (stateDir !== undefined && !/^\/[A-Za-z0-9._/-]+$/.test(stateDir))
    fail('--state-dir must be an absolute host path of letters, digits and ._/-', 2);
  const { address, peer } = systemdAddressFor(hostRoot, flags.get('--systemd-bus'));
  const timeoutMs = seconds * 1000;
  return {
    hostRoot,
    ...(stateDir ? { stateDir } : {}),
    restartTimeoutMs: timeoutMs,
    connectSystemd: async (): Promise<SystemdControl> =>
      connectSystemd(address, { peer, timeoutMs: 10_000 }),
    waitHealthy: () => waitHealthy(healthz, { timeoutMs }),
    log: (line) => process.stderr.write(`node-patcher: ${line.replaceAll('\n', ' ')}\n`),
  };
}

function checkRegularFile(flag: string, path: string): void {
  let ok = false;
  try {
    ok = statSync(path).isFile();
  } catch {
    // reported below
  }
  if (!ok) fail(`${flag} ${JSON.stringify(path)} is not a file`, 2);
}

/** The rules file must load as kubelet-image-service loads it, or nothing is installed. */
function checkRules(path: string): void {
  checkRegularFile('--rules', path);
  try {
    loadRules(path);
  } catch (err) {
    if (err instanceof RulesError) fail(`--rules: ${err.message}`, 2);
    throw err;
  }
}

/**
 * credential-provider: checks the rules (exit 2 on bad ones) and the plugin file, and builds
 * kubelet's provider entry for them.
 */
function providerEntry(plugin: string, rulesFile: string): Record<string, unknown> {
  checkRegularFile('--plugin', plugin);
  try {
    const config = credentialProviderConfig(loadRules(rulesFile));
    return (config.providers as Record<string, unknown>[])[0] as Record<string, unknown>;
  } catch (err) {
    if (err instanceof RulesError) fail(`--rules: ${err.message}`, 2);
    throw err;
  }
}

/**
 * Runs the plugin once, `FILE credential-provider-config --config RULES`, before anything is
 * written: kubelet would not start on a plugin that cannot run (another architecture, not
 * executable, a broken build). Exit 1 when it fails or takes over 10 s.
 */
async function checkPlugin(plugin: string, rules: string): Promise<void> {
  const why = await new Promise<string | null>((done) => {
    // A path, never a name looked up in PATH (there is none: the plugin gets no environment).
    execFile(
      resolve(plugin),
      ['credential-provider-config', '--config', rules],
      { timeout: 10_000, env: {}, maxBuffer: 1024 * 1024, encoding: 'utf8' },
      (err: ExecFileException | null, _stdout, stderr) => {
        if (err === null) return done(null);
        const said = stderr.trim().split('\n').at(-1)?.slice(0, 200) ?? '';
        const how = err.killed
          ? 'did not finish within 10 s'
          : typeof err.code === 'number'
            ? `exited ${err.code}`
            : err.signal
              ? `was killed by ${err.signal}`
              : `could not be started (${String(err.code ?? err.message)})`;
        done(said === '' ? how : `${how}: ${said}`);
      },
    );
  });
  if (why !== null)
    fail(
      `the plugin does not run: ${plugin} credential-provider-config ${why}; nothing was changed`,
      1,
    );
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  const { command, flags, hostRoot } = args;
  try {
    if (command === 'detect') {
      const layout = await detectLayout(hostRoot);
      process.stdout.write(`${JSON.stringify(layout, null, 2)}\n`);
      return;
    }
    const node = nodeOptions(flags, hostRoot);
    if (command === 'revert') {
      const out = await revertNode(node);
      for (const n of out.notes) node.log?.(n);
      process.stdout.write(
        out.changed.length === 0
          ? 'nothing to revert\n'
          : `reverted ${out.changed.length} file(s); restarted ${out.restarted.join(', ') || 'nothing'}\n`,
      );
      return;
    }
    const mode = flags.get('--mode');
    if (mode === undefined) fail(`--mode is required: ${MODES.join(' or ')}`, 2);
    if (!(MODES as readonly string[]).includes(mode))
      fail(
        `--mode must be one of ${MODES.join(', ')}, got ${JSON.stringify(mode.slice(0, 40))}`,
        2,
      );
    const endpoint = flags.get('--endpoint');
    if (mode === 'image-service' && endpoint === undefined)
      fail('--mode image-service needs --endpoint unix:///PATH', 2);
    const mirror = flags.get('--mirror');
    const registries = flags.get('--registries')?.split(',');
    if (mode === 'containerd-mirror' && (mirror === undefined || registries === undefined))
      fail('--mode containerd-mirror needs --mirror URL and --registries LIST', 2);
    const installService = flags.get('--install-service');
    const rules = flags.get('--rules');
    if (installService !== undefined) {
      if (mode !== 'image-service') fail('--install-service goes with --mode image-service', 2);
      if (rules === undefined) fail('--install-service needs --rules FILE', 2);
      checkRegularFile('--install-service', installService);
      checkRules(rules);
    }
    const plugin = flags.get('--plugin');
    let provider: Record<string, unknown> | undefined;
    if (mode === 'credential-provider') {
      if (plugin === undefined || rules === undefined)
        fail('--mode credential-provider needs --plugin FILE and --rules FILE', 2);
      provider = providerEntry(plugin, rules);
      if (!flags.has('--dry-run')) await checkPlugin(plugin, rules);
    }
    const options: ApplyOptions = {
      ...node,
      ...(installService !== undefined && rules !== undefined
        ? { installService: { executable: installService, rules, unit: hostServiceUnit } }
        : {}),
      mode: mode as PatchMode,
      ...(endpoint ? { endpoint } : {}),
      ...(mirror ? { mirror } : {}),
      ...(registries ? { registries } : {}),
      ...(plugin ? { executable: plugin } : {}),
      ...(rules ? { rules } : {}),
      ...(provider ? { provider } : {}),
      setConfigPath: flags.has('--set-config-path'),
      dryRun: flags.has('--dry-run'),
      checkEndpoint: (socket) => checkImageService(socket, { timeoutMs: 10_000 }),
    };
    const out = await applyToNode(options);
    if (options.dryRun) {
      for (const n of [...(out.install?.notes ?? []), ...out.plan.notes])
        process.stdout.write(`# ${n}\n`);
      process.stdout.write(out.diff === '' ? '# nothing to change\n' : out.diff);
      return;
    }
    const result = out.result;
    process.stdout.write(
      !result || result.changed.length === 0
        ? 'already applied: nothing changed, nothing restarted\n'
        : `applied ${mode}: ${result.changed.length} file(s) written; restarted ${result.restarted.join(', ') || 'nothing'}\n`,
    );
  } catch (err) {
    if (err instanceof KubeletPatchError) fail(err.message, 1);
    if (err instanceof TypeError) fail(err.message, 2);
    throw err;
  }
}

main().catch((err: unknown) => {
  const exit =
    err instanceof Exit ? err : new Exit(1, `unexpected error: ${(err as Error)?.message ?? err}`);
  process.stderr.write(`node-patcher: ${exit.message.split('\n').join('; ')}\n`);
  process.exitCode = exit.code;
});
