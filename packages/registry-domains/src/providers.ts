import { InvalidReferenceError } from './errors.js';
import { isDomain, parseImageReference } from './reference.js';

/** A cloud whose registries we can get credentials for. */
export type CloudProvider = 'gcp' | 'aws' | 'azure';

/** The AWS partition an ECR host belongs to (the SDK's partition ids). */
export type AwsPartition =
  | 'aws'
  | 'aws-us-gov'
  | 'aws-cn'
  | 'aws-eusc'
  | 'aws-iso'
  | 'aws-iso-b'
  | 'aws-iso-e'
  | 'aws-iso-f';

/** What a registry host says about the cloud behind it. */
export interface ProviderMatch {
  readonly provider: CloudProvider;
  /** The registry host as matched (lowercase), with its port if it had one. */
  readonly registry: string;
  /** AWS region; GCP Artifact Registry location (`europe-west1`, `us`); absent when unknown. */
  readonly region?: string;
  /** `public.ecr.aws` (ECR Public, always `us-east-1`). */
  readonly public?: boolean;
  /** An ECR FIPS endpoint (`dkr.ecr-fips`, `dkr-ecr-fips`). */
  readonly fips?: boolean;
  /** The 12-digit AWS account of a private ECR registry. */
  readonly accountId?: string;
  /** The AWS partition of an ECR registry. */
  readonly partition?: AwsPartition;
  /** An ECR dual-stack (IPv6) host: `*.on.aws`, `*.on.amazonwebservices.com.cn`, `ecr-public.aws.com`. */
  readonly dualStack?: boolean;
  /** Set when the host was accepted only because registry validation was skipped. */
  readonly registryValidationSkipped?: true;
}

/** The host patterns each provider is recognised by, as shown in errors and docs. */
export const PROVIDER_HOST_PATTERNS: Readonly<Record<CloudProvider, readonly string[]>> = {
  gcp: [
    'gcr.io',
    '*.gcr.io',
    '<location>-docker.pkg.dev',
    'docker.s3nsregistry.fr',
    '<location>-docker.s3nsregistry.fr',
  ],
  aws: [
    '<account>.dkr.ecr[-fips].<region>.amazonaws.com',
    '<account>.dkr.ecr.<region>.amazonaws.com.cn',
    '<account>.dkr.ecr.<region>.amazonaws.eu',
    '<account>.dkr-ecr[-fips].<region>.on.aws',
    '<account>.dkr.ecr.<region>.on.amazonwebservices.com.cn',
    '<account>.dkr.ecr.<region>.{c2s.ic.gov,sc2s.sgov.gov,cloud.adc-e.uk,csp.hci.ic.gov}',
    'public.ecr.aws',
    'ecr-public.aws.com',
  ],
  azure: ['*.azurecr.io', '*.azurecr.cn', '*.azurecr.us', '*.azurecr.de'],
};

/**
 * Private ECR hosts, as amazon-ecr-credential-helper recognises them (2025-11): account,
 * `dkr.ecr` or `dkr-ecr`, optional `-fips`, region, and a partition's DNS suffix.
 */
const ECR_HOST =
  /^(\d{12})\.dkr[.-]ecr(-fips)?\.([a-z0-9][a-z0-9_-]*)\.(amazonaws\.com|amazonaws\.com\.cn|amazonaws\.eu|on\.aws|on\.amazonwebservices\.com\.cn|c2s\.ic\.gov|sc2s\.sgov\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov)$/;

const ECR_SUFFIX_PARTITION: Readonly<Record<string, AwsPartition>> = {
  'amazonaws.com': 'aws',
  'on.aws': 'aws',
  'amazonaws.com.cn': 'aws-cn',
  'on.amazonwebservices.com.cn': 'aws-cn',
  'amazonaws.eu': 'aws-eusc',
  'c2s.ic.gov': 'aws-iso',
  'sc2s.sgov.gov': 'aws-iso-b',
  'cloud.adc-e.uk': 'aws-iso-e',
  'csp.hci.ic.gov': 'aws-iso-f',
};

const PKG_DEV = '-docker.pkg.dev';
const S3NS = 'docker.s3nsregistry.fr';

/**
 * The registry host (with port) that `registryOrImage` names: input with a `/` is an image
 * reference (normalised like docker does), input without one is a bare `host[:port]`.
 *
 * @throws InvalidReferenceError when it is neither.
 */
export function registryHostOf(registryOrImage: string): string {
  if (typeof registryOrImage !== 'string') {
    throw new TypeError(`registry must be a string, got ${typeof registryOrImage}`);
  }
  if (registryOrImage.indexOf('/') !== -1) return parseImageReference(registryOrImage).registry;
  if (!isDomain(registryOrImage)) {
    throw new InvalidReferenceError(
      'DOMAIN_INVALID',
      registryOrImage,
      'not a registry host[:port] or an image reference',
    );
  }
  return registryOrImage;
}

/**
 * Which cloud's registry `registryOrImage` is, from its host alone; `undefined` for any other
 * registry. Hosts that only resemble a cloud's (`gcr.io.evil.com`, `evil-gcr.io`) do not match.
 *
 * @throws InvalidReferenceError when the input is not a valid host or image reference.
 * @example
 * detectProvider('123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:v1');
 * // { provider: 'aws', registry: '123456789012.dkr.ecr.eu-west-1.amazonaws.com',
 * //   region: 'eu-west-1', accountId: '123456789012', partition: 'aws', fips: false, ... }
 * detectProvider('europe-docker.pkg.dev'); // { provider: 'gcp', region: 'europe', ... }
 * detectProvider('ghcr.io/org/app');         // undefined
 */
export function detectProvider(registryOrImage: string): ProviderMatch | undefined {
  const known = detected.get(registryOrImage);
  if (known !== undefined) return known === NONE ? undefined : known;
  const host = registryHostOf(registryOrImage);
  const match = detectHost(host);
  if (host === registryOrImage) remember(host, match);
  return match;
}

/**
 * Hosts already detected (valid ones only), with their frozen results: a deployment sees a
 * handful of registries on every request. Bounded; emptied when full, so hostile input cannot
 * grow it.
 */
const detected = new Map<string, ProviderMatch | typeof NONE>();
const NONE = Symbol('no provider');
const DETECTED_MAX = 256;

function remember(host: string, match: ProviderMatch | undefined): void {
  if (detected.size >= DETECTED_MAX) detected.clear();
  detected.set(host, match === undefined ? NONE : Object.freeze(match));
}

/** {@link detectProvider} for a host already known to be a valid `host[:port]`. */
export function detectHost(hostWithPort: string): ProviderMatch | undefined {
  // Hosts are case-insensitive; nearly all arrive lowercase, so fold case only on a miss.
  const match = detectLowercaseHost(hostWithPort);
  if (match !== undefined || !hasUpper(hostWithPort)) return match;
  return detectLowercaseHost(hostWithPort.toLowerCase());
}

function detectLowercaseHost(registry: string): ProviderMatch | undefined {
  // Bracketed IPv6 literals belong to no cloud; otherwise the port is not part of the match.
  if (registry.charCodeAt(0) === 0x5b) return undefined;
  const colon = registry.indexOf(':');
  const host = colon === -1 ? registry : registry.slice(0, colon);

  // Cheapest test first: most hosts on the hot path are one of a few suffixes or none.
  const last = host.charCodeAt(host.length - 1);
  if (last === 0x6f /* o */) {
    if (host === 'gcr.io' || host.endsWith('.gcr.io')) return { provider: 'gcp', registry };
    if (host.endsWith('.azurecr.io')) return { provider: 'azure', registry };
  } else if (last === 0x76 /* v */) {
    if (host.endsWith(PKG_DEV)) {
      const location = host.slice(0, -PKG_DEV.length);
      if (isLabel(location)) return { provider: 'gcp', registry, region: location };
    }
  } else if (last === 0x72 /* r */) {
    if (host === S3NS) return { provider: 'gcp', registry };
    if (host.endsWith(`-${S3NS}`)) {
      const location = host.slice(0, -S3NS.length - 1);
      if (isLabel(location)) return { provider: 'gcp', registry, region: location };
    }
  } else if (
    host.endsWith('.azurecr.cn') ||
    host.endsWith('.azurecr.us') ||
    host.endsWith('.azurecr.de')
  ) {
    return { provider: 'azure', registry };
  }
  if (host === 'public.ecr.aws' || host === 'ecr-public.aws.com') {
    return {
      provider: 'aws',
      registry,
      region: 'us-east-1',
      public: true,
      partition: 'aws',
      fips: false,
      dualStack: host === 'ecr-public.aws.com',
    };
  }
  if (host.indexOf('.dkr') === 12) {
    const m = ECR_HOST.exec(host);
    if (m) {
      const [, accountId = '', fips, region = '', suffix = ''] = m;
      const base = ECR_SUFFIX_PARTITION[suffix] ?? 'aws';
      return {
        provider: 'aws',
        registry,
        region,
        accountId,
        fips: fips !== undefined,
        partition: base === 'aws' && region.startsWith('us-gov-') ? 'aws-us-gov' : base,
        dualStack: suffix.startsWith('on.'),
      };
    }
  }
  return undefined;
}

function hasUpper(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) return true;
  }
  return false;
}

/** One DNS label: letters, digits, inner `-`. */
function isLabel(s: string): boolean {
  if (s.length === 0 || s.length > 63) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d;
    if (!ok) return false;
  }
  return s.charCodeAt(0) !== 0x2d && s.charCodeAt(s.length - 1) !== 0x2d;
}
