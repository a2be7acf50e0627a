import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { looksLikeJwt } from './login.js';
import { createOidcPlugin } from './oidc.js';
import type { AuthPlugin, AuthResult, Identity } from './plugin.js';

/** Where a pod finds its own service-account credentials. */
const IN_CLUSTER = '/var/run/secrets/kubernetes.io/serviceaccount';
const REVIEW_PATH = '/apis/authentication.k8s.io/v1/tokenreviews';
const REVIEW_TIMEOUT_MS = 5_000;
const REVIEW_BODY_MAX = 64 * 1024;
const SERVICE_ACCOUNT =
  /^system:serviceaccount:([a-z0-9]([-a-z0-9]*[a-z0-9])?):([a-z0-9]([-.a-z0-9]*[a-z0-9])?)$/;

export type KubernetesOptions =
  | {
      readonly name: string;
      /** Verify tokens locally as JWTs from the cluster's service-account issuer. */
      readonly mode: 'oidc';
      /** The cluster's `--service-account-issuer` (`https://kubernetes.default.svc`, GKE/EKS URLs). */
      readonly issuer: string;
      /** The audience the tokens are bound to (projected volume `audience`). */
      readonly audience: string;
      readonly jwksUri?: string;
      readonly fetch?: typeof fetch;
    }
  | {
      readonly name: string;
      /** Ask the API server (TokenReview), so deleted pods' and revoked tokens fail at once. */
      readonly mode: 'tokenreview';
      /** API server URL. Default: from KUBERNETES_SERVICE_HOST/PORT (in-cluster). */
      readonly apiServer?: string;
      /** CA bundle for the API server. Default: the in-cluster `ca.crt`. */
      readonly caFile?: string;
      /** The proxy's own token for the API server (needs `create` on tokenreviews). Default: in-cluster. */
      readonly tokenFile?: string;
      /** Audiences the token must be valid for (TokenReview `spec.audiences`); default: the API server's. */
      readonly audiences?: readonly string[];
      /** How long a positive review is reused, seconds. Default 10; 0 turns caching off. */
      readonly cacheSeconds?: number;
    };

/** `<namespace>/<serviceaccount>` from a service-account username, or undefined. */
function serviceAccountOf(username: unknown): { namespace: string; name: string } | undefined {
  if (typeof username !== 'string') return undefined;
  const m = SERVICE_ACCOUNT.exec(username);
  return m?.[1] && m[3] ? { namespace: m[1], name: m[3] } : undefined;
}

interface TokenReviewStatus {
  authenticated?: boolean;
  user?: { username?: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> };
  audiences?: string[];
  error?: string;
}

/** POST a TokenReview over TLS with the proxy's token; bounded time and size. */
function review(
  apiServer: URL,
  ca: Buffer | undefined,
  bearer: string,
  token: string,
  audiences: readonly string[] | undefined,
): Promise<TokenReviewStatus> {
  const body = JSON.stringify({
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenReview',
    spec: { token, ...(audiences ? { audiences } : {}) },
  });
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(REVIEW_PATH, apiServer),
      {
        method: 'POST',
        ...(ca ? { ca } : {}),
        headers: {
          authorization: `Bearer ${bearer}`,
          'content-type': 'application/json',
          accept: 'application/json',
          'content-length': Buffer.byteLength(body),
        },
        timeout: REVIEW_TIMEOUT_MS,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > REVIEW_BODY_MAX) req.destroy(new Error('TokenReview answer too large'));
          else chunks.push(c);
        });
        res.on('end', () => {
          if (res.statusCode !== 201 && res.statusCode !== 200) {
            reject(new Error(`TokenReview answered ${res.statusCode}`));
            return;
          }
          try {
            const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
              status?: TokenReviewStatus;
            };
            resolve(parsed.status ?? {});
          } catch {
            reject(new Error('TokenReview answer is not JSON'));
          }
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('TokenReview timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Kubernetes service-account tokens. `mode: oidc` verifies them locally against the cluster's
 * issuer (discovery + JWKS, like the oidc plugin); `mode: tokenreview` asks the API server with
 * the proxy's own in-cluster credentials, so tokens of deleted pods or service accounts fail at
 * once. Either way only service-account subjects are accepted and the identity is
 * `<name>:<namespace>/<serviceaccount>` (policy: `k8s:team-a/*`), with the review's groups.
 */
export function createKubernetesPlugin(options: KubernetesOptions): AuthPlugin {
  const { name } = options;
  if (typeof name !== 'string' || name === '') throw new TypeError('kubernetes: name is required');

  if (options.mode === 'oidc') {
    const oidc = createOidcPlugin({
      name,
      issuer: options.issuer,
      audience: options.audience,
      ...(options.jwksUri ? { jwksUri: options.jwksUri } : {}),
      ...(options.fetch ? { fetch: options.fetch } : {}),
    });
    return {
      name,
      type: 'kubernetes',
      family: 'k8s',
      async authenticate(login): Promise<AuthResult> {
        const result = await oidc.authenticate(login);
        if (!result.ok) return result;
        const sa = serviceAccountOf(result.identity.subject);
        if (!sa) return { ok: false, reason: 'BAD_PASSWORD' };
        const identity: Identity = {
          plugin: name,
          subject: `${sa.namespace}/${sa.name}`,
          groups: ['system:serviceaccounts', `system:serviceaccounts:${sa.namespace}`],
          claims: result.identity.claims,
        };
        return { ok: true, identity };
      },
    };
  }

  if (options.mode !== 'tokenreview') throw new TypeError(`${name}.mode: oidc or tokenreview`);
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const apiServer = new URL(
    options.apiServer ??
      (host
        ? `https://${host.includes(':') ? `[${host}]` : host}:${process.env.KUBERNETES_SERVICE_PORT ?? '443'}`
        : 'https://kubernetes.default.svc'),
  );
  if (apiServer.protocol !== 'https:') throw new TypeError(`${name}.apiServer: https`);
  const caFile = options.caFile ?? `${IN_CLUSTER}/ca.crt`;
  const tokenFile = options.tokenFile ?? `${IN_CLUSTER}/token`;
  const cacheMs = (options.cacheSeconds ?? 10) * 1000;
  if (!Number.isFinite(cacheMs) || cacheMs < 0 || cacheMs > 300_000)
    throw new TypeError(`${name}.cacheSeconds: 0 to 300`);
  const cache = new Map<string, { identity: Identity; until: number }>();
  const CACHE_MAX = 10_000;

  return {
    name,
    type: 'kubernetes',
    family: 'k8s',
    async authenticate(login): Promise<AuthResult> {
      if (!looksLikeJwt(login.password)) return { ok: false, reason: 'NOT_FOR_THIS_PLUGIN' };
      // Keyed by a hash, so the cache never holds the tokens themselves.
      const key = createHash('sha256').update(login.password).digest('base64url');
      const hit = cache.get(key);
      if (hit && hit.until > Date.now()) return { ok: true, identity: hit.identity };
      let status: TokenReviewStatus;
      try {
        // Re-read each time: the projected token of the proxy's own pod is rotated by kubelet.
        const bearer = readFileSync(tokenFile, 'utf8').trim();
        let ca: Buffer | undefined;
        try {
          ca = readFileSync(caFile);
        } catch {
          ca = undefined; // system roots (an API server with a public certificate)
        }
        status = await review(apiServer, ca, bearer, login.password, options.audiences);
      } catch {
        return { ok: false, reason: 'UNAVAILABLE' };
      }
      const sa = serviceAccountOf(status.user?.username);
      if (status.authenticated !== true || !sa) return { ok: false, reason: 'BAD_PASSWORD' };
      const identity: Identity = {
        plugin: name,
        subject: `${sa.namespace}/${sa.name}`,
        groups: (status.user?.groups ?? []).filter((g) => typeof g === 'string'),
        claims: {
          namespace: sa.namespace,
          serviceaccount: sa.name,
          ...(status.user?.uid ? { uid: status.user.uid } : {}),
          ...(status.user?.extra ? { extra: status.user.extra } : {}),
        },
      };
      if (cacheMs > 0) {
        if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value as string);
        cache.set(key, { identity, until: Date.now() + cacheMs });
      }
      return { ok: true, identity };
    },
  };
}
