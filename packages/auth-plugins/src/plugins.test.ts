import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createHtpasswdPlugin, parseHtpasswd } from './htpasswd.js';
import { createStaticUsersPlugin } from './static-users.js';

const dir = mkdtempSync(join(tmpdir(), 'auth-plugins-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
/** A line from the real htpasswd -B. */
const entry = (user: string, password: string) =>
  execFileSync('htpasswd', ['-Bbn', user, password], { encoding: 'utf8' }).trim();

describe('htpasswd plugin', () => {
  const file = join(dir, 'htpasswd');

  it('accepts bcrypt users made by htpasswd -B, refusing wrong passwords and unknown users', async () => {
    writeFileSync(
      file,
      `${entry('alice', 'wonderland')}\n# a comment\n\n${entry('bob', 'builder')}\n`,
    );
    const plugin = createHtpasswdPlugin({ name: 'users', file });
    expect(await plugin.authenticate({ username: 'alice', password: 'wonderland' })).toEqual({
      ok: true,
      identity: { plugin: 'users', subject: 'alice', groups: [], claims: {} },
    });
    expect(await plugin.authenticate({ username: 'alice', password: 'Wonderland' })).toEqual({
      ok: false,
      reason: 'BAD_PASSWORD',
    });
    expect(await plugin.authenticate({ username: 'carol', password: 'x' })).toEqual({
      ok: false,
      reason: 'UNKNOWN_USER',
    });
  });

  it('re-reads the file when it changes, and keeps the last good users if it turns bad', async () => {
    writeFileSync(file, `${entry('alice', 'one')}\n`);
    const plugin = createHtpasswdPlugin({ name: 'users', file });
    expect((await plugin.authenticate({ username: 'alice', password: 'one' })).ok).toBe(true);
    writeFileSync(file, `${entry('alice', 'two')}\n`);
    expect((await plugin.authenticate({ username: 'alice', password: 'one' })).ok).toBe(false);
    expect((await plugin.authenticate({ username: 'alice', password: 'two' })).ok).toBe(true);
    writeFileSync(file, 'alice:{SHA}not-bcrypt-and-longer\n');
    expect((await plugin.authenticate({ username: 'alice', password: 'two' })).ok).toBe(true);
  });

  it('lets nobody in when the file was never readable', async () => {
    const plugin = createHtpasswdPlugin({ name: 'users', file: join(dir, 'missing') });
    expect(await plugin.authenticate({ username: 'a', password: 'b' })).toEqual({
      ok: false,
      reason: 'UNAVAILABLE',
    });
  });

  it('refuses non-bcrypt entries, naming the line but not its content', () => {
    expect(() =>
      parseHtpasswd(
        `${entry('a', 'b')}\nbob:$apr1$secretstuff$abcdefghijklmnopqrstuv\n`,
        '/etc/htpasswd',
      ),
    ).toThrow(/^\/etc\/htpasswd:2: not a "user:bcrypt-hash" entry/);
    try {
      parseHtpasswd('bob:plaintext-password\n', 'f');
    } catch (err) {
      expect((err as Error).message).not.toContain('plaintext-password');
    }
    expect(() => parseHtpasswd(`${entry('a', 'b')}\n${entry('a', 'c')}\n`, 'f')).toThrow(
      /appears twice/,
    );
  });
});

describe('static users plugin', () => {
  it('takes a bcrypt hash or a password, and groups', async () => {
    const hash = entry('x', 'hashed-pw').split(':')[1] as string;
    const plugin = createStaticUsersPlugin({
      name: 'ci',
      users: [
        { username: 'deploy', passwordHash: hash, groups: ['deployers'] },
        { username: 'reader', password: 'plain-pw' },
      ],
    });
    expect(await plugin.authenticate({ username: 'deploy', password: 'hashed-pw' })).toMatchObject({
      ok: true,
      identity: { plugin: 'ci', subject: 'deploy', groups: ['deployers'] },
    });
    expect((await plugin.authenticate({ username: 'reader', password: 'plain-pw' })).ok).toBe(true);
    expect(await plugin.authenticate({ username: 'reader', password: 'nope' })).toEqual({
      ok: false,
      reason: 'BAD_PASSWORD',
    });
  });

  it.each([
    [{ name: 'a b', users: [] }, /name/],
    [{ name: 'ci', users: [{ username: 'u' }] }, /exactly one of password and passwordHash/],
    [{ name: 'ci', users: [{ username: 'u', passwordHash: 'md5' }] }, /bcrypt hash/],
    [
      {
        name: 'ci',
        users: [
          { username: 'u', password: 'a' },
          { username: 'u', password: 'b' },
        ],
      },
      /appears twice/,
    ],
  ])('refuses %j', (options, message) => {
    expect(() => createStaticUsersPlugin(options as never)).toThrow(message);
  });
});
