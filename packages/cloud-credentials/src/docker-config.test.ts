import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createDockerConfigSource } from './docker-config.js';

const dir = mkdtempSync(join(tmpdir(), 'docker-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const env = { PATH: `${dir}:/usr/bin:/bin` };
const b64 = (s: string) => Buffer.from(s).toString('base64');

/** A real docker-credential-<name> helper: records what it was asked, answers per server. */
function helper(name: string, script: string): void {
  const path = join(dir, `docker-credential-${name}`);
  writeFileSync(path, `#!/bin/sh\n${script}\n`);
  chmodSync(path, 0o755);
}

helper(
  'test',
  `[ "$1" = get ] || exit 3
read server
echo "$server" >> "${dir}/asked"
case "$server" in
  gcr.io) printf '{"ServerURL":"gcr.io","Username":"oauth2accesstoken","Secret":"ya29.token"}' ;;
  https://index.docker.io/v1/) printf '{"Username":"hubuser","Secret":"hubpat"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac`,
);
helper('broken', 'echo "secret-looking output sk_live_123" ; exit 2');
helper('garbage', 'echo "not json"');

describe('createDockerConfigSource', () => {
  it('decodes auths entries, matching docker key forms', async () => {
    const source = createDockerConfigSource({
      config: {
        auths: {
          'https://index.docker.io/v1/': { auth: b64('hub:pat') },
          'registry.example.com:5000': { username: 'u', password: 'p:with:colons' },
          'https://quay.io/v2/': { auth: b64('robot+ci:tok') },
        },
      },
    });
    expect(await source.fetch({ registry: 'docker.io' })).toMatchObject({
      username: 'hub',
      password: 'pat',
    });
    expect(await source.fetch({ registry: 'registry.example.com:5000' })).toMatchObject({
      username: 'u',
      password: 'p:with:colons',
    });
    expect(await source.fetch({ registry: 'quay.io' })).toMatchObject({
      username: 'robot+ci',
      password: 'tok',
    });
    await expect(source.fetch({ registry: 'ghcr.io' })).rejects.toMatchObject({
      code: 'CREDENTIALS_UNAVAILABLE',
    });
  });

  it('asks credHelpers first, then credsStore, through the helper protocol', async () => {
    const now = () => 1_700_000_000_000;
    const source = createDockerConfigSource({
      config: {
        credHelpers: { 'gcr.io': 'test' },
        credsStore: 'test',
        auths: { 'gcr.io': { auth: b64('x:y') } },
      },
      env,
      now,
      ttlMs: 30_000,
    });
    expect(await source.fetch({ registry: 'gcr.io' })).toEqual({
      username: 'oauth2accesstoken',
      password: 'ya29.token',
      expiresAt: new Date(now() + 30_000),
    });
    expect(await source.fetch({ registry: 'docker.io' })).toMatchObject({
      username: 'hubuser',
      password: 'hubpat',
    });
    await expect(source.fetch({ registry: 'other.example.com' })).rejects.toMatchObject({
      code: 'CREDENTIALS_UNAVAILABLE',
      message: expect.stringContaining('has no credentials for other.example.com'),
    });
  });

  it("never repeats a failing helper's output", async () => {
    const source = createDockerConfigSource({ config: { credsStore: 'broken' }, env });
    const err = await source.fetch({ registry: 'r.example.com' }).catch((e: Error) => e);
    expect(err).toMatchObject({ code: 'PROVIDER_ERROR' });
    expect((err as Error).message).toContain('exited with 2');
    expect((err as Error).message).not.toContain('sk_live');
  });

  it.each([
    ['garbage', 'INVALID_RESPONSE'],
    ['absent', 'CREDENTIALS_UNAVAILABLE'],
  ])('reports helper %s as %s', async (name, code) => {
    const source = createDockerConfigSource({ config: { credsStore: name }, env });
    await expect(source.fetch({ registry: 'r.example.com' })).rejects.toMatchObject({ code });
  });

  it('stops a helper that hangs', async () => {
    helper('slow', 'sleep 5');
    const source = createDockerConfigSource({
      config: { credsStore: 'slow' },
      env,
      helperTimeoutMs: 200,
    });
    await expect(source.fetch({ registry: 'r.example.com' })).rejects.toMatchObject({
      code: 'PROVIDER_ERROR',
      message: expect.stringContaining('stopped'),
    });
  });

  it('re-reads config.json when it changes, and reports a broken one', async () => {
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({ auths: { 'r.example.com': { auth: b64('a:1') } } }));
    const source = createDockerConfigSource({ configFile: file });
    expect((await source.fetch({ registry: 'r.example.com' })).password).toBe('1');
    writeFileSync(file, JSON.stringify({ auths: { 'r.example.com': { auth: b64('a:two') } } }));
    expect((await source.fetch({ registry: 'r.example.com' })).password).toBe('two');
    writeFileSync(file, '{ not json');
    await expect(source.fetch({ registry: 'r.example.com' })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
    });
  });

  it.each([
    [{}, /exactly one of configFile and config/],
    [{ config: { credsStore: '../../bin/sh' } }, /helper name/],
    [{ config: { credHelpers: { 'gcr.io': 'a b' } } }, /helper name/],
    [{ config: { auths: [] } as never }, /auths must be an object/],
  ])('refuses %j', (options, message) => {
    expect(() => createDockerConfigSource(options)).toThrow(message);
  });
});
