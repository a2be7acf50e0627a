import { parse, TomlError } from 'smol-toml';

/** What containerd's config.toml says about where registry host configuration lives. */
export interface ContainerdConfigFacts {
  readonly parses: boolean;
  readonly error: string | null;
  /** The file's `version` (containerd reads a file without one as version 1). */
  readonly version: number | null;
  /**
   * The CRI registry `config_path` (a hosts.toml tree such as `/etc/containerd/certs.d`, may be
   * a `:`-separated list), or null when unset or empty: then containerd needs a config change
   * and a restart before hosts.toml files take effect.
   */
  readonly registryConfigPath: string | null;
  /** `imports` (more TOML files merged in); they are listed, not read. */
  readonly imports: readonly string[];
}

/** The plugin table that holds `registry` in each config version (containerd docs/cri/config.md). */
export const REGISTRY_PLUGIN: Readonly<Record<number, string>> = {
  1: 'cri',
  2: 'io.containerd.grpc.v1.cri',
  3: 'io.containerd.cri.v1.images',
};

/**
 * Parses containerd's config.toml with smol-toml and reads the registry `config_path` from the
 * table of the file's version: `plugins.cri` (1), `plugins."io.containerd.grpc.v1.cri"` (2),
 * `plugins."io.containerd.cri.v1.images"` (3, containerd 2.x). Errors are reported, not thrown.
 */
export function inspectContainerdConfig(text: string): ContainerdConfigFacts {
  const failed = (error: string): ContainerdConfigFacts => ({
    parses: false,
    error,
    version: null,
    registryConfigPath: null,
    imports: [],
  });
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof TomlError)
      return failed(
        `invalid TOML: ${err.message.split('\n')[0]} (line ${err.line}, column ${err.column})`,
      );
    return failed(`invalid TOML: ${(err as Error).message}`);
  }
  const version = doc.version ?? 1;
  if (typeof version !== 'number' || !(version in REGISTRY_PLUGIN))
    return failed(`version is ${JSON.stringify(String(version))}; containerd knows 1, 2 and 3`);
  const imports = doc.imports ?? [];
  if (!Array.isArray(imports) || !imports.every((i) => typeof i === 'string'))
    return failed('imports is not a list of file names');
  const plugin = table(table(doc.plugins)?.[REGISTRY_PLUGIN[version] as string]);
  const configPath = table(plugin?.registry)?.config_path;
  if (configPath !== undefined && typeof configPath !== 'string')
    return failed('registry config_path is not a string');
  return {
    parses: true,
    error: null,
    version,
    registryConfigPath: configPath === undefined || configPath === '' ? null : configPath,
    imports,
  };
}

function table(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}
