import type { ECRClient, ECRClientConfig } from '@aws-sdk/client-ecr';
import type { ECRPUBLICClient } from '@aws-sdk/client-ecr-public';
import type { AwsCredentialIdentityProvider } from '@smithy/types';
import { CredentialsError, type CredentialsErrorCode } from './errors.js';
import { identityOf } from './identity.js';
import { safeCause, statusOf } from './sanitize.js';
import type { CredentialSource, CredentialTarget, RegistryCredentials } from './types.js';

export interface AwsSourceOptions {
  /**
   * AWS credentials. Default: the SDK's default chain (environment, shared config and SSO,
   * web identity / IRSA, EKS Pod Identity and ECS container credentials, IMDSv2).
   */
  readonly credentials?: ECRClientConfig['credentials'];
  /** `registryIds` for GetAuthorizationToken (other accounts' registries). */
  readonly registryIds?: readonly string[];
  /** SDK attempts per call, retries included. Default the SDK's (3). */
  readonly maxAttempts?: number;
  /** ECR API endpoint instead of the regional one (a VPC interface endpoint). */
  readonly endpoint?: string;
  /** ECR Public API endpoint instead of `api.ecr-public.us-east-1.amazonaws.com`. */
  readonly publicEndpoint?: string;
  /** The SDK HTTP handler (proxies, custom agents). */
  readonly requestHandler?: ECRClientConfig['requestHandler'];
}

/** ECR Public's API lives in us-east-1 only. */
const ECR_PUBLIC_REGION = 'us-east-1';

/**
 * AWS ECR registries through `ecr:GetAuthorizationToken` (private, in the host's region, on the
 * FIPS endpoint for `ecr-fips` hosts) or `ecr-public:GetAuthorizationToken` (public.ecr.aws,
 * always us-east-1, which also needs `sts:GetServiceBearerToken`). The token is base64
 * `AWS:<password>`; it expires after 12 hours.
 *
 * @example
 * const aws = createAwsSource({});
 * await aws.fetch(validateRegistry('aws', '123456789012.dkr.ecr.eu-west-1.amazonaws.com'));
 */
export function createAwsSource(options: AwsSourceOptions = {}): CredentialSource {
  if (options.registryIds !== undefined) {
    for (const id of options.registryIds) {
      if (!/^\d{12}$/.test(id))
        throw new TypeError(`registryIds: ${JSON.stringify(id)} is not a 12-digit account id`);
    }
  }
  if (
    options.maxAttempts !== undefined &&
    !(Number.isInteger(options.maxAttempts) && options.maxAttempts >= 1)
  ) {
    throw new TypeError('maxAttempts must be a positive integer');
  }
  // The AWS SDK is loaded on first use: most processes never need it (see README). The default
  // chain is made once and kept, so its own caching of credentials holds.
  let chain: Promise<AwsCredentialIdentityProvider> | undefined;
  const lazyChain: AwsCredentialIdentityProvider = async (props) => {
    chain ??= import('@aws-sdk/credential-providers').then((m) => m.fromNodeProviderChain());
    return (await chain)(props);
  };
  const credentials = options.credentials ?? lazyChain;
  const common = {
    credentials,
    ...(options.maxAttempts === undefined ? {} : { maxAttempts: options.maxAttempts }),
    ...(options.requestHandler === undefined ? {} : { requestHandler: options.requestHandler }),
  };
  const privateClients = new Map<string, ECRClient>();
  let publicClient: ECRPUBLICClient | undefined;

  const privateClient = async (region: string, fips: boolean): Promise<ECRClient> => {
    const key = `${region}|${fips}`;
    let client = privateClients.get(key);
    if (!client) {
      const { ECRClient } = await import('@aws-sdk/client-ecr');
      client = new ECRClient({
        ...common,
        region,
        useFipsEndpoint: fips,
        ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      });
      privateClients.set(key, client);
    }
    return client;
  };

  return {
    kind: 'aws',
    identity: identityOf('aws', {
      registryIds: options.registryIds,
      endpoint: options.endpoint,
      publicEndpoint: options.publicEndpoint,
      credentials: credentialIdentity(options.credentials),
      requestHandler: options.requestHandler,
    }),
    cacheable: true,
    async fetch(target: CredentialTarget): Promise<RegistryCredentials> {
      const fields = { provider: 'aws', registry: target.registry };
      if (target.public) {
        const sdk = await import('@aws-sdk/client-ecr-public');
        publicClient ??= new sdk.ECRPUBLICClient({
          ...common,
          region: ECR_PUBLIC_REGION,
          ...(options.publicEndpoint === undefined ? {} : { endpoint: options.publicEndpoint }),
        });
        let data:
          | { authorizationToken?: string | undefined; expiresAt?: Date | undefined }
          | undefined;
        try {
          data = (await publicClient.send(new sdk.GetAuthorizationTokenCommand({})))
            .authorizationData;
        } catch (err) {
          throw awsError(
            err,
            fields,
            'ecr-public:GetAuthorizationToken and sts:GetServiceBearerToken',
          );
        }
        return decode(data, fields);
      }
      if (!target.region) {
        throw new CredentialsError(
          'CONFIG_INVALID',
          fields,
          'no AWS region: the registry host does not say it, so give the region option',
        );
      }
      let entries:
        | Array<{
            authorizationToken?: string | undefined;
            expiresAt?: Date | undefined;
            proxyEndpoint?: string | undefined;
          }>
        | undefined;
      try {
        const { GetAuthorizationTokenCommand } = await import('@aws-sdk/client-ecr');
        const out = await (await privateClient(target.region, target.fips === true)).send(
          new GetAuthorizationTokenCommand(
            options.registryIds ? { registryIds: [...options.registryIds] } : {},
          ),
        );
        entries = out.authorizationData;
      } catch (err) {
        throw awsError(err, fields, 'ecr:GetAuthorizationToken');
      }
      const entry =
        entries?.find((e) => e.proxyEndpoint?.replace(/^https?:\/\//, '') === target.registry) ??
        entries?.[0];
      return decode(entry, fields);
    },
  };
}

/**
 * What identifies AWS credentials: the keys of static ones (the SDK adds bookkeeping fields to
 * the object it is given, so the object as a whole is not stable), a provider by object.
 */
function credentialIdentity(credentials: AwsSourceOptions['credentials']): unknown {
  if (credentials === undefined) return 'default chain';
  if (typeof credentials === 'function') return credentials;
  const { accessKeyId, secretAccessKey, sessionToken } = credentials;
  return { accessKeyId, secretAccessKey, sessionToken };
}

function decode(
  data: { authorizationToken?: string | undefined; expiresAt?: Date | undefined } | undefined,
  fields: { provider: string; registry: string },
): RegistryCredentials {
  const token = data?.authorizationToken;
  if (!token)
    throw new CredentialsError(
      'INVALID_RESPONSE',
      fields,
      'GetAuthorizationToken returned no authorization data',
    );
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(token)) {
    throw new CredentialsError('INVALID_RESPONSE', fields, 'the authorization token is not base64');
  }
  const decoded = Buffer.from(token, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0 || colon === decoded.length - 1) {
    throw new CredentialsError(
      'INVALID_RESPONSE',
      fields,
      'the authorization token is not "user:password"',
    );
  }
  const expiresAt = data?.expiresAt;
  if (!(expiresAt instanceof Date) || Number.isNaN(expiresAt.getTime())) {
    throw new CredentialsError('INVALID_RESPONSE', fields, 'the authorization data has no expiry');
  }
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1), expiresAt };
}

function awsError(
  err: unknown,
  fields: { provider: string; registry: string },
  permission: string,
): CredentialsError {
  const name = err instanceof Error ? err.name : '';
  const status = statusOf(err);
  let code: CredentialsErrorCode = 'PROVIDER_ERROR';
  let hint = `AWS answered ${status ?? name}`;
  if (
    name === 'CredentialsProviderError' ||
    /Could not load credentials/i.test(String((err as Error)?.message))
  ) {
    code = 'CREDENTIALS_UNAVAILABLE';
    hint =
      'no AWS credentials found (environment, shared config, web identity, EKS Pod Identity, container credentials, IMDS)';
  } else if (
    /AccessDenied|UnrecognizedClient|InvalidSignature|ExpiredToken|InvalidClientTokenId|SignatureDoesNotMatch|NotAuthorized/.test(
      name,
    ) ||
    status === 401 ||
    status === 403
  ) {
    code = 'ACCESS_DENIED';
    hint = `AWS refused (${name || status}); the identity needs ${permission}`;
  } else if (/Throttl|TooManyRequests|RequestLimitExceeded/.test(name) || status === 429) {
    code = 'THROTTLED';
    hint = `AWS is throttling (${name || status})`;
  } else if (
    name === 'SyntaxError' ||
    /Deserializ|Unexpected end of JSON|JSON/.test(String((err as Error)?.message))
  ) {
    code = 'INVALID_RESPONSE';
    hint = 'AWS sent an answer that could not be parsed';
  }
  return new CredentialsError(code, fields, hint, { cause: safeCause(err) });
}
