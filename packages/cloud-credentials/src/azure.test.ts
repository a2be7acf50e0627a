import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectProvider, validateRegistry } from '@org/registry-domains';
import {
  type AcrStandIn,
  type EntraStandIn,
  fetchVia,
  startAcr,
  startEntra,
} from '@org/tools/stand-ins';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ACR_REFRESH_TOKEN_USERNAME, createAzureSource, scopeFor } from './azure.js';
import { CredentialCache } from './cache.js';
import type { CredentialTarget } from './types.js';

const TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
const CLIENT = '11111111-2222-3333-4444-555555555555';
const SECRET = 'stand-in-client-secret';
const FEDERATED = 'projected-service-account-token';
let entra: EntraStandIn;
let acr: AcrStandIn;
let route: typeof fetch;
/** The stand-in authority is unknown to MSAL: no instance discovery at Microsoft's hosts. */
const local = { disableInstanceDiscovery: true } as const;
const registry = detectProvider('myregistry.azurecr.io') as CredentialTarget;

beforeAll(async () => {
  entra = await startEntra({
    tenantId: TENANT,
    clientId: CLIENT,
    clientSecret: SECRET,
    federatedToken: FEDERATED,
  });
  acr = await startAcr({ tenantId: TENANT });
  route = fetchVia({ 'myregistry.azurecr.io': acr, 'myregistry.azurecr.cn': acr });
  const tokenFile = join(mkdtempSync(join(tmpdir(), 'azure-wi-')), 'azure-identity-token');
  writeFileSync(tokenFile, FEDERATED);
  Object.assign(process.env, {
    AZURE_TENANT_ID: TENANT,
    AZURE_CLIENT_ID: CLIENT,
    AZURE_CLIENT_SECRET: SECRET,
    AZURE_AUTHORITY_HOST: entra.url,
    AZURE_FEDERATED_TOKEN_FILE: tokenFile,
  });
});
afterAll(async () => {
  await entra.close();
  await acr.close();
});
beforeEach(() => {
  acr.fault = undefined;
  acr.exchanges.length = 0;
  entra.tokenRequests.length = 0;
});

describe('azure source', () => {
  it('exchanges a DefaultAzureCredential token for an ACR refresh token', async () => {
    const before = Date.now();
    const creds = await createAzureSource({ ...local, fetch: route }).fetch(registry);
    expect(creds.username).toBe(ACR_REFRESH_TOKEN_USERNAME);
    const refreshClaims = JSON.parse(
      Buffer.from(creds.password.split('.')[1] ?? '', 'base64url').toString(),
    );
    expect(refreshClaims).toMatchObject({
      iss: 'Azure Container Registry',
      aud: 'myregistry.azurecr.io',
    });
    expect(creds.expiresAt.getTime()).toBe(refreshClaims.exp * 1000);
    expect(creds.expiresAt.getTime()).toBeGreaterThan(before + 2.9 * 3600_000);
    expect(entra.tokenRequests[0]?.get('scope')).toBe(
      'https://containerregistry.azure.net/.default',
    );
    expect(entra.tokenRequests[0]?.get('client_secret')).toBe(SECRET);
    const form = acr.exchanges[0];
    expect(form?.get('grant_type')).toBe('access_token');
    expect(form?.get('service')).toBe('myregistry.azurecr.io');
    expect(form?.get('tenant')).toBe(TENANT);
  });

  it('uses AKS workload identity: the federated token is the client assertion', async () => {
    const creds = await createAzureSource({
      ...local,
      identity: 'workload-identity',
      fetch: route,
    }).fetch(registry);
    expect(creds.username).toBe(ACR_REFRESH_TOKEN_USERNAME);
    expect(entra.tokenRequests[0]?.get('client_assertion')).toBe(FEDERATED);
    expect(entra.tokenRequests[0]?.get('client_secret')).toBeNull();
  });

  it('exchanges at the configured loginServer, never at a gateway accepted by skipping validation', async () => {
    const gateway = validateRegistry('azure', 'oci-gateway.example.org', {
      skipRegistryValidation: true,
    });
    await expect(
      createAzureSource({ ...local, fetch: route }).fetch(gateway),
    ).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      message: expect.stringContaining('loginServer'),
    });
    expect(entra.tokenRequests).toHaveLength(0);
    const creds = await createAzureSource({
      ...local,
      fetch: route,
      loginServer: 'myregistry.azurecr.io',
    }).fetch(gateway);
    expect(creds.username).toBe(ACR_REFRESH_TOKEN_USERNAME);
    expect(acr.exchanges[0]?.get('service')).toBe('myregistry.azurecr.io');
  });

  it("asks for the cloud's audience in sovereign clouds", async () => {
    await createAzureSource({ ...local, fetch: route }).fetch(
      detectProvider('myregistry.azurecr.cn') as CredentialTarget,
    );
    expect(entra.tokenRequests[0]?.get('scope')).toBe(
      'https://management.chinacloudapi.cn/.default',
    );
    expect(scopeFor('r.azurecr.us:443')).toBe('https://management.usgovcloudapi.net/.default');
  });

  it.each([
    ['denied', 'ACCESS_DENIED'],
    ['throttle', 'THROTTLED'],
    ['malformed', 'INVALID_RESPONSE'],
    ['no-exp', 'INVALID_RESPONSE'],
  ] as const)('maps the exchange fault %s to %s', async (fault, code) => {
    acr.fault = fault;
    const err = await createAzureSource({ ...local, fetch: route })
      .fetch(registry)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code, provider: 'azure', registry: 'myregistry.azurecr.io' });
    expect(String(err)).not.toMatch(/eyJ/); // no token in the message
  });

  it('reports a refused Entra login as ACCESS_DENIED', async () => {
    process.env.AZURE_CLIENT_SECRET = 'wrong';
    try {
      const err = await createAzureSource({ ...local, fetch: route })
        .fetch(registry)
        .catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'ACCESS_DENIED', provider: 'azure' });
      expect(acr.exchanges).toHaveLength(0);
    } finally {
      process.env.AZURE_CLIENT_SECRET = SECRET;
    }
  });

  it('makes one exchange for 100 concurrent callers behind the cache', async () => {
    const source = createAzureSource({ ...local, fetch: route });
    const cache = new CredentialCache();
    await Promise.all(
      Array.from({ length: 100 }, () =>
        cache.get('k', { provider: 'azure', registry: registry.registry }, () =>
          source.fetch(registry),
        ),
      ),
    );
    expect(acr.exchanges).toHaveLength(1);
    expect(entra.tokenRequests).toHaveLength(1);
  });

  it('validates its options', () => {
    expect(() => createAzureSource({ loginServer: 'https://x.azurecr.io' })).toThrow(/loginServer/);
    expect(() => createAzureSource({ tenantId: 'a/b' })).toThrow(/tenantId/);
  });
});
