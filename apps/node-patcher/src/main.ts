#!/usr/bin/env node
/**
 * node-patcher: reads kubelet's configuration on a node from a privileged DaemonSet pod that
 * mounts the host's root filesystem. This slice has `detect`; the logic is in
 * @org/kubelet-patch.
 */
import { statSync } from 'node:fs';
import { detectLayout, KubeletPatchError } from '@org/kubelet-patch';

const USAGE = `usage: node-patcher detect --host-root DIR
       node-patcher --help

  detect           prints the kubelet layout of the node whose root filesystem is mounted
                   at DIR as JSON on stdout: distribution, kubelet version, unit and
                   drop-ins, env files and the flag variable ExecStart uses, the config
                   file, a --config-dir directory, credential-provider flags, containerd's
                   config. Exits 1 with one line on stderr when the node is refused
                   (Bottlerocket or another immutable host, an unknown layout, a host file
                   that is unsafe to read: a symlink out of DIR, over 1 MiB).
  --host-root DIR  where the host's / is mounted (a hostPath volume), e.g. /host

Exit codes: 0 described, 1 refused, 2 bad arguments.
`;

const COMMANDS = ['detect'] as const;
type Command = (typeof COMMANDS)[number];
const FLAGS: Record<Command, readonly string[]> = { detect: ['--host-root'] };

/** One line on stderr, then the exit code (set, not forced, so stdout drains first). */
function fail(message: string, code: 1 | 2): never {
  throw new Exit(code, message);
}

class Exit extends Error {
  constructor(
    readonly code: 1 | 2,
    message: string,
  ) {
    super(message);
  }
}

function parseArgs(argv: readonly string[]): { command: Command; hostRoot: string } | 'help' {
  if (argv.some((a) => a === '--help' || a === '-h') || argv[0] === 'help') return 'help';
  const [command, ...rest] = argv;
  if (command === undefined) fail('no command; try node-patcher --help', 2);
  if (!(COMMANDS as readonly string[]).includes(command))
    fail(`unknown command ${JSON.stringify(command)}; try node-patcher --help`, 2);
  const known = FLAGS[command as Command];
  const flags = new Map<string, string>();
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i] as string;
    const eq = arg.indexOf('=');
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    if (!known.includes(flag))
      fail(`unknown option ${JSON.stringify(arg)} for ${command}; try node-patcher --help`, 2);
    if (flags.has(flag)) fail(`${flag} is given twice`, 2);
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
  return { command: command as Command, hostRoot };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  const { hostRoot } = args;
  try {
    const layout = await detectLayout(hostRoot);
    process.stdout.write(`${JSON.stringify(layout, null, 2)}\n`);
  } catch (err) {
    if (err instanceof KubeletPatchError) fail(err.message, 1);
    throw err;
  }
}

main().catch((err: unknown) => {
  const exit =
    err instanceof Exit ? err : new Exit(1, `unexpected error: ${(err as Error)?.message ?? err}`);
  process.stderr.write(`node-patcher: ${exit.message.split('\n').join('; ')}\n`);
  process.exitCode = exit.code;
});
