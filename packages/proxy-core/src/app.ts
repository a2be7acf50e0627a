import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { LookupFunction } from 'node:net';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { CredentialsError, RegistryAuth, RegistryValidationError } from '@org/registry-auth';
import { type Context, Hono } from 'hono';
import { ChallengeError, mountTokenRoutes, requireToken } from './client-auth.js';
import { type ProxyCoreOptions, type ResolvedUpstream, resolveUpstreams } from './config.js';
import { RegistryError } from './errors.js';
import { discardBody, nodeBodyOf, nodeFetch, pipeToClient, withWebBody } from './node-stream.js';
import { requestInfo } from './observe.js';
import { rawBodyOf } from './raw-http.js';
import { checkRedirect, guardedLookup, systemResolve } from './redirect-guard.js';
import { requestGuard } from './request-guard.js';
import { RetryBudget, retrying } from './retry.js';
import { parseV2Path, type Routed, route } from './route.js';
import { UpstreamAuth, type UpstreamCredentials } from './upstream-auth.js';

const API_VERSION_HEADER = 'docker-distribution-api-version';
const API_VERSION = 'registry/2.0';
/** What we ask for when the client names no media type: every manifest kind we pass. */
const DEFAULT_MANIFEST_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');
/**
 * Response headers passed from upstream to client. An allow-list, so hop-by-hop headers (RFC 9110
 * §7.6.1: Connection, Keep-Alive, Transfer-Encoding, Upgrade, ...) and upstream auth challenges
 * never leak through.
 */
const PASSED_HEADERS = [
  'content-type',
  'content-length',
  'content-range',
  'docker-content-digest',
  'etag',
  'accept-ranges',
  'last-modified',
  'cache-control',
  'retry-after',
  'oci-filters-applied',
] as const;
const ERROR_BODY_MAX = 64 * 1024;
/** How upstream requests are made: `fetch`, or node:http for blob bodies ({@link nodeFetch}). */
type Transport = (
  url: URL,
  init: {
    method: string;
    headers: Record<string, string>;
    redirect: 'manual';
    signal: AbortSignal;
    /** For sockets to a redirect target: re-checks the addresses connected to (node:http path). */
    lookup?: LookupFunction;
    /** Longest silence mid-body ({@link nodeFetch} honours it; web bodies are watched in `send`). */
    idleMs?: number;
  },
) => Promise<Response>;
const MAX_REDIRECTS = 5;

/** The upstream could not be reached (connection refused or reset before an answer): retried. */
class UpstreamUnreachable extends RegistryError {}

/**
 * The pull side of the Docker Registry HTTP API v2 / OCI distribution-spec as a Hono app,
 * in front of one or more upstream registries chosen by repository prefix.
 *
 * @example
 * const app = createProxyApp({ upstreams: [{ name: 'hub', prefix: '', url: 'https://registry-1.docker.io', dockerHubLibrary: true }] });
 * serve({ fetch: app.fetch, port: 5000 });
 */
export function createProxyApp(options: ProxyCoreOptions): Hono {
  const upstreams = resolveUpstreams(options);
  const doFetch = options.fetch ?? fetch;
  const manifestMax = options.manifestMaxBytes ?? 4 * 1024 * 1024;
  const timeoutMs = options.upstreamTimeoutMs ?? 30_000;
  const idleMs = options.upstreamIdleTimeoutMs ?? 30_000;
  const observer = options.observer ?? {};
  const redirectBlobs = options.blobs?.mode === 'redirect';
  const resolveHost = options.resolveHost ?? systemResolve;
  const app = new Hono();

  app.onError((err, c) => {
    const e =
      err instanceof RegistryError ? err : new RegistryError(500, 'UNKNOWN', 'internal error');
    const headers: Record<string, string> = { [API_VERSION_HEADER]: API_VERSION };
    if (e instanceof ChallengeError) headers['www-authenticate'] = e.challenge;
    const wait = (e.detail as { retryAfterSeconds?: unknown } | undefined)?.retryAfterSeconds;
    if (e.status === 429 && typeof wait === 'number') headers['retry-after'] = String(wait);
    return c.json(e.toJSON(), e.status as 400, headers);
  });
  app.use('*', requestGuard());
  const clientAuth = options.auth;
  if (clientAuth) mountTokenRoutes(app, clientAuth);
  app.notFound(() => {
    throw new RegistryError(404, 'NAME_UNKNOWN', 'not a registry API path');
  });

  const now = options.now ?? Date.now;
  const budget = new RetryBudget(options.retries, now);
  const registryAuth = options.registryAuth ?? new RegistryAuth();
  const auths = new Map(
    upstreams.map((u) => [
      u.name,
      new UpstreamAuth({
        upstream: u,
        credentials: credentialsFor(u, registryAuth, timeoutMs),
        fetch: doFetch,
        now,
        timeoutMs,
        budget,
        observer,
      }),
    ]),
  );

  /**
   * One upstream request: redirects followed here, credentials only to the upstream's origin.
   * `client` is the client's abort signal (undefined for fetches shared by several clients).
   */
  const once = async (
    client: AbortSignal | undefined,
    upstream: ResolvedUpstream,
    url: URL,
    init: { method: string; headers: Record<string, string>; handOff?: boolean },
    authorization: string | undefined,
    transport: Transport,
  ): Promise<Response> => {
    const timer = new AbortController();
    const timeout = setTimeout(() => timer.abort(), timeoutMs);
    const signal = client === undefined ? timer.signal : AbortSignal.any([timer.signal, client]);
    try {
      let target = url;
      for (let hop = 0; ; hop++) {
        const sameOrigin = target.origin === upstream.base.origin;
        // A redirect to another origin must not lead into our own network (SSRF).
        const lookup = hop > 0 ? guardedLookup(target, upstream, resolveHost) : undefined;
        if (hop > 0) await checkRedirect(target, upstream, resolveHost);
        const res = await transport(target, {
          method: init.method,
          headers: {
            'user-agent': 'docker-registry-proxy',
            ...init.headers,
            ...(authorization !== undefined && sameOrigin ? { authorization } : {}),
          },
          redirect: 'manual',
          signal,
          ...(lookup ? { lookup } : {}),
        });
        const location =
          res.status >= 301 && res.status <= 308 && res.status !== 304
            ? res.headers.get('location')
            : null;
        if (location === null) return res;
        // Redirect mode: a redirect off the upstream's origin is the client's to follow.
        if (init.handOff && new URL(location, target).origin !== upstream.base.origin) return res;
        await discardBody(res);
        if (hop >= MAX_REDIRECTS)
          throw new RegistryError(
            502,
            'UNAVAILABLE',
            `upstream ${upstream.name} redirected too often`,
          );
        target = new URL(location, target);
        if (target.protocol !== 'https:' && target.protocol !== 'http:') {
          throw new RegistryError(
            502,
            'UNAVAILABLE',
            `upstream ${upstream.name} redirected to an unsupported URL`,
          );
        }
      }
    } catch (err) {
      if (err instanceof RegistryError) throw err;
      if (timer.signal.aborted) {
        throw new RegistryError(
          504,
          'UNAVAILABLE',
          `upstream ${upstream.name} did not answer within ${timeoutMs} ms`,
        );
      }
      if (client?.aborted) throw err;
      throw new UpstreamUnreachable(502, 'UNAVAILABLE', `upstream ${upstream.name} is unreachable`);
    } finally {
      clearTimeout(timeout);
    }
  };

  /**
   * {@link once}, retried (see {@link retrying}) while the upstream is unreachable or answers
   * 502/503/504. Nothing has been sent to the client yet at this point, so a retried blob is never
   * spliced. Header timeouts (504 of our own) are not retried: the client has waited long enough.
   */
  const attempt = (
    client: AbortSignal | undefined,
    upstream: ResolvedUpstream,
    url: URL,
    init: { method: string; headers: Record<string, string>; handOff?: boolean },
    authorization: string | undefined,
    transport: Transport,
  ): Promise<Response> =>
    retrying(budget, () => once(client, upstream, url, init, authorization, transport), {
      idempotent: init.method === 'GET' || init.method === 'HEAD',
      unreachable: (err) => err instanceof UpstreamUnreachable,
      retryAfterClock: now,
      ...(client ? { signal: client } : {}),
      onRetry: (reason) => observer.upstreamRetry?.(upstream.name, reason),
      onDenied: () => observer.upstreamRetryDenied?.(upstream.name),
    });

  /** A request to the routed upstream, authenticated as its challenges ask (one retry on 401). */
  const send = async (
    client: AbortSignal | undefined,
    routed: Routed,
    path: string,
    init: { method: string; headers: Record<string, string>; handOff?: boolean },
    scope = `repository:${routed.upstreamName}:pull`,
    transport: Transport = doFetch,
  ): Promise<Response> => {
    const { upstream } = routed;
    const auth = auths.get(upstream.name) as UpstreamAuth;
    const url = new URL(path, upstream.base);
    const watched: Transport = (target, how) => transport(target, { ...how, idleMs });
    let authorization = auth.cached(scope);
    let res = await attempt(client, upstream, url, init, authorization, watched);
    if (res.status === 401) {
      await discardBody(res);
      const refused = authorization;
      if (refused !== undefined) auth.invalidate(scope);
      authorization = await auth.authorize(res, scope, refused);
      res = await attempt(client, upstream, url, init, authorization, watched);
    }
    return watchBody(res, idleMs, upstream);
  };

  /** A manifest as data, so that every client sharing the fetch gets its own Response. */
  interface Fetched {
    readonly status: number;
    readonly headers: [string, string][];
    readonly body: Buffer;
  }
  const manifestFetches = new Map<string, Promise<Fetched>>();

  const fetchManifest = async (
    routed: Routed,
    path: string,
    accept: string,
    digest: string | undefined,
    name: string,
  ): Promise<Fetched> => {
    const { upstream, upstreamName } = routed;
    const res = await send(undefined, routed, path, { method: 'GET', headers: { accept } });
    if (!res.ok) {
      const error = await upstreamError(res, upstream, upstreamName, name);
      return {
        status: error.status,
        headers: [...error.headers],
        body: Buffer.from(await error.arrayBuffer()),
      };
    }
    const headers = passedHeaders(res);
    const body = await readCapped(res, manifestMax, upstream);
    const computed = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    if (digest !== undefined) verifyDigest(digest, body, upstream);
    const claimed = res.headers.get('docker-content-digest');
    if (digest === undefined && claimed?.startsWith('sha256:') && claimed !== computed) {
      throw new RegistryError(
        502,
        'DIGEST_INVALID',
        `upstream ${upstream.name} sent a manifest that does not match its Docker-Content-Digest`,
      );
    }
    headers.set('docker-content-digest', digest ?? claimed ?? computed);
    headers.set('content-length', String(body.length));
    return { status: 200, headers: [...headers], body };
  };

  app.all('/v2', (c) => handle(c));
  app.all('/v2/*', (c) => handle(c));

  async function handle(c: Context): Promise<Response> {
    const info = requestInfo(c.req.raw);
    const req = parseV2Path(requestPath(c));
    const method = c.req.method;
    info.kind = req.kind;
    if ('name' in req) info.repository = req.name;
    if (req.kind === 'manifest') info.reference = req.reference;
    info.identity = clientAuth
      ? (
          await requireToken(
            c,
            clientAuth,
            'name' in req ? req.name : undefined,
            req.kind === 'catalog',
          )
        ).subject
      : 'anonymous';
    const read = method === 'GET' || method === 'HEAD';
    if (req.kind === 'ping') {
      if (!read)
        throw new RegistryError(405, 'UNSUPPORTED', 'the API version check takes GET or HEAD');
      return c.json({}, 200, { [API_VERSION_HEADER]: API_VERSION });
    }
    if (req.kind === 'catalog') {
      if (!read) throw new RegistryError(405, 'UNSUPPORTED', 'the catalog takes GET or HEAD');
      return catalog(c, method);
    }
    if (req.kind === 'upload' || !read) {
      throw new RegistryError(
        405,
        'UNSUPPORTED',
        'this proxy serves pulls; pushing is not enabled',
      );
    }
    const routed = route(upstreams, req.name, {
      host: c.req.header('host'),
      ns: c.req.query('ns'),
    });
    const { upstream, upstreamName } = routed;
    info.upstream = upstream.name;
    const passError = (res: Response) => upstreamError(res, upstream, upstreamName, req.name);

    switch (req.kind) {
      case 'manifest': {
        const accept = c.req.header('accept') ?? DEFAULT_MANIFEST_ACCEPT;
        const path = `/v2/${upstreamName}/manifests/${req.reference}`;
        if (method === 'HEAD') {
          const res = await send(c.req.raw.signal, routed, path, { method, headers: { accept } });
          if (!res.ok) return passError(res);
          await res.body?.cancel();
          const headers = passedHeaders(res);
          info.digest = headers.get('docker-content-digest') ?? undefined;
          return new Response(null, { status: 200, headers });
        }
        // Identical GETs in flight share one upstream fetch (200 nodes pulling a new image).
        const key = `${upstream.name}\n${upstreamName}\n${req.reference}\n${accept}`;
        let shared = manifestFetches.get(key);
        if (!shared) {
          shared = fetchManifest(
            routed,
            path,
            accept,
            req.digest ? req.reference : undefined,
            req.name,
          ).finally(() => manifestFetches.delete(key));
          manifestFetches.set(key, shared);
        }
        const got = await shared;
        if (got.status === 200)
          info.digest = got.headers.find(([k]) => k === 'docker-content-digest')?.[1];
        return new Response(got.body, { status: got.status, headers: got.headers });
      }
      case 'blob': {
        const range = c.req.header('range');
        // Under @hono/node-server, blob bodies go from node:http straight into Node's response
        // (the hot path); a custom `fetch` (tests observing upstream calls) keeps the web path.
        const outgoing = (c.env as { outgoing?: ServerResponse } | undefined)?.outgoing;
        const direct = method === 'GET' && outgoing !== undefined && options.fetch === undefined;
        const res = await send(
          c.req.raw.signal,
          routed,
          `/v2/${upstreamName}/blobs/${req.digest}`,
          {
            method,
            headers: range === undefined ? {} : { range },
            handOff: redirectBlobs && method === 'GET',
          },
          undefined,
          direct ? nodeFetch : doFetch,
        );
        const location =
          res.status >= 301 && res.status <= 308 ? res.headers.get('location') : null;
        if (location !== null) {
          await discardBody(res);
          const to = new URL(location, upstream.base).href;
          return new Response(null, {
            status: 307,
            headers: { location: to, [API_VERSION_HEADER]: API_VERSION },
          });
        }
        if (res.status === 416) {
          // distribution 2.8 sends its 416 with the blob's full Content-Length and a short text
          // body; passing that on would make clients wait for bytes that never come.
          await discardBody(res);
          const headers = new Headers({ [API_VERSION_HEADER]: API_VERSION });
          const contentRange = res.headers.get('content-range');
          if (contentRange) headers.set('content-range', contentRange);
          return new Response(null, { status: 416, headers });
        }
        if (!res.ok) return passError(withWebBody(res));
        const nodeBody = nodeBodyOf(res);
        if (nodeBody !== undefined && outgoing !== undefined) {
          pipeToClient(nodeBody, outgoing, res.status, passedHeaders(res));
          return RESPONSE_ALREADY_SENT;
        }
        if (method === 'HEAD') await res.body?.cancel();
        return new Response(method === 'HEAD' ? null : res.body, {
          status: res.status,
          headers: passedHeaders(res),
        });
      }
      case 'tags': {
        const query = new URLSearchParams();
        const n = c.req.query('n');
        const last = c.req.query('last');
        if (n !== undefined) {
          if (!/^\d{1,6}$/.test(n))
            throw new RegistryError(400, 'UNSUPPORTED', 'n must be a number of tags');
          query.set('n', n);
        }
        if (last !== undefined) query.set('last', last);
        const q = query.size > 0 ? `?${query}` : '';
        const res = await send(c.req.raw.signal, routed, `/v2/${upstreamName}/tags/list${q}`, {
          method: 'GET',
          headers: {},
        });
        if (!res.ok) return passError(res);
        const list = JSON.parse(
          (await readCapped(res, manifestMax, upstream)).toString('utf8'),
        ) as { name?: string };
        list.name = req.name;
        const headers = new Headers({
          [API_VERSION_HEADER]: API_VERSION,
          'content-type': 'application/json',
        });
        const link = res.headers.get('link');
        if (link) headers.set('link', rewriteLink(link, upstream, upstreamName, req.name));
        const text = JSON.stringify(list);
        return new Response(method === 'HEAD' ? null : text, { status: 200, headers });
      }
      case 'referrers': {
        const artifactType = c.req.query('artifactType');
        const q = artifactType === undefined ? '' : `?${new URLSearchParams({ artifactType })}`;
        const res = await send(
          c.req.raw.signal,
          routed,
          `/v2/${upstreamName}/referrers/${req.digest}${q}`,
          {
            method,
            headers: { accept: 'application/vnd.oci.image.index.v1+json' },
          },
        );
        if (!res.ok) return passError(res);
        if (method === 'HEAD') await res.body?.cancel();
        return new Response(method === 'HEAD' ? null : res.body, {
          status: 200,
          headers: passedHeaders(res),
        });
      }
    }
  }

  /**
   * `/v2/_catalog` from the one upstream that serves it: names under its repositoryPrefix, as
   * clients name them; `n` passed on, `last` and the `Link` header translated both ways.
   */
  async function catalog(c: Context, method: string): Promise<Response> {
    const upstream = upstreams.find((u) => u.catalog === true);
    if (upstream === undefined)
      throw new RegistryError(404, 'UNSUPPORTED', 'catalog listing is not enabled on this proxy');
    requestInfo(c.req.raw).upstream = upstream.name;
    const toClient = (name: string): string | undefined => {
      const inside =
        upstream.repositoryPrefix === ''
          ? name
          : name.startsWith(`${upstream.repositoryPrefix}/`)
            ? name.slice(upstream.repositoryPrefix.length + 1)
            : undefined;
      if (inside === undefined) return undefined;
      return upstream.prefix === '' ? inside : `${upstream.prefix}/${inside}`;
    };
    const toUpstream = (name: string): string | undefined => {
      const inside =
        upstream.prefix === ''
          ? name
          : name.startsWith(`${upstream.prefix}/`)
            ? name.slice(upstream.prefix.length + 1)
            : undefined;
      if (inside === undefined) return undefined;
      return upstream.repositoryPrefix === '' ? inside : `${upstream.repositoryPrefix}/${inside}`;
    };
    const query = new URLSearchParams();
    const n = c.req.query('n');
    if (n !== undefined) {
      if (!/^\d{1,6}$/.test(n))
        throw new RegistryError(400, 'PAGINATION_NUMBER_INVALID', 'n must be a number');
      query.set('n', n);
    }
    const last = c.req.query('last');
    const upstreamLast = last === undefined ? undefined : toUpstream(last);
    if (upstreamLast !== undefined) query.set('last', upstreamLast);
    // Names inside `prefix/` sort between `prefix/` and `prefix0` ('0' follows '/'): start there.
    else if (upstream.repositoryPrefix !== '') query.set('last', `${upstream.repositoryPrefix}/`);
    const q = query.size > 0 ? `?${query}` : '';
    const routed = { upstream, upstreamName: '' } as Routed;
    const res = await send(
      c.req.raw.signal,
      routed,
      `/v2/_catalog${q}`,
      { method: 'GET', headers: {} },
      'registry:catalog:*',
    );
    if (!res.ok) return upstreamError(res, upstream, '', '');
    let body: { repositories?: unknown };
    try {
      body = JSON.parse((await readCapped(res, manifestMax, upstream)).toString('utf8'));
    } catch {
      throw new RegistryError(502, 'UNAVAILABLE', `upstream ${upstream.name} sent a bad catalog`);
    }
    const names = Array.isArray(body.repositories) ? body.repositories : [];
    const repositories = names.flatMap((r) => {
      const mapped = typeof r === 'string' ? toClient(r) : undefined;
      return mapped === undefined ? [] : [mapped];
    });
    const headers = new Headers({
      [API_VERSION_HEADER]: API_VERSION,
      'content-type': 'application/json',
    });
    const link = res.headers.get('link');
    const lastName = names.at(-1);
    // Another page is worth pointing to only while the upstream is still inside our prefix.
    if (link && typeof lastName === 'string' && toClient(lastName) !== undefined) {
      const next = new URLSearchParams({ last: toClient(lastName) as string });
      if (n !== undefined) next.set('n', n);
      headers.set('link', `</v2/_catalog?${next}>; rel="next"`);
    }
    const text = JSON.stringify({ repositories });
    return new Response(method === 'HEAD' ? null : text, { status: 200, headers });
  }

  return app;
}

/**
 * The request path exactly as the client sent it. WHATWG URL parsing (Hono's `c.req.url`)
 * resolves `..` and `%2e%2e` segments, which must instead be refused; Node's IncomingMessage
 * (present under @hono/node-server) still has the raw request target.
 */
function requestPath(c: Context): string {
  const raw = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming?.url;
  const target = raw ?? new URL(c.req.url).pathname;
  const q = target.indexOf('?');
  return q === -1 ? target : target.slice(0, q);
}

/**
 * A web body (fetch) that errors when the upstream sends nothing for `idleMs` while it is being
 * read, so a stalled manifest, tag list or error body ends in an error, never in a hang. Raw
 * bodies ({@link nodeFetch}) watch themselves.
 */
function watchBody(res: Response, idleMs: number, upstream: ResolvedUpstream): Response {
  if (res.body === null || rawBodyOf(res) !== undefined) return res;
  const reader = res.body.getReader();
  let clear = () => {};
  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const stalled = deadline(
          idleMs,
          () =>
            new RegistryError(
              502,
              'UNAVAILABLE',
              `upstream ${upstream.name} sent nothing for ${idleMs} ms mid-answer`,
            ),
        );
        clear = stalled.clear;
        try {
          const { done, value } = await Promise.race([reader.read(), stalled.expired]);
          if (done) controller.close();
          else controller.enqueue(value);
        } catch (err) {
          reader.cancel(err).catch(() => {});
          throw err;
        } finally {
          stalled.clear();
        }
      },
      cancel(reason) {
        clear();
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
  return new Response(body, { status: res.status, headers: res.headers });
}

/**
 * Credentials for an upstream from its config, through @org/registry-auth, errors mapped; a
 * source that takes longer than `timeoutMs` is a 504 (its fetch goes on and fills the cache).
 */
function credentialsFor(
  upstream: ResolvedUpstream,
  auth: RegistryAuth,
  timeoutMs: number,
): UpstreamCredentials {
  const config = upstream.credentials;
  if (config === undefined || config.provider === 'none') return async () => undefined;
  return async () => {
    const late = deadline(
      timeoutMs,
      () =>
        new RegistryError(
          504,
          'UNAVAILABLE',
          `the credential source of upstream ${upstream.name} did not answer within ${timeoutMs} ms`,
        ),
    );
    try {
      const creds = await Promise.race([
        auth.getCredentials(upstream.base.host, config),
        late.expired,
      ]);
      return { username: creds.username, password: creds.password };
    } catch (err) {
      if (err instanceof RegistryError) throw err;
      if (err instanceof CredentialsError || err instanceof RegistryValidationError) {
        throw new RegistryError(
          502,
          'UNAVAILABLE',
          `no credentials for upstream ${upstream.name}: ${err.message}`,
        );
      }
      throw err;
    } finally {
      late.clear();
    }
  };
}

/** A promise that rejects with `error()` once `ms` have passed, unless cleared first. */
function deadline(ms: number, error: () => Error): { expired: Promise<never>; clear(): void } {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(error()), ms);
  });
  return { expired, clear: () => clearTimeout(timer) };
}

function passedHeaders(res: Response): Headers {
  const headers = new Headers({ [API_VERSION_HEADER]: API_VERSION });
  for (const name of PASSED_HEADERS) {
    const value = res.headers.get(name);
    if (value !== null) headers.set(name, value);
  }
  return headers;
}

async function readCapped(res: Response, max: number, upstream: ResolvedUpstream): Promise<Buffer> {
  const declared = Number(res.headers.get('content-length'));
  const tooLarge = () =>
    new RegistryError(
      502,
      'MANIFEST_INVALID',
      `upstream ${upstream.name} sent more than ${max} bytes where a manifest was expected`,
    );
  if (declared > max) {
    await res.body?.cancel();
    throw tooLarge();
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (res.body) {
    for await (const chunk of res.body) {
      size += chunk.length;
      if (size > max) {
        await res.body.cancel().catch(() => {});
        throw tooLarge();
      }
      chunks.push(chunk);
    }
  }
  return Buffer.concat(chunks);
}

function verifyDigest(digest: string, body: Buffer, upstream: ResolvedUpstream): void {
  const [algorithm = '', hex = ''] = digest.split(':');
  if (algorithm !== 'sha256' && algorithm !== 'sha512') {
    throw new RegistryError(
      400,
      'UNSUPPORTED',
      `digest algorithm ${algorithm} cannot be verified by this proxy`,
    );
  }
  if (createHash(algorithm).update(body).digest('hex') !== hex) {
    throw new RegistryError(
      502,
      'DIGEST_INVALID',
      `upstream ${upstream.name} sent a manifest that does not match ${digest}`,
    );
  }
}

/** `Link: </v2/<upstream name>/tags/list?...>; rel="next"` back to the client's name, relative. */
function rewriteLink(
  link: string,
  upstream: ResolvedUpstream,
  upstreamName: string,
  name: string,
): string {
  return link.replace(/<([^>]*)>/g, (whole, target: string) => {
    let url: URL;
    try {
      url = new URL(target, upstream.base);
    } catch {
      return whole;
    }
    if (url.origin !== upstream.base.origin || !url.pathname.startsWith(`/v2/${upstreamName}/`))
      return whole;
    return `</v2/${name}/${url.pathname.slice(`/v2/${upstreamName}/`.length)}${url.search}>`;
  });
}

/** An upstream's error as ours: OCI JSON kept (names rewritten), status kept, its auth challenge not. */
async function upstreamError(
  res: Response,
  upstream: ResolvedUpstream,
  upstreamName: string,
  name: string,
): Promise<Response> {
  let text = '';
  try {
    text = (await readCapped(res, ERROR_BODY_MAX, upstream)).toString('utf8');
  } catch {
    text = '';
  }
  if (res.status === 401 || res.status === 403) {
    throw new RegistryError(
      502,
      'UNAVAILABLE',
      `upstream ${upstream.name} refused the proxy (${res.status}); its credentials are not configured or not accepted`,
    );
  }
  let body: unknown;
  try {
    body = JSON.parse(upstreamName === '' ? text : text.split(upstreamName).join(name));
  } catch {
    body = undefined;
  }
  const valid =
    typeof body === 'object' &&
    body !== null &&
    Array.isArray((body as { errors?: unknown }).errors);
  const headers = new Headers({
    [API_VERSION_HEADER]: API_VERSION,
    'content-type': 'application/json',
  });
  const retryAfter = res.headers.get('retry-after');
  if (retryAfter) headers.set('retry-after', retryAfter);
  const fallback = new RegistryError(
    res.status,
    res.status === 404
      ? 'NAME_UNKNOWN'
      : res.status === 429
        ? 'TOOMANYREQUESTS'
        : res.status >= 502 && res.status <= 504
          ? 'UNAVAILABLE'
          : 'UNKNOWN',
    `upstream ${upstream.name} answered ${res.status}`,
  );
  return new Response(JSON.stringify(valid ? body : fallback.toJSON()), {
    status: res.status,
    headers,
  });
}
