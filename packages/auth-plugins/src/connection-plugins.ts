import { BlockList, isIP } from 'node:net';
import type { AuthPlugin, AuthResult, ConnectionInfo } from './plugin.js';

const notForThis = async (): Promise<AuthResult> => ({ ok: false, reason: 'NOT_FOR_THIS_PLUGIN' });

export interface MtlsOptions {
  readonly name: string;
  /**
   * Which part of the verified client certificate is the subject: `cn` (default), or the first
   * subject alternative name of a kind: `dns`, `uri` (SPIFFE IDs), `email`.
   */
  readonly subjectFrom?: 'cn' | 'dns' | 'uri' | 'email';
}

/** The values of one kind in Node's `subjectaltname` string (`DNS:a, URI:spiffe://b`). */
function altNames(value: string | undefined, kind: string): string[] {
  if (!value) return [];
  return value
    .split(', ')
    .filter((part) => part.startsWith(`${kind}:`))
    .map((part) => part.slice(kind.length + 1));
}

/**
 * Clients identified by a certificate the proxy verified against its client CA bundle
 * (`server.tls.clientCaFile`): how nodes authenticate when containerd reaches the proxy as a
 * mirror, since `hosts.toml` can carry a client certificate but no password. Only chains that
 * verified count; the identity is `<name>:<CN or SAN>` with the certificate's fingerprint.
 */
export function createMtlsPlugin(options: MtlsOptions): AuthPlugin {
  const { name } = options;
  if (typeof name !== 'string' || name === '') throw new TypeError('mtls: name is required');
  const from = options.subjectFrom ?? 'cn';
  if (!['cn', 'dns', 'uri', 'email'].includes(from))
    throw new TypeError(`${name}.subjectFrom: cn, dns, uri or email`);
  return {
    name,
    type: 'mtls',
    family: 'connection',
    authenticate: notForThis,
    async authenticateConnection(connection: ConnectionInfo): Promise<AuthResult> {
      const cert = connection.certificate;
      if (!cert?.authorized) return { ok: false, reason: 'NOT_FOR_THIS_PLUGIN' };
      const subject =
        from === 'cn'
          ? cert.subject.CN
          : altNames(cert.subjectAltName, { dns: 'DNS', uri: 'URI', email: 'email' }[from])[0];
      if (typeof subject !== 'string' || subject === '')
        return { ok: false, reason: 'UNKNOWN_USER' };
      return {
        ok: true,
        identity: {
          plugin: name,
          subject,
          groups: cert.subject.OU ? [cert.subject.OU] : [],
          claims: { fingerprint256: cert.fingerprint256, ...cert.subject },
        },
      };
    },
  };
}

export interface NetworkOptions {
  readonly name: string;
  /** Client networks trusted without credentials: `10.0.0.0/8`, `fd00::/8`, or single addresses. */
  readonly cidrs: readonly string[];
}

/**
 * An identity of last resort: clients whose address is in `cidrs` become `<name>:<address>`
 * without any credentials. Off unless configured; the app logs a warning at start, and every
 * pull it allows is in the audit log with that identity. The address is the connection's
 * (X-Forwarded-For is never trusted), so behind a load balancer that does not preserve client
 * addresses this would trust the balancer: do not use it there.
 */
export function createNetworkPlugin(options: NetworkOptions): AuthPlugin {
  const { name } = options;
  if (typeof name !== 'string' || name === '') throw new TypeError('network: name is required');
  if (!Array.isArray(options.cidrs) || options.cidrs.length === 0)
    throw new TypeError(`${name}.cidrs: one or more networks`);
  const allowed = new BlockList();
  for (const cidr of options.cidrs) {
    const [address = '', bits] = cidr.split('/');
    const family = isIP(address);
    if (family === 0)
      throw new TypeError(`${name}.cidrs: ${JSON.stringify(cidr)} is not a network`);
    const type = family === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) {
      allowed.addAddress(address, type);
    } else {
      const prefix = Number(bits);
      if (!/^\d{1,3}$/.test(bits) || prefix > (family === 6 ? 128 : 32))
        throw new TypeError(`${name}.cidrs: ${JSON.stringify(cidr)} has a bad prefix length`);
      allowed.addSubnet(address, prefix, type);
    }
  }
  return {
    name,
    type: 'network',
    family: 'connection',
    authenticate: notForThis,
    async authenticateConnection(connection: ConnectionInfo): Promise<AuthResult> {
      let address = connection.remoteAddress ?? '';
      // IPv4 clients of a dual-stack socket show up as ::ffff:a.b.c.d
      if (address.startsWith('::ffff:') && isIP(address.slice(7)) === 4) address = address.slice(7);
      const family = isIP(address);
      if (family === 0 || !allowed.check(address, family === 6 ? 'ipv6' : 'ipv4'))
        return { ok: false, reason: 'NOT_FOR_THIS_PLUGIN' };
      return {
        ok: true,
        identity: { plugin: name, subject: address, groups: [], claims: { address } },
      };
    },
  };
}
