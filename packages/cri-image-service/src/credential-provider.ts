import type { RegistryAuth } from '@org/registry-auth';
import { registryHostOf } from '@org/registry-domains';
import { type Rule, RulesError, ruleFor } from './rules.js';

/** The API group kubelet speaks to exec credential plugins (KEP-2133). */
const GROUP = 'credentialprovider.kubelet.k8s.io';
const VERSIONS = new Set([`${GROUP}/v1`, `${GROUP}/v1beta1`, `${GROUP}/v1alpha1`]);
const INPUT_MAX = 1024 * 1024;
/** Credentials are handed out for their lifetime less this, so kubelet never holds stale ones. */
const EXPIRY_MARGIN_MS = 60_000;
/** Longest cacheDuration we give (static credentials have no expiry of their own). */
const CACHE_MAX_MS = 60 * 60_000;

export interface CredentialProviderResponse {
  readonly apiVersion: string;
  readonly kind: 'CredentialProviderResponse';
  readonly cacheKeyType: 'Registry' | 'Image';
  readonly cacheDuration: string;
  readonly auth: Record<string, { username: string; password: string }>;
}

/** A request kubelet would not send, or one we cannot answer: one line for stderr. */
export class CredentialProviderError extends Error {
  override readonly name = 'CredentialProviderError';
}

/**
 * One kubelet exec-plugin exchange: checks the `CredentialProviderRequest` JSON, finds the first
 * rule matching its image, gets credentials from @org/registry-auth and answers a
 * `CredentialProviderResponse` in the request's apiVersion: `auth` keyed by the image's registry
 * host, `cacheKeyType: Registry`, `cacheDuration` the credential's remaining life less a minute
 * (at most an hour). An image no rule matches gets no credentials and `cacheDuration: 0s`.
 *
 * @throws CredentialProviderError with a message naming the rule and provider, never a secret.
 */
export async function answerCredentialProviderRequest(
  input: string,
  rules: readonly Rule[],
  auth: RegistryAuth,
  now: () => number = Date.now,
): Promise<CredentialProviderResponse> {
  if (input.length > INPUT_MAX) throw new CredentialProviderError('the request is too large');
  let request: {
    apiVersion?: unknown;
    kind?: unknown;
    image?: unknown;
    serviceAccountToken?: unknown;
  };
  try {
    request = JSON.parse(input);
  } catch {
    throw new CredentialProviderError('the request on stdin is not JSON');
  }
  if (typeof request !== 'object' || request === null)
    throw new CredentialProviderError('the request on stdin is not a JSON object');
  if (request.kind !== 'CredentialProviderRequest')
    throw new CredentialProviderError('kind must be CredentialProviderRequest');
  if (typeof request.apiVersion !== 'string' || !VERSIONS.has(request.apiVersion))
    throw new CredentialProviderError(`apiVersion must be ${GROUP}/v1 (or v1beta1, v1alpha1)`);
  const image = request.image;
  if (typeof image !== 'string' || image === '' || image.length > 1024)
    throw new CredentialProviderError('image must be a non-empty string');
  let registry: string;
  try {
    registry = registryHostOf(image);
  } catch {
    throw new CredentialProviderError(
      `image ${JSON.stringify(image.slice(0, 256))} is not an image reference`,
    );
  }
  const found = ruleFor(rules, image);
  const response = (cacheDuration: string, entries: CredentialProviderResponse['auth']) =>
    ({
      apiVersion: request.apiVersion as string,
      kind: 'CredentialProviderResponse',
      cacheKeyType: 'Registry',
      cacheDuration,
      auth: entries,
    }) as const;
  if (found === undefined) return response('0s', {});
  const { credentials } = found.rule;
  if (credentials.provider === 'service-account-token') {
    const token = request.serviceAccountToken;
    if (typeof token !== 'string' || token === '')
      throw new CredentialProviderError(
        `rule ${found.index} (service-account-token) got no serviceAccountToken: kubelet sends one only when the provider's config has tokenAttributes (kubelet >= 1.33 with KubeletServiceAccountTokenForCredentialProviders)`,
      );
    const expiresAt = jwtExpiry(token);
    if (expiresAt === undefined)
      throw new CredentialProviderError(
        `rule ${found.index} (service-account-token): serviceAccountToken is not a JWT with an exp claim`,
      );
    return response(cacheDuration(expiresAt, now()), {
      [registry]: { username: credentials.username, password: token },
    });
  }
  let creds: Awaited<ReturnType<RegistryAuth['getCredentials']>>;
  try {
    creds = await auth.getCredentials(image, credentials);
  } catch (err) {
    throw new CredentialProviderError(
      `rule ${found.index} (${credentials.provider}) has no credentials for ${registry}: ${(err as Error).message.split('\n')[0]}`,
    );
  }
  return response(cacheDuration(creds.expiresAt.getTime(), now()), {
    [registry]: { username: creds.username, password: creds.password },
  });
}

/** How long kubelet may keep a credential expiring at `expiresAt`: its life less a margin, capped. */
function cacheDuration(expiresAt: number, now: number): string {
  const left = expiresAt - now - EXPIRY_MARGIN_MS;
  return `${Math.max(0, Math.floor(Math.min(left, CACHE_MAX_MS) / 1000))}s`;
}

/**
 * The `exp` of a JWT, in ms, read without checking the signature: only to say how long kubelet
 * may cache the token it gave us (the proxy verifies it). Undefined when it is not a JWT.
 */
function jwtExpiry(token: string): number | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || token.length > 16 * 1024) return undefined;
  try {
    const payload = JSON.parse(Buffer.from(parts[1] as string, 'base64url').toString('utf8')) as {
      exp?: unknown;
    };
    return typeof payload.exp === 'number' && Number.isFinite(payload.exp)
      ? payload.exp * 1000
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The kubelet `CredentialProviderConfig` that sends the rules' images to this plugin: one
 * provider named `name` whose `matchImages` are every rule's globs, in order. With
 * service-account-token rules it asks kubelet for the pod's token (`tokenAttributes`, cached
 * per service account); they must then share one audience, and pods without a service account
 * skip the plugin only when every rule needs one.
 *
 * @throws RulesError when service-account-token rules name different audiences.
 */
export function credentialProviderConfig(
  rules: readonly Rule[],
  name = 'kubelet-image-service',
): Record<string, unknown> {
  const audiences = new Set(
    rules.flatMap((r) =>
      r.credentials.provider === 'service-account-token' ? [r.credentials.audience] : [],
    ),
  );
  if (audiences.size > 1)
    throw new RulesError(
      `service-account-token rules name ${audiences.size} audiences (${[...audiences].join(', ')}); kubelet requests one token audience per provider`,
    );
  const [audience] = audiences;
  const tokenAttributes =
    audience === undefined
      ? {}
      : {
          tokenAttributes: {
            serviceAccountTokenAudience: audience,
            cacheType: 'ServiceAccount',
            requireServiceAccount: rules.every(
              (r) => r.credentials.provider === 'service-account-token',
            ),
          },
        };
  return {
    apiVersion: 'kubelet.config.k8s.io/v1',
    kind: 'CredentialProviderConfig',
    providers: [
      {
        name,
        matchImages: [...new Set(rules.flatMap((r) => r.match))],
        defaultCacheDuration: '5m',
        apiVersion: `${GROUP}/v1`,
        args: ['credential-provider', '--config', '/etc/kubelet-image-service/rules.yaml'],
        ...tokenAttributes,
      },
    ],
  };
}
