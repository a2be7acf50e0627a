import { json, type StandIn, startStandIn, unsignedJwt } from './server.js';

export interface EntraStandIn extends StandIn {
  /** Token requests received, as parsed forms. */
  readonly tokenRequests: URLSearchParams[];
}

/**
 * Microsoft Entra ID for MSAL (served over TLS: MSAL insists on https authorities): the tenant's
 * OpenID configuration, instance discovery, and `POST /<tenant>/oauth2/v2.0/token` for the
 * client-credentials grant with a client secret or a federated client assertion (workload
 * identity). Access tokens are JWTs carrying `tid` and `aud`.
 */
export async function startEntra(options: {
  tenantId: string;
  clientId: string;
  clientSecret?: string;
  federatedToken?: string;
}): Promise<EntraStandIn> {
  const tokenRequests: URLSearchParams[] = [];
  let base = '';
  const standIn = await startStandIn(
    (req, res) => {
      const t = options.tenantId;
      if (req.method === 'GET' && /\/v2\.0\/\.well-known\/openid-configuration$/.test(req.path)) {
        return json(res, 200, {
          token_endpoint: `${base}/${t}/oauth2/v2.0/token`,
          authorization_endpoint: `${base}/${t}/oauth2/v2.0/authorize`,
          device_authorization_endpoint: `${base}/${t}/oauth2/v2.0/devicecode`,
          end_session_endpoint: `${base}/${t}/oauth2/v2.0/logout`,
          issuer: `${base}/${t}/v2.0`,
          jwks_uri: `${base}/${t}/discovery/v2.0/keys`,
          response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
          token_endpoint_auth_methods_supported: [
            'client_secret_post',
            'private_key_jwt',
            'client_secret_basic',
          ],
        });
      }
      if (req.method === 'GET' && req.path.endsWith('/discovery/instance')) {
        const host = new URL(base).host;
        return json(res, 200, {
          tenant_discovery_endpoint: `${base}/${t}/v2.0/.well-known/openid-configuration`,
          'api-version': '1.1',
          metadata: [{ preferred_network: host, preferred_cache: host, aliases: [host] }],
        });
      }
      if (req.method === 'POST' && req.path === `/${t}/oauth2/v2.0/token`) {
        const form = new URLSearchParams(req.body);
        tokenRequests.push(form);
        const bySecret =
          options.clientSecret !== undefined && form.get('client_secret') === options.clientSecret;
        const byAssertion =
          options.federatedToken !== undefined &&
          form.get('client_assertion_type') ===
            'urn:ietf:params:oauth:client-assertion-type:jwt-bearer' &&
          form.get('client_assertion') === options.federatedToken;
        if (
          form.get('grant_type') !== 'client_credentials' ||
          form.get('client_id') !== options.clientId ||
          !(bySecret || byAssertion)
        ) {
          return json(res, 401, {
            error: 'invalid_client',
            error_description: 'AADSTS7000215: stand-in: invalid client secret or assertion.',
            error_codes: [7000215],
          });
        }
        const scope = form.get('scope') ?? '';
        const now = Math.floor(Date.now() / 1000);
        return json(res, 200, {
          token_type: 'Bearer',
          expires_in: 3599,
          ext_expires_in: 3599,
          access_token: unsignedJwt({
            aud: scope.replace(/\/\.default$/, ''),
            tid: t,
            appid: options.clientId,
            iat: now,
            exp: now + 3599,
          }),
        });
      }
      return json(res, 404, { error: 'not_found' });
    },
    { tls: true },
  );
  base = standIn.url;
  return Object.defineProperty(standIn, 'tokenRequests', { value: tokenRequests }) as EntraStandIn;
}

export type AcrFault = 'denied' | 'malformed' | 'no-exp' | 'throttle';

export interface AcrStandIn extends StandIn {
  readonly exchanges: URLSearchParams[];
  fault: AcrFault | undefined;
}

/**
 * An ACR login server's `POST /oauth2/exchange` (grant_type=access_token): checks the form
 * (service, tenant, an Entra access token with the right `tid`) and returns an ACR refresh
 * token, a JWT whose `exp` is `lifetimeSeconds` away (3 hours, like ACR's).
 */
export async function startAcr(options: {
  tenantId: string;
  lifetimeSeconds?: number;
}): Promise<AcrStandIn> {
  const exchanges: URLSearchParams[] = [];
  const state: { fault: AcrFault | undefined } = { fault: undefined };
  const standIn = await startStandIn(
    (req, res) => {
      if (req.method !== 'POST' || req.path !== '/oauth2/exchange') {
        return json(res, 404, { errors: [{ code: 'NOT_FOUND' }] });
      }
      if (!String(req.headers['content-type']).startsWith('application/x-www-form-urlencoded')) {
        return json(res, 400, { errors: [{ code: 'UNSUPPORTED', message: 'form expected' }] });
      }
      const form = new URLSearchParams(req.body);
      exchanges.push(form);
      const aad = form.get('access_token') ?? '';
      let tid: unknown;
      try {
        tid = JSON.parse(Buffer.from(aad.split('.')[1] ?? '', 'base64url').toString('utf8')).tid;
      } catch {
        tid = undefined;
      }
      if (
        form.get('grant_type') !== 'access_token' ||
        !form.get('service') ||
        form.get('tenant') !== options.tenantId ||
        tid !== options.tenantId
      ) {
        return json(res, 400, {
          errors: [{ code: 'UNAUTHORIZED', message: 'stand-in: bad exchange form' }],
        });
      }
      switch (state.fault) {
        case 'denied':
          return json(res, 401, {
            errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }],
          });
        case 'throttle':
          return json(res, 429, { errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] });
        case 'malformed':
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end('{"refresh_token": ');
          return;
      }
      const now = Math.floor(Date.now() / 1000);
      const claims: Record<string, unknown> = {
        iss: 'Azure Container Registry',
        aud: form.get('service'),
        tenant: options.tenantId,
        grant_type: 'refresh_token',
        iat: now,
        nbf: now,
        ...(state.fault === 'no-exp' ? {} : { exp: now + (options.lifetimeSeconds ?? 10800) }),
      };
      return json(res, 200, { refresh_token: unsignedJwt(claims) });
    },
    { tls: true },
  );
  return Object.defineProperties(standIn, {
    exchanges: { value: exchanges },
    fault: {
      get: () => state.fault,
      set: (f: AcrFault | undefined) => {
        state.fault = f;
      },
    },
  }) as AcrStandIn;
}

/**
 * A `fetch` that sends requests for the given hosts to stand-ins (keeping path and body): a DNS
 * override for code that takes a `fetch`, so the TLS connection still meets the test CA.
 */
export function fetchVia(routes: Readonly<Record<string, StandIn>>): typeof fetch {
  return (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const standIn = routes[url.host];
    if (standIn === undefined) throw new Error(`fetchVia: no stand-in for ${url.host}`);
    return fetch(new URL(`${url.pathname}${url.search}`, standIn.url), init);
  };
}

/**
 * Azure IMDS managed identity tokens (`GET /metadata/identity/oauth2/token?resource=...`),
 * reached through AZURE_POD_IDENTITY_AUTHORITY_HOST; like the real IMDS it refuses requests
 * without `Metadata: true`. `client_id` selects a user-assigned identity.
 */
export async function startAzureImds(options: {
  tenantId: string;
  clientIds: readonly string[];
}): Promise<StandIn> {
  return startStandIn((req, res) => {
    if (req.path.replace(/\/$/, '') !== '/metadata/identity/oauth2/token')
      return json(res, 404, { error: 'not_found' });
    if (req.headers.metadata !== 'true') {
      return json(res, 400, {
        error: 'invalid_request',
        error_description: 'Required metadata header not specified',
      });
    }
    const resource = req.url.searchParams.get('resource') ?? '';
    const clientId = req.url.searchParams.get('client_id') ?? options.clientIds[0] ?? '';
    if (!options.clientIds.includes(clientId)) {
      return json(res, 400, { error: 'invalid_request', error_description: 'Identity not found' });
    }
    const now = Math.floor(Date.now() / 1000);
    return json(res, 200, {
      access_token: unsignedJwt({
        aud: resource,
        tid: options.tenantId,
        appid: clientId,
        iat: now,
        exp: now + 86_399,
      }),
      client_id: clientId,
      expires_in: '86399',
      expires_on: String(now + 86_399),
      ext_expires_in: '86399',
      not_before: String(now),
      resource,
      token_type: 'Bearer',
    });
  });
}
