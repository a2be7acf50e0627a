import { request } from 'node:http';
import { status } from '@grpc/grpc-js';
import protobuf from 'protobufjs/minimal.js';
import {
  type CallContext,
  CallError,
  type ImageBackend,
  socketPath,
  type UnaryMethod,
} from './image-service.js';
import { messageField, specImage, stringField, WireError } from './wire.js';

const { Writer } = protobuf;

/** Docker answers we read whole (JSON documents, not the pull's progress stream). */
const ANSWER_MAX = 32 * 1024 * 1024;

interface DockerImage {
  Id: string;
  RepoTags?: string[] | null;
  RepoDigests?: string[] | null;
  Size: number;
  Config?: { User?: string } | null;
}

/**
 * The ImageService methods kubelet calls, on the Docker Engine API (`/var/run/docker.sock`), for
 * nodes still on cri-dockerd or Docker: ListImages, ImageStatus, PullImage (credentials as
 * `X-Registry-Auth`), RemoveImage, ImageFsInfo. Requests are decoded and answers encoded at the
 * protobuf wire level (cri-api field numbers); StreamImages is UNIMPLEMENTED, so kubelet uses
 * ListImages. Images map as cri-dockerd maps them: `id` is the image ID, `<none>` tags and
 * digests are left out, a numeric `Config.User` is the uid, anything else the username.
 */
export class DockerBackend implements ImageBackend {
  readonly #socket: string;

  constructor(endpoint: string) {
    this.#socket = socketPath(endpoint);
  }

  async unary(method: UnaryMethod, req: Buffer, context: CallContext): Promise<Buffer> {
    try {
      switch (method) {
        case 'ListImages':
          return await this.#list(req, context);
        case 'ImageStatus':
          return await this.#status(req, context);
        case 'PullImage':
          return await this.#pull(req, context);
        case 'RemoveImage':
          return await this.#remove(req, context);
        case 'ImageFsInfo':
          return await this.#fsInfo(context);
      }
    } catch (err) {
      if (err instanceof WireError)
        throw new CallError(status.INVALID_ARGUMENT, `${method}Request: ${err.message}`);
      throw err;
    }
  }

  streamImages(): Promise<void> {
    return Promise.reject(
      new CallError(status.UNIMPLEMENTED, 'StreamImages is not served by the docker backend'),
    );
  }

  close(): void {}

  async #list(req: Buffer, context: CallContext): Promise<Buffer> {
    const filter = messageField(req, 1);
    const image = filter === undefined ? undefined : specImage(filter);
    const query =
      image === undefined || image === ''
        ? ''
        : `?filters=${encodeURIComponent(JSON.stringify({ reference: [image] }))}`;
    const images = (await this.#json('GET', `/images/json${query}`, context)) as DockerImage[];
    const writer = Writer.create();
    for (const found of images) writer.uint32((1 << 3) | 2).bytes(encodeImage(found));
    return Buffer.from(writer.finish());
  }

  async #status(req: Buffer, context: CallContext): Promise<Buffer> {
    const image = imageOf(req);
    const found = await this.#inspect(image, context);
    if (found === undefined) return Buffer.alloc(0); // absent: OK with no image
    const writer = Writer.create();
    writer.uint32((1 << 3) | 2).bytes(encodeImage(found));
    return Buffer.from(writer.finish());
  }

  async #pull(req: Buffer, context: CallContext): Promise<Buffer> {
    const image = imageOf(req);
    const auth = messageField(req, 2);
    const headers: Record<string, string> = {};
    if (auth !== undefined && auth.length > 0) {
      let username = stringField(auth, 1) ?? '';
      let password = stringField(auth, 2) ?? '';
      const basic = stringField(auth, 3);
      if (username === '' && basic) {
        const decoded = Buffer.from(basic, 'base64').toString('utf8');
        const colon = decoded.indexOf(':');
        if (colon > 0) {
          username = decoded.slice(0, colon);
          password = decoded.slice(colon + 1);
        }
      }
      const identityToken = stringField(auth, 5) ?? '';
      const entry = {
        ...(username === '' ? {} : { username, password }),
        ...(identityToken === '' ? {} : { identitytoken: identityToken }),
        serveraddress: serverHost(stringField(auth, 4) ?? ''),
      };
      headers['x-registry-auth'] = Buffer.from(JSON.stringify(entry)).toString('base64url');
    }
    // The pull's answer is a stream of JSON progress objects; a failure midway is one of them.
    await this.#call(
      'POST',
      `/images/create?fromImage=${encodeURIComponent(image)}`,
      context,
      headers,
      (line) => {
        let event: { error?: string; errorDetail?: { message?: string } };
        try {
          event = JSON.parse(line);
        } catch {
          return;
        }
        if (event.error !== undefined || event.errorDetail !== undefined)
          throw new CallError(
            status.UNKNOWN,
            event.errorDetail?.message ?? event.error ?? 'pull failed',
          );
      },
    );
    const pulled = await this.#inspect(image, context);
    if (pulled === undefined)
      throw new CallError(status.INTERNAL, `docker pulled ${image} but does not have it`);
    const writer = Writer.create();
    writer.uint32((1 << 3) | 2).string(pulled.Id);
    return Buffer.from(writer.finish());
  }

  async #remove(req: Buffer, context: CallContext): Promise<Buffer> {
    const found = await this.#inspect(imageOf(req), context);
    if (found === undefined) return Buffer.alloc(0); // already gone: removal is idempotent
    // Like cri-dockerd: every tag of the image goes, then the image itself.
    for (const name of [...(found.RepoTags ?? []), found.Id]) {
      await this.#json('DELETE', `/images/${encodeURIComponent(name)}`, context).catch(
        (err: unknown) => {
          if (!(err instanceof CallError && err.code === status.NOT_FOUND)) throw err;
        },
      );
    }
    return Buffer.alloc(0);
  }

  async #fsInfo(context: CallContext): Promise<Buffer> {
    const info = (await this.#json('GET', '/info', context)) as { DockerRootDir?: string };
    const df = (await this.#json('GET', '/system/df', context)) as { LayersSize?: number };
    const root = info.DockerRootDir ?? '/var/lib/docker';
    const usage = Writer.create();
    usage.uint32(1 << 3).int64(Date.now() * 1_000_000);
    usage.uint32((2 << 3) | 2).bytes(
      Writer.create()
        .uint32((1 << 3) | 2)
        .string(root)
        .finish(),
    );
    usage.uint32((3 << 3) | 2).bytes(
      Writer.create()
        .uint32(1 << 3)
        .uint64(Math.max(0, df.LayersSize ?? 0))
        .finish(),
    );
    const writer = Writer.create();
    writer.uint32((1 << 3) | 2).bytes(usage.finish());
    return Buffer.from(writer.finish());
  }

  async #inspect(image: string, context: CallContext): Promise<DockerImage | undefined> {
    try {
      return (await this.#json(
        'GET',
        `/images/${encodeURIComponent(image)}/json`,
        context,
      )) as DockerImage;
    } catch (err) {
      if (err instanceof CallError && err.code === status.NOT_FOUND) return undefined;
      throw err;
    }
  }

  async #json(method: string, path: string, context: CallContext): Promise<unknown> {
    const body = await this.#call(method, path, context, {});
    return body === '' ? undefined : JSON.parse(body);
  }

  /**
   * One Engine API call on the socket. Non-2xx answers become CallErrors with Docker's message;
   * `onLine` sees each line of a streamed answer as it arrives (and may throw to fail the call).
   */
  #call(
    method: string,
    path: string,
    context: CallContext,
    headers: Record<string, string>,
    onLine?: (line: string) => void,
  ): Promise<string> {
    return new Promise((resolve, reject) => {
      const req = request(
        { socketPath: this.#socket, method, path, headers: { host: 'docker', ...headers } },
        (res) => {
          let text = '';
          let pending = '';
          let size = 0;
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            if (onLine !== undefined && (res.statusCode ?? 500) < 300) {
              pending += chunk;
              const parts = pending.split('\n');
              pending = parts.pop() ?? '';
              try {
                for (const line of parts) if (line.trim() !== '') onLine(line);
              } catch (err) {
                req.destroy();
                reject(err);
              }
              return;
            }
            size += chunk.length;
            if (size > ANSWER_MAX) {
              req.destroy();
              reject(new CallError(status.INTERNAL, `docker answered ${path} with too much`));
              return;
            }
            text += chunk;
          });
          res.on('end', () => {
            const code = res.statusCode ?? 500;
            if (code < 300) {
              try {
                if (onLine !== undefined && pending.trim() !== '') onLine(pending);
              } catch (err) {
                reject(err);
                return;
              }
              resolve(text);
              return;
            }
            let message = text.trim();
            try {
              message = (JSON.parse(text) as { message?: string }).message ?? message;
            } catch {
              // a plain-text error
            }
            reject(new CallError(grpcStatusOf(code), message || `docker answered ${code}`));
          });
          res.on('error', (err) => reject(err));
        },
      );
      const cancel = () => req.destroy(new CallError(status.CANCELLED, 'cancelled'));
      context.signal.addEventListener('abort', cancel, { once: true });
      req.on('close', () => context.signal.removeEventListener('abort', cancel));
      req.on('error', (err) => {
        if (err instanceof CallError) reject(err);
        else
          reject(
            new CallError(
              status.UNAVAILABLE,
              `docker at ${this.#socket}: ${(err as NodeJS.ErrnoException).code ?? err.message}`,
            ),
          );
      });
      req.end();
    });
  }
}

function grpcStatusOf(httpStatus: number): status {
  if (httpStatus === 400) return status.INVALID_ARGUMENT;
  if (httpStatus === 401) return status.UNAUTHENTICATED;
  if (httpStatus === 403) return status.PERMISSION_DENIED;
  if (httpStatus === 404) return status.NOT_FOUND;
  if (httpStatus === 409) return status.FAILED_PRECONDITION;
  return status.UNKNOWN;
}

/** `ImageSpec.image` of a request whose field 1 is the ImageSpec. */
function imageOf(req: Buffer): string {
  const image = specImage(req);
  if (image === undefined || image === '')
    throw new CallError(status.INVALID_ARGUMENT, 'the request names no image');
  return image;
}

/** Docker wants the registry host in `serveraddress`; CRI's field may be a URL. */
function serverHost(address: string): string {
  if (address === '') return '';
  try {
    return new URL(address.includes('://') ? address : `https://${address}`).host;
  } catch {
    return address;
  }
}

function encodeImage(image: DockerImage): Uint8Array {
  const writer = Writer.create();
  writer.uint32((1 << 3) | 2).string(image.Id);
  for (const tag of image.RepoTags ?? []) {
    if (tag !== '<none>:<none>') writer.uint32((2 << 3) | 2).string(tag);
  }
  for (const digest of image.RepoDigests ?? []) {
    if (digest !== '<none>@<none>') writer.uint32((3 << 3) | 2).string(digest);
  }
  writer.uint32(4 << 3).uint64(Math.max(1, image.Size));
  const user = (image.Config?.User ?? '').split(':')[0] ?? '';
  if (/^\d+$/.test(user)) {
    writer.uint32((5 << 3) | 2).bytes(
      Writer.create()
        .uint32(1 << 3)
        .int64(Number(user))
        .finish(),
    );
  } else if (user !== '') {
    writer.uint32((6 << 3) | 2).string(user);
  }
  return writer.finish();
}
