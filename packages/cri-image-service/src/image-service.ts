import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { RegistryAuth } from '@org/registry-auth';
import { registryHostOf } from '@org/registry-domains';
import { type Rule, ruleFor } from './rules.js';
import {
  encodeStrings,
  messageField,
  replaceMessageField,
  specImage,
  stringField,
  varintField,
  WireError,
} from './wire.js';

/** The CRI service kubelet calls on its image endpoint (v1 only: kubelet >= 1.26 needs no other). */
export const IMAGE_SERVICE = 'runtime.v1.ImageService';
/** kubelet's client limit for CRI messages, both ways. */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
export const UNARY_METHODS = [
  'ListImages',
  'ImageStatus',
  'PullImage',
  'RemoveImage',
  'ImageFsInfo',
] as const;
export type UnaryMethod = (typeof UNARY_METHODS)[number];

/** A gRPC error to hand back to kubelet as it is: code and message. */
export class CallError extends Error {
  override readonly name = 'CallError';
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

/** What one call may take: kubelet's deadline (none for PullImage) and its cancellation. */
export interface CallContext {
  readonly deadline: grpc.Deadline;
  readonly signal: AbortSignal;
}

/**
 * Where ImageService calls go: the node's runtime over CRI (raw bytes), or the Docker Engine
 * API. Requests and responses are serialized `runtime.v1` messages.
 *
 * @throws CallError for anything kubelet should see as a gRPC status.
 */
export interface ImageBackend {
  unary(method: UnaryMethod, request: Buffer, context: CallContext): Promise<Buffer>;
  /** `StreamImages` (cri-api 0.36); a backend without it answers UNIMPLEMENTED. */
  streamImages(
    request: Buffer,
    context: CallContext,
    onMessage: (message: Buffer) => void,
  ): Promise<void>;
  close(): void;
}

const identity = (b: Buffer) => b;
function rawMethod(
  service: string,
  name: string,
  responseStream: boolean,
): grpc.MethodDefinition<Buffer, Buffer> {
  return {
    path: `/${service}/${name}`,
    requestStream: false,
    responseStream,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  };
}

function asCallError(err: unknown): CallError {
  if (err instanceof CallError) return err;
  const e = err as Partial<grpc.ServiceError>;
  if (typeof e.code === 'number')
    return new CallError(e.code, e.details ?? e.message ?? 'backend error');
  return new CallError(grpc.status.INTERNAL, (err as Error)?.message ?? String(err));
}

/** Options of {@link CriBackend}. */
export interface CriBackendOptions {
  /**
   * How long a call waits for the connection to the runtime to be (re)established before it is
   * answered UNAVAILABLE, when the caller's deadline is not sooner. Default 2000 ms: longer than
   * the reconnect back-off (at most 1 s), so the first call after the runtime is back succeeds.
   * It bounds connecting only, never a call the runtime has accepted.
   */
  readonly connectWaitMs?: number;
  /**
   * Extra grpc-js channel options for the connection to the runtime (tests shrink the idle
   * timeout with them). Keepalive stays off by default: containerd's and CRI-O's gRPC servers
   * close a connection that pings more often than every 5 minutes (`too_many_pings`), which
   * would kill a long pull.
   */
  readonly channelOptions?: grpc.ChannelOptions;
}

const deadlineMs = (deadline: grpc.Deadline): number =>
  deadline instanceof Date ? deadline.getTime() : deadline;

/**
 * Forwards ImageService calls to a CRI runtime (containerd, CRI-O) on `endpoint` as raw bytes:
 * nothing is decoded, so fields newer than any proto we know reach the runtime unchanged, and
 * the runtime's answers and errors come back as they are.
 *
 * No deadline of our own: a call has the caller's deadline (kubelet sets none on PullImage) and
 * ends when the caller cancels. While the runtime's socket is gone a call waits up to
 * `connectWaitMs` for it and then fails UNAVAILABLE; the reconnect back-off is capped at 1 s
 * (grpc-js's default grows to 120 s), so a restarted runtime is used by the next call.
 */
export class CriBackend implements ImageBackend {
  readonly #client: grpc.Client;
  readonly #endpoint: string;
  readonly #connectWaitMs: number;

  constructor(endpoint: string, options: CriBackendOptions = {}) {
    const { connectWaitMs = 2000 } = options;
    if (!Number.isFinite(connectWaitMs) || connectWaitMs < 0)
      throw new TypeError('connectWaitMs: a number of milliseconds >= 0');
    this.#endpoint = endpoint;
    this.#connectWaitMs = connectWaitMs;
    this.#client = new grpc.Client(endpoint, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
      'grpc.default_authority': 'localhost',
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
      ...options.channelOptions,
    });
  }

  /**
   * Resolves once the connection is READY, or after the connect wait (the call then fails
   * UNAVAILABLE with grpc-js's reason); rejects when the runtime accepted the connection but
   * never completed the HTTP/2 handshake, or the caller cancelled meanwhile.
   */
  async #connected(context: CallContext): Promise<void> {
    const channel = this.#client.getChannel();
    if (context.signal.aborted)
      throw new CallError(grpc.status.CANCELLED, 'cancelled by the caller');
    if (channel.getConnectivityState(true) === grpc.connectivityState.READY) return;
    const until = Math.min(deadlineMs(context.deadline), Date.now() + this.#connectWaitMs);
    await new Promise<void>((resolve) => this.#client.waitForReady(until, () => resolve()));
    // kubelet gave up meanwhile (or while we fetched credentials): the runtime never sees it
    if (context.signal.aborted)
      throw new CallError(grpc.status.CANCELLED, 'cancelled by the caller');
    if (channel.getConnectivityState(false) === grpc.connectivityState.CONNECTING)
      throw new CallError(
        grpc.status.UNAVAILABLE,
        `the runtime at ${this.#endpoint} accepted the connection but did not answer the HTTP/2 handshake`,
      );
  }

  unary(method: UnaryMethod, request: Buffer, context: CallContext): Promise<Buffer> {
    const definition = rawMethod(IMAGE_SERVICE, method, false);
    return this.#connected(context).then(
      () =>
        new Promise((resolve, reject) => {
          const call = this.#client.makeUnaryRequest(
            definition.path,
            identity,
            identity,
            request,
            new grpc.Metadata(),
            { deadline: context.deadline },
            (err, response) => {
              context.signal.removeEventListener('abort', cancel);
              if (err) reject(asCallError(err));
              else resolve(response as Buffer);
            },
          );
          const cancel = () => call.cancel();
          context.signal.addEventListener('abort', cancel, { once: true });
        }),
    );
  }

  streamImages(
    request: Buffer,
    context: CallContext,
    onMessage: (message: Buffer) => void,
  ): Promise<void> {
    return this.#connected(context).then(
      () =>
        new Promise((resolve, reject) => {
          const call = this.#client.makeServerStreamRequest(
            `/${IMAGE_SERVICE}/StreamImages`,
            identity,
            identity,
            request,
            new grpc.Metadata(),
            { deadline: context.deadline },
          );
          const cancel = () => call.cancel();
          context.signal.addEventListener('abort', cancel, { once: true });
          call.on('data', (message: Buffer) => onMessage(message));
          call.on('error', (err) => {
            context.signal.removeEventListener('abort', cancel);
            reject(asCallError(err));
          });
          call.on('end', () => {
            context.signal.removeEventListener('abort', cancel);
            resolve();
          });
        }),
    );
  }

  close(): void {
    this.#client.close();
  }
}

/** One pull, as logged and counted. */
export interface PullRecord {
  readonly image: string;
  /** Index of the rule that matched, or null. */
  readonly rule: number | null;
  readonly provider: string | null;
  /** Whether we set the request's credentials. */
  readonly injected: boolean;
  /** `OK` or the gRPC status name. */
  readonly result: string;
  readonly durationMs: number;
}

export interface ImageServiceOptions {
  readonly backend: ImageBackend;
  readonly rules: readonly Rule[];
  readonly auth: RegistryAuth;
  /** Called once per PullImage, after it ends. */
  readonly onPull?: (record: PullRecord) => void;
  /** Called once per forwarded call with its method, status name and seconds. */
  readonly onCall?: (method: string, result: string, seconds: number) => void;
  /** Called once per credential fetch with the provider and `ok` / `error`. */
  readonly onCredentials?: (provider: string, result: 'ok' | 'error') => void;
  /**
   * Extra grpc-js server options (tests turn keepalive pings on with them). By default the
   * server sets no deadline, idle or age limit and sends no keepalive pings: a call lasts as long
   * as kubelet's own deadline allows.
   */
  readonly serverOptions?: grpc.ServerOptions;
}

const statusName = (code: grpc.status): string => grpc.status[code] ?? String(code);

/**
 * A PullImage request with credentials set from the first rule matching its image, when kubelet
 * sent none (or the rule says `override`). Everything else in the request (sandbox config,
 * annotations, runtime handler, fields we do not know) is kept byte for byte.
 */
export async function injectCredentials(
  request: Buffer,
  rules: readonly Rule[],
  auth: RegistryAuth,
  onCredentials?: ImageServiceOptions['onCredentials'],
): Promise<{
  request: Buffer;
  image: string;
  rule: number | null;
  provider: string | null;
  injected: boolean;
}> {
  let image: string | undefined;
  let sentAuth: Buffer | undefined;
  try {
    image = specImage(request);
    sentAuth = messageField(request, 2);
  } catch (err) {
    if (err instanceof WireError)
      throw new CallError(grpc.status.INVALID_ARGUMENT, `PullImageRequest: ${err.message}`);
    throw err;
  }
  const unchanged = { request, image: image ?? '', injected: false };
  if (image === undefined || image === '') return { ...unchanged, rule: null, provider: null };
  const found = ruleFor(rules, image);
  if (found === undefined) return { ...unchanged, rule: null, provider: null };
  const { rule, index } = found;
  const provider = rule.credentials.provider;
  if (sentAuth !== undefined && sentAuth.length > 0 && !rule.override)
    return { ...unchanged, rule: index, provider };
  const registry = registryHostOf(image);
  const { credentials } = rule;
  if (credentials.provider === 'service-account-token')
    throw new CallError(
      grpc.status.FAILED_PRECONDITION,
      `kubelet-image-service: rule ${index} (service-account-token) works only as a credential provider: kubelet hands pod tokens to exec plugins, never to the image service`,
    );
  let creds: Awaited<ReturnType<RegistryAuth['getCredentials']>>;
  try {
    creds = await auth.getCredentials(image, credentials);
    onCredentials?.(provider, 'ok');
  } catch (err) {
    onCredentials?.(provider, 'error');
    throw new CallError(
      grpc.status.UNAUTHENTICATED,
      `kubelet-image-service: rule ${index} (${provider}) has no credentials for ${registry}: ${(err as Error).message.split('\n')[0]}`,
    );
  }
  // containerd offers these only to the host named here; Docker Hub's pulls go to
  // registry-1.docker.io, so for it the field stays empty.
  const serverAddress = registry === 'docker.io' ? '' : `https://${registry}`;
  const authConfig = encodeStrings([
    [1, creds.username],
    [2, creds.password],
    [4, serverAddress],
  ]);
  return {
    request: replaceMessageField(request, 2, authConfig),
    image,
    rule: index,
    provider,
    injected: true,
  };
}

/** The `grpc.health.v1.Health` service: SERVING while the backend answers ImageFsInfo. */
function healthService(backend: ImageBackend): {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
} {
  const check = rawMethod('grpc.health.v1.Health', 'Check', false);
  return {
    definition: { Check: check },
    implementation: {
      Check: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        let service: string;
        try {
          service = stringField(call.request, 1) ?? '';
        } catch {
          callback({ code: grpc.status.INVALID_ARGUMENT, details: 'malformed HealthCheckRequest' });
          return;
        }
        if (service !== '' && service !== IMAGE_SERVICE) {
          callback({ code: grpc.status.NOT_FOUND, details: `unknown service ${service}` });
          return;
        }
        const signal = AbortSignal.timeout(5000);
        backend
          .unary('ImageFsInfo', Buffer.alloc(0), { deadline: Date.now() + 5000, signal })
          .then(
            () => 1, // SERVING
            () => 2, // NOT_SERVING
          )
          .then((status) => callback(null, Buffer.from([0x08, status])));
      },
    },
  };
}

/**
 * The `runtime.v1.ImageService` gRPC server kubelet points `imageServiceEndpoint` at: every
 * method forwarded to `backend`, PullImage with credentials from the rules added on the way,
 * plus `grpc.health.v1.Health`.
 */
export function createImageServiceServer(options: ImageServiceOptions): grpc.Server {
  const { backend, rules, auth } = options;
  const server = new grpc.Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    ...options.serverOptions,
  });
  const definition: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
  const implementation: grpc.UntypedServiceImplementation = {};
  const contextOf = (
    call: grpc.ServerUnaryCall<Buffer, Buffer> | grpc.ServerWritableStream<Buffer, Buffer>,
  ) => {
    const abort = new AbortController();
    call.once('cancelled', () => abort.abort());
    return { deadline: call.getDeadline(), signal: abort.signal };
  };
  for (const method of UNARY_METHODS) {
    definition[method] = rawMethod(IMAGE_SERVICE, method, false);
    implementation[method] = (
      call: grpc.ServerUnaryCall<Buffer, Buffer>,
      callback: grpc.sendUnaryData<Buffer>,
    ) => {
      const started = performance.now();
      const context = contextOf(call);
      let pull: Awaited<ReturnType<typeof injectCredentials>> | undefined;
      const run = async (): Promise<Buffer> => {
        let request = call.request;
        if (method === 'PullImage') {
          pull = await injectCredentials(request, rules, auth, options.onCredentials);
          request = pull.request;
        }
        return backend.unary(method, request, context);
      };
      run().then(
        (response) => {
          finish('OK');
          callback(null, response);
        },
        (err) => {
          const error = asCallError(err);
          finish(statusName(error.code));
          callback({ code: error.code, details: error.message });
        },
      );
      const finish = (result: string) => {
        const seconds = (performance.now() - started) / 1000;
        options.onCall?.(method, result, seconds);
        if (method === 'PullImage') {
          options.onPull?.({
            image: pull?.image ?? stringImage(call.request),
            rule: pull?.rule ?? null,
            provider: pull?.provider ?? null,
            injected: pull?.injected ?? false,
            result,
            durationMs: Math.round(seconds * 1000),
          });
        }
      };
    };
  }
  definition.StreamImages = rawMethod(IMAGE_SERVICE, 'StreamImages', true);
  implementation.StreamImages = (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
    const started = performance.now();
    backend
      .streamImages(call.request, contextOf(call), (message) => call.write(message))
      .then(
        () => {
          options.onCall?.('StreamImages', 'OK', (performance.now() - started) / 1000);
          call.end();
        },
        (err) => {
          const error = asCallError(err);
          options.onCall?.(
            'StreamImages',
            statusName(error.code),
            (performance.now() - started) / 1000,
          );
          call.emit('error', { code: error.code, details: error.message });
        },
      );
  };
  server.addService(definition, implementation);
  const health = healthService(backend);
  server.addService(health.definition, health.implementation);
  return server;
}

function stringImage(request: Buffer): string {
  try {
    return specImage(request) ?? '';
  } catch {
    return '';
  }
}

/**
 * Binds `server` to `unix:///path`: the parent directory is created (0755), a stale socket left
 * by a previous run is removed (anything else at the path is an error), and the socket is made
 * 0660 so only root and the socket's group reach it.
 */
export async function listenUnix(server: grpc.Server, endpoint: string): Promise<string> {
  const path = socketPath(endpoint);
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  try {
    const stat = lstatSync(path);
    if (!stat.isSocket()) throw new Error(`${path} exists and is not a socket; not replacing it`);
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await new Promise<number>((resolve, reject) =>
    server.bindAsync(`unix://${path}`, grpc.ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(err) : resolve(port),
    ),
  );
  chmodSync(path, 0o660);
  return path;
}

/** The path of a `unix:///abs/path` endpoint (or a bare absolute path). */
export function socketPath(endpoint: string): string {
  const path = endpoint.startsWith('unix://') ? endpoint.slice('unix://'.length) : endpoint;
  if (!path.startsWith('/') || path.includes('\0'))
    throw new Error(`endpoint ${JSON.stringify(endpoint)} is not unix:///absolute/path`);
  return path;
}

/** Stops accepting calls, lets running ones finish for up to `graceMs`, then cancels the rest. */
export function shutdown(server: grpc.Server, graceMs = 10_000): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    force.unref();
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}

/**
 * Makes one CRI `runtime.v1.ImageService/ImageFsInfo` call to `endpoint` (`unix:///PATH` or a
 * socket path) and resolves when it succeeds: the call kubelet itself makes at start, answered by
 * any CRI image service (containerd, CRI-O, ours). For the node patcher, which refuses to point
 * kubelet at an endpoint that does not answer.
 *
 * @throws Error with the gRPC status name and details (or the connection error) otherwise.
 */
export async function checkImageService(
  endpoint: string,
  options: { timeoutMs?: number } = {},
): Promise<void> {
  const client = new grpc.Client(
    `unix://${socketPath(endpoint)}`,
    grpc.credentials.createInsecure(),
  );
  try {
    await new Promise<void>((resolve, reject) => {
      client.makeUnaryRequest(
        `/${IMAGE_SERVICE}/ImageFsInfo`,
        identity,
        identity,
        Buffer.alloc(0),
        { deadline: Date.now() + (options.timeoutMs ?? 10_000) },
        (err) => {
          if (err) reject(new Error(`ImageFsInfo: ${statusName(err.code)}: ${err.details}`));
          else resolve();
        },
      );
    });
  } finally {
    client.close();
  }
}

/** `grpc.health.v1.HealthCheckResponse.ServingStatus` names, by number. */
const SERVING_STATUS = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'] as const;

/**
 * Asks the image service at `endpoint` for its health (`grpc.health.v1.Health/Check` on
 * `runtime.v1.ImageService`) until it says SERVING, which ours does only while the runtime
 * behind it answers ImageFsInfo: the same probe kubelet's start-up makes. For systemd's
 * ExecStartPost (so kubelet, ordered after us, starts against a working socket) and for the node
 * patcher before it points kubelet here.
 *
 * @throws Error naming the last answer (or connection error) once `timeoutMs` has passed.
 */
export async function waitServing(
  endpoint: string,
  options: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<void> {
  const { timeoutMs = 30_000, intervalMs = 250 } = options;
  const client = new grpc.Client(
    `unix://${socketPath(endpoint)}`,
    grpc.credentials.createInsecure(),
  );
  const request = encodeStrings([[1, IMAGE_SERVICE]]);
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  try {
    for (;;) {
      const answer = await new Promise<string>((resolve) => {
        client.makeUnaryRequest(
          '/grpc.health.v1.Health/Check',
          identity,
          identity,
          request,
          // At least 250 ms per probe: one cut short by the overall deadline would report our
          // own DEADLINE_EXCEEDED instead of the service's last real answer.
          { deadline: Date.now() + Math.min(5000, Math.max(250, deadline - Date.now())) },
          (err, response) => {
            if (err) resolve(`${statusName(err.code)}: ${err.details}`);
            else {
              let code: number;
              try {
                code = response ? (varintField(response, 1) ?? 0) : 0;
              } catch {
                code = -1;
              }
              resolve(SERVING_STATUS[code] ?? `status ${code}`);
            }
          },
        );
      });
      if (answer === 'SERVING') return;
      last = answer;
      if (Date.now() + intervalMs >= deadline)
        throw new Error(`${endpoint} is not serving after ${timeoutMs / 1000} s (last: ${last})`);
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  } finally {
    client.close();
  }
}
