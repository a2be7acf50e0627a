import type { GetRegistryCredentialsOptions, RegistryAuth } from '@org/registry-auth';
import { registryHostOf, validateRepositoryName } from '@org/registry-domains';
import type { LoginThrottle } from './login-throttle.js';
import type { ProxyObserver } from './observe.js';
import { parseRedirectAllow, type RedirectAllow, type Resolve } from './redirect-guard.js';
import type { RetryOptions } from './retry.js';
import type { TokenService } from './token-service.js';

/** How the proxy authenticates to an upstream: none, or any @org/registry-auth source. */
export type UpstreamCredentialsConfig =
  | { readonly provider: 'none' }
  | GetRegistryCredentialsOptions;

/** One upstream registry and the client path prefix that routes to it. */
export interface UpstreamConfig {
  /** Name for logs and metrics. */
  readonly name: string;
  /**
   * Client path prefix, in repository components: `gcr` routes `gcr/team/app`; `""` routes
   * everything (the longest matching prefix wins).
   */
  readonly prefix: string;
  /** Upstream base URL, e.g. `https://europe-docker.pkg.dev` or `http://127.0.0.1:5001`. */
  readonly url: string;
  /** Prepended to the repository upstream: `acme-prod/images`. */
  readonly repositoryPrefix?: string;
  /** Single-component names gain `library/` (Docker Hub's official images). */
  readonly dockerHubLibrary?: boolean;
  /** Credentials for the upstream. Default `{ provider: 'none' }` (anonymous, token flow included). */
  readonly credentials?: UpstreamCredentialsConfig;
  /**
   * Request `Host` names this upstream answers for (vanity domains: `gcr.example.com`), with or
   * without port. Absent: any host.
   */
  readonly hosts?: readonly string[];
  /**
   * Registries this upstream mirrors for containerd, which names the registry it wants in an
   * `ns=<registry>` query parameter on mirror requests (`docker.io`, `gcr.io`). Absent: any.
   */
  readonly ns?: readonly string[];
  /**
   * Serve `/v2/_catalog` from this upstream (at most one may): its repositories under
   * `repositoryPrefix`, named as clients see them. Default false: `_catalog` is refused.
   */
  readonly catalog?: boolean;
  /**
   * Internal destinations this upstream may redirect the proxy to: CIDRs (`10.0.0.0/8`),
   * addresses, host names (`minio.internal`, `storage.internal:9000`). Redirects to another
   * origin whose host is or resolves to a loopback, link-local (cloud metadata), private,
   * CGNAT, unspecified or other non-public address are otherwise refused with 502. Redirects
   * within the upstream's own origin are always followed. Default: none.
   */
  readonly allowInternalRedirects?: readonly string[];
}

export interface ProxyCoreOptions {
  readonly upstreams: readonly UpstreamConfig[];
  /** Largest manifest accepted from an upstream. Default 4 MiB. */
  readonly manifestMaxBytes?: number;
  /**
   * How long to wait for an upstream's response headers, and for a token from its token service
   * or credentials from its credential source (a 504 after). Default 30 s.
   */
  readonly upstreamTimeoutMs?: number;
  /**
   * Longest silence from an upstream in the middle of a body being read (a stalled transfer):
   * the transfer fails and a client already receiving it has its connection reset. Time the
   * client itself spends not reading does not count. Default 30 s.
   */
  readonly upstreamIdleTimeoutMs?: number;
  /**
   * Retries of idempotent upstream requests (GET, HEAD, token GETs) on connection failures and
   * 502/503/504, bounded per request and by a process-wide budget; see {@link RetryOptions}.
   */
  readonly retries?: RetryOptions;
  /** HTTP client for upstream requests. Default: the global `fetch`. */
  readonly fetch?: typeof fetch;
  /**
   * `stream` (default): blob bytes pass through the proxy. `redirect`: an upstream redirect to
   * another origin (a storage pre-signed URL) is handed to the client, so bytes bypass the proxy;
   * upstreams that serve bytes themselves are streamed.
   */
  readonly blobs?: { readonly mode: 'stream' | 'redirect' };
  /**
   * Client authentication: without it pulls are anonymous. With it every `/v2` request needs one
   * of our tokens covering the repository, `/token` issues them and `/.well-known/jwks.json`
   * publishes the key.
   */
  readonly auth?: {
    readonly tokens: TokenService;
    /** Absolute URL of our `/token` (the challenge's realm). */
    readonly realm: string;
    /** The challenge's `service`, the tokens' audience. */
    readonly service: string;
    /** Failed-login limits; default: 10 per username and 50 per address per 5 minutes. */
    readonly loginThrottle?: LoginThrottle;
  };
  /** Where upstream credentials come from. Default: a new RegistryAuth. */
  readonly registryAuth?: RegistryAuth;
  /**
   * Resolves a redirect target's host name to every address, for the internal-address check.
   * Default: the system resolver (`dns.lookup`, all addresses).
   */
  readonly resolveHost?: Resolve;
  /** Clock in milliseconds. Default `Date.now`. */
  readonly now?: () => number;
  /** Metric hooks (per-request facts are in {@link requestInfo}). */
  readonly observer?: ProxyObserver;
}

export interface ResolvedUpstream extends UpstreamConfig {
  readonly base: URL;
  readonly repositoryPrefix: string;
  /** How many of `hosts` / `ns` it constrains on: more specific upstreams are tried first. */
  readonly specificity: number;
  /** `allowInternalRedirects`, checked. */
  readonly redirectAllow: RedirectAllow;
}

/** A bare `host[:port]` by the reference grammar of @org/registry-domains. */
function isHostPort(value: string): boolean {
  if (value.includes('/')) return false;
  try {
    return registryHostOf(value) === value;
  } catch {
    return false;
  }
}

/** Repository path components (`gcr`, `acme-prod/images`) by the reference grammar. */
function isRepositoryPath(value: string): boolean {
  try {
    validateRepositoryName(value);
    return true;
  } catch {
    return false;
  }
}

/**
 * Checks the options and returns the upstreams sorted longest prefix first.
 *
 * @throws TypeError naming the option.
 */
export function resolveUpstreams(options: ProxyCoreOptions): readonly ResolvedUpstream[] {
  if (!Array.isArray(options.upstreams) || options.upstreams.length === 0) {
    throw new TypeError('upstreams: at least one upstream is needed');
  }
  const seen = new Set<string>();
  const out = options.upstreams.map((u, i) => {
    const where = `upstreams[${i}]`;
    if (typeof u.name !== 'string' || u.name === '')
      throw new TypeError(`${where}.name: a non-empty string`);
    if (typeof u.prefix !== 'string' || (u.prefix !== '' && !isRepositoryPath(u.prefix))) {
      throw new TypeError(
        `${where}.prefix: "" or lowercase repository components such as "gcr" or "team/mirror"`,
      );
    }
    for (const field of ['hosts', 'ns'] as const) {
      const list = u[field];
      if (
        list !== undefined &&
        (!Array.isArray(list) ||
          list.length === 0 ||
          list.some((h) => typeof h !== 'string' || !isHostPort(h)))
      ) {
        throw new TypeError(`${where}.${field}: a non-empty list of host[:port] names`);
      }
    }
    const key = `${u.prefix}|${[...(u.hosts ?? [])].sort().join(',')}|${[...(u.ns ?? [])].sort().join(',')}`;
    if (seen.has(key))
      throw new TypeError(`${where}.prefix: "${u.prefix}" is used twice for the same hosts and ns`);
    seen.add(key);
    let base: URL;
    try {
      base = new URL(u.url);
    } catch {
      throw new TypeError(`${where}.url: not a URL`);
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:')
      throw new TypeError(`${where}.url: http or https`);
    if (base.username || base.password)
      throw new TypeError(`${where}.url: put credentials in credentials, not in the URL`);
    const repositoryPrefix = u.repositoryPrefix ?? '';
    if (repositoryPrefix !== '' && !isRepositoryPath(repositoryPrefix)) {
      throw new TypeError(`${where}.repositoryPrefix: lowercase repository components`);
    }
    const specificity = (u.hosts ? 1 : 0) + (u.ns ? 1 : 0);
    const redirectAllow = parseRedirectAllow(
      u.allowInternalRedirects,
      `${where}.allowInternalRedirects`,
    );
    return { ...u, base, repositoryPrefix, specificity, redirectAllow };
  });
  if (out.filter((u) => u.catalog === true).length > 1)
    throw new TypeError('upstreams: catalog can be served by one upstream only');
  if (
    options.blobs !== undefined &&
    options.blobs.mode !== 'stream' &&
    options.blobs.mode !== 'redirect'
  ) {
    throw new TypeError('blobs.mode: stream or redirect');
  }
  for (const [option, value] of [
    ['manifestMaxBytes', options.manifestMaxBytes],
    ['upstreamTimeoutMs', options.upstreamTimeoutMs],
    ['upstreamIdleTimeoutMs', options.upstreamIdleTimeoutMs],
  ] as const) {
    if (value !== undefined && !(Number.isInteger(value) && value > 0))
      throw new TypeError(`${option}: a positive integer`);
  }
  return out.sort((a, b) => b.specificity - a.specificity || b.prefix.length - a.prefix.length);
}
