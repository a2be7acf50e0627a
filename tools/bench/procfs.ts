import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';

/** Resident memory of a process from /proc/PID/status (Linux), in bytes. */
export function rssOf(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1];
  if (kb === undefined) throw new Error(`/proc/${pid}/status has no ${field}`);
  return Number(kb) * 1024;
}

/**
 * The peak RSS of `pid` while `work` runs: the kernel's high-water mark (VmHWM), reset first
 * through `/proc/PID/clear_refs` (`5` resets the peak, Linux 4.0+), with VmRSS sampled every
 * 10 ms as a floor (and the only figure where the reset is not permitted).
 */
export async function peakRss<T>(
  pid: number,
  work: () => Promise<T>,
): Promise<{ peak: number; method: string; result: T }> {
  let reset = true;
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
  } catch {
    reset = false;
  }
  let sampled = rssOf(pid, 'VmRSS');
  const timer = setInterval(() => {
    sampled = Math.max(sampled, rssOf(pid, 'VmRSS'));
  }, 10);
  try {
    const result = await work();
    sampled = Math.max(sampled, rssOf(pid, 'VmRSS'));
    const peak = reset ? Math.max(sampled, rssOf(pid, 'VmHWM')) : sampled;
    return { peak, method: reset ? 'VmHWM' : 'VmRSS sampled every 10 ms', result };
  } finally {
    clearInterval(timer);
  }
}

let ticksPerSecond: number | undefined;

/** User plus system CPU time the processes used so far (/proc/PID/stat), in milliseconds. */
export function cpuMs(pids: readonly number[]): number {
  ticksPerSecond ??=
    Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
  let ticks = 0;
  for (const pid of pids) {
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return (ticks * 1000) / ticksPerSecond;
}

/** The direct children of `pid`, optionally only those whose command name is `comm`. */
export function childrenOf(pid: number, comm?: string): number[] {
  const pids = readdirSync(`/proc/${pid}/task`).flatMap((task) =>
    readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number),
  );
  return comm === undefined
    ? pids
    : pids.filter((child) => {
        try {
          return readFileSync(`/proc/${child}/comm`, 'utf8').trim() === comm;
        } catch {
          return false;
        }
      });
}
