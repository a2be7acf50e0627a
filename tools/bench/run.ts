import { spawnSync } from 'node:child_process';
import { Cleanup } from './processes.ts';

/** A progress line on stderr, stamped with the seconds since the bench started. */
export function step(message: string): void {
  process.stderr.write(
    `[bench ${(performance.now() / 1000).toFixed(1).padStart(6)}s] ${message}\n`,
  );
}

/**
 * Fails early, naming the Debian package, when a program the bench runs is missing.
 * `needed` maps program to package.
 */
export function requirePrograms(needed: Readonly<Record<string, string>>): void {
  const missing = Object.entries(needed).filter(
    ([program]) => spawnSync('sh', ['-c', `command -v ${program}`]).status !== 0,
  );
  if (missing.length > 0) {
    throw new Error(
      `missing ${missing.map(([p, pkg]) => `${p} (Debian ${pkg})`).join(', ')}; node tools/debian-deps.mjs installs them`,
    );
  }
}

/** The first line `command args` prints (stdout, else stderr). */
export function versionOf(command: string, args: string[]): string {
  const out = spawnSync(command, args, { encoding: 'utf8' });
  return `${out.stdout}${out.stderr}`.split('\n')[0]?.trim() ?? '?';
}

/**
 * Runs a bench's `main` and stops everything it registered with the cleanup afterwards, also on
 * errors, SIGINT/SIGTERM (exit 130) and a process exit without awaiting (the synchronous last
 * resort). Exit code 1 when `main` throws: the bench could not measure.
 */
export async function runBench(main: (cleanup: Cleanup) => Promise<void>): Promise<void> {
  const cleanup = new Cleanup();
  let interrupted = false;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (interrupted) return;
      interrupted = true;
      step(`${signal}: stopping everything`);
      cleanup.run().finally(() => process.exit(130));
    });
  }
  process.on('exit', () => cleanup.runSync());
  try {
    await main(cleanup);
  } catch (err) {
    // After a signal, errors are those of the processes being stopped under the run.
    if (!interrupted) {
      process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    }
  } finally {
    if (!interrupted) {
      step('stopping everything');
      await cleanup.run();
    }
  }
}
