import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { createGcpSource } from './gcp.js';

it('says how to provide credentials when ADC finds none', async () => {
  delete process.env.GOOGLE_APPLICATION_CREDENTIALS;
  delete process.env.GCE_METADATA_HOST;
  process.env.CLOUDSDK_CONFIG = mkdtempSync(join(tmpdir(), 'no-gcloud-'));
  process.env.METADATA_SERVER_DETECTION = 'none';
  const err = (await createGcpSource()
    .fetch({ registry: 'gcr.io' })
    .catch((e: unknown) => e)) as Error;
  expect(err).toMatchObject({
    code: 'CREDENTIALS_UNAVAILABLE',
    provider: 'gcp',
    registry: 'gcr.io',
  });
  expect(err.message).toContain('GOOGLE_APPLICATION_CREDENTIALS');
});
