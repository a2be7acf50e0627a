import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HostFileError } from './errors.js';
import { HostRoot, MAX_DIR_ENTRIES, MAX_FILE_BYTES } from './host-root.js';

let base: string;
let root: string;
let host: HostRoot;

function put(path: string, content: string | Buffer = 'x'): void {
  mkdirSync(join(root, path, '..'), { recursive: true });
  writeFileSync(join(root, path), content);
}

function link(path: string, target: string): void {
  mkdirSync(join(root, path, '..'), { recursive: true });
  symlinkSync(target, join(root, path));
}

function refusal(fn: () => unknown): HostFileError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(HostFileError);
    return err as HostFileError;
  }
  throw new Error('expected a HostFileError');
}

beforeAll(() => {
  base = mkdtempSync(join(tmpdir(), 'host-root-'));
  root = join(base, 'host');
  mkdirSync(root);
  // Outside the host root: must never be read through it.
  writeFileSync(join(base, 'secret'), 'outside the host root\n');
  mkdirSync(join(base, 'etc'));
  writeFileSync(join(base, 'etc', 'shadow'), 'outside too\n');
  put('usr/lib/os-release', 'ID=test\n');
  link('lib', 'usr/lib');
  link('etc/os-release', '../usr/lib/os-release');
  link('etc/absolute', '/usr/lib/os-release');
  link('etc/escape', '../../secret');
  link('etc/escape-deep', '../usr/../../../etc/shadow');
  link('etc/abs-outside', `${base}/secret`);
  link('etc/loop-a', 'loop-b');
  link('etc/loop-b', 'loop-a');
  put('etc/big', Buffer.alloc(MAX_FILE_BYTES + 1, 'a'));
  put('etc/cap', Buffer.alloc(MAX_FILE_BYTES, 'a'));
  put('etc/binary', Buffer.from([0x4b, 0x3d, 0xff, 0xfe, 0x0a]));
  put('etc/dir/file.conf', 'x');
  execFileSync('mkfifo', [join(root, 'etc', 'fifo')]);
  host = new HostRoot(root);
});

afterAll(() => rmSync(base, { recursive: true, force: true }));

describe('HostRoot', () => {
  it('follows relative and absolute links inside the root and reports the host path', () => {
    expect(host.readText('/etc/os-release')).toEqual({
      hostPath: '/usr/lib/os-release',
      text: 'ID=test\n',
    });
    expect(host.readText('/etc/absolute')?.hostPath).toBe('/usr/lib/os-release');
    expect(host.readText('/lib/os-release')?.hostPath).toBe('/usr/lib/os-release');
    expect(host.resolve('/lib/./os-release')?.localPath).toBe(
      join(host.root, 'usr/lib/os-release'),
    );
  });

  it('reads an absolute link target as a host path, never as a path of this machine', () => {
    // The target exists here at `${base}/secret`, but on the host it means
    // <root>${base}/secret, which does not exist.
    expect(host.readText('/etc/abs-outside')).toBeNull();
  });

  it.each([['/etc/escape'], ['/etc/escape-deep'], ['/../secret'], ['/etc/../../secret']])(
    'refuses %s, which climbs out of the root',
    (path) => {
      const err = refusal(() => host.readText(path));
      expect(err.code).toBe('PATH_ESCAPES_ROOT');
      expect(err.hostPath).toBe(path);
      expect(err.message).toContain('refused');
    },
  );

  it('refuses a symlink loop', () => {
    expect(refusal(() => host.readText('/etc/loop-a')).code).toBe('SYMLINK_LOOP');
  });

  it('refuses a file over the cap and reads one at the cap', () => {
    const err = refusal(() => host.readText('/etc/big'));
    expect(err.code).toBe('FILE_TOO_LARGE');
    expect(err.message).toBe(
      `"/etc/big" on the host: is ${MAX_FILE_BYTES + 1} bytes or more, over the ${MAX_FILE_BYTES}-byte cap; refused`,
    );
    expect(host.readText('/etc/cap')?.text.length).toBe(MAX_FILE_BYTES);
  });

  it('takes a smaller cap from options', () => {
    const small = new HostRoot(root, { maxBytes: 4 });
    expect(refusal(() => small.readText('/usr/lib/os-release')).code).toBe('FILE_TOO_LARGE');
    expect(() => new HostRoot(root, { maxBytes: 0 })).toThrow(TypeError);
  });

  it.each([['/etc/fifo'], ['/etc/dir']])('refuses %s, not a regular file', (path) => {
    expect(refusal(() => host.readText(path)).code).toBe('NOT_A_REGULAR_FILE');
  });

  it('refuses a file that is not UTF-8', () => {
    expect(refusal(() => host.readText('/etc/binary')).code).toBe('FILE_NOT_TEXT');
  });

  it('refuses a relative path', () => {
    expect(refusal(() => host.readText('etc/os-release')).code).toBe('PATH_NOT_ABSOLUTE');
  });

  it('answers null for what does not exist, also through a file or a dangling link', () => {
    expect(host.readText('/etc/nothing')).toBeNull();
    expect(host.readText('/etc/os-release/below')).toBeNull();
    expect(host.list('/etc/nothing')).toBeNull();
    expect(host.list('/usr/lib/os-release')).toBeNull();
  });

  it('lists a directory, sorted, up to a bound', () => {
    expect(host.list('/etc/dir')).toEqual(['file.conf']);
    for (let i = 0; i <= MAX_DIR_ENTRIES; i++) put(`many/${String(i).padStart(4, '0')}.conf`);
    expect(refusal(() => host.list('/many')).code).toBe('TOO_MANY_ENTRIES');
  });

  it('tells a link target without following it', () => {
    expect(host.linkTarget('/etc/os-release')).toBe('../usr/lib/os-release');
    expect(host.linkTarget('/usr/lib/os-release')).toBeNull();
    expect(host.linkTarget('/nowhere/x')).toBeNull();
  });

  it('refuses a root that is not a directory', () => {
    expect(() => new HostRoot(join(root, 'usr/lib/os-release'))).toThrow(/not a directory/);
  });
});
