import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/**
 * The client of the Debian `docker.io` package, which matches its daemon. A different `docker`
 * earlier in PATH (a newer static client in /usr/local/bin, say) would negotiate another API
 * version and builder defaults than the ones CI gets.
 */
const DOCKER_CLI = '/usr/bin/docker';
/** Bounds, not expectations: the machines are small and shared. */
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 20_000;

export interface CommandResult {
  readonly stdout: string;
  readonly stderr: string;
}

export interface CommandOptions {
  /** Written to the command's stdin (for `--password-stdin`). */
  readonly input?: string;
  /** Added to the environment. */
  readonly env?: Readonly<Record<string, string>>;
}

/** A private containerd (Debian `containerd`, 1.6), CRI plugin included, on a temp socket. */
export interface Containerd {
  /** The gRPC unix socket (`ctr -a`, `dockerd --containerd`). */
  readonly socket: string;
  /** The CRI `registry.config_path`: `<hostsDir>/<host>/hosts.toml` files. */
  readonly hostsDir: string;
  /**
   * Runs `ctr -a <socket> ...args`. Rejects on a non-zero exit with an error carrying `stdout`,
   * `stderr` and `code`.
   */
  ctr(args: readonly string[], options?: CommandOptions): Promise<CommandResult>;
  /**
   * Writes `<hostsDir>/<host>_<port>_/hosts.toml` (the directory name containerd tries first for
   * a `host:port`) sending `registryHost` to `mirrorUrl` for pull and resolve, and nowhere else
   * (`server` is the mirror too). Returns the file's path.
   */
  mirror(registryHost: string, mirrorUrl: string): string;
  /** What containerd printed, for failure messages. */
  log(): string;
  /**
   * Stops containerd (SIGTERM, as systemd does) and removes its socket if it left one: the
   * runtime of a node gone away. Its root, state and config stay for {@link Containerd.start}.
   */
  stop(): Promise<void>;
  /** Starts containerd again on the same config and socket path, and waits until it answers. */
  start(): Promise<void>;
  close(): Promise<void>;
}

/** A private dockerd (Debian `docker.io`) on a temp socket, using a given containerd. */
export interface Dockerd {
  /** `unix:///tmp/.../docker.sock`, for DOCKER_HOST. */
  readonly host: string;
  /** The client's DOCKER_CONFIG (where `docker login` stores credentials): a temp dir. */
  readonly configDir: string;
  /**
   * Runs the docker client against this daemon (`DOCKER_HOST`, `DOCKER_CONFIG` set). Rejects on
   * a non-zero exit with an error carrying `stdout`, `stderr` and `code`.
   */
  docker(args: readonly string[], options?: CommandOptions): Promise<CommandResult>;
  /** What dockerd printed, for failure messages. */
  log(): string;
  close(): Promise<void>;
}

/** A command runner that rejects with the command's output in the message. */
function runner(file: string, baseArgs: readonly string[], baseEnv: Record<string, string>) {
  return (args: readonly string[], options: CommandOptions = {}): Promise<CommandResult> => {
    const promise = execFileAsync(file, [...baseArgs, ...args], {
      env: { ...process.env, ...baseEnv, ...options.env },
      maxBuffer: 64 * 1024 * 1024,
      encoding: 'utf8',
    });
    if (options.input !== undefined) {
      promise.child.stdin?.end(options.input);
    } else {
      promise.child.stdin?.end();
    }
    return promise;
  };
}

/** Short temp dirs: unix socket paths must stay under 108 bytes. */
function shortTempDir(prefix: string): string {
  return mkdtempSync(join('/tmp', prefix));
}

function captureOutput(child: ChildProcess): () => string {
  let output = '';
  const append = (chunk: Buffer) => {
    output += chunk.toString();
    // keep the tail: a daemon's log can grow for the whole test file
    if (output.length > 2_000_000) output = output.slice(-1_000_000);
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  return () => output;
}

/** Polls `ready` until it resolves true; throws with the log when the process dies or time ends. */
async function waitReady(
  what: string,
  child: ChildProcess,
  log: () => string,
  ready: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}):\n${log()}`);
    }
    if (await ready().catch(() => false)) return;
    if (Date.now() > deadline) {
      throw new Error(`${what} not ready after ${START_TIMEOUT_MS} ms:\n${log()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** SIGTERM, then SIGKILL when it has not exited within the bound. */
async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

/**
 * Process ids whose command line contains every one of `parts` as an argument: the shims a
 * containerd started (`containerd-shim-runc-v2 ... -address <socket>`) outlive it by design.
 */
function pidsWithArguments(parts: readonly string[]): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = readFileSync(join('/proc', entry, 'cmdline'), 'utf8').split('\0');
    } catch {
      continue; // gone already
    }
    if (parts.every((p) => argv.includes(p))) pids.push(Number(entry));
  }
  return pids;
}

/** Mount points at or under `dir`, deepest first (mountinfo field 5, octal escapes decoded). */
function mountsUnder(dir: string): string[] {
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/**
 * Unmounts whatever a daemon left mounted under `dir` (dockerd bind-mounts its data-root and an
 * nsfs under exec-root; a killed one leaves them), then removes the tree. Without the unmounts
 * `rm -r` would descend into the mounted file systems.
 */
function removeTree(dir: string): void {
  for (const point of mountsUnder(dir)) {
    try {
      execFileSync('umount', ['-l', point], { stdio: 'ignore' });
    } catch {
      // already gone with its parent
    }
  }
  if (mountsUnder(dir).length > 0) {
    throw new Error(`still mounted under ${dir}; not removing it: ${mountsUnder(dir).join(', ')}`);
  }
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Starts containerd 1.6 with everything in a fresh temp dir: `root`, `state`, the gRPC socket
 * and the CRI registry `config_path` (see {@link Containerd.mirror}); CRI snapshotter `native`
 * (no overlay needed). Snapshotters that need kernel modules or special file systems are
 * disabled, so the log shows only what matters.
 *
 * @example
 * const containerd = await startContainerd();
 * containerd.mirror('registry.example:5000', 'http://127.0.0.1:5001');
 * await containerd.ctr(['-n', 'k8s.io', 'images', 'pull', '--hosts-dir', containerd.hostsDir, ref]);
 * await containerd.close();
 */
export async function startContainerd(): Promise<Containerd> {
  const dir = shortTempDir('ctd-');
  const socket = join(dir, 'c.sock');
  const hostsDir = join(dir, 'certs.d');
  mkdirSync(hostsDir);
  const config = join(dir, 'config.toml');
  writeFileSync(
    config,
    [
      'version = 2',
      `root = "${join(dir, 'root')}"`,
      `state = "${join(dir, 'state')}"`,
      'disabled_plugins = [',
      '  "io.containerd.snapshotter.v1.aufs",',
      '  "io.containerd.snapshotter.v1.btrfs",',
      '  "io.containerd.snapshotter.v1.devmapper",',
      '  "io.containerd.snapshotter.v1.zfs",',
      ']',
      '[grpc]',
      `  address = "${socket}"`,
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = "${join(dir, 'opt')}"`,
      '[plugins."io.containerd.grpc.v1.cri".containerd]',
      '  snapshotter = "native"',
      '[plugins."io.containerd.grpc.v1.cri".registry]',
      `  config_path = "${hostsDir}"`,
      '',
    ].join('\n'),
  );
  let child = spawn('containerd', ['--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = captureOutput(child);
  const ctr = runner('ctr', ['-a', socket], {});
  const stop = async () => {
    await stopProcess(child);
    for (const pid of pidsWithArguments(['-address', socket])) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // exited meanwhile
      }
    }
    rmSync(socket, { force: true });
  };
  const close = async () => {
    await stop();
    removeTree(dir);
  };
  const ready = () =>
    waitReady('containerd', child, log, async () => {
      // ctr blocks for seconds dialling a socket that is not there yet
      if (!existsSync(socket)) return false;
      await ctr(['version']);
      return true;
    });
  try {
    await ready();
  } catch (err) {
    await close();
    throw err;
  }
  return {
    socket,
    hostsDir,
    ctr,
    mirror(registryHost, mirrorUrl) {
      const i = registryHost.lastIndexOf(':');
      const name =
        i > 0 ? `${registryHost.slice(0, i)}_${registryHost.slice(i + 1)}_` : registryHost;
      mkdirSync(join(hostsDir, name), { recursive: true });
      const file = join(hostsDir, name, 'hosts.toml');
      writeFileSync(
        file,
        [
          `server = "${mirrorUrl}"`,
          '',
          `[host."${mirrorUrl}"]`,
          '  capabilities = ["pull", "resolve"]',
          '',
        ].join('\n'),
      );
      return file;
    },
    log: () => log(),
    stop,
    async start() {
      if (child.exitCode === null && child.signalCode === null)
        throw new Error('containerd is running; stop() it first');
      const earlier = log();
      child = spawn('containerd', ['--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
      const current = captureOutput(child);
      log = () => `${earlier}${current()}`;
      await ready();
    },
    close,
  };
}

/** GET /_ping on a daemon's unix socket. */
function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/_ping', method: 'GET' }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    req.on('error', () => resolve(false));
    req.end();
  });
}

/**
 * Starts dockerd on a temp unix socket with the vfs storage driver, no bridge and no iptables
 * (so it needs neither overlay nor netfilter), data-root, exec-root and pidfile in a fresh temp
 * dir, and the given containerd as its runtime. 127.0.0.0/8 registries are insecure by default,
 * so `docker pull 127.0.0.1:PORT/...` speaks plain HTTP after an HTTPS attempt.
 *
 * dockerd 20.10 also writes its trust key to /etc/docker/key.json (it has no option to move it).
 *
 * @example
 * const dockerd = await startDockerd({ containerdSocket: containerd.socket });
 * await dockerd.docker(['pull', '127.0.0.1:5000/team/app:v1']);
 * await dockerd.close();
 */
export async function startDockerd(options: { containerdSocket: string }): Promise<Dockerd> {
  // dockerd itself would wait a minute for a socket that is not there
  if (typeof options?.containerdSocket !== 'string' || !existsSync(options.containerdSocket)) {
    throw new TypeError('containerdSocket: the socket of a running containerd (startContainerd)');
  }
  const dir = shortTempDir('dkd-');
  const socket = join(dir, 'docker.sock');
  const configDir = join(dir, 'client');
  mkdirSync(configDir);
  const daemonJson = join(dir, 'daemon.json');
  writeFileSync(
    daemonJson,
    JSON.stringify({
      'storage-driver': 'vfs',
      iptables: false,
      ip6tables: false,
      bridge: 'none',
      'data-root': join(dir, 'd'),
      'exec-root': join(dir, 'x'),
      pidfile: join(dir, 'docker.pid'),
      hosts: [`unix://${socket}`],
    }),
  );
  const child = spawn(
    'dockerd',
    ['--config-file', daemonJson, '--containerd', options.containerdSocket],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const log = captureOutput(child);
  const host = `unix://${socket}`;
  const docker = runner(DOCKER_CLI, [], { DOCKER_HOST: host, DOCKER_CONFIG: configDir });
  const close = async () => {
    // dockerd stops its containers on SIGTERM (within its shutdown timeout) and unmounts
    await stopProcess(child);
    removeTree(dir);
  };
  try {
    await waitReady('dockerd', child, log, () => ping(socket));
  } catch (err) {
    await close();
    throw err;
  }
  return { host, configDir, docker, log, close };
}

/**
 * Writes `<dir>/rootfs.tar`: the smallest root file system the given Node runs in (the binary at
 * /usr/local/bin/node as in the official `node` images, the shared libraries `ldd` names,
 * /etc/passwd and /etc/group with `node` (1000) and `nobody`, a 1777 /tmp). `docker import` it
 * under the official image's name to stand in for that image where no registry is reachable.
 * Returns the tarball's path.
 */
export function writeNodeRootfs(dir: string, nodeBinary: string = process.execPath): string {
  return writeRootfs(dir, nodeBinary, { 'usr/local/bin/node': nodeBinary });
}

/**
 * Writes `<dir>/rootfs.tar` standing in for a glibc-only base image such as
 * gcr.io/distroless/cc-debian12: the shared libraries `ldd` names for `binary` (which itself is
 * left out), /etc/passwd and /etc/group with root, `nobody` and distroless's `nonroot` (65532),
 * a 1777 /tmp. Returns the tarball's path.
 */
export function writeGlibcRootfs(dir: string, binary: string): string {
  return writeRootfs(dir, binary, {});
}

function writeRootfs(dir: string, linkedBinary: string, files: Record<string, string>): string {
  const root = join(dir, 'rootfs');
  const put = (path: string, from: string) => {
    mkdirSync(join(root, path, '..'), { recursive: true });
    copyFileSync(from, join(root, path)); // follows symlinks: the file itself lands at `path`
  };
  for (const [path, from] of Object.entries(files)) put(path, from);
  const libraries = execFileSync('ldd', [linkedBinary], { encoding: 'utf8' })
    .split('\n')
    .map((line) => /(?:=>\s*)?(\/\S+)\s+\(0x[0-9a-f]+\)/.exec(line)?.[1])
    .filter((p): p is string => p !== undefined);
  if (libraries.length === 0) throw new Error(`ldd named no libraries for ${linkedBinary}`);
  for (const lib of libraries) put(lib.slice(1), lib);
  mkdirSync(join(root, 'etc'), { recursive: true });
  writeFileSync(
    join(root, 'etc', 'passwd'),
    'root:x:0:0:root:/root:/usr/sbin/nologin\n' +
      'node:x:1000:1000::/home/node:/usr/sbin/nologin\n' +
      'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' +
      'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n',
  );
  writeFileSync(
    join(root, 'etc', 'group'),
    'root:x:0:\nnode:x:1000:\nnonroot:x:65532:\nnogroup:x:65534:\n',
  );
  mkdirSync(join(root, 'tmp'));
  chmodSync(join(root, 'tmp'), 0o1777);
  const tar = join(dir, 'rootfs.tar');
  execFileSync('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', root, '-cf', tar, '.']);
  return tar;
}
