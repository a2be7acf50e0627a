import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Clears every variable the AWS SDK default chain reads and points its config files at an empty
 * folder, so a test decides which link of the chain answers.
 */
export function isolateAwsChain(): void {
  for (const name of Object.keys(process.env)) {
    if (name.startsWith('AWS_')) delete process.env[name];
  }
  const dir = mkdtempSync(join(tmpdir(), 'aws-chain-'));
  process.env.AWS_CONFIG_FILE = join(dir, 'config');
  process.env.AWS_SHARED_CREDENTIALS_FILE = join(dir, 'credentials');
}
