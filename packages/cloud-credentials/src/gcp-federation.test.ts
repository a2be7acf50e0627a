import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type StandIn, startGoogleSts } from '@org/tools/stand-ins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGcpSource } from './gcp.js';

const dir = mkdtempSync(join(tmpdir(), 'gcp-wif-'));
const AUDIENCE =
  '//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/ci/providers/github';
const SA = 'puller@acme-prod.iam.gserviceaccount.com';
let sts: StandIn;

beforeAll(async () => {
  sts = await startGoogleSts({ subjectToken: 'oidc-subject-token', audience: AUDIENCE });
  writeFileSync(join(dir, 'subject-token'), 'oidc-subject-token');
  writeFileSync(join(dir, 'wrong-token'), 'someone-else');
});
afterAll(async () => {
  await sts.close();
  rmSync(dir, { recursive: true, force: true });
});

function externalAccount(file: string, impersonate: boolean) {
  return {
    type: 'external_account',
    audience: AUDIENCE,
    subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
    token_url: `${sts.url}/v1/token`,
    credential_source: { file: join(dir, file) },
    ...(impersonate
      ? {
          service_account_impersonation_url: `${sts.url}/v1/projects/-/serviceAccounts/${SA}:generateAccessToken`,
        }
      : {}),
  };
}

describe('gcp source with workload identity federation (external_account)', () => {
  it('exchanges the subject token at STS', async () => {
    const keyFile = join(dir, 'wif.json');
    writeFileSync(keyFile, JSON.stringify(externalAccount('subject-token', false)));
    const creds = await createGcpSource({ keyFile }).fetch({ registry: 'us-docker.pkg.dev' });
    expect(creds).toMatchObject({ username: 'oauth2accesstoken', password: 'ya29.federated-sts' });
    expect(creds.expiresAt.getTime()).toBeGreaterThan(Date.now() + 3500_000);
  });

  it('then impersonates the service account', async () => {
    const creds = await createGcpSource({
      credentials: externalAccount('subject-token', true),
    }).fetch({
      registry: 'gcr.io',
    });
    expect(creds.password).toBe(`ya29.impersonated-${SA}`);
    const paths = sts.requests.map((r) => r.path);
    expect(paths).toContain(`/v1/projects/-/serviceAccounts/${SA}:generateAccessToken`);
  });

  it('reports a refused exchange as ACCESS_DENIED', async () => {
    await expect(
      createGcpSource({ credentials: externalAccount('wrong-token', false) }).fetch({
        registry: 'gcr.io',
      }),
    ).rejects.toMatchObject({ code: 'ACCESS_DENIED', provider: 'gcp' });
  });

  it('refuses keyFile together with credentials', () => {
    expect(() => createGcpSource({ keyFile: 'a', credentials: {} })).toThrow(
      /keyFile or credentials/,
    );
  });
});
