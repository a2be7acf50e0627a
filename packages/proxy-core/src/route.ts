import {
  InvalidReferenceError,
  validateDigest,
  validateRepositoryName,
  validateTag,
} from '@org/registry-domains';
import type { ResolvedUpstream } from './config.js';
import { RegistryError } from './errors.js';

/** What a `/v2/...` request asks for. */
export type V2Request =
  | { readonly kind: 'ping' }
  | { readonly kind: 'catalog' }
  | {
      readonly kind: 'manifest';
      readonly name: string;
      readonly reference: string;
      readonly digest: boolean;
    }
  | { readonly kind: 'blob'; readonly name: string; readonly digest: string }
  | { readonly kind: 'upload'; readonly name: string }
  | { readonly kind: 'tags'; readonly name: string }
  | { readonly kind: 'referrers'; readonly name: string; readonly digest: string };

const UPLOAD = /^\/v2\/(.+)\/blobs\/uploads(?:\/.*)?$/;
const ITEM = /^\/v2\/(.+)\/(manifests|blobs|referrers)\/([^/]+)$/;
const TAGS = /^\/v2\/(.+)\/tags\/list$/;

/**
 * Parses and validates the request path as sent (not URL-normalised: `..` and `%2F` must be
 * refused, never resolved). Names, tags and digests are checked before anything else happens.
 *
 * @throws RegistryError (NAME_INVALID, MANIFEST_INVALID, DIGEST_INVALID, NAME_UNKNOWN).
 */
export function parseV2Path(path: string): V2Request {
  if (path === '/v2/' || path === '/v2') return { kind: 'ping' };
  if (path === '/v2/_catalog') return { kind: 'catalog' };
  let m = UPLOAD.exec(path);
  if (m) return { kind: 'upload', name: checkName(m[1] ?? '') };
  m = ITEM.exec(path);
  if (m) {
    const name = checkName(m[1] ?? '');
    const last = m[3] ?? '';
    if (m[2] === 'manifests') {
      const digest = last.includes(':');
      check(
        () => (digest ? validateDigest(last) : validateTag(last)),
        digest ? 'DIGEST_INVALID' : 'MANIFEST_INVALID',
        'reference',
      );
      return { kind: 'manifest', name, reference: last, digest };
    }
    check(() => validateDigest(last), 'DIGEST_INVALID', 'digest');
    return m[2] === 'blobs'
      ? { kind: 'blob', name, digest: last }
      : { kind: 'referrers', name, digest: last };
  }
  m = TAGS.exec(path);
  if (m) return { kind: 'tags', name: checkName(m[1] ?? '') };
  throw new RegistryError(404, 'NAME_UNKNOWN', 'not a registry API path');
}

function checkName(name: string): string {
  check(() => validateRepositoryName(name), 'NAME_INVALID', 'name');
  return name;
}

function check(
  fn: () => void,
  code: 'NAME_INVALID' | 'MANIFEST_INVALID' | 'DIGEST_INVALID',
  what: string,
): void {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof InvalidReferenceError)) throw err;
    // The reason without our "invalid reference <input>:" prefix: the input is the client's own.
    const reason = err.message.replace(/^invalid reference ".*?": /, '');
    throw new RegistryError(400, code, `invalid ${what}: ${reason}`);
  }
}

/** The upstream a client repository routes to, and the repository name upstream. */
export interface Routed {
  readonly upstream: ResolvedUpstream;
  readonly upstreamName: string;
}

/** What besides the name a route may match on. */
export interface RouteContext {
  /** The request's `Host` header. */
  readonly host?: string | undefined;
  /** containerd's `ns` query parameter. */
  readonly ns?: string | undefined;
}

/**
 * Upstreams that constrain on `Host` or `ns` come first, then the longest prefix wins; the rest
 * of the name, behind `repositoryPrefix` (and `library/` for Docker Hub's single-component
 * names), is the repository upstream.
 *
 * @throws RegistryError NAME_UNKNOWN when no upstream covers the request.
 */
export function route(
  upstreams: readonly ResolvedUpstream[],
  name: string,
  context: RouteContext = {},
): Routed {
  const host = context.host?.toLowerCase();
  const hostname = host?.replace(/:\d+$/, '');
  for (const upstream of upstreams) {
    if (
      upstream.hosts &&
      !upstream.hosts.some((h) => h.toLowerCase() === host || h.toLowerCase() === hostname)
    )
      continue;
    if (upstream.ns && (context.ns === undefined || !upstream.ns.includes(context.ns))) continue;
    let rest: string | undefined;
    if (upstream.prefix === '') rest = name;
    else if (name.startsWith(`${upstream.prefix}/`)) rest = name.slice(upstream.prefix.length + 1);
    else if (name === upstream.prefix && upstream.repositoryPrefix !== '') rest = '';
    if (rest === undefined) continue;
    if (
      upstream.dockerHubLibrary &&
      upstream.repositoryPrefix === '' &&
      rest !== '' &&
      !rest.includes('/')
    ) {
      rest = `library/${rest}`;
    }
    const upstreamName = [upstream.repositoryPrefix, rest].filter((s) => s !== '').join('/');
    if (upstreamName.length > 255)
      throw new RegistryError(
        400,
        'NAME_INVALID',
        'invalid name: longer than 255 characters upstream',
      );
    return { upstream, upstreamName };
  }
  throw new RegistryError(404, 'NAME_UNKNOWN', 'repository name not known to registry');
}
