import { createSign, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCertificate } from '@org/tools/stand-ins';
import { describe, expect, it } from 'vitest';
import {
  createAwsInstanceIdentityPlugin,
  shippedAwsSignatureCertificates,
} from './aws-instance-identity.js';
import { authenticateLogin } from './login.js';

const dir = mkdtempSync(join(tmpdir(), 'aws-iid-'));
/** An RSA key and self-signed certificate standing in for AWS's, made by the real openssl. */
function testCa(name: string): { key: string; cert: string } {
  const made = makeCertificate(dir, name, { key: 'rsa', subject: `/CN=${name}` });
  return { key: made.keyFile, cert: made.certFile };
}
const aws = testCa('aws-stand-in');
const other = testCa('someone-else');
const document = (extra: Record<string, unknown> = {}) =>
  JSON.stringify(
    {
      accountId: '123456789012',
      availabilityZone: 'eu-west-1a',
      imageId: 'ami-0123456789abcdef0',
      instanceId: 'i-0123456789abcdef0',
      instanceType: 'm7g.large',
      pendingTime: '2026-11-01T00:00:00Z',
      privateIp: '10.0.0.12',
      region: 'eu-west-1',
      version: '2017-09-30',
      ...extra,
    },
    null,
    2,
  );
const sign = (text: string, key = aws.key) =>
  createSign('RSA-SHA256').update(text).sign(readFileSync(key), 'base64');
const password = (text: string, signature: string) =>
  Buffer.from(JSON.stringify({ document: text, signature, rsa2048: 'pkcs7' })).toString(
    'base64url',
  );

const plugin = (extra: Record<string, unknown> = {}) =>
  createAwsInstanceIdentityPlugin({
    name: 'ec2',
    accounts: ['123456789012'],
    certificates: { '*': aws.cert },
    withoutShippedCertificates: true,
    ...extra,
  });

describe('the aws-instance-identity plugin', () => {
  it('accepts a document signed with the region certificate: account/instance and its fields', async () => {
    const text = document();
    expect(
      await authenticateLogin([plugin()], {
        username: '_aws',
        password: password(text, sign(text)),
      }),
    ).toEqual({
      ok: true,
      identity: {
        plugin: 'ec2',
        subject: '123456789012/i-0123456789abcdef0',
        groups: [],
        claims: expect.objectContaining({ region: 'eu-west-1', instanceType: 'm7g.large' }),
      },
    });
  });

  it('refuses a tampered document, a foreign signature, another account, region or instance', async () => {
    const text = document();
    const tampered = text.replace('i-0123456789abcdef0', 'i-0fffffffffffffff0');
    const otherAccount = document({ accountId: '999999999999' });
    for (const pw of [
      password(tampered, sign(text)),
      password(text, sign(text, other.key)),
      password(otherAccount, sign(otherAccount)),
      password(text, 'not base64 at all'),
    ]) {
      expect((await plugin().authenticate({ username: '_aws', password: pw })).ok).toBe(false);
    }
    const narrow = plugin({ regions: ['us-east-1'] });
    expect(
      (await narrow.authenticate({ username: '_aws', password: password(text, sign(text)) })).ok,
    ).toBe(false);
    const instances = plugin({ instanceIds: ['i-0aaa*'] });
    expect(
      (await instances.authenticate({ username: '_aws', password: password(text, sign(text)) })).ok,
    ).toBe(false);
  });

  it('uses the certificate of the document region when one is configured for it', async () => {
    const text = document();
    const byRegion = plugin({ certificates: { 'eu-west-1': other.cert, '*': aws.cert } });
    expect(
      (await byRegion.authenticate({ username: '_aws', password: password(text, sign(text)) })).ok,
    ).toBe(false);
    expect(
      (
        await byRegion.authenticate({
          username: '_aws',
          password: password(text, sign(text, other.key)),
        })
      ).ok,
    ).toBe(true);
  });

  it('leaves aws-iam logins to their plugin and needs accounts and a certificate', async () => {
    const iam = Buffer.from(
      JSON.stringify({ method: 'POST', url: 'https://sts.amazonaws.com/' }),
    ).toString('base64url');
    expect(await plugin().authenticate({ username: '_aws', password: iam })).toEqual({
      ok: false,
      reason: 'NOT_FOR_THIS_PLUGIN',
    });
    expect(() =>
      createAwsInstanceIdentityPlugin({
        name: 'ec2',
        accounts: [],
        certificates: { '*': aws.cert },
      }),
    ).toThrow(/accounts/);
    expect(() =>
      createAwsInstanceIdentityPlugin({
        name: 'ec2',
        accounts: ['123456789012'],
        withoutShippedCertificates: true,
      }),
    ).toThrow(/certificate/);
  });
});

describe("AWS's certificates shipped as data", () => {
  it('covers the commercial, China and GovCloud regions, each a self-signed RSA certificate', () => {
    const shipped = shippedAwsSignatureCertificates();
    for (const region of [
      'us-east-1',
      'us-west-2',
      'eu-west-1',
      'eu-central-1',
      'ap-southeast-1',
      'sa-east-1',
      'cn-north-1',
      'us-gov-west-1',
      'af-south-1',
      'me-central-1',
    ]) {
      expect(shipped[region]).toBeDefined();
    }
    for (const [region, file] of Object.entries(shipped)) {
      const cert = new X509Certificate(readFileSync(file));
      expect(cert.publicKey.asymmetricKeyType, region).toBe('rsa');
      // a transcription error anywhere in the PEM would break its own signature
      expect(cert.verify(cert.publicKey), region).toBe(true);
    }
  });

  it('are used by default: a document from a shipped region signed by anyone else is refused', async () => {
    const text = document({ region: 'us-east-1' });
    const withDefaults = createAwsInstanceIdentityPlugin({
      name: 'ec2',
      accounts: ['123456789012'],
    });
    expect(
      (await withDefaults.authenticate({ username: '_aws', password: password(text, sign(text)) }))
        .ok,
    ).toBe(false);
    // and a region's certificate can be overridden (here by the test CA)
    const overridden = createAwsInstanceIdentityPlugin({
      name: 'ec2',
      accounts: ['123456789012'],
      certificates: { 'us-east-1': aws.cert },
    });
    expect(
      (await overridden.authenticate({ username: '_aws', password: password(text, sign(text)) }))
        .ok,
    ).toBe(true);
  });
});
