import type { Server } from 'node:http';
import type { Socket } from 'node:net';

const WAITING = Symbol('waiting for a first request');

/**
 * Closes connections that send no request within `ms` of opening. Node's `headersTimeout`
 * only starts with a request's first byte and `keepAliveTimeout` only after a response, so a
 * connection that never sends anything would otherwise be held forever (10,000 of them exhaust
 * file descriptors). The socket's inactivity timeout is armed at accept and cleared by the first
 * request; Node's own timeout handler then destroys a socket with nothing in flight.
 */
export function closeSilentConnections(server: Server, ms: number): void {
  // A TLS server's requests come on the TLS socket of 'secureConnection' (the handshake itself
  // is bounded by the TLS server's handshakeTimeout).
  const event = 'setSecureContext' in server ? 'secureConnection' : 'connection';
  server.on(event, (socket: Socket & { [WAITING]?: boolean }) => {
    socket[WAITING] = true;
    socket.setTimeout(ms);
  });
  server.on('request', (req) => {
    const socket = req.socket as Socket & { [WAITING]?: boolean };
    if (socket[WAITING]) {
      socket[WAITING] = false;
      socket.setTimeout(0);
    }
  });
}
