import { isEnvName } from './systemd-unit.js';

/** What an environment file defines. */
export interface EnvFileContents {
  /** Assignments in file order; a later one for the same name wins. */
  readonly assignments: ReadonlyArray<readonly [string, string]>;
  /** 1-based numbers of lines skipped as invalid (systemd skips them with a warning). */
  readonly invalidLines: readonly number[];
}

/**
 * Parses a file in the format systemd's EnvironmentFile= reads (also os-release(5) and
 * /etc/default/* files): `NAME=value` lines, `#` and `;` comment lines, a value double-quoted
 * (backslash escapes `\"`, `\\`, `` \` ``, `\$`, and a backslash-newline continuation),
 * single-quoted (literal) or bare (trailing whitespace trimmed, backslash escapes the next
 * character, backslash-newline continues). Lines that are not an assignment to a valid name
 * are skipped and reported.
 */
export function parseEnvFile(text: string): EnvFileContents {
  const assignments: Array<[string, string]> = [];
  const invalidLines: number[] = [];
  let i = 0;
  let line = 1;
  const n = text.length;
  const skipToEndOfLine = () => {
    while (i < n && text[i] !== '\n') i++;
  };
  while (i < n) {
    const c = text[i] as string;
    if (c === '\n') {
      line++;
      i++;
      continue;
    }
    if (c === ' ' || c === '\t' || c === '\r') {
      i++;
      continue;
    }
    if (c === '#' || c === ';') {
      skipToEndOfLine();
      continue;
    }
    const startLine = line;
    const eq = text.indexOf('=', i);
    const eol = text.indexOf('\n', i);
    if (eq === -1 || (eol !== -1 && eol < eq)) {
      invalidLines.push(startLine);
      skipToEndOfLine();
      continue;
    }
    const name = text.slice(i, eq).trim();
    i = eq + 1;
    while (i < n && (text[i] === ' ' || text[i] === '\t')) i++;
    let value = '';
    // Length of `value` that came from quotes, which trailing-whitespace trimming must keep.
    let kept = 0;
    let valid = true;
    while (i < n && text[i] !== '\n') {
      const v = text[i] as string;
      if (v === '"' || v === "'") {
        const close = v;
        i++;
        let closed = false;
        while (i < n) {
          const q = text[i] as string;
          if (q === close) {
            closed = true;
            i++;
            break;
          }
          if (q === '\n') line++;
          if (close === '"' && q === '\\' && i + 1 < n) {
            const e = text[i + 1] as string;
            if (e === '\n') {
              line++;
              i += 2;
              continue;
            }
            value += '"\\`$'.includes(e) ? e : `\\${e}`;
            i += 2;
            continue;
          }
          value += q;
          i++;
        }
        if (!closed) valid = false;
        kept = value.length;
        continue;
      }
      if (v === '\\' && i + 1 < n) {
        const e = text[i + 1] as string;
        if (e === '\n') line++;
        else value += e;
        i += 2;
        continue;
      }
      value += v;
      i++;
    }
    const trimmed = value.slice(0, kept) + value.slice(kept).replace(/[ \t\r]+$/, '');
    if (valid && isEnvName(name)) assignments.push([name, trimmed]);
    else invalidLines.push(startLine);
  }
  return { assignments, invalidLines };
}
