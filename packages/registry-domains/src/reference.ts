import { InvalidReferenceError } from './errors.js';

/** Docker Hub's canonical domain in references. */
export const DOCKER_HUB_DOMAIN = 'docker.io';
/** Longest repository path (distribution/reference `RepositoryNameTotalLengthMax`). */
export const NAME_MAX_LENGTH = 255;
/** Longest tag: `[\w][\w.-]{0,127}`. */
export const TAG_MAX_LENGTH = 128;
/**
 * Longest reference we read at all. The grammar has no overall cap (an unregistered digest
 * algorithm may be long), but no real reference comes near this; refusing earlier keeps the
 * work per hostile input bounded.
 */
export const REFERENCE_MAX_LENGTH = 2048;

/**
 * Hex length of a digest algorithm with a fixed encoded length (go-digest's registered ones,
 * always lowercase hex) over `s[start, end)`, or 0 for any other algorithm.
 */
function registeredDigestLength(s: string, start: number, end: number): number {
  if (end - start !== 6 || !s.startsWith('sha', start)) return 0;
  if (s.startsWith('256', start + 3)) return 64;
  if (s.startsWith('512', start + 3)) return 128;
  if (s.startsWith('384', start + 3)) return 96;
  return 0;
}
/** Minimum hex length of any other algorithm's digest (the reference grammar: 128 bits). */
const DIGEST_MIN_HEX = 32;

/**
 * A parsed, normalised image reference: `registry/repository[:tag][@digest]`.
 * Instances come only from {@link parseImageReference}, so every one is valid.
 */
export class ImageReference {
  /** Registry domain with port, e.g. `docker.io`, `localhost:5000`, `[::1]:5000`. */
  readonly registry: string;
  /** Repository path, e.g. `library/alpine`, `my-project/images/app`. */
  readonly repository: string;
  /** Tag, when given; `latest` when neither tag nor digest was given. */
  readonly tag?: string;
  /** Digest `algorithm:hex`, when given. */
  readonly digest?: string;

  /** @internal use {@link parseImageReference}. */
  constructor(registry: string, repository: string, tag?: string, digest?: string) {
    this.registry = registry;
    this.repository = repository;
    if (tag !== undefined) this.tag = tag;
    if (digest !== undefined) this.digest = digest;
  }

  /** `registry/repository`, without tag or digest (what kubelet matches `matchImages` on). */
  get name(): string {
    return `${this.registry}/${this.repository}`;
  }

  /** The canonical form: `docker.io/library/alpine:latest`, `gcr.io/p/app@sha256:…`. */
  toString(): string {
    let out = `${this.registry}/${this.repository}`;
    if (this.tag !== undefined) out += `:${this.tag}`;
    if (this.digest !== undefined) out += `@${this.digest}`;
    return out;
  }

  toJSON(): string {
    return this.toString();
  }
}

/**
 * Parses an image reference the way docker and containerd do (distribution/reference grammar
 * plus docker's normalisation): a first component counts as the registry only when it holds
 * `.` or `:`, is `localhost`, or has uppercase letters; otherwise the registry is Docker Hub,
 * where single-component names gain `library/`. `index.docker.io` and `registry-1.docker.io`
 * become `docker.io`. With neither tag nor digest the tag is `latest`.
 *
 * @throws InvalidReferenceError with a `code` saying what is wrong.
 * @example
 * parseImageReference('alpine').toString();              // 'docker.io/library/alpine:latest'
 * parseImageReference('localhost:5000/team/app:v1').registry; // 'localhost:5000'
 */
export function parseImageReference(input: string): ImageReference {
  if (typeof input !== 'string') {
    throw new TypeError(`reference must be a string, got ${typeof input}`);
  }
  const n = input.length;
  if (n === 0) throw new InvalidReferenceError('REFERENCE_EMPTY', input, 'it is empty');
  if (n > REFERENCE_MAX_LENGTH) {
    throw new InvalidReferenceError(
      'REFERENCE_TOO_LONG',
      input,
      `it is ${n} characters; at most ${REFERENCE_MAX_LENGTH} are read`,
    );
  }

  // Positions only; the fields are sliced once at the end.
  const at = input.indexOf('@');
  const nameAndTagEnd = at === -1 ? n : at;
  const lastSlash = nameAndTagEnd === 0 ? -1 : input.lastIndexOf('/', nameAndTagEnd - 1);
  let colon = input.indexOf(':', lastSlash + 1);
  if (colon >= nameAndTagEnd) colon = -1;
  const nameEnd = colon === -1 ? nameAndTagEnd : colon;

  if (at !== -1) checkDigest(input, at + 1, n);
  if (colon !== -1) checkTag(input, colon + 1, nameAndTagEnd);
  if (nameEnd === 0) {
    throw new InvalidReferenceError('REFERENCE_INVALID_FORMAT', input, 'no repository name');
  }
  if (nameEnd === 64 && n === 64 && isHex64(input)) {
    throw new InvalidReferenceError(
      'NAME_IS_DIGEST',
      input,
      'a 64-character hex string is an image ID, not a repository name',
    );
  }

  let registry = DOCKER_HUB_DOMAIN;
  let pathStart = 0;
  const slash = input.indexOf('/');
  if (slash !== -1 && slash < nameEnd && looksLikeDomain(input, slash)) {
    pathStart = slash + 1;
    if (isDockerHubAlias(input, slash)) {
      // registry stays docker.io
    } else if (isDomain(input, 0, slash)) {
      registry = input.slice(0, slash);
    } else {
      throw new InvalidReferenceError(
        'DOMAIN_INVALID',
        input,
        `registry ${JSON.stringify(input.slice(0, slash))} is not a valid host[:port] (DNS labels of letters, digits and "-", an IPv4 address, or [IPv6], then an optional numeric port)`,
      );
    }
  }
  const official =
    registry === DOCKER_HUB_DOMAIN && input.lastIndexOf('/', nameEnd - 1) < pathStart;
  checkRepository(input, pathStart, nameEnd, official ? LIBRARY.length : 0);
  const path = input.slice(pathStart, nameEnd);
  return new ImageReference(
    registry,
    official ? LIBRARY + path : path,
    colon !== -1 ? input.slice(colon + 1, nameAndTagEnd) : at === -1 ? 'latest' : undefined,
    at !== -1 ? input.slice(at + 1) : undefined,
  );
}

const LIBRARY = 'library/';

/** `s[0, end)` is `index.docker.io` or `registry-1.docker.io`. */
function isDockerHubAlias(s: string, end: number): boolean {
  return (
    (end === 15 && s.startsWith('index.docker.io')) ||
    (end === 20 && s.startsWith('registry-1.docker.io'))
  );
}

/** Docker's rule for whether the first path component is a registry domain. */
function looksLikeDomain(name: string, end: number): boolean {
  if (end === 9 && name.startsWith('localhost')) return true;
  for (let i = 0; i < end; i++) {
    const c = name.charCodeAt(i);
    if (c === 0x2e /* . */ || c === 0x3a /* : */ || (c >= 0x41 && c <= 0x5a) /* A-Z */) {
      return true;
    }
  }
  return false;
}

function isLowerAlnum(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39);
}

function isAlnum(c: number): boolean {
  return isLowerAlnum(c) || (c >= 0x41 && c <= 0x5a);
}

function isHexLower(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66);
}

function isHex64(s: string): boolean {
  if (s.length !== 64) return false;
  for (let i = 0; i < 64; i++) if (!isHexLower(s.charCodeAt(i))) return false;
  return true;
}

/**
 * `host[:port]` per the reference grammar: DNS-style components
 * (`[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?` joined by `.`) or `[IPv6]`, then `:digits`.
 */
export function isDomain(s: string, start = 0, end = s.length): boolean {
  const n = end;
  let i = start;
  if (n <= start) return false;
  if (s.charCodeAt(start) === 0x5b /* [ */) {
    const close = s.indexOf(']', start);
    if (close < start + 2 || close >= n) return false;
    for (let j = start + 1; j < close; j++) {
      const c = s.charCodeAt(j);
      const hex = (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);
      if (!hex && c !== 0x3a) return false;
    }
    i = close + 1;
  } else {
    // One or more components separated by single dots.
    for (;;) {
      const start = i;
      while (i < n) {
        const c = s.charCodeAt(i);
        if (isAlnum(c) || c === 0x2d /* - */) i++;
        else break;
      }
      if (i === start) return false;
      if (s.charCodeAt(start) === 0x2d || s.charCodeAt(i - 1) === 0x2d) return false;
      if (i < n && s.charCodeAt(i) === 0x2e) {
        i++;
        continue;
      }
      break;
    }
  }
  if (i === n) return true;
  if (s.charCodeAt(i) !== 0x3a /* : */ || i + 1 === n) return false;
  for (let j = i + 1; j < n; j++) {
    const c = s.charCodeAt(j);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

function checkTag(input: string, start: number, end: number): void {
  const n = end - start;
  if (n === 0) throw new InvalidReferenceError('TAG_INVALID', input, 'the tag after ":" is empty');
  if (n > TAG_MAX_LENGTH) {
    throw new InvalidReferenceError(
      'TAG_INVALID',
      input,
      `the tag is ${n} characters; at most ${TAG_MAX_LENGTH} are allowed`,
    );
  }
  for (let i = start; i < end; i++) {
    const c = input.charCodeAt(i);
    const word = isAlnum(c) || c === 0x5f; /* _ */
    if (word || (i > start && (c === 0x2e || c === 0x2d))) continue;
    throw new InvalidReferenceError(
      'TAG_INVALID',
      input,
      'a tag is letters, digits and "_" with "." and "-" after the first character',
    );
  }
}

function digestError(input: string, reason: string): InvalidReferenceError {
  return new InvalidReferenceError('DIGEST_INVALID', input, reason);
}

/** `algorithm:hex` over `input[start, end)`. */
function checkDigest(input: string, start: number, end: number): void {
  const sep = input.indexOf(':', start);
  if (sep <= start) {
    throw digestError(input, 'a digest is "algorithm:hex", e.g. "sha256:" and 64 hex characters');
  }
  const hexLength = end - sep - 1;
  const fixed = registeredDigestLength(input, start, sep);
  if (fixed !== 0) {
    if (hexLength !== fixed) {
      throw digestError(
        input,
        `a ${input.slice(start, sep)} digest has ${fixed} hex characters, this one has ${hexLength}`,
      );
    }
    for (let i = sep + 1; i < end; i++) {
      if (!isHexLower(input.charCodeAt(i))) {
        throw digestError(input, `a ${input.slice(start, sep)} digest is lowercase hex (0-9, a-f)`);
      }
    }
    return;
  }
  if (!isDigestAlgorithm(input, start, sep)) {
    throw digestError(
      input,
      `digest algorithm ${JSON.stringify(input.slice(start, sep))} is not valid`,
    );
  }
  if (hexLength < DIGEST_MIN_HEX) {
    throw digestError(
      input,
      `a digest has at least ${DIGEST_MIN_HEX} hex characters, this one has ${hexLength}`,
    );
  }
  for (let i = sep + 1; i < end; i++) {
    const c = input.charCodeAt(i);
    if (!isHexLower(c) && !(c >= 0x41 && c <= 0x46))
      throw digestError(input, 'the digest value is not hex');
  }
}

/** `[A-Za-z][A-Za-z0-9]*` components joined by one of `+._-`, over `s[start, end)`. */
function isDigestAlgorithm(s: string, start: number, end: number): boolean {
  let componentStart = true;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    const letter = (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a);
    if (componentStart) {
      if (!letter) return false;
      componentStart = false;
    } else if (c === 0x2b || c === 0x2e || c === 0x5f || c === 0x2d) {
      componentStart = true;
    } else if (!letter && !(c >= 0x30 && c <= 0x39)) {
      return false;
    }
  }
  return !componentStart;
}

/**
 * Repository path over `s[start, end)`: components `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` joined
 * by `/`, at most {@link NAME_MAX_LENGTH} characters counting `extra` (the `library/` that
 * normalisation adds), as distribution/reference checks the path alone since v0.6.0.
 */
function checkRepository(input: string, start: number, end: number, extra: number): void {
  const length = end - start + extra;
  if (length > NAME_MAX_LENGTH) {
    throw new InvalidReferenceError(
      'NAME_TOO_LONG',
      input,
      `the repository name is ${length} characters; at most ${NAME_MAX_LENGTH} are allowed`,
    );
  }
  if (!isRepositoryPath(input, start, end)) explainRepository(input, start, end);
}

/**
 * The whole path in one pass: `[a-z0-9]+` runs, where each separator (`.`, `_`, `__`, `-+`
 * inside a component, `/` between components) sits between two runs.
 */
function isRepositoryPath(s: string, start: number, end: number): boolean {
  let i = start;
  for (;;) {
    const run = i;
    while (i < end && isLowerAlnum(s.charCodeAt(i))) i++;
    if (i === run) return false;
    if (i === end) return true;
    const c = s.charCodeAt(i);
    if (c === 0x2f /* / */ || c === 0x2e /* . */) i++;
    else if (c === 0x5f /* _ */) i += i + 1 < end && s.charCodeAt(i + 1) === 0x5f ? 2 : 1;
    else if (c === 0x2d /* - */) while (i < end && s.charCodeAt(i) === 0x2d) i++;
    else return false;
  }
}

/** Throws the error that says which component of an invalid path is wrong, and how. */
function explainRepository(input: string, start: number, end: number): never {
  let from = start;
  while (from <= end) {
    let to = input.indexOf('/', from);
    if (to === -1 || to > end) to = end;
    if (to === from) {
      throw new InvalidReferenceError(
        'NAME_EMPTY_COMPONENT',
        input,
        'the repository name has an empty path component (a leading, trailing or doubled "/")',
      );
    }
    if (!isRepositoryPath(input, from, to)) {
      const component = input.slice(from, to);
      const lower = component.toLowerCase();
      if (lower !== component && isRepositoryPath(lower, 0, lower.length)) {
        throw new InvalidReferenceError(
          'NAME_CONTAINS_UPPERCASE',
          input,
          `repository names must be lowercase (${JSON.stringify(component)})`,
        );
      }
      throw new InvalidReferenceError(
        'NAME_INVALID_COMPONENT',
        input,
        `path component ${JSON.stringify(component)} is not lowercase letters and digits separated by ".", "_", "__" or "-"`,
      );
    }
    from = to + 1;
  }
  throw new Error('unreachable: an invalid path has an invalid component');
}

/**
 * Checks a repository name on its own (the `<name>` of `/v2/<name>/...`): lowercase path
 * components separated by `/`, at most {@link NAME_MAX_LENGTH} characters.
 *
 * @throws InvalidReferenceError (`NAME_*`, `REFERENCE_EMPTY`).
 */
export function validateRepositoryName(name: string): void {
  if (typeof name !== 'string')
    throw new TypeError(`repository name must be a string, got ${typeof name}`);
  if (name.length === 0)
    throw new InvalidReferenceError('REFERENCE_EMPTY', name, 'the repository name is empty');
  checkRepository(name, 0, name.length, 0);
}

/**
 * Checks a tag on its own: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
 *
 * @throws InvalidReferenceError (`TAG_INVALID`).
 */
export function validateTag(tag: string): void {
  if (typeof tag !== 'string') throw new TypeError(`tag must be a string, got ${typeof tag}`);
  checkTag(tag, 0, tag.length);
}

/**
 * Checks a digest on its own: `sha256:` + 64, `sha384:` + 96, `sha512:` + 128 lowercase hex,
 * other algorithms per the grammar.
 *
 * @throws InvalidReferenceError (`DIGEST_INVALID`).
 */
export function validateDigest(digest: string): void {
  if (typeof digest !== 'string')
    throw new TypeError(`digest must be a string, got ${typeof digest}`);
  checkDigest(digest, 0, digest.length);
}
