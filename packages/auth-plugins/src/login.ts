import type {
  AuthPlugin,
  AuthResult,
  ConnectionInfo,
  Login,
  PluginFamily,
  Refusal,
} from './plugin.js';

/** The usernames that send a login to one family of token plugins (ARCHITECTURE.md). */
export const FAMILY_USERNAMES: Readonly<Record<string, PluginFamily>> = {
  _oidc: 'oidc',
  _k8s: 'k8s',
  _gcp: 'gcp',
  _aws: 'aws',
};

/** Families whose credentials are JWTs: tried first when a password looks like one. */
const JWT_FAMILIES: ReadonlySet<PluginFamily> = new Set(['oidc', 'k8s', 'gcp']);

/** Three base64url parts whose first decodes to a JSON object with an `alg`: a JWS compact JWT. */
export function looksLikeJwt(value: string): boolean {
  if (value.length > 16_384) return false;
  const parts = value.split('.');
  if (parts.length !== 3 || parts.some((p) => !/^[A-Za-z0-9_-]*$/.test(p)) || !parts[0])
    return false;
  try {
    const header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8')) as unknown;
    return typeof header === 'object' && header !== null && 'alg' in header;
  } catch {
    return false;
  }
}

/**
 * Sends a login to the plugins it is for, in config order, and returns the first identity: the
 * username `_oidc` / `_k8s` / `_gcp` / `_aws` goes to that family only; a JWT-shaped password
 * goes to the JWT families, then to the password plugins; anything else to the password
 * plugins. A refusal reports `UNAVAILABLE` if some plugin could not decide (issuer or directory
 * down), so that can be logged apart from bad credentials; clients are told the same either way.
 */
export async function authenticateLogin(
  plugins: readonly AuthPlugin[],
  login: Login,
): Promise<AuthResult> {
  const family = (p: AuthPlugin): PluginFamily => p.family ?? 'password';
  const routed = FAMILY_USERNAMES[login.username];
  const candidates =
    routed !== undefined
      ? plugins.filter((p) => family(p) === routed)
      : looksLikeJwt(login.password)
        ? [
            ...plugins.filter((p) => JWT_FAMILIES.has(family(p))),
            ...plugins.filter((p) => family(p) === 'password'),
          ]
        : plugins.filter((p) => family(p) === 'password');
  let reason: Refusal = candidates.length === 0 ? 'NOT_FOR_THIS_PLUGIN' : 'UNKNOWN_USER';
  for (const plugin of candidates) {
    const result = await plugin.authenticate(login);
    if (result.ok) return result;
    if (result.reason === 'UNAVAILABLE') reason = 'UNAVAILABLE';
    else if (reason !== 'UNAVAILABLE' && result.reason === 'BAD_PASSWORD') reason = 'BAD_PASSWORD';
  }
  return { ok: false, reason };
}

/**
 * For a client that sent no login: the first identity a `connection` plugin (mtls, network) gives
 * for its transport, in config order, or undefined (the client stays anonymous).
 */
export async function authenticateConnection(
  plugins: readonly AuthPlugin[],
  connection: ConnectionInfo,
): Promise<AuthResult | undefined> {
  for (const plugin of plugins) {
    if (plugin.family !== 'connection' || !plugin.authenticateConnection) continue;
    const result = await plugin.authenticateConnection(connection);
    if (result.ok) return result;
  }
  return undefined;
}
