import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type AcrStandIn,
  type EcrStandIn,
  type EntraStandIn,
  fetchVia,
  RedirectToStandIn,
  startAcr,
  startEcr,
  startEntra,
  startGceMetadata,
  startImds,
} from '@org/tools/stand-ins';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  configureRegistryAuth,
  getRegistryCredentials,
  RegistryAuth,
  RegistryValidationError,
  setRegistryValidationDefaults,
  withMetadataEndpointFromEnv,
} from './index.js';

const KEY = { accessKeyId: 'AKIAREGISTRYAUTH0001', secretAccessKey: 'registry-auth-secret' };
const ECR_HOST = '123456789012.dkr.ecr.eu-west-1.amazonaws.com';
const TENANT = '0b1b2c3d-1111-2222-3333-444444444444';
const CLIENT = 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee';
let ecr: EcrStandIn;
let entra: EntraStandIn;
let acr: AcrStandIn;
let auth: RegistryAuth;

function newAuth(extra: ConstructorParameters<typeof RegistryAuth>[0] = {}) {
  return new RegistryAuth({
    aws: { credentials: KEY, requestHandler: new RedirectToStandIn(ecr.port), maxAttempts: 1 },
    azure: {
      authorityHost: entra.url,
      disableInstanceDiscovery: true,
      fetch: fetchVia({ 'acme.azurecr.io': acr }),
    },
    ...extra,
  });
}

beforeAll(async () => {
  ecr = await startEcr({ keys: [KEY] });
  entra = await startEntra({ tenantId: TENANT, clientId: CLIENT, clientSecret: 'sp-secret' });
  acr = await startAcr({ tenantId: TENANT });
  Object.assign(process.env, {
    AZURE_TENANT_ID: TENANT,
    AZURE_CLIENT_ID: CLIENT,
    AZURE_CLIENT_SECRET: 'sp-secret',
  });
});
afterAll(async () => {
  await Promise.all([ecr.close(), entra.close(), acr.close()]);
});
beforeEach(() => {
  ecr.calls.length = 0;
  auth = newAuth({
    mappings: {
      'oci-gateway.example.org': {
        provider: 'aws',
        region: 'eu-central-1',
        accountId: '210987654321',
      },
      'acr-gateway.example.org:8443': { provider: 'azure', loginServer: 'acme.azurecr.io' },
    },
  });
});
afterEach(() => {
  setRegistryValidationDefaults({ skipRegistryValidation: false });
});

describe('RegistryAuth.getCredentials', () => {
  it('auto: picks AWS from an ECR image and caches the answer', async () => {
    const first = await auth.getCredentials(`${ECR_HOST}/team/app:v1`, { provider: 'auto' });
    expect(first).toMatchObject({
      registry: ECR_HOST,
      username: 'AWS',
      password: 'ecr-password-1',
    });
    const again = await auth.getCredentials(`${ECR_HOST}/other/image@sha256:${'a'.repeat(64)}`, {
      provider: 'auto',
    });
    expect(again.password).toBe('ecr-password-1');
    expect(ecr.calls).toHaveLength(1);
    expect(ecr.calls[0]).toMatchObject({
      region: 'eu-west-1',
      host: 'api.ecr.eu-west-1.amazonaws.com',
    });
  });

  it('makes one upstream call for 100 concurrent pulls of a new image', async () => {
    const all = await Promise.all(
      Array.from({ length: 100 }, () =>
        auth.getCredentials(`${ECR_HOST}/app`, { provider: 'aws' }),
      ),
    );
    expect(new Set(all.map((c) => c.password))).toEqual(new Set(['ecr-password-1']));
    expect(ecr.calls).toHaveLength(1);
  });

  it('refuses a gateway host for an explicit provider unless validation is skipped', async () => {
    await expect(
      auth.getCredentials('gw.example.net/team/app', { provider: 'aws' }),
    ).rejects.toBeInstanceOf(RegistryValidationError);
    await expect(
      auth.getCredentials('gw.example.net/team/app', {
        provider: 'aws',
        skipRegistryValidation: true,
      }),
    ).rejects.toMatchObject({ code: 'REGION_REQUIRED' });
    const creds = await auth.getCredentials('gw.example.net/team/app', {
      provider: 'aws',
      skipRegistryValidation: true,
      region: 'us-west-2',
    });
    expect(creds).toMatchObject({ registry: 'gw.example.net', username: 'AWS' });
    expect(ecr.calls).toHaveLength(1);
    expect(ecr.calls[0]?.region).toBe('us-west-2');
  });

  it('follows the process-wide skip default', async () => {
    setRegistryValidationDefaults({ skipRegistryValidation: true, region: 'ap-south-1' });
    const creds = await auth.getCredentials('gw.example.net/app', { provider: 'aws' });
    expect(creds.username).toBe('AWS');
    expect(ecr.calls[0]?.region).toBe('ap-south-1');
  });

  it('uses a mapping first: provider, region and account pinned', async () => {
    const creds = await auth.getCredentials('oci-gateway.example.org/charts/app:1.0', {
      provider: 'auto',
    });
    expect(creds.registry).toBe('oci-gateway.example.org');
    expect(ecr.calls[0]).toMatchObject({
      region: 'eu-central-1',
      body: { registryIds: ['210987654321'] },
    });
    await expect(
      auth.getCredentials('oci-gateway.example.org/app', { provider: 'gcp' }),
    ).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
    });
  });

  it('maps a gateway to the real ACR: the exchange goes to the login server, not the gateway', async () => {
    const creds = await auth.getCredentials('acr-gateway.example.org:8443/team/app', {
      provider: 'auto',
    });
    expect(creds).toMatchObject({
      registry: 'acr-gateway.example.org:8443',
      username: '00000000-0000-0000-0000-000000000000',
    });
    expect(acr.exchanges.at(-1)?.get('service')).toBe('acme.azurecr.io');
  });

  it('never lets two identities share credentials', async () => {
    await auth.getCredentials(`${ECR_HOST}/app`, { provider: 'aws' });
    await auth.getCredentials(`${ECR_HOST}/app`, {
      provider: 'aws',
      registryIds: ['999999999999'],
    });
    expect(ecr.calls).toHaveLength(2);
    const a = await auth.getCredentials('registry.internal:5000/app', {
      provider: 'static',
      username: 'a',
      password: 'pa',
    });
    const b = await auth.getCredentials('registry.internal:5000/app', {
      provider: 'static',
      username: 'b',
      password: 'pb',
    });
    expect([a.username, b.username]).toEqual(['a', 'b']);
  });

  it('says what to do for an unknown host with provider auto', async () => {
    await expect(
      auth.getCredentials('ghcr.io/org/app', { provider: 'auto' }),
    ).rejects.toMatchObject({
      code: 'CREDENTIALS_UNAVAILABLE',
      message: expect.stringContaining('mapping'),
    });
  });

  it('serves the non-cloud sources: docker-config and instance-identity', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'registry-auth-'));
    const configFile = join(dir, 'config.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        auths: { 'registry.internal:5000': { auth: Buffer.from('dc:pw').toString('base64') } },
      }),
    );
    expect(
      await auth.getCredentials('registry.internal:5000/app', {
        provider: 'docker-config',
        configFile,
      }),
    ).toMatchObject({
      username: 'dc',
      password: 'pw',
    });
    const imds = await startImds({});
    try {
      const creds = await auth.getCredentials('docker.example.com/app', {
        provider: 'instance-identity',
        kind: 'aws',
        endpoint: imds.url,
      });
      expect(creds).toMatchObject({ registry: 'docker.example.com', username: '_aws' });
    } finally {
      await imds.close();
    }
  });

  it('refuses bad mappings when constructed, naming the entry', () => {
    expect(() => newAuth({ mappings: { 'gw.example.org': { provider: 'aws' } } })).toThrow(
      /mappings\["gw.example.org"\]\.region/,
    );
    expect(() => newAuth({ mappings: { 'gw.example.org/x': { provider: 'gcp' } } })).toThrow(
      /without a path/,
    );
    expect(() => newAuth({ mappings: { 'gw.example.org': { provider: 'azure' } } })).toThrow(
      /loginServer/,
    );
    expect(() =>
      newAuth({
        mappings: { 'gw.example.org': { provider: 'azure', loginServer: 'evil.example.com' } },
      }),
    ).toThrow(/not an ACR login server/);
  });
});

describe('getRegistryCredentials (process-wide instance)', () => {
  it('gets GCP credentials from the metadata server for an Artifact Registry image', async () => {
    const metadata = await startGceMetadata();
    try {
      process.env.GCE_METADATA_HOST = metadata.host;
      process.env.CLOUDSDK_CONFIG = mkdtempSync(join(tmpdir(), 'no-gcloud-'));
      delete process.env.GOOGLE_APPLICATION_CREDENTIALS;
      const creds = await getRegistryCredentials('europe-docker.pkg.dev/acme/images/app:v1', {
        provider: 'auto',
      });
      expect(creds).toMatchObject({
        registry: 'europe-docker.pkg.dev',
        username: 'oauth2accesstoken',
        password: 'ya29.stand-in-1',
      });
    } finally {
      await metadata.close();
    }
  });

  it('uses the instance configureRegistryAuth installs', async () => {
    configureRegistryAuth({
      aws: { credentials: KEY, requestHandler: new RedirectToStandIn(ecr.port), maxAttempts: 1 },
      mappings: { 'mirror.example.org': { provider: 'aws', region: 'sa-east-1' } },
    });
    const creds = await getRegistryCredentials('mirror.example.org/library/nginx', {
      provider: 'auto',
    });
    expect(creds.username).toBe('AWS');
    expect(ecr.calls[0]?.region).toBe('sa-east-1');
  });
});

describe('withMetadataEndpointFromEnv', () => {
  const env = {
    GCE_METADATA_HOST: '127.0.0.1:8080',
    AWS_EC2_METADATA_SERVICE_ENDPOINT: 'http://127.0.0.1:1338',
  };
  it('gives instance-identity sources without an endpoint the one their cloud SDK would use', () => {
    const gcp = {
      provider: 'instance-identity',
      kind: 'gcp',
      audience: 'docker.example.com',
    } as const;
    expect(withMetadataEndpointFromEnv(gcp, env)).toEqual({ ...gcp, endpoint: '127.0.0.1:8080' });
    const aws = { provider: 'instance-identity', kind: 'aws' } as const;
    expect(withMetadataEndpointFromEnv(aws, env)).toEqual({
      ...aws,
      endpoint: 'http://127.0.0.1:1338',
    });
    expect(withMetadataEndpointFromEnv(gcp, {})).toBe(gcp);
  });

  it('leaves an explicit endpoint, and every other provider, as they are', () => {
    const own = {
      provider: 'instance-identity',
      kind: 'gcp',
      endpoint: 'metadata.internal',
    } as const;
    expect(withMetadataEndpointFromEnv(own, env)).toBe(own);
    const gcp = { provider: 'gcp' } as const;
    expect(withMetadataEndpointFromEnv(gcp, env)).toBe(gcp);
  });
});
