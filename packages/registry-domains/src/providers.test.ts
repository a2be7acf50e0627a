import { describe, expect, it } from 'vitest';
import { InvalidReferenceError } from './errors.js';
import {
  type AwsPartition,
  detectProvider,
  type ProviderMatch,
  registryHostOf,
} from './providers.js';

const A = '123456789012';

/** [input, expected match or undefined] */
const hosts: [string, Omit<ProviderMatch, 'registry'> | undefined][] = [
  // GCP: Container Registry hosts, Artifact Registry, S3NS
  ['gcr.io', { provider: 'gcp' }],
  ['us.gcr.io', { provider: 'gcp' }],
  ['eu.gcr.io', { provider: 'gcp' }],
  ['asia.gcr.io', { provider: 'gcp' }],
  ['marketplace.gcr.io', { provider: 'gcp' }],
  ['mirror.gcr.io', { provider: 'gcp' }],
  ['gcr.io/my-project/app:v1', { provider: 'gcp' }],
  ['us-docker.pkg.dev', { provider: 'gcp', region: 'us' }],
  ['europe-west1-docker.pkg.dev', { provider: 'gcp', region: 'europe-west1' }],
  ['us-central1-docker.pkg.dev/acme/images/app', { provider: 'gcp', region: 'us-central1' }],
  ['docker.s3nsregistry.fr', { provider: 'gcp' }],
  ['u-france-east1-docker.s3nsregistry.fr/p/r/app', { provider: 'gcp', region: 'u-france-east1' }],
  // AWS private ECR, every partition and form
  [`${A}.dkr.ecr.us-east-1.amazonaws.com`, aws('us-east-1', 'aws')],
  [`${A}.dkr.ecr.eu-west-1.amazonaws.com/team/app:v1`, aws('eu-west-1', 'aws')],
  [`${A}.dkr.ecr.us-gov-west-1.amazonaws.com`, aws('us-gov-west-1', 'aws-us-gov')],
  [
    `${A}.dkr.ecr-fips.us-gov-west-1.amazonaws.com`,
    aws('us-gov-west-1', 'aws-us-gov', { fips: true }),
  ],
  [`${A}.dkr.ecr-fips.us-east-1.amazonaws.com`, aws('us-east-1', 'aws', { fips: true })],
  [`${A}.dkr.ecr.cn-north-1.amazonaws.com.cn`, aws('cn-north-1', 'aws-cn')],
  [`${A}.dkr.ecr.cn-northwest-1.amazonaws.com.cn`, aws('cn-northwest-1', 'aws-cn')],
  [`${A}.dkr.ecr.eusc-de-east-1.amazonaws.eu`, aws('eusc-de-east-1', 'aws-eusc')],
  [`${A}.dkr-ecr.us-west-2.on.aws`, aws('us-west-2', 'aws', { dualStack: true })],
  [`${A}.dkr-ecr-fips.us-east-2.on.aws`, aws('us-east-2', 'aws', { fips: true, dualStack: true })],
  [`${A}.dkr-ecr.us-gov-east-1.on.aws`, aws('us-gov-east-1', 'aws-us-gov', { dualStack: true })],
  [
    `${A}.dkr.ecr.cn-north-1.on.amazonwebservices.com.cn`,
    aws('cn-north-1', 'aws-cn', { dualStack: true }),
  ],
  [`${A}.dkr.ecr.us-iso-east-1.c2s.ic.gov`, aws('us-iso-east-1', 'aws-iso')],
  [`${A}.dkr.ecr.us-isob-east-1.sc2s.sgov.gov`, aws('us-isob-east-1', 'aws-iso-b')],
  [`${A}.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk`, aws('eu-isoe-west-1', 'aws-iso-e')],
  [`${A}.dkr.ecr.us-isof-south-1.csp.hci.ic.gov`, aws('us-isof-south-1', 'aws-iso-f')],
  [`${A}.DKR.ECR.US-EAST-1.AMAZONAWS.COM`, aws('us-east-1', 'aws')],
  // AWS ECR Public
  [
    'public.ecr.aws',
    {
      provider: 'aws',
      region: 'us-east-1',
      public: true,
      partition: 'aws',
      fips: false,
      dualStack: false,
    },
  ],
  [
    'public.ecr.aws/nginx/nginx:latest',
    {
      provider: 'aws',
      region: 'us-east-1',
      public: true,
      partition: 'aws',
      fips: false,
      dualStack: false,
    },
  ],
  [
    'ecr-public.aws.com',
    {
      provider: 'aws',
      region: 'us-east-1',
      public: true,
      partition: 'aws',
      fips: false,
      dualStack: true,
    },
  ],
  // Azure
  ['myregistry.azurecr.io', { provider: 'azure' }],
  [`myregistry.azurecr.io/team/app@sha256:${'a'.repeat(64)}`, { provider: 'azure' }],
  ['myregistry.azurecr.cn', { provider: 'azure' }],
  ['myregistry.azurecr.us', { provider: 'azure' }],
  ['myregistry.azurecr.de', { provider: 'azure' }],
  ['myregistry-abcdef.azurecr.io', { provider: 'azure' }],
  ['myregistry.westeurope.data.azurecr.io', { provider: 'azure' }],
  // look-alikes and other registries: no match
  ['gcr.io.evil.com', undefined],
  ['evil-gcr.io', undefined],
  ['gcr.io.evil.com/p/app', undefined],
  ['notgcr.io', undefined],
  ['docker.pkg.dev', undefined],
  ['pkg.dev', undefined],
  ['europe-docker.pkg.dev.evil.com', undefined],
  ['evil.com-docker.pkg.dev', undefined],
  ['docker.s3nsregistry.fr.evil.com', undefined],
  ['evil-s3nsregistry.fr', undefined],
  ['azurecr.io', undefined],
  ['azurecr.io.example.com', undefined],
  ['myregistry.azurecr.io.example.com', undefined],
  ['myregistry.azurecr.com', undefined],
  ['myregistry-azurecr.io', undefined],
  [`dkr.ecr.us-east-1.amazonaws.com`, undefined],
  [`${A}.dkr.ecr.us-east-1.amazonaws.com.attacker.net`, undefined],
  [`dkr.ecr.us-east-1.amazonaws.com.attacker.net`, undefined],
  [`1234567890.dkr.ecr.us-east-1.amazonaws.com`, undefined],
  [`${A}.dkr.ecr.us-east-1.amazonaws.org`, undefined],
  [`${A}.dkr.ecr.cn-north-1.on.aws.com.cn`, undefined],
  [`${A}.ecr.us-east-1.amazonaws.com`, undefined],
  ['evil.public.ecr.aws', undefined],
  ['public.ecr.aws.evil.com', undefined],
  ['docker.io', undefined],
  ['ghcr.io/org/app', undefined],
  ['quay.io', undefined],
  ['alpine', undefined],
  ['localhost:5000', undefined],
  ['[::1]:5000/app', undefined],
];

function aws(
  region: string,
  partition: AwsPartition,
  extra: { fips?: boolean; dualStack?: boolean } = {},
): Omit<ProviderMatch, 'registry'> {
  return {
    provider: 'aws',
    region,
    accountId: A,
    partition,
    fips: extra.fips ?? false,
    dualStack: extra.dualStack ?? false,
  };
}

describe('detectProvider', () => {
  it('has at least 40 host cases', () => {
    expect(hosts.length).toBeGreaterThanOrEqual(40);
  });

  it.each(hosts)('%s', (input, expected) => {
    const match = detectProvider(input);
    if (expected === undefined) {
      expect(match).toBeUndefined();
      return;
    }
    const host = input.includes('/') ? input.slice(0, input.indexOf('/')) : input;
    expect(match).toEqual({ ...expected, registry: host.toLowerCase() });
  });

  it('answers the same once its memo of hosts has filled and been emptied', () => {
    const ecr = `${A}.dkr.ecr.us-east-1.amazonaws.com`;
    const before = detectProvider(ecr);
    for (let i = 0; i < 1000; i++) expect(detectProvider(`host-${i}.example.org`)).toBeUndefined();
    expect(detectProvider(ecr)).toEqual(before);
    expect(detectProvider('gcr.io')).toEqual({ provider: 'gcp', registry: 'gcr.io' });
  });

  it('returns results callers cannot change for the next caller', () => {
    const first = detectProvider('myregistry.azurecr.io') as ProviderMatch;
    expect(Object.isFrozen(first)).toBe(true);
    expect(() => {
      (first as { provider: string }).provider = 'gcp';
    }).toThrow(TypeError);
    expect(detectProvider('myregistry.azurecr.io')?.provider).toBe('azure');
  });

  it('keeps the port in the registry but does not match on it', () => {
    expect(detectProvider('gcr.io:443/p/app')).toEqual({ provider: 'gcp', registry: 'gcr.io:443' });
  });

  it.each(['', 'not a host', 'gcr.io/Project/App', 'https://gcr.io', '-gcr.io'])(
    'refuses %j with InvalidReferenceError',
    (input) => {
      expect(() => detectProvider(input)).toThrow(InvalidReferenceError);
    },
  );
});

describe('registryHostOf', () => {
  it.each([
    ['library/alpine', 'docker.io'],
    ['alpine', 'alpine'],
    ['index.docker.io/library/alpine', 'docker.io'],
    ['localhost:5000/team/app:v1', 'localhost:5000'],
    ['oci-gateway.example.org', 'oci-gateway.example.org'],
    ['gw.example.org:8443', 'gw.example.org:8443'],
  ])('%s -> %s', (input, host) => {
    expect(registryHostOf(input)).toBe(host);
  });

  it('refuses what is neither', () => {
    expect(() => registryHostOf('not a host')).toThrow(InvalidReferenceError);
  });
});
