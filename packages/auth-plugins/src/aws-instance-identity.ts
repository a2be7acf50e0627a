import { createVerify, X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkAwsAccounts } from './aws-iam.js';
import type { AuthPlugin, AuthResult, Identity } from './plugin.js';
import { globToRegExp } from './policy.js';

export interface AwsInstanceIdentityOptions {
  readonly name: string;
  /** AWS accounts whose instances may log in (12 digits). Required. */
  readonly accounts: readonly string[];
  /** Regions accepted; absent: any region we hold a certificate for. */
  readonly regions?: readonly string[];
  /** Globs over the instance id (`i-0abc*`); absent: any. */
  readonly instanceIds?: readonly string[];
  /**
   * PEM files of public certificates for the base64 `signature` of the identity document, by
   * region (`"*"`: every region not named), merged over the ones shipped in `data/` (AWS's, see
   * {@link shippedAwsSignatureCertificates}): override a region, add one AWS opens later, or set
   * a test certificate.
   */
  readonly certificates?: Readonly<Record<string, string>>;
  /** Leave the shipped AWS certificates out (only `certificates` count). Default false. */
  readonly withoutShippedCertificates?: boolean;
}

/** What the `_aws` password of this method decodes to (base64url JSON). */
interface Presented {
  readonly document?: unknown;
  readonly signature?: unknown;
}

interface Document {
  readonly accountId?: unknown;
  readonly region?: unknown;
  readonly instanceId?: unknown;
  readonly imageId?: unknown;
  readonly instanceType?: unknown;
  readonly availabilityZone?: unknown;
  readonly privateIp?: unknown;
  readonly pendingTime?: unknown;
}

const PASSWORD_MAX = 16 * 1024;
const SHIPPED = fileURLToPath(new URL('../data/aws-iid-signature/', import.meta.url));

/**
 * The certificates AWS publishes for the base64 `signature` of instance identity documents
 * (EC2 user guide, "AWS public certificates" for the RSA type), one `<region>.pem` per region,
 * shipped in this package's `data/aws-iid-signature/`: region -> file.
 */
export function shippedAwsSignatureCertificates(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const file of readdirSync(SHIPPED)) {
    if (file.endsWith('.pem')) out[file.slice(0, -4)] = join(SHIPPED, file);
  }
  return out;
}

/**
 * EC2 nodes logging in with their instance identity document and its signature (username
 * `_aws`, the seed's method): the SHA256-RSA `signature` is checked with AWS's public
 * certificate for the document's region, then the account (required), region and instance id
 * allow-lists. The identity is `<name>:<accountId>/<instanceId>`.
 *
 * Such documents do not expire and carry no audience: anyone who once read one from the
 * instance (any process on it, a log, a crash dump) can replay it to us for as long as the
 * instance id is allowed. Prefer aws-iam (a signed GetCallerIdentity bound to our server id and
 * refused by STS after 15 minutes).
 */
export function createAwsInstanceIdentityPlugin(options: AwsInstanceIdentityOptions): AuthPlugin {
  const { name } = options;
  if (typeof name !== 'string' || name === '')
    throw new TypeError('aws-instance-identity: name is required');
  checkAwsAccounts(name, options.accounts);
  const certificates = new Map<string, string>();
  const files = {
    ...(options.withoutShippedCertificates ? {} : shippedAwsSignatureCertificates()),
    ...options.certificates,
  };
  for (const [region, file] of Object.entries(files)) {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(readFileSync(file));
    } catch {
      throw new TypeError(
        `${name}.certificates.${region}: ${file} is not a readable PEM certificate`,
      );
    }
    if (cert.publicKey.asymmetricKeyType !== 'rsa')
      throw new TypeError(`${name}.certificates.${region}: an RSA certificate is needed`);
    // The public key is what verifies; AWS's certificates are long past notAfter and still used.
    certificates.set(region, cert.publicKey.export({ type: 'spki', format: 'pem' }).toString());
  }
  if (certificates.size === 0)
    throw new TypeError(`${name}.certificates: at least one region's certificate`);
  const accounts = new Set(options.accounts);
  const regions = options.regions ? new Set(options.regions) : undefined;
  const instanceIds = options.instanceIds?.map(globToRegExp);

  return {
    name,
    type: 'aws-instance-identity',
    family: 'aws',
    async authenticate(login): Promise<AuthResult> {
      const refuse = (): AuthResult => ({ ok: false, reason: 'BAD_PASSWORD' });
      if (login.password.length > PASSWORD_MAX) return refuse();
      let presented: Presented;
      try {
        presented = JSON.parse(Buffer.from(login.password, 'base64url').toString('utf8'));
      } catch {
        return { ok: false, reason: 'NOT_FOR_THIS_PLUGIN' };
      }
      if (typeof presented !== 'object' || presented === null || presented.document === undefined)
        return { ok: false, reason: 'NOT_FOR_THIS_PLUGIN' }; // e.g. an aws-iam request
      const { document: text, signature } = presented;
      if (typeof text !== 'string' || typeof signature !== 'string') return refuse();
      let doc: Document;
      try {
        doc = JSON.parse(text);
      } catch {
        return refuse();
      }
      const { accountId, region, instanceId } = doc;
      if (
        typeof accountId !== 'string' ||
        typeof region !== 'string' ||
        typeof instanceId !== 'string'
      )
        return refuse();
      const key = certificates.get(region) ?? certificates.get('*');
      if (key === undefined) return refuse();
      const verifier = createVerify('RSA-SHA256');
      verifier.update(text);
      if (!verifier.verify(key, signature.replace(/\s+/g, ''), 'base64')) return refuse();
      if (!accounts.has(accountId)) return refuse();
      if (regions && !regions.has(region)) return refuse();
      if (instanceIds && !instanceIds.some((re) => re.test(instanceId))) return refuse();
      const claims: Record<string, unknown> = {};
      for (const field of [
        'accountId',
        'region',
        'instanceId',
        'imageId',
        'instanceType',
        'availabilityZone',
        'privateIp',
        'pendingTime',
      ] as const) {
        if (typeof doc[field] === 'string') claims[field] = doc[field];
      }
      const identity: Identity = {
        plugin: name,
        subject: `${accountId}/${instanceId}`,
        groups: [],
        claims,
      };
      return { ok: true, identity };
    },
  };
}
