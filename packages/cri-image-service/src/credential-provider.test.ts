import { RegistryAuth } from '@org/registry-auth';
import { type StandIn, startGceMetadata } from '@org/tools/stand-ins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  answerCredentialProviderRequest,
  CredentialProviderError,
  credentialProviderConfig,
} from './credential-provider.js';
import { parseRules } from './rules.js';

let metadata: StandIn;
beforeAll(async () => {
  metadata = await startGceMetadata({ token: () => 'ya29.node-token', expiresIn: 3599 });
});
afterAll(() => metadata.close());

const rules = () =>
  parseRules({
    rules: [
      {
        match: ['registry.internal:5000'],
        credentials: { provider: 'static', username: 'puller', password: 'pw' },
      },
      { match: ['*-docker.pkg.dev', '*.gcr.io'], credentials: { provider: 'gcp' } },
    ],
  });
const request = (image: string, apiVersion = 'credentialprovider.kubelet.k8s.io/v1') =>
  JSON.stringify({ apiVersion, kind: 'CredentialProviderRequest', image });

describe('the kubelet credential-provider exchange', () => {
  it('answers the first matching rule, keyed by registry, cached per registry', async () => {
    const t = 1_000_000;
    const res = await answerCredentialProviderRequest(
      request('registry.internal:5000/team/app'),
      rules(),
      new RegistryAuth(),
      () => t,
    );
    expect(res).toEqual({
      apiVersion: 'credentialprovider.kubelet.k8s.io/v1',
      kind: 'CredentialProviderResponse',
      cacheKeyType: 'Registry',
      cacheDuration: '3600s',
      auth: { 'registry.internal:5000': { username: 'puller', password: 'pw' } },
    });
  });

  it('gets cloud credentials through the real SDK (GCP metadata stand-in); cacheDuration from their expiry', async () => {
    process.env.GCE_METADATA_HOST = metadata.host;
    try {
      const res = await answerCredentialProviderRequest(
        request(
          'europe-docker.pkg.dev/acme/images/app',
          'credentialprovider.kubelet.k8s.io/v1beta1',
        ),
        rules(),
        new RegistryAuth(),
      );
      expect(res.apiVersion).toBe('credentialprovider.kubelet.k8s.io/v1beta1');
      expect(res.auth).toEqual({
        'europe-docker.pkg.dev': { username: 'oauth2accesstoken', password: 'ya29.node-token' },
      });
      const seconds = Number(res.cacheDuration.replace(/s$/, ''));
      expect(seconds).toBeGreaterThan(3000);
      expect(seconds).toBeLessThanOrEqual(3600);
    } finally {
      delete process.env.GCE_METADATA_HOST;
    }
  });

  it('gives no credentials (and no caching) for an image no rule matches', async () => {
    const res = await answerCredentialProviderRequest(
      request('docker.io/library/nginx'),
      rules(),
      new RegistryAuth(),
    );
    expect(res).toMatchObject({ auth: {}, cacheDuration: '0s' });
  });

  it('refuses bad requests with one line, and names the rule on a credential failure without secrets', async () => {
    for (const [input, message] of [
      ['not json', /not JSON/],
      [
        JSON.stringify({
          kind: 'Other',
          apiVersion: 'credentialprovider.kubelet.k8s.io/v1',
          image: 'a',
        }),
        /kind/,
      ],
      [
        JSON.stringify({ kind: 'CredentialProviderRequest', apiVersion: 'v1', image: 'a' }),
        /apiVersion/,
      ],
      [
        JSON.stringify({
          kind: 'CredentialProviderRequest',
          apiVersion: 'credentialprovider.kubelet.k8s.io/v1',
        }),
        /image/,
      ],
    ] as const) {
      await expect(
        answerCredentialProviderRequest(input, rules(), new RegistryAuth()),
      ).rejects.toThrow(message);
    }
    const broken = parseRules({
      rules: [
        {
          match: ['registry.internal:5000'],
          credentials: { provider: 'static', username: 'u', passwordFile: '/nonexistent/secret' },
        },
      ],
    });
    const err = await answerCredentialProviderRequest(
      request('registry.internal:5000/x'),
      broken,
      new RegistryAuth(),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CredentialProviderError);
    expect((err as Error).message).toMatch(
      /^rule 0 \(static\) has no credentials for registry\.internal:5000/,
    );
    expect((err as Error).message.split('\n')).toHaveLength(1);
  });

  it('writes the CredentialProviderConfig whose matchImages mirror the rules', () => {
    expect(credentialProviderConfig(rules())).toMatchObject({
      kind: 'CredentialProviderConfig',
      providers: [
        {
          name: 'kubelet-image-service',
          matchImages: ['registry.internal:5000', '*-docker.pkg.dev', '*.gcr.io'],
        },
      ],
    });
  });

  it('refuses rules with bad globs or providers, listing every problem', () => {
    expect(() =>
      parseRules({ rules: [{ match: ['https://x.io'], credentials: { provider: 'nope' } }] }),
    ).toThrow(/rules\.0\.credentials\.provider/);
  });

  describe('service-account-token rules (KEP-4412)', () => {
    const saRules = (audience2?: string) =>
      parseRules({
        rules: [
          {
            match: ['docker.example.com'],
            credentials: { provider: 'service-account-token', audience: 'docker.example.com' },
          },
          ...(audience2 === undefined
            ? []
            : [
                {
                  match: ['other.example.com'],
                  credentials: { provider: 'service-account-token', audience: audience2 },
                },
              ]),
          {
            match: ['registry.internal:5000'],
            credentials: { provider: 'static', username: 'puller', password: 'pw' },
          },
        ],
      });
    const jwt = (payload: object) =>
      ['{"alg":"RS256"}', JSON.stringify(payload), 'signature']
        .map((p, i) => (i < 2 ? Buffer.from(p).toString('base64url') : p))
        .join('.');
    const saRequest = (image: string, serviceAccountToken?: string) =>
      JSON.stringify({
        apiVersion: 'credentialprovider.kubelet.k8s.io/v1',
        kind: 'CredentialProviderRequest',
        image,
        ...(serviceAccountToken === undefined ? {} : { serviceAccountToken }),
        serviceAccountAnnotations: { 'example.com/team': 'a' },
      });

    it("presents the pod's token as the password of _k8s, cached no longer than it lives", async () => {
      const now = 1_700_000_000_000;
      const token = jwt({ aud: ['docker.example.com'], exp: now / 1000 + 600 });
      const res = await answerCredentialProviderRequest(
        saRequest('docker.example.com/team-a/app', token),
        saRules(),
        new RegistryAuth(),
        () => now,
      );
      expect(res).toEqual({
        apiVersion: 'credentialprovider.kubelet.k8s.io/v1',
        kind: 'CredentialProviderResponse',
        cacheKeyType: 'Registry',
        cacheDuration: '540s',
        auth: { 'docker.example.com': { username: '_k8s', password: token } },
      });
    });

    it('refuses a request without a token, or with one that is not a JWT, naming the rule', async () => {
      await expect(
        answerCredentialProviderRequest(
          saRequest('docker.example.com/team-a/app'),
          saRules(),
          new RegistryAuth(),
        ),
      ).rejects.toThrow(
        /rule 0 \(service-account-token\) got no serviceAccountToken.*tokenAttributes/,
      );
      const err = await answerCredentialProviderRequest(
        saRequest('docker.example.com/team-a/app', 'not-a-jwt-but-secret'),
        saRules(),
        new RegistryAuth(),
      ).catch((e: Error) => e);
      expect(err).toBeInstanceOf(CredentialProviderError);
      expect((err as Error).message).toMatch(/not a JWT with an exp claim/);
      expect((err as Error).message).not.toContain('not-a-jwt-but-secret');
    });

    it('asks kubelet for the token in the CredentialProviderConfig, one audience only', () => {
      const config = credentialProviderConfig(saRules()) as {
        providers: Record<string, unknown>[];
      };
      expect(config.providers[0]?.tokenAttributes).toEqual({
        serviceAccountTokenAudience: 'docker.example.com',
        cacheType: 'ServiceAccount',
        // the static rule's images must still be served for pods without a service account
        requireServiceAccount: false,
      });
      expect(credentialProviderConfig(rules()).providers).not.toContainEqual(
        expect.objectContaining({ tokenAttributes: expect.anything() }),
      );
      expect(() => credentialProviderConfig(saRules('other.example.com'))).toThrow(/2 audiences/);
      expect(() =>
        parseRules({
          rules: [{ match: ['x.io'], credentials: { provider: 'service-account-token' } }],
        }),
      ).toThrow(/rules\.0\.credentials\.audience/);
    });
  });
});
