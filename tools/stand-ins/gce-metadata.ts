import { json, type StandIn, startStandIn, unsignedJwt } from './server.js';

export interface GceMetadataOptions {
  /** Access token handed out, per call (default `ya29.stand-in-N`). */
  token?: (n: number) => string;
  /** Seconds until the token expires. Default 3599. */
  expiresIn?: number;
  /** HTTP status to answer token requests with instead (e.g. 403, 500). */
  tokenStatus?: number;
  /** Claims for identity tokens; `aud` is set from the request. */
  identityClaims?: Record<string, unknown>;
  /** Signs identity tokens (an OIDC issuer stand-in's `sign`); default: unsigned. */
  signIdentity?: (claims: Record<string, unknown>) => string;
}

/**
 * The GCE / GKE metadata server, as google-auth-library and gcp-metadata talk to it
 * (GCE_METADATA_HOST): every request must carry `Metadata-Flavor: Google`, every answer does.
 */
export async function startGceMetadata(
  options: GceMetadataOptions = {},
): Promise<StandIn & { readonly tokens: number }> {
  const state = { tokens: 0 };
  const standIn = await startStandIn((req, res) => {
    const flavor = { 'metadata-flavor': 'Google' };
    if (req.headers['metadata-flavor'] !== 'Google') {
      res.writeHead(403, { ...flavor, 'content-type': 'text/plain' });
      res.end('Missing required header "Metadata-Flavor": "Google"');
      return;
    }
    const p = req.path;
    if (p === '/computeMetadata/v1/instance' || p === '/computeMetadata/v1/instance/') {
      res.writeHead(200, { ...flavor, 'content-type': 'application/text' });
      res.end('attributes/\nhostname\nid\nservice-accounts/\nzone\n');
    } else if (p === '/computeMetadata/v1/project/project-id') {
      res.writeHead(200, { ...flavor, 'content-type': 'application/text' });
      res.end('stand-in-project');
    } else if (p === '/computeMetadata/v1/instance/service-accounts/default/token') {
      if (options.tokenStatus) {
        res.writeHead(options.tokenStatus, { ...flavor, 'content-type': 'text/plain' });
        res.end('stand-in refusal');
        return;
      }
      state.tokens++;
      const n = state.tokens;
      json(
        res,
        200,
        {
          access_token: options.token?.(n) ?? `ya29.stand-in-${n}`,
          expires_in: options.expiresIn ?? 3599,
          token_type: 'Bearer',
        },
        flavor,
      );
    } else if (p === '/computeMetadata/v1/instance/service-accounts/default/identity') {
      const audience = req.url.searchParams.get('audience');
      if (!audience) {
        res.writeHead(400, flavor);
        res.end('non-empty audience parameter required');
        return;
      }
      const now = Math.floor(Date.now() / 1000);
      res.writeHead(200, { ...flavor, 'content-type': 'text/html' });
      const claims = {
        iss: 'https://accounts.google.com',
        aud: audience,
        iat: now,
        exp: now + 3600,
        format: req.url.searchParams.get('format') ?? 'standard',
        ...options.identityClaims,
      };
      res.end((options.signIdentity ?? unsignedJwt)(claims));
    } else {
      res.writeHead(404, flavor);
      res.end('not found');
    }
  });
  return Object.defineProperty(standIn, 'tokens', { get: () => state.tokens }) as StandIn & {
    tokens: number;
  };
}
