import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseWrkOutput, type WrkResult } from './parse.ts';
import { childrenOf } from './procfs.ts';

/**
 * Everything the benchmark started, stopped in reverse order by `run()`. Children and temp dirs
 * are also tracked for `runSync()`, the last resort when the process exits without awaiting:
 * it kills every child process left and removes the temp dirs.
 */
export class Cleanup {
  readonly #steps: { name: string; step: () => Promise<void> | void }[] = [];
  readonly #children = new Set<ChildProcess>();
  readonly #dirs = new Set<string>();
  #stopping = false;

  /** True once `run()` began: nothing new may start. */
  get stopping(): boolean {
    return this.#stopping;
  }

  add(name: string, step: () => Promise<void> | void): void {
    this.#steps.push({ name, step });
  }

  dir(path: string): string {
    this.#dirs.add(path);
    this.add(`remove ${path}`, () => {
      rmSync(path, { recursive: true, force: true });
      this.#dirs.delete(path);
    });
    return path;
  }

  child(child: ChildProcess): void {
    if (this.#stopping) child.kill('SIGKILL');
    this.#children.add(child);
    child.once('exit', () => this.#children.delete(child));
  }

  async run(): Promise<void> {
    this.#stopping = true;
    for (let entry = this.#steps.pop(); entry; entry = this.#steps.pop()) {
      try {
        await entry.step();
      } catch (err) {
        process.stderr.write(`bench: cleanup "${entry.name}" failed: ${String(err)}\n`);
      }
    }
  }

  runSync(): void {
    for (const child of this.#children) child.kill('SIGKILL');
    // Also those started by helpers that keep their child to themselves (the registry stand-in).
    for (const pid of childrenOf(process.pid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const dir of this.#dirs) rmSync(dir, { recursive: true, force: true });
  }
}

/** A started program, its output kept for error messages. */
export interface Program {
  readonly child: ChildProcess;
  readonly pid: number;
  log(): string;
  stop(): Promise<void>;
}

/** Starts `command`, registers it with `cleanup`, keeps the last 64 KiB of its output. */
export function startProgram(
  cleanup: Cleanup,
  command: string,
  args: readonly string[],
  stopSignal: NodeJS.Signals = 'SIGTERM',
): Program {
  if (cleanup.stopping) throw new Error(`not starting ${command}: the bench is stopping`);
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  cleanup.child(child);
  let output = '';
  const keep = (c: Buffer) => {
    output = (output + c.toString()).slice(-64 * 1024);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('error', (err) => {
    output += `\n${String(err)}`;
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
    child.kill(stopSignal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  cleanup.add(`stop ${command}`, stop);
  return { child, pid: child.pid ?? -1, log: () => output, stop };
}

/** Polls `url` until it answers `status`, failing early if `program` exits. */
export async function waitForHttp(
  program: Program,
  name: string,
  url: string,
  status = 200,
): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (program.child.exitCode !== null || program.child.signalCode !== null)
      throw new Error(
        `${name} exited (${program.child.exitCode ?? program.child.signalCode}):\n${program.log()}`,
      );
    try {
      const res = await fetch(url);
      await res.body?.cancel();
      if (res.status === status) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${name} did not answer ${url}:\n${program.log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * nginx as an operator would put it in front of a registry: an upstream block with idle
 * keepalive connections, HTTP/1.1 to the upstream, buffering on with large buffers and no temp
 * file spill (bytes stream through memory), sendfile/tcp_nopush, no access log. Its own prefix,
 * pid, error log and temp paths live in `dir`.
 */
export function nginxConfig(dir: string, listen: string, upstream: string): string {
  const temp = (name: string) => join(dir, 'temp', name);
  return `# registry-proxy bench baseline (tools/bench/proxy.ts)
${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes auto;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 1024; }
http {
  access_log off;
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 65s;
  keepalive_requests 100000;
  client_body_temp_path ${temp('client')};
  proxy_temp_path ${temp('proxy')};
  fastcgi_temp_path ${temp('fastcgi')};
  uwsgi_temp_path ${temp('uwsgi')};
  scgi_temp_path ${temp('scgi')};
  upstream registry {
    server ${upstream};
    keepalive 64;
  }
  server {
    listen ${listen};
    client_max_body_size 0;
    location /v2/ {
      proxy_pass http://registry;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_buffering on;
      proxy_buffers 16 256k;
      proxy_buffer_size 256k;
      proxy_busy_buffers_size 512k;
      proxy_max_temp_file_size 0;
      proxy_read_timeout 300s;
    }
  }
}
`;
}

/** nginx in the foreground (`daemon off`), proxying `upstream` (`127.0.0.1:PORT`) on `listen`. */
export async function startNginx(
  cleanup: Cleanup,
  dir: string,
  listen: string,
  upstream: string,
): Promise<Program> {
  mkdirSync(join(dir, 'temp'), { recursive: true });
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, nginxConfig(dir, listen, upstream));
  const errorLog = join(dir, 'error.log');
  const nginx = startProgram(
    cleanup,
    'nginx',
    ['-p', dir, '-c', conf, '-e', errorLog, '-g', 'daemon off;'],
    'SIGQUIT',
  );
  const withLog = {
    ...nginx,
    log: () => `${nginx.log()}${existsSync(errorLog) ? readFileSync(errorLog, 'utf8') : ''}`,
  };
  await waitForHttp(withLog, 'nginx', `http://${listen}/v2/`);
  return withLog;
}

/** Our proxy's built binary (`apps/proxy/dist/main.js serve`) on the Node running this. */
export interface ProxyProcess extends Program {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
}

/**
 * Starts `node main.js serve --config FILE` and waits for its `listening` log line, which names
 * the port it got (the config listens on port 0).
 */
export async function startProxy(
  cleanup: Cleanup,
  main: string,
  configFile: string,
  nodeArgs: readonly string[] = [],
): Promise<ProxyProcess> {
  const proxy = startProgram(cleanup, process.execPath, [
    ...nodeArgs,
    main,
    'serve',
    '--config',
    configFile,
  ]);
  const address = await new Promise<string>((resolve, reject) => {
    let lines = '';
    const timer = setTimeout(() => {
      reject(new Error(`registry-proxy did not log "listening" within 15 s:\n${proxy.log()}`));
    }, 15_000);
    const onData = (c: Buffer) => {
      lines += c.toString();
      for (const line of lines.split('\n')) {
        if (!line.includes('"listening"')) continue;
        const entry = JSON.parse(line) as { msg?: string; address?: string };
        if (entry.msg === 'listening' && entry.address) {
          clearTimeout(timer);
          proxy.child.stdout?.off('data', onData);
          resolve(entry.address);
        }
      }
    };
    proxy.child.stdout?.on('data', onData);
    proxy.child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`registry-proxy exited ${code}:\n${proxy.log()}`));
    });
  });
  return { ...proxy, url: `http://${address}` };
}

/** One `wrk` run, its output parsed. */
export async function runWrk(
  cleanup: Cleanup,
  url: string,
  options: {
    threads: number;
    connections: number;
    seconds: number;
    headers: Readonly<Record<string, string>>;
  },
): Promise<WrkResult & { output: string }> {
  const args = [
    `-t${options.threads}`,
    `-c${options.connections}`,
    `-d${options.seconds}s`,
    '--latency',
    ...Object.entries(options.headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]),
    url,
  ];
  const wrk = startProgram(cleanup, 'wrk', args);
  const code = await new Promise<number | null>((resolve) => wrk.child.once('close', resolve));
  if (code !== 0) throw new Error(`wrk ${args.join(' ')} exited ${code}:\n${wrk.log()}`);
  return { ...parseWrkOutput(wrk.log()), output: wrk.log() };
}
