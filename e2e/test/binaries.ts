import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';

/** Bounds, not expectations: the machines are small and shared. */
const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 20_000;

const require = createRequire(import.meta.url);

/**
 * The built executable a workspace app declares as `bin[name]`, found through this project's
 * dependency on it (so Nx builds it first). Throws, naming the build command, when it is not built.
 */
export function binary(pkg: string, name: string): string {
  const manifest = require.resolve(`${pkg}/package.json`);
  const bin = (JSON.parse(readFileSync(manifest, 'utf8')) as { bin?: Record<string, string> })
    .bin?.[name];
  if (bin === undefined) throw new Error(`${pkg} declares no bin ${name}`);
  const file = join(dirname(manifest), bin);
  if (!existsSync(file))
    throw new Error(`${file} is missing: run nx run ${pkg}:build --outputStyle=static first`);
  return file;
}

/** A built binary running as a child process, logging JSON lines on stdout. */
export interface Running {
  readonly child: ChildProcess;
  /** Every stdout line that was a JSON object, in order. */
  lines(): ReadonlyArray<Record<string, unknown>>;
  /** Everything it printed on stdout and stderr, for failure messages and leak checks. */
  output(): string;
  /** Resolves with the first logged line satisfying `test`; rejects if the process exits first. */
  waitForLine(
    what: string,
    test: (line: Record<string, unknown>) => boolean,
  ): Promise<Record<string, unknown>>;
  /** SIGTERM (SIGKILL after a bound), then the exit code (null when killed by a signal). */
  stop(): Promise<number | null>;
}

/**
 * Starts `node <file> ...args` and waits until it logs a line whose `msg` is `ready`; a start
 * that fails rejects with what the process printed, and leaves no process behind.
 */
export async function startBinary(
  file: string,
  args: readonly string[],
  options: { ready: string; env?: Readonly<Record<string, string>> },
): Promise<Running> {
  const child = spawn(process.execPath, [file, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
  });
  const lines: Array<Record<string, unknown>> = [];
  let output = '';
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    output += `${line}\n`;
    try {
      const parsed = JSON.parse(line) as unknown;
      if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed))
        lines.push(parsed as Record<string, unknown>);
    } catch {
      // not a log line; kept in output()
    }
  });
  child.stderr?.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  const running: Running = {
    child,
    lines: () => lines,
    output: () => output,
    async waitForLine(what, test) {
      const deadline = Date.now() + READY_TIMEOUT_MS;
      for (;;) {
        const found = lines.find(test);
        if (found !== undefined) return found;
        if (child.exitCode !== null || child.signalCode !== null)
          throw new Error(
            `${file} exited (${child.exitCode ?? child.signalCode}) before ${what}:\n${output}`,
          );
        if (Date.now() > deadline) throw new Error(`no ${what} from ${file}:\n${output}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
        const code = await exited;
        clearTimeout(timer);
        return code;
      }
      return exited;
    },
  };
  try {
    await running.waitForLine(`the ${options.ready} line`, (l) => l.msg === options.ready);
  } catch (err) {
    await running.stop();
    throw err;
  }
  return running;
}

/** kubelet's hard bound on one exec credential plugin run. */
const PLUGIN_TIMEOUT_MS = 60_000;

/**
 * Runs `node <file> ...args` to completion with `stdin`, as kubelet runs an exec credential
 * plugin: killed after kubelet's one minute.
 */
export function runBinary(
  file: string,
  args: readonly string[],
  stdin: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), PLUGIN_TIMEOUT_MS);
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal !== null)
        reject(new Error(`${file} ${args.join(' ')} killed (${signal}): ${stderr}`));
      else resolve({ code, stdout, stderr });
    });
    child.stdin.end(stdin);
  });
}
