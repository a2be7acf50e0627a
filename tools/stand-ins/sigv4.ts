import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { Recorded } from './server.js';

export interface AwsKey {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

export type SigV4Check =
  | { ok: true; accessKeyId: string; region: string; service: string }
  | { ok: false; reason: string };

const sha256 = (data: string) => createHash('sha256').update(data, 'utf8').digest('hex');
const hmac = (key: Buffer | string, data: string) =>
  createHmac('sha256', key).update(data, 'utf8').digest();

/**
 * Verifies an AWS Signature Version 4 `Authorization` header on a received request, written from
 * the SigV4 specification (canonical request, string to sign, derived signing key), so the SDK
 * is checked by an implementation that is not its own.
 */
export function verifySigV4(req: Recorded, keys: readonly AwsKey[]): SigV4Check {
  const auth = req.headers.authorization ?? '';
  const m =
    /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(
      auth,
    );
  if (!m) return { ok: false, reason: 'no SigV4 Authorization header' };
  const [
    ,
    accessKeyId = '',
    date = '',
    region = '',
    service = '',
    signedHeaders = '',
    signature = '',
  ] = m;
  const key = keys.find((k) => k.accessKeyId === accessKeyId);
  if (!key) return { ok: false, reason: `unknown access key ${accessKeyId}` };
  const amzDate = String(req.headers['x-amz-date'] ?? '');
  if (!amzDate.startsWith(date))
    return { ok: false, reason: 'x-amz-date does not match the credential scope' };
  if (key.sessionToken !== undefined && req.headers['x-amz-security-token'] !== key.sessionToken) {
    return { ok: false, reason: 'missing or wrong x-amz-security-token' };
  }
  const names = signedHeaders.split(';');
  if (!names.includes('host')) return { ok: false, reason: 'host is not signed' };
  const canonicalHeaders = names
    .map((name) => {
      const value = req.headers[name];
      const text = Array.isArray(value) ? value.join(',') : (value ?? '');
      return `${name}:${text.trim().replace(/\s+/g, ' ')}\n`;
    })
    .join('');
  const query = [...req.url.searchParams.entries()]
    .map(([k, v]) => [encodeRfc3986(k), encodeRfc3986(v)] as const)
    .sort(([a, x], [b, y]) => (a === b ? (x < y ? -1 : 1) : a < b ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  const payloadHash = String(req.headers['x-amz-content-sha256'] ?? sha256(req.body));
  const canonicalRequest = [
    req.method,
    req.path,
    query,
    canonicalHeaders,
    signedHeaders,
    payloadHash,
  ].join('\n');
  const scope = `${date}/${region}/${service}/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonicalRequest)].join('\n');
  const signingKey = hmac(
    hmac(hmac(hmac(`AWS4${key.secretAccessKey}`, date), region), service),
    'aws4_request',
  );
  const expected = createHmac('sha256', signingKey).update(stringToSign, 'utf8').digest();
  const given = Buffer.from(signature, 'hex');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { ok: false, reason: 'signature does not match' };
  }
  return { ok: true, accessKeyId, region, service };
}

function encodeRfc3986(s: string): string {
  return encodeURIComponent(s).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}
