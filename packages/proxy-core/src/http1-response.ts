/**
 * A strict HTTP/1.1 response parser (RFC 9112) for answers to GET: the head, then the body as
 * views of the caller's buffers, framed by Content-Length, chunked coding or the connection's
 * close. Anything ambiguous (two different lengths, a length beside a transfer coding, a coding
 * other than chunked, a chunk size that is not hex, folded headers, control characters) is an
 * error, never a guess: an upstream that frames badly could otherwise make a truncated blob look
 * whole or shift one answer into the next on a reused connection.
 */

export class ResponseParseError extends Error {}

export interface ResponseHead {
  readonly status: number;
  /** Field names lower-cased, in order, repeated fields kept apart. */
  readonly headers: [string, string][];
  /** Whether the connection may carry another request after this answer. */
  readonly keepAlive: boolean;
}

export interface ResponseEvents {
  head(head: ResponseHead): void;
  body(chunk: Buffer): void;
  complete(): void;
}

const HEAD_MAX = 64 * 1024;
const LINE_MAX = 4096;
const TRAILERS_MAX = 16 * 1024;
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: [\t\x20-\x7e\x80-\xff]*)?$/;
const FIELD = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[\t ]*([\t\x20-\x7e\x80-\xff]*?)[\t ]*$/;
const CHUNK_SIZE = /^([0-9A-Fa-f]{1,12})[\t ]*(?:;[\t\x20-\x7e\x80-\xff]*)?$/;

type State =
  | 'head'
  | 'sized'
  | 'chunk-size'
  | 'chunk-data'
  | 'chunk-end'
  | 'trailers'
  | 'raw'
  | 'done';

export class ResponseParser {
  #state: State = 'head';
  /** Head bytes seen so far (the head may arrive in pieces). */
  #head: Buffer[] = [];
  #headBytes = 0;
  /** A chunk-size or trailer line in progress. */
  #line = '';
  #trailerBytes = 0;
  /** Body bytes still expected in a sized body or the current chunk. */
  #remaining = 0;

  constructor(readonly events: ResponseEvents) {}

  get complete(): boolean {
    return this.#state === 'done';
  }

  /** Parses `buf[start, end)`; throws {@link ResponseParseError} on a malformed answer. */
  execute(buf: Buffer, start = 0, end = buf.length): void {
    let at = start;
    while (at < end) {
      switch (this.#state) {
        case 'head':
          at = this.#readHead(buf, at, end);
          break;
        case 'sized':
        case 'chunk-data': {
          const n = Math.min(this.#remaining, end - at);
          this.#remaining -= n;
          const chunk = buf.subarray(at, at + n);
          at += n;
          if (this.#remaining === 0) this.#state = this.#state === 'sized' ? 'done' : 'chunk-end';
          this.events.body(chunk);
          if (this.#state === 'done') this.events.complete();
          break;
        }
        case 'raw':
          this.events.body(buf.subarray(at, end));
          at = end;
          break;
        case 'chunk-size':
        case 'chunk-end':
        case 'trailers':
          at = this.#readLine(buf, at, end);
          break;
        case 'done':
          throw new ResponseParseError('bytes after the answer');
      }
    }
  }

  /** The connection's end: completes a close-delimited body; anything else was cut short. */
  finish(): void {
    if (this.#state === 'raw') {
      this.#state = 'done';
      this.events.complete();
    } else if (this.#state !== 'done') {
      throw new ResponseParseError('the connection closed mid-answer');
    }
  }

  #readHead(buf: Buffer, at: number, end: number): number {
    // Look for the blank line, including across the previous piece's last bytes.
    const tail = this.#headBytes > 0 ? Buffer.concat(this.#head) : undefined;
    const scanFrom = tail === undefined ? at : Math.max(0, tail.length - 3);
    const joined =
      tail === undefined ? buf.subarray(at, end) : Buffer.concat([tail, buf.subarray(at, end)]);
    const blank = joined.indexOf('\r\n\r\n', tail === undefined ? 0 : scanFrom, 'latin1');
    if (blank < 0) {
      if (joined.length > HEAD_MAX) throw new ResponseParseError('the answer head is too large');
      this.#head = [Buffer.from(joined)];
      this.#headBytes = joined.length;
      return end;
    }
    if (blank > HEAD_MAX) throw new ResponseParseError('the answer head is too large');
    const consumed = blank + 4 - (tail?.length ?? 0);
    const text = joined.toString('latin1', 0, blank);
    this.#head = [];
    this.#headBytes = 0;
    this.#startBody(text);
    return at + consumed;
  }

  #startBody(text: string): void {
    const [statusLine = '', ...lines] = text.split('\r\n');
    const status = STATUS_LINE.exec(statusLine);
    if (status === null) throw new ResponseParseError('a malformed status line');
    const minor = Number(status[1]);
    const code = Number(status[2]);
    if (code < 200) throw new ResponseParseError(`an informational answer (${code})`);
    const headers: [string, string][] = [];
    let lengths: string | undefined;
    let codings: string | undefined;
    let close = minor === 0;
    for (const line of lines) {
      const field = FIELD.exec(line);
      if (field === null) throw new ResponseParseError('a malformed header field');
      const name = (field[1] as string).toLowerCase();
      const value = field[2] as string;
      headers.push([name, value]);
      if (name === 'content-length')
        lengths = lengths === undefined ? value : `${lengths},${value}`;
      else if (name === 'transfer-encoding')
        codings = codings === undefined ? value : `${codings},${value}`;
      else if (name === 'connection') {
        const tokens = value
          .toLowerCase()
          .split(',')
          .map((t) => t.trim());
        if (tokens.includes('close')) close = true;
      }
    }
    let next: State;
    if (code === 204 || code === 304) next = 'done';
    else if (codings !== undefined) {
      if (lengths !== undefined)
        throw new ResponseParseError('both Content-Length and Transfer-Encoding');
      if (codings.trim().toLowerCase() !== 'chunked')
        throw new ResponseParseError(`an unsupported transfer coding (${codings})`);
      next = 'chunk-size';
    } else if (lengths !== undefined) {
      const values = new Set(lengths.split(',').map((v) => v.trim()));
      const [only] = values;
      if (values.size !== 1 || only === undefined || !/^\d{1,15}$/.test(only))
        throw new ResponseParseError('an invalid Content-Length');
      this.#remaining = Number(only);
      next = this.#remaining === 0 ? 'done' : 'sized';
    } else {
      next = 'raw';
      close = true;
    }
    this.#state = next;
    this.events.head({ status: code, headers, keepAlive: !close });
    if (next === 'done') this.events.complete();
  }

  /** Reads one CRLF-terminated line of chunk framing or trailers. */
  #readLine(buf: Buffer, at: number, end: number): number {
    const lf = buf.indexOf(10, at);
    const stop = lf < 0 || lf >= end ? end : lf + 1;
    this.#line += buf.toString('latin1', at, stop);
    if (this.#line.length > LINE_MAX) throw new ResponseParseError('an over-long chunk line');
    if (stop === end && !this.#line.endsWith('\n')) return end;
    if (!this.#line.endsWith('\r\n')) throw new ResponseParseError('a bare LF in chunk framing');
    const line = this.#line.slice(0, -2);
    this.#line = '';
    switch (this.#state) {
      case 'chunk-end':
        if (line !== '') throw new ResponseParseError('chunk data longer than its size');
        this.#state = 'chunk-size';
        break;
      case 'chunk-size': {
        const size = CHUNK_SIZE.exec(line);
        if (size === null) throw new ResponseParseError('an invalid chunk size');
        this.#remaining = Number.parseInt(size[1] as string, 16);
        this.#state = this.#remaining === 0 ? 'trailers' : 'chunk-data';
        break;
      }
      case 'trailers':
        this.#trailerBytes += line.length + 2;
        if (this.#trailerBytes > TRAILERS_MAX) throw new ResponseParseError('too many trailers');
        if (line === '') {
          this.#state = 'done';
          this.events.complete();
        } else if (!FIELD.test(line)) throw new ResponseParseError('a malformed trailer');
        break;
    }
    return stop;
  }
}
