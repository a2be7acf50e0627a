/**
 * The parts of systemd's unit-file syntax kubelet units use: sections and assignments with
 * backslash continuations (systemd.syntax(7)), command lines with quoting and C escapes, and
 * environment variable substitution in ExecStart= (systemd.service(5), "Command lines").
 */

/** One `Key=Value` line of a unit file. */
export interface UnitAssignment {
  readonly section: string;
  readonly key: string;
  readonly value: string;
  /** 1-based line where the assignment starts. */
  readonly line: number;
}

/**
 * Parses a unit file or drop-in into its assignments, in file order. Lines ending in a
 * backslash continue on the next line (the backslash and newline become a space); comment lines
 * (`#`, `;`) are skipped, also inside a continuation; lines that are neither a section header
 * nor an assignment are skipped, as systemd skips them with a warning.
 */
export function parseUnitFile(text: string): UnitAssignment[] {
  const lines = text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  const out: UnitAssignment[] = [];
  let section = '';
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let line = (lines[i] as string).trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    while (line.endsWith('\\')) {
      line = `${line.slice(0, -1)} `;
      // Comment lines inside a continuation are dropped; the continuation goes on after them.
      let next: string | undefined;
      do {
        i++;
        next = i < lines.length ? (lines[i] as string).trim() : undefined;
      } while (next !== undefined && (next.startsWith('#') || next.startsWith(';')));
      if (next === undefined) break;
      line += next;
    }
    if (line.startsWith('[') && line.endsWith(']')) {
      section = line.slice(1, -1);
      continue;
    }
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    out.push({
      section,
      key: line.slice(0, eq).trim(),
      value: line.slice(eq + 1).trim(),
      line: start + 1,
    });
  }
  return out;
}

/** Raised for a command line or assignment systemd itself would reject. */
export class UnitSyntaxError extends Error {
  override readonly name = 'UnitSyntaxError';
}

const SIMPLE_ESCAPES: Record<string, string> = {
  a: '\x07',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  s: ' ',
  t: '\t',
  v: '\v',
  '\\': '\\',
  '"': '"',
  "'": "'",
};

/**
 * Splits a value into words at whitespace, removing double and single quotes (which may start
 * mid-word: `--labels="${X}"` is one word). With `cEscapes` a backslash starts a C escape
 * (`\n`, `\s`, `\x41`, `\101`); without, it takes the next character literally.
 * Throws `UnitSyntaxError` on an unterminated quote or a trailing backslash.
 */
export function splitWords(value: string, options: { cEscapes: boolean }): string[] {
  const words: string[] = [];
  let word: string | null = null;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < value.length; i++) {
    const c = value[i] as string;
    if (quote === null && (c === ' ' || c === '\t' || c === '\n' || c === '\r')) {
      if (word !== null) words.push(word);
      word = null;
      continue;
    }
    word ??= '';
    if (c === '\\') {
      i++;
      if (i >= value.length) throw new UnitSyntaxError('a trailing backslash');
      const e = value[i] as string;
      if (!options.cEscapes) {
        word += e;
      } else if (e in SIMPLE_ESCAPES) {
        word += SIMPLE_ESCAPES[e];
      } else if (e === 'x' && /^[0-9a-fA-F]{2}$/.test(value.slice(i + 1, i + 3))) {
        word += String.fromCharCode(Number.parseInt(value.slice(i + 1, i + 3), 16));
        i += 2;
      } else if (/^[0-7]{3}$/.test(value.slice(i, i + 3))) {
        word += String.fromCharCode(Number.parseInt(value.slice(i, i + 3), 8));
        i += 2;
      } else {
        throw new UnitSyntaxError(`an unknown escape \\${e}`);
      }
      continue;
    }
    if (quote !== null) {
      if (c === quote) quote = null;
      else word += c;
      continue;
    }
    if (c === '"' || c === "'") {
      quote = c;
      continue;
    }
    word += c;
  }
  if (quote !== null) throw new UnitSyntaxError(`an unterminated ${quote} quote`);
  if (word !== null) words.push(word);
  return words;
}

/** An ExecStart= value split into its parts. */
export interface CommandLine {
  /** The executable as written (absolute path, or a bare name systemd looks up). */
  readonly executable: string;
  /** Words after the executable (argv[1..]), unexpanded. */
  readonly args: readonly string[];
  /** Every word as written, prefixes removed, quotes removed, variables not expanded. */
  readonly words: readonly string[];
  /** The `:` prefix: systemd does not substitute variables in this command line. */
  readonly noSubstitution: boolean;
}

/**
 * Parses an ExecStart= value: the special prefixes (`@`, `-`, `:`, `+`, `!`, `!!`), then the
 * words. With `@`, the second word is argv[0] and not an argument.
 */
export function parseCommandLine(value: string): CommandLine {
  const prefix = /^[@\-:+!]*/.exec(value)?.[0] ?? '';
  const words = splitWords(value.slice(prefix.length), { cEscapes: true });
  if (words.includes(';'))
    throw new UnitSyntaxError('several commands joined with ";" (not a service ExecStart=)');
  const [executable, ...rest] = words;
  if (executable === undefined || executable === '') throw new UnitSyntaxError('no executable');
  const argv0 = prefix.includes('@');
  if (argv0 && rest.length === 0) throw new UnitSyntaxError('"@" without an argv[0] word');
  return {
    executable,
    args: argv0 ? rest.slice(1) : rest,
    words,
    noSubstitution: prefix.includes(':'),
  };
}

const WHOLE_WORD_VARIABLE = /^\$([A-Za-z_][A-Za-z0-9_]*)$/;
const BRACED_VARIABLE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\$/g;

/**
 * Expands environment variables in command-line words as systemd does: a word that is exactly
 * `$NAME` becomes the value split at whitespace (zero words when unset or empty); `${NAME}`
 * anywhere in a word is replaced by the exact value (the word stays one word); `$$` is a
 * literal `$`; any other `$` is left as it is.
 */
export function expandWords(words: readonly string[], env: ReadonlyMap<string, string>): string[] {
  const out: string[] = [];
  for (const word of words) {
    const whole = WHOLE_WORD_VARIABLE.exec(word);
    if (whole) {
      const value = env.get(whole[1] as string) ?? '';
      out.push(...splitWords(value, { cEscapes: false }));
      continue;
    }
    out.push(
      word.replace(BRACED_VARIABLE, (_match, name: string | undefined) =>
        name === undefined ? '$' : (env.get(name) ?? ''),
      ),
    );
  }
  return out;
}

/** Names of the variables the words reference, in order of first use. */
export function referencedVariables(words: readonly string[]): string[] {
  const names: string[] = [];
  const add = (name: string) => {
    if (!names.includes(name)) names.push(name);
  };
  for (const word of words) {
    const whole = WHOLE_WORD_VARIABLE.exec(word);
    if (whole) {
      add(whole[1] as string);
      continue;
    }
    for (const m of word.matchAll(BRACED_VARIABLE)) if (m[1] !== undefined) add(m[1]);
  }
  return names;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** True for a name systemd accepts as an environment variable name. */
export function isEnvName(name: string): boolean {
  return ENV_NAME.test(name);
}

/**
 * Parses an Environment= value (`"A=b c" D=e`) into assignments. Words that are not
 * `NAME=value` are returned in `invalid` (systemd ignores them with a warning).
 */
export function parseEnvironmentAssignments(value: string): {
  assignments: Array<[string, string]>;
  invalid: string[];
} {
  const assignments: Array<[string, string]> = [];
  const invalid: string[] = [];
  for (const word of splitWords(value, { cEscapes: true })) {
    const eq = word.indexOf('=');
    const name = eq > 0 ? word.slice(0, eq) : '';
    if (isEnvName(name)) assignments.push([name, word.slice(eq + 1)]);
    else invalid.push(word);
  }
  return { assignments, invalid };
}
