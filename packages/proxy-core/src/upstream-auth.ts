import { parseChallenges } from './challenge.js';
import type { ResolvedUpstream } from './config.js';
import { RegistryError } from './errors.js';
import type { ProxyObserver } from './observe.js';
import { type RetryBudget, retrying } from './retry.js';

/** Username and password for an upstream, or none (anonymous). */
export type UpstreamCredentials = () => Promise<{ username: string; password: string } | undefined>;

interface Cached {
  readonly header: string;
  readonly expiresAt: number;
}

/** Spec default when a token response has no `expires_in` (distribution token spec). */
const DEFAULT_TOKEN_SECONDS = 60;
const TOKEN_BODY_MAX = 1 << 20;

/**
 * Authorization for one upstream: answers its `WWW-Authenticate` challenges (Basic, or the
 * Bearer token flow: GET `realm?service&scope` with Basic credentials or anonymously, and the
 * OAuth2 POST form where GET is not offered), caches the result per scope until `expires_in`
 * minus a margin, and shares one token fetch among concurrent requests for a scope.
 */
export class UpstreamAuth {
  readonly #upstream: ResolvedUpstream;
  readonly #credentials: UpstreamCredentials;
  readonly #fetch: typeof fetch;
  readonly #now: () => number;
  readonly #observer: ProxyObserver;
  readonly #timeoutMs: number;
  readonly #budget: RetryBudget | undefined;
  readonly #cache = new Map<string, Cached>();
  readonly #inflight = new Map<string, Promise<string>>();
  /** Token fetches made (for metrics and tests). */
  tokenFetches = 0;

  constructor(options: {
    upstream: ResolvedUpstream;
    credentials: UpstreamCredentials;
    fetch: typeof fetch;
    now: () => number;
    observer?: ProxyObserver;
    /** Per token request. Default 30 s. */
    timeoutMs?: number;
    /** Retries token GETs (not the POST form) on connection failures and 502/503/504. */
    budget?: RetryBudget;
  }) {
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#budget = options.budget;
    this.#upstream = options.upstream;
    this.#credentials = options.credentials;
    this.#fetch = options.fetch;
    this.#now = options.now;
    this.#observer = options.observer ?? {};
  }

  /** The Authorization header cached for `scope`, if still good. */
  cached(scope: string): string | undefined {
    const hit = this.#cache.get(scope);
    if (hit && hit.expiresAt > this.#now()) return hit.header;
    if (hit) this.#cache.delete(scope);
    return undefined;
  }

  /** Forgets the cached header for `scope` (it was refused). */
  invalidate(scope: string): void {
    this.#cache.delete(scope);
  }

  /**
   * Answers the challenge of a 401 and returns the Authorization header to retry with: a token
   * another request fetched meanwhile if there is one (not the `refused` one), else a shared
   * fetch.
   */
  authorize(res: Response, scope: string, refused?: string): Promise<string> {
    const fresh = this.cached(scope);
    if (fresh !== undefined && fresh !== refused) return Promise.resolve(fresh);
    const running = this.#inflight.get(scope);
    if (running) return running;
    const started = this.#answer(res.headers.get('www-authenticate'), scope).finally(() =>
      this.#inflight.delete(scope),
    );
    this.#inflight.set(scope, started);
    return started;
  }

  async #answer(header: string | null, scope: string): Promise<string> {
    const challenges = parseChallenges(header);
    const bearer = challenges.find((c) => c.scheme === 'bearer' && c.params.realm);
    const basic = challenges.find((c) => c.scheme === 'basic');
    const name = this.#upstream.name;
    if (!bearer && !basic) {
      throw new RegistryError(
        502,
        'UNAVAILABLE',
        `upstream ${name} asked for authentication the proxy does not speak`,
      );
    }
    const creds = await this.#credentials();
    if (!bearer) {
      if (!creds) {
        throw new RegistryError(
          502,
          'UNAVAILABLE',
          `upstream ${name} requires credentials; configure credentials for it`,
        );
      }
      const value = basicAuthorization(creds);
      this.#cache.set(scope, { header: value, expiresAt: Number.POSITIVE_INFINITY });
      return value;
    }
    let realm: URL;
    try {
      realm = new URL(bearer.params.realm ?? '');
    } catch {
      throw new RegistryError(
        502,
        'UNAVAILABLE',
        `upstream ${name} sent a token realm that is not a URL`,
      );
    }
    if (
      realm.protocol !== 'https:' &&
      !(realm.protocol === 'http:' && this.#upstream.base.protocol === 'http:')
    ) {
      throw new RegistryError(
        502,
        'UNAVAILABLE',
        `upstream ${name} sent a token realm that is not https`,
      );
    }
    const service = bearer.params.service;
    const { token, seconds } = await this.#token(realm, service, scope, creds);
    const lifetime = Math.max(seconds, 1) * 1000;
    const margin = Math.min(Math.max(10_000, lifetime / 10), lifetime / 2);
    const value = `Bearer ${token}`;
    this.#cache.set(scope, { header: value, expiresAt: this.#now() + lifetime - margin });
    return value;
  }

  async #token(
    realm: URL,
    service: string | undefined,
    scope: string,
    creds: { username: string; password: string } | undefined,
  ): Promise<{ token: string; seconds: number }> {
    try {
      const got = await this.#fetchToken(realm, service, scope, creds);
      this.#observer.upstreamTokenFetch?.(this.#upstream.name, true);
      return got;
    } catch (err) {
      this.#observer.upstreamTokenFetch?.(this.#upstream.name, false);
      throw err;
    }
  }

  /**
   * The token GET, retried (budget permitting) when the token service cannot be reached or
   * answers 502/503/504; the last failure or answer is the caller's.
   */
  #get(url: URL, headers: Record<string, string>): Promise<Response> {
    const get = () =>
      this.#fetch(url, {
        headers,
        redirect: 'error',
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    if (this.#budget === undefined) return get();
    const name = this.#upstream.name;
    return retrying(this.#budget, get, {
      idempotent: true,
      // our own timeout is the caller's 504, not a reason to wait longer
      unreachable: (err) => (err as Error).name !== 'TimeoutError',
      onRetry: (reason) => this.#observer.upstreamRetry?.(name, reason),
      onDenied: () => this.#observer.upstreamRetryDenied?.(name),
    });
  }

  async #fetchToken(
    realm: URL,
    service: string | undefined,
    scope: string,
    creds: { username: string; password: string } | undefined,
  ): Promise<{ token: string; seconds: number }> {
    this.tokenFetches++;
    const name = this.#upstream.name;
    const url = new URL(realm);
    if (service) url.searchParams.set('service', service);
    url.searchParams.set('scope', scope);
    const headers: Record<string, string> = { 'user-agent': 'docker-registry-proxy' };
    if (creds) headers.authorization = basicAuthorization(creds);
    let res: Response;
    try {
      res = await this.#get(url, headers);
      if ((res.status === 404 || res.status === 405) && creds) {
        await res.body?.cancel();
        // The OAuth2 form (distribution token spec, "OAuth2 Token Authentication").
        const form = new URLSearchParams({
          grant_type: 'password',
          username: creds.username,
          password: creds.password,
          client_id: 'docker-registry-proxy',
          scope,
        });
        if (service) form.set('service', service);
        res = await this.#fetch(realm, {
          method: 'POST',
          headers: {
            'content-type': 'application/x-www-form-urlencoded',
            'user-agent': 'docker-registry-proxy',
          },
          body: form,
          redirect: 'error',
          signal: AbortSignal.timeout(this.#timeoutMs),
        });
      }
    } catch (err) {
      if ((err as Error).name === 'TimeoutError') {
        throw new RegistryError(
          504,
          'UNAVAILABLE',
          `the token service of upstream ${name} did not answer within ${this.#timeoutMs} ms`,
        );
      }
      throw new RegistryError(
        502,
        'UNAVAILABLE',
        `the token service of upstream ${name} is unreachable`,
      );
    }
    if (res.status === 401 || res.status === 403) {
      await res.body?.cancel();
      throw new RegistryError(
        502,
        'UNAVAILABLE',
        `the token service of upstream ${name} refused the proxy's credentials (${res.status})`,
      );
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new RegistryError(
        502,
        'UNAVAILABLE',
        `the token service of upstream ${name} answered ${res.status}`,
      );
    }
    const text = await res.text();
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      if (text.length > TOKEN_BODY_MAX) throw new Error('too large');
      body = JSON.parse(text);
    } catch {
      throw new RegistryError(
        502,
        'UNAVAILABLE',
        `the token service of upstream ${name} sent something that is not a token`,
      );
    }
    const token = typeof body.token === 'string' && body.token ? body.token : body.access_token;
    if (typeof token !== 'string' || token === '' || /[\r\n]/.test(token)) {
      throw new RegistryError(
        502,
        'UNAVAILABLE',
        `the token service of upstream ${name} sent no token`,
      );
    }
    const seconds =
      typeof body.expires_in === 'number' && body.expires_in > 0
        ? body.expires_in
        : DEFAULT_TOKEN_SECONDS;
    return { token, seconds };
  }
}

/** `Basic base64(username:password)` (RFC 7617). */
function basicAuthorization(creds: { username: string; password: string }): string {
  return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}`;
}
