/** Limits on failed logins; see {@link LoginThrottle}. */
export interface LoginThrottleOptions {
  /** Failed logins per username per window before that username is refused. Default 10. */
  readonly maxFailuresPerUser?: number;
  /** Failed logins per client address per window before that address is refused. Default 50. */
  readonly maxFailuresPerAddress?: number;
  /** The window, seconds. Default 300. */
  readonly windowSeconds?: number;
  /** Most usernames and addresses remembered (each); the oldest are forgotten first. Default 10,000. */
  readonly maxEntries?: number;
  readonly now?: () => number;
}

interface Window {
  count: number;
  readonly until: number;
}

/**
 * Counts failed logins per username and per client address in fixed windows and says when to
 * refuse (HTTP 429 with Retry-After), so password guessing is slow whether it targets one user
 * from many places or many users from one. Memory is bounded: at most `maxEntries` keys each,
 * oldest dropped first. A success clears the username's count, not the address's.
 */
export class LoginThrottle {
  readonly #users = new Map<string, Window>();
  readonly #addresses = new Map<string, Window>();
  readonly #maxUser: number;
  readonly #maxAddress: number;
  readonly #windowMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;

  constructor(options: LoginThrottleOptions = {}) {
    this.#maxUser = options.maxFailuresPerUser ?? 10;
    this.#maxAddress = options.maxFailuresPerAddress ?? 50;
    this.#windowMs = (options.windowSeconds ?? 300) * 1000;
    this.#maxEntries = options.maxEntries ?? 10_000;
    this.#now = options.now ?? Date.now;
    for (const [k, v] of [
      ['maxFailuresPerUser', this.#maxUser],
      ['maxFailuresPerAddress', this.#maxAddress],
      ['windowSeconds', this.#windowMs],
      ['maxEntries', this.#maxEntries],
    ] as const) {
      if (!Number.isInteger(v) || v <= 0) throw new TypeError(`${k}: a positive integer`);
    }
  }

  /** Seconds until this login may be tried, or 0 when it may be tried now. */
  retryAfter(username: string | undefined, address: string | undefined): number {
    const now = this.#now();
    let until = 0;
    const user = username === undefined ? undefined : this.#live(this.#users, username, now);
    if (user && user.count >= this.#maxUser) until = Math.max(until, user.until);
    const addr = address === undefined ? undefined : this.#live(this.#addresses, address, now);
    if (addr && addr.count >= this.#maxAddress) until = Math.max(until, addr.until);
    return until === 0 ? 0 : Math.max(1, Math.ceil((until - now) / 1000));
  }

  failed(username: string | undefined, address: string | undefined): void {
    const now = this.#now();
    if (username !== undefined) this.#bump(this.#users, username, now);
    if (address !== undefined) this.#bump(this.#addresses, address, now);
  }

  succeeded(username: string | undefined): void {
    if (username !== undefined) this.#users.delete(username);
  }

  #live(map: Map<string, Window>, key: string, now: number): Window | undefined {
    const w = map.get(key);
    if (w && w.until <= now) {
      map.delete(key);
      return undefined;
    }
    return w;
  }

  #bump(map: Map<string, Window>, key: string, now: number): void {
    const w = this.#live(map, key, now);
    if (w) {
      w.count++;
      return;
    }
    if (map.size >= this.#maxEntries) map.delete(map.keys().next().value as string);
    map.set(key, { count: 1, until: now + this.#windowMs });
  }
}
