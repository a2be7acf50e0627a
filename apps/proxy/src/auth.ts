import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  type AuthPlugin,
  type AwsIamOptions,
  type AwsInstanceIdentityOptions,
  createAwsIamPlugin,
  createAwsInstanceIdentityPlugin,
  createGcpInstanceIdentityPlugin,
  createHtpasswdPlugin,
  createKubernetesPlugin,
  createLdapPlugin,
  createMtlsPlugin,
  createNetworkPlugin,
  createOidcPlugin,
  createPolicy,
  createStaticUsersPlugin,
  type GcpInstanceIdentityOptions,
  type KubernetesOptions,
  type LdapOptions,
  loadModulePlugin,
  type MtlsOptions,
  type OidcOptions,
} from '@org/auth-plugins';
import {
  createTokenService,
  LoginThrottle,
  type LoginThrottleOptions,
  type ProxyCoreOptions,
} from '@org/proxy-core';
import { importPKCS8, importSPKI } from 'jose';
import type { ProxyConfig } from './config.js';

/**
 * The proxy-core `auth` option a config describes: plugins, policy, and a token service signing
 * with `signingKeyFile` (a PKCS#8 P-256 key) or, without one, a key made at start (`ephemeral`
 * tells the caller to warn: tokens then die with the process and replicas do not share them).
 */
export async function clientAuthFromConfig(
  config: ProxyConfig,
  /** Where relative plugin module paths start: the config file's folder. */
  baseDir: string = process.cwd(),
): Promise<{ auth: NonNullable<ProxyCoreOptions['auth']>; ephemeral: boolean } | undefined> {
  const a = config.auth;
  if (a === undefined) return undefined;
  const publicUrl = new URL(config.server?.publicUrl as string);
  const plugins: AuthPlugin[] = [];
  for (const p of a.plugins) plugins.push(await makePlugin(p, baseDir));
  let keyPair: Parameters<typeof createTokenService>[0]['keyPair'];
  if (a.signingKeyFile !== undefined) {
    const pem = readFileSync(a.signingKeyFile, 'utf8');
    const spki = createPublicKey(pem).export({ type: 'spki', format: 'pem' }).toString();
    keyPair = {
      privateKey: await importPKCS8(pem, 'ES256'),
      publicKey: await importSPKI(spki, 'ES256', { extractable: true }),
    };
  }
  // Rotation: earlier keys (private or public PEM) keep verifying and are published in the JWKS.
  const previousPublicKeys = [];
  for (const file of a.previousSigningKeyFiles ?? []) {
    const spki = createPublicKey(readFileSync(file, 'utf8'))
      .export({ type: 'spki', format: 'pem' })
      .toString();
    previousPublicKeys.push(await importSPKI(spki, 'ES256', { extractable: true }));
  }
  const service = a.service ?? publicUrl.host;
  const tokens = await createTokenService({
    previousPublicKeys,
    plugins,
    policy: createPolicy(a.policy as Parameters<typeof createPolicy>[0]),
    issuer: publicUrl.origin,
    service,
    ...(a.tokenTtlSeconds === undefined ? {} : { ttlSeconds: a.tokenTtlSeconds }),
    ...(keyPair === undefined ? {} : { keyPair }),
  });
  return {
    auth: {
      tokens,
      realm: new URL('/token', publicUrl).href,
      service,
      loginThrottle: new LoginThrottle(
        Object.fromEntries(
          Object.entries(a.loginRateLimit ?? {}).filter(([, v]) => v !== undefined),
        ) as LoginThrottleOptions,
      ),
    },
    ephemeral: keyPair === undefined,
  };
}

type PluginConfig = NonNullable<ProxyConfig['auth']>['plugins'][number];

/** One configured plugin. zod's optional fields are `T | undefined`; plugins check their options. */
async function makePlugin(p: PluginConfig, baseDir: string): Promise<AuthPlugin> {
  switch (p.type) {
    case 'htpasswd':
      return createHtpasswdPlugin({ name: p.name, file: p.file });
    case 'static':
      return createStaticUsersPlugin({
        name: p.name,
        users: p.users.map((u) => ({
          username: u.username,
          ...(u.password === undefined ? {} : { password: u.password }),
          ...(u.passwordHash === undefined ? {} : { passwordHash: u.passwordHash }),
          ...(u.groups === undefined ? {} : { groups: u.groups }),
        })),
      });
    case 'kubernetes':
      return createKubernetesPlugin(p as KubernetesOptions);
    case 'aws-instance-identity':
      return createAwsInstanceIdentityPlugin(p as AwsInstanceIdentityOptions);
    case 'aws-iam':
      return createAwsIamPlugin(p as AwsIamOptions);
    case 'mtls':
      return createMtlsPlugin(p as MtlsOptions);
    case 'network':
      return createNetworkPlugin(p);
    case 'ldap':
      return createLdapPlugin(p as LdapOptions);
    case 'module':
      return loadModulePlugin({
        name: p.name,
        path: p.path,
        baseDir,
        ...(p.options === undefined ? {} : { options: p.options }),
      });
    case 'gcp-instance-identity':
      return createGcpInstanceIdentityPlugin(p as GcpInstanceIdentityOptions);
    default:
      return createOidcPlugin(p as OidcOptions);
  }
}
