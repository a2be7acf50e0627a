import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { connect } from 'node:net';

/** The inodes of the sockets a process holds open (its fds that are sockets). */
export function socketInodes(pid: number): Set<string> {
  const out = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m?.[1]) out.add(m[1]);
    } catch {
      // closed while we looked
    }
  }
  return out;
}

export const openSockets = (pid: number): number => socketInodes(pid).size;

/** Established TCP connections (IPv4) from process `pid` to a loopback port (kernel's table). */
export function connectionsTo(pid: number, port: number): number {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const mine = socketInodes(pid);
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .filter((line) => {
      const f = line.trim().split(/\s+/);
      return f[2]?.endsWith(`:${hex}`) && f[3] === '01' && mine.has(f[9] ?? '');
    }).length;
}

/** VmRSS and VmHWM of a process, in KiB. */
export function memory(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) =>
    Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
  return { rss: field('VmRSS'), hwm: field('VmHWM') };
}

export async function eventually(
  check: () => boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`never: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Polls an async check every half second until it holds (45 s at most). */
export async function until(
  check: () => Promise<boolean>,
  what: string,
  timeoutMs = 45_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`never: ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** What a client saw of one HTTP/1.1 exchange on its own connection, byte for byte. */
export interface RawExchange {
  status: number;
  headers: Record<string, string>;
  /** Body bytes as they came on the wire (chunk framing included when chunked). */
  body: Buffer;
  /** Whether the framing said the body was complete (Content-Length reached, or the last chunk). */
  complete: boolean;
  /** How the connection ended: `reset` (ECONNRESET), `closed` (FIN), or `open` (still open). */
  ended: 'reset' | 'closed' | 'open';
}

/**
 * Sends `GET path` on a new connection and collects the answer until the connection ends, or
 * (for complete answers on a kept-alive connection) until the framing says it is complete.
 */
export function rawGet(
  address: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<RawExchange> {
  const [host, port] = address.split(':');
  return new Promise((resolve) => {
    const socket = connect(Number(port), host);
    let data = Buffer.alloc(0);
    let done = false;
    const parse = (): RawExchange | undefined => {
      const end = data.indexOf('\r\n\r\n');
      if (end < 0) return undefined;
      const lines = data.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(lines[0]?.split(' ')[1]);
      const fields: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        fields[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      const body = data.subarray(end + 4);
      const length = fields['content-length'];
      const complete =
        length !== undefined
          ? body.length >= Number(length)
          : fields['transfer-encoding'] === 'chunked'
            ? body.subarray(-5).toString('latin1') === '0\r\n\r\n'
            : false;
      return { status, headers: fields, body, complete, ended: 'open' };
    };
    const finish = (ended: RawExchange['ended']) => {
      if (done) return;
      done = true;
      const got = parse() ?? { status: 0, headers: {}, body: data, complete: false, ended };
      resolve({ ...got, ended });
    };
    socket.on('connect', () => {
      const lines = [`GET ${path} HTTP/1.1`, `host: ${address}`];
      for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    });
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      if (parse()?.complete) {
        finish('open');
        socket.destroy();
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) =>
      finish(err.code === 'ECONNRESET' ? 'reset' : 'closed'),
    );
    socket.on('close', () => finish('closed'));
  });
}

/** The body of a chunked answer, unframed. */
export function unchunk(wire: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = wire.indexOf('\r\n', at);
    if (eol < 0) break;
    const size = Number.parseInt(wire.subarray(at, eol).toString('latin1'), 16);
    if (!(size > 0)) break;
    parts.push(wire.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return Buffer.concat(parts);
}
