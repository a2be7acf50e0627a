import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type DockerRegistry,
  type PushedImage,
  pushImage,
  startDockerRegistry,
} from '@org/tools/stand-ins';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connectionsTo, eventually, openSockets } from './proc.js';
import { start } from './start.js';

const dir = mkdtempSync(join(tmpdir(), 'registry-proxy-disconnect-'));
let registry: DockerRegistry;
let image: PushedImage;

beforeAll(async () => {
  registry = await startDockerRegistry();
  image = await pushImage(registry, dir, 'acme/big', [
    { 'opt/big.bin': randomBytes(64 * 1024 * 1024) },
  ]);
}, 180_000);
afterAll(async () => {
  await registry?.close();
  rmSync(dir, { recursive: true, force: true });
});

it('closes the upstream connection when the client leaves mid-blob; sockets return to baseline', async () => {
  const registryPort = Number(registry.host.split(':')[1]);
  const proxy = await start([
    'serve',
    '--listen',
    '127.0.0.1:0',
    '--config',
    writeConfig(registry.url),
  ]);
  const pid = proxy.child.pid as number;
  try {
    const baseline = openSockets(pid);
    expect(connectionsTo(pid, registryPort)).toBe(0);
    const [host, port] = proxy.address.split(':');
    const layer = image.layerDigests[0] as string;
    let received = 0;
    await new Promise<void>((resolve, reject) => {
      const req = request(
        { host, port: Number(port), path: `/v2/mirror/big/blobs/${layer}` },
        (res) => {
          expect(res.statusCode).toBe(200);
          res.on('data', (c: Buffer) => {
            received += c.length;
            if (received >= 1024 * 1024 && !req.destroyed) {
              // mid-blob: the proxy is streaming from the registry right now
              expect(connectionsTo(pid, registryPort)).toBe(1);
              req.destroy();
              resolve();
            }
          });
        },
      );
      req.on('error', (err) => (req.destroyed ? resolve() : reject(err)));
      req.end();
    });
    expect(received).toBeLessThan(64 * 1024 * 1024);
    await eventually(
      () => connectionsTo(pid, registryPort) === 0,
      'the upstream connection closed',
    );
    await eventually(() => openSockets(pid) === baseline, 'the proxy back to its baseline sockets');
    await proxy.waitForLine((l) => l.route === 'blob' && l.aborted === true);
    // The registry's own access line says how much it sent: the transfer was cut short, so the
    // proxy neither read ahead (backpressure) nor kept reading after the client left.
    const line = new RegExp(`"GET /v2/acme/big/blobs/${layer} HTTP/1.1" 200 (\\d+)`);
    await eventually(() => line.test(registry.log()), 'the registry logged the blob GET');
    const sent = Number(line.exec(registry.log())?.[1]);
    const size = readFileSync(join(image.layout, 'blobs', 'sha256', layer.slice(7))).length;
    expect(sent).toBeLessThan(size / 2);
  } finally {
    await proxy.stop();
  }
});

function writeConfig(url: string): string {
  const file = join(dir, 'proxy.yaml');
  writeFileSync(
    file,
    `upstreams:\n  - { name: local, prefix: mirror, url: "${url}", repositoryPrefix: acme }\n`,
  );
  return file;
}
