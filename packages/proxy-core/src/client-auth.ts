import type { IncomingMessage } from 'node:http';
import { TLSSocket } from 'node:tls';
import type { ConnectionInfo, Login } from '@org/auth-plugins';
import type { Context, Hono } from 'hono';
import { RegistryError } from './errors.js';
import { LoginThrottle } from './login-throttle.js';
import { requestInfo } from './observe.js';
import type { TokenService, VerifiedToken } from './token-service.js';

const MAX_CREDENTIAL_HEADER = 4096;

export interface ClientAuth {
  readonly tokens: TokenService;
  readonly realm: string;
  readonly service: string;
  /** Failed-login limits; default: 10 per username and 50 per address per 5 minutes. */
  readonly loginThrottle?: LoginThrottle;
}

/** The challenge for a 401: every one carries it (containerd never pings first). */
export function challenge(
  auth: ClientAuth,
  scope?: string,
  error?: 'insufficient_scope' | 'invalid_token',
): string {
  return [
    `Bearer realm="${auth.realm}"`,
    `service="${auth.service}"`,
    ...(scope === undefined ? [] : [`scope="${scope}"`]),
    ...(error === undefined ? [] : [`error="${error}"`]),
  ].join(',');
}

/** A 401 with the challenge; thrown and mapped by onError like every other error. */
export class ChallengeError extends RegistryError {
  readonly challenge: string;

  constructor(code: 'UNAUTHORIZED' | 'DENIED', message: string, value: string) {
    super(401, code, message);
    this.challenge = value;
  }
}

/**
 * Checks the request's bearer token for `/v2`: any valid token for the version check, one
 * covering pull on `name` otherwise. Refusals are 401 with the challenge (and the scope to ask
 * for), so clients fetch a token and retry.
 */
export async function requireToken(
  c: Context,
  auth: ClientAuth,
  name: string | undefined,
  catalog = false,
): Promise<VerifiedToken> {
  const scope = catalog
    ? 'registry:catalog:*'
    : name === undefined
      ? undefined
      : `repository:${name}:pull`;
  const header = c.req.header('authorization') ?? '';
  // The scheme is case-insensitive (RFC 9110 §11.1).
  const bearer = /^Bearer ([A-Za-z0-9._~+/=-]+)$/i.exec(header)?.[1];
  if (bearer === undefined) {
    throw new ChallengeError('UNAUTHORIZED', 'authentication required', challenge(auth, scope));
  }
  let token: VerifiedToken;
  try {
    token = await auth.tokens.verify(bearer);
  } catch {
    throw new ChallengeError(
      'UNAUTHORIZED',
      'authentication required',
      challenge(auth, scope, 'invalid_token'),
    );
  }
  if (
    catalog
      ? !auth.tokens.allowsCatalog(token)
      : name !== undefined && !auth.tokens.allows(token, name, 'pull')
  ) {
    throw new ChallengeError(
      'DENIED',
      'requested access to the resource is denied',
      challenge(auth, scope, 'insufficient_scope'),
    );
  }
  return token;
}

/** `/token` (GET with Basic, POST OAuth2 form) and `/.well-known/jwks.json`. */
export function mountTokenRoutes(app: Hono, auth: ClientAuth): void {
  const throttle = auth.loginThrottle ?? new LoginThrottle();
  /** A refused login as a 401 with the Basic challenge RFC 9110 §15.5.2 requires on every 401. */
  const basicChallenge = (err: unknown): unknown =>
    err instanceof RegistryError && err.status === 401 && !(err instanceof ChallengeError)
      ? new ChallengeError('UNAUTHORIZED', err.message, `Basic realm="${auth.service}"`)
      : err;

  /** Issues a token, refusing logins from a username or address that failed too often. */
  const issue = async (c: Context, login: Login | undefined, scopes: string[]) => {
    const address = clientAddress(c);
    const username = login?.username;
    const wait = login === undefined ? 0 : throttle.retryAfter(username, address);
    if (wait > 0) {
      throw new RegistryError(429, 'TOOMANYREQUESTS', 'too many failed logins; try again later', {
        retryAfterSeconds: wait,
      });
    }
    try {
      const issued = await auth.tokens.issue(
        login,
        scopes,
        login === undefined ? connectionOf(c) : undefined,
      );
      throttle.succeeded(username);
      return c.json(issued);
    } catch (err) {
      if (login !== undefined && err instanceof RegistryError && err.status === 401)
        throttle.failed(username, address);
      throw basicChallenge(err);
    }
  };

  app.get('/.well-known/jwks.json', (c) => c.json(auth.tokens.jwks()));

  app.get('/token', async (c) => {
    requestInfo(c.req.raw).kind = 'token';
    checkService(c.req.query('service'), auth);
    const address = clientAddress(c);
    let login: Login | undefined;
    try {
      login = basicLogin(c.req.header('authorization'));
    } catch (err) {
      throttle.failed(undefined, address);
      throw basicChallenge(err);
    }
    return issue(c, login, c.req.queries('scope') ?? []);
  });

  app.post('/token', async (c) => {
    requestInfo(c.req.raw).kind = 'token';
    const form = await c.req.parseBody();
    const get = (k: string) => (typeof form[k] === 'string' ? (form[k] as string) : undefined);
    checkService(get('service'), auth);
    const scopes = (get('scope') ?? '').split(' ').filter((s) => s !== '');
    const grant = get('grant_type');
    if (grant === 'password') {
      const username = get('username');
      const password = get('password');
      if (username === undefined || password === undefined)
        throw new RegistryError(400, 'UNSUPPORTED', 'username and password are required');
      return issue(c, { username, password }, scopes);
    }
    // No refresh tokens are issued, so the refresh grant has nothing to refresh.
    return c.json({ error: 'unsupported_grant_type' }, 400);
  });
}

/** The transport facts for connection plugins: address, and a client certificate under TLS. */
function connectionOf(c: Context): ConnectionInfo {
  const socket = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming?.socket;
  if (socket === undefined) return {};
  let certificate: ConnectionInfo['certificate'];
  if (socket instanceof TLSSocket) {
    const peer = socket.getPeerCertificate();
    if (peer && Object.keys(peer).length > 0) {
      certificate = {
        authorized: socket.authorized,
        subject: { ...(peer.subject ?? {}) } as Record<string, string>,
        subjectAltName: peer.subjectaltname,
        fingerprint256: peer.fingerprint256,
      };
    }
  }
  return { remoteAddress: socket.remoteAddress, certificate };
}

/** The client's address as the socket sees it (X-Forwarded-For is not trusted). */
function clientAddress(c: Context): string | undefined {
  return (c.env as { incoming?: IncomingMessage } | undefined)?.incoming?.socket?.remoteAddress;
}

function checkService(service: string | undefined, auth: ClientAuth): void {
  if (service !== undefined && service !== auth.service) {
    throw new RegistryError(400, 'UNSUPPORTED', 'unknown service');
  }
}

/** Basic credentials, if any; anything else in Authorization is refused. */
function basicLogin(
  header: string | undefined,
): { username: string; password: string } | undefined {
  if (header === undefined || header === '') return undefined;
  const refuse = () => new RegistryError(401, 'UNAUTHORIZED', 'authentication failed');
  if (header.length > MAX_CREDENTIAL_HEADER) throw refuse();
  const m = /^Basic ([A-Za-z0-9+/]+={0,2})$/.exec(header);
  if (!m?.[1]) throw refuse();
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) throw refuse();
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
