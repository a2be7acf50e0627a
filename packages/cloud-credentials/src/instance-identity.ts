import {
  type AwsIamLoginOptions,
  type AwsIamLoginPassword,
  signAwsIamLogin,
} from './aws-iam-login.js';
import { CredentialsError } from './errors.js';
import { identityOf } from './identity.js';
import { safeCause } from './sanitize.js';
import type { CredentialSource, CredentialTarget, RegistryCredentials } from './types.js';

/** Usernames that tell our proxy which kind of instance identity the password carries. */
export const INSTANCE_IDENTITY_USERNAMES = { gcp: '_gcp', aws: '_aws' } as const;

export interface InstanceIdentityOptions {
  /**
   * `gcp`: a Google-signed identity token; `aws`: the EC2 instance identity document, signed;
   * `aws-iam`: a signed, unsent `sts:GetCallerIdentity` request (the strong AWS method: works for
   * any AWS credentials, IRSA and Pod Identity included, and expires in 15 minutes).
   */
  readonly kind: 'gcp' | 'aws' | 'aws-iam';
  /**
   * gcp: the audience the token is for (our proxy, e.g. `docker.example.com`); aws-iam: the proxy
   * id signed into the request. Required for both.
   */
  readonly audience?: string;
  /** aws-iam: STS region (default: the global endpoint, us-east-1). */
  readonly region?: string;
  /** aws-iam: STS endpoint override. */
  readonly stsEndpoint?: string;
  /** aws-iam: AWS credentials; default the SDK's chain. */
  readonly credentials?: AwsIamLoginOptions['credentials'];
  /**
   * Metadata endpoint: default `http://metadata.google.internal` (gcp) or
   * `http://169.254.169.254` (aws). Apps pass GCE_METADATA_HOST / AWS_EC2_METADATA_SERVICE_ENDPOINT.
   */
  readonly endpoint?: string;
  /** aws: how long a fetched document is presented before fetching again. Default 10 minutes. */
  readonly documentTtlMs?: number;
  readonly fetch?: typeof fetch;
  readonly now?: () => number;
  /** Per request timeout. Default 5 s. */
  readonly timeoutMs?: number;
}

/** What the `_aws` password decodes to (base64url JSON). */
export interface AwsInstanceIdentityPassword {
  /** The identity document, exactly as IMDS served it. */
  readonly document: string;
  /** Its base64 SHA256-RSA signature (`/latest/dynamic/instance-identity/signature`). */
  readonly signature: string;
  /** Its PKCS#7 signature (`/latest/dynamic/instance-identity/rsa2048`), base64. */
  readonly rsa2048: string;
}

/**
 * The node's own identity, for logging in to **our** proxy (not a cloud registry): username
 * `_gcp` with a GCE identity token for `audience` (`format=full`, so it names project, zone and
 * instance), or `_aws` with the EC2 instance identity document and its PKCS#7 signature, fetched
 * over IMDSv2. The proxy verifies either against Google's or AWS's keys.
 */
export function createInstanceIdentitySource(options: InstanceIdentityOptions): CredentialSource {
  if (options.kind !== 'gcp' && options.kind !== 'aws' && options.kind !== 'aws-iam')
    throw new TypeError('kind must be gcp, aws or aws-iam');
  if (
    (options.kind === 'gcp' || options.kind === 'aws-iam') &&
    (typeof options.audience !== 'string' || options.audience === '')
  ) {
    throw new TypeError(`instance-identity ${options.kind} needs an audience`);
  }
  const endpoint = (
    options.endpoint ??
    (options.kind === 'gcp' ? 'http://metadata.google.internal' : 'http://169.254.169.254')
  ).replace(/\/+$/, '');
  const base = /^https?:\/\//.test(endpoint) ? endpoint : `http://${endpoint}`;
  new URL(base); // throws a TypeError for a malformed endpoint
  const doFetch = options.fetch ?? fetch;
  const now = options.now ?? Date.now;
  const timeoutMs = options.timeoutMs ?? 5000;
  const ttl = options.documentTtlMs ?? 10 * 60_000;

  const call = async (
    fields: { provider: string; registry: string },
    path: string,
    init: RequestInit,
  ): Promise<string> => {
    let res: Response;
    try {
      res = await doFetch(`${base}${path}`, {
        ...init,
        redirect: 'error',
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      throw new CredentialsError(
        'CREDENTIALS_UNAVAILABLE',
        fields,
        `the instance metadata service at ${base} did not answer; is this a ${options.kind === 'gcp' ? 'GCE/GKE' : 'EC2'} instance?`,
        { cause: safeCause(err) },
      );
    }
    const text = await res.text();
    if (!res.ok) {
      const code =
        res.status === 401 || res.status === 403
          ? 'ACCESS_DENIED'
          : res.status === 404
            ? 'CREDENTIALS_UNAVAILABLE'
            : 'PROVIDER_ERROR';
      throw new CredentialsError(
        code,
        fields,
        `the instance metadata service answered ${res.status} for ${path.split('?')[0]}`,
      );
    }
    return text;
  };

  return {
    kind: 'instance-identity',
    identity: identityOf('instance-identity', {
      kind: options.kind,
      audience: options.audience,
      endpoint: base,
      region: options.region,
      stsEndpoint: options.stsEndpoint,
    }),
    cacheable: true,
    async fetch(target: CredentialTarget): Promise<RegistryCredentials> {
      const fields = { provider: 'instance-identity', registry: target.registry };
      if (options.kind === 'aws-iam') {
        let signed: AwsIamLoginPassword;
        try {
          signed = await signAwsIamLogin({
            serverId: options.audience as string,
            ...(options.region ? { region: options.region } : {}),
            ...(options.stsEndpoint ? { endpoint: options.stsEndpoint } : {}),
            ...(options.credentials ? { credentials: options.credentials } : {}),
            now,
          });
        } catch (err) {
          throw new CredentialsError(
            'CREDENTIALS_UNAVAILABLE',
            fields,
            'no AWS credentials to sign the GetCallerIdentity login with',
            { cause: safeCause(err) },
          );
        }
        return {
          username: INSTANCE_IDENTITY_USERNAMES.aws,
          password: Buffer.from(JSON.stringify(signed)).toString('base64url'),
          // STS accepts a signed request for 15 minutes; present it for 5.
          expiresAt: new Date(now() + 5 * 60_000),
        };
      }
      if (options.kind === 'gcp') {
        const query = new URLSearchParams({ audience: options.audience as string, format: 'full' });
        const token = (
          await call(
            fields,
            `/computeMetadata/v1/instance/service-accounts/default/identity?${query}`,
            {
              headers: { 'metadata-flavor': 'Google' },
            },
          )
        ).trim();
        const exp = expOf(token);
        if (exp === undefined)
          throw new CredentialsError(
            'INVALID_RESPONSE',
            fields,
            'the identity token is not a JWT with exp',
          );
        return {
          username: INSTANCE_IDENTITY_USERNAMES.gcp,
          password: token,
          expiresAt: new Date(exp * 1000),
        };
      }
      const session = await call(fields, '/latest/api/token', {
        method: 'PUT',
        headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '300' },
      });
      const headers = { 'x-aws-ec2-metadata-token': session.trim() };
      const [document, signature, rsa2048] = await Promise.all([
        call(fields, '/latest/dynamic/instance-identity/document', { headers }),
        call(fields, '/latest/dynamic/instance-identity/signature', { headers }),
        call(fields, '/latest/dynamic/instance-identity/rsa2048', { headers }),
      ]);
      try {
        JSON.parse(document);
      } catch {
        throw new CredentialsError(
          'INVALID_RESPONSE',
          fields,
          'the instance identity document is not JSON',
        );
      }
      const password: AwsInstanceIdentityPassword = {
        document,
        signature: signature.replace(/\s+/g, ''),
        rsa2048: rsa2048.trim(),
      };
      return {
        username: INSTANCE_IDENTITY_USERNAMES.aws,
        password: Buffer.from(JSON.stringify(password)).toString('base64url'),
        expiresAt: new Date(now() + ttl),
      };
    },
  };
}

function expOf(jwt: string): number | undefined {
  try {
    const exp = JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')).exp;
    return typeof exp === 'number' ? exp : undefined;
  } catch {
    return undefined;
  }
}
