import { createOidcPlugin } from './oidc.js';
import type { AuthPlugin, AuthResult, Identity } from './plugin.js';
import { globToRegExp } from './policy.js';

export interface GcpInstanceIdentityOptions {
  readonly name: string;
  /** The audience the nodes ask their metadata server for (our proxy, `docker.example.com`). */
  readonly audience: string;
  /** Projects whose instances may log in (ids). At least one of projectIds / projectNumbers. */
  readonly projectIds?: readonly string[];
  readonly projectNumbers?: readonly string[];
  /** Globs over the zone (`europe-west1-*`); absent: any. */
  readonly zones?: readonly string[];
  /** Globs over the instance name (`gke-prod-*`); absent: any. */
  readonly instanceNames?: readonly string[];
  /** Google's token issuer. Default `https://accounts.google.com`. */
  readonly issuer?: string;
  /** Google's signing keys. Default `https://www.googleapis.com/oauth2/v3/certs`. */
  readonly jwksUri?: string;
  readonly fetch?: typeof fetch;
}

interface ComputeEngine {
  readonly project_id?: unknown;
  readonly project_number?: unknown;
  readonly zone?: unknown;
  readonly instance_id?: unknown;
  readonly instance_name?: unknown;
}

/**
 * GCE / GKE nodes logging in with a Google-signed identity token from their metadata server
 * (`format=full`, so it carries `google.compute_engine`: project, zone, instance), username
 * `_gcp`. Verified against Google's JWKS (issuer, audience, expiry), then the allow-lists: the
 * project is always checked (any VM on Google Cloud can get such a token), zone and instance
 * name when configured. The identity is `<name>:<project_id>/<instance_name>`.
 */
export function createGcpInstanceIdentityPlugin(options: GcpInstanceIdentityOptions): AuthPlugin {
  const { name } = options;
  if (typeof name !== 'string' || name === '')
    throw new TypeError('gcp-instance-identity: name is required');
  if (!options.projectIds?.length && !options.projectNumbers?.length) {
    throw new TypeError(
      `${name}: projectIds or projectNumbers is required (any Google Cloud VM can mint such tokens)`,
    );
  }
  const verifier = createOidcPlugin({
    name,
    issuer: options.issuer ?? 'https://accounts.google.com',
    audience: options.audience,
    algorithms: ['RS256'],
    jwksUri: options.jwksUri ?? 'https://www.googleapis.com/oauth2/v3/certs',
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
  const projectIds = new Set(options.projectIds ?? []);
  const projectNumbers = new Set((options.projectNumbers ?? []).map(String));
  const zones = options.zones?.map(globToRegExp);
  const instanceNames = options.instanceNames?.map(globToRegExp);

  return {
    name,
    type: 'gcp-instance-identity',
    family: 'gcp',
    async authenticate(login): Promise<AuthResult> {
      const result = await verifier.authenticate(login);
      if (!result.ok) return result;
      const google = result.identity.claims.google as
        | { compute_engine?: ComputeEngine }
        | undefined;
      const ce = google?.compute_engine;
      const projectId = ce?.project_id;
      const projectNumber = ce?.project_number;
      const zone = ce?.zone;
      const instanceName = ce?.instance_name;
      if (
        typeof projectId !== 'string' ||
        (typeof projectNumber !== 'string' && typeof projectNumber !== 'number') ||
        typeof zone !== 'string' ||
        typeof instanceName !== 'string'
      ) {
        // Not a format=full instance token (a service account's or a user's ID token).
        return { ok: false, reason: 'BAD_PASSWORD' };
      }
      const projectAllowed = projectIds.has(projectId) || projectNumbers.has(String(projectNumber));
      if (
        !projectAllowed ||
        (zones && !zones.some((re) => re.test(zone))) ||
        (instanceNames && !instanceNames.some((re) => re.test(instanceName)))
      ) {
        return { ok: false, reason: 'BAD_PASSWORD' };
      }
      const identity: Identity = {
        plugin: name,
        subject: `${projectId}/${instanceName}`,
        groups: [],
        claims: {
          project_id: projectId,
          project_number: String(projectNumber),
          zone,
          instance_name: instanceName,
          ...(typeof ce?.instance_id === 'string' ? { instance_id: ce.instance_id } : {}),
          ...(typeof result.identity.claims.email === 'string'
            ? { email: result.identity.claims.email }
            : {}),
        },
      };
      return { ok: true, identity };
    },
  };
}
