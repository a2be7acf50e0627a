/** One authentication challenge from a `WWW-Authenticate` header (RFC 9110 §11.6.1). */
export interface Challenge {
  /** Lowercase scheme: `bearer`, `basic`, ... */
  readonly scheme: string;
  /** Auth parameters, names lowercased (`realm`, `service`, `scope`, `error`). */
  readonly params: Readonly<Record<string, string>>;
}

/** Longest header we parse; registries send a few hundred bytes. */
const MAX_HEADER = 8192;
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+/;

/**
 * Parses `WWW-Authenticate` (RFC 9110 §11: `scheme param=value, param="quoted \"value\""`,
 * several challenges separated by commas). Malformed parts end the parse; what was read is kept.
 * Over-long headers give nothing.
 *
 * @example
 * parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io"')
 * // [{ scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io' } }]
 */
export function parseChallenges(header: string | null | undefined): Challenge[] {
  if (!header || header.length > MAX_HEADER) return [];
  const out: Array<{ scheme: string; params: Record<string, string> }> = [];
  let rest = header;
  const skip = (re: RegExp) => {
    rest = rest.replace(re, '');
  };
  for (;;) {
    skip(/^[\s,]+/);
    const scheme = TOKEN.exec(rest)?.[0];
    if (!scheme) break;
    rest = rest.slice(scheme.length);
    const current = {
      scheme: scheme.toLowerCase(),
      params: Object.create(null) as Record<string, string>,
    };
    out.push(current);
    // params until the next "<token> <token>=" (a new challenge) or the end
    for (;;) {
      skip(/^[\s]*,?[\s]*/);
      const name = TOKEN.exec(rest)?.[0];
      if (!name) break;
      const after = rest.slice(name.length);
      const eq = /^\s*=\s*/.exec(after);
      if (!eq) break; // a new scheme starts here
      let value: string;
      let tail = after.slice(eq[0].length);
      if (tail.startsWith('"')) {
        let i = 1;
        value = '';
        while (i < tail.length && tail[i] !== '"') {
          if (tail[i] === '\\' && i + 1 < tail.length) i++;
          value += tail[i];
          i++;
        }
        if (i >= tail.length) return out; // unterminated quote: stop
        tail = tail.slice(i + 1);
      } else {
        const token = TOKEN.exec(tail)?.[0] ?? '';
        value = token;
        tail = tail.slice(token.length);
      }
      current.params[name.toLowerCase()] = value;
      rest = tail;
    }
  }
  return out;
}
