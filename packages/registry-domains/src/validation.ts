import { InvalidReferenceError, quote, RegistryValidationError } from './errors.js';
import {
  type CloudProvider,
  detectHost,
  PROVIDER_HOST_PATTERNS,
  type ProviderMatch,
  registryHostOf,
} from './providers.js';

/** Options of {@link validateRegistry}; unset fields fall back to the process-wide defaults. */
export interface RegistryValidationOptions {
  /**
   * Accept any syntactically valid host for the provider (a registry proxy or gateway in front
   * of the cloud's registry). **Security:** the provider's cloud credentials will then be sent
   * to that host, so set it only for hosts you operate and trust.
   */
  readonly skipRegistryValidation?: boolean;
  /** The region when the host no longer says it; required for `aws` when validation is skipped. */
  readonly region?: string;
}

/** The process-wide defaults apps set once at start-up from a flag or environment variable. */
export interface RegistryValidationDefaults {
  readonly skipRegistryValidation: boolean;
  readonly region?: string;
}

/** The environment variable apps read the process-wide skip default from. */
export const SKIP_REGISTRY_VALIDATION_ENV = 'SKIP_REGISTRY_VALIDATION';

const PROVIDERS: ReadonlySet<string> = new Set<CloudProvider>(['gcp', 'aws', 'azure']);
/** AWS region ids: `us-east-1`, `us-gov-west-1`, `cn-north-1`, `eu-isoe-west-1`, `eusc-de-east-1`. */
const AWS_REGION = /^[a-z]{2,4}(?:-[a-z]+)+-\d{1,2}$/;
/** GCP locations (`us`, `europe-west1`, `u-france-east1`) and Azure regions: one DNS label. */
const LOCATION = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

let defaults: RegistryValidationDefaults = Object.freeze({ skipRegistryValidation: false });

/**
 * Sets the process-wide defaults that {@link validateRegistry} uses where a call leaves an
 * option unset (apps call this once, from `--skip-registry-validation` /
 * `SKIP_REGISTRY_VALIDATION=true`). Returns the previous defaults so they can be restored.
 *
 * @throws TypeError naming the option when a value is not valid.
 */
export function setRegistryValidationDefaults(
  next: Partial<RegistryValidationDefaults>,
): RegistryValidationDefaults {
  const skip = next.skipRegistryValidation ?? false;
  if (typeof skip !== 'boolean') {
    throw new TypeError('skipRegistryValidation must be a boolean');
  }
  if (next.region !== undefined && !isRegionSyntax(next.region)) {
    throw new TypeError(`region ${quote(String(next.region))} is not a valid region name`);
  }
  const previous = defaults;
  defaults = Object.freeze(
    next.region === undefined
      ? { skipRegistryValidation: skip }
      : { skipRegistryValidation: skip, region: next.region },
  );
  return previous;
}

/** The process-wide defaults in force. */
export function getRegistryValidationDefaults(): RegistryValidationDefaults {
  return defaults;
}

/**
 * Reads `SKIP_REGISTRY_VALIDATION` from an environment the caller passes (libraries never read
 * `process.env` themselves): unset or empty is `false`; `true`/`1`/`yes`/`on` and
 * `false`/`0`/`no`/`off` (any case) are what they say.
 *
 * @throws TypeError for any other value, so a typo does not silently keep validation on.
 * @example
 * setRegistryValidationDefaults({ skipRegistryValidation: skipRegistryValidationFromEnv(process.env) });
 */
export function skipRegistryValidationFromEnv(
  env: Readonly<Record<string, string | undefined>>,
): boolean {
  const raw = env[SKIP_REGISTRY_VALIDATION_ENV];
  if (raw === undefined) return false;
  switch (raw.trim().toLowerCase()) {
    case '':
    case 'false':
    case '0':
    case 'no':
    case 'off':
      return false;
    case 'true':
    case '1':
    case 'yes':
    case 'on':
      return true;
    default:
      throw new TypeError(
        `${SKIP_REGISTRY_VALIDATION_ENV} must be true or false, got ${quote(raw)}`,
      );
  }
}

/**
 * Checks that `registryOrImage` is a registry of `provider` and returns what its host says.
 * With `skipRegistryValidation` (per call, or the process-wide default) any syntactically
 * valid host is accepted for the provider: the result then carries the host as given, the
 * `region` option, and `registryValidationSkipped: true`. A host that does match keeps what
 * it says (its own region wins over the option).
 *
 * @throws RegistryValidationError (`HOST_MISMATCH` naming the host and the patterns it failed,
 *   `HOST_INVALID`, `PROVIDER_UNKNOWN`, `REGION_REQUIRED`, `REGION_INVALID`).
 * @example
 * validateRegistry('gcp', 'europe-docker.pkg.dev/acme/images/app'); // { provider: 'gcp', region: 'europe', ... }
 * validateRegistry('aws', 'oci-gateway.example.org', { skipRegistryValidation: true, region: 'eu-west-1' });
 * // { provider: 'aws', registry: 'oci-gateway.example.org', region: 'eu-west-1', registryValidationSkipped: true }
 */
export function validateRegistry(
  provider: CloudProvider,
  registryOrImage: string,
  options: RegistryValidationOptions = {},
): ProviderMatch {
  if (!PROVIDERS.has(provider)) {
    throw new RegistryValidationError(
      'PROVIDER_UNKNOWN',
      { registry: String(registryOrImage), provider: String(provider), option: 'provider' },
      `unknown provider ${quote(String(provider))}: use gcp, aws or azure`,
    );
  }
  let host: string;
  try {
    host = registryHostOf(registryOrImage);
  } catch (err) {
    if (!(err instanceof InvalidReferenceError)) throw err;
    throw new RegistryValidationError(
      'HOST_INVALID',
      { registry: String(registryOrImage), provider },
      `cannot validate ${quote(String(registryOrImage))} as a ${provider} registry: ${err.message}`,
      { cause: err },
    );
  }

  const detected = detectHost(host);
  if (detected?.provider === provider) return detected;

  const skip = options.skipRegistryValidation ?? defaults.skipRegistryValidation;
  if (!skip) {
    const actually = detected ? ` (it belongs to ${detected.provider})` : '';
    throw new RegistryValidationError(
      'HOST_MISMATCH',
      { registry: host, provider, option: 'skipRegistryValidation' },
      `registry host ${quote(host)} is not a ${provider} registry${actually}: it matches none of ${PROVIDER_HOST_PATTERNS[provider].join(', ')}. If it is a proxy or gateway in front of ${provider}, set skipRegistryValidation${provider === 'aws' ? ' and region' : ''} (this sends ${provider} credentials to that host)`,
    );
  }

  const region = options.region ?? defaults.region;
  if (region === undefined) {
    if (provider === 'aws') {
      throw new RegistryValidationError(
        'REGION_REQUIRED',
        { registry: host, provider, option: 'region' },
        `registry host ${quote(host)} does not say its AWS region: set the region option when skipping registry validation`,
      );
    }
    return { provider, registry: host.toLowerCase(), registryValidationSkipped: true };
  }
  if (!isRegionName(provider, region)) {
    throw new RegistryValidationError(
      'REGION_INVALID',
      { registry: host, provider, option: 'region' },
      `region ${quote(String(region))} is not a valid ${provider} region name`,
    );
  }
  return { provider, registry: host.toLowerCase(), region, registryValidationSkipped: true };
}

/**
 * Whether `region` is a region name for `provider`: an AWS region id (`eu-west-1`,
 * `us-gov-west-1`, `eusc-de-east-1`) for aws, one DNS label (`europe-west1`, `westeurope`) for
 * gcp and azure. Region names end up in endpoint host names, so nothing else passes.
 *
 * @example
 * isRegionName('aws', 'eu-west-1');           // true
 * isRegionName('aws', 'eu-west-1.evil.com');  // false
 */
export function isRegionName(provider: CloudProvider, region: string): boolean {
  return typeof region === 'string' && (provider === 'aws' ? AWS_REGION : LOCATION).test(region);
}

function isRegionSyntax(region: unknown): region is string {
  return typeof region === 'string' && (AWS_REGION.test(region) || LOCATION.test(region));
}
