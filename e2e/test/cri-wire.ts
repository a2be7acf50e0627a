import { protoMessage } from '@org/tools/stand-ins';
import protobuf from 'protobufjs/minimal.js';

/**
 * `PullImageRequest` bytes (CRI api.proto: 1 image ImageSpec, 2 auth AuthConfig) as kubelet
 * sends them: with `auth` only when its keyring found credentials, and then only `username` and
 * `password` (AuthConfig 1 and 2), which is all kubelet's keyring carries.
 */
export function pullImageRequest(
  image: string,
  auth?: { readonly username: string; readonly password: string },
): Buffer {
  const spec = protoMessage([[1, image]]);
  return auth === undefined
    ? protoMessage([[1, spec]])
    : protoMessage([
        [1, spec],
        [
          2,
          protoMessage([
            [1, auth.username],
            [2, auth.password],
          ]),
        ],
      ]);
}

/** Every length-delimited value of field `field` in a protobuf message, in order. */
export function bytesFields(message: Buffer, field: number): Buffer[] {
  const reader = protobuf.Reader.create(message);
  const found: Buffer[] = [];
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if ((tag & 7) === 2 && tag >>> 3 === field) found.push(Buffer.from(reader.bytes()));
    else reader.skipType(tag & 7);
  }
  return found;
}

/** The strings of field `field` (a `string` or `repeated string` field). */
export function stringFields(message: Buffer, field: number): string[] {
  return bytesFields(message, field).map((b) => b.toString('utf8'));
}
