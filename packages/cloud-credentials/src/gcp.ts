import type { GoogleAuth, GoogleAuthOptions } from 'google-auth-library';
import { CredentialsError, type CredentialsErrorCode } from './errors.js';
import { identityOf } from './identity.js';
import { safeCause, statusOf } from './sanitize.js';
import type { CredentialSource, CredentialTarget, RegistryCredentials } from './types.js';

/** The scope registry access tokens are asked for. */
export const GCP_REGISTRY_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';

export interface GcpSourceOptions {
  /**
   * An Application Default Credentials JSON file (service-account key, `external_account`
   * workload identity federation, `authorized_user` from gcloud). Default: the ADC search,
   * i.e. `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's file, then the GCE/GKE metadata server.
   */
  readonly keyFile?: string;
  /** The same JSON, parsed. */
  readonly credentials?: GoogleAuthOptions['credentials'];
  /** OAuth scopes. Default {@link GCP_REGISTRY_SCOPE}. */
  readonly scopes?: readonly string[];
  /** A GoogleAuth configured by the caller instead; the options above are then ignored. */
  readonly auth?: GoogleAuth;
  /** Clock in milliseconds, for the expiry when the token does not say. Default `Date.now`. */
  readonly now?: () => number;
}

/** Google access tokens live an hour; assumed when a client does not report the expiry. */
const DEFAULT_LIFETIME_MS = 3600_000;

/**
 * GCP registries (gcr.io, Artifact Registry) through google-auth-library: username
 * `oauth2accesstoken`, password an OAuth access token, expiry the token's. Needs
 * `roles/artifactregistry.reader` on the repositories.
 *
 * @example
 * const gcp = createGcpSource({});
 * await gcp.fetch({ registry: 'europe-docker.pkg.dev' });
 */
export function createGcpSource(options: GcpSourceOptions = {}): CredentialSource {
  if (options.keyFile !== undefined && options.credentials !== undefined) {
    throw new TypeError('gcp takes keyFile or credentials, not both');
  }
  const now = options.now ?? Date.now;
  // google-auth-library is loaded on first use: most processes never need it (see README).
  let auth: Promise<GoogleAuth> | undefined;
  const getAuth = () =>
    (auth ??= options.auth
      ? Promise.resolve(options.auth)
      : import('google-auth-library').then(
          ({ GoogleAuth }) =>
            new GoogleAuth({
              scopes: [...(options.scopes ?? [GCP_REGISTRY_SCOPE])],
              ...(options.keyFile === undefined ? {} : { keyFilename: options.keyFile }),
              ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
            }),
        ));
  return {
    kind: 'gcp',
    identity: identityOf('gcp', {
      keyFile: options.keyFile,
      credentials: options.credentials,
      scopes: options.scopes,
      auth: options.auth,
    }),
    cacheable: true,
    async fetch(target: CredentialTarget): Promise<RegistryCredentials> {
      const fields = { provider: 'gcp', registry: target.registry };
      let token: string | null | undefined;
      let expiry: unknown;
      try {
        const client = await (await getAuth()).getClient();
        token = (await client.getAccessToken()).token;
        expiry = client.credentials?.expiry_date;
      } catch (err) {
        throw gcpError(err, fields);
      }
      if (!token)
        throw new CredentialsError('INVALID_RESPONSE', fields, 'Google returned no access token');
      const expiresAt =
        typeof expiry === 'number' && expiry > 0 ? expiry : now() + DEFAULT_LIFETIME_MS;
      return { username: 'oauth2accesstoken', password: token, expiresAt: new Date(expiresAt) };
    },
  };
}

function gcpError(err: unknown, fields: { provider: string; registry: string }): CredentialsError {
  const status = statusOf(err);
  const message = err instanceof Error ? err.message : String(err);
  let code: CredentialsErrorCode = 'PROVIDER_ERROR';
  let hint = 'Google did not issue an access token';
  if (/Could not load the default credentials|Unable to detect a Project Id/i.test(message)) {
    code = 'CREDENTIALS_UNAVAILABLE';
    hint =
      'no Application Default Credentials: set GOOGLE_APPLICATION_CREDENTIALS, run on GCE/GKE with a service account, or configure keyFile';
  } else if (status === 401 || status === 403 || /invalid_grant|unauthorized/i.test(message)) {
    code = 'ACCESS_DENIED';
    hint = `Google refused the credentials (${status ?? 'invalid grant'})`;
  } else if (status === 429) {
    code = 'THROTTLED';
    hint = 'Google is throttling token requests (429)';
  } else if (status !== undefined) {
    hint = `Google answered ${status}`;
  }
  return new CredentialsError(code, fields, hint, { cause: safeCause(err) });
}
