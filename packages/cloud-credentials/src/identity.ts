import { createHash } from 'node:crypto';

/**
 * A short stable name for an identity, from the options that define it: secrets among them are
 * hashed along with everything else, so the result can be a cache key without exposing them.
 */
export function identityOf(kind: string, options: unknown): string {
  const hash = createHash('sha256').update(canonicalJson(options)).digest('hex').slice(0, 24);
  return `${kind}:${hash}`;
}

/** JSON with object keys sorted, functions and undefined left out (they are not identity). */
function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    return typeof value === 'function' || value === undefined ? 'null' : JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value instanceof Date) return JSON.stringify(value.toISOString());
  const entries = Object.entries(value)
    .filter(([, v]) => v !== undefined && typeof v !== 'function')
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`);
  return `{${entries.join(',')}}`;
}
