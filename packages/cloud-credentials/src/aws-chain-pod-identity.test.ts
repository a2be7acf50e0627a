import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectProvider } from '@org/registry-domains';
import { RedirectToStandIn, startEcr, startPodIdentityAgent } from '@org/tools/stand-ins';
import { expect, it } from 'vitest';
import { createAwsSource } from './aws.js';
import { isolateAwsChain } from './aws-chain.shared.js';
import type { CredentialTarget } from './types.js';

it('signs with EKS Pod Identity credentials from the agent', async () => {
  isolateAwsChain();
  const key = {
    accessKeyId: 'ASIAPODIDENTITY00001',
    secretAccessKey: 'pod-secret',
    sessionToken: 'pod-session',
  };
  const tokenFile = join(mkdtempSync(join(tmpdir(), 'pod-identity-')), 'eks-pod-identity-token');
  writeFileSync(tokenFile, 'projected-sa-token');
  const agent = await startPodIdentityAgent({ key, tokenFile });
  const ecr = await startEcr({ keys: [key] });
  try {
    process.env.AWS_CONTAINER_CREDENTIALS_FULL_URI = `${agent.url}/v1/credentials`;
    process.env.AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE = tokenFile;
    process.env.AWS_EC2_METADATA_DISABLED = 'true';
    const source = createAwsSource({
      requestHandler: new RedirectToStandIn(ecr.port),
      maxAttempts: 1,
    });
    const creds = await source.fetch(
      detectProvider('123456789012.dkr.ecr.us-east-2.amazonaws.com') as CredentialTarget,
    );
    expect(creds.username).toBe('AWS');
    expect(ecr.calls[0]).toMatchObject({ accessKeyId: key.accessKeyId, region: 'us-east-2' });
    expect(agent.requests[0]?.headers.authorization).toBe('projected-sa-token');
  } finally {
    await agent.close();
    await ecr.close();
  }
});
