import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RegistryTokenServer } from './registry-token.js';

export interface DockerRegistry {
  /** `127.0.0.1:PORT` */
  readonly host: string;
  readonly url: string;
  /** What the registry printed, for failure messages. */
  log(): string;
  close(): Promise<void>;
}

/** A loopback port nothing listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/**
 * The real distribution registry (Debian `docker-registry`, 2.8) on 127.0.0.1 with filesystem
 * storage in a temp dir; with `htpasswd`, Basic auth through a bcrypt file made by the real
 * `htpasswd -B`; with `token`, distribution's token auth trusting that token server's certificate
 * (the way Docker Hub's registry trusts its auth service).
 */
export async function startDockerRegistry(
  options: {
    htpasswd?: { user: string; password: string };
    token?: Pick<RegistryTokenServer, 'realm' | 'service' | 'issuer' | 'certFile'>;
  } = {},
): Promise<DockerRegistry> {
  const dir = mkdtempSync(join(tmpdir(), 'docker-registry-'));
  const port = await freePort();
  const lines = [
    'version: 0.1',
    'log: { level: info, formatter: text }',
    `storage: { filesystem: { rootdirectory: ${join(dir, 'data')} }, delete: { enabled: true } }`,
    `http: { addr: "127.0.0.1:${port}" }`,
  ];
  if (options.htpasswd) {
    const file = join(dir, 'htpasswd');
    const line = execFileSync(
      'htpasswd',
      ['-Bbn', options.htpasswd.user, options.htpasswd.password],
      { encoding: 'utf8' },
    );
    writeFileSync(file, line);
    lines.push(`auth: { htpasswd: { realm: stand-in, path: ${file} } }`);
  }
  if (options.token) {
    const { realm, service, issuer, certFile } = options.token;
    lines.push(
      `auth: { token: { realm: "${realm}", service: "${service}", issuer: "${issuer}", rootcertbundle: ${certFile} } }`,
    );
  }
  writeFileSync(join(dir, 'config.yml'), `${lines.join('\n')}\n`);
  const child = spawn('docker-registry', ['serve', join(dir, 'config.yml')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(`docker-registry exited ${child.exitCode}:\n${output}`);
    try {
      const res = await fetch(`${url}/v2/`);
      await res.body?.cancel();
      if (res.status === 200 || res.status === 401) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`docker-registry did not start on ${port}:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    host: `127.0.0.1:${port}`,
    url,
    log: () => output,
    close: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
