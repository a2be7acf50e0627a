import { createPrivateKey, type KeyObject, randomUUID, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCertificate } from './certs.js';
import { json, type StandIn, startStandIn } from './server.js';

/** One token request the stand-in answered. */
export interface TokenFetch {
  readonly method: string;
  /** The Basic (or OAuth2 form) username; undefined when anonymous. */
  readonly account: string | undefined;
  readonly scopes: readonly string[];
  readonly status: number;
}

export interface RegistryTokenServer {
  /** The realm to put in docker-registry's `auth.token.realm`. */
  readonly realm: string;
  readonly service: string;
  readonly issuer: string;
  /** PEM file holding the self-signed signing certificate (docker-registry's `rootcertbundle`). */
  readonly certFile: string;
  /** Every request, in order. */
  readonly fetches: TokenFetch[];
  /** Signs a token like the server does, with any claims changed: for forged/expired cases. */
  sign(claims: Record<string, unknown>): string;
  close(): Promise<void>;
}

export interface RegistryTokenServerOptions {
  /** username -> password; these get pull and push on every repository, and the catalog. */
  readonly users?: Readonly<Record<string, string>>;
  /** Repository name prefixes anonymous clients may pull (Docker Hub's public images). */
  readonly publicRepositories?: readonly string[];
  /** `expires_in` of issued tokens. Default 300 s. */
  readonly expiresIn?: number;
}

const b64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');

/**
 * A token server that signs like Docker Hub's for distribution's `auth: token`: ES256 with a
 * P-256 key whose self-signed certificate (made by the real `openssl`) is the registry's
 * `rootcertbundle`, the certificate in the JWT header's `x5c`, `aud` a string (distribution 2.8
 * cannot read an array), and an `access` claim with the intersection of what was asked for and
 * what the account may do. Answers `GET ?service&scope` with Basic or anonymously and the OAuth2
 * `POST` form; a wrong password is 401.
 */
export async function startRegistryTokenServer(
  options: RegistryTokenServerOptions = {},
): Promise<RegistryTokenServer> {
  const dir = mkdtempSync(join(tmpdir(), 'registry-token-'));
  const { certFile, keyFile } = makeCertificate(dir, 'signing', {
    subject: '/CN=registry-token-stand-in',
  });
  const key: KeyObject = createPrivateKey(readFileSync(keyFile));
  const der = readFileSync(certFile, 'utf8')
    .replace(/-----[A-Z ]+-----/g, '')
    .replace(/\s+/g, '');
  const service = 'registry-stand-in';
  const issuer = 'registry-token-stand-in';
  const expiresIn = options.expiresIn ?? 300;
  const users = options.users ?? {};
  const fetches: TokenFetch[] = [];

  const signClaims = (claims: Record<string, unknown>) => {
    const header = b64url(JSON.stringify({ typ: 'JWT', alg: 'ES256', x5c: [der] }));
    const payload = b64url(JSON.stringify(claims));
    const signature = sign('sha256', Buffer.from(`${header}.${payload}`), {
      key,
      dsaEncoding: 'ieee-p1363',
    });
    return `${header}.${payload}.${b64url(signature)}`;
  };

  const grant = (account: string | undefined, scopes: readonly string[]) =>
    scopes.flatMap((scope) => {
      const cut = scope.lastIndexOf(':');
      const first = scope.indexOf(':');
      if (first < 0 || cut <= first) return [];
      const type = scope.slice(0, first);
      const name = scope.slice(first + 1, cut);
      const asked = scope.slice(cut + 1).split(',');
      if (type === 'registry' && name === 'catalog' && account !== undefined)
        return [{ type, name, actions: ['*'] }];
      if (type !== 'repository') return [];
      const allowed =
        account !== undefined
          ? ['pull', 'push']
          : (options.publicRepositories ?? []).some((p) => name === p || name.startsWith(`${p}/`))
            ? ['pull']
            : [];
      const actions = asked.filter((a) => allowed.includes(a));
      return actions.length ? [{ type, name, actions }] : [];
    });

  const standIn: StandIn = await startStandIn((req, res) => {
    const url = req.url;
    if (url.pathname !== '/token') return json(res, 404, { error: 'not found' });
    let username: string | undefined;
    let password: string | undefined;
    let scopes: string[];
    if (req.method === 'POST') {
      const form = new URLSearchParams(req.body);
      if (form.get('grant_type') !== 'password')
        return json(res, 400, { error: 'unsupported_grant_type' });
      username = form.get('username') ?? undefined;
      password = form.get('password') ?? '';
      scopes = form.getAll('scope').flatMap((s) => s.split(' ').filter(Boolean));
    } else {
      const basic = /^Basic (.+)$/i.exec(req.headers.authorization ?? '')?.[1];
      if (basic) {
        const text = Buffer.from(basic, 'base64').toString();
        const colon = text.indexOf(':');
        username = text.slice(0, colon);
        password = text.slice(colon + 1);
      }
      scopes = url.searchParams.getAll('scope');
    }
    if (username !== undefined && users[username] !== password) {
      fetches.push({ method: req.method, account: username, scopes, status: 401 });
      return json(res, 401, { details: 'incorrect username or password' });
    }
    fetches.push({ method: req.method, account: username, scopes, status: 200 });
    const now = Math.floor(Date.now() / 1000);
    const token = signClaims({
      iss: issuer,
      sub: username ?? '',
      aud: service,
      exp: now + expiresIn,
      nbf: now - 1,
      iat: now,
      jti: randomUUID(),
      access: grant(username, scopes),
    });
    return json(res, 200, {
      token,
      access_token: token,
      expires_in: expiresIn,
      issued_at: new Date(now * 1000).toISOString(),
    });
  });

  return {
    realm: `${standIn.url}/token`,
    service,
    issuer,
    certFile,
    fetches,
    sign: signClaims,
    close: async () => {
      await standIn.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
