/**
 * OCI distribution-spec error codes (§ error codes) plus distribution's UNKNOWN / UNAVAILABLE and
 * PAGINATION_NUMBER_INVALID (its catalog's bad `n`).
 */
export type OciErrorCode =
  | 'BLOB_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_BLOB_UNKNOWN'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'SIZE_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED'
  | 'TOOMANYREQUESTS'
  | 'UNKNOWN'
  | 'UNAVAILABLE'
  | 'PAGINATION_NUMBER_INVALID';

/**
 * An error answered to the client as OCI error JSON: `{"errors":[{"code","message","detail"}]}`
 * with `status`. Thrown anywhere in a request; mapped to the wire in one place (`onError`).
 */
export class RegistryError extends Error {
  override readonly name = 'RegistryError';
  readonly status: number;
  readonly code: OciErrorCode;
  readonly detail: unknown;

  constructor(status: number, code: OciErrorCode, message: string, detail?: unknown) {
    super(message);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }

  /** The OCI error body. */
  toJSON(): { errors: Array<{ code: OciErrorCode; message: string; detail?: unknown }> } {
    return {
      errors: [
        {
          code: this.code,
          message: this.message,
          ...(this.detail === undefined ? {} : { detail: this.detail }),
        },
      ],
    };
  }
}
