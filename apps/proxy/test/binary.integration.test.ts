import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  type DockerRegistry,
  freePort,
  type OciImage,
  pushImage,
  startDockerRegistry,
} from '@org/tools/stand-ins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main, start } from './start.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'registry-proxy-bin-'));
let registry: DockerRegistry;
let image: OciImage;

beforeAll(async () => {
  registry = await startDockerRegistry();
  image = await pushImage(registry, dir, 'acme/app', [{ 'etc/motd': 'from the binary test\n' }]);
}, 60_000);
afterAll(async () => {
  await registry?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('registry-proxy (the built binary)', () => {
  it('serves a config file: skopeo pulls through it, health answers, SIGTERM stops it cleanly', async () => {
    const config = join(dir, 'proxy.yaml');
    writeFileSync(
      config,
      `upstreams:\n  - { name: local, prefix: mirror, url: "${registry.url}", repositoryPrefix: acme }\n`,
    );
    const { child, address } = await start([
      'serve',
      '--config',
      config,
      '--listen',
      '127.0.0.1:0',
    ]);
    try {
      const { stdout } = await run('skopeo', [
        'inspect',
        '--tls-verify=false',
        `docker://${address}/mirror/app:v1`,
      ]);
      expect(JSON.parse(stdout).Digest).toBe(image.manifestDigest);
      expect(await (await fetch(`http://${address}/healthz`)).text()).toBe('ok');
      expect((await fetch(`http://${address}/readyz`)).status).toBe(200);
    } finally {
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    }
  });

  it('enforces its auth section: skopeo with the right credentials pulls, others are refused', async () => {
    const htpasswd = join(dir, 'htpasswd');
    writeFileSync(
      htpasswd,
      `${execFileSync('htpasswd', ['-Bbn', 'alice', 'wonderland'], { encoding: 'utf8' })}${execFileSync('htpasswd', ['-Bbn', 'bob', 'builder'], { encoding: 'utf8' })}`,
    );
    const key = join(dir, 'key.pem');
    execFileSync('openssl', [
      'genpkey',
      '-algorithm',
      'EC',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-out',
      key,
    ]);
    const port = await freePort();
    const config = join(dir, 'auth.yaml');
    writeFileSync(
      config,
      [
        `server: { listen: "127.0.0.1:${port}", publicUrl: "http://127.0.0.1:${port}" }`,
        'auth:',
        `  signingKeyFile: ${key}`,
        `  plugins: [ { name: users, type: htpasswd, file: ${htpasswd} } ]`,
        '  policy:',
        '    - { identities: ["users:alice"], repositories: ["mirror/**"], actions: ["pull"] }',
        'upstreams:',
        `  - { name: local, prefix: mirror, url: "${registry.url}", repositoryPrefix: acme }`,
      ].join('\n'),
    );
    const { child, address } = await start(['serve', '--config', config]);
    try {
      const inspect = (...creds: string[]) =>
        run('skopeo', [
          'inspect',
          '--tls-verify=false',
          ...creds,
          `docker://${address}/mirror/app:v1`,
        ]);
      const { stdout } = await inspect('--creds', 'alice:wonderland');
      expect(JSON.parse(stdout).Digest).toBe(image.manifestDigest);
      for (const creds of [[], ['--creds', 'alice:wrong'], ['--creds', 'bob:builder']]) {
        const err = (await inspect(...creds).catch((e: unknown) => e)) as { stderr?: string };
        expect(err.stderr ?? '').toMatch(/unauthorized|denied|authentication required|401/i);
      }
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
  });

  it('refuses a bad config with one line listing every problem, exit 1', async () => {
    const config = join(dir, 'bad.yaml');
    writeFileSync(config, 'upstreams:\n  - { name: "", prefix: "", url: "ftp://x" }\nbogus: 1\n');
    const err = (await run(process.execPath, [main, 'serve', '--config', config]).catch(
      (e: unknown) => e,
    )) as { code: number; stderr: string };
    expect(err.code).toBe(1);
    expect(err.stderr.trim().split('\n')).toHaveLength(1);
    expect(err.stderr).toMatch(
      /^registry-proxy: invalid config .*upstreams\.0\.name.*upstreams\.0\.url.*bogus/,
    );
  });

  it('prints usage for --help and refuses unknown options with exit 2', async () => {
    const { stdout } = await run(process.execPath, [main, '--help']);
    expect(stdout).toMatch(/^usage: registry-proxy serve/);
    const err = (await run(process.execPath, [main, 'serve', '--nope']).catch(
      (e: unknown) => e,
    )) as { code: number; stderr: string };
    expect(err.code).toBe(2);
    expect(err.stderr).toBe('registry-proxy: unknown option "--nope"; try registry-proxy --help\n');
  });
});
