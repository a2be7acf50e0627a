import { createHash } from 'node:crypto';
import { connect } from 'node:net';

/** One response as the raw-socket client saw it. */
export interface RawResponse {
  readonly status: number;
  /** Header names lower-cased. */
  readonly headers: Readonly<Record<string, string>>;
  /** Bytes of the status line and headers. */
  readonly headerBytes: number;
  /** Bytes of the body (the payload, for a chunked body). */
  readonly bodyBytes: number;
  /** Every byte read from the socket: headers, body and any chunk framing. */
  readonly totalBytes: number;
  /** From before connecting to the last body byte. */
  readonly ms: number;
  /** `sha256:<hex>` of the body, with `hash: true`. */
  readonly digest?: string;
}

export interface RawGetOptions {
  readonly headers?: Readonly<Record<string, string>>;
  /** Hash the body (costs client CPU; for checks, not for timed runs). */
  readonly hash?: boolean;
  /** Stop reading for `ms` once `afterBytes` body bytes arrived: a client that stalls. */
  readonly stall?: { readonly afterBytes: number; readonly ms: number };
  /** Size of the one read buffer the socket fills. Default 1 MiB. */
  readonly readBuffer?: number;
}

const HEADER_END = Buffer.from('\r\n\r\n');
const HEADER_MAX = 64 * 1024;
const CHUNKED_MAX = 16 * 1024 * 1024;

/**
 * The payload length of a complete `Transfer-Encoding: chunked` body (RFC 9112 §7.1), hashing
 * the payload into `hash`.
 *
 * @throws Error when the framing is broken or the last chunk is missing
 */
export function dechunk(data: Buffer, hash?: { update(chunk: Buffer): unknown } | null): number {
  let at = 0;
  let total = 0;
  for (;;) {
    const lineEnd = data.indexOf('\r\n', at);
    if (lineEnd === -1) throw new Error('chunked body ends inside a chunk size line');
    const size = Number.parseInt(
      data.subarray(at, lineEnd).toString('latin1').split(';')[0] ?? '',
      16,
    );
    if (!Number.isFinite(size) || size < 0) throw new Error('chunked body has a bad chunk size');
    at = lineEnd + 2;
    if (size === 0) return total;
    if (at + size + 2 > data.length) throw new Error('chunked body ends inside a chunk');
    hash?.update(data.subarray(at, at + size));
    total += size;
    at += size + 2;
  }
}

/**
 * An HTTP/1.1 GET over a plain socket that reads the body into one reused buffer and discards
 * it, so that the client costs as little CPU as possible next to the servers it measures. It
 * sends `Connection: close`; a body with `Content-Length` (blobs and manifests) is counted as it
 * streams, a chunked one (small, such as an empty 307) is kept and decoded at the close.
 */
export function rawGet(url: string, options: RawGetOptions = {}): Promise<RawResponse> {
  const target = new URL(url);
  if (target.protocol !== 'http:') throw new TypeError(`rawGet speaks http only, not ${url}`);
  const started = performance.now();
  return new Promise<RawResponse>((resolve, reject) => {
    const head: Buffer[] = [];
    let headLength = 0;
    let parsed: { status: number; headers: Record<string, string>; headerBytes: number } | null =
      null;
    let expected = -1;
    let body = 0;
    let received = 0;
    let stalled = false;
    /** A chunked body (small responses only, such as our 307s), decoded when the server closes. */
    let chunked: Buffer[] | null = null;
    let chunkedLength = 0;
    const hash = options.hash ? createHash('sha256') : null;
    let settled = false;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      if (err) return reject(err);
      if (!parsed) return reject(new Error(`${url}: connection closed before the headers`));
      if (chunked) {
        try {
          body = dechunk(Buffer.concat(chunked), hash);
        } catch (e) {
          return reject(new Error(`${url}: ${(e as Error).message}`));
        }
      }
      if (expected >= 0 && body !== expected)
        return reject(new Error(`${url}: body ended after ${body} of ${expected} bytes`));
      resolve({
        status: parsed.status,
        headers: parsed.headers,
        headerBytes: parsed.headerBytes,
        bodyBytes: body,
        totalBytes: received,
        ms: performance.now() - started,
        ...(hash ? { digest: `sha256:${hash.digest('hex')}` } : {}),
      });
    };
    const onBody = (chunk: Buffer) => {
      if (chunk.length === 0) return;
      if (chunked) {
        chunked.push(Buffer.from(chunk));
        chunkedLength += chunk.length;
        if (chunkedLength > CHUNKED_MAX)
          finish(
            new Error(
              `${url}: chunked body over ${CHUNKED_MAX} bytes; the bench needs Content-Length`,
            ),
          );
        return;
      }
      body += chunk.length;
      hash?.update(chunk);
      const stall = options.stall;
      if (stall && !stalled && body >= stall.afterBytes) {
        stalled = true;
        socket.pause();
        setTimeout(() => socket.resume(), stall.ms);
      }
      if (expected >= 0 && body >= expected) finish();
    };
    const socket = connect({
      host: target.hostname,
      port: Number(target.port || 80),
      onread: {
        buffer: Buffer.allocUnsafe(options.readBuffer ?? 1024 * 1024),
        // Returning true keeps reading (false would pause the socket).
        callback: (n: number, buf: Uint8Array) => {
          onRead(Buffer.from(buf.buffer, buf.byteOffset, n));
          return true;
        },
      },
    });
    function onRead(chunk: Buffer): void {
      const n = chunk.length;
      received += n;
      if (parsed) {
        onBody(chunk);
        return;
      }
      // Headers: copy, since the read buffer is reused for the next read.
      head.push(Buffer.from(chunk));
      headLength += n;
      const all = Buffer.concat(head, headLength);
      const end = all.indexOf(HEADER_END);
      if (end === -1) {
        if (headLength > HEADER_MAX) finish(new Error(`${url}: headers over ${HEADER_MAX} bytes`));
        return;
      }
      const lines = all.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1]);
      if (!status) {
        finish(new Error(`${url}: not an HTTP/1.1 response: ${lines[0]}`));
        return;
      }
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        if (colon > 0)
          headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      parsed = { status, headers, headerBytes: end + HEADER_END.length };
      if (/chunked/i.test(headers['transfer-encoding'] ?? '')) chunked = [];
      if (headers['content-length'] !== undefined) expected = Number(headers['content-length']);
      else if (status === 204 || status === 304 || (status >= 100 && status < 200)) expected = 0;
      if (expected === 0) finish();
      else onBody(all.subarray(parsed.headerBytes));
    }
    socket.setNoDelay(true);
    socket.on('connect', () => {
      const extra = Object.entries(options.headers ?? {})
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('');
      socket.write(
        `GET ${target.pathname}${target.search} HTTP/1.1\r\nHost: ${target.host}\r\nUser-Agent: registry-proxy-bench\r\n${extra}Connection: close\r\n\r\n`,
      );
    });
    socket.on('error', (err) => finish(err));
    socket.on('end', () => finish());
    socket.on('close', () => finish());
  });
}
