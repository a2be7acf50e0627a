import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import {
  type SystemdStandIn,
  startSystemdBus,
  startSystemdPrivateSocket,
  systemdUnitPath,
} from '@org/tools/stand-ins';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  connectSystemd,
  SystemdBusError,
  type SystemdClient,
  unitObjectPath,
} from '../src/index.js';

/** Each mode as the node patcher will use it: the host's root is mounted at `hostRoot`. */
const modes = [
  {
    mode: 'system bus',
    peer: false,
    start: (hostRoot: string) =>
      startSystemdBus({ socketPath: join(hostRoot, 'run/dbus/system_bus_socket') }),
  },
  {
    mode: 'private socket',
    peer: true,
    start: (hostRoot: string) =>
      startSystemdPrivateSocket({ socketPath: join(hostRoot, 'run/systemd/private') }),
  },
] as const;

describe.each(modes)('systemd over the $mode', ({ peer, start }) => {
  let hostRoot: string;
  let systemd: SystemdStandIn;
  let client: SystemdClient | undefined;

  beforeAll(async () => {
    hostRoot = mkdtempSync('/tmp/host-');
    systemd = await start(hostRoot);
  });
  afterAll(async () => {
    await systemd?.close();
    rmSync(hostRoot, { recursive: true, force: true });
  });
  afterEach(async () => {
    await client?.close();
    client = undefined;
    systemd.calls.length = 0;
    systemd.onRestart = undefined;
    systemd.denyAccess = false;
    systemd.jobRemovedFirst = false;
    systemd.units.set('kubelet.service', 'active');
  });

  const connect = async () => {
    client = await connectSystemd(systemd.address, { peer, timeoutMs: 5_000 });
    return client;
  };

  it('reloads (daemon-reload)', async () => {
    const c = await connect();
    expect(c.peer).toBe(peer);
    await c.reload();
    expect(systemd.calls).toEqual([{ method: 'Reload', args: [] }]);
  });

  it('restarts a unit, resolves done, and the unit is active again', async () => {
    const c = await connect();
    const states: string[] = [];
    systemd.onRestart = async (unit) => {
      states.push(systemd.units.get(unit) ?? '');
      return 'active' as const;
    };
    expect(await c.restartUnit('kubelet.service')).toBe('done');
    expect(states).toEqual(['activating']);
    expect(systemd.calls).toEqual([
      { method: 'RestartUnit', args: ['kubelet.service', 'replace'] },
    ]);
    expect(await c.activeState('kubelet.service')).toBe('active');
    expect(
      await c.unitProperty('kubelet.service', 'org.freedesktop.systemd1.Unit', 'SubState'),
    ).toBe('running');
    await c.waitActive('kubelet.service', { timeoutMs: 2_000, intervalMs: 20 });
    // a second job on the same connection (Subscribe is not repeated)
    expect(await c.restartUnit('kubelet.service')).toBe('done');
  });

  it('gets JobRemoved even when it arrives before the reply naming the job', async () => {
    const c = await connect();
    systemd.jobRemovedFirst = true;
    expect(await c.restartUnit('kubelet.service', { timeoutMs: 5_000 })).toBe('done');
  });

  it('reports a failed restart, and waitActive rejects naming failed', async () => {
    const c = await connect();
    systemd.onRestart = () => 'failed';
    expect(await c.restartUnit('kubelet.service')).toBe('failed');
    expect(await c.activeState('kubelet.service')).toBe('failed');
    const error = await c.waitActive('kubelet.service', { intervalMs: 20 }).catch((e) => e);
    expect(error).toBeInstanceOf(SystemdBusError);
    expect(error).toMatchObject({
      code: 'UNIT_FAILED',
      unit: 'kubelet.service',
      activeState: 'failed',
    });
    expect(error.message).toMatch(/kubelet\.service is failed/);
  });

  it('waits while the unit is activating, and times out naming the last state', async () => {
    const c = await connect();
    let release: (outcome: 'active') => void = () => {};
    systemd.onRestart = () => new Promise((resolve) => (release = resolve));
    const restarting = c.restartUnit('kubelet.service');
    restarting.catch(() => {}); // awaited below; a failed assertion must not leave it unhandled
    await vi.waitFor(() => expect(systemd.units.get('kubelet.service')).toBe('activating'));
    const error = await c
      .waitActive('kubelet.service', { timeoutMs: 300, intervalMs: 20 })
      .catch((e) => e);
    expect(error).toMatchObject({ code: 'TIMEOUT', activeState: 'activating' });
    expect(error.message).toMatch(/"activating"/);
    const waiting = c.waitActive('kubelet.service', { timeoutMs: 5_000, intervalMs: 20 });
    release('active');
    await waiting;
    expect(await restarting).toBe('done');
  });

  it('times out a job that does not finish, and the job goes on', async () => {
    const c = await connect();
    let release: (outcome: 'active') => void = () => {};
    systemd.onRestart = () => new Promise((resolve) => (release = resolve));
    const error = await c.restartUnit('kubelet.service', { timeoutMs: 200 }).catch((e) => e);
    expect(error).toMatchObject({ code: 'TIMEOUT', unit: 'kubelet.service' });
    expect(error.message).toMatch(/RestartUnit job for kubelet\.service .* did not finish/);
    release('active');
    await c.waitActive('kubelet.service', { timeoutMs: 5_000, intervalMs: 20 });
  });

  it('starts an inactive unit', async () => {
    const c = await connect();
    systemd.units.set('kubelet-image-service.service', 'inactive');
    expect(await c.activeState('kubelet-image-service.service')).toBe('inactive');
    expect(await c.startUnit('kubelet-image-service.service')).toBe('done');
    expect(await c.activeState('kubelet-image-service.service')).toBe('active');
    expect(systemd.calls).toEqual([
      { method: 'StartUnit', args: ['kubelet-image-service.service', 'replace'] },
    ]);
  });

  it('answers for a unit that does not exist', async () => {
    const c = await connect();
    expect(await c.activeState('nope.service')).toBe('inactive');
    expect(await c.unitProperty('nope.service', 'org.freedesktop.systemd1.Unit', 'LoadState')).toBe(
      'not-found',
    );
    const error = await c.restartUnit('nope.service').catch((e) => e);
    expect(error).toMatchObject({
      code: 'CALL_FAILED',
      dbusName: 'org.freedesktop.systemd1.NoSuchUnit',
    });
    expect(error.message).toMatch(/RestartUnit failed: org\.freedesktop\.systemd1\.NoSuchUnit/);
    expect(systemd.calls).toEqual([]);
  });

  it('surfaces AccessDenied as CALL_FAILED with the error name', async () => {
    const c = await connect();
    systemd.denyAccess = true;
    for (const attempt of [() => c.reload(), () => c.restartUnit('kubelet.service')]) {
      const error = await attempt().catch((e) => e);
      expect(error).toBeInstanceOf(SystemdBusError);
      expect(error).toMatchObject({
        code: 'CALL_FAILED',
        dbusName: 'org.freedesktop.DBus.Error.AccessDenied',
      });
    }
    expect(systemd.calls).toEqual([]);
  });

  it('refuses a bad unit name or option before sending anything', async () => {
    const c = await connect();
    for (const name of ['kubelet', 'getty@.service', "x'.service", 'a b.service']) {
      await expect(c.restartUnit(name)).rejects.toThrow(TypeError);
      await expect(c.activeState(name)).rejects.toThrow(TypeError);
    }
    await expect(c.restartUnit('kubelet.service', { timeoutMs: -1 })).rejects.toThrow(
      /^restartUnit: options\.timeoutMs must be a positive number/,
    );
    await expect(c.startUnit('kubelet.service', { timeoutMs: Number.NaN })).rejects.toThrow(
      /^startUnit: options\.timeoutMs/,
    );
    await expect(c.waitActive('kubelet.service', { intervalMs: 0 })).rejects.toThrow(
      /^waitActive: options\.intervalMs/,
    );
    expect(systemd.calls).toEqual([]);
  });

  it('rejects calls after close', async () => {
    const c = await connect();
    await c.close();
    await expect(c.reload()).rejects.toMatchObject({ code: 'DISCONNECTED' });
  });
});

describe('connecting to the wrong thing', () => {
  let dir: string;
  const servers: Server[] = [];
  beforeAll(() => {
    dir = mkdtempSync('/tmp/systemd-client-');
  });
  afterAll(async () => {
    for (const s of servers) await new Promise((r) => s.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  /** A unix socket that accepts and then does what `onData` says (or nothing). */
  const listen = async (
    name: string,
    onData?: (chunk: Buffer, reply: (s: string) => void) => void,
  ) => {
    const path = join(dir, name);
    const server = createServer((socket) => {
      socket.on('data', (chunk) => onData?.(chunk, (s) => socket.write(s)));
      socket.on('error', () => {});
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(path, r));
    return path;
  };

  it('fails fast with CONNECT_FAILED when the socket does not exist', async () => {
    const error = await connectSystemd(join(dir, 'missing'), { timeoutMs: 30_000 }).catch((e) => e);
    expect(error).toBeInstanceOf(SystemdBusError);
    expect(error.code).toBe('CONNECT_FAILED');
    expect(error.message).toMatch(/ENOENT/);
  });

  it.each([false, true])(
    'times out on a socket that accepts but never answers (peer %s)',
    async (peer) => {
      const path = await listen(`silent-${peer}`);
      const error = await connectSystemd(path, { peer, timeoutMs: 300 }).catch((e) => e);
      expect(error).toMatchObject({ code: 'TIMEOUT' });
      expect(error.message).toMatch(/did not complete D-Bus authentication/);
    },
  );

  it('reports AUTH_FAILED when EXTERNAL is rejected', async () => {
    const path = await listen('rejecting', (chunk, reply) => {
      if (chunk.includes('AUTH')) reply('REJECTED DBUS_COOKIE_SHA1\r\n');
    });
    const error = await connectSystemd(path, { timeoutMs: 5_000 }).catch((e) => e);
    expect(error).toMatchObject({ code: 'AUTH_FAILED' });
    expect(error.message).toMatch(/refused D-Bus authentication .*REJECTED DBUS_COOKIE_SHA1/);
  });

  it('reports AUTH_FAILED when the other end hangs up during authentication', async () => {
    const path = join(dir, 'hangup');
    const server = createServer((socket) => socket.once('data', () => socket.destroy()));
    servers.push(server);
    await new Promise<void>((r) => server.listen(path, r));
    await expect(connectSystemd(path, { timeoutMs: 5_000 })).rejects.toMatchObject({
      code: 'AUTH_FAILED',
    });
  });

  it('says NOT_A_BUS when the private socket is used in bus mode', async () => {
    const systemd = await startSystemdPrivateSocket();
    try {
      const error = await connectSystemd(systemd.address, { timeoutMs: 5_000 }).catch((e) => e);
      expect(error).toBeInstanceOf(SystemdBusError);
      expect(error.code).toBe('NOT_A_BUS');
      expect(error.dbusName).toMatch(/^org\.freedesktop\.DBus\.Error\./);
      expect(error.message).toMatch(/peer: true/);
    } finally {
      await systemd.close();
    }
  });

  it('says DISCONNECTED, with the fix, when the system bus is used in peer mode', async () => {
    const systemd = await startSystemdBus();
    try {
      const client = await connectSystemd(systemd.address, { peer: true, timeoutMs: 5_000 });
      const error = await client.reload().catch((e) => e);
      await client.close();
      expect(error).toMatchObject({ code: 'DISCONNECTED' });
      expect(error.message).toMatch(/without peer: true/);
      expect(systemd.calls).toEqual([]);
    } finally {
      await systemd.close();
    }
  });
});

describe('unit object paths', () => {
  it('match the stand-in, an independent implementation of the same rule', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40, unit: 'binary' }), (name) => {
        expect(unitObjectPath(name)).toBe(systemdUnitPath(name));
      }),
    );
  });
});
