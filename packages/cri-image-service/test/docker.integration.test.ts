/**
 * The ImageService on the Docker Engine API: a client speaking as kubelet, our server with
 * `DockerBackend`, a real dockerd 20.10 (vfs, no bridge, no iptables) on a real containerd, and
 * a real docker-registry with htpasswd that only the rules hold credentials for.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { RegistryAuth } from '@org/registry-auth';
import {
  type Containerd,
  criCall,
  type Dockerd,
  type DockerRegistry,
  imageSpecRequest,
  protoMessage as message,
  pushImage,
  startContainerd,
  startDockerd,
  startDockerRegistry,
} from '@org/tools/stand-ins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createImageServiceServer,
  DockerBackend,
  listenUnix,
  parseRules,
  shutdown,
} from '../src/index.js';
import { fieldsOf, messageField, stringField } from '../src/wire.js';

const dir = mkdtempSync(join(tmpdir(), 'cri-docker-'));
const UPSTREAM = { user: 'node-puller', password: 'upstream-secret-d0c' };
let registry: DockerRegistry;
let containerd: Containerd;
let dockerd: Dockerd;
let server: grpc.Server;
let ours: grpc.Client;

const identity = (b: Buffer) => b;
const call = (method: string, request: Buffer) => criCall(ours, method, request);
const spec = imageSpecRequest;
/** id, tags and size of each Image in a List/Status response. */
const images = (response: Buffer) =>
  fieldsOf(response)
    .filter((f) => f.field === 1)
    .map((f) => {
      const image = f.value as Buffer;
      const fields = fieldsOf(image);
      return {
        id: stringField(image, 1),
        tags: fields.filter((g) => g.field === 2).map((g) => g.value?.toString()),
        digests: fields.filter((g) => g.field === 3).map((g) => g.value?.toString()),
        hasSize: fields.some((g) => g.field === 4),
      };
    });

beforeAll(async () => {
  registry = await startDockerRegistry({ htpasswd: UPSTREAM });
  for (const repository of ['team/app', 'team/private']) {
    await pushImage(
      registry,
      dir,
      repository,
      [{ 'etc/motd': `${repository} via docker\n` }, { 'opt/random.bin': randomBytes(256 * 1024) }],
      { credentials: UPSTREAM },
    );
  }
  containerd = await startContainerd();
  dockerd = await startDockerd({ containerdSocket: containerd.socket });
  server = createImageServiceServer({
    backend: new DockerBackend(dockerd.host),
    rules: parseRules({
      rules: [
        {
          match: [`${registry.host}/team/app`],
          credentials: { provider: 'static', username: UPSTREAM.user, password: UPSTREAM.password },
        },
      ],
    }),
    auth: new RegistryAuth(),
  });
  const socket = await listenUnix(server, `unix://${join(dir, 'cri.sock')}`);
  ours = new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure());
});

afterAll(async () => {
  ours?.close();
  if (server) await shutdown(server);
  await dockerd?.close();
  await containerd?.close();
  await registry?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the ImageService on the Docker Engine API', () => {
  const image = () => `${registry.host}/team/app:v1`;

  it('pulls with X-Registry-Auth from the rule, and ListImages / ImageStatus show the image', async () => {
    const pulled = await call('PullImage', spec(image()));
    const imageRef = stringField(pulled, 1);
    expect(imageRef).toMatch(/^sha256:[0-9a-f]{64}$/);
    // what docker itself says
    const { stdout } = await dockerd.docker(['image', 'inspect', '--format', '{{.Id}}', image()]);
    expect(stdout.trim()).toBe(imageRef);
    const listed = images(await call('ListImages', Buffer.alloc(0)));
    expect(listed).toContainEqual(
      expect.objectContaining({ id: imageRef, tags: [image()], hasSize: true }),
    );
    expect(listed.find((i) => i.id === imageRef)?.digests[0]).toMatch(
      new RegExp(`^${registry.host}/team/app@sha256:[0-9a-f]{64}$`),
    );
    const filtered = images(await call('ListImages', message([[1, spec(image())]])));
    expect(filtered.map((i) => i.id)).toEqual([imageRef]);
    const status = images(await call('ImageStatus', spec(image())));
    expect(status).toEqual([expect.objectContaining({ id: imageRef, hasSize: true })]);
  });

  it("passes docker's error on for a private image no rule matches", async () => {
    const err = await call('PullImage', spec(`${registry.host}/team/private:v1`)).then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    );
    expect(err?.details).toMatch(/unauthorized|no basic auth credentials|denied/i);
    expect(err?.details).not.toContain(UPSTREAM.password);
  });

  it('removes every tag of an image, idempotently, and ImageStatus then has no image', async () => {
    await call('PullImage', spec(image()));
    expect((await call('RemoveImage', spec(image()))).length).toBe(0);
    expect((await call('RemoveImage', spec(image()))).length).toBe(0);
    expect((await call('ImageStatus', spec(image()))).length).toBe(0);
    const { stdout } = await dockerd.docker(['images', '-q']);
    expect(stdout.trim()).toBe('');
  });

  it('answers ImageFsInfo with docker root and StreamImages UNIMPLEMENTED', async () => {
    const fs = await call('ImageFsInfo', Buffer.alloc(0));
    const usage = messageField(fs, 1) as Buffer;
    const mountpoint = stringField(messageField(usage, 2) as Buffer, 1);
    const { stdout } = await dockerd.docker(['info', '--format', '{{.DockerRootDir}}']);
    expect(mountpoint).toBe(stdout.trim());
    expect(fieldsOf(usage).find((f) => f.field === 1)?.wireType).toBe(0);
    const code = await new Promise<number>((resolve) => {
      const stream = ours.makeServerStreamRequest(
        '/runtime.v1.ImageService/StreamImages',
        identity,
        identity,
        Buffer.alloc(0),
      );
      stream.on('error', (e: grpc.ServiceError) => resolve(e.code));
      stream.on('data', () => {});
    });
    expect(code).toBe(grpc.status.UNIMPLEMENTED);
  });
});
