import { isDeepStrictEqual } from 'node:util';
import { Document, isMap, isSeq, parseDocument } from 'yaml';
import { EditError, jsonIndent, rewriteJson } from './edit.js';
import { type ConfigFormat, configFormatOf, parseConfigText } from './kubelet-config.js';

/**
 * kubelet's `CredentialProviderConfig` files (reference sheet §3.3): read, and one provider
 * added or replaced with the fewest bytes changed, checked by parsing the result again.
 */

/** The `kind` every credential provider config file declares. */
export const PROVIDER_CONFIG_KIND = 'CredentialProviderConfig';

/** A parsed `CredentialProviderConfig`. */
export interface ProviderConfig {
  readonly format: ConfigFormat;
  /** The whole document. */
  readonly value: Readonly<Record<string, unknown>>;
  readonly apiVersion: string | null;
  /** `providers`, each a mapping with a string `name` (an absent list reads as empty). */
  readonly providers: readonly Readonly<Record<string, unknown>>[];
}

/** Why a file is not a credential provider config kubelet would load; `message` says what. */
export class ProviderConfigError extends Error {
  override readonly name = 'ProviderConfigError';
}

/**
 * Parses a credential provider config file: one document (YAML, or strict JSON when it starts
 * with `{`), a mapping of kind `CredentialProviderConfig` whose `providers` are mappings with a
 * string `name`. Throws `ProviderConfigError` otherwise.
 */
export function parseProviderConfig(text: string): ProviderConfig {
  const format = configFormatOf(text);
  let value: unknown;
  try {
    value = parseConfigText(text, format);
  } catch (err) {
    throw new ProviderConfigError(
      `does not parse as ${format}: ${(err as Error).message.split('\n')[0]}`,
    );
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new ProviderConfigError('is not a mapping');
  const doc = value as Record<string, unknown>;
  if (doc.kind !== PROVIDER_CONFIG_KIND)
    throw new ProviderConfigError(
      `is not a ${PROVIDER_CONFIG_KIND} (kind ${JSON.stringify(doc.kind ?? null)})`,
    );
  const providers = doc.providers ?? [];
  if (!Array.isArray(providers)) throw new ProviderConfigError('providers is not a list');
  providers.forEach((p, i) => {
    if (p === null || typeof p !== 'object' || Array.isArray(p))
      throw new ProviderConfigError(`providers[${i}] is not a mapping`);
    if (typeof (p as { name?: unknown }).name !== 'string')
      throw new ProviderConfigError(`providers[${i}] has no name`);
  });
  return {
    format,
    value: doc,
    apiVersion: typeof doc.apiVersion === 'string' ? doc.apiVersion : null,
    providers: providers as Record<string, unknown>[],
  };
}

/**
 * The config text with `provider` replacing `providers[index]`, or appended when `index` is
 * null; everything else is kept. YAML: the entry's lines are inserted (or swapped) in the block
 * list with its own indentation; JSON: the element is inserted after the last one (or swapped)
 * with the file's indentation. When that text edit does not read back as exactly this change,
 * the file is written again (YAML through the `yaml` document model, which keeps comments;
 * JSON with the file's indentation, byte-order mark and final newline). Throws `EditError`
 * when neither reads back right.
 */
export function withProvider(
  text: string,
  provider: Readonly<Record<string, unknown>>,
  index: number | null,
): string {
  const config = parseProviderConfig(text);
  const providers = [...config.providers];
  if (index === null) providers.push(provider);
  else providers.splice(index, 1, provider);
  const want = { ...config.value, providers };
  const candidates =
    config.format === 'json'
      ? [() => editJsonText(text, provider, index), () => rewriteJson(text, want)]
      : [() => editYamlText(text, provider, index), () => rewriteYaml(text, provider, index)];
  for (const candidate of candidates) {
    let out: string | null;
    try {
      out = candidate();
    } catch {
      out = null; // a shape the edit does not handle: the next candidate, or the refusal
    }
    if (out !== null && readsAs(out, config.format, want)) return out;
  }
  throw new EditError('adding the provider would change more than that entry; refused');
}

/** A whole config file holding `providers`, as YAML, below a comment header. */
export function providerConfigYaml(
  header: string,
  providers: readonly Readonly<Record<string, unknown>>[],
): string {
  const doc = new Document({
    apiVersion: 'kubelet.config.k8s.io/v1',
    kind: PROVIDER_CONFIG_KIND,
    providers,
  });
  return `${header}${doc.toString({ lineWidth: 0 })}`;
}

/**
 * Whether two kubelet `matchImages` globs can match one image (reference sheet §3.6): the same
 * port, the same number of host labels, each label pair equal or one of them a glob, and one
 * path a prefix of the other. A glob label is taken to match anything, so this can say yes
 * where no image matches both; it is only used for a note.
 */
export function mayOverlap(a: string, b: string): boolean {
  const split = (glob: string) => {
    const slash = glob.indexOf('/');
    const hostPort = slash === -1 ? glob : glob.slice(0, slash);
    const path = slash === -1 ? '' : glob.slice(slash);
    const colon = hostPort.lastIndexOf(':');
    return {
      labels: (colon === -1 ? hostPort : hostPort.slice(0, colon)).split('.'),
      port: colon === -1 ? '' : hostPort.slice(colon + 1),
      path,
    };
  };
  const x = split(a);
  const y = split(b);
  if (x.port !== y.port || x.labels.length !== y.labels.length) return false;
  const glob = (label: string) => /[*[]/.test(label);
  const labels = x.labels.every((l, i) => {
    const m = y.labels[i] as string;
    return l === m || glob(l) || glob(m);
  });
  return labels && (x.path.startsWith(y.path) || y.path.startsWith(x.path));
}

function readsAs(text: string, format: ConfigFormat, want: Record<string, unknown>): boolean {
  try {
    return (
      configFormatOf(text) === format && isDeepStrictEqual(parseConfigText(text, format), want)
    );
  } catch {
    return false;
  }
}

/** The entry as block YAML lines at column 0; `indentSeq`: lists indented under their key. */
function yamlLines(provider: Readonly<Record<string, unknown>>, indentSeq: boolean): string[] {
  return new Document(provider).toString({ lineWidth: 0, indentSeq }).trimEnd().split('\n');
}

/** Index just past the line that holds `pos - 1` (its newline included), or the text's end. */
function lineEnd(text: string, pos: number): number {
  if (pos > 0 && text[pos - 1] === '\n') return pos;
  const nl = text.indexOf('\n', pos);
  return nl === -1 ? text.length : nl + 1;
}

function editYamlText(
  text: string,
  provider: Readonly<Record<string, unknown>>,
  index: number | null,
): string | null {
  if (text.startsWith('\uFEFF')) return null;
  const doc = parseDocument(text);
  const seq = doc.get('providers', true);
  if (!isSeq(seq) || seq.flow || seq.items.length === 0) return null;
  const item = seq.items[index ?? seq.items.length - 1];
  if (!isMap(item) || item.range == null) return null;
  const [start, valueEnd] = item.range;
  const lineStart = text.lastIndexOf('\n', start - 1) + 1;
  // `  - name: x`: the dash and the column the entry's keys start at.
  const m = /^( *)-( +)$/.exec(text.slice(lineStart, start));
  if (m === null) return null;
  const dash = (m[1] as string).length;
  const body = start - lineStart;
  // The file's own list style: `providers:` at column 0, its dashes there too or indented.
  const lines = yamlLines(provider, dash > 0).map((line, i) =>
    i === 0
      ? `${' '.repeat(dash)}-${' '.repeat(body - dash - 1)}${line}`
      : line === ''
        ? line
        : `${' '.repeat(body)}${line}`,
  );
  const end = lineEnd(text, valueEnd);
  const block = `${lines.join('\n')}\n`;
  if (index !== null) return `${text.slice(0, lineStart)}${block}${text.slice(end)}`;
  const head = text.slice(0, end);
  return `${head}${head.endsWith('\n') ? '' : '\n'}${block}${text.slice(end)}`;
}

function rewriteYaml(
  text: string,
  provider: Readonly<Record<string, unknown>>,
  index: number | null,
): string {
  const doc = parseDocument(text);
  const node = doc.createNode(provider);
  if (index !== null) doc.setIn(['providers', index], node);
  else if (isSeq(doc.get('providers', true))) doc.addIn(['providers'], node);
  else doc.set('providers', doc.createNode([provider]));
  return doc.toString({ lineWidth: 0 });
}

function editJsonText(
  text: string,
  provider: Readonly<Record<string, unknown>>,
  index: number | null,
): string | null {
  const list = providersSpan(text);
  if (list === null || list.elements.length === 0) return null;
  const element = list.elements[index ?? list.elements.length - 1];
  if (element === undefined) return null;
  const lineStart = text.lastIndexOf('\n', element.start - 1) + 1;
  const lead = text.slice(lineStart, element.start);
  const unit = jsonIndent(text);
  const ownLine = /^[ \t]*$/.test(lead) && unit !== '';
  const rendered = ownLine
    ? JSON.stringify(provider, null, unit).split('\n').join(`\n${lead}`)
    : JSON.stringify(provider);
  if (index !== null) return `${text.slice(0, element.start)}${rendered}${text.slice(element.end)}`;
  const insert = ownLine ? `,\n${lead}${rendered}` : `, ${rendered}`;
  return `${text.slice(0, element.end)}${insert}${text.slice(element.end)}`;
}

interface Span {
  readonly start: number;
  readonly end: number;
}

/**
 * Where the top-level `providers` array and its elements are in JSON text (the last
 * `providers` member, as `JSON.parse` keeps). Null when the text is not shaped for it; it has
 * parsed as JSON already, so the scan only has to find value boundaries.
 */
function providersSpan(text: string): { elements: Span[] } | null {
  let i = skipBlank(text, 0);
  if (text[i] !== '{') return null;
  i = skipBlank(text, i + 1);
  let found: Span | null = null;
  while (i < text.length && text[i] !== '}') {
    const keyEnd = skipValue(text, i);
    const key = JSON.parse(text.slice(i, keyEnd)) as unknown;
    i = skipBlank(text, keyEnd);
    if (text[i] !== ':') return null;
    const start = skipBlank(text, i + 1);
    const end = skipValue(text, start);
    if (key === 'providers') found = { start, end };
    i = skipBlank(text, end);
    if (text[i] === ',') i = skipBlank(text, i + 1);
  }
  if (found === null || text[found.start] !== '[') return null;
  const elements: Span[] = [];
  let j = skipBlank(text, found.start + 1);
  while (j < found.end - 1 && text[j] !== ']') {
    const end = skipValue(text, j);
    elements.push({ start: j, end });
    j = skipBlank(text, end);
    if (text[j] === ',') j = skipBlank(text, j + 1);
  }
  return { elements };
}

function skipBlank(text: string, i: number): number {
  while (i < text.length && /[\s\uFEFF]/.test(text[i] as string)) i++;
  return i;
}

/** The index just past the JSON value starting at `i`. */
function skipValue(text: string, i: number): number {
  const c = text[i];
  if (c === '"') return skipString(text, i);
  if (c === '{' || c === '[') {
    let depth = 0;
    while (i < text.length) {
      const ch = text[i];
      if (ch === '"') {
        i = skipString(text, i);
        continue;
      }
      if (ch === '{' || ch === '[') depth++;
      else if (ch === '}' || ch === ']') {
        depth--;
        if (depth === 0) return i + 1;
      }
      i++;
    }
    return text.length;
  }
  while (i < text.length && !/[\s,\]}]/.test(text[i] as string)) i++;
  return i;
}

function skipString(text: string, i: number): number {
  for (let j = i + 1; j < text.length; j++) {
    if (text[j] === '\\') j++;
    else if (text[j] === '"') return j + 1;
  }
  return text.length;
}
