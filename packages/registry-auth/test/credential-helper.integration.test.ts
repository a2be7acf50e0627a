import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import {
  type DockerRegistry,
  type EcrStandIn,
  type PushedImage,
  pushImage,
  startDockerRegistry,
  startEcr,
} from '@org/tools/stand-ins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const KEY = { accessKeyId: 'AKIASHIMSTANDIN00001', secretAccessKey: 'shim-secret' };
const dir = mkdtempSync(join(tmpdir(), 'shim-'));
const shim = join(import.meta.dirname, '..', 'dist', 'bin', 'docker-credential-registry-auth.js');
let registry: DockerRegistry;
let ecr: EcrStandIn;
let image: PushedImage;

/** `skopeo <args>` against the test registry, with the shim configured by `configFile`. */
function skopeo(configFile: string, ...args: string[]) {
  return run('skopeo', [args[0] ?? '', '--authfile', join(dir, 'auth.json'), ...args.slice(1)], {
    env: env(configFile),
  });
}

/** Environment for skopeo: our shim (with this Node) first on PATH, AWS keys for the SDK chain. */
function env(configFile: string): NodeJS.ProcessEnv {
  return {
    PATH: `${join(dir, 'bin')}:${dirname(process.execPath)}:/usr/bin:/bin`,
    HOME: dir,
    REGISTRY_AUTH_CONFIG: configFile,
    AWS_ACCESS_KEY_ID: KEY.accessKeyId,
    AWS_SECRET_ACCESS_KEY: KEY.secretAccessKey,
    AWS_CONFIG_FILE: join(dir, 'no-aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(dir, 'no-aws-credentials'),
    AWS_EC2_METADATA_DISABLED: 'true',
  };
}

beforeAll(async () => {
  // The registry only accepts the password our ECR stand-in hands out.
  ecr = await startEcr({ keys: [KEY], password: () => 'ecr-issued-password' });
  registry = await startDockerRegistry({
    htpasswd: { user: 'AWS', password: 'ecr-issued-password' },
  });
  image = await pushImage(
    registry,
    dir,
    'team/app',
    [{ 'etc/hello.txt': 'hello from the shim test\n' }],
    { credentials: { user: 'AWS', password: 'ecr-issued-password' } },
  );
  const bin = join(dir, 'bin', 'docker-credential-registry-auth');
  mkdirSync(join(dir, 'bin'));
  writeFileSync(bin, `#!/bin/sh\nexec "${process.execPath}" "${shim}" "$@"\n`);
  chmodSync(bin, 0o755);
  writeFileSync(
    join(dir, 'auth.json'),
    JSON.stringify({ credHelpers: { [registry.host]: 'registry-auth' } }),
  );
}, 60_000);

afterAll(async () => {
  await registry?.close();
  await ecr?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('docker-credential-registry-auth with the real skopeo and docker-registry', () => {
  const imageRef = () => `docker://${registry.host}/team/app:v1`;

  it('pulls with credentials the shim got from AWS ECR for a mapped gateway host', async () => {
    const configFile = join(dir, 'mapped.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        mappings: { [registry.host]: { provider: 'aws', region: 'eu-west-1' } },
        aws: { endpoint: ecr.url, maxAttempts: 1 },
      }),
    );
    const { stdout } = await skopeo(configFile, 'inspect', '--tls-verify=false', imageRef());
    expect(JSON.parse(stdout).Digest).toBe(image.manifestDigest);
    await skopeo(
      configFile,
      'copy',
      '--src-tls-verify=false',
      imageRef(),
      `dir:${join(dir, 'pulled')}`,
    );
    const layer = image.layerDigests[0]?.slice(7) ?? '';
    expect(readFileSync(join(dir, 'pulled', layer))).toEqual(
      readFileSync(join(image.layout, 'blobs', 'sha256', layer)),
    );
    expect(ecr.calls.length).toBeGreaterThan(0);
    expect(
      ecr.calls.every((c) => c.region === 'eu-west-1' && c.accessKeyId === KEY.accessKeyId),
    ).toBe(true);
  });

  it('is refused by the registry when the shim has no credentials for it', async () => {
    const configFile = join(dir, 'empty.json');
    writeFileSync(configFile, JSON.stringify({}));
    const err = await skopeo(configFile, 'inspect', '--tls-verify=false', imageRef()).catch(
      (e: { stderr: string }) => e,
    );
    expect((err as { stderr: string }).stderr).toMatch(/unauthorized|authentication required/i);
  });
});
