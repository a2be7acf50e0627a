import { createHash, createHmac } from 'node:crypto';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';

/** The request our proxy replays to STS: what the `_aws` password decodes to for aws-iam. */
export interface AwsIamLoginPassword {
  readonly method: 'POST';
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** The header naming the proxy the request is for, signed so it cannot be replayed elsewhere. */
export const AWS_IAM_SERVER_ID_HEADER = 'x-registry-proxy-server-id';
export const GET_CALLER_IDENTITY_BODY = 'Action=GetCallerIdentity&Version=2011-06-15';

/** SHA-256 (and HMAC-SHA-256 with a secret) for the signer, from node:crypto. */
type Data = string | ArrayBuffer | ArrayBufferView;
const bytes = (d: Data): Buffer | string =>
  typeof d === 'string'
    ? d
    : ArrayBuffer.isView(d)
      ? Buffer.from(d.buffer, d.byteOffset, d.byteLength)
      : Buffer.from(d);

class Sha256 {
  readonly #secret: Buffer | string | undefined;
  #hash: ReturnType<typeof createHash> | ReturnType<typeof createHmac>;
  constructor(secret?: Data) {
    this.#secret = secret === undefined ? undefined : bytes(secret);
    this.#hash =
      this.#secret === undefined ? createHash('sha256') : createHmac('sha256', this.#secret);
  }
  update(data: Data): void {
    this.#hash.update(bytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.#hash.digest());
  }
  reset(): void {
    this.#hash =
      this.#secret === undefined ? createHash('sha256') : createHmac('sha256', this.#secret);
  }
}

export interface AwsIamLoginOptions {
  /** Our proxy's id (its host name, e.g. `docker.example.com`), signed into the request. */
  readonly serverId: string;
  /** STS region. Default `us-east-1` with the global endpoint. */
  readonly region?: string;
  /** STS endpoint. Default `https://sts.amazonaws.com` (or `https://sts.<region>.amazonaws.com`). */
  readonly endpoint?: string;
  /** AWS credentials. Default: the SDK's default chain (IRSA, Pod Identity, IMDS, ...). */
  readonly credentials?: AwsCredentialIdentity | AwsCredentialIdentityProvider;
  readonly now?: () => number;
}

/**
 * A SigV4-signed `sts:GetCallerIdentity` request, not sent: the node hands it to our proxy as its
 * password (username `_aws`), and the proxy sends it to STS, which answers with the node's ARN.
 * The signature covers the proxy's id header, so another service cannot replay it, and STS
 * refuses it after 15 minutes. Credentials never leave the node.
 */
export async function signAwsIamLogin(options: AwsIamLoginOptions): Promise<AwsIamLoginPassword> {
  if (typeof options.serverId !== 'string' || options.serverId === '')
    throw new TypeError('aws-iam needs a serverId (the proxy host name, e.g. docker.example.com)');
  const region = options.region ?? 'us-east-1';
  const endpoint = new URL(
    options.endpoint ??
      (options.region ? `https://sts.${region}.amazonaws.com` : 'https://sts.amazonaws.com'),
  );
  // Loaded here, not at start: only nodes that log in this way need the AWS SDK.
  const { SignatureV4 } = await import('@smithy/signature-v4');
  const credentials =
    options.credentials ?? (await import('@aws-sdk/credential-providers')).fromNodeProviderChain();
  const signer = new SignatureV4({
    credentials,
    region,
    service: 'sts',
    sha256: Sha256,
    uriEscapePath: true,
  });
  const now = options.now ?? Date.now;
  const signed = await signer.sign(
    {
      method: 'POST',
      protocol: endpoint.protocol,
      hostname: endpoint.hostname,
      ...(endpoint.port ? { port: Number(endpoint.port) } : {}),
      path: '/',
      query: {},
      headers: {
        host: endpoint.host,
        'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
        [AWS_IAM_SERVER_ID_HEADER]: options.serverId,
      },
      body: GET_CALLER_IDENTITY_BODY,
    },
    { signingDate: new Date(now()) },
  );
  return {
    method: 'POST',
    url: `${endpoint.origin}/`,
    headers: Object.fromEntries(
      Object.entries(signed.headers).map(([k, v]) => [k.toLowerCase(), String(v)]),
    ),
    body: GET_CALLER_IDENTITY_BODY,
  };
}
