import {
  type CloudProvider,
  detectProvider,
  isRegionName,
  registryHostOf,
} from '@org/registry-domains';

/**
 * An explicit statement that a host stands for a cloud registry: the recommended way to use a
 * registry proxy or gateway. Checked before any host pattern; pins the provider.
 */
export interface RegistryMapping {
  readonly provider: CloudProvider;
  /** AWS region (required for aws), or a GCP location. */
  readonly region?: string;
  /** AWS account whose registry this is (sent as `registryIds`). */
  readonly accountId?: string;
  /** Azure: the real ACR login server to exchange at (required unless the host is one). */
  readonly loginServer?: string;
  /** Azure tenant. */
  readonly tenantId?: string;
}

/**
 * Checks a mapping table (`host -> mapping`) and returns it keyed by lowercase host.
 *
 * @throws TypeError naming the host and the field.
 */
export function compileMappings(
  mappings: Readonly<Record<string, RegistryMapping>> | undefined,
): ReadonlyMap<string, RegistryMapping> {
  const out = new Map<string, RegistryMapping>();
  for (const [key, m] of Object.entries(mappings ?? {})) {
    const where = `mappings[${JSON.stringify(key)}]`;
    let host: string;
    try {
      host = registryHostOf(key).toLowerCase();
    } catch {
      throw new TypeError(`${where}: not a registry host[:port]`);
    }
    if (key.includes('/'))
      throw new TypeError(`${where}: a mapping key is a host[:port], without a path`);
    if (m === null || typeof m !== 'object') throw new TypeError(`${where}: must be an object`);
    if (m.provider !== 'gcp' && m.provider !== 'aws' && m.provider !== 'azure') {
      throw new TypeError(`${where}.provider: must be gcp, aws or azure`);
    }
    if (m.provider === 'aws' && (m.region === undefined || !isRegionName('aws', m.region))) {
      throw new TypeError(`${where}.region: aws mappings need a region such as eu-west-1`);
    }
    if (m.region !== undefined && !isRegionName(m.provider, m.region))
      throw new TypeError(`${where}.region: not a region name`);
    if (m.accountId !== undefined && !/^\d{12}$/.test(m.accountId)) {
      throw new TypeError(`${where}.accountId: a 12-digit AWS account id`);
    }
    if (
      m.provider === 'azure' &&
      m.loginServer === undefined &&
      detectProvider(host)?.provider !== 'azure'
    ) {
      throw new TypeError(
        `${where}.loginServer: azure mappings of a non-ACR host need the real ACR login server`,
      );
    }
    if (m.loginServer !== undefined && detectProvider(m.loginServer)?.provider !== 'azure') {
      throw new TypeError(
        `${where}.loginServer: ${JSON.stringify(m.loginServer)} is not an ACR login server`,
      );
    }
    out.set(host, Object.freeze({ ...m }));
  }
  return out;
}
