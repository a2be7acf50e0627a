import { describe, expect, it } from 'vitest';
import { createMtlsPlugin, createNetworkPlugin } from './connection-plugins.js';
import { authenticateConnection, authenticateLogin } from './login.js';

const cert = (authorized: boolean, extra: Record<string, unknown> = {}) => ({
  authorized,
  subject: { CN: 'node-1.example.com', OU: 'nodes' },
  subjectAltName: 'DNS:node-1.example.com, URI:spiffe://example.com/node/1, email:ops@example.com',
  fingerprint256: 'AA:BB',
  ...extra,
});

describe('the mtls plugin', () => {
  it('takes the subject from a verified certificate: CN or a SAN', async () => {
    expect(
      await createMtlsPlugin({ name: 'nodes' }).authenticateConnection?.({
        certificate: cert(true),
      }),
    ).toEqual({
      ok: true,
      identity: {
        plugin: 'nodes',
        subject: 'node-1.example.com',
        groups: ['nodes'],
        claims: expect.objectContaining({ fingerprint256: 'AA:BB' }),
      },
    });
    const uri = await createMtlsPlugin({ name: 'n', subjectFrom: 'uri' }).authenticateConnection?.({
      certificate: cert(true),
    });
    expect(uri).toMatchObject({ ok: true, identity: { subject: 'spiffe://example.com/node/1' } });
  });

  it('ignores certificates that did not verify, and logins', async () => {
    const p = createMtlsPlugin({ name: 'nodes' });
    expect((await p.authenticateConnection?.({ certificate: cert(false) }))?.ok).toBe(false);
    expect((await p.authenticateConnection?.({}))?.ok).toBe(false);
    expect(
      (await authenticateLogin([p], { username: 'node-1.example.com', password: 'x' })).ok,
    ).toBe(false);
  });
});

describe('the network plugin', () => {
  const p = createNetworkPlugin({ name: 'lan', cidrs: ['10.0.0.0/8', '192.168.1.7', 'fd00::/8'] });
  it.each([
    ['10.1.2.3', true],
    ['::ffff:10.1.2.3', true],
    ['192.168.1.7', true],
    ['192.168.1.8', false],
    ['fd00::1', true],
    ['2001:db8::1', false],
    ['11.0.0.1', false],
    [undefined, false],
    ['not-an-address', false],
  ])('%s allowed: %s', async (remoteAddress, allowed) => {
    const result = await authenticateConnection(
      [p],
      remoteAddress === undefined ? {} : { remoteAddress },
    );
    expect(result?.ok ?? false).toBe(allowed);
    if (allowed) expect(result).toMatchObject({ identity: { plugin: 'lan' } });
  });

  it('refuses bad networks at config time', () => {
    for (const cidrs of [[], ['10.0.0.0/33'], ['nonsense'], ['10.0.0.0/x']]) {
      expect(() => createNetworkPlugin({ name: 'lan', cidrs })).toThrow(TypeError);
    }
  });
});
