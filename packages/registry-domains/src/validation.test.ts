import { afterEach, describe, expect, it } from 'vitest';
import { RegistryValidationError } from './errors.js';
import {
  getRegistryValidationDefaults,
  setRegistryValidationDefaults,
  skipRegistryValidationFromEnv,
  validateRegistry,
} from './validation.js';

const ECR = '123456789012.dkr.ecr.eu-west-1.amazonaws.com';

function refusal(fn: () => unknown): RegistryValidationError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(RegistryValidationError);
    return err as RegistryValidationError;
  }
  throw new Error('expected a RegistryValidationError');
}

afterEach(() => {
  setRegistryValidationDefaults({ skipRegistryValidation: false });
});

describe('validateRegistry', () => {
  it.each([
    [
      'gcp',
      'europe-docker.pkg.dev/acme/images/app',
      { provider: 'gcp', registry: 'europe-docker.pkg.dev', region: 'europe' },
    ],
    ['gcp', 'gcr.io', { provider: 'gcp', registry: 'gcr.io' }],
    ['azure', 'reg.azurecr.io/app', { provider: 'azure', registry: 'reg.azurecr.io' }],
    [
      'aws',
      `${ECR}/app`,
      {
        provider: 'aws',
        registry: ECR,
        region: 'eu-west-1',
        accountId: '123456789012',
        partition: 'aws',
        fips: false,
        dualStack: false,
      },
    ],
  ] as const)('accepts a %s host: %s', (provider, input, expected) => {
    expect(validateRegistry(provider, input)).toEqual(expected);
  });

  it('names the host and the patterns it failed', () => {
    const err = refusal(() => validateRegistry('gcp', 'oci-gateway.example.org/oci/charts'));
    expect(err.code).toBe('HOST_MISMATCH');
    expect(err.registry).toBe('oci-gateway.example.org');
    expect(err.provider).toBe('gcp');
    expect(err.option).toBe('skipRegistryValidation');
    expect(err.message).toContain('"oci-gateway.example.org"');
    expect(err.message).toContain('<location>-docker.pkg.dev');
    expect(err.message).toContain('*.gcr.io');
  });

  it('says which cloud a host of another provider belongs to', () => {
    const err = refusal(() => validateRegistry('azure', ECR));
    expect(err.code).toBe('HOST_MISMATCH');
    expect(err.message).toContain('(it belongs to aws)');
  });

  it.each(['gcr.io.evil.com', 'evil-gcr.io', 'azurecr.io.example.com', `${ECR}.attacker.net`])(
    'refuses the look-alike %s for every provider',
    (host) => {
      for (const provider of ['gcp', 'aws', 'azure'] as const) {
        expect(refusal(() => validateRegistry(provider, host)).code).toBe('HOST_MISMATCH');
      }
    },
  );

  describe('with skipRegistryValidation', () => {
    it('accepts any valid host for gcp and azure, region optional', () => {
      expect(
        validateRegistry('gcp', 'oci-gateway.example.org/oci/charts', {
          skipRegistryValidation: true,
        }),
      ).toEqual({
        provider: 'gcp',
        registry: 'oci-gateway.example.org',
        registryValidationSkipped: true,
      });
      expect(
        validateRegistry('azure', 'Gateway.Example.org:8443', {
          skipRegistryValidation: true,
          region: 'westeurope',
        }),
      ).toEqual({
        provider: 'azure',
        registry: 'gateway.example.org:8443',
        region: 'westeurope',
        registryValidationSkipped: true,
      });
    });

    it('takes the AWS region from the option', () => {
      expect(
        validateRegistry('aws', 'gw.example.org', {
          skipRegistryValidation: true,
          region: 'eu-west-1',
        }),
      ).toEqual({
        provider: 'aws',
        registry: 'gw.example.org',
        region: 'eu-west-1',
        registryValidationSkipped: true,
      });
    });

    it('requires the AWS region, naming the option', () => {
      const err = refusal(() =>
        validateRegistry('aws', 'gw.example.org', { skipRegistryValidation: true }),
      );
      expect(err.code).toBe('REGION_REQUIRED');
      expect(err.option).toBe('region');
      expect(err.message).toContain('region');
    });

    it.each(['eu-west-1.evil.com', 'EU-WEST-1', 'eu_west_1', 'x', 'us-east-1/..', ''])(
      'refuses the region %j, which would end up in an endpoint host name',
      (region) => {
        const err = refusal(() =>
          validateRegistry('aws', 'gw.example.org', { skipRegistryValidation: true, region }),
        );
        expect(err.code).toBe('REGION_INVALID');
      },
    );

    it('keeps what a matching host says (its own region wins)', () => {
      expect(
        validateRegistry('aws', ECR, { skipRegistryValidation: true, region: 'us-east-1' }).region,
      ).toBe('eu-west-1');
    });

    it('still refuses a host that is not valid syntax', () => {
      for (const host of ['not a host', 'gw.example.org:', 'https://gw.example.org']) {
        const err = refusal(() => validateRegistry('gcp', host, { skipRegistryValidation: true }));
        expect(err.code).toBe('HOST_INVALID');
        expect(err.cause).toBeDefined();
      }
    });
  });

  it('refuses an unknown provider', () => {
    expect(refusal(() => validateRegistry('gcpp' as 'gcp', 'gcr.io')).code).toBe(
      'PROVIDER_UNKNOWN',
    );
  });

  describe('process-wide defaults', () => {
    it('applies the default skip and region where the call leaves them unset', () => {
      const previous = setRegistryValidationDefaults({
        skipRegistryValidation: true,
        region: 'eu-central-1',
      });
      expect(previous).toEqual({ skipRegistryValidation: false });
      expect(getRegistryValidationDefaults()).toEqual({
        skipRegistryValidation: true,
        region: 'eu-central-1',
      });
      expect(validateRegistry('aws', 'gw.example.org')).toEqual({
        provider: 'aws',
        registry: 'gw.example.org',
        region: 'eu-central-1',
        registryValidationSkipped: true,
      });
    });

    it('lets a call turn validation back on', () => {
      setRegistryValidationDefaults({ skipRegistryValidation: true });
      expect(
        refusal(() => validateRegistry('gcp', 'gw.example.org', { skipRegistryValidation: false }))
          .code,
      ).toBe('HOST_MISMATCH');
    });

    it('refuses bad defaults with a TypeError naming the option', () => {
      expect(() =>
        setRegistryValidationDefaults({ skipRegistryValidation: 'yes' as unknown as boolean }),
      ).toThrow(/skipRegistryValidation/);
      expect(() => setRegistryValidationDefaults({ region: 'evil.com/x' })).toThrow(/region/);
      expect(getRegistryValidationDefaults()).toEqual({ skipRegistryValidation: false });
    });
  });
});

describe('skipRegistryValidationFromEnv', () => {
  it.each([
    [undefined, false],
    ['', false],
    ['false', false],
    ['0', false],
    ['no', false],
    ['OFF', false],
    ['true', true],
    ['TRUE', true],
    ['1', true],
    ['yes', true],
    [' on ', true],
  ])('%j is %s', (value, expected) => {
    expect(
      skipRegistryValidationFromEnv(value === undefined ? {} : { SKIP_REGISTRY_VALIDATION: value }),
    ).toBe(expected);
  });

  it.each(['treu', 'enabled', '2'])('refuses %j naming the variable', (value) => {
    expect(() => skipRegistryValidationFromEnv({ SKIP_REGISTRY_VALIDATION: value })).toThrow(
      /SKIP_REGISTRY_VALIDATION/,
    );
  });
});
