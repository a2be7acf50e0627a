import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs/minimal.js';
import { type Layers, writeOciImage } from './oci-image.js';
import type { DockerRegistry } from './registry.js';

const run = promisify(execFile);

/**
 * A protobuf message of length-delimited fields, `[number, bytes | string]` in order: enough to
 * write the CRI requests kubelet sends (ImageSpec, AuthConfig, PullImageRequest, ...) by field
 * number, including fields no proto knows.
 */
export function protoMessage(fields: ReadonlyArray<readonly [number, Buffer | string]>): Buffer {
  const writer = protobuf.Writer.create();
  for (const [field, value] of fields) {
    writer.uint32((field << 3) | 2);
    if (typeof value === 'string') writer.string(value);
    else writer.bytes(value);
  }
  return Buffer.from(writer.finish());
}

/** `{ image: { image } }`: the request shape of PullImage, ImageStatus and RemoveImage. */
export function imageSpecRequest(image: string): Buffer {
  return protoMessage([[1, protoMessage([[1, image]])]]);
}

const identity = (b: Buffer) => b;

/** One unary `runtime.v1.ImageService` call with raw request and response bytes, as kubelet's. */
export function criCall(client: grpc.Client, method: string, request: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(
      `/runtime.v1.ImageService/${method}`,
      identity,
      identity,
      request,
      (err, response) => (err ? reject(err) : resolve(response as Buffer)),
    ),
  );
}

/**
 * Writes an OCI image of `layers` under `dir` and pushes it with the real skopeo to
 * `<registry>/<repository>:<tag>` (with `credentials` when the registry wants them). Returns
 * the pushed reference without a scheme.
 */
export async function pushImage(
  registry: DockerRegistry,
  dir: string,
  repository: string,
  layers: Layers,
  options: { tag?: string; credentials?: { user: string; password: string } } = {},
): Promise<string> {
  const tag = options.tag ?? 'v1';
  const built = writeOciImage(join(dir, `${repository.replaceAll('/', '-')}-${tag}`), tag, layers);
  const ref = `${registry.host}/${repository}:${tag}`;
  await run('skopeo', [
    'copy',
    '--dest-tls-verify=false',
    ...(options.credentials
      ? ['--dest-creds', `${options.credentials.user}:${options.credentials.password}`]
      : []),
    built.ref,
    `docker://${ref}`,
  ]);
  return ref;
}
