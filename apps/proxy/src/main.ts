#!/usr/bin/env node
/**
 * registry-proxy: parses arguments and config, wires @org/proxy-core onto @hono/node-server,
 * and shuts down gracefully. Logic lives in packages.
 */
import type { Server } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { dirname, resolve } from 'node:path';
import { serve } from '@hono/node-server';
import { createProxyApp, RegistryError, requestGuard } from '@org/proxy-core';
import { RegistryAuth } from '@org/registry-auth';
import {
  setRegistryValidationDefaults,
  skipRegistryValidationFromEnv,
} from '@org/registry-domains';
import { Hono } from 'hono';
import { clientAuthFromConfig } from './auth.js';
import {
  ConfigError,
  coreOptions,
  EMBEDDED_DEFAULT,
  loadConfig,
  type ProxyConfig,
  serverTimeouts,
} from './config.js';
import { closeSilentConnections } from './connections.js';
import { log } from './log.js';
import { createObservability } from './observe.js';
import { readTls, reloadTlsOnChange } from './tls.js';

const USAGE = `usage: registry-proxy serve [--config FILE] [--listen HOST:PORT] [--skip-registry-validation]
       registry-proxy --help

  serve                       run the proxy; without --config, proxy Docker Hub anonymously
  --config FILE               YAML or JSON config (see the README)
  --listen HOST:PORT          address to listen on (overrides server.listen; default 127.0.0.1:5000)
  --skip-registry-validation  accept any host for cloud credentials (SKIP_REGISTRY_VALIDATION=true too);
                              cloud credentials are then sent to that host
`;

function fail(message: string, code = 1): never {
  process.stderr.write(`registry-proxy: ${message}\n`);
  process.exit(code);
}

function parseArgs(argv: string[]): { config?: string; listen?: string; skip: boolean } {
  const [command, ...rest] = argv;
  if (command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  if (command !== 'serve')
    fail(`unknown command ${JSON.stringify(command ?? '')}; try registry-proxy --help`, 2);
  const out: { config?: string; listen?: string; skip: boolean } = { skip: false };
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i] ?? '';
    const [flag, inline] = arg.includes('=')
      ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)]
      : [arg, undefined];
    const value = () => inline ?? rest[++i] ?? fail(`${flag} needs a value`, 2);
    if (flag === '--config') out.config = value();
    else if (flag === '--listen') out.listen = value();
    else if (flag === '--skip-registry-validation') out.skip = true;
    else fail(`unknown option ${JSON.stringify(arg)}; try registry-proxy --help`, 2);
  }
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  let config: ProxyConfig;
  try {
    config = args.config ? loadConfig(args.config) : EMBEDDED_DEFAULT;
    setRegistryValidationDefaults({
      skipRegistryValidation: args.skip || skipRegistryValidationFromEnv(process.env),
    });
  } catch (err) {
    fail(err instanceof ConfigError || err instanceof TypeError ? err.message : String(err));
  }
  const listen = args.listen ?? config.server?.listen ?? '127.0.0.1:5000';
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(listen);
  if (!m) fail(`--listen ${JSON.stringify(listen)} is not HOST:PORT`, 2);
  const hostname = m[1] ?? (m[2] || '0.0.0.0');
  const port = Number(m[3]);

  const observe = createObservability(log);
  let proxy: Hono;
  try {
    const clientAuth = await clientAuthFromConfig(
      config,
      args.config ? dirname(resolve(args.config)) : process.cwd(),
    );
    for (const p of config.auth?.plugins ?? []) {
      if (p.type === 'network') {
        log(
          'warn',
          `auth plugin ${p.name} lets every client in ${p.cidrs.join(', ')} log in without credentials`,
          {
            plugin: p.name,
            cidrs: p.cidrs,
          },
        );
      }
    }
    if (clientAuth?.ephemeral) {
      log(
        'warn',
        "auth.signingKeyFile is not set: signing with a key made at start; tokens end with this process and replicas do not accept each other's",
      );
    }
    proxy = createProxyApp({
      ...coreOptions(config),
      ...(clientAuth ? { auth: clientAuth.auth } : {}),
      registryAuth: new RegistryAuth({ cache: { metrics: observe.credentialMetrics } }),
      observer: observe.observer,
    });
  } catch (err) {
    fail(`invalid config: ${(err as Error).message.split('\n').join('; ')}`);
  }
  const tls = config.server?.tls;
  let tlsPair: ReturnType<typeof readTls> | undefined;
  if (tls) {
    try {
      tlsPair = readTls(tls);
    } catch (err) {
      fail(`cannot read server.tls files: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
  }

  let stopping = false;
  const app = new Hono();
  // Dot segments and duplicate Host headers are refused before any route (also /metrics).
  app.use('*', requestGuard());
  app.notFound((c) =>
    c.json(new RegistryError(404, 'NAME_UNKNOWN', 'not a registry API path').toJSON(), 404),
  );
  app.get('/healthz', (c) => c.text('ok'));
  // Not ready while shutting down, so load balancers stop sending new pulls first.
  app.get('/readyz', (c) => (stopping ? c.text('stopping', 503) : c.text('ready')));
  app.get('/metrics', async (c) => {
    const { contentType, body } = await observe.metrics();
    return c.body(body, 200, { 'content-type': contentType });
  });
  app.use('/v2/*', observe.middleware);
  app.use('/v2', observe.middleware);
  app.use('/token', observe.middleware);
  app.route('/', proxy);

  // With a client CA, clients are asked for a certificate; one that does not verify is not an
  // error at the TLS layer (mtls is one login method among others), just no mtls identity.
  const timeouts = serverTimeouts(config);
  const options = tlsPair
    ? {
        createServer: createHttpsServer,
        serverOptions: {
          ...timeouts,
          ...tlsPair,
          ...(tlsPair.ca ? { requestCert: true, rejectUnauthorized: false } : {}),
        },
      }
    : { serverOptions: timeouts };
  const server = serve({ fetch: app.fetch, hostname, port, ...options }, (info: AddressInfo) => {
    const address =
      info.family === 'IPv6' ? `[${info.address}]:${info.port}` : `${info.address}:${info.port}`;
    log('info', 'listening', {
      address,
      tls: tlsPair !== undefined,
      upstreams: config.upstreams.map((u) => ({ name: u.name, prefix: u.prefix, url: u.url })),
    });
    if (!args.config)
      log('info', `no --config: proxying Docker Hub anonymously (docker pull ${address}/alpine)`);
  });
  const http = server as Server;
  closeSilentConnections(http, timeouts.headersTimeout);
  http.on('error', (err: NodeJS.ErrnoException) =>
    fail(`cannot listen on ${listen}: ${err.code ?? err.message}`),
  );
  if (tls) {
    reloadTlsOnChange(server as HttpsServer, tls, (tls.reloadIntervalSeconds ?? 10) * 1000, log);
  }

  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log('info', 'shutting down', { signal });
    // Finish in-flight requests (streams included), bounded.
    const force = setTimeout(() => {
      log('warn', 'shutdown timed out; closing connections');
      http.closeAllConnections();
      process.exit(0);
    }, 25_000);
    force.unref();
    http.close(() => process.exit(0));
    http.closeIdleConnections();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => fail(String(err)));
