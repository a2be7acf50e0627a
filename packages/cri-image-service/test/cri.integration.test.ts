/**
 * The CRI ImageService proxy between a test client speaking as kubelet (raw `runtime.v1` bytes
 * over gRPC on a unix socket) and a real containerd 1.6 (CRI plugin, native snapshotter), which
 * pulls from a real docker-registry with htpasswd auth that only our rules hold credentials for.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { RegistryAuth } from '@org/registry-auth';
import {
  type Containerd,
  criCall as call,
  type DockerRegistry,
  protoMessage as message,
  pushImage,
  startContainerd,
  startDockerRegistry,
} from '@org/tools/stand-ins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CallContext,
  CriBackend,
  createImageServiceServer,
  type ImageBackend,
  listenUnix,
  type PullRecord,
  parseRules,
  shutdown,
  type UnaryMethod,
} from '../src/index.js';
import { fieldsOf, stringField } from '../src/wire.js';

const dir = mkdtempSync(join(tmpdir(), 'cri-proxy-'));
const UPSTREAM = { user: 'node-puller', password: 'upstream-secret-9f2' };
let registry: DockerRegistry;
let containerd: Containerd;
let server: grpc.Server;
let ours: grpc.Client;
let direct: grpc.Client;
let socket: string;
/** Every request our server handed to containerd, by method. */
const forwarded: { method: string; request: Buffer }[] = [];
const pulls: PullRecord[] = [];

/** Records what reaches containerd, then forwards it with the real backend. */
class RecordingBackend implements ImageBackend {
  constructor(readonly inner: CriBackend) {}
  unary(method: UnaryMethod, request: Buffer, context: CallContext) {
    forwarded.push({ method, request });
    return this.inner.unary(method, request, context);
  }
  streamImages(request: Buffer, context: CallContext, onMessage: (m: Buffer) => void) {
    forwarded.push({ method: 'StreamImages', request });
    return this.inner.streamImages(request, context, onMessage);
  }
  close() {
    this.inner.close();
  }
}

function failure(promise: Promise<unknown>): Promise<grpc.ServiceError> {
  return promise.then(
    () => {
      throw new Error('the call succeeded');
    },
    (err: grpc.ServiceError) => err,
  );
}

const identity = (b: Buffer) => b;
const imageSpec = (image: string) => message([[1, image]]);

beforeAll(async () => {
  registry = await startDockerRegistry({ htpasswd: UPSTREAM });
  for (const repository of ['team/app', 'team/private']) {
    await pushImage(
      registry,
      dir,
      repository,
      [{ 'etc/motd': `${repository}\n` }, { 'opt/random.bin': randomBytes(512 * 1024) }],
      { credentials: UPSTREAM },
    );
  }
  containerd = await startContainerd();
  // plain HTTP to the loopback registry; the host contacted stays the registry's own
  containerd.mirror(registry.host, registry.url);
  const rules = parseRules({
    rules: [
      {
        match: [`${registry.host}/team/app`],
        credentials: { provider: 'static', username: UPSTREAM.user, password: UPSTREAM.password },
      },
    ],
  });
  server = createImageServiceServer({
    backend: new RecordingBackend(new CriBackend(`unix://${containerd.socket}`)),
    rules,
    auth: new RegistryAuth(),
    onPull: (record) => pulls.push(record),
  });
  socket = await listenUnix(server, `unix://${join(dir, 'run', 'cri.sock')}`);
  ours = new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure());
  direct = new grpc.Client(`unix://${containerd.socket}`, grpc.credentials.createInsecure());
});

afterAll(async () => {
  ours?.close();
  direct?.close();
  if (server) await shutdown(server);
  await containerd?.close();
  await registry?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the CRI ImageService proxy in front of containerd', () => {
  it('listens on a 0660 unix socket in a directory it created', () => {
    expect(statSync(socket).mode & 0o777).toBe(0o660);
    expect(statSync(socket).isSocket()).toBe(true);
  });

  it('answers ImageFsInfo (kubelet start-up probe) as containerd does', async () => {
    // FilesystemUsage.timestamp (field 1) is the time of each answer; the rest must be equal
    const usage = (response: Buffer) =>
      fieldsOf(response).map((fs) => {
        const inner = fs.value as Buffer;
        const stamp = fieldsOf(inner).find((f) => f.field === 1);
        expect(stamp?.wireType).toBe(0);
        const rest = fieldsOf(inner).filter((f) => f.field !== 1);
        return `${fs.field}:${rest.map((f) => inner.subarray(f.start, f.end).toString('hex')).join('')}`;
      });
    const got = await call(ours, 'ImageFsInfo', Buffer.alloc(0));
    const theirs = await call(direct, 'ImageFsInfo', Buffer.alloc(0));
    expect(usage(got).length).toBeGreaterThan(0);
    expect(usage(got)).toEqual(usage(theirs));
  });

  it('pulls an image a rule matches with the rule credentials, kubelet sending none', async () => {
    const image = `${registry.host}/team/app:v1`;
    // directly, containerd has no credentials for this registry
    const refused = await failure(call(direct, 'PullImage', message([[1, imageSpec(image)]])));
    expect(refused.details).toMatch(/401 Unauthorized|unauthorized/i);
    const response = await call(ours, 'PullImage', message([[1, imageSpec(image)]]));
    const imageRef = stringField(response, 1);
    expect(imageRef).toMatch(/^sha256:[0-9a-f]{64}$/);
    const { stdout } = await containerd.ctr(['-n', 'k8s.io', 'images', 'ls', '-q']);
    expect(stdout.split('\n')).toContain(image);
    // what reached containerd: the image spec unchanged, an AuthConfig for that host only
    const sent = forwarded.filter((f) => f.method === 'PullImage').at(-1)?.request as Buffer;
    const auth = fieldsOf(sent).find((f) => f.field === 2)?.value as Buffer;
    expect(stringField(auth, 1)).toBe(UPSTREAM.user);
    expect(stringField(auth, 2)).toBe(UPSTREAM.password);
    expect(stringField(auth, 4)).toBe(`https://${registry.host}`);
    expect(pulls.at(-1)).toMatchObject({
      image,
      rule: 0,
      provider: 'static',
      injected: true,
      result: 'OK',
    });
  });

  it('returns what containerd returns for ListImages, ImageStatus and RemoveImage', async () => {
    const image = `${registry.host}/team/app:v1`;
    await call(ours, 'PullImage', message([[1, imageSpec(image)]]));
    const list = message([]);
    expect(
      (await call(ours, 'ListImages', list)).equals(await call(direct, 'ListImages', list)),
    ).toBe(true);
    const status = message([[1, imageSpec(image)]]);
    const ourStatus = await call(ours, 'ImageStatus', status);
    expect(ourStatus.equals(await call(direct, 'ImageStatus', status))).toBe(true);
    expect(ourStatus.length).toBeGreaterThan(0);
    // removal is idempotent, through us as directly
    expect((await call(ours, 'RemoveImage', status)).length).toBe(0);
    expect((await call(ours, 'RemoveImage', status)).length).toBe(0);
    expect((await call(direct, 'RemoveImage', status)).length).toBe(0);
    // an absent image: OK with no image, both ways
    expect((await call(ours, 'ImageStatus', status)).length).toBe(0);
    expect((await call(direct, 'ImageStatus', status)).length).toBe(0);
  });

  it("passes containerd's error on for a private image no rule matches", async () => {
    const image = `${registry.host}/team/private:v1`;
    const request = message([[1, imageSpec(image)]]);
    const theirs = await failure(call(direct, 'PullImage', request));
    const got = await failure(call(ours, 'PullImage', request));
    expect(got.code).toBe(theirs.code);
    expect(got.details).toMatch(/401 Unauthorized|unauthorized/i);
    expect(got.details).not.toContain(UPSTREAM.password);
    expect(pulls.at(-1)).toMatchObject({ image, rule: null, injected: false });
    expect(pulls.at(-1)?.result).toBe(grpc.status[theirs.code]);
  });

  it('keeps credentials kubelet sent when the rule does not say override', async () => {
    const image = `${registry.host}/team/app:v1`;
    const wrong = message([
      [1, 'node-puller'],
      [2, 'a wrong password'],
    ]);
    const got = await failure(
      call(
        ours,
        'PullImage',
        message([
          [1, imageSpec(image)],
          [2, wrong],
        ]),
      ),
    );
    expect(got.details).toMatch(/401 Unauthorized|unauthorized/i);
    expect(pulls.at(-1)).toMatchObject({ rule: 0, injected: false });
  });

  it('forwards fields our proto lacks byte for byte, and every other PullImage field', async () => {
    const image = `${registry.host}/team/app:v1`;
    // ImageSpec with an annotation (map entry, field 2) and runtime_handler (19); a sandbox
    // config (3) with metadata; an unknown top-level field 99
    const spec = message([
      [1, image],
      [
        2,
        message([
          [1, 'io.kubernetes.cri.example'],
          [2, 'kept'],
        ]),
      ],
      [19, ''],
    ]);
    const sandbox = message([
      [
        1,
        message([
          [1, 'pod'],
          [2, 'uid-1'],
          [3, 'ns'],
        ]),
      ],
    ]);
    const unknown = message([[99, 'from a newer kubelet']]);
    const request = Buffer.concat([
      message([
        [1, spec],
        [3, sandbox],
      ]),
      unknown,
    ]);
    await call(ours, 'PullImage', request);
    const sent = forwarded.filter((f) => f.method === 'PullImage').at(-1)?.request as Buffer;
    const without = (b: Buffer) =>
      fieldsOf(b)
        .filter((f) => f.field !== 2)
        .map((f) => b.subarray(f.start, f.end).toString('hex'));
    expect(without(sent)).toEqual(without(request));
    // a method we do not change reaches containerd exactly as sent
    const status = Buffer.concat([message([[1, imageSpec(image)]]), unknown]);
    await call(ours, 'ImageStatus', status);
    const statusSent = forwarded.filter((f) => f.method === 'ImageStatus').at(-1)?.request;
    expect(statusSent?.equals(status)).toBe(true);
  });

  it('passes StreamImages on (containerd 1.6 answers UNIMPLEMENTED; kubelet falls back)', async () => {
    const streamed = (client: grpc.Client) =>
      new Promise<grpc.ServiceError | Buffer[]>((resolve) => {
        const got: Buffer[] = [];
        const stream = client.makeServerStreamRequest(
          '/runtime.v1.ImageService/StreamImages',
          identity,
          identity,
          message([]),
        );
        stream.on('data', (m: Buffer) => got.push(m));
        stream.on('error', (err: grpc.ServiceError) => resolve(err));
        stream.on('end', () => resolve(got));
      });
    const theirs = await streamed(direct);
    const got = await streamed(ours);
    if (Array.isArray(theirs)) expect(got).toEqual(theirs);
    else expect((got as grpc.ServiceError).code).toBe(theirs.code);
  });

  it('answers the gRPC health check while containerd answers', async () => {
    const health = await new Promise<Buffer>((resolve, reject) =>
      ours.makeUnaryRequest(
        '/grpc.health.v1.Health/Check',
        identity,
        identity,
        Buffer.alloc(0),
        (err, res) => (err ? reject(err) : resolve(res as Buffer)),
      ),
    );
    expect([...health]).toEqual([0x08, 0x01]); // status: SERVING
    const other = await failure(call(ours, 'NoSuchMethod', Buffer.alloc(0)));
    expect(other.code).toBe(grpc.status.UNIMPLEMENTED);
  });
});
