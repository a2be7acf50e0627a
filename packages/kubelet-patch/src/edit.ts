import { isDeepStrictEqual } from 'node:util';
import { parseDocument } from 'yaml';
import { parseEnvFile } from './env-file.js';
import { type ConfigFormat, parseConfigText } from './kubelet-config.js';

/**
 * Text edits the planners make to kubelet's files. Each one changes as few bytes as it can, and
 * each checks its own result by parsing it again: an edit that would change anything but what
 * it means to change throws `EditError` instead of returning.
 */

/** Raised when a file cannot be edited safely; the message says why, nothing was written. */
export class EditError extends Error {
  override readonly name = 'EditError';
}

/** The marker line above every assignment the patcher adds to an env file or drop-in. */
export const MARKER =
  '# Added by node-patcher (docker-registry-proxy); `node-patcher revert` removes it.';

/**
 * Sets top-level string fields of a kubelet config file (`imageServiceEndpoint`, …), keeping
 * everything else. YAML: the value of an existing key is replaced in place, a missing key is
 * appended as a last line; JSON: the file is written again with its own indentation. Throws
 * `EditError` when the file does not parse as one mapping or the result would differ in
 * anything else.
 */
export function setConfigFields(
  text: string,
  format: ConfigFormat,
  fields: Readonly<Record<string, string>>,
): string {
  const before = parseConfig(text, format);
  const want = { ...before, ...fields };
  const candidates =
    format === 'json'
      ? [() => editJsonText(text, fields), () => rewriteJson(text, want)]
      : [
          () => Object.entries(fields).reduce((t, [k, v]) => setYamlField(t, k, v), text),
          () => {
            const doc = parseDocument(text);
            for (const [k, v] of Object.entries(fields)) doc.set(k, v);
            return doc.toString();
          },
        ];
  for (const candidate of candidates) {
    const out = candidate();
    if (out !== null && sameConfig(out, format, want)) return out;
  }
  throw new EditError('editing the file would change more than the fields set; refused');
}

/**
 * JSON edited as text: a key's string value replaced where it stands, a missing key added
 * after the last member with the file's own indentation. Null when the text is not shaped for
 * it; the caller checks the result either way.
 */
function editJsonText(text: string, fields: Readonly<Record<string, string>>): string | null {
  let out = text;
  for (const [key, value] of Object.entries(fields)) {
    const existing = new RegExp(`("${key}"\\s*:\\s*)"(?:[^"\\\\]|\\\\.)*"`);
    if (existing.test(out)) {
      out = out.replace(existing, (_m, head: string) => `${head}${JSON.stringify(value)}`);
      continue;
    }
    const close = out.lastIndexOf('}');
    if (close === -1) return null;
    let last = close - 1;
    while (last >= 0 && /\s/.test(out[last] as string)) last--;
    const indent = /\n([ \t]+)"/.exec(out)?.[1];
    const member = `${JSON.stringify(key)}: ${JSON.stringify(value)}`;
    const sep = out[last] === '{' ? '' : ',';
    const insert = indent === undefined ? `${sep} ${member}` : `${sep}\n${indent}${member}`;
    out = `${out.slice(0, last + 1)}${insert}${out.slice(last + 1)}`;
  }
  return out;
}

/** A JSON file's indentation unit: the indentation of its first member, '' when on one line. */
export function jsonIndent(text: string): string {
  return /^\uFEFF?\s*\{[ \t]*\r?\n([ \t]+)"/.exec(text)?.[1] ?? '';
}

/**
 * JSON written again with the file's own indentation, byte-order mark and final newline (when
 * a text edit does not fit).
 */
export function rewriteJson(text: string, value: Record<string, unknown>): string {
  const unit = jsonIndent(text);
  let out = JSON.stringify(value, null, unit === '' ? undefined : unit);
  if (text.startsWith('\uFEFF')) out = `\uFEFF${out}`;
  if (text.endsWith('\n')) out += '\n';
  return out;
}

function sameConfig(text: string, format: ConfigFormat, want: Record<string, unknown>): boolean {
  try {
    return isDeepStrictEqual(parseConfig(text, format), want);
  } catch {
    return false;
  }
}

function parseConfig(text: string, format: ConfigFormat): Record<string, unknown> {
  let value: unknown;
  try {
    value = parseConfigText(text, format);
  } catch (err) {
    throw new EditError(`does not parse as ${format}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new EditError('is not a mapping');
  return value as Record<string, unknown>;
}

function setYamlField(text: string, key: string, value: string): string {
  const line = `${key}: ${JSON.stringify(value)}`;
  // A top-level `key:` line (block mapping at column 0) is replaced as a whole line.
  const existing = new RegExp(`^${key}[ \\t]*:.*$`, 'm');
  if (existing.test(text)) return text.replace(existing, line);
  const body = text === '' || text.endsWith('\n') ? text : `${text}\n`;
  return `${body}${line}\n`;
}

/**
 * Kubelet's arguments from a flag variable with the given flags set: an occurrence of each
 * (`--name=value` or `--name value`) is replaced in place, a missing one is appended as
 * `--name=value`.
 */
export function withFlags(
  words: readonly string[],
  flags: Readonly<Record<string, string>>,
): string[] {
  const out = [...words];
  for (const [name, value] of Object.entries(flags)) {
    const flag = `--${name}`;
    let found = false;
    for (let i = 0; i < out.length; i++) {
      const w = out[i] as string;
      if (w === flag && i + 1 < out.length) {
        out.splice(i, 2, `${flag}=${value}`);
        found = true;
      } else if (w.startsWith(`${flag}=`)) {
        out[i] = `${flag}=${value}`;
        found = true;
      }
    }
    if (!found) out.push(`${flag}=${value}`);
  }
  return out;
}

/**
 * Splits a flag variable's value into whitespace-separated tokens, quotes kept as written (not
 * `splitWords`, which removes them): joined again with spaces, every token the patcher did not
 * change reads back exactly as before.
 */
export function splitValue(value: string): string[] {
  return value.split(/[ \t\n]+/).filter((w) => w !== '');
}

/**
 * Removes what the patcher added to an env file or drop-in: each {@link MARKER} line and the
 * line after it. Returns the text as it was before the patcher touched it.
 */
export function withoutOurLines(text: string): string {
  const lines = text.split('\n');
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] === MARKER) {
      i++;
      continue;
    }
    out.push(lines[i] as string);
  }
  return out.join('\n');
}

/**
 * An env file with `name` set to `value` by an added assignment (after the marker line) at its
 * end, where it wins over earlier ones. Earlier lines are kept byte for byte, so `revert` and a
 * reader diffing the file see exactly what changed.
 */
export function setEnvAssignment(text: string, name: string, value: string): string {
  const base = withoutOurLines(text);
  const body = base === '' || base.endsWith('\n') ? base : `${base}\n`;
  const out = `${body}${MARKER}\n${name}=${quoteEnvValue(value)}\n`;
  const parsed = parseEnvFile(out);
  const last = parsed.assignments.filter(([n]) => n === name).at(-1);
  if (last?.[1] !== value) throw new EditError(`the new ${name}= line would not read back`);
  return out;
}

/** A double-quoted env-file value (systemd.exec(5): `\"`, `\\`, `` \` ``, `\$` escaped). */
export function quoteEnvValue(value: string): string {
  if (/[\n\r\0]/.test(value)) throw new EditError('a value with a line break cannot be written');
  return `"${value.replace(/["\\`$]/g, (c) => `\\${c}`)}"`;
}

/** A drop-in line `Environment="NAME=value"` with systemd's quoting (systemd.syntax(7)). */
export function environmentLine(name: string, value: string): string {
  if (/[\n\r\0]/.test(value)) throw new EditError('a value with a line break cannot be written');
  // `%` starts a specifier in unit files; `\` and `"` are escaped inside double quotes.
  const escaped = `${name}=${value}`.replace(/[\\"]/g, (c) => `\\${c}`).replace(/%/g, '%%');
  return `Environment="${escaped}"`;
}
