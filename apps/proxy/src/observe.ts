import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { type ProxyObserver, requestInfo } from '@org/proxy-core';
import type { CredentialMetrics } from '@org/registry-auth';
import type { Context, MiddlewareHandler } from 'hono';
import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';
import type { Log } from './log.js';

/** A client's request id is kept when it is this tame; otherwise we make one. */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const PATH_LOGGED_MAX = 512;

export interface Observability {
  /** Request id, access log line, audit line per manifest pull, and request metrics. */
  readonly middleware: MiddlewareHandler;
  /** For proxy-core's `observer` option. */
  readonly observer: ProxyObserver;
  /** For RegistryAuth's cache: credential cache hits, misses and fetches. */
  readonly credentialMetrics: CredentialMetrics;
  /** The Prometheus text exposition. */
  metrics(): Promise<{ contentType: string; body: string }>;
}

/**
 * Logs and metrics for the proxy app. Everything is labelled by route kind, upstream and status,
 * never by repository, identity or anything secret (labels must stay few and public).
 */
export function createObservability(log: Log): Observability {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'registry_proxy_' });
  const requests = new Counter({
    name: 'registry_proxy_requests_total',
    help: 'Requests answered, by route kind, method, status and upstream',
    labelNames: ['route', 'method', 'status', 'upstream'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'registry_proxy_request_duration_seconds',
    help: 'Time from request to the last byte of the response, by route kind and upstream',
    labelNames: ['route', 'upstream'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [registry],
  });
  const bytes = new Counter({
    name: 'registry_proxy_response_bytes_total',
    help: 'Bytes written to clients (headers included), by route kind and upstream',
    labelNames: ['route', 'upstream'] as const,
    registers: [registry],
  });
  const aborts = new Counter({
    name: 'registry_proxy_client_aborts_total',
    help: 'Responses the client went away from before the last byte, by route kind',
    labelNames: ['route'] as const,
    registers: [registry],
  });
  const tokenFetches = new Counter({
    name: 'registry_proxy_upstream_token_fetches_total',
    help: 'Bearer tokens fetched from upstream token services, by upstream and outcome',
    labelNames: ['upstream', 'outcome'] as const,
    registers: [registry],
  });
  const retries = new Counter({
    name: 'registry_proxy_upstream_retries_total',
    help: 'Upstream requests retried, by upstream and reason (unreachable, 502, 503, 504)',
    labelNames: ['upstream', 'reason'] as const,
    registers: [registry],
  });
  const retriesDenied = new Counter({
    name: 'registry_proxy_upstream_retries_denied_total',
    help: 'Retries not made because the retry budget was spent, by upstream',
    labelNames: ['upstream'] as const,
    registers: [registry],
  });
  const credentialLookups = new Counter({
    name: 'registry_proxy_credential_cache_total',
    help: 'Upstream credential lookups, by provider, registry and result (hit or miss)',
    labelNames: ['provider', 'registry', 'result'] as const,
    registers: [registry],
  });
  const credentialFetches = new Counter({
    name: 'registry_proxy_credential_fetches_total',
    help: 'Upstream credential fetches from cloud or other sources, by outcome',
    labelNames: ['provider', 'registry', 'outcome'] as const,
    registers: [registry],
  });

  const finish = (
    c: Context,
    id: string,
    started: number,
    written: number | undefined,
    aborted: boolean,
  ) => {
    const info = requestInfo(c.req.raw);
    const route = info.kind ?? 'other';
    const upstream = info.upstream ?? '';
    const outgoing = (c.env as { outgoing?: ServerResponse } | undefined)?.outgoing;
    const status = outgoing?.headersSent ? outgoing.statusCode : c.res.status;
    const seconds = (performance.now() - started) / 1000;
    requests.inc({ route, method: c.req.method, status: String(status), upstream });
    duration.observe({ route, upstream }, seconds);
    if (written !== undefined) bytes.inc({ route, upstream }, written);
    if (aborted) aborts.inc({ route });
    log('info', 'request', {
      requestId: id,
      method: c.req.method,
      path: c.req.path.slice(0, PATH_LOGGED_MAX),
      status,
      durationMs: Math.round(seconds * 10_000) / 10,
      ...(written === undefined ? {} : { bytes: written }),
      ...(aborted ? { aborted: true } : {}),
      route,
      ...(info.upstream ? { upstream } : {}),
      ...(info.identity ? { identity: info.identity } : {}),
    });
    if (route === 'manifest' && c.req.method === 'GET' && status === 200) {
      log('info', 'manifest pull', {
        audit: true,
        requestId: id,
        identity: info.identity,
        repository: info.repository,
        reference: info.reference,
        digest: info.digest,
        upstream,
      });
    }
  };

  const middleware: MiddlewareHandler = async (c, next) => {
    const started = performance.now();
    const given = c.req.header('x-request-id');
    const id = given !== undefined && REQUEST_ID.test(given) ? given : randomUUID();
    const outgoing = (c.env as { outgoing?: ServerResponse } | undefined)?.outgoing;
    const socket = outgoing?.socket ?? undefined;
    const before = socket?.bytesWritten ?? 0;
    // On Node's response too: blob bodies are written to it directly, past Hono's Response.
    outgoing?.setHeader('x-request-id', id);
    await next();
    // Not when the body went to Node's response directly: touching c.res would make Hono
    // replace the "already sent" marker with a response of its own.
    if (!outgoing?.headersSent) c.header('x-request-id', id);
    if (outgoing === undefined) {
      finish(c, id, started, undefined, false);
      return;
    }
    // The body streams after this returns: account for the request when the response closes.
    outgoing.once('close', () => {
      const written = socket === undefined ? undefined : socket.bytesWritten - before;
      finish(c, id, started, written, !outgoing.writableFinished);
    });
  };

  return {
    middleware,
    observer: {
      upstreamTokenFetch: (upstream, ok) =>
        tokenFetches.inc({ upstream, outcome: ok ? 'ok' : 'error' }),
      upstreamRetry: (upstream, reason) => retries.inc({ upstream, reason }),
      upstreamRetryDenied: (upstream) => retriesDenied.inc({ upstream }),
    },
    credentialMetrics: {
      hit: (l) => credentialLookups.inc({ ...l, result: 'hit' }),
      miss: (l) => credentialLookups.inc({ ...l, result: 'miss' }),
      fetched: (l, _ms, ok) => credentialFetches.inc({ ...l, outcome: ok ? 'ok' : 'error' }),
    },
    metrics: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
  };
}
