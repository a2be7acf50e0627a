/** Why credentials could not be had; stable, so callers can `switch` on it. */
export type CredentialsErrorCode =
  /** No source could supply credentials here (no ADC, no helper, no such entry, no metadata server). */
  | 'CREDENTIALS_UNAVAILABLE'
  /** The cloud refused: 401/403, missing permission. */
  | 'ACCESS_DENIED'
  /** The cloud asked us to slow down (429, ThrottlingException). */
  | 'THROTTLED'
  /** The cloud or a helper failed (5xx, network error, helper exit code). */
  | 'PROVIDER_ERROR'
  /** An answer we could not use: malformed JSON, missing fields, an already expired token. */
  | 'INVALID_RESPONSE'
  /** The options given to a source are wrong. */
  | 'CONFIG_INVALID';

/**
 * The one error this package throws for credential failures. The message names the source and
 * the registry and says what to do; it never contains a secret, and neither do `cause`
 * messages we create ourselves.
 */
export class CredentialsError extends Error {
  override readonly name = 'CredentialsError';
  readonly code: CredentialsErrorCode;
  /** The source: `gcp`, `aws`, `azure`, `static`, `docker-config`, `instance-identity`. */
  readonly provider: string;
  /** The registry host the credentials were for. */
  readonly registry: string;

  constructor(
    code: CredentialsErrorCode,
    fields: { provider: string; registry: string },
    message: string,
    options?: ErrorOptions,
  ) {
    super(`${fields.provider} credentials for ${fields.registry}: ${message}`, options);
    this.code = code;
    this.provider = fields.provider;
    this.registry = fields.registry;
  }
}
