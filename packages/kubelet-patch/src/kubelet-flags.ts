/** The kubelet flags detection reports, by the name used in the description. */
export interface KubeletFlags {
  /** `--config`: the kubelet config file. */
  readonly config: string | null;
  /** `--config-dir`: the drop-in config directory (KEP-3983), when enabled. */
  readonly configDir: string | null;
  /** `--container-runtime-endpoint` (deprecated flag; overrides the config file). */
  readonly containerRuntimeEndpoint: string | null;
  /** `--image-service-endpoint` (deprecated flag; overrides the config file). */
  readonly imageServiceEndpoint: string | null;
  /** `--image-credential-provider-config`. */
  readonly imageCredentialProviderConfig: string | null;
  /** `--image-credential-provider-bin-dir`. */
  readonly imageCredentialProviderBinDir: string | null;
}

const FLAG_NAMES: Record<string, keyof KubeletFlags> = {
  config: 'config',
  'config-dir': 'configDir',
  'container-runtime-endpoint': 'containerRuntimeEndpoint',
  'image-service-endpoint': 'imageServiceEndpoint',
  'image-credential-provider-config': 'imageCredentialProviderConfig',
  'image-credential-provider-bin-dir': 'imageCredentialProviderBinDir',
};

/**
 * Finds the flags above in kubelet's arguments the way its flag parser (pflag) reads them:
 * `--name=value` or `--name value`, the last occurrence wins, nothing after `--` is a flag.
 * Flags not listed are skipped without knowing whether they take a value; a listed flag's value
 * is the word after it, as pflag would take it.
 */
export function findKubeletFlags(args: readonly string[]): KubeletFlags {
  const found: Record<keyof KubeletFlags, string | null> = {
    config: null,
    configDir: null,
    containerRuntimeEndpoint: null,
    imageServiceEndpoint: null,
    imageCredentialProviderConfig: null,
    imageCredentialProviderBinDir: null,
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === '--') break;
    if (!arg.startsWith('--')) continue;
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    const key = Object.hasOwn(FLAG_NAMES, name) ? FLAG_NAMES[name] : undefined;
    if (key === undefined) continue;
    if (eq !== -1) found[key] = arg.slice(eq + 1);
    else if (i + 1 < args.length) found[key] = args[++i] as string;
  }
  return found;
}
