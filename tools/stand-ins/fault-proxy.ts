import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * What the forwarder does with a request a rule matches.
 *
 * - `pass`: forward it (after `delayMs`, if given).
 * - `reset`: forward status, headers and the first `afterBytes` body bytes, then reset the
 *   client's connection (TCP RST).
 * - `stall`: forward status, headers and the first `afterBytes` body bytes, then send nothing
 *   more while keeping the connection open.
 * - `stall-headers`: read the request and never answer (the connection stays open).
 * - `status`: answer `status` (with `headers` and `body`) without forwarding.
 * - `refuse`: reset the connection before any answer.
 *
 * `chunked` (pass, reset, stall) drops the upstream's Content-Length, so the answer is framed
 * with chunked transfer coding instead.
 */
export type FaultAction =
  | { readonly kind: 'pass'; readonly delayMs?: number; readonly chunked?: boolean }
  | { readonly kind: 'reset'; readonly afterBytes: number; readonly chunked?: boolean }
  | { readonly kind: 'stall'; readonly afterBytes: number; readonly chunked?: boolean }
  | { readonly kind: 'stall-headers' }
  | {
      readonly kind: 'status';
      readonly status: number;
      readonly headers?: Readonly<Record<string, string>>;
      readonly body?: string;
    }
  | { readonly kind: 'refuse' };

export interface FaultRule {
  /** Matches the request path (without query); absent: every path. */
  readonly path?: RegExp;
  /** Matches the method; absent: every method. */
  readonly method?: string;
  readonly action: FaultAction;
  /** Applies to this many matching requests, then lapses. Absent: until cleared. */
  readonly times?: number;
}

/** A request the forwarder saw, and what it did with it. */
export interface FaultSeen {
  readonly method: string;
  readonly path: string;
  readonly action: FaultAction['kind'];
}

export interface FaultProxy {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  /** `127.0.0.1:PORT` */
  readonly host: string;
  readonly port: number;
  /** Every request, in order. */
  readonly seen: FaultSeen[];
  /** Requests seen whose path matches (and method, if given). */
  count(path: RegExp, method?: string): number;
  /** Adds a rule; the first rule (in the order added) that matches and has not lapsed applies. */
  fault(rule: FaultRule): void;
  /** Drops every rule (everything passes again) and ends stalled answers. */
  clear(): void;
  /** Stops listening (connections are refused) until {@link up}; open connections are closed. */
  down(): Promise<void>;
  /** Listens again on the same port. */
  up(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A loopback HTTP/1.1 forwarder to `target` whose behaviour a test switches at runtime, for
 * fault injection in front of a real registry or token server: connections reset mid-body,
 * bodies or headers that stall, error statuses (429 with Retry-After, 5xx) instead of the real
 * answer, refused connections. It counts what it saw per path, so tests can assert how often a
 * request was retried.
 */
export async function startFaultProxy(
  target: string,
  options: {
    /** How long the forwarder keeps an idle client connection. Default Node's (5 s). */
    keepAliveTimeoutMs?: number;
  } = {},
): Promise<FaultProxy> {
  const base = new URL(target);
  const rules: Array<{ rule: FaultRule; left: number }> = [];
  const seen: FaultSeen[] = [];
  const sockets = new Set<Socket>();
  /** Answers held open by `stall` / `stall-headers`, ended by `clear` and `close`. */
  const held = new Set<Socket>();

  const pick = (method: string, path: string): FaultAction => {
    for (const entry of rules) {
      const { rule } = entry;
      if (entry.left <= 0) continue;
      if (rule.method !== undefined && rule.method !== method) continue;
      if (rule.path !== undefined && !rule.path.test(path)) continue;
      entry.left--;
      return rule.action;
    }
    return { kind: 'pass' };
  };

  const forward = (req: IncomingMessage, res: ServerResponse, action: FaultAction) => {
    const chunked = 'chunked' in action && action.chunked === true;
    const limit =
      action.kind === 'reset' || action.kind === 'stall'
        ? action.afterBytes
        : Number.POSITIVE_INFINITY;
    const upstream = httpRequest(
      {
        host: base.hostname,
        port: base.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
        agent: false,
      },
      (answer) => {
        const headers: Record<string, string | string[]> = {};
        for (const [name, value] of Object.entries(answer.headers)) {
          if (value === undefined || name === 'connection' || name === 'transfer-encoding')
            continue;
          if (chunked && name === 'content-length') continue;
          headers[name] = value;
        }
        res.writeHead(answer.statusCode ?? 502, headers);
        let sent = 0;
        const cut = () => {
          answer.destroy();
          upstream.destroy();
          if (action.kind === 'reset') req.socket.resetAndDestroy();
          else held.add(req.socket);
        };
        if (limit === 0) {
          res.flushHeaders();
          cut();
          return;
        }
        answer.on('data', (chunk: Buffer) => {
          if (sent >= limit) return;
          const room = limit - sent;
          const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
          sent += part.length;
          const ok = res.write(part);
          if (sent >= limit) {
            // Once those bytes are on the wire, cut (reset) or go quiet (stall).
            res.write('', () => cut());
          } else if (!ok) {
            answer.pause();
            res.once('drain', () => answer.resume());
          }
        });
        answer.on('end', () => {
          if (sent < limit || limit === Number.POSITIVE_INFINITY) res.end();
        });
        answer.on('error', () => res.destroy());
      },
    );
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.destroy();
    });
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  };

  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const method = req.method ?? 'GET';
    const action = pick(method, path);
    seen.push({ method, path, action: action.kind });
    switch (action.kind) {
      case 'refuse':
        req.socket.resetAndDestroy();
        return;
      case 'stall-headers':
        req.resume();
        held.add(req.socket);
        return;
      case 'status': {
        req.resume();
        const body = action.body ?? '';
        res.writeHead(action.status, {
          'content-length': Buffer.byteLength(body),
          ...action.headers,
        });
        res.end(body);
        return;
      }
      case 'pass':
        if (action.delayMs) {
          const timer = setTimeout(() => forward(req, res, action), action.delayMs);
          res.on('close', () => clearTimeout(timer));
        } else forward(req, res, action);
        return;
      default:
        forward(req, res, action);
    }
  });
  if (options.keepAliveTimeoutMs !== undefined)
    server.keepAliveTimeout = options.keepAliveTimeoutMs;
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => {
      sockets.delete(socket);
      held.delete(socket);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const closeAll = () => {
    for (const socket of sockets) socket.destroy();
  };
  const stopListening = () =>
    new Promise<void>((resolve) => {
      closeAll();
      if (!server.listening) resolve();
      else server.close(() => resolve());
    });

  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    seen,
    count: (path, method) =>
      seen.filter((s) => path.test(s.path) && (method === undefined || s.method === method)).length,
    fault: (rule) => {
      rules.push({ rule, left: rule.times ?? Number.POSITIVE_INFINITY });
    },
    clear: () => {
      rules.splice(0);
      for (const socket of held) socket.destroy();
      held.clear();
    },
    down: stopListening,
    up: () =>
      new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      }),
    close: stopListening,
  };
}
