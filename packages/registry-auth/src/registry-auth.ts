import {
  type AwsSourceOptions,
  type AzureSourceOptions,
  CredentialCache,
  type CredentialCacheOptions,
  type CredentialSource,
  CredentialsError,
  type CredentialTarget,
  createAwsSource,
  createAzureSource,
  createDockerConfigSource,
  createGcpSource,
  createInstanceIdentitySource,
  createStaticSource,
  type DockerConfigSourceOptions,
  type GcpSourceOptions,
  type InstanceIdentityOptions,
  identityOf,
  type RegistryCredentials as SourceCredentials,
  type StaticSourceOptions,
} from '@org/cloud-credentials';
import {
  type CloudProvider,
  detectProvider,
  type ProviderMatch,
  registryHostOf,
  validateRegistry,
} from '@org/registry-domains';
import { compileMappings, type RegistryMapping } from './mapping.js';

/** Credentials for the registry an image lives in. */
export interface RegistryCredentials extends SourceCredentials {
  /** The registry host (with port) they are for. */
  readonly registry: string;
}

/** Options for the cloud providers; `auto` picks the cloud from the registry host. */
export interface CloudCredentialOptions {
  readonly provider: CloudProvider | 'auto';
  /**
   * Accept a host that is not one of the provider's (a registry proxy or gateway). **The
   * provider's cloud credentials are then sent to that host.** Default: the process-wide
   * default of @org/registry-domains (`setRegistryValidationDefaults`), normally off.
   */
  readonly skipRegistryValidation?: boolean;
  /** The region when the host does not say it (AWS with skipRegistryValidation). */
  readonly region?: string;
  /** AWS: `registryIds` for GetAuthorizationToken. */
  readonly registryIds?: readonly string[];
  /** Azure: the real ACR login server, required when validation is skipped. */
  readonly loginServer?: string;
  /** Azure: tenant id. */
  readonly tenantId?: string;
  /** Azure: client id of a user-assigned managed identity or workload identity app. */
  readonly clientId?: string;
  /** Azure: which Entra credential (default DefaultAzureCredential). */
  readonly azureIdentity?: AzureSourceOptions['identity'];
  /** GCP: an ADC JSON file instead of the ADC search. */
  readonly keyFile?: string;
}

/** Every `provider` value `getRegistryCredentials` accepts. */
export const CREDENTIAL_PROVIDERS = [
  'auto',
  'gcp',
  'aws',
  'azure',
  'static',
  'docker-config',
  'instance-identity',
] as const;

/** What `getRegistryCredentials` takes: a cloud, or one of the non-cloud sources. */
export type GetRegistryCredentialsOptions =
  | CloudCredentialOptions
  | ({ readonly provider: 'static' } & StaticSourceOptions)
  | ({ readonly provider: 'docker-config' } & DockerConfigSourceOptions)
  | ({ readonly provider: 'instance-identity' } & InstanceIdentityOptions);

/**
 * `options` with the metadata address the environment names, when it is an instance-identity
 * source without an `endpoint` of its own: the variables the cloud SDKs read,
 * `GCE_METADATA_HOST` for `gcp` and `AWS_EC2_METADATA_SERVICE_ENDPOINT` for `aws`
 * (@org/cloud-credentials reads no environment itself). Anything else is returned as it is.
 */
export function withMetadataEndpointFromEnv<T extends { readonly provider: string }>(
  options: T,
  env: NodeJS.ProcessEnv,
): T {
  if (options.provider !== 'instance-identity') return options;
  const identity = options as T & InstanceIdentityOptions;
  if (identity.endpoint !== undefined) return options;
  const endpoint =
    identity.kind === 'gcp'
      ? env.GCE_METADATA_HOST
      : identity.kind === 'aws'
        ? env.AWS_EC2_METADATA_SERVICE_ENDPOINT
        : undefined;
  return endpoint ? { ...options, endpoint } : options;
}

export interface RegistryAuthOptions {
  /** Hosts that stand for a cloud registry (gateways, proxies); checked first. */
  readonly mappings?: Readonly<Record<string, RegistryMapping>>;
  /** The cache, or options for a new one (refresh margin, backoff, metrics, clock). */
  readonly cache?: CredentialCache | CredentialCacheOptions;
  /** SDK wiring for every GCP source made (scopes, a GoogleAuth of your own). */
  readonly gcp?: Omit<GcpSourceOptions, 'keyFile'>;
  /** SDK wiring for every AWS source made (credentials, endpoints, request handler). */
  readonly aws?: Omit<AwsSourceOptions, 'registryIds'>;
  /** SDK wiring for every Azure source made (credential, authority host, fetch). */
  readonly azure?: Omit<AzureSourceOptions, 'loginServer' | 'tenantId' | 'clientId' | 'identity'>;
}

const SOURCES_MAX = 128;

/**
 * Registry credentials for images: mapping or host patterns -> source -> cache. One instance
 * per process is usual (see {@link getRegistryCredentials}); each holds its own cache.
 */
export class RegistryAuth {
  readonly #mappings: ReadonlyMap<string, RegistryMapping>;
  readonly #cache: CredentialCache;
  readonly #options: RegistryAuthOptions;
  readonly #sources = new Map<string, CredentialSource>();

  constructor(options: RegistryAuthOptions = {}) {
    this.#options = options;
    this.#mappings = compileMappings(options.mappings);
    this.#cache =
      options.cache instanceof CredentialCache ? options.cache : new CredentialCache(options.cache);
  }

  /**
   * Credentials that pull `image` (a reference, or a bare registry `host[:port]`).
   *
   * @throws InvalidReferenceError for an image that is not a reference, RegistryValidationError
   *   for a host that is not the provider's, CredentialsError when no credentials can be had.
   */
  async getCredentials(
    image: string,
    options: GetRegistryCredentialsOptions,
  ): Promise<RegistryCredentials> {
    const registry = registryHostOf(image);
    const { source, target } = this.#resolve(registry, options);
    const labels = { provider: source.kind, registry };
    const creds = source.cacheable
      ? await this.#cache.get(`${source.identity}|${targetKey(target)}`, labels, () =>
          source.fetch(target),
        )
      : await source.fetch(target);
    return {
      registry,
      username: creds.username,
      password: creds.password,
      expiresAt: creds.expiresAt,
    };
  }

  /** Forgets every cached credential (for example after an upstream refused one). */
  invalidate(): void {
    this.#cache.invalidate();
  }

  #resolve(
    registry: string,
    options: GetRegistryCredentialsOptions,
  ): { source: CredentialSource; target: CredentialTarget } {
    const fields = { provider: options.provider, registry };
    switch (options.provider) {
      case 'static':
        return {
          source: this.#source('static', options, () => createStaticSource(options)),
          target: { registry },
        };
      case 'docker-config':
        return {
          source: this.#source('docker-config', options, () => createDockerConfigSource(options)),
          target: { registry },
        };
      case 'instance-identity':
        return {
          source: this.#source('instance-identity', options, () =>
            createInstanceIdentitySource(options),
          ),
          target: { registry },
        };
      case 'auto':
      case 'gcp':
      case 'aws':
      case 'azure':
        break;
      default:
        throw new TypeError(
          `unknown provider ${JSON.stringify((options as { provider: unknown }).provider)}`,
        );
    }

    const mapping = this.#mappings.get(registry.toLowerCase());
    let match: ProviderMatch;
    if (mapping) {
      if (options.provider !== 'auto' && options.provider !== mapping.provider) {
        throw new CredentialsError(
          'CONFIG_INVALID',
          fields,
          `the mapping for ${registry} says ${mapping.provider}, not ${options.provider}`,
        );
      }
      const detected = detectProvider(registry);
      match =
        detected?.provider === mapping.provider
          ? detected
          : {
              provider: mapping.provider,
              registry: registry.toLowerCase(),
              ...(mapping.region === undefined ? {} : { region: mapping.region }),
              registryValidationSkipped: true,
            };
    } else if (options.provider === 'auto') {
      const detected = detectProvider(registry);
      if (!detected) {
        throw new CredentialsError(
          'CREDENTIALS_UNAVAILABLE',
          { provider: 'auto', registry },
          'not a GCP, AWS or Azure registry host: add a mapping for it, or name the provider with skipRegistryValidation',
        );
      }
      match = detected;
    } else {
      match = validateRegistry(options.provider, registry, {
        ...(options.skipRegistryValidation === undefined
          ? {}
          : { skipRegistryValidation: options.skipRegistryValidation }),
        ...(options.region === undefined ? {} : { region: options.region }),
      });
    }
    return { source: this.#cloudSource(match.provider, options, mapping), target: match };
  }

  #cloudSource(
    provider: CloudProvider,
    options: CloudCredentialOptions,
    mapping: RegistryMapping | undefined,
  ): CredentialSource {
    switch (provider) {
      case 'gcp': {
        const o: GcpSourceOptions = {
          ...this.#options.gcp,
          ...(options.keyFile === undefined ? {} : { keyFile: options.keyFile }),
        };
        return this.#source('gcp', { keyFile: options.keyFile }, () => createGcpSource(o));
      }
      case 'aws': {
        const ids = mapping?.accountId !== undefined ? [mapping.accountId] : options.registryIds;
        const o: AwsSourceOptions = {
          ...this.#options.aws,
          ...(ids === undefined ? {} : { registryIds: ids }),
        };
        return this.#source('aws', { registryIds: ids }, () => createAwsSource(o));
      }
      case 'azure': {
        const loginServer = mapping?.loginServer ?? options.loginServer;
        const tenantId = mapping?.tenantId ?? options.tenantId;
        const o: AzureSourceOptions = {
          ...this.#options.azure,
          ...(loginServer === undefined ? {} : { loginServer }),
          ...(tenantId === undefined ? {} : { tenantId }),
          ...(options.clientId === undefined ? {} : { clientId: options.clientId }),
          ...(options.azureIdentity === undefined ? {} : { identity: options.azureIdentity }),
        };
        return this.#source(
          'azure',
          { loginServer, tenantId, clientId: options.clientId, identity: options.azureIdentity },
          () => createAzureSource(o),
        );
      }
    }
  }

  /**
   * One source per provider and per-call options, so SDK clients and their token caches are
   * reused. The instance-level SDK wiring is the same for every source of a kind, so only the
   * per-call options (plain data) make the key.
   */
  #source(kind: string, options: object, make: () => CredentialSource): CredentialSource {
    const key = identityOf(kind, options);
    let source = this.#sources.get(key);
    if (!source) {
      if (this.#sources.size >= SOURCES_MAX) this.#sources.clear();
      source = make();
      this.#sources.set(key, source);
    }
    return source;
  }
}

let defaultInstance: RegistryAuth | undefined;

/**
 * Credentials that pull `image`, from the process-wide {@link RegistryAuth} (see
 * {@link configureRegistryAuth}): validated against the cloud's host patterns (or a mapping,
 * or skipped), fetched from the cloud, and cached until shortly before they expire.
 *
 * @example
 * const { username, password } = await getRegistryCredentials(
 *   'europe-docker.pkg.dev/acme/images/app:v1', { provider: 'auto' });
 */
export function getRegistryCredentials(
  image: string,
  options: GetRegistryCredentialsOptions,
): Promise<RegistryCredentials> {
  defaultInstance ??= new RegistryAuth();
  return defaultInstance.getCredentials(image, options);
}

/**
 * Replaces the process-wide instance `getRegistryCredentials` uses (mappings, cache options,
 * SDK wiring). Returns it.
 */
export function configureRegistryAuth(options: RegistryAuthOptions): RegistryAuth {
  defaultInstance = new RegistryAuth(options);
  return defaultInstance;
}

function targetKey(target: CredentialTarget): string {
  return [
    target.provider,
    target.registry,
    target.region,
    target.fips,
    target.public,
    target.registryValidationSkipped,
  ].join('|');
}
