import { lookup as dnsLookup } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { RegistryError } from './errors.js';

/**
 * The decision whether the proxy follows an upstream's redirect to another origin (SSRF guard).
 *
 * An upstream (or a storage host it redirects to) names the next URL, so a hostile or
 * compromised upstream could point the proxy at its own network: the cloud metadata service
 * (169.254.169.254), loopback admin ports, private services. Redirects within the upstream's own
 * origin are always followed (the upstream may itself live on a private address); a redirect to
 * another origin is followed only when every address its host resolves to is public, or the
 * upstream's allow-list (`allowInternalRedirects`) covers it.
 */

/** Address ranges a redirect may not reach by default, by what they are. */
const INTERNAL: ReadonlyArray<readonly [string, string, number, 'ipv4' | 'ipv6']> = [
  ['unspecified', '0.0.0.0', 8, 'ipv4'],
  ['loopback', '127.0.0.0', 8, 'ipv4'],
  ['private', '10.0.0.0', 8, 'ipv4'],
  ['private', '172.16.0.0', 12, 'ipv4'],
  ['private', '192.168.0.0', 16, 'ipv4'],
  ['link-local', '169.254.0.0', 16, 'ipv4'],
  ['shared (CGNAT)', '100.64.0.0', 10, 'ipv4'],
  ['reserved', '192.0.0.0', 24, 'ipv4'],
  ['benchmarking', '198.18.0.0', 15, 'ipv4'],
  ['multicast', '224.0.0.0', 4, 'ipv4'],
  ['reserved', '240.0.0.0', 4, 'ipv4'],
  ['unspecified', '::', 128, 'ipv6'],
  ['loopback', '::1', 128, 'ipv6'],
  ['IPv4-compatible', '::', 96, 'ipv6'],
  ['link-local', 'fe80::', 10, 'ipv6'],
  ['site-local', 'fec0::', 10, 'ipv6'],
  ['unique-local', 'fc00::', 7, 'ipv6'],
  ['multicast', 'ff00::', 8, 'ipv6'],
];
/** One BlockList per kind (BlockList also matches IPv4-mapped IPv6 against IPv4 ranges). */
const KINDS: ReadonlyArray<readonly [string, BlockList]> = (() => {
  const byKind = new Map<string, BlockList>();
  for (const [kind, network, prefix, family] of INTERNAL) {
    const list = byKind.get(kind) ?? new BlockList();
    list.addSubnet(network, prefix, family);
    byKind.set(kind, list);
  }
  return [...byKind];
})();
/** NAT64 (RFC 6052) addresses carry an IPv4 address in their last 32 bits. */
const NAT64 = (() => {
  const list = new BlockList();
  list.addSubnet('64:ff9b::', 96, 'ipv6');
  return list;
})();

const family = (address: string): 'ipv4' | 'ipv6' => (isIP(address) === 6 ? 'ipv6' : 'ipv4');

/**
 * What kind of non-public address `address` is (`loopback`, `link-local`, `private`, ...), or
 * undefined for a public one. IPv4-mapped (`::ffff:127.0.0.1`) and NAT64 forms count as the IPv4
 * address they carry.
 */
export function internalKind(address: string): string | undefined {
  const ip = address.replace(/^\[(.*)\]$/, '$1');
  if (isIP(ip) === 0) return 'not an IP address';
  for (const [kind, list] of KINDS) if (list.check(ip, family(ip))) return kind;
  if (isIP(ip) === 6 && NAT64.check(ip, 'ipv6')) {
    const groups = new URL(`http://[${ip}]/`).hostname.slice(1, -1).split(':');
    const [hi = 0, lo = 0] = groups.slice(-2).map((g) => Number.parseInt(g || '0', 16));
    const v4 = [hi >> 8, hi & 255, lo >> 8, lo & 255].join('.');
    return internalKind(v4);
  }
  return undefined;
}

/** A checked `allowInternalRedirects` list. */
export interface RedirectAllow {
  readonly networks: BlockList;
  /** Lowercased `host` (any port) or `host:port` entries. */
  readonly hosts: ReadonlySet<string>;
  readonly empty: boolean;
}

const HOST_NAME =
  /^(?=.{1,253}(?::|$))[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*(?::\d{1,5})?$/;

/**
 * Checks an `allowInternalRedirects` list: CIDRs (`10.0.0.0/8`, `fd00::/8`), single addresses,
 * and host names with or without a port (`minio.internal`, `storage.internal:9000`).
 *
 * @throws TypeError naming `where` and the entry.
 */
export function parseRedirectAllow(entries: unknown, where: string): RedirectAllow {
  const networks = new BlockList();
  const hosts = new Set<string>();
  if (entries === undefined) return { networks, hosts, empty: true };
  if (!Array.isArray(entries))
    throw new TypeError(`${where}: a list of CIDRs, addresses or host[:port] names`);
  entries.forEach((entry: unknown, i) => {
    const bad = () =>
      new TypeError(
        `${where}[${i}]: ${JSON.stringify(entry)} is not a CIDR (10.0.0.0/8), an address or a host[:port] name`,
      );
    if (typeof entry !== 'string' || entry === '') throw bad();
    const cidr = /^\[?([0-9a-fA-F:.]+)\]?(?:\/(\d{1,3}))?$/.exec(entry);
    const address = cidr?.[1] ?? '';
    const v = isIP(address);
    if (cidr && v !== 0) {
      const max = v === 4 ? 32 : 128;
      const prefix = cidr[2] === undefined ? max : Number(cidr[2]);
      if (prefix > max) throw bad();
      networks.addSubnet(address, prefix, v === 4 ? 'ipv4' : 'ipv6');
      return;
    }
    const name = entry.toLowerCase();
    const port = /:(\d+)$/.exec(name)?.[1];
    if (!HOST_NAME.test(name) || (port !== undefined && Number(port) > 65535)) throw bad();
    hosts.add(name);
  });
  return { networks, hosts, empty: entries.length === 0 };
}

/** How a redirect target's host name becomes addresses: every address, as dns.lookup gives them. */
export type Resolve = (hostname: string) => Promise<readonly string[]>;

/** The system resolver (getaddrinfo, /etc/hosts included), every address. */
export const systemResolve: Resolve = (hostname) =>
  new Promise((resolve, reject) => {
    dnsLookup(hostname, { all: true, verbatim: true }, (err, addresses) => {
      if (err) reject(err);
      else resolve(addresses.map((a) => a.address));
    });
  });

/** The upstream fields the guard looks at. */
export interface GuardedUpstream {
  readonly name: string;
  readonly base: URL;
  readonly redirectAllow: RedirectAllow;
}

const refused = (upstream: GuardedUpstream, why: string) =>
  new RegistryError(
    502,
    'UNAVAILABLE',
    `upstream ${upstream.name} redirected to ${why}; not followed (allow it with allowInternalRedirects)`,
  );

/** The host without IPv6 brackets, and whether it is named by the allow-list. */
function allowedByName(target: URL, allow: RedirectAllow): boolean {
  const hostname = target.hostname.toLowerCase();
  const port = target.port || (target.protocol === 'https:' ? '443' : '80');
  return allow.hosts.has(hostname) || allow.hosts.has(`${hostname}:${port}`);
}

/** Refuses `addresses` if any is internal and not in the allow-list's networks. */
function checkAddresses(
  addresses: readonly string[],
  upstream: GuardedUpstream,
  allow: RedirectAllow,
): void {
  if (addresses.length === 0) throw refused(upstream, 'a host without addresses');
  for (const address of addresses) {
    const kind = internalKind(address);
    if (kind !== undefined && !allow.networks.check(address, family(address)))
      throw refused(upstream, `an internal address (${kind})`);
  }
}

/**
 * Whether the proxy may follow a redirect to `target`. Same-origin targets and allow-listed
 * host names pass; otherwise the host is resolved (`resolve`, every address) and refused if any
 * address is internal and outside the allow-list's networks. Messages name the upstream and the
 * kind of address, never the target URL (it may carry a signature).
 *
 * @throws RegistryError 502 UNAVAILABLE.
 */
export async function checkRedirect(
  target: URL,
  upstream: GuardedUpstream,
  resolve: Resolve = systemResolve,
): Promise<void> {
  if (target.origin === upstream.base.origin) return;
  const allow = upstream.redirectAllow;
  if (allowedByName(target, allow)) return;
  const host = target.hostname.replace(/^\[(.*)\]$/, '$1');
  let addresses: readonly string[];
  if (isIP(host) !== 0) addresses = [host];
  else {
    try {
      addresses = await resolve(host);
    } catch {
      throw refused(upstream, 'a host that does not resolve');
    }
  }
  checkAddresses(addresses, upstream, allow);
}

/**
 * A connect-time `lookup` for sockets opened to a redirect target: the addresses actually
 * connected to are checked again, so a name that resolved to a public address for
 * {@link checkRedirect} and to 127.0.0.1 a moment later (DNS rebinding) is still refused.
 */
export function guardedLookup(
  target: URL,
  upstream: GuardedUpstream,
  resolve: Resolve = systemResolve,
): LookupFunction | undefined {
  if (target.origin === upstream.base.origin || allowedByName(target, upstream.redirectAllow))
    return undefined;
  return (hostname, options, callback) => {
    resolve(hostname).then(
      (addresses) => {
        try {
          checkAddresses(addresses, upstream, upstream.redirectAllow);
        } catch (err) {
          callback(err as NodeJS.ErrnoException, '', 0);
          return;
        }
        const list = addresses.map((address) => ({ address, family: isIP(address) }));
        if ((options as { all?: boolean }).all)
          (callback as unknown as (e: null, a: typeof list) => void)(null, list);
        else callback(null, list[0]?.address ?? '', list[0]?.family ?? 4);
      },
      (err: NodeJS.ErrnoException) => callback(err, '', 0),
    );
  };
}
