import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  json,
  type OidcIssuer,
  type StandIn,
  startOidcIssuer,
  startStandIn,
} from '@org/tools/stand-ins';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createKubernetesPlugin } from './kubernetes.js';
import { authenticateLogin } from './login.js';

const dir = mkdtempSync(join(tmpdir(), 'k8s-plugin-'));
const tokenFile = join(dir, 'token');
writeFileSync(tokenFile, 'proxy-own-token\n');
let issuer: OidcIssuer;
let apiServer: StandIn;
/** token -> the user the API server says it belongs to (absent: not authenticated). */
const known = new Map<string, string>();
const now = () => Math.floor(Date.now() / 1000);

beforeAll(async () => {
  issuer = await startOidcIssuer();
  apiServer = await startStandIn(
    (req, res) => {
      if (req.method !== 'POST' || req.path !== '/apis/authentication.k8s.io/v1/tokenreviews')
        return json(res, 404, { kind: 'Status', code: 404 });
      if (req.headers.authorization !== 'Bearer proxy-own-token')
        return json(res, 401, { kind: 'Status', code: 401 });
      const review = JSON.parse(req.body) as { spec: { token: string; audiences?: string[] } };
      const username = known.get(review.spec.token);
      const ns = username?.split(':')[2];
      json(res, 201, {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenReview',
        status: username
          ? {
              authenticated: true,
              user: {
                username,
                uid: 'f00',
                groups: [
                  'system:serviceaccounts',
                  `system:serviceaccounts:${ns}`,
                  'system:authenticated',
                ],
              },
              audiences: review.spec.audiences ?? ['https://kubernetes.default.svc'],
            }
          : { authenticated: false, error: 'token has been invalidated' },
      });
    },
    { tls: true },
  );
});
afterAll(async () => {
  await issuer.close();
  await apiServer.close();
});
beforeEach(() => {
  known.clear();
  apiServer.requests.length = 0;
});

const saToken = (sub: string, extra: Record<string, unknown> = {}) =>
  issuer.sign({
    iss: issuer.issuer,
    aud: 'docker.example.com',
    sub,
    iat: now(),
    exp: now() + 600,
    'kubernetes.io': { namespace: sub.split(':')[2], serviceaccount: { name: sub.split(':')[3] } },
    ...extra,
  });
const caFile = () => join(process.env.STAND_IN_TLS_DIR as string, 'ca.crt');

describe('the kubernetes plugin, tokenreview mode', () => {
  const plugin = () =>
    createKubernetesPlugin({
      name: 'k8s',
      mode: 'tokenreview',
      apiServer: apiServer.url,
      caFile: caFile(),
      tokenFile,
      audiences: ['docker.example.com'],
      cacheSeconds: 0,
    });

  it("asks the API server with the proxy's own token; namespace/serviceaccount is the subject", async () => {
    const token = saToken('system:serviceaccount:team-a:puller');
    known.set(token, 'system:serviceaccount:team-a:puller');
    const result = await authenticateLogin([plugin()], { username: '_k8s', password: token });
    expect(result).toEqual({
      ok: true,
      identity: expect.objectContaining({
        plugin: 'k8s',
        subject: 'team-a/puller',
        groups: expect.arrayContaining(['system:serviceaccounts:team-a']),
        claims: expect.objectContaining({ namespace: 'team-a', serviceaccount: 'puller' }),
      }),
    });
    const sent = JSON.parse(apiServer.requests[0]?.body ?? '{}');
    expect(sent.spec).toEqual({ token, audiences: ['docker.example.com'] });
  });

  it('refuses a token the API server no longer accepts (revoked), and non-service-account users', async () => {
    const revoked = saToken('system:serviceaccount:team-a:gone');
    expect(await plugin().authenticate({ username: '_k8s', password: revoked })).toEqual({
      ok: false,
      reason: 'BAD_PASSWORD',
    });
    const user = saToken('system:serviceaccount:team-a:x');
    known.set(user, 'alice@example.com');
    expect((await plugin().authenticate({ username: '_k8s', password: user })).ok).toBe(false);
  });

  it('is UNAVAILABLE when the API server refuses the proxy or cannot be reached', async () => {
    const token = saToken('system:serviceaccount:team-a:puller');
    known.set(token, 'system:serviceaccount:team-a:puller');
    const wrongOwnToken = join(dir, 'wrong');
    writeFileSync(wrongOwnToken, 'not-ours');
    for (const p of [
      createKubernetesPlugin({
        name: 'k8s',
        mode: 'tokenreview',
        apiServer: apiServer.url,
        caFile: caFile(),
        tokenFile: wrongOwnToken,
      }),
      createKubernetesPlugin({
        name: 'k8s',
        mode: 'tokenreview',
        apiServer: 'https://127.0.0.1:9',
        caFile: caFile(),
        tokenFile,
      }),
      createKubernetesPlugin({
        name: 'k8s',
        mode: 'tokenreview',
        apiServer: apiServer.url,
        caFile: caFile(),
        tokenFile: join(dir, 'missing'),
      }),
    ]) {
      expect(await p.authenticate({ username: '_k8s', password: token })).toEqual({
        ok: false,
        reason: 'UNAVAILABLE',
      });
    }
  });

  it('reuses a positive review for cacheSeconds, keyed by a hash of the token', async () => {
    const cached = createKubernetesPlugin({
      name: 'k8s',
      mode: 'tokenreview',
      apiServer: apiServer.url,
      caFile: caFile(),
      tokenFile,
      cacheSeconds: 10,
    });
    const token = saToken('system:serviceaccount:team-a:puller');
    known.set(token, 'system:serviceaccount:team-a:puller');
    for (let i = 0; i < 3; i++)
      expect((await cached.authenticate({ username: '_k8s', password: token })).ok).toBe(true);
    expect(apiServer.requests).toHaveLength(1);
  });
});

describe('the kubernetes plugin, oidc mode', () => {
  it('verifies against the cluster issuer and maps the service account', async () => {
    const plugin = createKubernetesPlugin({
      name: 'cluster',
      mode: 'oidc',
      issuer: issuer.issuer,
      audience: 'docker.example.com',
    });
    const ok = await plugin.authenticate({
      username: '_k8s',
      password: saToken('system:serviceaccount:team-b:ci'),
    });
    expect(ok).toEqual({
      ok: true,
      identity: expect.objectContaining({ plugin: 'cluster', subject: 'team-b/ci' }),
    });
    // a valid token from the issuer, but not a service account
    expect(
      (await plugin.authenticate({ username: '_k8s', password: saToken('user:alice:x:y') })).ok,
    ).toBe(false);
    expect(
      (
        await plugin.authenticate({
          username: '_k8s',
          password: saToken('system:serviceaccount:team-b:ci', { aud: 'other' }),
        })
      ).ok,
    ).toBe(false);
  });
});
