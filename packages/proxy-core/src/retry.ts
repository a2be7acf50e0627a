import { discardBody } from './node-stream.js';

/** How the proxy retries upstream requests; every field optional, defaults documented. */
export interface RetryOptions {
  /** Attempts per request, the first included; 1 turns retries off. Default 3. */
  readonly attempts?: number;
  /**
   * Retries may add at most this fraction on top of the requests of the last
   * {@link windowMs} (process-wide, all upstreams), so a failing upstream is not hammered.
   * Default 0.2.
   */
  readonly budgetRatio?: number;
  /** Retries always allowed per window, whatever the traffic (so a quiet proxy still retries). Default 10. */
  readonly minPerWindow?: number;
  /** The sliding window, in ms. Default 10 s. */
  readonly windowMs?: number;
  /** First backoff; it doubles per retry, full jitter, capped at {@link maxBackoffMs}. Default 100 ms. */
  readonly backoffMs?: number;
  /** Longest backoff; a `Retry-After` asking for more is not retried but passed on. Default 1 s. */
  readonly maxBackoffMs?: number;
}

const BUCKETS = 10;

/**
 * The retry budget: counts first attempts and retries in a sliding window (ten buckets) and
 * allows a retry while retries stay under `minPerWindow + budgetRatio * requests`.
 */
export class RetryBudget {
  readonly attempts: number;
  readonly backoffMs: number;
  readonly maxBackoffMs: number;
  readonly #ratio: number;
  readonly #floor: number;
  readonly #bucketMs: number;
  readonly #now: () => number;
  readonly #requests = new Array<number>(BUCKETS).fill(0);
  readonly #retries = new Array<number>(BUCKETS).fill(0);
  #bucket = 0;

  constructor(options: RetryOptions = {}, now: () => number = Date.now) {
    const {
      attempts = 3,
      budgetRatio = 0.2,
      minPerWindow = 10,
      windowMs = 10_000,
      backoffMs = 100,
      maxBackoffMs = 1000,
    } = options;
    const check = (name: string, value: number, ok: boolean) => {
      if (!ok) throw new TypeError(`retries.${name}: got ${value}`);
    };
    check('attempts', attempts, Number.isInteger(attempts) && attempts >= 1 && attempts <= 10);
    check('budgetRatio', budgetRatio, budgetRatio >= 0 && budgetRatio <= 1);
    check('minPerWindow', minPerWindow, Number.isInteger(minPerWindow) && minPerWindow >= 0);
    check('windowMs', windowMs, Number.isInteger(windowMs) && windowMs >= BUCKETS);
    check('backoffMs', backoffMs, Number.isInteger(backoffMs) && backoffMs >= 0);
    check('maxBackoffMs', maxBackoffMs, Number.isInteger(maxBackoffMs) && maxBackoffMs >= 0);
    this.attempts = attempts;
    this.backoffMs = backoffMs;
    this.maxBackoffMs = maxBackoffMs;
    this.#ratio = budgetRatio;
    this.#floor = minPerWindow;
    this.#bucketMs = windowMs / BUCKETS;
    this.#now = now;
    this.#bucket = Math.floor(now() / this.#bucketMs);
  }

  /** Moves the window to now, zeroing the buckets that fell out of it. */
  #advance(): number {
    const current = Math.floor(this.#now() / this.#bucketMs);
    const steps = Math.min(current - this.#bucket, BUCKETS);
    for (let i = 1; i <= steps; i++) {
      const at = (this.#bucket + i) % BUCKETS;
      this.#requests[at] = 0;
      this.#retries[at] = 0;
    }
    if (current > this.#bucket) this.#bucket = current;
    return this.#bucket % BUCKETS;
  }

  /** Counts a first attempt. */
  request(): void {
    const at = this.#advance();
    this.#requests[at] = (this.#requests[at] ?? 0) + 1;
  }

  /** Takes a retry from the budget; false when the budget is spent. */
  tryRetry(): boolean {
    const at = this.#advance();
    const requests = this.#requests.reduce((a, b) => a + b, 0);
    const retries = this.#retries.reduce((a, b) => a + b, 0);
    if (retries >= this.#floor + this.#ratio * requests) return false;
    this.#retries[at] = (this.#retries[at] ?? 0) + 1;
    return true;
  }

  /** The wait before retry number `retry` (1-based): exponential, full jitter, capped. */
  backoff(retry: number, random: () => number = Math.random): number {
    const ceiling = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** (retry - 1));
    return Math.round(ceiling * random());
  }
}

/** Waits `ms`, or rejects as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new Error('aborted'));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(new Error('aborted'));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Statuses that say "try again" about a gateway or an overloaded server (RFC 9110 §15.6). */
export const RETRIED_STATUSES: ReadonlySet<number> = new Set([502, 503, 504]);

/**
 * Seconds a `Retry-After` asks for (RFC 9110 §10.2.3: delay-seconds or an HTTP-date), or
 * undefined when absent or unreadable.
 */
export function retryAfterMs(value: string | null, now: number): number | undefined {
  if (value === null) return undefined;
  const trimmed = value.trim();
  if (/^\d{1,9}$/.test(trimmed)) return Number(trimmed) * 1000;
  // IMF-fixdate only (the form senders must use): Date.parse alone reads "-1" as a year.
  if (!/^[A-Za-z]{3}, \d{2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(trimmed))
    return undefined;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** How {@link retrying} treats one kind of upstream request. */
export interface RetryHow {
  /** Whether the request may be sent again (GET, HEAD); others get one attempt. */
  readonly idempotent: boolean;
  /** Which thrown errors mean the upstream could not be reached (retried); others are rethrown. */
  readonly unreachable: (err: unknown) => boolean;
  /**
   * With a clock: a short `Retry-After` is waited for, and an answer asking for longer than
   * `maxBackoffMs` is passed on rather than retried. Without: `Retry-After` is not read.
   */
  readonly retryAfterClock?: () => number;
  /** The client's signal: no retry once it aborted, and the backoff ends early. */
  readonly signal?: AbortSignal;
  readonly onRetry?: (reason: string) => void;
  /** A retry the request was eligible for but the budget refused. */
  readonly onDenied?: () => void;
}

/**
 * Sends `send()` and, while it throws an unreachable error or answers 502/503/504, sends it again
 * within `budget`: at most `attempts` in all, each retry taken from the process-wide budget,
 * after a jittered backoff (or the `Retry-After` asked for, when read and longer). When no retry
 * is left, the last answer is returned or the last error thrown.
 */
export async function retrying(
  budget: RetryBudget,
  send: () => Promise<Response>,
  how: RetryHow,
): Promise<Response> {
  budget.request();
  for (let retry = 1; ; retry++) {
    let res: Response | undefined;
    let failure: unknown;
    let reason: string | undefined;
    try {
      res = await send();
      if (RETRIED_STATUSES.has(res.status)) reason = String(res.status);
    } catch (err) {
      if (!how.unreachable(err)) throw err;
      failure = err;
      reason = 'unreachable';
    }
    if (reason === undefined) return res as Response;
    const wait =
      res && how.retryAfterClock
        ? retryAfterMs(res.headers.get('retry-after'), how.retryAfterClock())
        : undefined;
    const eligible =
      how.idempotent &&
      retry < budget.attempts &&
      (wait === undefined || wait <= budget.maxBackoffMs) &&
      how.signal?.aborted !== true;
    if (!eligible || !budget.tryRetry()) {
      if (eligible) how.onDenied?.();
      if (res) return res;
      throw failure;
    }
    how.onRetry?.(reason);
    if (res) await discardBody(res);
    await sleep(Math.max(wait ?? 0, budget.backoff(retry)), how.signal);
  }
}
