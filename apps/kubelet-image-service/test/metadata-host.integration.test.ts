/**
 * Instance-identity rules on a node whose metadata server is not at the default address: the
 * binary takes it from the environment variables the cloud SDKs read (GCE_METADATA_HOST,
 * AWS_EC2_METADATA_SERVICE_ENDPOINT), since @org/cloud-credentials reads no environment itself.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGceMetadata, startImds } from '@org/tools/stand-ins';
import { afterAll, describe, expect, it } from 'vitest';

const main = join(import.meta.dirname, '..', 'dist', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'kis-metadata-host-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function plugin(
  rules: unknown,
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const file = join(dir, `rules-${Object.keys(env).join('-')}.json`);
  writeFileSync(file, JSON.stringify(rules));
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [main, 'credential-provider', '--config', file], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(
      JSON.stringify({
        apiVersion: 'credentialprovider.kubelet.k8s.io/v1',
        kind: 'CredentialProviderRequest',
        image: 'registry.example.com:5000/team/app',
      }),
    );
  });
}

describe('instance-identity rules follow the metadata endpoint of the environment', () => {
  it('gcp: GCE_METADATA_HOST', async () => {
    const metadata = await startGceMetadata();
    try {
      const { code, stdout, stderr } = await plugin(
        {
          rules: [
            {
              match: ['registry.example.com:5000'],
              credentials: { provider: 'instance-identity', kind: 'gcp', audience: 'aud-1' },
            },
          ],
        },
        { GCE_METADATA_HOST: metadata.host },
      );
      expect(stderr).toBe('');
      expect(code).toBe(0);
      const entry = JSON.parse(stdout).auth['registry.example.com:5000'];
      expect(entry.username).toBe('_gcp');
      const claims = JSON.parse(Buffer.from(entry.password.split('.')[1], 'base64url').toString());
      expect(claims.aud).toBe('aud-1');
      expect(metadata.requests.map((r) => r.path)).toContain(
        '/computeMetadata/v1/instance/service-accounts/default/identity',
      );
    } finally {
      await metadata.close();
    }
  });

  it('aws: AWS_EC2_METADATA_SERVICE_ENDPOINT', async () => {
    const imds = await startImds({ signIdentityDocument: () => 'c2lnbmF0dXJl' });
    try {
      const { code, stdout, stderr } = await plugin(
        {
          rules: [
            {
              match: ['registry.example.com:5000'],
              credentials: { provider: 'instance-identity', kind: 'aws' },
            },
          ],
        },
        { AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url },
      );
      expect(stderr).toBe('');
      expect(code).toBe(0);
      const entry = JSON.parse(stdout).auth['registry.example.com:5000'];
      expect(entry.username).toBe('_aws');
      const presented = JSON.parse(Buffer.from(entry.password, 'base64url').toString());
      expect(JSON.parse(presented.document).instanceId).toBe('i-0123456789abcdef0');
      expect(imds.tokens.length).toBeGreaterThan(0);
    } finally {
      await imds.close();
    }
  });
});
