import { detectProvider } from '@org/registry-domains';
import { RedirectToStandIn, startEcr } from '@org/tools/stand-ins';
import { expect, it } from 'vitest';
import { createAwsSource } from './aws.js';
import { isolateAwsChain } from './aws-chain.shared.js';
import type { CredentialTarget } from './types.js';

const registry = detectProvider(
  '123456789012.dkr.ecr.ap-southeast-2.amazonaws.com',
) as CredentialTarget;

it('signs with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN', async () => {
  isolateAwsChain();
  const key = {
    accessKeyId: 'ASIAENVIRONMENT00001',
    secretAccessKey: 'env-secret',
    sessionToken: 'env-session',
  };
  const ecr = await startEcr({ keys: [key] });
  try {
    process.env.AWS_ACCESS_KEY_ID = key.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = key.secretAccessKey;
    process.env.AWS_SESSION_TOKEN = key.sessionToken;
    const creds = await createAwsSource({
      requestHandler: new RedirectToStandIn(ecr.port),
      maxAttempts: 1,
    }).fetch(registry);
    expect(creds.password).toBe('ecr-password-1');
    expect(ecr.calls[0]).toMatchObject({ accessKeyId: key.accessKeyId, region: 'ap-southeast-2' });
  } finally {
    await ecr.close();
  }
});

it('says no credentials were found when the whole chain is empty', async () => {
  isolateAwsChain();
  process.env.AWS_EC2_METADATA_DISABLED = 'true';
  const ecr = await startEcr({ keys: [] });
  try {
    const err = await createAwsSource({
      requestHandler: new RedirectToStandIn(ecr.port),
      maxAttempts: 1,
    })
      .fetch(registry)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'CREDENTIALS_UNAVAILABLE', provider: 'aws' });
    expect(ecr.requests).toHaveLength(0);
  } finally {
    await ecr.close();
  }
});
