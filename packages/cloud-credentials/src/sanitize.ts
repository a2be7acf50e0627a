/**
 * A stand-in for an SDK error that is safe to keep as `cause`: name, message (bounded) and
 * status or code only. SDK errors can carry the request they failed on, headers and all
 * (gaxios keeps `config.headers.Authorization`), and a logged `cause` must not leak it.
 */
export function safeCause(err: unknown): Error {
  if (!(err instanceof Error)) return new Error(String(err).slice(0, 300));
  const copy = new Error(err.message.slice(0, 300));
  copy.name = err.name;
  const e = err as {
    code?: unknown;
    status?: unknown;
    $metadata?: { httpStatusCode?: unknown };
    statusCode?: unknown;
  };
  const status =
    e.status ??
    e.$metadata?.httpStatusCode ??
    e.statusCode ??
    (e as { response?: { status?: unknown } }).response?.status;
  if (typeof e.code === 'string' || typeof e.code === 'number')
    Object.assign(copy, { code: e.code });
  if (typeof status === 'number') Object.assign(copy, { status });
  return copy;
}

/** The HTTP status an SDK error carries, if any. */
export function statusOf(err: unknown): number | undefined {
  const s = safeCause(err) as Error & { status?: number };
  return s.status;
}
