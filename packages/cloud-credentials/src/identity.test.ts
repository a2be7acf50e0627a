import { GoogleAuth } from 'google-auth-library';
import { describe, expect, it } from 'vitest';
import { createAwsSource } from './aws.js';
import { createAzureSource } from './azure.js';
import { createGcpSource } from './gcp.js';
import { identityOf } from './identity.js';

describe('source identities', () => {
  it('differ for different custom credential objects, so a shared cache keeps them apart', () => {
    const a = { accessKeyId: 'AKIAAAAAAAAAAAAAAAAA', secretAccessKey: 'a' };
    const b = { accessKeyId: 'AKIABBBBBBBBBBBBBBBB', secretAccessKey: 'b' };
    expect(createAwsSource({ credentials: a }).identity).not.toBe(
      createAwsSource({ credentials: b }).identity,
    );
    expect(createAwsSource({ credentials: a }).identity).toBe(
      createAwsSource({ credentials: a }).identity,
    );
    expect(createGcpSource({ auth: new GoogleAuth() }).identity).not.toBe(
      createGcpSource({ auth: new GoogleAuth() }).identity,
    );
    const credential = () => ({ getToken: async () => ({ token: 't', expiresOnTimestamp: 0 }) });
    expect(createAzureSource({ credential: credential() }).identity).not.toBe(
      createAzureSource({ credential: credential() }).identity,
    );
  });

  it('never show a secret in clear', () => {
    const id = identityOf('static', { password: 'hunter2-very-secret' });
    expect(id).toMatch(/^static:[0-9a-f]{24}$/);
  });
});

describe('aws source identity', () => {
  it('stays the same after the SDK has used (and marked) the credentials object', async () => {
    const key = { accessKeyId: 'AKIAAAAAAAAAAAAAAAAA', secretAccessKey: 'a' };
    const before = createAwsSource({ credentials: key }).identity;
    Object.assign(key, { $source: { CREDENTIALS_CODE: 'e' } });
    expect(createAwsSource({ credentials: key }).identity).toBe(before);
  });
});
