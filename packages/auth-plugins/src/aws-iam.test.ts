import { type StandIn, startStsCallerIdentity } from '@org/tools/stand-ins';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createAwsIamPlugin } from './aws-iam.js';

let sts: StandIn;
beforeAll(async () => {
  sts = await startStsCallerIdentity([
    {
      key: { accessKeyId: 'AKIASTANDIN', secretAccessKey: 'secret' },
      arn: 'arn:aws:sts::123456789012:assumed-role/eks-node/i-1',
    },
  ]);
});
afterAll(() => sts.close());
beforeEach(() => {
  sts.requests.length = 0;
});

const plugin = () =>
  createAwsIamPlugin({
    name: 'eks',
    serverId: 'docker.example.com',
    accounts: ['123456789012'],
    stsEndpoints: [sts.url],
  });
const password = (over: Record<string, unknown> = {}, headers: Record<string, string> = {}) =>
  Buffer.from(
    JSON.stringify({
      method: 'POST',
      url: `${sts.url}/`,
      body: 'Action=GetCallerIdentity&Version=2011-06-15',
      headers: {
        authorization: `AWS4-HMAC-SHA256 Credential=AKIASTANDIN/20261122/us-east-1/sts/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-registry-proxy-server-id, Signature=${'0'.repeat(64)}`,
        'x-amz-date': '20261122T120000Z',
        'x-registry-proxy-server-id': 'docker.example.com',
        ...headers,
      },
      ...over,
    }),
  ).toString('base64url');

describe('the aws-iam plugin: what is refused before anything is sent to STS', () => {
  it.each([
    [
      'another endpoint (an attacker-run "STS")',
      () => password({ url: 'https://sts.evil.example/' }),
    ],
    ['a path or query on the endpoint', () => password({ url: `${sts.url}/other?x=1` })],
    ['another action', () => password({ body: 'Action=AssumeRole&Version=2011-06-15' })],
    [
      'another server id',
      () => password({}, { 'x-registry-proxy-server-id': 'other.example.com' }),
    ],
    [
      'a server id that is not signed',
      () =>
        password(
          {},
          {
            authorization: `AWS4-HMAC-SHA256 Credential=AKIASTANDIN/20261122/us-east-1/sts/aws4_request, SignedHeaders=host;x-amz-date, Signature=${'0'.repeat(64)}`,
          },
        ),
    ],
    ['a header with a line break', () => password({}, { 'x-amz-date': '2026\r\nx-evil: 1' })],
    ['GET', () => password({ method: 'GET' })],
  ])('%s', async (_what, pw) => {
    expect(await plugin().authenticate({ username: '_aws', password: pw() })).toEqual({
      ok: false,
      reason: 'BAD_PASSWORD',
    });
    expect(sts.requests).toHaveLength(0);
  });

  it('leaves other _aws passwords (instance identity documents) to other plugins', async () => {
    const doc = Buffer.from(JSON.stringify({ document: '{}', rsa2048: 'x' })).toString('base64url');
    expect(await plugin().authenticate({ username: '_aws', password: doc })).toEqual({
      ok: false,
      reason: 'NOT_FOR_THIS_PLUGIN',
    });
  });

  it('a forged signature reaches STS and is refused there', async () => {
    expect(await plugin().authenticate({ username: '_aws', password: password() })).toEqual({
      ok: false,
      reason: 'BAD_PASSWORD',
    });
    expect(sts.requests).toHaveLength(1);
  });

  it('needs an account allow-list', () => {
    expect(() =>
      createAwsIamPlugin({ name: 'eks', serverId: 'docker.example.com', accounts: [] }),
    ).toThrow(/accounts/);
  });
});
