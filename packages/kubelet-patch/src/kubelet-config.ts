import { parseDocument } from 'yaml';

/** How a kubelet config file is written. */
export type ConfigFormat = 'yaml' | 'json';

/** What a kubelet config file (or a `--config-dir` drop-in) says, as far as the patcher cares. */
export interface KubeletConfigFacts {
  /** `json` when the text starts with `{`, else `yaml` (kubelet reads both the same way). */
  readonly format: ConfigFormat;
  /** False when the file is not a well-formed KubeletConfiguration; `error` says why. */
  readonly parses: boolean;
  readonly error: string | null;
  /** `containerRuntimeEndpoint` when the file sets it (kubelet >= 1.27), else null. */
  readonly containerRuntimeEndpoint: string | null;
  /** `imageServiceEndpoint` when the file sets it (kubelet >= 1.27), else null. */
  readonly imageServiceEndpoint: string | null;
}

const KIND = 'KubeletConfiguration';
const API_GROUP = 'kubelet.config.k8s.io/';

/** JSON when the text starts with `{` (after a byte-order mark and blanks), else YAML. */
export function configFormatOf(text: string): ConfigFormat {
  return /^\uFEFF?\s*\{/.test(text) ? 'json' : 'yaml';
}

/**
 * Parses the text of a kubelet config file (a leading byte-order mark dropped) the one way the
 * patcher reads kubelet's files: strict JSON, or one YAML document with unique keys and at most
 * 100 aliases. Throws the parser's error.
 */
export function parseConfigText(text: string, format: ConfigFormat): unknown {
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  if (format === 'json') return JSON.parse(body);
  const doc = parseDocument(body, { uniqueKeys: true, prettyErrors: true });
  const first = doc.errors[0];
  if (first) throw first;
  return doc.toJS({ maxAliasCount: 100 });
}

/**
 * Parses the text of a kubelet config file: strict JSON when it starts with `{`, else YAML with
 * the `yaml` library (duplicate keys, several documents and alias bombs are errors). The result
 * must be a mapping with `kind: KubeletConfiguration` and an `apiVersion` in
 * `kubelet.config.k8s.io`. A file that fails any of this is reported, not thrown: detection
 * describes the node as it is, and changing it is refused later.
 */
export function inspectKubeletConfig(text: string): KubeletConfigFacts {
  const format = configFormatOf(text);
  const failed = (error: string): KubeletConfigFacts => ({
    format,
    parses: false,
    error,
    containerRuntimeEndpoint: null,
    imageServiceEndpoint: null,
  });
  let value: unknown;
  try {
    value = parseConfigText(text, format);
  } catch (err) {
    const message = (err as Error).message;
    return failed(
      format === 'json' ? `invalid JSON: ${message}` : `invalid YAML: ${firstLine(message)}`,
    );
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return failed(`not a mapping (the file holds ${describe(value)})`);
  const config = value as Record<string, unknown>;
  if (config.kind !== KIND)
    return failed(`kind is ${JSON.stringify(config.kind ?? null)}, not "${KIND}"`);
  if (typeof config.apiVersion !== 'string' || !config.apiVersion.startsWith(API_GROUP))
    return failed(
      `apiVersion is ${JSON.stringify(config.apiVersion ?? null)}, not ${API_GROUP}v1beta1`,
    );
  const endpoint = (key: string): string | null | Error => {
    const v = config[key];
    if (v === undefined || v === null || v === '') return null;
    return typeof v === 'string' ? v : new Error(`${key} is ${describe(v)}, not a string`);
  };
  const runtime = endpoint('containerRuntimeEndpoint');
  const image = endpoint('imageServiceEndpoint');
  if (runtime instanceof Error) return failed(runtime.message);
  if (image instanceof Error) return failed(image.message);
  return {
    format,
    parses: true,
    error: null,
    containerRuntimeEndpoint: runtime,
    imageServiceEndpoint: image,
  };
}

/** The yaml library's message without the code excerpt it appends after a colon. */
function firstLine(message: string): string {
  return (message.split('\n')[0] ?? message).trim().replace(/:$/, '');
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  return `a ${typeof value}`;
}
