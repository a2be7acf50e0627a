import type { ProviderMatch } from '@org/registry-domains';

/** Credentials for one registry: what `docker login` would be given. */
export interface RegistryCredentials {
  readonly username: string;
  readonly password: string;
  /** When the password stops working; {@link NEVER} for credentials that do not expire. */
  readonly expiresAt: Date;
}

/** The latest date JavaScript can represent: credentials that do not expire. */
export const NEVER: Date = new Date(8.64e15);

/**
 * What a source is asked for: the registry, and for cloud sources what its host says
 * (`ProviderMatch` from @org/registry-domains).
 */
export type CredentialTarget = { readonly registry: string } & Partial<ProviderMatch>;

/** Where credentials come from. */
export type SourceKind = 'gcp' | 'aws' | 'azure' | 'static' | 'docker-config' | 'instance-identity';

/** A source of registry credentials. */
export interface CredentialSource {
  readonly kind: SourceKind;
  /**
   * A stable string naming the identity this source presents, for cache keys: two sources with
   * different identities never share cached credentials. Derived from options, never a secret
   * in clear (secret-bearing options are hashed).
   */
  readonly identity: string;
  /**
   * Whether results are worth caching until shortly before expiry. Sources that read local
   * files (and notice changes themselves) say no.
   */
  readonly cacheable: boolean;
  /** Fetches credentials for the target. Throws {@link CredentialsError}. */
  fetch(target: CredentialTarget, signal?: AbortSignal): Promise<RegistryCredentials>;
}

/** Four log methods; the default does nothing. Never given a secret. */
export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export const silentLogger: Logger = Object.freeze({
  debug() {},
  info() {},
  warn() {},
  error() {},
});
