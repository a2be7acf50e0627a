import {
  createRemoteJWKSet,
  customFetch,
  errors,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
} from 'jose';
import { looksLikeJwt } from './login.js';
import type { AuthPlugin, AuthResult, Identity } from './plugin.js';

export interface OidcOptions {
  readonly name: string;
  /** The issuer URL, exactly as tokens carry it in `iss` (`https://token.actions.githubusercontent.com`). */
  readonly issuer: string;
  /** Accepted `aud` values; at least one is required. */
  readonly audience: string | readonly string[];
  /** Signature algorithms accepted. Default: RS256, RS384, RS512, PS256, ES256, ES384, EdDSA. */
  readonly algorithms?: readonly string[];
  /** Allowed clock skew for `exp`/`nbf`/`iat`, seconds. Default 60, at most 300. */
  readonly clockToleranceSeconds?: number;
  /** Claim that names the subject. Default `sub`. */
  readonly subjectClaim?: string;
  /** Claim holding the groups (a string array), if any: Keycloak/Dex `groups`, Entra `groups`. */
  readonly groupsClaim?: string;
  /** Claims that must be present (besides `iss`, `aud`, `exp`, `sub`). */
  readonly requiredClaims?: readonly string[];
  /** JWKS URL; default: `jwks_uri` from `<issuer>/.well-known/openid-configuration`. */
  readonly jwksUri?: string;
  /** HTTP client for discovery and JWKS. Default: the global fetch. */
  readonly fetch?: typeof fetch;
}

const DEFAULT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'ES256', 'ES384', 'EdDSA'];
/** Never: unsigned tokens, and HMAC (whose "key" would be the issuer's public key). */
const FORBIDDEN_ALGORITHMS = /^(none|HS\d+)$/i;
const DOCUMENT_MAX_BYTES = 256 * 1024;
const FETCH_TIMEOUT_MS = 5_000;
/** A new key is looked for at most this often (a flood of unknown `kid`s cannot hammer the issuer). */
const JWKS_COOLDOWN_MS = 30_000;
/** Keys are re-fetched at least this often (rotation without an unknown `kid`). */
const JWKS_MAX_AGE_MS = 10 * 60_000;
/** Discovery is retried at most this often after it failed. */
const DISCOVERY_RETRY_MS = 30_000;

/** GET a JSON document with a timeout and a size limit. */
async function getJson(doFetch: typeof fetch, url: string): Promise<unknown> {
  const res = await doFetch(url, {
    headers: { accept: 'application/json' },
    redirect: 'error',
    signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
  });
  if (!res.ok) {
    await res.body?.cancel();
    throw new Error(`${url} answered ${res.status}`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body ?? []) {
    size += chunk.length;
    if (size > DOCUMENT_MAX_BYTES) {
      await res.body?.cancel().catch(() => {});
      throw new Error(`${url} sent more than ${DOCUMENT_MAX_BYTES} bytes`);
    }
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

/** A URL that is https, or http on a loopback host (test issuers). */
function checkedUrl(value: string, what: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new TypeError(`${what}: not a URL`);
  }
  const loopback = ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback))
    throw new TypeError(`${what}: https (http only on loopback)`);
  return url;
}

/**
 * Accepts JWTs from an OIDC issuer (GitHub Actions, GitLab CI, Google, Entra, Dex, Keycloak):
 * keys from the issuer's discovery document and JWKS (cached, re-fetched on an unknown `kid` at
 * most every 30 s and at least every 10 min, so rotation works and floods do not reach the
 * issuer), `iss` and `aud` required to match, asymmetric algorithms only, bounded clock skew.
 * The token arrives as the password (username `_oidc`, or any username when it is a JWT). The
 * identity is `<name>:<sub>` with the token's top-level claims, and groups from `groupsClaim`.
 */
export function createOidcPlugin(options: OidcOptions): AuthPlugin {
  const { name } = options;
  if (typeof name !== 'string' || name === '') throw new TypeError('oidc: name is required');
  const issuer = checkedUrl(options.issuer, `${name}.issuer`).href.replace(/\/$/, '');
  const audience = typeof options.audience === 'string' ? [options.audience] : options.audience;
  if (!Array.isArray(audience) || audience.length === 0 || audience.some((a) => !a))
    throw new TypeError(`${name}.audience: one or more audiences`);
  const algorithms = [...(options.algorithms ?? DEFAULT_ALGORITHMS)];
  if (algorithms.length === 0 || algorithms.some((a) => FORBIDDEN_ALGORITHMS.test(a)))
    throw new TypeError(`${name}.algorithms: asymmetric algorithms only (never none or HS*)`);
  const tolerance = options.clockToleranceSeconds ?? 60;
  if (!Number.isInteger(tolerance) || tolerance < 0 || tolerance > 300)
    throw new TypeError(`${name}.clockToleranceSeconds: 0 to 300`);
  const doFetch = options.fetch ?? fetch;
  const subjectClaim = options.subjectClaim ?? 'sub';

  let keys: JWTVerifyGetKey | undefined;
  let discovering: Promise<JWTVerifyGetKey> | undefined;
  let failedAt = Number.NEGATIVE_INFINITY;
  const keySet = (): Promise<JWTVerifyGetKey> => {
    if (keys) return Promise.resolve(keys);
    if (Date.now() - failedAt < DISCOVERY_RETRY_MS)
      return Promise.reject(new Error('discovery failed recently'));
    discovering ??= (async () => {
      let jwksUri = options.jwksUri;
      if (jwksUri === undefined) {
        const doc = (await getJson(doFetch, `${issuer}/.well-known/openid-configuration`)) as {
          issuer?: unknown;
          jwks_uri?: unknown;
        };
        // OIDC Discovery §4.3: the document's issuer must be the one we asked.
        if (typeof doc.issuer !== 'string' || doc.issuer.replace(/\/$/, '') !== issuer)
          throw new Error('discovery document names another issuer');
        if (typeof doc.jwks_uri !== 'string') throw new Error('discovery document has no jwks_uri');
        jwksUri = doc.jwks_uri;
      }
      const set = createRemoteJWKSet(checkedUrl(jwksUri, `${name}.jwksUri`), {
        timeoutDuration: FETCH_TIMEOUT_MS,
        cooldownDuration: JWKS_COOLDOWN_MS,
        cacheMaxAge: JWKS_MAX_AGE_MS,
        [customFetch]: async (url: string, init: RequestInit) => {
          const body = await getJson(doFetch, url).catch((err: unknown) => {
            if (init.signal?.aborted) throw init.signal.reason;
            throw err;
          });
          return new Response(JSON.stringify(body), {
            headers: { 'content-type': 'application/json' },
          });
        },
      });
      keys = set;
      return set;
    })()
      .catch((err: unknown) => {
        failedAt = Date.now();
        throw err;
      })
      .finally(() => {
        discovering = undefined;
      });
    return discovering;
  };

  return {
    name,
    type: 'oidc',
    family: 'oidc',
    async authenticate(login): Promise<AuthResult> {
      if (!looksLikeJwt(login.password)) return { ok: false, reason: 'NOT_FOR_THIS_PLUGIN' };
      let getKey: JWTVerifyGetKey;
      try {
        getKey = await keySet();
      } catch {
        return { ok: false, reason: 'UNAVAILABLE' };
      }
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(login.password, getKey, {
          issuer: [issuer, `${issuer}/`],
          audience,
          algorithms,
          clockTolerance: tolerance,
          requiredClaims: ['exp', subjectClaim, ...(options.requiredClaims ?? [])],
        }));
      } catch (err) {
        // The issuer's key set could not be had (timeout, 5xx): not the client's fault.
        if (!(err instanceof errors.JOSEError) || err instanceof errors.JWKSTimeout)
          return { ok: false, reason: 'UNAVAILABLE' };
        return { ok: false, reason: 'BAD_PASSWORD' };
      }
      const subject = payload[subjectClaim];
      if (typeof subject !== 'string' || subject === '')
        return { ok: false, reason: 'BAD_PASSWORD' };
      const groupsValue = options.groupsClaim ? payload[options.groupsClaim] : undefined;
      const groups = Array.isArray(groupsValue)
        ? groupsValue.filter((g): g is string => typeof g === 'string')
        : [];
      const identity: Identity = { plugin: name, subject, groups, claims: { ...payload } };
      return { ok: true, identity };
    },
  };
}
