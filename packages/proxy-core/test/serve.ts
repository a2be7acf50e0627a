import type { AddressInfo } from 'node:net';
import { type ServerType, serve } from '@hono/node-server';
import type { Hono } from 'hono';

/** Serves a Hono app on 127.0.0.1 (port 0 unless given); returns `HOST:PORT` and a close function. */
export async function serveOnLoopback(
  app: Hono,
  port = 0,
): Promise<{ host: string; close: () => Promise<void> }> {
  const server: ServerType = serve({ fetch: app.fetch, port, hostname: '127.0.0.1' });
  await new Promise((r) => server.once('listening', r));
  return {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((r) => server.close(() => r())),
  };
}
