/** Why a reference or image pattern was refused; stable, so callers can `switch` on it. */
export type InvalidReferenceCode =
  | 'REFERENCE_EMPTY'
  | 'REFERENCE_TOO_LONG'
  | 'REFERENCE_INVALID_FORMAT'
  | 'DOMAIN_INVALID'
  | 'NAME_CONTAINS_UPPERCASE'
  | 'NAME_EMPTY_COMPONENT'
  | 'NAME_INVALID_COMPONENT'
  | 'NAME_TOO_LONG'
  | 'NAME_IS_DIGEST'
  | 'TAG_INVALID'
  | 'DIGEST_INVALID'
  | 'PATTERN_INVALID';

/** Why `validateRegistry` refused a registry. */
export type RegistryValidationCode =
  | 'HOST_INVALID'
  | 'HOST_MISMATCH'
  | 'PROVIDER_UNKNOWN'
  | 'REGION_REQUIRED'
  | 'REGION_INVALID';

/** Longest piece of caller input quoted back in a message. */
const QUOTE_MAX = 120;

/**
 * Quotes untrusted input for an error message: JSON-escaped (no control characters reach a
 * log line) and cut to a bounded length.
 */
export function quote(input: string): string {
  const cut = input.length > QUOTE_MAX ? `${input.slice(0, QUOTE_MAX)}…` : input;
  return JSON.stringify(cut);
}

/** Base class of every error this package throws. */
export abstract class RegistryDomainsError extends Error {
  abstract readonly code: InvalidReferenceCode | RegistryValidationCode;
}

/**
 * A string is outside the image reference grammar (or the kubelet image pattern grammar).
 *
 * @example
 * try { parseImageReference('Alpine') } catch (e) {
 *   if (e instanceof InvalidReferenceError && e.code === 'NAME_CONTAINS_UPPERCASE') ...
 * }
 */
export class InvalidReferenceError extends RegistryDomainsError {
  override readonly name = 'InvalidReferenceError';
  readonly code: InvalidReferenceCode;
  /** The input, as given (may be long; the message quotes a bounded prefix). */
  readonly reference: string;

  constructor(code: InvalidReferenceCode, reference: string, reason: string) {
    super(`invalid reference ${quote(reference)}: ${reason}`);
    this.code = code;
    this.reference = reference;
  }
}

/**
 * A registry host is not one of the provider's hosts, or the options to skip that check are
 * incomplete.
 */
export class RegistryValidationError extends RegistryDomainsError {
  override readonly name = 'RegistryValidationError';
  readonly code: RegistryValidationCode;
  /** The registry host (with port, if any) that was checked. */
  readonly registry: string;
  readonly provider: string;
  /** The option the caller should set or fix, when one would help. */
  readonly option: string | undefined;

  constructor(
    code: RegistryValidationCode,
    fields: { registry: string; provider: string; option?: string },
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.code = code;
    this.registry = fields.registry;
    this.provider = fields.provider;
    this.option = fields.option;
  }
}
