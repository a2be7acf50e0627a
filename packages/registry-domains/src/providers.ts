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

/**
 * The cloud registries' host names, as data: adding a partition, a sovereign cloud or a new
 * suffix is a change here, and detection, errors and docs follow.
 */
export const REGISTRY_HOSTS = {
  gcp: {
    /** Hosts that are registries themselves. */
    exact: ['gcr.io', 'docker.s3nsregistry.fr'],
    /** `*.<suffix>`: any subdomain. */
    subdomainOf: ['gcr.io'],
    /** `<location>-<suffix>`: one DNS label naming the location, which becomes the region. */
    locationPrefixed: ['docker.pkg.dev', 'docker.s3nsregistry.fr'],
  },
  azure: {
    subdomainOf: ['azurecr.io', 'azurecr.cn', 'azurecr.us', 'azurecr.de'],
  },
  aws: {
    /** ECR Public (its API lives in us-east-1). */
    public: { 'public.ecr.aws': { dualStack: false }, 'ecr-public.aws.com': { dualStack: true } },
    /**
     * Private ECR: `<account>.dkr.ecr[-fips].<region>.<suffix>` (or `dkr-ecr`), by DNS suffix,
     * with the partition it belongs to (GovCloud regions, `us-gov-*`, are told apart by region).
     */
    partitions: {
      'amazonaws.com': 'aws',
      'on.aws': 'aws',
      'amazonaws.com.cn': 'aws-cn',
      'on.amazonwebservices.com.cn': 'aws-cn',
      'amazonaws.eu': 'aws-eusc',
      'c2s.ic.gov': 'aws-iso',
      'sc2s.sgov.gov': 'aws-iso-b',
      'cloud.adc-e.uk': 'aws-iso-e',
      'csp.hci.ic.gov': 'aws-iso-f',
    } satisfies Record<string, AwsPartition>,
  },
} as const;

/** The host patterns each provider is recognised by, as shown in errors and docs. */
export const PROVIDER_HOST_PATTERNS: Readonly<Record<CloudProvider, readonly string[]>> = {
  gcp: [
    ...REGISTRY_HOSTS.gcp.exact,
    ...REGISTRY_HOSTS.gcp.subdomainOf.map((s) => `*.${s}`),
    ...REGISTRY_HOSTS.gcp.locationPrefixed.map((s) => `<location>-${s}`),
  ],
  aws: [
    ...Object.keys(REGISTRY_HOSTS.aws.partitions).map(
      (s) => `<account>.dkr.ecr[-fips].<region>.${s}`,
    ),
    ...Object.keys(REGISTRY_HOSTS.aws.public),
  ],
  azure: REGISTRY_HOSTS.azure.subdomainOf.map((s) => `*.${s}`),
};

/**
 * Private ECR hosts, as amazon-ecr-credential-helper recognises them: account, `dkr.ecr` or
 * `dkr-ecr`, optional `-fips`, region, and one of the partitions' DNS suffixes.
 */
const ECR_HOST = new RegExp(
  `^(\\d{12})\\.dkr[.-]ecr(-fips)?\\.([a-z0-9][a-z0-9_-]*)\\.(${Object.keys(
    REGISTRY_HOSTS.aws.partitions,
  )
    .map((suffix) => suffix.replaceAll('.', '\\.'))
    .join('|')})$`,
);

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

  const gcp = REGISTRY_HOSTS.gcp;
  if (gcp.exact.some((h) => h === host) || gcp.subdomainOf.some((s) => isSubdomainOf(host, s))) {
    return { provider: 'gcp', registry };
  }
  for (const suffix of gcp.locationPrefixed) {
    const location = locationOf(host, suffix);
    if (location !== undefined) return { provider: 'gcp', registry, region: location };
  }
  if (REGISTRY_HOSTS.azure.subdomainOf.some((s) => isSubdomainOf(host, s))) {
    return { provider: 'azure', registry };
  }
  const publicHost = (REGISTRY_HOSTS.aws.public as Record<string, { dualStack: boolean }>)[host];
  if (publicHost !== undefined) {
    return {
      provider: 'aws',
      registry,
      region: 'us-east-1',
      public: true,
      partition: 'aws',
      fips: false,
      dualStack: publicHost.dualStack,
    };
  }
  if (host.indexOf('.dkr') === 12) {
    const m = ECR_HOST.exec(host);
    if (m) {
      const [, accountId = '', fips, region = '', suffix = ''] = m;
      const base = (REGISTRY_HOSTS.aws.partitions as Record<string, AwsPartition>)[suffix] ?? 'aws';
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

/** `host` is `<one or more labels>.<suffix>`. */
function isSubdomainOf(host: string, suffix: string): boolean {
  return (
    host.length > suffix.length + 1 &&
    host.endsWith(suffix) &&
    host.charCodeAt(host.length - suffix.length - 1) === 0x2e
  );
}

/** The location label of `<location>-<suffix>`, or undefined. */
function locationOf(host: string, suffix: string): string | undefined {
  if (host.length <= suffix.length + 1 || !host.endsWith(suffix)) return undefined;
  if (host.charCodeAt(host.length - suffix.length - 1) !== 0x2d) return undefined;
  const location = host.slice(0, -suffix.length - 1);
  return isLabel(location) ? location : undefined;
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
