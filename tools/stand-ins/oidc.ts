import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { json, type StandIn, startStandIn } from './server.js';

export interface OidcIssuer {
  /** The issuer URL (`iss`), `http://127.0.0.1:PORT`. */
  readonly issuer: string;
  readonly standIn: StandIn;
  /** How often the JWKS was fetched. */
  jwksFetches(): number;
  /** An RS256 token signed with the current key (or as `header` overrides say). */
  sign(claims: Record<string, unknown>, header?: Record<string, unknown>): string;
  /** A new signing key; the old one stays published (`keep`) or is dropped. */
  rotate(keep?: boolean): void;
  /** The current public key as PEM (for HS256-confusion tests). */
  publicKeyPem(): string;
  close(): Promise<void>;
}

const b64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');

/**
 * An OIDC issuer on loopback, as GitHub Actions, Dex or Keycloak look to a relying party:
 * `/.well-known/openid-configuration` and a JWKS of RS256 keys (by `kid`), made with node:crypto.
 */
export async function startOidcIssuer(): Promise<OidcIssuer> {
  let keys: Array<{
    kid: string;
    privateKey: KeyObject;
    publicKey: KeyObject;
    jwk: Record<string, unknown>;
  }> = [];
  let counter = 0;
  const addKey = () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const kid = `key-${++counter}`;
    keys.push({
      kid,
      privateKey,
      publicKey,
      jwk: { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' },
    });
  };
  addKey();
  let jwksFetches = 0;
  const standIn = await startStandIn((req, res) => {
    if (req.path === '/.well-known/openid-configuration') {
      return json(res, 200, {
        issuer: standIn.url,
        jwks_uri: `${standIn.url}/jwks`,
        id_token_signing_alg_values_supported: ['RS256'],
      });
    }
    if (req.path === '/jwks') {
      jwksFetches++;
      return json(res, 200, { keys: keys.map((k) => k.jwk) });
    }
    json(res, 404, { error: 'not found' });
  });
  const current = () => keys[keys.length - 1] as (typeof keys)[number];
  return {
    issuer: standIn.url,
    standIn,
    jwksFetches: () => jwksFetches,
    sign(claims, header = {}) {
      const key = current();
      const h = b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: key.kid, ...header }));
      const p = b64url(JSON.stringify(claims));
      const signature = sign('sha256', Buffer.from(`${h}.${p}`), key.privateKey);
      return `${h}.${p}.${b64url(signature)}`;
    },
    rotate(keep = true) {
      if (!keep) keys = [];
      addKey();
    },
    publicKeyPem() {
      return current().publicKey.export({ format: 'pem', type: 'spki' }).toString();
    },
    close: () => standIn.close(),
  };
}
