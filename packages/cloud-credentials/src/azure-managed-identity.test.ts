import { detectProvider } from '@org/registry-domains';
import { fetchVia, startAcr, startAzureImds } from '@org/tools/stand-ins';
import { expect, it } from 'vitest';
import { ACR_REFRESH_TOKEN_USERNAME, createAzureSource } from './azure.js';
import type { CredentialTarget } from './types.js';

it('exchanges a managed identity token from IMDS, system- or user-assigned', async () => {
  const tenantId = '5f5f5f5f-1111-2222-3333-444444444444';
  const systemAssigned = 'a1a1a1a1-0000-0000-0000-000000000001';
  const userAssigned = 'b2b2b2b2-0000-0000-0000-000000000002';
  const imds = await startAzureImds({ tenantId, clientIds: [systemAssigned, userAssigned] });
  const acr = await startAcr({ tenantId });
  try {
    process.env.AZURE_POD_IDENTITY_AUTHORITY_HOST = imds.url;
    const registry = detectProvider('acme.azurecr.io') as CredentialTarget;
    const route = fetchVia({ 'acme.azurecr.io': acr });
    const creds = await createAzureSource({ identity: 'managed-identity', fetch: route }).fetch(
      registry,
    );
    expect(creds.username).toBe(ACR_REFRESH_TOKEN_USERNAME);
    expect(imds.requests.at(-1)?.url.searchParams.get('resource')).toBe(
      'https://containerregistry.azure.net',
    );
    expect(acr.exchanges.at(-1)?.get('tenant')).toBe(tenantId);

    await createAzureSource({
      identity: 'managed-identity',
      clientId: userAssigned,
      fetch: route,
    }).fetch(registry);
    expect(imds.requests.at(-1)?.url.searchParams.get('client_id')).toBe(userAssigned);
  } finally {
    await imds.close();
    await acr.close();
  }
});
