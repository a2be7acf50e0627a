import { type ChildProcess, spawn } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import dbus, { type InterfaceDescriptor, type Message, type MessageBus } from 'dbus-native';

/** What a restart or start leaves the unit in; the job's result is `done` or `failed`. */
export type UnitOutcome = 'active' | 'failed';

export interface SystemdCall {
  readonly method: string;
  readonly args: readonly unknown[];
}

export interface SystemdStandInOptions {
  /**
   * Where the socket goes (its directory is created): the bus daemon's socket for
   * {@link startSystemdBus}, e.g. `<hostRoot>/run/dbus/system_bus_socket`; the listening socket
   * for {@link startSystemdPrivateSocket}, e.g. `<hostRoot>/run/systemd/private`. Default: in a
   * fresh temp dir. Keep it under 108 bytes.
   */
  readonly socketPath?: string;
  /** Units that exist, with their ActiveState. Default `{ 'kubelet.service': 'active' }`. */
  readonly units?: Readonly<Record<string, string>>;
  /** How long a job keeps the unit `activating` / `deactivating`. Default 20 ms. */
  readonly jobDelayMs?: number;
}

/**
 * systemd's Manager as seen over D-Bus, with the knobs a test needs. State lives here, in the
 * test process, so the code under test can be another process.
 */
export interface SystemdStandIn {
  /** The D-Bus address to connect to (`unix:path=...`). */
  readonly address: string;
  readonly socketPath: string;
  /** Reload, RestartUnit, StartUnit and StopUnit as systemd carried them out, in order. */
  readonly calls: SystemdCall[];
  /** ActiveState of each unit that exists; set one to add a unit. */
  readonly units: Map<string, string>;
  /** Decides how a restart or a start of a unit ends. Default: `active`. */
  onRestart: ((unit: string) => UnitOutcome | Promise<UnitOutcome>) | undefined;
  /** Refuse every Manager call with `org.freedesktop.DBus.Error.AccessDenied` (as polkit would). */
  denyAccess: boolean;
  /** Send a job's JobRemoved before the reply naming the job: the race a client must survive. */
  jobRemovedFirst: boolean;
  /** What the stand-in (and the bus daemon) reported, for failure messages. */
  log(): string;
  close(): Promise<void>;
}

const SERVICE = 'org.freedesktop.systemd1';
const MANAGER_PATH = '/org/freedesktop/systemd1';
const MANAGER = 'org.freedesktop.systemd1.Manager';
const UNIT = 'org.freedesktop.systemd1.Unit';
const ERROR = {
  accessDenied: 'org.freedesktop.DBus.Error.AccessDenied',
  invalidArgs: 'org.freedesktop.DBus.Error.InvalidArgs',
  noSuchUnit: 'org.freedesktop.systemd1.NoSuchUnit',
  alreadySubscribed: 'org.freedesktop.systemd1.AlreadySubscribed',
  notSubscribed: 'org.freedesktop.systemd1.NotSubscribed',
} as const;
const JOB_MODES = new Set([
  'replace',
  'fail',
  'isolate',
  'ignore-dependencies',
  'ignore-requirements',
  'flush',
  'replace-irreversibly',
]);
const SUB_STATE: Readonly<Record<string, string>> = {
  active: 'running',
  activating: 'start',
  deactivating: 'stop',
  failed: 'failed',
  inactive: 'dead',
  reloading: 'reload',
};
const STOP_TIMEOUT_MS = 10_000;

const managerInterface: InterfaceDescriptor = {
  name: MANAGER,
  methods: {
    Reload: ['', '', [], []],
    Subscribe: ['', '', [], []],
    Unsubscribe: ['', '', [], []],
    RestartUnit: ['ss', 'o', ['name', 'mode'], ['job']],
    StartUnit: ['ss', 'o', ['name', 'mode'], ['job']],
    StopUnit: ['ss', 'o', ['name', 'mode'], ['job']],
    LoadUnit: ['s', 'o', ['name'], ['unit']],
    GetUnit: ['s', 'o', ['name'], ['unit']],
  },
  signals: { JobRemoved: ['uoss', 'id', 'job', 'unit', 'result'] },
};

const unitInterface: InterfaceDescriptor = {
  name: UNIT,
  properties: {
    Id: { type: 's', access: 'read' },
    LoadState: { type: 's', access: 'read' },
    ActiveState: { type: 's', access: 'read' },
    SubState: { type: 's', access: 'read' },
  },
};

/**
 * The object path systemd gives a unit (sd-bus `bus_label_escape`). Written here again rather
 * than imported from @org/kubelet-patch: tools depend on no package, and an independent copy
 * checks that one.
 */
export function systemdUnitPath(name: string): string {
  const label = [...Buffer.from(name, 'utf8')]
    .map((b, i) =>
      /[A-Za-z]/.test(String.fromCharCode(b)) || (i > 0 && b >= 0x30 && b <= 0x39)
        ? String.fromCharCode(b)
        : `_${b.toString(16).padStart(2, '0')}`,
    )
    .join('');
  return `/org/freedesktop/systemd1/unit/${label || '_'}`;
}

function dbusError(name: string, message: string): Error {
  return Object.assign(new Error(message), { dbusName: name });
}

/** Units as a Map that tells the stand-in when a unit appears, so its object is exported. */
class UnitTable extends Map<string, string> {
  onAdd: (name: string) => void = () => {};
  override set(name: string, state: string): this {
    const added = !this.has(name);
    super.set(name, state);
    if (added) this.onAdd(name);
    return this;
  }
}

/** The Manager's behaviour, shared by the bus and the private-socket variants. */
class Manager {
  readonly calls: SystemdCall[] = [];
  readonly units = new UnitTable();
  /** Units LoadUnit was asked about that do not exist: systemd keeps them as `not-found`. */
  readonly loaded = new Set<string>();
  onRestart: SystemdStandIn['onRestart'];
  denyAccess = false;
  jobRemovedFirst = false;
  readonly buses = new Set<MessageBus>();
  /** Bus unique names that called Subscribe (bus variant only). */
  readonly subscribers = new Set<string>();
  readonly #peer: boolean;
  readonly #jobDelayMs: number;
  readonly #log: (line: string) => void;
  #nextJob = 1;
  #closed = false;
  readonly #pending = new Set<Promise<void>>();

  constructor(peer: boolean, options: SystemdStandInOptions, log: (line: string) => void) {
    this.#peer = peer;
    this.#jobDelayMs = options.jobDelayMs ?? 20;
    this.#log = log;
    for (const [name, state] of Object.entries(options.units ?? { 'kubelet.service': 'active' })) {
      this.units.set(name, state);
    }
    this.units.onAdd = (name) => {
      for (const bus of this.buses) this.#exportUnit(bus, name);
    };
  }

  /** Serves the Manager and every known unit on `bus`. */
  attach(bus: MessageBus): void {
    this.buses.add(bus);
    bus.exportInterface(this.#handlers(), MANAGER_PATH, managerInterface);
    for (const name of [...this.units.keys(), ...this.loaded]) this.#exportUnit(bus, name);
  }

  detach(bus: MessageBus): void {
    this.buses.delete(bus);
  }

  /**
   * Stops sending anything and gives running jobs a moment to end; a job whose onRestart hook
   * never settles is abandoned rather than holding up close().
   */
  async shutdown(): Promise<void> {
    this.#closed = true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.#pending]),
      new Promise((r) => {
        timer = setTimeout(r, 1_000);
      }),
    ]);
    clearTimeout(timer);
  }

  #exportUnit(bus: MessageBus, name: string): void {
    const manager = this;
    const state = () => manager.units.get(name) ?? 'inactive';
    bus.exportInterface(
      {
        Id: name,
        get LoadState() {
          return manager.units.has(name) ? 'loaded' : 'not-found';
        },
        get ActiveState() {
          return state();
        },
        get SubState() {
          return SUB_STATE[state()] ?? 'dead';
        },
      },
      systemdUnitPath(name),
      unitInterface,
    );
  }

  #handlers() {
    const m = this;
    const guard = (method: string) => {
      if (m.denyAccess) {
        m.#log(`refused ${method}: access denied`);
        throw dbusError(ERROR.accessDenied, `Access denied to ${method}`);
      }
    };
    const sender = (msg: unknown) => String((msg as Message | undefined)?.sender ?? '');
    return {
      Reload() {
        guard('Reload');
        m.calls.push({ method: 'Reload', args: [] });
      },
      Subscribe(msg: unknown) {
        guard('Subscribe');
        // PID 1 counts every private-socket client as subscribed; on a bus it tracks names.
        if (m.#peer) return;
        if (m.subscribers.has(sender(msg))) {
          throw dbusError(ERROR.alreadySubscribed, 'Client is already subscribed.');
        }
        m.subscribers.add(sender(msg));
      },
      Unsubscribe(msg: unknown) {
        guard('Unsubscribe');
        if (m.#peer) return;
        if (!m.subscribers.delete(sender(msg))) {
          throw dbusError(ERROR.notSubscribed, 'Client is not subscribed.');
        }
      },
      RestartUnit: (name: string, mode: string) => m.#queue('RestartUnit', name, mode),
      StartUnit: (name: string, mode: string) => m.#queue('StartUnit', name, mode),
      StopUnit: (name: string, mode: string) => m.#queue('StopUnit', name, mode),
      LoadUnit(name: string) {
        guard('LoadUnit');
        if (!/^[A-Za-z0-9:_.\\@-]{1,255}$/.test(name) || !name.includes('.')) {
          throw dbusError(ERROR.invalidArgs, `Unit name ${name} is not valid.`);
        }
        if (!m.units.has(name) && !m.loaded.has(name)) {
          m.loaded.add(name);
          for (const bus of m.buses) m.#exportUnit(bus, name);
        }
        return systemdUnitPath(name);
      },
      GetUnit(name: string) {
        guard('GetUnit');
        if (!m.units.has(name) && !m.loaded.has(name)) {
          throw dbusError(ERROR.noSuchUnit, `Unit ${name} not loaded.`);
        }
        return systemdUnitPath(name);
      },
    };
  }

  /** Checks a job request, records it, runs the job; answers with the job's object path. */
  async #queue(method: 'RestartUnit' | 'StartUnit' | 'StopUnit', name: string, mode: string) {
    if (this.denyAccess) {
      this.#log(`refused ${method}(${name}): access denied`);
      throw dbusError(ERROR.accessDenied, `Access denied to ${method}`);
    }
    if (!JOB_MODES.has(mode)) throw dbusError(ERROR.invalidArgs, `Job mode ${mode} invalid.`);
    if (!this.units.has(name)) throw dbusError(ERROR.noSuchUnit, `Unit ${name} not found.`);
    this.calls.push({ method, args: [name, mode] });
    const id = this.#nextJob++;
    const job = `/org/freedesktop/systemd1/job/${id}`;
    const run = this.#run(method, id, job, name);
    this.#pending.add(run);
    void run.finally(() => this.#pending.delete(run));
    if (this.jobRemovedFirst) await run;
    return job;
  }

  async #run(method: string, id: number, job: string, name: string): Promise<void> {
    // Let the reply go out first, as PID 1 does (unless jobRemovedFirst awaits this).
    await new Promise((r) => setImmediate(r));
    const delay = () => new Promise((r) => setTimeout(r, this.#jobDelayMs));
    let result: string;
    if (method === 'StopUnit') {
      this.units.set(name, 'deactivating');
      await delay();
      this.units.set(name, 'inactive');
      result = 'done';
    } else if (method === 'StartUnit' && this.units.get(name) === 'active') {
      result = 'done';
    } else {
      if (method === 'RestartUnit' && this.units.get(name) === 'active') {
        this.units.set(name, 'deactivating');
        await delay();
      }
      this.units.set(name, 'activating');
      let outcome: UnitOutcome;
      try {
        outcome = (await this.onRestart?.(name)) ?? 'active';
      } catch (error) {
        this.#log(`onRestart(${name}) threw, the job fails: ${String(error)}`);
        outcome = 'failed';
      }
      await delay();
      this.units.set(name, outcome);
      result = outcome === 'active' ? 'done' : 'failed';
    }
    this.#log(`job ${id} ${method}(${name}) -> ${result}`);
    if (this.#closed) return;
    for (const bus of this.buses) {
      // On a bus systemd sends signals only while somebody is subscribed.
      if (!this.#peer && this.subscribers.size === 0) continue;
      bus.sendSignal(MANAGER_PATH, MANAGER, 'JobRemoved', 'uoss', [id, job, name, result]);
    }
  }
}

/** The controls of {@link SystemdStandIn}, forwarded to the manager. */
function handle(
  manager: Manager,
  fields: { address: string; socketPath: string; log(): string; close(): Promise<void> },
): SystemdStandIn {
  return {
    ...fields,
    calls: manager.calls,
    units: manager.units,
    get onRestart() {
      return manager.onRestart;
    },
    set onRestart(hook) {
      manager.onRestart = hook;
    },
    get denyAccess() {
      return manager.denyAccess;
    },
    set denyAccess(deny) {
      manager.denyAccess = deny;
    },
    get jobRemovedFirst() {
      return manager.jobRemovedFirst;
    },
    set jobRemovedFirst(first) {
      manager.jobRemovedFirst = first;
    },
  };
}

/** Makes room for a socket at `path`: creates its directory, removes a stale socket there. */
function prepareSocketPath(path: string): void {
  if (Buffer.byteLength(path) >= 108) throw new Error(`socket path too long: ${path}`);
  mkdirSync(dirname(path), { recursive: true });
  try {
    if (lstatSync(path).isSocket()) rmSync(path);
    else throw new Error(`${path} exists and is not a socket`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

function closeBus(bus: MessageBus): Promise<void> {
  return bus.close().catch(() => {});
}

/**
 * A private, real `dbus-daemon` (Debian `dbus-daemon`) with a session-like configuration that
 * lets this user do everything, and on it, connected from this process, a stand-in for systemd:
 * it owns `org.freedesktop.systemd1`, serves the Manager at `/org/freedesktop/systemd1`
 * (Reload, Subscribe, Unsubscribe, RestartUnit, StartUnit, StopUnit, LoadUnit, GetUnit, signal
 * JobRemoved) and each unit's `org.freedesktop.systemd1.Unit` properties (Id, LoadState,
 * ActiveState, SubState) at its escaped object path. A restart goes `deactivating`,
 * `activating`, then what {@link SystemdStandIn.onRestart} says, and JobRemoved reports `done`
 * or `failed` (only while a client is subscribed, as systemd does on a bus).
 *
 * @example
 * const systemd = await startSystemdBus({ socketPath: join(hostRoot, 'run/dbus/system_bus_socket') });
 * systemd.onRestart = () => 'failed';
 * // ... run the node patcher against hostRoot ...
 * expect(systemd.calls).toEqual([{ method: 'Reload', args: [] }, { method: 'RestartUnit', args: ['kubelet.service', 'replace'] }]);
 * await systemd.close();
 */
export async function startSystemdBus(
  options: SystemdStandInOptions = {},
): Promise<SystemdStandIn> {
  const dir = mkdtempSync('/tmp/systemd-bus-');
  const socketPath = options.socketPath ?? join(dir, 'system_bus_socket');
  let output = '';
  const log = (line: string) => {
    output += `${line}\n`;
  };
  let child: ChildProcess | undefined;
  let service: MessageBus | undefined;
  const close = async () => {
    if (service) await closeBus(service);
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child?.once('exit', () => r()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child?.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
    rmSync(socketPath, { force: true });
  };
  try {
    prepareSocketPath(socketPath);
    const config = join(dir, 'bus.conf');
    writeFileSync(
      config,
      [
        '<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"',
        ' "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">',
        '<busconfig>',
        '  <type>session</type>',
        `  <listen>unix:path=${socketPath}</listen>`,
        '  <auth>EXTERNAL</auth>',
        '  <policy context="default">',
        '    <allow send_destination="*" eavesdrop="true"/>',
        '    <allow eavesdrop="true"/>',
        '    <allow own="*"/>',
        '  </policy>',
        '</busconfig>',
        '',
      ].join('\n'),
    );
    const daemon = spawn(
      '/usr/bin/dbus-daemon',
      [`--config-file=${config}`, '--nofork', '--nopidfile', '--print-address=1'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = daemon;
    daemon.stderr?.on('data', (c: Buffer) => {
      output += c.toString();
    });
    const address = await new Promise<string>((resolve, reject) => {
      let printed = '';
      const timer = setTimeout(() => reject(new Error('dbus-daemon printed no address')), 15_000);
      daemon.stdout?.on('data', (c: Buffer) => {
        printed += c.toString();
        if (printed.includes('\n')) {
          clearTimeout(timer);
          resolve(printed.trim());
        }
      });
      daemon.once('error', reject);
      daemon.once('exit', (code, signal) =>
        reject(new Error(`dbus-daemon exited ${code ?? signal}`)),
      );
    });
    // The daemon answers once it has printed its address; connecting is the readiness check.
    const bus = dbus.createClient({ socket: socketPath, authMethods: ['EXTERNAL'] });
    service = bus;
    bus.connection.on('error', (e: Error) => log(`service connection: ${e.message}`));
    const owned = await bus.ownName(SERVICE);
    if (!owned.isPrimaryOwner) throw new Error(`could not own ${SERVICE}`);
    const manager = new Manager(false, options, log);
    manager.attach(bus);
    // A name that leaves the bus is no longer subscribed (systemd tracks subscribers so).
    await bus.addMatch(
      "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged'",
    );
    bus.connection.on('message', (msg: Message) => {
      if (msg.member !== 'NameOwnerChanged' || msg.type !== 4) return;
      const [name, , owner] = (msg.body ?? []) as string[];
      if (name && owner === '') manager.subscribers.delete(name);
    });
    return handle(manager, {
      address,
      socketPath,
      log: () => output,
      close: async () => {
        await manager.shutdown();
        await close();
      },
    });
  } catch (error) {
    await close();
    throw new Error(`systemd bus stand-in did not start: ${String(error)}\n${output}`);
  }
}

/**
 * The same Manager served peer-to-peer on a unix socket this process listens on, as PID 1
 * serves `/run/systemd/private`: no bus daemon, no Hello, SASL EXTERNAL, and every client gets
 * JobRemoved whether it subscribed or not. A call to `org.freedesktop.DBus.Hello` is answered
 * with UnknownMethod, as there is no bus to say hello to.
 */
export async function startSystemdPrivateSocket(
  options: SystemdStandInOptions = {},
): Promise<SystemdStandIn> {
  const dir = mkdtempSync('/tmp/systemd-private-');
  const socketPath = options.socketPath ?? join(dir, 'private');
  let output = '';
  const log = (line: string) => {
    output += `${line}\n`;
  };
  const manager = new Manager(true, options, log);
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  const close = async () => {
    await manager.shutdown();
    await Promise.all([...manager.buses].map(closeBus));
    for (const socket of sockets) socket.destroy();
    if (server) await new Promise<void>((r) => server?.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
    rmSync(socketPath, { force: true });
  };
  try {
    prepareSocketPath(socketPath);
    server = createServer((socket) => {
      sockets.add(socket);
      const bus = dbus.createClient({ stream: socket, server: true, direct: true });
      bus.connection.on('error', (e: Error) => log(`private socket client: ${e.message}`));
      socket.once('close', () => {
        sockets.delete(socket);
        manager.detach(bus);
      });
      manager.attach(bus);
    });
    await new Promise<void>((resolve, reject) => {
      server?.once('error', reject);
      server?.listen(socketPath, () => resolve());
    });
    return handle(manager, {
      address: `unix:path=${socketPath}`,
      socketPath,
      log: () => output,
      close,
    });
  } catch (error) {
    await close();
    throw new Error(`systemd private-socket stand-in did not start: ${String(error)}\n${output}`);
  }
}
