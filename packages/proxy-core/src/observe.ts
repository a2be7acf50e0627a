/**
 * What the proxy learnt about a request, for the embedding app's logs, audit lines and metrics.
 * Kept per Request object (a WeakMap), so it needs no framework coupling and dies with it.
 */
export interface RequestInfo {
  /** Which API: `ping`, `manifest`, `blob`, `tags`, `referrers`, `catalog`, `upload`, `token`. */
  kind?: string | undefined;
  /** The repository as the client named it. */
  repository?: string | undefined;
  /** Tag or digest of a manifest request. */
  reference?: string | undefined;
  /** Name of the upstream it was routed to. */
  upstream?: string | undefined;
  /** Who asked: the token's subject (`users:alice`), `anonymous`, or unset before auth. */
  identity?: string | undefined;
  /** The manifest digest served (manifest GET/HEAD). */
  digest?: string | undefined;
}

/** Hooks for metrics: never given secrets. All optional. */
export interface ProxyObserver {
  /** The proxy fetched an upstream token (`ok`: the token service answered with one). */
  upstreamTokenFetch?(upstream: string, ok: boolean): void;
  /**
   * An upstream request is retried; `reason` is `unreachable` (no connection or no answer) or
   * the status that asked for it (`502`, `503`, `504`).
   */
  upstreamRetry?(upstream: string, reason: string): void;
  /** A retry was due but the retry budget was spent: the failure went to the client. */
  upstreamRetryDenied?(upstream: string): void;
}

const infos = new WeakMap<Request, RequestInfo>();

/** The info recorded for `request` so far (created empty on first use). */
export function requestInfo(request: Request): RequestInfo {
  let info = infos.get(request);
  if (info === undefined) {
    info = {};
    infos.set(request, info);
  }
  return info;
}
