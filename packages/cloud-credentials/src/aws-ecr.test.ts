import { detectProvider, validateRegistry } from '@org/registry-domains';
import { type EcrStandIn, RedirectToStandIn, startEcr } from '@org/tools/stand-ins';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createAwsSource } from './aws.js';
import { CredentialCache } from './cache.js';
import type { CredentialTarget } from './types.js';

const KEY = { accessKeyId: 'AKIASTANDIN000000001', secretAccessKey: 'stand-in-secret-key' };
let ecr: EcrStandIn;

beforeAll(async () => {
  ecr = await startEcr({ keys: [KEY] });
});
afterAll(() => ecr.close());
beforeEach(() => {
  ecr.calls.length = 0;
  ecr.fault = undefined;
});

function source(extra: Parameters<typeof createAwsSource>[0] = {}) {
  return createAwsSource({
    credentials: KEY,
    requestHandler: new RedirectToStandIn(ecr.port),
    maxAttempts: 1,
    ...extra,
  });
}

const target = (host: string): CredentialTarget => detectProvider(host) as CredentialTarget;

describe('aws source (ECR GetAuthorizationToken)', () => {
  it.each([
    [
      '123456789012.dkr.ecr.eu-west-1.amazonaws.com',
      'api.ecr.eu-west-1.amazonaws.com',
      'eu-west-1',
      'ecr',
    ],
    // the SDK's endpoint rules: FIPS hosts for ecr-fips registries
    [
      '123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com',
      'api.ecr-fips.us-gov-west-1.amazonaws.com',
      'us-gov-west-1',
      'ecr',
    ],
    [
      '123456789012.dkr.ecr-fips.us-east-1.amazonaws.com',
      'api.ecr-fips.us-east-1.amazonaws.com',
      'us-east-1',
      'ecr',
    ],
    [
      '123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn',
      'api.ecr.cn-north-1.amazonaws.com.cn',
      'cn-north-1',
      'ecr',
    ],
    [
      '123456789012.dkr-ecr.us-west-2.on.aws',
      'api.ecr.us-west-2.amazonaws.com',
      'us-west-2',
      'ecr',
    ],
    ['public.ecr.aws', 'api.ecr-public.us-east-1.amazonaws.com', 'us-east-1', 'ecr-public'],
  ])(
    '%s: calls %s, signed for %s/%s, and decodes AWS:<password>',
    async (registry, host, region, service) => {
      const before = Date.now();
      const creds = await source().fetch(target(registry));
      expect(creds.username).toBe('AWS');
      expect(creds.password).toBe('ecr-password-1');
      expect(creds.expiresAt.getTime()).toBeGreaterThan(before + 11.9 * 3600_000);
      expect(ecr.calls).toHaveLength(1);
      expect(ecr.calls[0]).toMatchObject({ host, region, service, accessKeyId: KEY.accessKeyId });
    },
  );

  it('passes registryIds', async () => {
    await source({ registryIds: ['210987654321'] }).fetch(
      target('123456789012.dkr.ecr.eu-west-1.amazonaws.com'),
    );
    expect(ecr.calls[0]?.body).toEqual({ registryIds: ['210987654321'] });
  });

  it('takes the region from the option for a gateway when validation is skipped', async () => {
    const match = validateRegistry('aws', 'oci-gateway.example.org', {
      skipRegistryValidation: true,
      region: 'eu-central-1',
    });
    const creds = await source().fetch(match);
    expect(creds.username).toBe('AWS');
    expect(ecr.calls[0]).toMatchObject({
      host: 'api.ecr.eu-central-1.amazonaws.com',
      region: 'eu-central-1',
    });
  });

  it('needs a region when the target has none', async () => {
    await expect(source().fetch({ registry: 'oci-gateway.example.org' })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      message: expect.stringContaining('region'),
    });
    expect(ecr.calls).toHaveLength(0);
  });

  it.each([
    ['throttle', 'THROTTLED'],
    ['denied', 'ACCESS_DENIED'],
    ['server-error', 'PROVIDER_ERROR'],
    ['malformed', 'INVALID_RESPONSE'],
    ['empty', 'INVALID_RESPONSE'],
    ['not-base64', 'INVALID_RESPONSE'],
  ] as const)('maps the %s fault to %s', async (fault, code) => {
    ecr.fault = fault;
    const err = await source()
      .fetch(target('123456789012.dkr.ecr.eu-west-1.amazonaws.com'))
      .catch((e: unknown) => e);
    expect(err).toMatchObject({
      code,
      provider: 'aws',
      registry: '123456789012.dkr.ecr.eu-west-1.amazonaws.com',
    });
    expect(String(err)).not.toContain(KEY.secretAccessKey);
  });

  it('refuses an already expired token through the cache', async () => {
    ecr.fault = 'expired';
    const s = source();
    const t = target('123456789012.dkr.ecr.eu-west-1.amazonaws.com');
    await expect(
      new CredentialCache().get('k', { provider: 'aws', registry: t.registry }, () => s.fetch(t)),
    ).rejects.toMatchObject({
      code: 'INVALID_RESPONSE',
    });
  });

  it('is refused with a wrong secret: the stand-in really checks the signature', async () => {
    const wrong = createAwsSource({
      credentials: { ...KEY, secretAccessKey: 'not-the-secret' },
      requestHandler: new RedirectToStandIn(ecr.port),
      maxAttempts: 1,
    });
    await expect(
      wrong.fetch(target('123456789012.dkr.ecr.eu-west-1.amazonaws.com')),
    ).rejects.toMatchObject({
      code: 'ACCESS_DENIED',
    });
    expect(ecr.calls).toHaveLength(0);
  });

  it('makes one call for 100 concurrent callers behind the cache', async () => {
    const s = source();
    const cache = new CredentialCache();
    const t = target('123456789012.dkr.ecr.eu-west-1.amazonaws.com');
    await Promise.all(
      Array.from({ length: 100 }, () =>
        cache.get('k', { provider: 'aws', registry: t.registry }, () => s.fetch(t)),
      ),
    );
    expect(ecr.calls).toHaveLength(1);
  });

  it('validates its options', () => {
    expect(() => createAwsSource({ registryIds: ['12'] })).toThrow(/registryIds/);
    expect(() => createAwsSource({ maxAttempts: 0 })).toThrow(/maxAttempts/);
  });
});
