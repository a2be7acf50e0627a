import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { startGceMetadata } from '@org/tools/stand-ins';
import { afterAll, expect, it } from 'vitest';

const run = promisify(execFile);
const packages = join(import.meta.dirname, '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'registry-auth-pack-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('packs, installs with npm into a fresh project, imports from plain ESM and gets credentials', async () => {
  const env = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH}` };
  for (const name of ['registry-domains', 'cloud-credentials', 'registry-auth']) {
    await run('pnpm', ['pack', '--pack-destination', join(dir, 'tarballs')], {
      cwd: join(packages, name),
      env,
    });
  }
  const tarballs = readdirSync(join(dir, 'tarballs')).map((f) => join(dir, 'tarballs', f));
  expect(tarballs).toHaveLength(3);

  const project = join(dir, 'consumer');
  await run('mkdir', ['-p', project]);
  writeFileSync(
    join(project, 'package.json'),
    JSON.stringify({ name: 'consumer', private: true, type: 'module' }),
  );
  await run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', ...tarballs], {
    cwd: project,
    env,
    timeout: 240_000,
  });

  const installed = JSON.parse(
    readFileSync(join(project, 'node_modules', '@org', 'registry-auth', 'package.json'), 'utf8'),
  ) as { dependencies: Record<string, string> };
  expect(Object.values(installed.dependencies).some((v) => v.startsWith('workspace:'))).toBe(false);

  writeFileSync(
    join(project, 'use.mjs'),
    [
      "import { getRegistryCredentials, parseImageReference } from '@org/registry-auth';",
      "const ref = parseImageReference('europe-docker.pkg.dev/acme/images/app:v1');",
      "const creds = await getRegistryCredentials(ref.toString(), { provider: 'auto' });",
      'console.log(JSON.stringify({ registry: creds.registry, username: creds.username, password: creds.password }));',
    ].join('\n'),
  );
  const metadata = await startGceMetadata();
  try {
    const { stdout } = await run(process.execPath, ['use.mjs'], {
      cwd: project,
      env: {
        PATH: env.PATH,
        HOME: dir,
        GCE_METADATA_HOST: metadata.host,
        CLOUDSDK_CONFIG: join(dir, 'gcloud'),
      },
    });
    expect(JSON.parse(stdout)).toEqual({
      registry: 'europe-docker.pkg.dev',
      username: 'oauth2accesstoken',
      password: 'ya29.stand-in-1',
    });
  } finally {
    await metadata.close();
  }

  const { stdout: list } = await run(
    join(project, 'node_modules', '.bin', 'docker-credential-registry-auth'),
    ['list'],
    { env },
  );
  expect(list.trim()).toBe('{}');
}, 300_000);
