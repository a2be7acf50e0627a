import { readFileSync } from 'node:fs';
import { type ProxyCoreOptions, parseRedirectAllow } from '@org/proxy-core';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

const hostPort = z
  .string()
  .regex(
    /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]*):\d{1,5}$/,
    'a HOST:PORT such as 127.0.0.1:5000 or :5000',
  );

const common = { skipRegistryValidation: z.boolean().optional(), region: z.string().optional() };
const credentials = z.discriminatedUnion('provider', [
  z.object({ provider: z.literal('none') }).strict(),
  z
    .object({
      provider: z.literal('static'),
      username: z.string().optional(),
      usernameFile: z.string().optional(),
      password: z.string().optional(),
      passwordFile: z.string().optional(),
    })
    .strict(),
  z.object({ provider: z.literal('gcp'), keyFile: z.string().optional(), ...common }).strict(),
  z
    .object({ provider: z.literal('aws'), registryIds: z.array(z.string()).optional(), ...common })
    .strict(),
  z
    .object({
      provider: z.literal('azure'),
      loginServer: z.string().optional(),
      tenantId: z.string().optional(),
      clientId: z.string().optional(),
      azureIdentity: z.enum(['default', 'workload-identity', 'managed-identity']).optional(),
      ...common,
    })
    .strict(),
  z.object({ provider: z.literal('docker-config'), configFile: z.string() }).strict(),
]);

const upstream = z
  .object({
    name: z.string().min(1),
    prefix: z.string(),
    url: z.url({ protocol: /^https?$/ }),
    repositoryPrefix: z.string().optional(),
    dockerHubLibrary: z.boolean().optional(),
    credentials: credentials.optional(),
    hosts: z.array(z.string().min(1)).min(1).optional(),
    ns: z.array(z.string().min(1)).min(1).optional(),
    catalog: z.boolean().optional(),
    allowInternalRedirects: z
      .array(z.string())
      .superRefine((list, ctx) => {
        list.forEach((entry, i) => {
          try {
            parseRedirectAllow([entry], 'entry');
          } catch (err) {
            ctx.addIssue({
              code: 'custom',
              path: [i],
              message: (err as Error).message.replace(/^entry\[0\]: /, ''),
            });
          }
        });
      })
      .optional(),
  })
  .strict();

const oidcPlugin = z
  .object({
    name: z.string().min(1),
    type: z.literal('oidc'),
    issuer: z.url(),
    audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
    algorithms: z.array(z.string().min(1)).min(1).optional(),
    clockToleranceSeconds: z.number().int().min(0).max(300).optional(),
    subjectClaim: z.string().min(1).optional(),
    groupsClaim: z.string().min(1).optional(),
    requiredClaims: z.array(z.string().min(1)).optional(),
    jwksUri: z.url().optional(),
  })
  .strict();

const kubernetesPlugin = z
  .object({
    name: z.string().min(1),
    type: z.literal('kubernetes'),
    mode: z.enum(['oidc', 'tokenreview']),
    issuer: z.url().optional(),
    audience: z.string().min(1).optional(),
    jwksUri: z.url().optional(),
    apiServer: z.url().optional(),
    caFile: z.string().min(1).optional(),
    tokenFile: z.string().min(1).optional(),
    audiences: z.array(z.string().min(1)).min(1).optional(),
    cacheSeconds: z.number().int().min(0).max(300).optional(),
  })
  .strict()
  .superRefine((p, ctx) => {
    if (p.mode === 'oidc' && (p.issuer === undefined || p.audience === undefined))
      ctx.addIssue({ code: 'custom', message: 'mode oidc needs issuer and audience' });
  });

const gcpInstanceIdentityPlugin = z
  .object({
    name: z.string().min(1),
    type: z.literal('gcp-instance-identity'),
    audience: z.string().min(1),
    projectIds: z.array(z.string().min(1)).min(1).optional(),
    projectNumbers: z.array(z.string().min(1)).min(1).optional(),
    zones: z.array(z.string().min(1)).min(1).optional(),
    instanceNames: z.array(z.string().min(1)).min(1).optional(),
    issuer: z.url().optional(),
    jwksUri: z.url().optional(),
  })
  .strict();

const ldapPlugin = z
  .object({
    name: z.string().min(1),
    type: z.literal('ldap'),
    url: z.string().regex(/^ldaps?:\/\//, 'ldap:// or ldaps://'),
    startTls: z.boolean().optional(),
    caFile: z.string().min(1).optional(),
    userDnTemplate: z.string().min(1).optional(),
    userSearchBase: z.string().min(1).optional(),
    userFilter: z.string().min(1).optional(),
    usernameAttribute: z.string().min(1).optional(),
    bindDn: z.string().min(1).optional(),
    bindPassword: z.string().optional(),
    bindPasswordFile: z.string().min(1).optional(),
    groups: z
      .discriminatedUnion('from', [
        z.object({ from: z.literal('memberOf') }).strict(),
        z
          .object({
            from: z.literal('search'),
            searchBase: z.string().min(1),
            filter: z.string().min(1).optional(),
          })
          .strict(),
      ])
      .optional(),
    timeoutMs: z.number().int().min(100).max(60_000).optional(),
  })
  .strict();

const modulePlugin = z
  .object({
    name: z.string().min(1),
    type: z.literal('module'),
    path: z.string().min(1),
    options: z.record(z.string(), z.unknown()).optional(),
  })
  .strict();

const mtlsPlugin = z
  .object({
    name: z.string().min(1),
    type: z.literal('mtls'),
    subjectFrom: z.enum(['cn', 'dns', 'uri', 'email']).optional(),
  })
  .strict();

const networkPlugin = z
  .object({
    name: z.string().min(1),
    type: z.literal('network'),
    cidrs: z.array(z.string().min(1)).min(1),
  })
  .strict();

const awsIamPlugin = z
  .object({
    name: z.string().min(1),
    type: z.literal('aws-iam'),
    serverId: z.string().min(1),
    accounts: z.array(z.string().regex(/^\d{12}$/, 'a 12-digit AWS account id')).min(1),
    principals: z.array(z.string().min(1)).min(1).optional(),
    regions: z.array(z.string().min(1)).optional(),
    stsEndpoints: z.array(z.url()).min(1).optional(),
  })
  .strict();

const awsInstanceIdentityPlugin = z
  .object({
    name: z.string().min(1),
    type: z.literal('aws-instance-identity'),
    accounts: z.array(z.string().regex(/^\d{12}$/, 'a 12-digit AWS account id')).min(1),
    regions: z.array(z.string().min(1)).min(1).optional(),
    instanceIds: z.array(z.string().min(1)).min(1).optional(),
    certificates: z.record(z.string().min(1), z.string().min(1)).optional(),
    withoutShippedCertificates: z.boolean().optional(),
  })
  .strict();

const authPlugin = z.discriminatedUnion('type', [
  oidcPlugin,
  awsInstanceIdentityPlugin,
  awsIamPlugin,
  mtlsPlugin,
  networkPlugin,
  modulePlugin,
  ldapPlugin,
  kubernetesPlugin,
  gcpInstanceIdentityPlugin,
  z
    .object({ name: z.string().min(1), type: z.literal('htpasswd'), file: z.string().min(1) })
    .strict(),
  z
    .object({
      name: z.string().min(1),
      type: z.literal('static'),
      users: z.array(
        z
          .object({
            username: z.string().min(1),
            password: z.string().optional(),
            passwordHash: z.string().optional(),
            groups: z.array(z.string()).optional(),
          })
          .strict(),
      ),
    })
    .strict(),
]);

const auth = z
  .object({
    tokenTtlSeconds: z.number().int().min(60).optional(),
    signingKeyFile: z.string().min(1).optional(),
    previousSigningKeyFiles: z.array(z.string().min(1)).optional(),
    loginRateLimit: z
      .object({
        maxFailuresPerUser: z.number().int().positive().optional(),
        maxFailuresPerAddress: z.number().int().positive().optional(),
        windowSeconds: z.number().int().positive().optional(),
      })
      .strict()
      .optional(),
    service: z
      .string()
      .regex(/^[^"\\\s]+$/)
      .optional(),
    plugins: z.array(authPlugin).min(1),
    policy: z.array(
      z
        .object({
          identities: z.array(z.string().min(1)).min(1),
          repositories: z.array(z.string().min(1)).min(1),
          actions: z.array(z.enum(['pull', 'push', '*'])).min(1),
          groups: z.array(z.string().min(1)).min(1).optional(),
          claims: z
            .record(z.string().min(1), z.union([z.string(), z.array(z.string()).min(1)]))
            .optional(),
        })
        .strict(),
    ),
  })
  .strict();

/** The config file (YAML or JSON), as ARCHITECTURE.md gives it. */
export const configSchema = z
  .object({
    server: z
      .object({
        listen: hostPort.optional(),
        publicUrl: z.url().optional(),
        tls: z
          .object({
            certFile: z.string().min(1),
            keyFile: z.string().min(1),
            reloadIntervalSeconds: z.number().int().min(1).max(3600).optional(),
            clientCaFile: z.string().min(1).optional(),
          })
          .strict()
          .optional(),
        keepAliveTimeoutMs: z.number().int().min(100).max(600_000).optional(),
        headersTimeoutMs: z.number().int().min(100).max(600_000).optional(),
        requestTimeoutMs: z.number().int().min(100).max(3_600_000).optional(),
      })
      .strict()
      .optional(),
    upstreamTimeoutMs: z.number().int().min(100).max(600_000).optional(),
    upstreamIdleTimeoutMs: z.number().int().min(100).max(600_000).optional(),
    retries: z
      .object({
        attempts: z.number().int().min(1).max(10).optional(),
        budgetRatio: z.number().min(0).max(1).optional(),
        minPerWindow: z.number().int().min(0).optional(),
        windowMs: z.number().int().min(1000).max(600_000).optional(),
        backoffMs: z.number().int().min(0).max(60_000).optional(),
        maxBackoffMs: z.number().int().min(0).max(60_000).optional(),
      })
      .strict()
      .optional(),
    auth: auth.optional(),
    upstreams: z.array(upstream).min(1),
    blobs: z
      .object({ mode: z.enum(['stream', 'redirect']) })
      .strict()
      .optional(),
    manifestMaxBytes: z.number().int().positive().optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (
      c.auth?.plugins.some((p) => p.type === 'mtls') &&
      c.server?.tls?.clientCaFile === undefined
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['server', 'tls', 'clientCaFile'],
        message: 'required with an mtls plugin: the CA bundle client certificates must chain to',
      });
    }
    const headers = c.server?.headersTimeoutMs ?? 60_000;
    const request = c.server?.requestTimeoutMs ?? 300_000;
    if (headers > request) {
      ctx.addIssue({
        code: 'custom',
        path: ['server', 'headersTimeoutMs'],
        message: `must not exceed server.requestTimeoutMs (${request})`,
      });
    }
    if (c.auth !== undefined && c.server?.publicUrl === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['server', 'publicUrl'],
        message: 'required with auth: clients fetch tokens at <publicUrl>/token',
      });
    }
  });

export type ProxyConfig = z.infer<typeof configSchema>;

/** With no config: Docker Hub, anonymously, on 127.0.0.1:5000 (`alpine` is `library/alpine`). */
export const EMBEDDED_DEFAULT: ProxyConfig = {
  server: { listen: '127.0.0.1:5000' },
  upstreams: [
    { name: 'docker-hub', prefix: '', url: 'https://registry-1.docker.io', dockerHubLibrary: true },
  ],
};

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/**
 * Reads and checks a config file (YAML; JSON is YAML too). Every problem is listed with its
 * path in one message.
 *
 * @throws ConfigError
 */
export function loadConfig(file: string): ProxyConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `cannot read config ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new ConfigError(
      `config ${file} is not YAML or JSON: ${(err as Error).message.split('\n')[0]}`,
    );
  }
  return checkConfig(raw, file);
}

export function checkConfig(raw: unknown, source: string): ProxyConfig {
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const issues = result.error.issues.map(
      (i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`,
    );
    throw new ConfigError(`invalid config ${source}: ${issues.join('; ')}`);
  }
  return result.data;
}

/** The proxy-core options a config describes. */
export function coreOptions(config: ProxyConfig): ProxyCoreOptions {
  type Upstream = ProxyCoreOptions['upstreams'][number];
  const upstreams = config.upstreams.map(
    (u): Upstream => ({
      name: u.name,
      prefix: u.prefix,
      url: u.url,
      ...(u.repositoryPrefix === undefined ? {} : { repositoryPrefix: u.repositoryPrefix }),
      ...(u.dockerHubLibrary === undefined ? {} : { dockerHubLibrary: u.dockerHubLibrary }),
      ...(u.hosts === undefined ? {} : { hosts: u.hosts }),
      ...(u.ns === undefined ? {} : { ns: u.ns }),
      ...(u.catalog === undefined ? {} : { catalog: u.catalog }),
      ...(u.allowInternalRedirects === undefined
        ? {}
        : { allowInternalRedirects: u.allowInternalRedirects }),
      // zod's optional fields are `T | undefined`; the values are the schema-checked ones.
      ...(u.credentials === undefined
        ? {}
        : { credentials: u.credentials as NonNullable<Upstream['credentials']> }),
    }),
  );
  return {
    upstreams,
    ...(config.manifestMaxBytes === undefined ? {} : { manifestMaxBytes: config.manifestMaxBytes }),
    ...(config.blobs === undefined ? {} : { blobs: config.blobs }),
    ...(config.upstreamTimeoutMs === undefined
      ? {}
      : { upstreamTimeoutMs: config.upstreamTimeoutMs }),
    ...(config.upstreamIdleTimeoutMs === undefined
      ? {}
      : { upstreamIdleTimeoutMs: config.upstreamIdleTimeoutMs }),
    ...(config.retries === undefined
      ? {}
      : {
          retries: Object.fromEntries(
            Object.entries(config.retries).filter(([, v]) => v !== undefined),
          ) as NonNullable<ProxyCoreOptions['retries']>,
        }),
  };
}

/**
 * Node's server timeouts from `server`: Node's own defaults (keep-alive 5 s, headers 60 s,
 * request 300 s); expired connections are looked for every quarter of the headers timeout
 * (at most every 30 s, Node's default, at least every second).
 */
export function serverTimeouts(config: ProxyConfig): {
  keepAliveTimeout: number;
  headersTimeout: number;
  requestTimeout: number;
  connectionsCheckingInterval: number;
} {
  const headersTimeout = config.server?.headersTimeoutMs ?? 60_000;
  return {
    keepAliveTimeout: config.server?.keepAliveTimeoutMs ?? 65_000,
    headersTimeout,
    requestTimeout: config.server?.requestTimeoutMs ?? 300_000,
    connectionsCheckingInterval: Math.min(30_000, Math.max(1000, Math.floor(headersTimeout / 4))),
  };
}
