import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { RegistryAuth } from '@org/registry-auth';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  CallError,
  checkImageService,
  createImageServiceServer,
  type ImageBackend,
  listenUnix,
  shutdown,
  waitServing,
} from './image-service.js';

const dir = mkdtempSync(join(tmpdir(), 'cri-wait-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let server: grpc.Server | undefined;
afterEach(async () => {
  if (server) await shutdown(server, 1000);
  server = undefined;
});

/** A runtime whose ImageFsInfo fails while `down` is true; nothing else is called here. */
function runtime(state: { down: boolean; calls: number }): ImageBackend {
  return {
    unary: async (method) => {
      state.calls++;
      if (method !== 'ImageFsInfo') throw new Error(`unexpected ${method}`);
      if (state.down) throw new CallError(14, 'connection refused');
      return Buffer.alloc(0);
    },
    streamImages: async () => {},
    close: () => {},
  };
}

async function start(endpoint: string, backend: ImageBackend) {
  server = createImageServiceServer({ backend, rules: [], auth: new RegistryAuth() });
  await listenUnix(server, endpoint);
}

describe('waitServing', () => {
  it('waits for the socket to appear and the runtime behind it to answer', async () => {
    const endpoint = `unix://${join(dir, 'late', 'cri.sock')}`;
    const state = { down: true, calls: 0 };
    const waiting = waitServing(endpoint, { timeoutMs: 20_000, intervalMs: 50 });
    let settled = false;
    waiting.then(
      () => (settled = true),
      () => (settled = true),
    );
    await new Promise((r) => setTimeout(r, 300));
    await start(endpoint, runtime(state));
    // listening, but the runtime is still down: NOT_SERVING keeps it waiting
    while (state.calls < 2) await new Promise((r) => setTimeout(r, 20));
    expect(settled).toBe(false);
    state.down = false;
    await expect(waiting).resolves.toBeUndefined();
  });

  it('gives up after the timeout, naming the last answer', async () => {
    const endpoint = `unix://${join(dir, 'down', 'cri.sock')}`;
    await start(endpoint, runtime({ down: true, calls: 0 }));
    await expect(waitServing(endpoint, { timeoutMs: 600, intervalMs: 50 })).rejects.toThrow(
      /is not serving after 0.6 s \(last: NOT_SERVING\)/,
    );
    await expect(
      waitServing(`unix://${join(dir, 'nobody', 'cri.sock')}`, { timeoutMs: 400, intervalMs: 50 }),
    ).rejects.toThrow(/last: UNAVAILABLE/);
  });

  it('refuses an endpoint that is not unix:///absolute/path', async () => {
    await expect(waitServing('tcp://127.0.0.1:1')).rejects.toThrow(/not unix:\/\/\/absolute/);
  });
});

describe('checkImageService', () => {
  it('resolves once ImageFsInfo answers, and names the status when it does not', async () => {
    const endpoint = `unix://${join(dir, 'check', 'cri.sock')}`;
    const state = { down: true, calls: 0 };
    await start(endpoint, runtime(state));
    await expect(checkImageService(endpoint, { timeoutMs: 2000 })).rejects.toThrow(
      /ImageFsInfo: UNAVAILABLE: connection refused/,
    );
    state.down = false;
    await expect(checkImageService(endpoint, { timeoutMs: 2000 })).resolves.toBeUndefined();
    // A bare socket path is taken too; every call reached the runtime.
    await expect(checkImageService(join(dir, 'check', 'cri.sock'))).resolves.toBeUndefined();
    expect(state.calls).toBe(3);
  });

  it('a socket nobody listens on fails within the deadline', async () => {
    await expect(
      checkImageService(`unix://${join(dir, 'none', 'cri.sock')}`, { timeoutMs: 500 }),
    ).rejects.toThrow(/ImageFsInfo: (UNAVAILABLE|DEADLINE_EXCEEDED)/);
  });
});
