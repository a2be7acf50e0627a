import { InvalidReferenceError } from './errors.js';
import { parseImageReference } from './reference.js';

/** One compiled kubelet `matchImages` pattern. */
export interface ImagePattern {
  /** The pattern as written. */
  readonly pattern: string;
  /** Whether `image` (a reference; tag and digest are ignored) falls under this pattern. */
  matches(image: string): boolean;
}

/** A glob token that consumes exactly one character, or `*`. */
type Token =
  | { readonly kind: 'char'; readonly code: number }
  | { readonly kind: 'star' }
  | { readonly kind: 'class'; readonly negated: boolean; readonly ranges: readonly number[] };

interface Authority {
  readonly labels: readonly string[];
  readonly port: string;
}

/**
 * Compiles a kubelet `matchImages` pattern (kubelet `URLsMatchStr`, see the README):
 * the host is split on `.` and each label is a Go `filepath.Match` glob (`*`, `[a-z]`, `\`
 * escapes) that never crosses a dot, the label counts must be equal, the ports must be equal
 * strings, and the pattern's path must be a raw string prefix of the image path. Matching is
 * case-sensitive.
 *
 * Patterns kubelet would accept but could never match are refused here with a clear error:
 * a scheme (`https://`), `?` or `#` (kubelet parses them as a URL query or fragment), a glob in
 * the port, user info, and malformed globs.
 *
 * @throws InvalidReferenceError with code `PATTERN_INVALID`.
 */
export function compileImagePattern(pattern: string): ImagePattern {
  if (typeof pattern !== 'string') {
    throw new TypeError(`image pattern must be a string, got ${typeof pattern}`);
  }
  const fail = (reason: string): never => {
    throw new InvalidReferenceError('PATTERN_INVALID', pattern, reason);
  };
  if (pattern.length === 0) fail('the pattern is empty');
  if (pattern.length > 1024) fail('the pattern is longer than 1024 characters');
  if (pattern.includes('://')) fail('matchImages patterns take no scheme: drop "https://"');
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f) fail('the pattern contains whitespace or a control character');
    if (c === 0x3f || c === 0x23) {
      fail(
        '"?" and "#" cannot be used: kubelet reads them as the start of a URL query or fragment',
      );
    }
    if (c === 0x25) fail('"%" escapes are not supported in patterns');
  }
  const slash = pattern.indexOf('/');
  const authority = slash === -1 ? pattern : pattern.slice(0, slash);
  const path = slash === -1 ? '' : pattern.slice(slash);
  if (authority.includes('@')) fail('a pattern has no user info ("user@")');
  const { labels, port } = splitAuthority(authority, fail);
  if (labels.length === 1 && labels[0] === '') fail('the pattern has no host');
  if (port !== '' && !/^\d+$/.test(port)) fail('globs are not allowed in the port');
  const compiled = labels.map((label) => compileGlob(label, fail));

  return {
    pattern,
    matches(image: string): boolean {
      let ref: ReturnType<typeof parseImageReference>;
      try {
        ref = parseImageReference(image);
      } catch (err) {
        if (err instanceof InvalidReferenceError) return false;
        throw err;
      }
      const target = splitAuthority(ref.registry, () => {
        throw new Error('unreachable: a parsed registry is a valid host[:port]');
      });
      if (target.port !== port || target.labels.length !== compiled.length) return false;
      if (!`/${ref.repository}`.startsWith(path)) return false;
      for (let i = 0; i < compiled.length; i++) {
        const tokens = compiled[i];
        const label = target.labels[i];
        if (tokens === undefined || label === undefined || !globMatch(tokens, label)) return false;
      }
      return true;
    },
  };
}

/**
 * Whether `image` falls under the kubelet `matchImages` `pattern` (see
 * {@link compileImagePattern} for the rules). The image is normalised first, so `nginx` is
 * `docker.io/library/nginx`; an image that is not a valid reference matches nothing.
 *
 * @throws InvalidReferenceError (`PATTERN_INVALID`) for a pattern that can never match.
 * @example
 * matchImage('*.dkr.ecr.*.amazonaws.com', '123456789012.dkr.ecr.us-east-1.amazonaws.com/app'); // true
 * matchImage('*.gcr.io', 'gcr.io/project/app');          // false: label counts differ
 * matchImage('registry.io', 'registry.io:5000/app');     // false: ports differ
 */
export function matchImage(pattern: string, image: string): boolean {
  return compileImagePattern(pattern).matches(image);
}

/** Go `net.SplitHostPort` semantics (no port is `''`), then the host split on dots. */
function splitAuthority(authority: string, fail: (reason: string) => never): Authority {
  let host = authority;
  let port = '';
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close === -1) fail('unclosed "[" in an IPv6 host');
    host = authority.slice(1, close);
    const rest = authority.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) fail('unexpected characters after an IPv6 host');
      port = rest.slice(1);
      if (port === '') fail('the port after ":" is empty');
    }
    // An IPv6 literal is compared as one literal label.
    return { labels: [escapeGlob(host)], port };
  }
  const colon = authority.lastIndexOf(':');
  if (colon !== -1) {
    host = authority.slice(0, colon);
    port = authority.slice(colon + 1);
    if (port === '') fail('the port after ":" is empty');
    if (host.includes(':')) fail('too many ":" in the host');
  }
  return { labels: host.split('.'), port };
}

function escapeGlob(s: string): string {
  return s.replace(/[\\*?[]/g, '\\$&');
}

/** Compiles one label glob with Go `path/filepath.Match` syntax, refusing malformed ones. */
function compileGlob(glob: string, fail: (reason: string) => never): readonly Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const bad = (why: string): never => fail(`malformed glob ${JSON.stringify(glob)}: ${why}`);
  const escaped = (): number => {
    // one character of a class, possibly "\"-escaped
    let c = glob.charCodeAt(i);
    if (c === 0x5c /* \ */) {
      i++;
      if (i >= glob.length) bad('"\\" at the end');
      c = glob.charCodeAt(i);
    } else if (c === 0x2d /* - */ || c === 0x5d /* ] */) {
      bad('"-" and "]" must be escaped inside [...]');
    }
    i++;
    return c;
  };
  while (i < glob.length) {
    const c = glob.charCodeAt(i);
    if (c === 0x2a /* * */) {
      if (tokens.at(-1)?.kind !== 'star') tokens.push({ kind: 'star' });
      i++;
    } else if (c === 0x5c /* \ */) {
      if (i + 1 >= glob.length) bad('"\\" at the end');
      tokens.push({ kind: 'char', code: glob.charCodeAt(i + 1) });
      i += 2;
    } else if (c === 0x5b /* [ */) {
      i++;
      let negated = false;
      if (glob.charCodeAt(i) === 0x5e /* ^ */) {
        negated = true;
        i++;
      }
      const ranges: number[] = [];
      for (;;) {
        if (i >= glob.length) bad('unclosed "["');
        if (glob.charCodeAt(i) === 0x5d /* ] */ && ranges.length > 0) {
          i++;
          break;
        }
        if (glob.charCodeAt(i) === 0x5d) bad('empty "[]"');
        const lo = escaped();
        let hi = lo;
        if (glob.charCodeAt(i) === 0x2d /* - */) {
          i++;
          if (i >= glob.length) bad('unclosed "["');
          hi = escaped();
          if (hi < lo) bad('a range whose end is before its start');
        }
        ranges.push(lo, hi);
      }
      tokens.push({ kind: 'class', negated, ranges });
    } else if (c === 0x5d /* ] */) {
      bad('"]" without "["');
    } else {
      tokens.push({ kind: 'char', code: c });
      i++;
    }
  }
  return tokens;
}

function tokenMatches(t: Token, c: number): boolean {
  switch (t.kind) {
    case 'char':
      return t.code === c;
    case 'class': {
      let inside = false;
      for (let r = 0; r < t.ranges.length; r += 2) {
        if (c >= (t.ranges[r] ?? 0) && c <= (t.ranges[r + 1] ?? -1)) {
          inside = true;
          break;
        }
      }
      return inside !== t.negated;
    }
    case 'star':
      return false;
  }
}

/** Wildcard matching with one backtrack point: every non-star token takes one character. */
function globMatch(tokens: readonly Token[], s: string): boolean {
  let ti = 0;
  let si = 0;
  let starTi = -1;
  let starSi = 0;
  while (si < s.length) {
    const t = tokens[ti];
    if (t?.kind === 'star') {
      starTi = ti++;
      starSi = si;
    } else if (t !== undefined && tokenMatches(t, s.charCodeAt(si))) {
      ti++;
      si++;
    } else if (starTi !== -1) {
      ti = starTi + 1;
      si = ++starSi;
    } else {
      return false;
    }
  }
  while (tokens[ti]?.kind === 'star') ti++;
  return ti === tokens.length;
}
