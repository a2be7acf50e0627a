import type * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs/minimal.js';

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
