import { rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import {
  CriBackend,
  createImageServiceServer,
  DockerBackend,
  listenUnix,
  type Rule,
  shutdown,
} from '@org/cri-image-service';
import { RegistryAuth } from '@org/registry-auth';
import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';

export interface ServeOptions {
  readonly listen: string;
  readonly backend: 'cri' | 'docker';
  readonly backendEndpoint: string;
  readonly rules: readonly Rule[];
  /** `host:port` for the Prometheus endpoint, or undefined for none. */
  readonly metricsListen?: string;
}

/** One JSON line on stdout per event; values are never secrets (no credentials, no tokens). */
export function log(level: 'info' | 'warn' | 'error', msg: string, fields: object = {}): void {
  process.stdout.write(
    `${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`,
  );
}

function metricsFor(registry: Registry) {
  collectDefaultMetrics({ register: registry, prefix: 'kubelet_image_service_' });
  return {
    pulls: new Counter({
      name: 'kubelet_image_service_pulls_total',
      help: 'PullImage calls, by the rule that matched ("none" when none did), whether credentials were injected, and the gRPC result',
      labelNames: ['rule', 'injected', 'result'] as const,
      registers: [registry],
    }),
    credentialFetches: new Counter({
      name: 'kubelet_image_service_credential_fetches_total',
      help: 'Credential lookups for pulls, by provider and result (cached answers included)',
      labelNames: ['provider', 'result'] as const,
      registers: [registry],
    }),
    calls: new Histogram({
      name: 'kubelet_image_service_forwarded_call_duration_seconds',
      help: 'ImageService calls forwarded to the backend runtime, by method and gRPC result',
      labelNames: ['method', 'result'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600],
      registers: [registry],
    }),
  };
}

function listenMetrics(registry: Registry, address: string): Promise<Server> {
  const at = address.lastIndexOf(':');
  const host = address.slice(0, at).replace(/^\[(.*)\]$/, '$1');
  const port = Number(address.slice(at + 1));
  if (at <= 0 || !Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`--metrics-listen ${JSON.stringify(address)} is not host:port`);
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
      () => res.writeHead(500).end(),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

function boundAddress(server: Server): string {
  const address = server.address();
  if (address === null || typeof address === 'string') return String(address);
  return address.family === 'IPv6'
    ? `[${address.address}]:${address.port}`
    : `${address.address}:${address.port}`;
}

/**
 * `kubelet-image-service serve`: the ImageService on a unix socket until SIGTERM or SIGINT,
 * then a graceful stop (running calls finish, up to 10 s) and the socket removed.
 */
export async function serve(options: ServeOptions): Promise<void> {
  const registry = new Registry();
  const metrics = metricsFor(registry);
  const backend =
    options.backend === 'docker'
      ? new DockerBackend(options.backendEndpoint)
      : new CriBackend(options.backendEndpoint);
  const server = createImageServiceServer({
    backend,
    rules: options.rules,
    auth: new RegistryAuth(),
    onCall: (method, result, seconds) => metrics.calls.observe({ method, result }, seconds),
    onCredentials: (provider, result) => metrics.credentialFetches.inc({ provider, result }),
    onPull: (pull) => {
      metrics.pulls.inc({
        rule: pull.rule === null ? 'none' : String(pull.rule),
        injected: String(pull.injected),
        result: pull.result,
      });
      log(pull.result === 'OK' ? 'info' : 'warn', 'pull', {
        image: pull.image.slice(0, 512),
        rule: pull.rule,
        provider: pull.provider,
        injected: pull.injected,
        result: pull.result,
        durationMs: pull.durationMs,
      });
    },
  });
  const socket = await listenUnix(server, options.listen);
  const metricsServer =
    options.metricsListen === undefined
      ? undefined
      : await listenMetrics(registry, options.metricsListen);
  log('info', 'serving', {
    listen: `unix://${socket}`,
    backend: options.backend,
    backendEndpoint: options.backendEndpoint,
    rules: options.rules.length,
    ...(metricsServer ? { metrics: boundAddress(metricsServer) } : {}),
  });
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log('info', 'stopping', { signal });
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await shutdown(server);
  backend.close();
  metricsServer?.close();
  rmSync(socket, { force: true });
  log('info', 'stopped');
}
