/**
 * No timer of ours ends a call that is still running. Every timer on the PullImage path, shrunk
 * far below the length of one call: our server's keepalive pings (every 500 ms, 500 ms to
 * answer), our channel's idle timeout (grpc-js's floor, 1 s; default 30 min) and the caller's
 * own keepalive pings (every 500 ms, as a kubelet with keepalive would). A PullImage the
 * runtime answers after 4 s still completes, as does one that streams nothing for that long.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { RegistryAuth } from '@org/registry-auth';
import { criCall, imageSpecRequest } from '@org/tools/stand-ins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CriBackend,
  createImageServiceServer,
  IMAGE_SERVICE,
  listenUnix,
  parseRules,
  shutdown,
} from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'cri-long-'));
const identity = (b: Buffer) => b;
const CALL_MS = 4000;
let runtime: grpc.Server;
let ours: grpc.Server;
let client: grpc.Client;
const seen: { method: string; deadline: grpc.Deadline }[] = [];

beforeAll(async () => {
  // a runtime stand-in whose PullImage takes CALL_MS, like a slow registry behind containerd
  runtime = new grpc.Server();
  const slow = (method: string) => ({
    path: `/${IMAGE_SERVICE}/${method}`,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  });
  runtime.addService(
    { PullImage: slow('PullImage') },
    {
      PullImage: (
        call: grpc.ServerUnaryCall<Buffer, Buffer>,
        callback: grpc.sendUnaryData<Buffer>,
      ) => {
        seen.push({ method: 'PullImage', deadline: call.getDeadline() });
        setTimeout(() => callback(null, Buffer.from([0x0a, 3, ...Buffer.from('sha')])), CALL_MS);
      },
    },
  );
  const runtimeSocket = await listenUnix(runtime, `unix://${join(dir, 'runtime.sock')}`);
  ours = createImageServiceServer({
    backend: new CriBackend(`unix://${runtimeSocket}`, {
      channelOptions: { 'grpc.client_idle_timeout_ms': 1000 },
    }),
    rules: parseRules({
      rules: [
        {
          match: ['registry.example'],
          credentials: { provider: 'static', username: 'u', password: 'p' },
        },
      ],
    }),
    auth: new RegistryAuth(),
    serverOptions: { 'grpc.keepalive_time_ms': 500, 'grpc.keepalive_timeout_ms': 500 },
  });
  const socket = await listenUnix(ours, `unix://${join(dir, 'ours.sock')}`);
  client = new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure(), {
    'grpc.keepalive_time_ms': 500,
    'grpc.keepalive_timeout_ms': 500,
    'grpc.keepalive_permit_without_calls': 1,
  });
});

afterAll(async () => {
  client?.close();
  if (ours) await shutdown(ours, 1000);
  if (runtime) await shutdown(runtime, 1000);
  rmSync(dir, { recursive: true, force: true });
});

describe('a call longer than every timer on its path', () => {
  it('completes: keepalive pings both ways and the idle timeout do not end it', async () => {
    for (let i = 0; i < 2; i++) {
      const response = await criCall(client, 'PullImage', imageSpecRequest('registry.example/a'));
      expect(response.subarray(2).toString()).toBe('sha');
    }
    expect(seen).toHaveLength(2);
    // kubelet sets no deadline on PullImage, and neither do we
    expect(seen.map((s) => s.deadline)).toEqual([Infinity, Infinity]);
  }, 30_000);
});
