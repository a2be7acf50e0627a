import { CredentialsError } from './errors.js';
import type { RegistryCredentials } from './types.js';

/** Labels the cache reports with: never secrets. */
export interface CredentialLabels {
  readonly provider: string;
  readonly registry: string;
}

/** Hooks for the apps to export as metrics; all optional. */
export interface CredentialMetrics {
  /** Served from cache. */
  hit?(labels: CredentialLabels): void;
  /** Not in cache (or due for refresh): a fetch was started or joined. */
  miss?(labels: CredentialLabels): void;
  /** A fetch finished, successfully or not. */
  fetched?(labels: CredentialLabels, durationMs: number, ok: boolean): void;
  /** A fetch failed with this code. */
  error?(labels: CredentialLabels, code: string): void;
}

export interface CredentialCacheOptions {
  /** Clock in milliseconds. Default `Date.now`. */
  readonly now?: () => number;
  /**
   * How long before expiry to refresh, given the credential's lifetime (ms). Default: the larger
   * of 5 minutes and 10% of the lifetime, but never more than half of it (so short-lived
   * credentials are still reused).
   */
  readonly refreshMargin?: (lifetimeMs: number) => number;
  /** First backoff after a failed fetch, doubling per consecutive failure. Default 1000 ms. */
  readonly failureBackoffMs?: number;
  /** Longest backoff. Default 30000 ms. */
  readonly maxFailureBackoffMs?: number;
  /** Most keys kept; the oldest are dropped first. Default 1000. */
  readonly maxEntries?: number;
  readonly metrics?: CredentialMetrics;
}

interface Entry {
  value?: RegistryCredentials | undefined;
  /** When to start refreshing `value`. */
  refreshAt: number;
  inflight?: Promise<RegistryCredentials> | undefined;
  failure?: { error: unknown; until: number } | undefined;
  failures: number;
}

const MINUTE = 60_000;

/** The default refresh margin: max(5 min, 10% of lifetime), at most half the lifetime. */
export function defaultRefreshMargin(lifetimeMs: number): number {
  return Math.min(Math.max(5 * MINUTE, lifetimeMs / 10), lifetimeMs / 2);
}

/**
 * Credentials by key, reused until a refresh margin before they expire. Concurrent callers for
 * a key share one fetch; a refresh that fails leaves the still-valid credentials in service; a
 * failure is remembered only for a short, growing backoff, then the next call tries again.
 */
export class CredentialCache {
  readonly #entries = new Map<string, Entry>();
  readonly #now: () => number;
  readonly #margin: (lifetimeMs: number) => number;
  readonly #backoff: number;
  readonly #maxBackoff: number;
  readonly #maxEntries: number;
  readonly #metrics: CredentialMetrics;

  constructor(options: CredentialCacheOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#margin = options.refreshMargin ?? defaultRefreshMargin;
    this.#backoff = positive(options.failureBackoffMs ?? 1000, 'failureBackoffMs');
    this.#maxBackoff = positive(options.maxFailureBackoffMs ?? 30_000, 'maxFailureBackoffMs');
    this.#maxEntries = positive(options.maxEntries ?? 1000, 'maxEntries');
    this.#metrics = options.metrics ?? {};
  }

  /** Cached credentials for `key`, or the result of `fetch` (shared with concurrent callers). */
  async get(
    key: string,
    labels: CredentialLabels,
    fetch: () => Promise<RegistryCredentials>,
  ): Promise<RegistryCredentials> {
    const now = this.#now();
    let entry = this.#entries.get(key);
    const valid = entry?.value !== undefined && now < entry.value.expiresAt.getTime();
    if (entry?.value && valid && now < entry.refreshAt) {
      this.#metrics.hit?.(labels);
      return entry.value;
    }
    if (entry?.failure && now < entry.failure.until && !entry.inflight) {
      if (entry.value && valid) {
        this.#metrics.hit?.(labels);
        return entry.value;
      }
      throw entry.failure.error;
    }
    this.#metrics.miss?.(labels);
    if (!entry) {
      entry = { refreshAt: 0, failures: 0 };
      this.#remember(key, entry);
    }
    const inflight = entry.inflight ?? this.#start(key, entry, labels, fetch);
    if (entry.value && valid) {
      // Due for refresh but still good: serve it; the refresh runs on its own.
      inflight.catch(() => {});
      return entry.value;
    }
    return inflight;
  }

  /** Forgets one key (for example after the upstream refused its credentials), or all. */
  invalidate(key?: string): void {
    if (key === undefined) this.#entries.clear();
    else this.#entries.delete(key);
  }

  /** How many keys are held. */
  get size(): number {
    return this.#entries.size;
  }

  #start(
    key: string,
    entry: Entry,
    labels: CredentialLabels,
    fetch: () => Promise<RegistryCredentials>,
  ): Promise<RegistryCredentials> {
    const started = this.#now();
    const inflight = (async () => {
      try {
        const value = await fetch();
        const now = this.#now();
        const expires = value.expiresAt.getTime();
        if (!(expires > now)) {
          throw new CredentialsError(
            'INVALID_RESPONSE',
            labels,
            'the credentials fetched had already expired; check the clock of this host and of the provider',
          );
        }
        entry.value = value;
        entry.refreshAt = expires - this.#margin(expires - now);
        entry.failure = undefined;
        entry.failures = 0;
        this.#metrics.fetched?.(labels, now - started, true);
        return value;
      } catch (error) {
        const now = this.#now();
        entry.failures++;
        const backoff = Math.min(this.#backoff * 2 ** (entry.failures - 1), this.#maxBackoff);
        entry.failure = { error, until: now + backoff };
        this.#metrics.fetched?.(labels, now - started, false);
        this.#metrics.error?.(labels, error instanceof CredentialsError ? error.code : 'UNKNOWN');
        throw error;
      } finally {
        entry.inflight = undefined;
        // Keep the entry fresh in insertion order (most recently used last).
        if (this.#entries.get(key) === entry) {
          this.#entries.delete(key);
          this.#entries.set(key, entry);
        }
      }
    })();
    entry.inflight = inflight;
    return inflight;
  }

  #remember(key: string, entry: Entry): void {
    if (this.#entries.size >= this.#maxEntries) {
      const oldest = this.#entries.keys().next();
      if (!oldest.done) this.#entries.delete(oldest.value);
    }
    this.#entries.set(key, entry);
  }
}

function positive(value: number, name: string): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new TypeError(`${name} must be a positive number, got ${value}`);
  }
  return value;
}
