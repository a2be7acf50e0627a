import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  type SystemdStandIn,
  startSystemdBus,
  startSystemdPrivateSocket,
  systemdUnitPath,
} from './stand-ins/index.js';

// Async on purpose: the stand-in answers from this process, so a synchronous exec would
// block the very event loop the reply has to come from.
const run = promisify(execFile);

/** The real D-Bus clients: sd-bus (systemd), libdbus (dbus-bin) and GDBus (libglib2.0-bin). */
const has = (tool: string) => existsSync(`/usr/bin/${tool}`);

/** Runs a client; resolves to its stdout, or to `ERROR: <stderr>` when it exits non-zero. */
async function client(tool: string, args: readonly string[]): Promise<string> {
  try {
    return (await run(`/usr/bin/${tool}`, args, { timeout: 20_000, encoding: 'utf8' })).stdout;
  } catch (error) {
    return `ERROR: ${(error as { stderr?: string }).stderr ?? String(error)}`;
  }
}

const MANAGER = ['/org/freedesktop/systemd1', 'org.freedesktop.systemd1.Manager'] as const;
const KUBELET = '/org/freedesktop/systemd1/unit/kubelet_2eservice';

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Pids of dbus-daemons whose command line names `configDir`. */
function daemonsUsing(configDir: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (argv.includes('dbus-daemon') && argv.includes(configDir)) found.push(Number(entry));
    } catch {
      // exited
    }
  }
  return found;
}

describe('systemd stand-in on a private dbus-daemon', () => {
  let hostRoot: string;
  let systemd: SystemdStandIn;
  beforeAll(async () => {
    hostRoot = mkdtempSync('/tmp/host-');
    systemd = await startSystemdBus({
      socketPath: join(hostRoot, 'run/dbus/system_bus_socket'),
      units: { 'kubelet.service': 'active', 'containerd.service': 'inactive' },
    });
  });
  afterAll(async () => {
    await systemd?.close();
    rmSync(hostRoot, { recursive: true, force: true });
  });

  it('listens where it was asked to', () => {
    expect(systemd.socketPath).toBe(join(hostRoot, 'run/dbus/system_bus_socket'));
    expect(systemd.address).toMatch(
      /^unix:path=\/tmp\/host-[^,]+\/run\/dbus\/system_bus_socket,guid=/,
    );
  });

  it.skipIf(!has('busctl'))(
    'answers busctl (sd-bus): RestartUnit, then the unit properties',
    async () => {
      const address = `--address=${systemd.address}`;
      expect(
        await client('busctl', [address, 'call', 'org.freedesktop.systemd1', ...MANAGER, 'Reload']),
      ).toBe('');
      const job = await client('busctl', [
        address,
        'call',
        'org.freedesktop.systemd1',
        ...MANAGER,
        'RestartUnit',
        'ss',
        'kubelet.service',
        'replace',
      ]);
      expect(job).toMatch(/^o "\/org\/freedesktop\/systemd1\/job\/\d+"\n$/);
      await vi.waitFor(() => expect(systemd.units.get('kubelet.service')).toBe('active'));
      expect(
        await client('busctl', [
          address,
          'get-property',
          'org.freedesktop.systemd1',
          KUBELET,
          'org.freedesktop.systemd1.Unit',
          'ActiveState',
          'SubState',
          'Id',
        ]),
      ).toBe('s "active"\ns "running"\ns "kubelet.service"\n');
      expect(systemd.calls.slice(-2)).toEqual([
        { method: 'Reload', args: [] },
        { method: 'RestartUnit', args: ['kubelet.service', 'replace'] },
      ]);
    },
  );

  it.skipIf(!has('dbus-send'))(
    'answers dbus-send (libdbus): GetUnit errors, LoadUnit does not',
    async () => {
      const bus = `--bus=${systemd.address}`;
      const call = (member: string, arg: string) =>
        client('dbus-send', [
          bus,
          '--print-reply',
          '--dest=org.freedesktop.systemd1',
          MANAGER[0],
          `${MANAGER[1]}.${member}`,
          `string:${arg}`,
        ]);
      expect(await call('GetUnit', 'nope.service')).toMatch(
        /org\.freedesktop\.systemd1\.NoSuchUnit: Unit nope\.service not loaded\./,
      );
      expect(await call('LoadUnit', 'nope.service')).toMatch(
        /object path "\/org\/freedesktop\/systemd1\/unit\/nope_2eservice"/,
      );
      expect(await call('GetUnit', 'nope.service')).toMatch(/nope_2eservice/);
      expect(await call('RestartUnit', 'nope.service')).toMatch(/^ERROR: /);
    },
  );

  it.skipIf(!has('gdbus'))('answers gdbus (GDBus): StartUnit and GetAll', async () => {
    const base = ['call', '--address', systemd.address, '--dest', 'org.freedesktop.systemd1'];
    expect(
      await client('gdbus', [
        ...base,
        '--object-path',
        MANAGER[0],
        '--method',
        `${MANAGER[1]}.StartUnit`,
        'containerd.service',
        'replace',
      ]),
    ).toMatch(/^\(objectpath '\/org\/freedesktop\/systemd1\/job\/\d+',\)\n$/);
    await vi.waitFor(() => expect(systemd.units.get('containerd.service')).toBe('active'));
    expect(
      await client('gdbus', [
        ...base,
        '--object-path',
        systemdUnitPath('containerd.service'),
        '--method',
        'org.freedesktop.DBus.Properties.GetAll',
        'org.freedesktop.systemd1.Unit',
      ]),
    ).toBe(
      "({'Id': <'containerd.service'>, 'LoadState': <'loaded'>, 'ActiveState': <'active'>, 'SubState': <'running'>},)\n",
    );
  });

  it.skipIf(!has('dbus-send'))('refuses with AccessDenied when told to', async () => {
    systemd.denyAccess = true;
    try {
      expect(
        await client('dbus-send', [
          `--bus=${systemd.address}`,
          '--print-reply',
          '--dest=org.freedesktop.systemd1',
          MANAGER[0],
          `${MANAGER[1]}.Reload`,
        ]),
      ).toMatch(/org\.freedesktop\.DBus\.Error\.AccessDenied/);
    } finally {
      systemd.denyAccess = false;
    }
  });
});

describe('systemd stand-in on a private socket (PID 1 style)', () => {
  let hostRoot: string;
  let systemd: SystemdStandIn;
  beforeAll(async () => {
    hostRoot = mkdtempSync('/tmp/host-');
    systemd = await startSystemdPrivateSocket({
      socketPath: join(hostRoot, 'run/systemd/private'),
    });
  });
  afterAll(async () => {
    await systemd?.close();
    rmSync(hostRoot, { recursive: true, force: true });
  });

  it.skipIf(!has('dbus-send'))('answers dbus-send --peer, without Hello', async () => {
    expect(systemd.address).toBe(`unix:path=${join(hostRoot, 'run/systemd/private')}`);
    const peer = `--peer=${systemd.address}`;
    expect(
      await client('dbus-send', [peer, '--print-reply', MANAGER[0], `${MANAGER[1]}.Reload`]),
    ).toMatch(/^method return/);
    expect(
      await client('dbus-send', [
        peer,
        '--print-reply',
        MANAGER[0],
        `${MANAGER[1]}.LoadUnit`,
        'string:kubelet.service',
      ]),
    ).toMatch(/object path "\/org\/freedesktop\/systemd1\/unit\/kubelet_2eservice"/);
    expect(systemd.calls).toEqual([{ method: 'Reload', args: [] }]);
  });

  it.skipIf(!has('gdbus'))('refuses Hello, as there is no bus on a private socket', async () => {
    // gdbus --address treats the address as a bus and says Hello first
    expect(
      await client('gdbus', [
        'call',
        '--address',
        systemd.address,
        '--object-path',
        MANAGER[0],
        '--method',
        `${MANAGER[1]}.Reload`,
      ]),
    ).toMatch(/^ERROR: .*org\.freedesktop\.DBus\.Error\.Unknown(Method|Object)/);
  });
});

describe('systemd stand-in close()', () => {
  it('stops the daemon and removes its socket and temp files', async () => {
    const systemd = await startSystemdBus();
    const configDir = dirname(systemd.socketPath);
    const pids = daemonsUsing(configDir);
    expect(pids).toHaveLength(1);
    await systemd.close();
    expect(pids.filter(pidAlive)).toEqual([]);
    expect(existsSync(systemd.socketPath)).toBe(false);
    expect(existsSync(configDir)).toBe(false);
  });

  it('closes the private socket and removes it', async () => {
    const systemd = await startSystemdPrivateSocket();
    await systemd.close();
    expect(existsSync(systemd.socketPath)).toBe(false);
    expect(existsSync(dirname(systemd.socketPath))).toBe(false);
  });
});
