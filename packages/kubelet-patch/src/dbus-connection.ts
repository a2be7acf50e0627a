/**
 * The one place that touches `dbus-native`: a unix-socket D-Bus connection, authenticated with
 * SASL EXTERNAL, to a bus daemon (with `Hello`) or to a peer such as PID 1's private socket
 * (without). Everything the library reports is turned into a {@link SystemdBusError} here, so
 * the rest of the package never sees the library's types or error shapes.
 *
 * D-Bus specification references: "Authentication Protocol" (SASL EXTERNAL, the uid as hex
 * of its decimal ASCII), "Message Bus Specification" (`Hello` must be the first message on a
 * bus; a bus drops a connection that sends anything else first).
 */
import { connect, type Socket } from 'node:net';
import dbus from 'dbus-native';
import { quote, SystemdBusError } from './errors.js';

/** A method call. */
export interface DBusCall {
  readonly destination?: string;
  readonly path: string;
  readonly interface: string;
  readonly member: string;
  readonly signature?: string;
  readonly body?: readonly unknown[];
}

/** A signal as received. */
export interface DBusSignal {
  readonly path: string;
  readonly interface: string;
  readonly member: string;
  readonly body: readonly unknown[];
}

export interface DBusConnection {
  /** True for a peer-to-peer connection (no bus daemon, no `Hello`). */
  readonly peer: boolean;
  /** Calls a method and resolves to the reply's values. */
  call(call: DBusCall, timeoutMs: number): Promise<unknown[]>;
  /** Calls `listener` for every signal that arrives; returns the function that stops it. */
  onSignal(listener: (signal: DBusSignal) => void): () => void;
  /** Calls `listener` once when the connection goes away; returns the function that stops it. */
  onClose(listener: (error: SystemdBusError) => void): () => void;
  close(): Promise<void>;
}

export interface OpenOptions {
  readonly peer: boolean;
  /** Bound on connecting, authenticating and `Hello` together. */
  readonly timeoutMs: number;
}

const BUS_NAME = 'org.freedesktop.DBus';
const MESSAGE_TYPE_SIGNAL = 4;

/**
 * Connects to the unix socket at `socketPath`, authenticates with EXTERNAL (the library sends
 * this process's uid) and, on a bus, says `Hello`. Rejects with `CONNECT_FAILED`,
 * `AUTH_FAILED`, `NOT_A_BUS` or `TIMEOUT`.
 */
export async function openConnection(
  socketPath: string,
  options: OpenOptions,
): Promise<DBusConnection> {
  const deadline = Date.now() + options.timeoutMs;
  const where = quote(socketPath);
  const socket = await connectSocket(socketPath, options.timeoutMs);
  // `direct: true` always: the library's own Hello throws an uncaught exception when the peer
  // answers it with an error (PID 1's private socket does), so Hello is sent below instead.
  // `stream`: the socket is ours, so no address parsing (the library would run `launchctl`
  // or spawn a `unixexec:` command for some addresses) and we can always destroy it.
  const bus = dbus.createClient({
    stream: socket,
    direct: true,
    authMethods: ['EXTERNAL'],
    timeout: options.timeoutMs,
  });
  const conn = bus.connection;
  // Never an unhandled 'error' event: failures are reported through the handlers below and
  // through 'close'.
  conn.on('error', () => {});
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new SystemdBusError(
              'TIMEOUT',
              `${where} accepted the connection but did not complete D-Bus authentication within ${options.timeoutMs} ms; is it a D-Bus socket?`,
            ),
          ),
        Math.max(0, deadline - Date.now()),
      );
      const done = (error?: SystemdBusError) => {
        clearTimeout(timer);
        conn.off('connect', onConnect);
        conn.off('error', onError);
        conn.off('close', onClosed);
        if (error) reject(error);
        else resolve();
      };
      const onConnect = () => done();
      const onError = (cause: Error) =>
        done(
          new SystemdBusError(
            'AUTH_FAILED',
            `${where} refused D-Bus authentication (SASL EXTERNAL as uid ${process.getuid?.() ?? '?'}): ${quote(cause.message)}; the socket needs the caller to be root in the host's user namespace`,
            {},
            { cause },
          ),
        );
      const onClosed = () =>
        done(
          new SystemdBusError(
            'AUTH_FAILED',
            `${where} closed the connection during D-Bus authentication (SASL EXTERNAL as uid ${process.getuid?.() ?? '?'})`,
          ),
        );
      conn.on('connect', onConnect);
      conn.on('error', onError);
      conn.on('close', onClosed);
    });
  } catch (error) {
    socket.destroy();
    throw error;
  }

  let closed: SystemdBusError | null = null;
  const closeListeners = new Set<(error: SystemdBusError) => void>();
  const signalListeners = new Set<(signal: DBusSignal) => void>();
  const disconnected = () =>
    new SystemdBusError(
      'DISCONNECTED',
      options.peer
        ? `${where} closed the connection; a bus daemon does that to a client that skips Hello, so if this is the system bus socket connect without peer: true`
        : `${where} closed the connection`,
    );
  conn.on('close', () => {
    closed ??= disconnected();
    for (const listener of closeListeners) listener(closed);
    closeListeners.clear();
  });
  // biome-ignore lint/suspicious/noExplicitAny: the library's Message type has every field optional
  conn.on('message', (msg: any) => {
    if (msg.type !== MESSAGE_TYPE_SIGNAL) return;
    const signal: DBusSignal = {
      path: String(msg.path ?? ''),
      interface: String(msg.interface ?? ''),
      member: String(msg.member ?? ''),
      body: Array.isArray(msg.body) ? msg.body : [],
    };
    for (const listener of signalListeners) listener(signal);
  });

  const call = (request: DBusCall, timeoutMs: number): Promise<unknown[]> =>
    new Promise((resolve, reject) => {
      if (closed) {
        reject(closed);
        return;
      }
      const what = `${request.interface}.${request.member}`;
      bus.invoke(
        {
          ...(request.destination !== undefined ? { destination: request.destination } : {}),
          path: request.path,
          interface: request.interface,
          member: request.member,
          ...(request.signature
            ? { signature: request.signature, body: [...(request.body ?? [])] }
            : {}),
        },
        { timeout: timeoutMs },
        // biome-ignore lint/suspicious/noExplicitAny: the library's callback values are untyped
        (err: any, ...values: unknown[]) => {
          if (!err) {
            resolve(values);
          } else if (err instanceof dbus.TimeoutError) {
            reject(new SystemdBusError('TIMEOUT', `no reply to ${what} within ${timeoutMs} ms`));
          } else if (err instanceof dbus.ConnectionClosedError) {
            reject(closed ?? disconnected());
          } else if (typeof err.dbusName === 'string') {
            reject(
              new SystemdBusError(
                'CALL_FAILED',
                `${what} failed: ${err.dbusName}: ${quote(String(err.message ?? ''))}`,
                { dbusName: err.dbusName },
              ),
            );
          } else {
            reject(new SystemdBusError('BAD_REPLY', `${what}: ${quote(String(err))}`));
          }
        },
      );
    });

  const close = async () => {
    closed ??= new SystemdBusError('DISCONNECTED', `the connection to ${where} was closed`);
    await bus.close().catch(() => {});
    socket.destroy();
  };

  if (!options.peer) {
    try {
      await call(
        {
          destination: BUS_NAME,
          path: '/org/freedesktop/DBus',
          interface: BUS_NAME,
          member: 'Hello',
        },
        Math.max(1, deadline - Date.now()),
      );
    } catch (error) {
      await close();
      if (error instanceof SystemdBusError && error.code === 'CALL_FAILED') {
        throw new SystemdBusError(
          'NOT_A_BUS',
          `${where} answered Hello with ${error.dbusName}: it is not a bus daemon; for systemd's private socket (/run/systemd/private) connect with peer: true`,
          { dbusName: error.dbusName },
          { cause: error },
        );
      }
      throw error;
    }
  }

  return {
    peer: options.peer,
    call,
    onSignal(listener) {
      signalListeners.add(listener);
      return () => signalListeners.delete(listener);
    },
    onClose(listener) {
      if (closed) {
        const error = closed;
        queueMicrotask(() => listener(error));
        return () => {};
      }
      closeListeners.add(listener);
      return () => closeListeners.delete(listener);
    },
    close,
  };
}

/** Opens the unix socket; `CONNECT_FAILED` (with the errno code) or `TIMEOUT`. */
function connectSocket(socketPath: string, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path: socketPath });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new SystemdBusError(
          'TIMEOUT',
          `connecting to ${quote(socketPath)} took more than ${timeoutMs} ms`,
        ),
      );
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', onError);
      resolve(socket);
    });
    const onError = (cause: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        new SystemdBusError(
          'CONNECT_FAILED',
          `cannot connect to ${quote(socketPath)}: ${cause.code ?? cause.message}${hint(cause.code)}`,
          {},
          { cause },
        ),
      );
    };
    socket.once('error', onError);
  });
}

function hint(code: string | undefined): string {
  switch (code) {
    case 'ENOENT':
      return ' (no such socket: is the host path mounted into the pod, and does the host run systemd?)';
    case 'EACCES':
      return ' (permission denied: the socket is root-only, run the container as uid 0)';
    case 'ECONNREFUSED':
      return ' (nothing is listening: a stale socket file)';
    default:
      return '';
  }
}
