import { startGceMetadata, startImds } from '@org/tools/stand-ins';
import { describe, expect, it } from 'vitest';
import {
  type AwsInstanceIdentityPassword,
  createInstanceIdentitySource,
} from './instance-identity.js';

const target = { registry: 'docker.example.com' };

describe('instance-identity source', () => {
  it('gcp: a full-format identity token for the audience, as _gcp', async () => {
    const metadata = await startGceMetadata({
      identityClaims: { google: { compute_engine: { project_id: 'acme-prod' } } },
    });
    try {
      const creds = await createInstanceIdentitySource({
        kind: 'gcp',
        audience: 'docker.example.com',
        endpoint: metadata.host,
      }).fetch(target);
      expect(creds.username).toBe('_gcp');
      const claims = JSON.parse(
        Buffer.from(creds.password.split('.')[1] ?? '', 'base64url').toString(),
      );
      expect(claims).toMatchObject({ aud: 'docker.example.com', format: 'full' });
      expect(creds.expiresAt.getTime()).toBe(claims.exp * 1000);
      expect(metadata.requests[0]?.headers['metadata-flavor']).toBe('Google');
    } finally {
      await metadata.close();
    }
  });

  it('aws: the identity document and its PKCS#7 signature over IMDSv2, as _aws', async () => {
    const imds = await startImds({});
    try {
      const now = () => 1_800_000_000_000;
      const creds = await createInstanceIdentitySource({
        kind: 'aws',
        endpoint: imds.url,
        now,
      }).fetch(target);
      expect(creds.username).toBe('_aws');
      expect(creds.expiresAt.getTime()).toBe(now() + 600_000);
      const password = JSON.parse(
        Buffer.from(creds.password, 'base64url').toString(),
      ) as AwsInstanceIdentityPassword;
      expect(JSON.parse(password.document)).toMatchObject({
        instanceId: 'i-0123456789abcdef0',
        region: 'eu-west-1',
      });
      expect(password.rsa2048).toMatch(/^pkcs7-of:/);
      expect(imds.requests[0]).toMatchObject({ method: 'PUT', path: '/latest/api/token' });
      expect(
        imds.requests
          .slice(1)
          .every((r) => r.headers['x-aws-ec2-metadata-token'] === imds.tokens[0]),
      ).toBe(true);
    } finally {
      await imds.close();
    }
  });

  it('says so when there is no metadata service', async () => {
    const source = createInstanceIdentitySource({
      kind: 'aws',
      endpoint: 'http://127.0.0.1:9',
      timeoutMs: 500,
    });
    await expect(source.fetch(target)).rejects.toMatchObject({
      code: 'CREDENTIALS_UNAVAILABLE',
      provider: 'instance-identity',
    });
  });

  it('refuses a GCE identity without audience and an unknown kind', () => {
    expect(() => createInstanceIdentitySource({ kind: 'gcp' })).toThrow(/audience/);
    expect(() => createInstanceIdentitySource({ kind: 'azure' as 'gcp' })).toThrow(/kind/);
  });
});
