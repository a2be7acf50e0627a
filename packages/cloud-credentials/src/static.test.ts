import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CredentialsError } from './errors.js';
import { createStaticSource } from './static.js';
import { NEVER } from './types.js';

const dir = mkdtempSync(join(tmpdir(), 'static-src-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const target = { registry: 'registry.internal:5000' };

describe('createStaticSource', () => {
  it('returns literal credentials that never expire and are not cached by callers', async () => {
    const source = createStaticSource({ username: 'puller', password: 's3cret' });
    expect(source.kind).toBe('static');
    expect(source.cacheable).toBe(false);
    expect(await source.fetch(target)).toEqual({
      username: 'puller',
      password: 's3cret',
      expiresAt: NEVER,
    });
  });

  it('reads the environment it is given', async () => {
    const env: Record<string, string | undefined> = { REG_USER: 'ci', REG_PASS: 'tok' };
    const source = createStaticSource({ usernameEnv: 'REG_USER', passwordEnv: 'REG_PASS', env });
    expect(await source.fetch(target)).toMatchObject({ username: 'ci', password: 'tok' });
    env.REG_PASS = undefined;
    const err = await source.fetch(target).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CredentialsError);
    expect(err).toMatchObject({
      code: 'CREDENTIALS_UNAVAILABLE',
      provider: 'static',
      registry: target.registry,
    });
    expect((err as Error).message).toContain('REG_PASS');
  });

  it('re-reads a Kubernetes-style secret mount when its ..data link is swapped', async () => {
    // kubelet writes a new timestamped dir, then renames a new ..data symlink over the old one
    const mount = join(dir, 'secret');
    mkdirSync(join(mount, '..2026_01'), { recursive: true });
    writeFileSync(join(mount, '..2026_01', 'password'), 'first\n');
    symlinkSync('..2026_01', join(mount, '..data'));
    symlinkSync('..data/password', join(mount, 'password'));
    const source = createStaticSource({
      username: 'puller',
      passwordFile: join(mount, 'password'),
    });
    expect((await source.fetch(target)).password).toBe('first');

    mkdirSync(join(mount, '..2026_02'));
    writeFileSync(join(mount, '..2026_02', 'password'), 'second');
    symlinkSync('..2026_02', join(mount, '..data_tmp'));
    renameSync(join(mount, '..data_tmp'), join(mount, '..data'));
    expect((await source.fetch(target)).password).toBe('second');
  });

  it('names the file it cannot read, without its contents', async () => {
    const source = createStaticSource({ username: 'u', passwordFile: join(dir, 'missing') });
    await expect(source.fetch(target)).rejects.toMatchObject({
      code: 'CREDENTIALS_UNAVAILABLE',
      message: expect.stringContaining('ENOENT'),
    });
  });

  it('gives different identities to different credentials, without the secret in clear', () => {
    const a = createStaticSource({ username: 'u', password: 'one' });
    const b = createStaticSource({ username: 'u', password: 'two' });
    expect(a.identity).not.toBe(b.identity);
    expect(a.identity).toBe(createStaticSource({ username: 'u', password: 'one' }).identity);
    expect(a.identity).not.toContain('one');
  });

  it.each([
    [{ password: 'p' }, /exactly one of username/],
    [{ username: 'u', password: 'p', passwordFile: '/x' }, /exactly one of password/],
    [{ username: 'u', passwordEnv: 'X' }, /passwordEnv needs the env option/],
    [{ username: 'u', passwordFile: '' }, /passwordFile must be a non-empty string/],
  ])('refuses %j', (options, message) => {
    expect(() => createStaticSource(options)).toThrow(message);
  });
});
