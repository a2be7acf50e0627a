import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectProvider } from '@org/registry-domains';
import { RedirectToStandIn, startEcr, startSts } from '@org/tools/stand-ins';
import { expect, it } from 'vitest';
import { createAwsSource } from './aws.js';
import { isolateAwsChain } from './aws-chain.shared.js';
import type { CredentialTarget } from './types.js';

it('signs with the role IRSA assumes from the projected service-account token', async () => {
  isolateAwsChain();
  const key = {
    accessKeyId: 'ASIAIRSAROLE00000001',
    secretAccessKey: 'irsa-secret',
    sessionToken: 'irsa-session',
  };
  const roleArn = 'arn:aws:iam::123456789012:role/registry-puller';
  const tokenFile = join(mkdtempSync(join(tmpdir(), 'irsa-')), 'token');
  writeFileSync(tokenFile, 'eks-projected-sa-token');
  const sts = await startSts({ roleArn, webIdentityToken: 'eks-projected-sa-token', key });
  const ecr = await startEcr({ keys: [key] });
  try {
    Object.assign(process.env, {
      AWS_WEB_IDENTITY_TOKEN_FILE: tokenFile,
      AWS_ROLE_ARN: roleArn,
      AWS_ROLE_SESSION_NAME: 'registry-auth-test',
      AWS_REGION: 'eu-west-1',
      AWS_EC2_METADATA_DISABLED: 'true',
    });
    // STS's regional endpoint goes to the STS stand-in, everything else to ECR's.
    const handler = new RedirectToStandIn(ecr.port, { 'sts.eu-west-1.amazonaws.com': sts.port });
    const source = createAwsSource({ requestHandler: handler, maxAttempts: 1 });
    const target = detectProvider(
      '123456789012.dkr.ecr.eu-west-1.amazonaws.com',
    ) as CredentialTarget;
    const creds = await source.fetch(target);
    expect(creds.password).toBe('ecr-password-1');
    expect(ecr.calls[0]).toMatchObject({ accessKeyId: key.accessKeyId, region: 'eu-west-1' });
    expect(sts.requests).toHaveLength(1);
    expect(handler.hosts).toEqual([
      'sts.eu-west-1.amazonaws.com',
      'api.ecr.eu-west-1.amazonaws.com',
    ]);
  } finally {
    await sts.close();
    await ecr.close();
  }
});
