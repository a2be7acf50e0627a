import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type ResponseHead, ResponseParser } from './http1-response.js';

/** Feeds `pieces` to a parser; returns what it reported, or the error it threw. */
function parse(pieces: Buffer[], end = false) {
  let head: ResponseHead | undefined;
  const body: Buffer[] = [];
  let complete = 0;
  const parser = new ResponseParser({
    head: (h) => {
      head = h;
    },
    body: (chunk) => body.push(Buffer.from(chunk)),
    complete: () => complete++,
  });
  try {
    for (const piece of pieces) parser.execute(piece);
    if (end) parser.finish();
  } catch (err) {
    return { error: (err as Error).message, head, body: Buffer.concat(body), complete };
  }
  return { error: undefined, head, body: Buffer.concat(body), complete };
}
const one = (text: string, end = false) => parse([Buffer.from(text, 'latin1')], end);

describe('ResponseParser', () => {
  it('reads a sized answer, its fields and whether the connection stays open', () => {
    const got = one(
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nDocker-Content-Digest:  sha256:abc \r\nSet-Cookie: a\r\nSet-Cookie: b\r\n\r\nhello',
    );
    expect(got.error).toBeUndefined();
    expect(got.head).toEqual({
      status: 200,
      headers: [
        ['content-length', '5'],
        ['docker-content-digest', 'sha256:abc'],
        ['set-cookie', 'a'],
        ['set-cookie', 'b'],
      ],
      keepAlive: true,
    });
    expect(got.body.toString()).toBe('hello');
    expect(got.complete).toBe(1);
    expect(
      one('HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n').head
        ?.keepAlive,
    ).toBe(false);
    expect(one('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n').head?.keepAlive).toBe(false);
    expect(one('HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n').complete).toBe(1);
  });

  it('reads chunked bodies with extensions and trailers, and close-delimited ones at the end', () => {
    const chunked = one(
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n5;name=x\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n',
    );
    expect(chunked.error).toBeUndefined();
    expect(chunked.body.toString()).toBe('hello0123456789');
    expect(chunked.complete).toBe(1);
    const raw = one('HTTP/1.1 200 OK\r\n\r\nuntil the end', true);
    expect(raw.body.toString()).toBe('until the end');
    expect(raw.head?.keepAlive).toBe(false);
    expect(raw.complete).toBe(1);
    expect(one('HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n').complete).toBe(1);
  });

  it.each([
    ['two lengths', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello'],
    ['a list of lengths that differ', 'HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello'],
    ['a signed length', 'HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello'],
    [
      'length and coding',
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n',
    ],
    ['another coding', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n'],
    ['a chunk size that is not hex', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'],
    ['a negative chunk size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n'],
    [
      'chunk data longer than its size',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n',
    ],
    [
      'a bare LF in chunk framing',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nab\r\n',
    ],
    ['a folded header', 'HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 0\r\n\r\n'],
    ['a space before the colon', 'HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n'],
    [
      'a control character in a value',
      'HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n',
    ],
    ['an informational answer', 'HTTP/1.1 100 Continue\r\n\r\n'],
    ['not HTTP', 'SSH-2.0-OpenSSH\r\n\r\n'],
    ['HTTP/2 preface', 'HTTP/2 200\r\n\r\n'],
    ['bytes after the answer', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab'],
  ])('refuses %s', (_why, text) => {
    expect(one(text).error).toBeDefined();
  });

  it('refuses an answer cut short and an over-long head', () => {
    expect(one('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort', true).error).toMatch(
      /closed mid-answer/,
    );
    expect(
      one('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel', true).error,
    ).toMatch(/closed mid-answer/);
    const huge = `HTTP/1.1 200 OK\r\n${'X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n'.repeat(2000)}`;
    const pieces = [...Buffer.from(huge)].reduce<Buffer[]>((acc, _b, i, all) => {
      if (i % 1000 === 0) acc.push(Buffer.from(all.slice(i, i + 1000)));
      return acc;
    }, []);
    expect(parse(pieces).error).toMatch(/too large/);
  });

  it('gives the same result however the bytes are split', () => {
    const text = Buffer.from(
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n',
      'latin1',
    );
    const whole = parse([text]);
    expect(whole.body.toString()).toBe('abc0123456789abcdef');
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: text.length - 1 }), { maxLength: 12 }),
        (cuts) => {
          const at = [0, ...cuts.sort((a, b) => a - b), text.length];
          const pieces = at.slice(1).map((end, i) => text.subarray(at[i], end));
          const got = parse(pieces);
          expect(got.error).toBeUndefined();
          expect(got.head).toEqual(whole.head);
          expect(got.body.equals(whole.body)).toBe(true);
          expect(got.complete).toBe(1);
        },
      ),
    );
    // byte by byte, the hardest split for the head's blank line
    const bytes = [...text].map((b) => Buffer.from([b]));
    expect(parse(bytes).body.equals(whole.body)).toBe(true);
  });
});
