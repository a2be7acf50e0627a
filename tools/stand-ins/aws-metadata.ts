import { readFileSync } from 'node:fs';
import { json, type StandIn, startStandIn } from './server.js';
import type { AwsKey } from './sigv4.js';

export interface ImdsStandIn extends StandIn {
  /** Session tokens issued by PUT /latest/api/token. */
  readonly tokens: string[];
}

/**
 * EC2 instance metadata, IMDSv2 only: `PUT /latest/api/token` with a TTL header first, then
 * every GET must carry `X-aws-ec2-metadata-token` (401 otherwise, as on a v2-only instance).
 * Serves role credentials and the instance identity document with its signatures.
 */
export async function startImds(options: {
  role?: string;
  key?: AwsKey & { expiration?: Date };
  identityDocument?: Record<string, unknown>;
  /** Makes the base64 `signature` of the document (e.g. RSA-SHA256 with a test key). */
  signIdentityDocument?: (document: string) => string;
}): Promise<ImdsStandIn> {
  const tokens: string[] = [];
  const role = options.role ?? 'node-role';
  const doc = JSON.stringify(
    options.identityDocument ?? {
      accountId: '123456789012',
      architecture: 'x86_64',
      availabilityZone: 'eu-west-1a',
      imageId: 'ami-0123456789abcdef0',
      instanceId: 'i-0123456789abcdef0',
      instanceType: 'm7g.large',
      pendingTime: '2026-11-01T00:00:00Z',
      privateIp: '10.0.0.12',
      region: 'eu-west-1',
      version: '2017-09-30',
    },
    null,
    2,
  );
  const standIn = await startStandIn((req, res) => {
    if (req.method === 'PUT' && req.path === '/latest/api/token') {
      const ttl = Number(req.headers['x-aws-ec2-metadata-token-ttl-seconds']);
      if (!(ttl >= 1 && ttl <= 21600)) {
        res.writeHead(400);
        res.end();
        return;
      }
      const token = `imds-token-${tokens.length + 1}`;
      tokens.push(token);
      res.writeHead(200, {
        'content-type': 'text/plain',
        'x-aws-ec2-metadata-token-ttl-seconds': String(ttl),
      });
      res.end(token);
      return;
    }
    if (req.method !== 'GET' || !tokens.includes(String(req.headers['x-aws-ec2-metadata-token']))) {
      res.writeHead(401);
      res.end();
      return;
    }
    const text = (body: string) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(body);
    };
    switch (req.path) {
      case '/latest/meta-data/iam/security-credentials/':
      case '/latest/meta-data/iam/security-credentials-extended/':
        return options.key ? text(role) : void res.writeHead(404).end();
      case `/latest/meta-data/iam/security-credentials/${role}`:
      case `/latest/meta-data/iam/security-credentials-extended/${role}`:
        if (!options.key) return void res.writeHead(404).end();
        return json(res, 200, {
          Code: 'Success',
          LastUpdated: new Date().toISOString(),
          Type: 'AWS-HMAC',
          AccessKeyId: options.key.accessKeyId,
          SecretAccessKey: options.key.secretAccessKey,
          Token: options.key.sessionToken,
          Expiration: (options.key.expiration ?? new Date(Date.now() + 6 * 3600_000)).toISOString(),
        });
      case '/latest/dynamic/instance-identity/document':
        return text(doc);
      case '/latest/dynamic/instance-identity/signature':
        return text(
          options.signIdentityDocument?.(doc) ??
            `signature-of:${Buffer.from(doc).toString('base64').slice(0, 16)}`,
        );
      case '/latest/dynamic/instance-identity/rsa2048':
      case '/latest/dynamic/instance-identity/pkcs7':
        return text(`pkcs7-of:${Buffer.from(doc).toString('base64').slice(0, 16)}`);
      default:
        res.writeHead(404);
        res.end();
    }
  });
  return Object.defineProperty(standIn, 'tokens', { value: tokens }) as ImdsStandIn;
}

/**
 * The EKS Pod Identity agent / container credentials endpoint
 * (AWS_CONTAINER_CREDENTIALS_FULL_URI): the `Authorization` header must equal the token in
 * AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE.
 */
export async function startPodIdentityAgent(options: {
  key: AwsKey;
  tokenFile: string;
}): Promise<StandIn> {
  return startStandIn((req, res) => {
    const expected = readFileSync(options.tokenFile, 'utf8').trim();
    if (req.headers.authorization !== expected) {
      json(res, 401, { message: 'stand-in: wrong pod identity token' });
      return;
    }
    json(res, 200, {
      AccessKeyId: options.key.accessKeyId,
      SecretAccessKey: options.key.secretAccessKey,
      Token: options.key.sessionToken,
      AccountId: '123456789012',
      Expiration: new Date(Date.now() + 6 * 3600_000).toISOString(),
    });
  });
}
