import { CredentialsError } from '@org/cloud-credentials';
import { InvalidReferenceError, RegistryValidationError } from '@org/registry-domains';
import type { RegistryMapping } from './mapping.js';
import {
  CREDENTIAL_PROVIDERS,
  type GetRegistryCredentialsOptions,
  RegistryAuth,
  type RegistryAuthOptions,
} from './registry-auth.js';

/**
 * The shim's configuration file (JSON): which options to use per registry, host mappings, and
 * the plain-data parts of the SDK wiring.
 *
 * @example
 * { "default": { "provider": "auto" },
 *   "registries": { "registry.internal:5000": { "provider": "static", "username": "ci", "passwordFile": "/run/secrets/pw" } },
 *   "mappings": { "oci-gateway.example.org": { "provider": "aws", "region": "eu-west-1" } } }
 */
export interface CredentialHelperConfig {
  /** Options for registries without an entry in `registries`. Default `{ "provider": "auto" }`. */
  readonly default?: GetRegistryCredentialsOptions;
  /** Options by registry `host[:port]`. */
  readonly registries?: Readonly<Record<string, GetRegistryCredentialsOptions>>;
  readonly mappings?: Readonly<Record<string, RegistryMapping>>;
  readonly aws?: {
    readonly endpoint?: string;
    readonly publicEndpoint?: string;
    readonly maxAttempts?: number;
  };
  readonly azure?: { readonly authorityHost?: string; readonly disableInstanceDiscovery?: boolean };
  readonly gcp?: { readonly scopes?: readonly string[] };
}

export interface HelperResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** What docker-credential-helpers print when they have nothing; clients then go anonymous. */
export const HELPER_NOT_FOUND = 'credentials not found in native keychain';
const PROGRAM = 'docker-credential-registry-auth';
const PROVIDERS: ReadonlySet<string> = new Set(CREDENTIAL_PROVIDERS);

/**
 * Checks a parsed config file, listing every problem with its path.
 *
 * @throws TypeError with one line per problem.
 */
export function parseCredentialHelperConfig(value: unknown): CredentialHelperConfig {
  const problems: string[] = [];
  const isObject = (v: unknown): v is Record<string, unknown> =>
    v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!isObject(value)) throw new TypeError('config: must be a JSON object');
  const known = new Set(['default', 'registries', 'mappings', 'aws', 'azure', 'gcp']);
  for (const key of Object.keys(value)) {
    if (!known.has(key)) problems.push(`config.${key}: unknown field`);
  }
  const checkOptions = (v: unknown, path: string): void => {
    if (!isObject(v)) {
      problems.push(`${path}: must be an object`);
    } else if (!PROVIDERS.has(String(v.provider))) {
      problems.push(`${path}.provider: must be one of ${[...PROVIDERS].join(', ')}`);
    }
  };
  if (value.default !== undefined) checkOptions(value.default, 'config.default');
  if (value.registries !== undefined) {
    if (!isObject(value.registries)) {
      problems.push('config.registries: must be an object');
    } else {
      for (const [host, v] of Object.entries(value.registries)) {
        checkOptions(v, `config.registries[${JSON.stringify(host)}]`);
      }
    }
  }
  for (const key of ['mappings', 'aws', 'azure', 'gcp'] as const) {
    if (value[key] !== undefined && !isObject(value[key]))
      problems.push(`config.${key}: must be an object`);
  }
  if (problems.length > 0) throw new TypeError(problems.join('\n'));
  return value as CredentialHelperConfig;
}

/** The RegistryAuth a config describes. */
export function registryAuthFromConfig(config: CredentialHelperConfig): RegistryAuth {
  const options: RegistryAuthOptions = {
    ...(config.mappings === undefined ? {} : { mappings: config.mappings }),
    ...(config.aws === undefined ? {} : { aws: config.aws }),
    ...(config.azure === undefined ? {} : { azure: config.azure }),
    ...(config.gcp === undefined ? {} : { gcp: config.gcp }),
  };
  return new RegistryAuth(options);
}

/** The registry host a client names: `https://index.docker.io/v1/`, `127.0.0.1:5000`, ... */
export function serverHost(serverUrl: string): string {
  const host = serverUrl
    .trim()
    .replace(/^https?:\/\//, '')
    .replace(/\/.*$/, '');
  return host === 'index.docker.io' || host === 'registry-1.docker.io' ? 'docker.io' : host;
}

/**
 * One run of the docker-credential-helper protocol: `get` reads the server URL from `input` and
 * answers `{"ServerURL","Username","Secret"}`; `list` answers `{}`; `store` and `erase` are
 * refused (credentials come from their sources, not from `docker login`).
 */
export async function runCredentialHelper(
  action: string | undefined,
  input: string,
  auth: RegistryAuth,
  config: CredentialHelperConfig,
): Promise<HelperResult> {
  switch (action) {
    case 'get': {
      const serverUrl = input.trim();
      const host = serverHost(serverUrl);
      const options = config.registries?.[host] ?? config.default ?? { provider: 'auto' };
      try {
        const creds = await auth.getCredentials(host, options);
        return {
          code: 0,
          stdout: JSON.stringify({
            ServerURL: serverUrl,
            Username: creds.username,
            Secret: creds.password,
          }),
          stderr: '',
        };
      } catch (err) {
        if (
          (err instanceof CredentialsError &&
            err.code === 'CREDENTIALS_UNAVAILABLE' &&
            options.provider === 'auto') ||
          err instanceof InvalidReferenceError
        ) {
          return { code: 1, stdout: `${HELPER_NOT_FOUND}\n`, stderr: '' };
        }
        const message =
          err instanceof CredentialsError || err instanceof RegistryValidationError
            ? err.message
            : `unexpected error: ${String(err).slice(0, 300)}`;
        return { code: 1, stdout: '', stderr: `${PROGRAM}: ${message}\n` };
      }
    }
    case 'list':
      return { code: 0, stdout: '{}\n', stderr: '' };
    case 'store':
    case 'erase':
      return {
        code: 1,
        stdout: '',
        stderr: `${PROGRAM}: ${action} is not supported: credentials come from the configured sources, not from docker login\n`,
      };
    default:
      return {
        code: 1,
        stdout: '',
        stderr: `usage: ${PROGRAM} get|list   (server URL on stdin for get)\n`,
      };
  }
}
