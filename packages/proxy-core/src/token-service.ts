import { createHash, randomUUID } from 'node:crypto';
import type { AuthPlugin, ConnectionInfo, Identity, Login, Policy } from '@org/auth-plugins';
import { authenticateConnection, authenticateLogin, identityName } from '@org/auth-plugins';
import { validateRepositoryName } from '@org/registry-domains';
import {
  calculateJwkThumbprint,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  type JWK,
  type JWTPayload,
  jwtVerify,
  SignJWT,
} from 'jose';
import { RegistryError } from './errors.js';

/**
 * Listing the catalog is granted to identities the policy lets pull this name: rules with `**`,
 * or one naming `_catalog/*` explicitly. `team-a/**` or a bare `*` do not match it.
 */
export const CATALOG_PSEUDO_REPOSITORY = '_catalog/list';

/** Clock skew accepted on `exp` / `nbf`. */
const CLOCK_TOLERANCE_SECONDS = 30;
/** Verified tokens remembered at most (a SHA-256 and the claims each, about 0.5 KiB). */
const VERIFIED_MAX = 10_000;

/** One grant in a token's `access` claim (distribution token spec). */
export interface Access {
  /** `repository`, or `registry` with name `catalog` for `/v2/_catalog`. */
  readonly type: 'repository' | 'registry';
  readonly name: string;
  readonly actions: readonly string[];
}

/** What `/token` answers: both `token` and `access_token` (docker and OAuth2 clients). */
export interface TokenResponse {
  readonly token: string;
  readonly access_token: string;
  readonly expires_in: number;
  readonly issued_at: string;
}

export interface VerifiedToken {
  readonly subject: string;
  readonly access: readonly Access[];
}

/** An ES256 public key as jose handles it. */
type PublicKey = Awaited<ReturnType<typeof generateKeyPair>>['publicKey'];

export interface TokenServiceOptions {
  /** Auth plugins; a login goes to those it is for (`authenticateLogin`), the first to accept wins. */
  readonly plugins: readonly AuthPlugin[];
  readonly policy: Policy;
  /** `iss` of our tokens (the proxy's public URL). */
  readonly issuer: string;
  /** `aud` of our tokens, and the `service` of our challenges. */
  readonly service: string;
  /** Token lifetime. Default 900 s; at least 60 (clients expect `expires_in` >= 60). */
  readonly ttlSeconds?: number;
  /** An ES256 key pair to sign with; default: a new one (tokens then die with the process). */
  readonly keyPair?: Awaited<ReturnType<typeof generateKeyPair>>;
  /**
   * Public ES256 keys of earlier signing keys, still accepted and published during a rotation so
   * tokens signed before it keep working until they expire (at most `ttlSeconds`).
   */
  readonly previousPublicKeys?: readonly PublicKey[];
  readonly now?: () => number;
}

export interface TokenService {
  /** A token for `login` (or anonymous) with what the policy grants of `scopes`. */
  /**
   * A token for `login`, or for a client without one, for what its `connection` proves (mtls,
   * network plugins), else anonymous; with what the policy grants of `scopes`.
   */
  issue(
    login: Login | undefined,
    scopes: readonly string[],
    connection?: ConnectionInfo,
  ): Promise<TokenResponse>;
  /** Checks signature (ES256 only, our kid), issuer, audience and time. */
  verify(token: string): Promise<VerifiedToken>;
  /** Whether a verified token covers `action` on `repository`. */
  allows(token: VerifiedToken, repository: string, action: 'pull' | 'push'): boolean;
  /** Whether a verified token may list the catalog (`registry:catalog:*`). */
  allowsCatalog(token: VerifiedToken): boolean;
  /** The public key as a JWK set, for `/.well-known/jwks.json`. */
  jwks(): { keys: JWK[] };
}

/** A requested scope: `repository:<name>:<actions>` (distribution `docs/spec/auth/scope.md`). */
export interface RequestedScope {
  readonly name: string;
  readonly actions: readonly string[];
}

/**
 * Parses scope strings (each may hold several space-separated scopes); a name asked for more
 * than once gives one entry with the actions merged. The name sits between the
 * first and the last `:` (names may carry a port). Only `repository` scopes with a valid name are
 * kept; anything else is ignored, never an error (clients ask for `registry:catalog:*` too).
 */
export function parseScopes(scopes: readonly string[]): RequestedScope[] {
  // One entry per name, actions merged: repeated scopes must not grow the token.
  const byName = new Map<string, Set<string>>();
  for (const scope of scopes.flatMap((s) => s.split(' '))) {
    if (scope.length > 1024) continue;
    const first = scope.indexOf(':');
    const last = scope.lastIndexOf(':');
    if (first <= 0 || last === first) continue;
    const type = scope.slice(0, first);
    if (type !== 'repository') continue;
    const name = scope.slice(first + 1, last);
    try {
      validateRepositoryName(name);
    } catch {
      continue;
    }
    const actions = byName.get(name) ?? new Set<string>();
    for (const a of scope.slice(last + 1).split(',')) if (/^[a-z*]+$/.test(a)) actions.add(a);
    byName.set(name, actions);
  }
  return [...byName].map(([name, actions]) => ({ name, actions: [...actions] }));
}

/**
 * Our token service's core: login through the plugins, grants through the policy, ES256 JWTs
 * with a `kid`, verification that accepts nothing but our own key and algorithm.
 */
export async function createTokenService(options: TokenServiceOptions): Promise<TokenService> {
  const ttl = options.ttlSeconds ?? 900;
  if (!Number.isInteger(ttl) || ttl < 60)
    throw new TypeError('ttlSeconds: an integer of at least 60');
  if (!Array.isArray(options.plugins)) throw new TypeError('plugins: a list of auth plugins');
  const now = options.now ?? Date.now;
  const { privateKey, publicKey } =
    options.keyPair ?? (await generateKeyPair('ES256', { extractable: true }));
  const jwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(jwk);
  const publicJwk: JWK = { ...jwk, kid, alg: 'ES256', use: 'sig' };
  /** kid -> verification key and its published JWK: the signing key first, then earlier ones. */
  const verifiers = new Map<string, { key: PublicKey; jwk: JWK }>([
    [kid, { key: publicKey, jwk: publicJwk }],
  ]);
  for (const previous of options.previousPublicKeys ?? []) {
    const pjwk = await exportJWK(previous);
    if (pjwk.kty !== 'EC' || pjwk.crv !== 'P-256')
      throw new TypeError('previousPublicKeys: ES256 (P-256) public keys');
    const pkid = await calculateJwkThumbprint(pjwk);
    if (!verifiers.has(pkid))
      verifiers.set(pkid, { key: previous, jwk: { ...pjwk, kid: pkid, alg: 'ES256', use: 'sig' } });
  }

  /**
   * Tokens already verified, by SHA-256 of the token, until they expire: every request of a pull
   * carries the same token, and an ES256 verification costs more than the rest of a manifest
   * request (10% of the proxy's CPU under `pnpm bench:load`). A token differing in any byte is
   * another key and gets the full check; an entry past its `exp` (plus the tolerance) refuses.
   */
  const verified = new Map<string, { token: VerifiedToken; expiresAt: number }>();
  const remember = (key: string, token: VerifiedToken, expiresAt: number) => {
    verified.set(key, { token, expiresAt });
    for (const oldest of verified.keys()) {
      if (verified.size <= VERIFIED_MAX) break;
      verified.delete(oldest);
    }
  };

  const login = async (
    l: Login | undefined,
    connection: ConnectionInfo | undefined,
  ): Promise<Identity | undefined> => {
    if (l === undefined) {
      if (connection === undefined) return undefined;
      const result = await authenticateConnection(options.plugins, connection);
      return result?.ok ? result.identity : undefined;
    }
    const result = await authenticateLogin(options.plugins, l);
    if (result.ok) return result.identity;
    // The same answer whatever went wrong: no user enumeration.
    throw new RegistryError(401, 'UNAUTHORIZED', 'authentication failed');
  };

  return {
    async issue(l, scopes, connection) {
      const identity = await login(l, connection);
      const access: Access[] = [];
      for (const requested of parseScopes(scopes)) {
        const actions = options.policy.grant(identity, requested.name, requested.actions);
        if (actions.length > 0) access.push({ type: 'repository', name: requested.name, actions });
      }
      if (
        scopes.some((s) => s.split(' ').some((one) => one.startsWith('registry:catalog:'))) &&
        options.policy.grant(identity, CATALOG_PSEUDO_REPOSITORY, ['pull']).length > 0
      ) {
        access.push({ type: 'registry', name: 'catalog', actions: ['*'] });
      }
      const iat = Math.floor(now() / 1000);
      const token = await new SignJWT({ access })
        .setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT' })
        .setIssuer(options.issuer)
        .setSubject(identity === undefined ? 'anonymous' : identityName(identity))
        .setAudience(options.service)
        .setIssuedAt(iat)
        .setNotBefore(iat)
        .setExpirationTime(iat + ttl)
        .setJti(randomUUID())
        .sign(privateKey);
      return {
        token,
        access_token: token,
        expires_in: ttl,
        issued_at: new Date(iat * 1000).toISOString(),
      };
    },

    async verify(token) {
      const refuse = () => new RegistryError(401, 'UNAUTHORIZED', 'authentication required');
      if (typeof token !== 'string' || token.length > 16_384) throw refuse();
      const key = createHash('sha256').update(token).digest('base64');
      const known = verified.get(key);
      if (known !== undefined) {
        if (now() < known.expiresAt) return known.token;
        verified.delete(key);
        throw refuse();
      }
      let payload: JWTPayload;
      try {
        const verifier = verifiers.get(String(decodeProtectedHeader(token).kid));
        if (verifier === undefined) throw refuse();
        ({ payload } = await jwtVerify(token, verifier.key, {
          algorithms: ['ES256'],
          issuer: options.issuer,
          audience: options.service,
          currentDate: new Date(now()),
          clockTolerance: CLOCK_TOLERANCE_SECONDS,
          requiredClaims: ['exp', 'iat', 'sub'],
        }));
      } catch {
        throw refuse();
      }
      const access = Array.isArray(payload.access) ? payload.access : [];
      const checked: Access[] = access.filter(
        (a): a is Access =>
          a !== null &&
          typeof a === 'object' &&
          (a.type === 'repository' || a.type === 'registry') &&
          typeof a.name === 'string' &&
          Array.isArray(a.actions) &&
          a.actions.every((x: unknown) => typeof x === 'string'),
      );
      const result: VerifiedToken = { subject: String(payload.sub), access: checked };
      remember(key, result, ((payload.exp as number) + CLOCK_TOLERANCE_SECONDS) * 1000);
      return result;
    },

    allows(token, repository, action) {
      return token.access.some(
        (a) => a.type === 'repository' && a.name === repository && a.actions.includes(action),
      );
    },

    allowsCatalog(token) {
      return token.access.some(
        (a) => a.type === 'registry' && a.name === 'catalog' && a.actions.includes('*'),
      );
    },

    jwks() {
      return { keys: [...verifiers.values()].map((v) => v.jwk) };
    },
  };
}
