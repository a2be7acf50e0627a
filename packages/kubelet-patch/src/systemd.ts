/**
 * A small client for systemd's Manager over D-Bus: daemon-reload, restart or start a unit and
 * wait for its job, read a unit's ActiveState. Interface reference: org.freedesktop.systemd1(5)
 * ("The Manager Object", "Unit Objects"); sockets and authentication as in go-systemd.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type DBusConnection, openConnection } from './dbus-connection.js';
import { quote, SystemdBusError } from './errors.js';

/** How a job ended, as systemd's `JobRemoved` signal reports it. */
export type JobResult = 'done' | 'canceled' | 'timeout' | 'failed' | 'dependency' | 'skipped';

export interface ConnectSystemdOptions {
  /**
   * True for a peer-to-peer socket, PID 1's `/run/systemd/private`: no bus daemon, so no
   * `Hello`. Default false: a bus daemon (`/run/dbus/system_bus_socket`).
   */
  readonly peer?: boolean;
  /** Bound on connecting (with authentication and `Hello`) and the default for each call. Default 25 s, as libdbus and sd-bus. */
  readonly timeoutMs?: number;
}

export interface JobOptions {
  /** How long to wait for the job to finish. Default 90 s, systemd's `DefaultTimeoutStartSec`. */
  readonly timeoutMs?: number;
}

export interface WaitActiveOptions {
  /** Default 60 s. */
  readonly timeoutMs?: number;
  /** Time between two reads of ActiveState. Default 500 ms. */
  readonly intervalMs?: number;
}

/** A connection to systemd's Manager; see {@link connectSystemd}. */
export interface SystemdClient {
  /** True when connected peer-to-peer (no bus daemon). */
  readonly peer: boolean;
  /** `Manager.Reload()`, what `systemctl daemon-reload` does; resolves when systemd has reloaded. */
  reload(): Promise<void>;
  /**
   * `Manager.RestartUnit(name, "replace")` and waits for the job's `JobRemoved` signal;
   * resolves to its result (`done` when the unit started again). Rejects `TIMEOUT` when the
   * job has not finished in time (it goes on in systemd).
   */
  restartUnit(name: string, options?: JobOptions): Promise<JobResult>;
  /** `Manager.StartUnit(name, "replace")`, otherwise as {@link SystemdClient.restartUnit}. */
  startUnit(name: string, options?: JobOptions): Promise<JobResult>;
  /** `Manager.StopUnit(name, "replace")`, otherwise as {@link SystemdClient.restartUnit}. */
  stopUnit(name: string, options?: JobOptions): Promise<JobResult>;
  /** The unit's `ActiveState` (`active`, `activating`, `failed`, `inactive`, ...), after `LoadUnit`. */
  activeState(name: string): Promise<string>;
  /** A string property of the unit, e.g. (`org.freedesktop.systemd1.Unit`, `SubState`). */
  unitProperty(name: string, iface: string, property: string): Promise<string>;
  /**
   * Polls `ActiveState` until it is `active`. Rejects `UNIT_FAILED` as soon as it is `failed`,
   * and `TIMEOUT` naming the last state seen.
   */
  waitActive(name: string, options?: WaitActiveOptions): Promise<void>;
  close(): Promise<void>;
}

const SERVICE = 'org.freedesktop.systemd1';
const MANAGER_PATH = '/org/freedesktop/systemd1';
const MANAGER = 'org.freedesktop.systemd1.Manager';
const UNIT = 'org.freedesktop.systemd1.Unit';
const PROPERTIES = 'org.freedesktop.DBus.Properties';
const UNIT_PATH_PREFIX = '/org/freedesktop/systemd1/unit/';
const DEFAULT_CALL_TIMEOUT_MS = 25_000;
const DEFAULT_JOB_TIMEOUT_MS = 90_000;
const DEFAULT_WAIT_TIMEOUT_MS = 60_000;
const DEFAULT_WAIT_INTERVAL_MS = 500;
const JOB_RESULTS: ReadonlySet<string> = new Set([
  'done',
  'canceled',
  'timeout',
  'failed',
  'dependency',
  'skipped',
]);

/**
 * Connects to systemd over D-Bus: the system bus (`unix:path=/host/run/dbus/system_bus_socket`,
 * authenticated with SASL EXTERNAL, then `Hello`) or, with `peer: true`, PID 1's private socket
 * (`unix:path=/host/run/systemd/private`, no `Hello`). A plain absolute path stands for
 * `unix:path=`. Both need the caller to be root on the host.
 *
 * @example
 * const systemd = await connectSystemd('unix:path=/host/run/systemd/private', { peer: true });
 * try {
 *   await systemd.reload();
 *   if ((await systemd.restartUnit('kubelet.service')) !== 'done') throw new Error('restart failed');
 *   await systemd.waitActive('kubelet.service', { timeoutMs: 60_000 });
 * } finally {
 *   await systemd.close();
 * }
 */
export async function connectSystemd(
  address: string,
  options: ConnectSystemdOptions = {},
): Promise<SystemdClient> {
  const socketPath = socketPathOf(address);
  const peer = options.peer ?? false;
  if (typeof peer !== 'boolean')
    throw new TypeError('connectSystemd: options.peer must be a boolean');
  const callTimeout = positive(
    options.timeoutMs,
    DEFAULT_CALL_TIMEOUT_MS,
    'connectSystemd: options.timeoutMs',
  );
  const conn = await openConnection(socketPath, { peer, timeoutMs: callTimeout });
  return new Client(conn, callTimeout);
}

class Client implements SystemdClient {
  readonly peer: boolean;
  readonly #conn: DBusConnection;
  readonly #callTimeout: number;
  #subscribed: Promise<void> | null = null;

  constructor(conn: DBusConnection, callTimeout: number) {
    this.#conn = conn;
    this.peer = conn.peer;
    this.#callTimeout = callTimeout;
  }

  async reload(): Promise<void> {
    await this.#manager('Reload');
  }

  restartUnit(name: string, options: JobOptions = {}): Promise<JobResult> {
    return this.#job('RestartUnit', name, options);
  }

  startUnit(name: string, options: JobOptions = {}): Promise<JobResult> {
    return this.#job('StartUnit', name, options);
  }

  stopUnit(name: string, options: JobOptions = {}): Promise<JobResult> {
    return this.#job('StopUnit', name, options);
  }

  activeState(name: string): Promise<string> {
    return this.unitProperty(name, UNIT, 'ActiveState');
  }

  async unitProperty(name: string, iface: string, property: string): Promise<string> {
    checkUnitName(name);
    const [path] = await this.#manager('LoadUnit', 's', [name]);
    if (typeof path !== 'string' || !path.startsWith(UNIT_PATH_PREFIX)) {
      throw new SystemdBusError(
        'BAD_REPLY',
        `LoadUnit(${name}) answered ${quote(String(path))}, not a unit object path`,
        { unit: name },
      );
    }
    const [value] = await this.#call({
      path,
      interface: PROPERTIES,
      member: 'Get',
      signature: 'ss',
      body: [iface, property],
    });
    if (typeof value !== 'string') {
      throw new SystemdBusError('BAD_REPLY', `${iface}.${property} of ${name} is not a string`, {
        unit: name,
      });
    }
    return value;
  }

  async waitActive(name: string, options: WaitActiveOptions = {}): Promise<void> {
    checkUnitName(name);
    const timeoutMs = positive(
      options.timeoutMs,
      DEFAULT_WAIT_TIMEOUT_MS,
      'waitActive: options.timeoutMs',
    );
    const intervalMs = positive(
      options.intervalMs,
      DEFAULT_WAIT_INTERVAL_MS,
      'waitActive: options.intervalMs',
    );
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const state = await this.activeState(name);
      if (state === 'active') return;
      if (state === 'failed') {
        throw new SystemdBusError(
          'UNIT_FAILED',
          `${name} is failed; see \`journalctl -u ${name}\` on the node`,
          { unit: name, activeState: state },
        );
      }
      if (Date.now() + intervalMs > deadline) {
        throw new SystemdBusError(
          'TIMEOUT',
          `${name} was not active within ${timeoutMs} ms; its last ActiveState was ${quote(state)}`,
          { unit: name, activeState: state },
        );
      }
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }

  close(): Promise<void> {
    return this.#conn.close();
  }

  /**
   * Queues a job with mode `replace` and resolves to the result of its `JobRemoved`. Signals
   * are collected from before the call goes out: systemd may finish the job (and send
   * `JobRemoved`) before this process has read the reply naming the job.
   */
  async #job(
    method: 'RestartUnit' | 'StartUnit' | 'StopUnit',
    name: string,
    options: JobOptions,
  ): Promise<JobResult> {
    checkUnitName(name);
    const timeoutMs = positive(
      options.timeoutMs,
      DEFAULT_JOB_TIMEOUT_MS,
      `${method.charAt(0).toLowerCase()}${method.slice(1)}: options.timeoutMs`,
    );
    await this.#subscribe();
    const removed = new Map<string, unknown>();
    let awaited: string | null = null;
    const outcome = deferred<unknown>();
    const stopSignals = this.#conn.onSignal((signal) => {
      if (signal.path !== MANAGER_PATH || signal.interface !== MANAGER) return;
      if (signal.member !== 'JobRemoved') return;
      const [, job, , result] = signal.body;
      if (typeof job !== 'string') return;
      if (awaited === null) removed.set(job, result);
      else if (job === awaited) outcome.resolve(result);
    });
    const stopClose = this.#conn.onClose(outcome.reject);
    let timer: NodeJS.Timeout | undefined;
    try {
      const [job] = await this.#manager(method, 'ss', [name, 'replace']);
      if (typeof job !== 'string') {
        throw new SystemdBusError(
          'BAD_REPLY',
          `${method}(${name}) did not answer with a job path`,
          { unit: name },
        );
      }
      awaited = job;
      if (removed.has(job)) {
        outcome.resolve(removed.get(job));
      } else {
        timer = setTimeout(
          () =>
            outcome.reject(
              new SystemdBusError(
                'TIMEOUT',
                `the ${method} job for ${name} (${job}) did not finish within ${timeoutMs} ms; systemd goes on with it`,
                { unit: name },
              ),
            ),
          timeoutMs,
        );
      }
      removed.clear();
      const result = await outcome.promise;
      if (typeof result !== 'string' || !JOB_RESULTS.has(result)) {
        throw new SystemdBusError(
          'BAD_REPLY',
          `JobRemoved for ${name} has the result ${quote(String(result))}`,
          { unit: name },
        );
      }
      return result as JobResult;
    } finally {
      clearTimeout(timer);
      stopSignals();
      stopClose();
    }
  }

  /**
   * On a bus, signals reach only connections with a matching rule, and systemd sends them
   * only while somebody is subscribed. A direct connection gets them without asking (PID 1
   * treats every private-socket client as subscribed), and Subscribe there is harmless.
   */
  #subscribe(): Promise<void> {
    this.#subscribed ??= (async () => {
      if (!this.#conn.peer) {
        await this.#call({
          destination: 'org.freedesktop.DBus',
          path: '/org/freedesktop/DBus',
          interface: 'org.freedesktop.DBus',
          member: 'AddMatch',
          signature: 's',
          body: [
            `type='signal',sender='${SERVICE}',path='${MANAGER_PATH}',interface='${MANAGER}',member='JobRemoved'`,
          ],
        });
      }
      try {
        await this.#manager('Subscribe');
      } catch (error) {
        if (
          !(error instanceof SystemdBusError && error.dbusName === `${SERVICE}.AlreadySubscribed`)
        )
          throw error;
      }
    })();
    this.#subscribed.catch(() => {
      this.#subscribed = null;
    });
    return this.#subscribed;
  }

  #manager(member: string, signature?: string, body?: readonly unknown[]): Promise<unknown[]> {
    return this.#call({
      path: MANAGER_PATH,
      interface: MANAGER,
      member,
      ...(signature !== undefined ? { signature, body: body ?? [] } : {}),
    });
  }

  /**
   * Every call names `org.freedesktop.systemd1`, on the private socket too (PID 1 ignores it
   * there, as go-systemd relies on); a bus daemon reached without Hello then drops the
   * connection, which `openConnection` reports as DISCONNECTED with the fix.
   */
  #call(request: {
    destination?: string;
    path: string;
    interface: string;
    member: string;
    signature?: string;
    body?: readonly unknown[];
  }): Promise<unknown[]> {
    return this.#conn.call(
      { ...request, destination: request.destination ?? SERVICE },
      this.#callTimeout,
    );
  }
}

/**
 * The object path systemd gives a unit: `/org/freedesktop/systemd1/unit/` and the name with
 * every byte outside `[A-Za-z0-9]`, and a leading digit, written as `_` and two lowercase hex
 * digits (sd-bus `bus_label_escape`, go-systemd `PathBusEscape`).
 *
 * @example
 * unitObjectPath('kubelet.service'); // '/org/freedesktop/systemd1/unit/kubelet_2eservice'
 */
/**
 * Where to reach systemd for the host mounted at `hostRoot`: `given` (a `unix:path=/…` address
 * or an absolute path; peer-to-peer when it is PID 1's `…/systemd/private`), else the host's
 * system bus `<hostRoot>/run/dbus/system_bus_socket` when it exists, else PID 1's private
 * socket `<hostRoot>/run/systemd/private`, peer-to-peer. Throws `TypeError` for another
 * transport.
 */
export function systemdAddressFor(
  hostRoot: string,
  given?: string,
): { address: string; peer: boolean } {
  if (given !== undefined) {
    if (!given.startsWith('unix:path=/') && !given.startsWith('/'))
      throw new TypeError(
        `--systemd-bus must be unix:path=/PATH, got ${JSON.stringify(given.slice(0, 80))}`,
      );
    return { address: given, peer: /\/systemd\/private$/.test(given) };
  }
  const bus = join(hostRoot, 'run/dbus/system_bus_socket');
  if (existsSync(bus)) return { address: `unix:path=${bus}`, peer: false };
  return { address: `unix:path=${join(hostRoot, 'run/systemd/private')}`, peer: true };
}

export function unitObjectPath(name: string): string {
  const bytes = Buffer.from(name, 'utf8');
  if (bytes.length === 0) return `${UNIT_PATH_PREFIX}_`;
  let label = '';
  for (const [i, byte] of bytes.entries()) {
    const digit = byte >= 0x30 && byte <= 0x39;
    const letter = (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a);
    label +=
      letter || (digit && i > 0)
        ? String.fromCharCode(byte)
        : `_${byte.toString(16).padStart(2, '0')}`;
  }
  return UNIT_PATH_PREFIX + label;
}

/** Unit types systemd knows (systemd.unit(5)); a name must end in one of them. */
const UNIT_SUFFIXES = [
  'service',
  'socket',
  'target',
  'device',
  'mount',
  'automount',
  'swap',
  'timer',
  'path',
  'slice',
  'scope',
];
const UNIT_NAME_MAX = 255;
const UNIT_NAME = new RegExp(
  `^[A-Za-z0-9:_.\\\\-]+(?:@[A-Za-z0-9:_.\\\\@-]+)?\\.(?:${UNIT_SUFFIXES.join('|')})$`,
);

/**
 * Throws a `TypeError` unless `name` is a unit name systemd accepts (unit_name_is_valid):
 * at most 255 characters of `[A-Za-z0-9:_.\-]`, an optional `@instance`, and a unit type
 * suffix such as `.service`. A template without an instance (`getty@.service`) cannot be
 * started and is refused too.
 */
export function checkUnitName(name: string): void {
  if (typeof name !== 'string' || name.length > UNIT_NAME_MAX || !UNIT_NAME.test(name)) {
    throw new TypeError(
      `not a systemd unit name: ${quote(String(name))}; expected e.g. "kubelet.service" (at most ${UNIT_NAME_MAX} of [A-Za-z0-9:_.\\-], an optional @instance, a unit type suffix)`,
    );
  }
}

/**
 * The socket path of a D-Bus address (D-Bus specification, "Server Addresses"): `unix:path=`
 * with `%xx` escapes, or a plain absolute path. Other transports, abstract sockets and
 * address lists are refused with a `TypeError`.
 */
export function socketPathOf(address: string): string {
  if (typeof address !== 'string' || address.length === 0) {
    throw new TypeError('connectSystemd: address must be a D-Bus address or an absolute path');
  }
  if (address.startsWith('/')) return address;
  if (address.includes(';')) {
    throw new TypeError(`connectSystemd: address ${quote(address)} is a list; pass one address`);
  }
  const colon = address.indexOf(':');
  const transport = colon > 0 ? address.slice(0, colon) : '';
  if (transport !== 'unix') {
    throw new TypeError(
      `connectSystemd: address ${quote(address)} uses the transport ${quote(transport)}; only unix:path= (or an absolute path) is supported, as systemd listens on unix sockets only`,
    );
  }
  let path: string | null = null;
  for (const pair of address.slice(colon + 1).split(',')) {
    const eq = pair.indexOf('=');
    const key = eq > 0 ? pair.slice(0, eq) : pair;
    const value = eq > 0 ? pair.slice(eq + 1) : '';
    if (key === 'path') path = unescapeValue(value, address);
    else if (key === 'abstract') {
      throw new TypeError(
        `connectSystemd: address ${quote(address)} is an abstract socket, which is not supported; use unix:path=`,
      );
    } else if (key !== 'guid') {
      throw new TypeError(
        `connectSystemd: address ${quote(address)} has the key ${quote(key)}; a client address needs unix:path=`,
      );
    }
  }
  if (!path?.startsWith('/')) {
    throw new TypeError(`connectSystemd: address ${quote(address)} has no absolute path=`);
  }
  return path;
}

/** D-Bus address values escape bytes as `%xx`. */
function unescapeValue(value: string, address: string): string {
  try {
    if (/^(?:[^%]|%[0-9A-Fa-f]{2})*$/.test(value)) return decodeURIComponent(value);
  } catch {
    // not UTF-8 once unescaped
  }
  throw new TypeError(`connectSystemd: address ${quote(address)} has a malformed %-escape`);
}

/** A promise with its settling functions, for results that arrive through a listener. */
function deferred<T>(): {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
} {
  let resolve: (value: T) => void = () => {};
  let reject: (error: unknown) => void = () => {};
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Awaited only once the call has answered; an early failure must not go unhandled meanwhile.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

function positive(value: number | undefined, fallback: number, option: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new TypeError(`${option} must be a positive number of milliseconds`);
  }
  return value;
}
