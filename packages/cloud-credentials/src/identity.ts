import { createHash } from 'node:crypto';

/**
 * A short stable name for an identity, from the options that define it: secrets among them are
 * hashed along with everything else, so the result can be a cache key without exposing them.
 * Plain data counts by value; anything else (an SDK credential provider, a GoogleAuth, a
 * TokenCredential, a function) counts by object, so two of them never share an identity.
 */
export function identityOf(kind: string, options: unknown): string {
  const hash = createHash('sha256').update(canonicalJson(options)).digest('hex').slice(0, 24);
  return `${kind}:${hash}`;
}

const objectIds = new WeakMap<object, number>();
let lastObjectId = 0;

function objectId(value: object): string {
  let id = objectIds.get(value);
  if (id === undefined) {
    id = ++lastObjectId;
    objectIds.set(value, id);
  }
  return `"#object-${id}"`;
}

/** JSON with object keys sorted and undefined left out; non-plain objects by identity. */
function canonicalJson(value: unknown): string {
  if (value === undefined || value === null) return 'null';
  if (typeof value === 'function') return objectId(value);
  if (typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value instanceof Date) return JSON.stringify(value.toISOString());
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return objectId(value);
  const entries = Object.entries(value)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`);
  return `{${entries.join(',')}}`;
}
