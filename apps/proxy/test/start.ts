import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export const main = join(import.meta.dirname, '..', 'dist', 'main.js');

export interface Started {
  readonly child: ChildProcess;
  readonly address: string;
  /** Every JSON line the proxy logged so far (kept up to date while it runs). */
  readonly lines: Array<Record<string, unknown>>;
  /** Resolves once a logged line satisfies `test` (lines are written when a response closes). */
  waitForLine(test: (line: Record<string, unknown>) => boolean): Promise<void>;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

/** Starts the built binary (with `env` added to ours) and waits for its "listening" log line. */
export async function start(args: string[], env?: NodeJS.ProcessEnv): Promise<Started> {
  const child = spawn(process.execPath, [main, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(env ? { env: { ...process.env, ...env } } : {}),
  });
  const lines: Array<Record<string, unknown>> = [];
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const address = await new Promise<string>((resolve, reject) => {
    const input = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    input.on('line', (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      lines.push(entry);
      if (entry.msg === 'listening' && typeof entry.address === 'string') resolve(entry.address);
    });
    exited.then((code) => reject(new Error(`registry-proxy exited ${code}: ${stderr}`)));
  });
  return {
    child,
    address,
    lines,
    waitForLine: async (test) => {
      const deadline = Date.now() + 30_000;
      while (!lines.some(test)) {
        if (Date.now() > deadline || child.exitCode !== null)
          throw new Error(
            `no such log line; got:\n${lines.map((l) => JSON.stringify(l)).join('\n')}`,
          );
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}
