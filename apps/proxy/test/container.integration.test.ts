/**
 * The image: built from apps/proxy/Dockerfile with the context scripts/container-context.mjs
 * makes, by a real dockerd (no network: the Dockerfile's base image is stood in for under its
 * own name by a rootfs holding this Node), then run read-only as an arbitrary non-root user;
 * skopeo pulls from a real docker-registry through the container, and `docker stop` ends it
 * with exit code 0.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  type Containerd,
  type Dockerd,
  type DockerRegistry,
  freePort,
  type PushedImage,
  pushImage,
  startContainerd,
  startDockerd,
  startDockerRegistry,
  writeNodeRootfs,
} from '@org/tools/stand-ins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const appDir = join(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'registry-proxy-container-'));
const TAG = 'registry-proxy:test';
let registry: DockerRegistry | undefined;
let image: PushedImage;
let containerd: Containerd | undefined;
let dockerd: Dockerd | undefined;
let built = false;

/** The base image the Dockerfile names (its NODE_IMAGE default), which the test stands in for. */
function baseImage(): string {
  const dockerfile = readFileSync(join(appDir, 'Dockerfile'), 'utf8');
  const name = /^ARG NODE_IMAGE=(\S+)$/m.exec(dockerfile)?.[1];
  if (!name) throw new Error('apps/proxy/Dockerfile has no `ARG NODE_IMAGE=<image>`');
  return name;
}

beforeAll(async () => {
  registry = await startDockerRegistry();
  image = await pushImage(registry, dir, 'acme/app', [
    { 'etc/motd': 'through the container\n' },
    { 'opt/random.bin': randomBytes(4 * 1024 * 1024) },
  ]);
  containerd = await startContainerd();
  dockerd = await startDockerd({ containerdSocket: containerd.socket });
}, 300_000);

afterAll(async () => {
  await dockerd?.close();
  await containerd?.close();
  await registry?.close();
  rmSync(dir, { recursive: true, force: true });
}, 120_000);

describe('the registry-proxy image (real dockerd: build, run, stop)', () => {
  it('builds from the deploy context with no network, as a non-root user', async () => {
    const docker = dockerd?.docker ?? expect.unreachable('dockerd did not start');
    await docker([
      'import',
      '--change',
      'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      '--change',
      'CMD ["node"]',
      writeNodeRootfs(dir),
      baseImage(),
    ]);
    const context = join(dir, 'context');
    await run(process.execPath, [join(appDir, 'scripts', 'container-context.mjs'), context]);
    // no bridge network in the test dockerd: RUN steps use the host's
    await docker([
      'build',
      '--network',
      'host',
      '--build-arg',
      'REVISION=test',
      '-t',
      TAG,
      context,
    ]);
    built = true;

    const { stdout } = await docker(['image', 'inspect', '--format', '{{json .Config}}', TAG]);
    const config = JSON.parse(stdout) as {
      User: string;
      Entrypoint: string[];
      Cmd: string[];
      ExposedPorts: Record<string, unknown>;
      Labels: Record<string, string>;
    };
    expect(config.User).toBe('1000:1000');
    expect(config.Entrypoint).toEqual(['node', '/app/dist/main.js']);
    expect(config.Cmd).toEqual(['serve', '--config', '/etc/registry-proxy/config.yaml']);
    expect(Object.keys(config.ExposedPorts)).toEqual(['5000/tcp']);
    expect(config.Labels).toMatchObject({
      'org.opencontainers.image.title': 'registry-proxy',
      'org.opencontainers.image.licenses': 'Apache-2.0',
      'org.opencontainers.image.revision': 'test',
    });
  }, 600_000);

  it('serves skopeo from a read-only container as another uid, and stops with 0 on SIGTERM', async () => {
    if (!built) expect.unreachable('the image was not built');
    const docker = dockerd?.docker ?? expect.unreachable('dockerd did not start');
    const port = await freePort();
    const config = join(dir, 'config.yaml');
    writeFileSync(
      config,
      `upstreams:\n  - { name: local, prefix: mirror, url: "${registry?.url}", repositoryPrefix: acme }\n`,
    );
    const { stdout: id } = await docker([
      'run',
      '-d',
      '--network',
      'host',
      '--read-only',
      '--user',
      '65532:65532',
      '-v',
      `${config}:/etc/registry-proxy/config.yaml:ro`,
      TAG,
      'serve',
      '--config',
      '/etc/registry-proxy/config.yaml',
      '--listen',
      `127.0.0.1:${port}`,
    ]);
    const container = id.trim();
    try {
      await waitReady(docker, container, `http://127.0.0.1:${port}/readyz`);
      const address = `127.0.0.1:${port}`;
      const inspected = await run('skopeo', [
        'inspect',
        '--tls-verify=false',
        `docker://${address}/mirror/app:v1`,
      ]);
      expect(JSON.parse(inspected.stdout).Digest).toBe(image.manifestDigest);
      const out = join(dir, 'pulled');
      await run('skopeo', [
        'copy',
        '--src-tls-verify=false',
        `docker://${address}/mirror/app:v1`,
        `dir:${out}`,
      ]);
      const manifest = readFileSync(join(out, 'manifest.json'));
      expect(`sha256:${createHash('sha256').update(manifest).digest('hex')}`).toBe(
        image.manifestDigest,
      );
      for (const digest of image.layerDigests) {
        const hex = digest.slice(7);
        expect(
          readFileSync(join(out, hex)).equals(
            readFileSync(join(image.layout, 'blobs', 'sha256', hex)),
          ),
        ).toBe(true);
      }

      await docker(['stop', '--time', '30', container]);
      const state = await docker(['inspect', '--format', '{{json .State}}', container]);
      expect(JSON.parse(state.stdout)).toMatchObject({ Running: false, ExitCode: 0 });
      const logs = await docker(['logs', container]);
      expect(logs.stdout).toMatch(/"msg":"shutting down","signal":"SIGTERM"/);
    } finally {
      await docker(['rm', '--force', container]).catch(() => undefined);
    }
  }, 300_000);
});

/** Polls the container's /readyz; prints its logs when it exits or never answers. */
async function waitReady(docker: Dockerd['docker'], container: string, url: string) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const res = await fetch(url).catch(() => undefined);
    await res?.body?.cancel();
    if (res?.status === 200) return;
    const { stdout } = await docker(['inspect', '--format', '{{.State.Running}}', container]);
    if (stdout.trim() !== 'true' || Date.now() > deadline) {
      const logs = await docker(['logs', container]).catch((e: unknown) => ({
        stdout: '',
        stderr: String(e),
      }));
      throw new Error(
        `the container did not become ready at ${url}:\n${logs.stdout}${logs.stderr}`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
