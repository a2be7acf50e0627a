import { type LookupFunction, connect as netConnect, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';
import { ResponseParseError, ResponseParser } from './http1-response.js';

/**
 * A GET-only HTTP/1.1 client for blob bodies, the hot path of a pull.
 *
 * Node's own client reads every chunk into a fresh 64 KiB buffer that lives until the garbage
 * collector notices it: on a 1 GiB blob that is 16,000 buffers, most of the CPU a stream costs,
 * and the proxy's peak memory. Here each socket reads (`onread`) into buffers taken from a small
 * pool, each filled buffer is written to the client as is, and it goes back to the pool when the
 * client's socket has taken it (the write callback), so a stream allocates nothing in the steady
 * state and memory stays flat whatever the blob size. The answer is parsed by
 * {@link ResponseParser}, which hands body bytes over as views of our buffers, without a copy.
 */

/** Plain sockets read up to this much at once (measured: 1 MiB beats 256 KiB and 64 KiB). */
const PLAIN_READ = 1024 * 1024;
/**
 * TLS hands decrypted records (16 KiB) over one by one, so smaller buffers suffice; plain
 * sockets read into this size too until a read fills one (a body arriving faster than it is
 * read): an idle connection, a manifest or a small layer then holds 64 KiB rather than 1 MiB.
 * Under 200 clients pulling 256 KiB layers (`pnpm bench:load`) the peak RSS went from 340 to
 * 257 MiB; a large blob still streams through 1 MiB reads.
 */
const SMALL_READ = 64 * 1024;
/** Buffers kept for reuse per size; more in use at once are allocated and left to the GC. */
const POOL_KEEP = 16;
/** Idle keep-alive connections kept per origin, and for how long. */
const IDLE_PER_ORIGIN = 32;
const IDLE_MS = 15_000;
/** A body `discard`ed beyond this many bytes costs its connection rather than the transfer. */
const DISCARD_MAX = 256 * 1024;

class BufferPool {
  readonly #free: Buffer[] = [];
  constructor(readonly size: number) {}
  take(): Buffer {
    return this.#free.pop() ?? Buffer.allocUnsafe(this.size);
  }
  give(buf: Buffer): void {
    if (this.#free.length < POOL_KEEP) this.#free.push(buf);
  }
}
const pools = { large: new BufferPool(PLAIN_READ), small: new BufferPool(SMALL_READ) };

/**
 * One read's buffer, shared by the body chunks cut from it: back to the pool when the read has
 * been parsed and every chunk written from it has been flushed (or dropped).
 */
class Lease {
  #holds = 1;
  constructor(
    readonly buf: Buffer,
    readonly pool: BufferPool,
  ) {}
  hold(): () => void {
    this.#holds++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.release();
    };
  }
  release(): void {
    if (--this.#holds === 0) this.pool.give(this.buf);
  }
}

/** Where a body's bytes go once someone consumes it. */
export interface Sink {
  chunk(chunk: Buffer, release: () => void): void;
  end(): void;
  error(err: Error): void;
}

/** A keep-alive connection to one origin; `onread` dispatches to whichever exchange owns it. */
class Connection {
  readonly socket: Socket;
  /** The exchange reading from this connection, if any. */
  current: Exchange | undefined;
  /** Whether any response byte ever arrived (a reused socket that fails before is retried). */
  used = false;
  #idleTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly origin: string,
    url: URL,
    lookup?: LookupFunction,
  ) {
    const tls = url.protocol === 'https:';
    // The pool the next read's buffer comes from.
    let next = pools.small;
    let lease = new Lease(next.take(), next);
    const onread = {
      buffer: () => {
        lease = new Lease(next.take(), next);
        return lease.buf;
      },
      callback: (n: number, buf: Buffer): boolean => {
        // A full buffer means more is waiting: read large. Less than a small buffer's worth means
        // the body is small or done: back to small. In between, keep the size.
        if (!tls && n === buf.length) next = pools.large;
        else if (n < SMALL_READ) next = pools.small;
        const read =
          lease.buf === buf
            ? lease
            : new Lease(buf, buf.length === PLAIN_READ ? pools.large : pools.small);
        try {
          if (this.current) this.current.read(buf, n, read);
          else this.socket.destroy(new Error('upstream sent bytes nobody asked for'));
        } finally {
          read.release();
        }
        return true;
      },
    };
    const port = Number(url.port || (tls ? 443 : 80));
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    this.socket = tls
      ? // `onread` works for TLS sockets too (nodejs/node#35753); @types/node lacks it there.
        tlsConnect({
          host,
          port,
          servername: /^[\d.]+$|:/.test(host) ? undefined : host,
          ALPNProtocols: ['http/1.1'],
          onread,
          ...(lookup ? { lookup } : {}),
        } as ConnectionOptions)
      : netConnect({ host, port, onread, ...(lookup ? { lookup } : {}) });
    this.socket.setNoDelay(true);
    this.socket.on('error', (err) => this.current?.fail(err));
    this.socket.on('end', () => {
      if (this.current) this.current.ended();
      else this.socket.destroy();
    });
    this.socket.on('close', () => {
      this.#clearIdle();
      this.current?.fail(new Error('upstream closed the connection'));
      removeIdle(this);
    });
  }

  idle(): void {
    this.current = undefined;
    // Reading on, so that the server closing an idle connection is noticed (and it is dropped).
    this.socket.resume();
    this.#idleTimer = setTimeout(() => this.socket.destroy(), IDLE_MS);
    this.#idleTimer.unref();
    this.socket.unref();
  }

  reuse(): void {
    this.#clearIdle();
    this.socket.ref();
  }

  #clearIdle(): void {
    if (this.#idleTimer !== undefined) clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
  }
}

const idle = new Map<string, Connection[]>();
function removeIdle(conn: Connection): void {
  const list = idle.get(conn.origin);
  const at = list?.indexOf(conn) ?? -1;
  if (list && at >= 0) list.splice(at, 1);
  if (list?.length === 0) idle.delete(conn.origin);
}
function takeIdle(origin: string): Connection | undefined {
  const list = idle.get(origin);
  while (list && list.length > 0) {
    const conn = list.pop() as Connection;
    if (!conn.socket.destroyed) {
      if (list.length === 0) idle.delete(origin);
      conn.reuse();
      return conn;
    }
  }
  idle.delete(origin);
  return undefined;
}
function putIdle(conn: Connection): void {
  const list = idle.get(conn.origin) ?? [];
  if (list.length >= IDLE_PER_ORIGIN) {
    conn.socket.destroy();
    return;
  }
  conn.idle();
  list.push(conn);
  idle.set(conn.origin, list);
}

/** A body chunk waiting for its consumer. */
interface Queued {
  chunk: Buffer;
  release: () => void;
}

/** One request and its response on a connection. */
class Exchange implements BodyControl {
  readonly #parser: ResponseParser;
  readonly #conn: Connection;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = () => this.abort(new Error('aborted'));
  #resolve: ((res: Response) => void) | undefined;
  #reject: ((err: Error) => void) | undefined;
  #sink: Sink | undefined;
  readonly #queue: Queued[] = [];
  #lease: Lease | undefined;
  #complete = false;
  #failed: Error | undefined;
  #keepAlive = false;
  readonly #idleMs: number | undefined;
  /** Runs while the body is wanted and the upstream owes bytes; reset by every read. */
  #idleTimer: NodeJS.Timeout | undefined;

  constructor(
    conn: Connection,
    signal: AbortSignal | undefined,
    idleMs: number | undefined,
    resolve: (res: Response) => void,
    reject: (err: Error) => void,
  ) {
    this.#conn = conn;
    this.#signal = signal;
    this.#idleMs = idleMs;
    this.#resolve = resolve;
    this.#reject = reject;
    this.#parser = new ResponseParser({
      head: ({ status, headers: fields, keepAlive }) => {
        this.#keepAlive = keepAlive;
        const headers = new Headers();
        for (const [name, value] of fields) headers.append(name, value);
        const res = new Response(null, { status: status <= 599 ? status : 502, headers });
        bodies.set(res, new RawBody(this));
        this.#arm();
        const resolveHead = this.#resolve;
        this.#resolve = undefined;
        this.#reject = undefined;
        resolveHead?.(res);
      },
      body: (chunk) => {
        if (chunk.length === 0) return;
        const release = (this.#lease as Lease).hold();
        if (this.#sink) this.#sink.chunk(chunk, release);
        else {
          this.#queue.push({ chunk, release });
          this.#conn.socket.pause();
          this.#disarm();
        }
      },
      complete: () => {
        this.#complete = true;
      },
    });
    signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  read(buf: Buffer, n: number, lease: Lease): void {
    if (this.#failed) return;
    this.#conn.used = true;
    this.#lease = lease;
    try {
      this.#parser.execute(buf, 0, n);
    } catch (err) {
      // Junk after a complete answer costs the connection, not the answer.
      if (!this.#complete) {
        const why = err instanceof ResponseParseError ? err.message : String(err);
        this.fail(new Error(`upstream sent a malformed answer: ${why}`));
        return;
      }
      this.#keepAlive = false;
    } finally {
      this.#lease = undefined;
    }
    if (this.#complete) this.#finish();
    else if (this.#idleTimer !== undefined) this.#arm();
  }

  /**
   * Starts (or restarts) the body idle timer: an upstream silent for `idleMs` while we wait for
   * its bytes fails the exchange, so a stalled body ends in an error, never in a hang.
   */
  #arm(): void {
    if (this.#idleMs === undefined || this.#complete || this.#failed) return;
    clearTimeout(this.#idleTimer);
    const ms = this.#idleMs;
    this.#idleTimer = setTimeout(
      () => this.fail(new UpstreamStalledError(`upstream sent nothing for ${ms} ms mid-answer`)),
      ms,
    );
  }

  #disarm(): void {
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
  }

  /** The upstream ended its side: the end of a close-delimited body, or a truncation. */
  ended(): void {
    if (this.#complete || this.#failed) return;
    try {
      this.#parser.finish();
    } catch {
      this.fail(new Error('upstream closed the connection mid-answer'));
      return;
    }
    this.#keepAlive = false;
    this.#finish();
  }

  /** The connection broke or the transfer was stopped before the answer was complete. */
  fail(err: Error): void {
    if (this.#failed || this.#complete) return;
    this.#failed = err;
    this.#disarm();
    this.#signal?.removeEventListener('abort', this.#onAbort);
    if (this.#conn.current === this) this.#conn.current = undefined;
    this.#conn.socket.destroy();
    for (const q of this.#queue.splice(0)) q.release();
    const reject = this.#reject;
    this.#resolve = undefined;
    this.#reject = undefined;
    if (reject) reject(err);
    else this.#sink?.error(err);
  }

  /** The whole answer has been read; the sink ends after whatever is still queued. */
  #finish(): void {
    this.#disarm();
    this.#signal?.removeEventListener('abort', this.#onAbort);
    if (this.#conn.current === this) this.#conn.current = undefined;
    if (this.#keepAlive && !this.#conn.socket.destroyed) putIdle(this.#conn);
    else this.#conn.socket.destroy();
    if (this.#sink && this.#queue.length === 0) this.#sink.end();
  }

  attach(sink: Sink): void {
    this.#sink = sink;
    for (const q of this.#queue.splice(0)) sink.chunk(q.chunk, q.release);
    if (this.#failed) sink.error(this.#failed);
    else if (this.#complete) sink.end();
    else {
      this.#conn.socket.resume();
      this.#arm();
    }
  }

  /** Stops the transfer: the connection is closed, queued bytes dropped. */
  abort(err: Error): void {
    this.fail(err);
  }

  pause(): void {
    if (!this.#complete && !this.#failed) this.#conn.socket.pause();
    this.#disarm();
  }

  resume(): void {
    if (this.#complete || this.#failed) return;
    this.#conn.socket.resume();
    this.#arm();
  }
}

/** Steers a body being consumed: backpressure, and stopping it early. */
export interface BodyControl {
  pause(): void;
  resume(): void;
  abort(err: Error): void;
}

/** A response body read by {@link rawGet}: piped, discarded or turned into a stream, once. */
export class RawBody {
  #exchange: Exchange | undefined;
  constructor(exchange: Exchange) {
    this.#exchange = exchange;
  }

  /**
   * Consumes the body from the next microtask on: `sink.chunk` gets views of pooled buffers and
   * must call `release` once the bytes are written or dropped; the returned control pauses,
   * resumes or stops the transfer.
   */
  consume(sink: Sink): BodyControl {
    const exchange = this.#exchange;
    if (exchange === undefined) throw new Error('body already consumed');
    this.#exchange = undefined;
    queueMicrotask(() => exchange.attach(sink));
    return exchange;
  }

  /** Reads and drops a short body so the connection can be reused; a long one costs the connection. */
  discard(): void {
    let seen = 0;
    const control = this.consume({
      chunk(chunk, release) {
        seen += chunk.length;
        release();
        if (seen > DISCARD_MAX) control.abort(new Error('discarded'));
      },
      end() {},
      error() {},
    });
  }

  /** The body as a Node stream of copied chunks (error bodies and other small reads). */
  toReadable(): Readable {
    const stream: Readable = new Readable({
      read() {
        control.resume();
      },
      destroy(err, callback) {
        control.abort(err ?? new Error('cancelled'));
        callback(err);
      },
    });
    const control = this.consume({
      chunk(chunk, release) {
        const copy = Buffer.from(chunk);
        release();
        if (!stream.push(copy)) control.pause();
      },
      end() {
        stream.push(null);
      },
      error(err) {
        stream.destroy(err);
      },
    });
    return stream;
  }
}

const bodies = new WeakMap<Response, RawBody>();

/** The body behind a Response made by {@link rawGet}. */
export function rawBodyOf(res: Response): RawBody | undefined {
  return bodies.get(res);
}

/** The upstream went quiet mid-answer for longer than the idle timeout. */
export class UpstreamStalledError extends Error {
  override readonly name = 'UpstreamStalledError';
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[\0\r\n]/;

/**
 * GETs `url` over a pooled keep-alive connection and resolves with the answer's status and
 * headers; the body ({@link rawBodyOf}) must then be consumed once. Redirects are not followed.
 * A request on a reused connection that fails before any answer arrives is sent again once on a
 * new connection (the server may have closed the idle one; a GET is safe to repeat).
 * With `idleMs`, a body that stops arriving for that long while it is being consumed (not while
 * the consumer has paused it) fails with {@link UpstreamStalledError}.
 */
export async function rawGet(
  url: URL,
  init: {
    headers: Record<string, string>;
    signal?: AbortSignal;
    lookup?: LookupFunction;
    idleMs?: number;
  },
): Promise<Response> {
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new TypeError(`unsupported URL scheme ${url.protocol}`);
  let head = `GET ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\n`;
  for (const [name, value] of Object.entries(init.headers)) {
    if (!TOKEN.test(name) || BAD_VALUE.test(value) || name.toLowerCase() === 'host')
      throw new TypeError(`invalid request header ${JSON.stringify(name)}`);
    head += `${name}: ${value}\r\n`;
  }
  head += '\r\n';
  if (/[\s\0]/.test(`${url.pathname}${url.search}`)) throw new TypeError('invalid request path');
  if (init.signal?.aborted) throw new Error('aborted');
  const origin = `${url.protocol}//${url.host}`;
  const reused = takeIdle(origin);
  try {
    return await exchange(
      reused ?? new Connection(origin, url, init.lookup),
      head,
      init.signal,
      init.idleMs,
    );
  } catch (err) {
    if (reused === undefined || reused.used || init.signal?.aborted) throw err;
    return exchange(new Connection(origin, url, init.lookup), head, init.signal, init.idleMs);
  }
}

function exchange(
  conn: Connection,
  head: string,
  signal: AbortSignal | undefined,
  idleMs: number | undefined,
): Promise<Response> {
  conn.used = false;
  return new Promise<Response>((resolve, reject) => {
    conn.current = new Exchange(conn, signal, idleMs, resolve, reject);
    conn.socket.write(head);
  });
}
