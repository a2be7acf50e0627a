import { detectProvider } from '@org/registry-domains';
import { RedirectToStandIn, startEcr, startImds } from '@org/tools/stand-ins';
import { expect, it } from 'vitest';
import { createAwsSource } from './aws.js';
import { isolateAwsChain } from './aws-chain.shared.js';
import type { CredentialTarget } from './types.js';

it('signs with the node role from IMDSv2 when nothing else is configured', async () => {
  isolateAwsChain();
  const key = {
    accessKeyId: 'ASIAIMDSROLE00000001',
    secretAccessKey: 'imds-secret',
    sessionToken: 'imds-session',
  };
  const imds = await startImds({ key });
  const ecr = await startEcr({ keys: [key] });
  try {
    process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT = imds.url;
    const source = createAwsSource({
      requestHandler: new RedirectToStandIn(ecr.port),
      maxAttempts: 1,
    });
    const creds = await source.fetch(
      detectProvider('123456789012.dkr.ecr.eu-west-1.amazonaws.com') as CredentialTarget,
    );
    expect(creds.password).toBe('ecr-password-1');
    expect(ecr.calls[0]).toMatchObject({ accessKeyId: key.accessKeyId, region: 'eu-west-1' });
    // IMDSv2: a session token first, then every GET carries it
    expect(imds.requests[0]).toMatchObject({ method: 'PUT', path: '/latest/api/token' });
    for (const r of imds.requests.slice(1)) {
      expect(imds.tokens).toContain(r.headers['x-aws-ec2-metadata-token']);
    }
  } finally {
    await imds.close();
    await ecr.close();
  }
});
