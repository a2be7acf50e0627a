/** Pure helpers of the proxy benchmark: argument and wrk output parsing, figures as text. */

const MiB = 1024 * 1024;

/**
 * A byte size as given on the command line: `1073741824`, `256M`, `256MiB`, `1G`, `1GiB`, `512K`.
 * Units are binary (`M` is MiB).
 *
 * @throws TypeError naming the accepted forms
 */
export function parseSize(text: string, min = MiB): number {
  const m = /^(\d+(?:\.\d+)?)\s*(?:([KMG])(?:i?B)?|B)?$/i.exec(text.trim());
  if (!m) throw new TypeError(`size ${JSON.stringify(text)} is not a size such as 256M or 1G`);
  const unit = (m[2] ?? '').toUpperCase();
  const factor = unit === 'K' ? 1024 : unit === 'M' ? MiB : unit === 'G' ? 1024 * MiB : 1;
  const bytes = Math.round(Number(m[1]) * factor);
  if (bytes < min) throw new TypeError(`size ${JSON.stringify(text)} is below ${formatSize(min)}`);
  return bytes;
}

/** `1073741824` -> `1 GiB`, `268435456` -> `256 MiB`, `1536` -> `1.5 KiB`. */
export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(2)} ${units[i]}`;
}

/** What one `wrk --latency` run printed, times in milliseconds. */
export interface WrkResult {
  readonly requests: number;
  readonly requestsPerSec: number;
  readonly latencyMs: {
    readonly p50: number;
    readonly p75: number;
    readonly p90: number;
    readonly p99: number;
  };
  /** Responses with a status outside 2xx/3xx. */
  readonly non2xx3xx: number;
  readonly socketErrors: {
    readonly connect: number;
    readonly read: number;
    readonly write: number;
    readonly timeout: number;
  };
}

/** A wrk time (`812.00us`, `1.23ms`, `2.00s`, `1.50m`, `1.00h`) in milliseconds. */
export function parseWrkTime(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(us|ms|s|m|h)$/.exec(text.trim());
  if (!m)
    throw new TypeError(`wrk time ${JSON.stringify(text)} is not a number with us, ms, s, m or h`);
  const scale = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[
    m[2] as 'us' | 'ms' | 's' | 'm' | 'h'
  ];
  return Number(m[1]) * scale;
}

/**
 * Reads the summary wrk prints with `--latency`: `Requests/sec`, the total request count, the
 * 50/75/90/99% latency distribution, non-2xx/3xx responses and socket errors (both lines are
 * absent when zero).
 *
 * @throws Error when the output lacks the request rate or the latency distribution
 */
export function parseWrkOutput(output: string): WrkResult {
  const rate = /^Requests\/sec:\s+([\d.]+)\s*$/m.exec(output);
  const total = /^\s*(\d+) requests in /m.exec(output);
  const percentile = (p: number) => {
    const m = new RegExp(`^\\s+${p}%\\s+(\\S+)\\s*$`, 'm').exec(output);
    if (!m?.[1]) throw new Error(`wrk output has no ${p}% latency (was --latency given?)`);
    return parseWrkTime(m[1]);
  };
  if (!rate?.[1] || !total?.[1]) throw new Error('wrk output has no Requests/sec summary');
  const non2xx = /^\s*Non-2xx or 3xx responses:\s+(\d+)/m.exec(output);
  const errors = /^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/m.exec(
    output,
  );
  return {
    requests: Number(total[1]),
    requestsPerSec: Number(rate[1]),
    latencyMs: {
      p50: percentile(50),
      p75: percentile(75),
      p90: percentile(90),
      p99: percentile(99),
    },
    non2xx3xx: Number(non2xx?.[1] ?? 0),
    socketErrors: {
      connect: Number(errors?.[1] ?? 0),
      read: Number(errors?.[2] ?? 0),
      write: Number(errors?.[3] ?? 0),
      timeout: Number(errors?.[4] ?? 0),
    },
  };
}

/** The middle value (the mean of the two middle ones for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError('median of no values');
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** The nearest-rank `p`th percentile (0 < p <= 100) of `values`. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new RangeError('percentile of no values');
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile ${p} is not in (0, 100]`);
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.ceil((p / 100) * sorted.length) - 1] as number;
}

/**
 * `count` byte ranges (`start`..`end` inclusive, as in a `Range: bytes=start-end` header) that
 * cover `size` bytes with no gap or overlap; the last takes the remainder.
 */
export function splitRanges(size: number, count: number): { start: number; end: number }[] {
  if (!Number.isInteger(count) || count < 1 || count > size)
    throw new RangeError(`cannot split ${size} bytes into ${count} ranges`);
  const part = Math.floor(size / count);
  return Array.from({ length: count }, (_, i) => ({
    start: i * part,
    end: i === count - 1 ? size - 1 : (i + 1) * part - 1,
  }));
}

/** Rows of cells as aligned text columns: the first column left-aligned, the others right. */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/**
 * The sum of every sample of the counter `name` in a Prometheus text exposition, whatever its
 * labels (`name{...} value` and `name value` lines; comments skipped). 0 when there is none.
 */
export function counterSum(exposition: string, name: string): number {
  let sum = 0;
  for (const line of exposition.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== '{' && rest[0] !== ' ') continue;
    const value = Number(
      rest
        .slice(rest.lastIndexOf('}') + 1)
        .trim()
        .split(/\s+/)[0],
    );
    if (Number.isFinite(value)) sum += value;
  }
  return sum;
}

/**
 * `realm` and `service` of a `Bearer` challenge (`WWW-Authenticate`), quoted or not.
 *
 * @throws Error when it is not a Bearer challenge with a realm
 */
export function parseBearerChallenge(header: string): { realm: string; service: string } {
  const m = /^\s*Bearer\s+(.*)$/i.exec(header);
  if (!m) throw new Error(`not a Bearer challenge: ${JSON.stringify(header)}`);
  const params: Record<string, string> = {};
  for (const p of (m[1] ?? '').matchAll(/([A-Za-z]+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) {
    params[(p[1] ?? '').toLowerCase()] = p[2]?.replace(/\\(.)/g, '$1') ?? p[3] ?? '';
  }
  if (!params.realm) throw new Error(`Bearer challenge without a realm: ${JSON.stringify(header)}`);
  return { realm: params.realm, service: params.service ?? '' };
}

/**
 * How many fetches a cache that renews `marginMs` before expiry needs over `runMs` for one key:
 * the first, then one per `lifetimeMs - marginMs`.
 */
export function refreshesWithin(runMs: number, lifetimeMs: number, marginMs: number): number {
  const every = lifetimeMs - marginMs;
  if (!(every > 0)) throw new RangeError('the margin must be shorter than the lifetime');
  return 1 + Math.floor(runMs / every);
}
