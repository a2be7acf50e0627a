import type { TokenCredential } from '@azure/identity';
import { registryHostOf } from '@org/registry-domains';
import { CredentialsError, type CredentialsErrorCode } from './errors.js';
import { identityOf } from './identity.js';
import { safeCause } from './sanitize.js';
import type { CredentialSource, CredentialTarget, RegistryCredentials } from './types.js';

/** The username that marks the password as an ACR refresh token. */
export const ACR_REFRESH_TOKEN_USERNAME = '00000000-0000-0000-0000-000000000000';

export interface AzureSourceOptions {
  /** An Entra credential of your own; the options below that build one are then ignored. */
  readonly credential?: TokenCredential;
  /**
   * Which credential to build: `default` (DefaultAzureCredential: environment service
   * principal, workload identity, managed identity, Azure CLI, ...), `workload-identity`
   * (AKS federated token file) or `managed-identity`. Default `default`.
   */
  readonly identity?: 'default' | 'workload-identity' | 'managed-identity';
  /** Client id of a user-assigned managed identity or of the workload identity app. */
  readonly clientId?: string;
  /** Entra tenant. Default: the credential's, else the `tid` of the token it returns. */
  readonly tenantId?: string;
  /** Entra authority host (sovereign clouds, Azure Stack, tests). */
  readonly authorityHost?: string;
  /**
   * Skip MSAL's instance discovery at login.microsoftonline.com, for authority hosts it does not
   * know (Azure Stack, private clouds, air-gapped networks). Default false.
   */
  readonly disableInstanceDiscovery?: boolean;
  /**
   * The real ACR login server (`myregistry.azurecr.io`) to exchange the Entra token at. Required
   * when the registry is a gateway accepted by skipping validation: the Entra token is never
   * sent to the gateway host.
   */
  readonly loginServer?: string;
  /** Entra scope. Default: by the login server's cloud (`https://containerregistry.azure.net/.default` for azurecr.io). */
  readonly scope?: string;
  /** HTTP for the exchange. Default: the global `fetch`. */
  readonly fetch?: typeof fetch;
}

/** Entra scopes ACR accepts, by login server suffix: ACR's own, else that cloud's ARM audience. */
const SCOPE_BY_SUFFIX: ReadonlyArray<readonly [string, string]> = [
  ['.azurecr.io', 'https://containerregistry.azure.net/.default'],
  ['.azurecr.cn', 'https://management.chinacloudapi.cn/.default'],
  ['.azurecr.us', 'https://management.usgovcloudapi.net/.default'],
  ['.azurecr.de', 'https://management.microsoftazure.de/.default'],
];

/**
 * Azure Container Registry: an Entra token for the ACR audience, exchanged at
 * `POST https://<login server>/oauth2/exchange` for an ACR refresh token, presented with the
 * username {@link ACR_REFRESH_TOKEN_USERNAME}; it expires at the refresh token's `exp` (about
 * 3 hours). The identity needs the `AcrPull` role on the registry.
 */
export function createAzureSource(options: AzureSourceOptions = {}): CredentialSource {
  if (options.loginServer !== undefined && !isHostPort(options.loginServer)) {
    throw new TypeError(`loginServer ${JSON.stringify(options.loginServer)} is not a host[:port]`);
  }
  if (options.tenantId !== undefined && !/^[A-Za-z0-9.-]+$/.test(options.tenantId)) {
    throw new TypeError('tenantId is not a tenant id or domain');
  }
  const doFetch = options.fetch ?? fetch;
  // @azure/identity is loaded on first use: most processes never need it (see README).
  let built: Promise<TokenCredential> | undefined;
  const credential: Pick<TokenCredential, 'getToken'> = options.credential ?? {
    getToken: async (scopes, getTokenOptions) => {
      built ??= buildCredential(options);
      return (await built).getToken(scopes, getTokenOptions);
    },
  };
  return {
    kind: 'azure',
    identity: identityOf('azure', {
      identity: options.identity ?? 'default',
      clientId: options.clientId,
      tenantId: options.tenantId,
      authorityHost: options.authorityHost,
      disableInstanceDiscovery: options.disableInstanceDiscovery,
      loginServer: options.loginServer,
      scope: options.scope,
      credential: options.credential,
      fetch: options.fetch,
    }),
    cacheable: true,
    async fetch(target: CredentialTarget, signal?: AbortSignal): Promise<RegistryCredentials> {
      const fields = { provider: 'azure', registry: target.registry };
      const loginServer =
        options.loginServer ?? (target.registryValidationSkipped ? undefined : target.registry);
      if (loginServer === undefined) {
        throw new CredentialsError(
          'CONFIG_INVALID',
          fields,
          'registry validation was skipped for this host, so set loginServer to the real ACR login server; the Entra token is not sent to a gateway',
        );
      }
      const scope = options.scope ?? scopeFor(loginServer);
      let aad: string;
      try {
        const token = await credential.getToken(
          scope,
          signal === undefined ? {} : { abortSignal: signal },
        );
        if (!token?.token) throw new Error('no token');
        aad = token.token;
      } catch (err) {
        throw entraError(err, fields);
      }
      const tenant = options.tenantId ?? claims(aad)?.tid;
      if (typeof tenant !== 'string' || tenant === '') {
        throw new CredentialsError(
          'CONFIG_INVALID',
          fields,
          'the Entra token has no tenant (tid); set tenantId',
        );
      }
      let res: Response;
      try {
        res = await doFetch(`https://${loginServer}/oauth2/exchange`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({
            grant_type: 'access_token',
            service: loginServer,
            tenant,
            access_token: aad,
          }),
          redirect: 'error',
          ...(signal === undefined ? {} : { signal }),
        });
      } catch (err) {
        throw new CredentialsError(
          'PROVIDER_ERROR',
          fields,
          `cannot reach ${loginServer}/oauth2/exchange`,
          {
            cause: safeCause(err),
          },
        );
      }
      if (!res.ok) {
        await res.body?.cancel();
        const code: CredentialsErrorCode =
          res.status === 401 || res.status === 403
            ? 'ACCESS_DENIED'
            : res.status === 429
              ? 'THROTTLED'
              : 'PROVIDER_ERROR';
        const hint = code === 'ACCESS_DENIED' ? '; the identity needs AcrPull on the registry' : '';
        throw new CredentialsError(
          code,
          fields,
          `${loginServer} refused the token exchange (${res.status})${hint}`,
        );
      }
      let refresh: unknown;
      try {
        refresh = ((await res.json()) as { refresh_token?: unknown }).refresh_token;
      } catch {
        throw new CredentialsError(
          'INVALID_RESPONSE',
          fields,
          'the token exchange answer is not JSON',
        );
      }
      if (typeof refresh !== 'string' || refresh === '') {
        throw new CredentialsError(
          'INVALID_RESPONSE',
          fields,
          'the token exchange returned no refresh_token',
        );
      }
      const exp = claims(refresh)?.exp;
      if (typeof exp !== 'number') {
        throw new CredentialsError(
          'INVALID_RESPONSE',
          fields,
          'the ACR refresh token has no exp claim',
        );
      }
      return {
        username: ACR_REFRESH_TOKEN_USERNAME,
        password: refresh,
        expiresAt: new Date(exp * 1000),
      };
    },
  };
}

async function buildCredential(options: AzureSourceOptions): Promise<TokenCredential> {
  const { DefaultAzureCredential, ManagedIdentityCredential, WorkloadIdentityCredential } =
    await import('@azure/identity');
  const common = {
    ...(options.tenantId === undefined ? {} : { tenantId: options.tenantId }),
    ...(options.authorityHost === undefined ? {} : { authorityHost: options.authorityHost }),
    ...(options.disableInstanceDiscovery === undefined
      ? {}
      : { disableInstanceDiscovery: options.disableInstanceDiscovery }),
  };
  switch (options.identity ?? 'default') {
    case 'workload-identity':
      return new WorkloadIdentityCredential({
        ...common,
        ...(options.clientId === undefined ? {} : { clientId: options.clientId }),
      });
    case 'managed-identity':
      return options.clientId === undefined
        ? new ManagedIdentityCredential()
        : new ManagedIdentityCredential({ clientId: options.clientId });
    case 'default':
      return new DefaultAzureCredential({
        ...common,
        ...(options.clientId === undefined
          ? {}
          : {
              managedIdentityClientId: options.clientId,
              workloadIdentityClientId: options.clientId,
            }),
      });
    default:
      throw new TypeError(`identity must be default, workload-identity or managed-identity`);
  }
}

/** A bare `host[:port]` by the reference grammar of @org/registry-domains. */
function isHostPort(value: string): boolean {
  if (typeof value !== 'string' || value.includes('/')) return false;
  try {
    return registryHostOf(value) === value;
  } catch {
    return false;
  }
}

/** The Entra scope for a login server's cloud. */
export function scopeFor(loginServer: string): string {
  const host = loginServer.replace(/:\d+$/, '');
  return (
    SCOPE_BY_SUFFIX.find(([suffix]) => host.endsWith(suffix))?.[1] ??
    'https://containerregistry.azure.net/.default'
  );
}

/** A JWT's claims, unverified (we only read what a token says about itself). */
function claims(jwt: string): Record<string, unknown> | undefined {
  try {
    const payload = JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8'));
    return payload !== null && typeof payload === 'object' ? payload : undefined;
  } catch {
    return undefined;
  }
}

function entraError(
  err: unknown,
  fields: { provider: string; registry: string },
): CredentialsError {
  const name = err instanceof Error ? err.name : '';
  const message = err instanceof Error ? err.message : '';
  if (name === 'CredentialUnavailableError' || /CredentialUnavailable/.test(message)) {
    return new CredentialsError(
      'CREDENTIALS_UNAVAILABLE',
      fields,
      'no Entra credential available (environment service principal, AKS workload identity, managed identity, Azure CLI)',
      { cause: safeCause(err) },
    );
  }
  if (
    name === 'AuthenticationRequiredError' ||
    name === 'AuthenticationError' ||
    /AADSTS|invalid_client|unauthorized/i.test(message)
  ) {
    return new CredentialsError('ACCESS_DENIED', fields, 'Entra refused to issue a token', {
      cause: safeCause(err),
    });
  }
  return new CredentialsError('PROVIDER_ERROR', fields, 'Entra did not issue a token', {
    cause: safeCause(err),
  });
}
