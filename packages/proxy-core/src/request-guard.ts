import type { IncomingMessage } from 'node:http';
import type { MiddlewareHandler } from 'hono';
import { RegistryError } from './errors.js';

const API_VERSION = { 'docker-distribution-api-version': 'registry/2.0' };

/** Requests already let through: an app mounted in another guarded app checks each once. */
const passed = new WeakSet<IncomingMessage>();

/**
 * Refuses requests whose meaning depends on who parses them, before any routing:
 *
 * - a request target with dot segments (`..`, `.`, raw or as `%2e`) or backslashes (raw or
 *   `%5c`): WHATWG URL parsing, which routing uses, resolves them, so `/v2/../metrics` would
 *   reach `/metrics` past a front proxy that only lets `/v2/` through;
 * - more than one `Host` header (RFC 9112 §3.2: a server MUST answer 400), since routing by
 *   `hosts` and the HTTP server would each pick another one.
 *
 * Answers 400 with OCI error JSON. Only effective under @hono/node-server (the raw request
 * target and header lines come from Node's IncomingMessage). A request is checked once however
 * many guarded apps it passes through (the binary guards its own routes and mounts the proxy).
 */
export function requestGuard(): MiddlewareHandler {
  return async (c, next) => {
    const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
    if (incoming === undefined || passed.has(incoming)) return next();
    const refuse = (code: 'NAME_INVALID' | 'UNSUPPORTED', message: string) =>
      c.json(new RegistryError(400, code, message).toJSON(), 400, API_VERSION);
    const target = incoming.url ?? '';
    const q = target.indexOf('?');
    const path = q === -1 ? target : target.slice(0, q);
    if (/\\|%5c/i.test(path))
      return refuse('NAME_INVALID', 'invalid path: backslashes are not allowed');
    if (path.split('/').some((s) => /^(?:\.|%2e){1,2}$/i.test(s)))
      return refuse('NAME_INVALID', 'invalid path: "." and ".." segments are not allowed');
    let hosts = 0;
    for (let i = 0; i < incoming.rawHeaders.length; i += 2)
      if (incoming.rawHeaders[i]?.toLowerCase() === 'host') hosts++;
    if (hosts > 1) return refuse('UNSUPPORTED', 'more than one Host header');
    passed.add(incoming);
    return next();
  };
}
