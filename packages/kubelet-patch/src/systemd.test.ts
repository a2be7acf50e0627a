import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checkUnitName,
  connectSystemd,
  socketPathOf,
  systemdAddressFor,
  unitObjectPath,
} from './systemd.js';

/** The inverse of the escaping, written from the rule, to show no two names share a path. */
function unescapeLabel(label: string): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < label.length; i++) {
    if (label[i] === '_') {
      bytes.push(Number.parseInt(label.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(label.charCodeAt(i));
    }
  }
  return Buffer.from(bytes);
}

describe('unitObjectPath', () => {
  it.each([
    ['kubelet.service', '/org/freedesktop/systemd1/unit/kubelet_2eservice'],
    [
      'kubelet-image-service.service',
      '/org/freedesktop/systemd1/unit/kubelet_2dimage_2dservice_2eservice',
    ],
    ['foo@bar.service', '/org/freedesktop/systemd1/unit/foo_40bar_2eservice'],
    ['1abc.service', '/org/freedesktop/systemd1/unit/_31abc_2eservice'],
    ['a1.service', '/org/freedesktop/systemd1/unit/a1_2eservice'],
    ['dev-sda\\x2d1.device', '/org/freedesktop/systemd1/unit/dev_2dsda_5cx2d1_2edevice'],
    ['-.mount', '/org/freedesktop/systemd1/unit/_2d_2emount'],
    ['', '/org/freedesktop/systemd1/unit/_'],
    ['ü', '/org/freedesktop/systemd1/unit/_c3_bc'],
  ])('%j -> %s', (name, path) => {
    expect(unitObjectPath(name)).toBe(path);
  });

  it('gives a valid object path element that maps back to the name', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 40, unit: 'binary' }), (name) => {
        const label = unitObjectPath(name).slice('/org/freedesktop/systemd1/unit/'.length);
        expect(label).toMatch(/^[A-Za-z_][A-Za-z0-9_]*$/);
        expect(unescapeLabel(label).toString('utf8')).toBe(name);
      }),
    );
  });
});

describe('checkUnitName', () => {
  it.each([
    'kubelet.service',
    'kubelet-image-service.service',
    'foo@bar.service',
    'getty@tty1.service',
    'a@b@c.service',
    '1abc.service',
    'dev-sda\\x2d1.device',
    'system.slice',
    '-.mount',
    `${'a'.repeat(247)}.service`,
  ])('accepts %j', (name) => {
    expect(() => checkUnitName(name)).not.toThrow();
  });

  it.each([
    '',
    'kubelet',
    'kubelet.',
    '.service',
    'kubelet.unknown',
    'getty@.service',
    'kube let.service',
    'kubelet.service\n',
    'kubelet/../x.service',
    "kubelet'.service",
    'kübelet.service',
    `${'a'.repeat(248)}.service`,
  ])('refuses %j with a TypeError', (name) => {
    expect(() => checkUnitName(name)).toThrow(TypeError);
  });
});

describe('socketPathOf', () => {
  it.each([
    ['unix:path=/host/run/dbus/system_bus_socket', '/host/run/dbus/system_bus_socket'],
    ['unix:path=/host/run/systemd/private', '/host/run/systemd/private'],
    ['/host/run/systemd/private', '/host/run/systemd/private'],
    ['unix:path=/run/dbus/system_bus_socket,guid=0123abcd', '/run/dbus/system_bus_socket'],
    ['unix:path=/tmp/with%20space', '/tmp/with space'],
  ])('%s -> %s', (address, path) => {
    expect(socketPathOf(address)).toBe(path);
  });

  it.each([
    ['', /absolute path/],
    ['tcp:host=127.0.0.1,port=1234', /transport "tcp"/],
    ['unix:abstract=/tmp/dbus-x', /abstract socket/],
    ['unix:tmpdir=/tmp', /key "tmpdir"/],
    ['unix:path=relative', /no absolute path/],
    ['unix:path=/a;unix:path=/b', /list/],
    ['unix:path=/bad%zz', /%-escape/],
    ['unix:path=/bad%ff', /%-escape/],
    ['unixexec:path=/bin/sh', /transport "unixexec"/],
    ['relative/path', /transport ""/],
  ])('refuses %j', (address, message) => {
    expect(() => socketPathOf(address)).toThrow(TypeError);
    expect(() => socketPathOf(address)).toThrow(message);
  });
});

describe('connectSystemd options', () => {
  it.each([
    [{ timeoutMs: 0 }, /^connectSystemd: options.timeoutMs/],
    [{ timeoutMs: Number.NaN }, /^connectSystemd: options.timeoutMs/],
    [{ peer: 'yes' as unknown as boolean }, /options.peer/],
  ])('refuses %j before connecting', async (options, message) => {
    await expect(connectSystemd('/nonexistent/socket', options)).rejects.toThrow(message);
  });

  it('refuses another transport before connecting', async () => {
    await expect(connectSystemd('tcp:host=127.0.0.1,port=1')).rejects.toThrow(TypeError);
  });
});

describe('systemdAddressFor', () => {
  it('prefers the given address, then the system bus under the host root, then the private socket', () => {
    const root = mkdtempSync(join(tmpdir(), 'np-bus-'));
    try {
      expect(systemdAddressFor(root, 'unix:path=/host/run/systemd/private')).toEqual({
        address: 'unix:path=/host/run/systemd/private',
        peer: true,
      });
      expect(systemdAddressFor(root, '/host/run/dbus/system_bus_socket').peer).toBe(false);
      expect(systemdAddressFor(root)).toEqual({
        address: `unix:path=${join(root, 'run/systemd/private')}`,
        peer: true,
      });
      mkdirSync(join(root, 'run/dbus'), { recursive: true });
      writeFileSync(join(root, 'run/dbus/system_bus_socket'), '');
      expect(systemdAddressFor(root)).toEqual({
        address: `unix:path=${join(root, 'run/dbus/system_bus_socket')}`,
        peer: false,
      });
      expect(() => systemdAddressFor(root, 'tcp:host=x')).toThrow(
        /--systemd-bus must be unix:path=\/PATH/,
      );
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
