import { request } from 'node:http';

/** kubelet's health endpoint with its defaults (`healthzBindAddress`, `healthzPort`). */
export const KUBELET_HEALTHZ = 'http://127.0.0.1:10248/healthz';

/**
 * Checks a `--kubelet-healthz` URL: plain http (kubelet's healthz is never TLS), no
 * credentials in it. Returns the parsed URL.
 */
export function healthzUrl(input: string): URL {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw new TypeError(`--kubelet-healthz ${JSON.stringify(input)} is not a URL`);
  }
  if (url.protocol !== 'http:' || url.username !== '' || url.password !== '')
    throw new TypeError(
      `--kubelet-healthz must be an http:// URL without credentials, like ${KUBELET_HEALTHZ}`,
    );
  return url;
}

/** One GET of the healthz URL: the status line and up to 64 bytes of body, or the error. */
function probe(url: URL, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const req = request(url, { method: 'GET', timeout: timeoutMs, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (body.length < 64) body += chunk;
      });
      res.on('end', () => {
        const text = body.trim().slice(0, 64);
        resolve(
          res.statusCode === 200 && text === 'ok'
            ? 'ok'
            : `${res.statusCode} ${JSON.stringify(text)}`,
        );
      });
      res.on('error', (err) => resolve(err.message));
    });
    req.on('timeout', () => req.destroy(new Error('no answer')));
    req.on('error', (err) => resolve((err as NodeJS.ErrnoException).code ?? err.message));
    req.end();
  });
}

/**
 * Waits until kubelet's healthz answers 200 `ok` `settle` times in a row (so a kubelet that
 * starts and then crashes on its config is not taken for healthy), or throws after `timeoutMs`
 * with the last answer.
 */
export async function waitHealthy(
  url: URL,
  options: { timeoutMs: number; intervalMs?: number; settle?: number },
): Promise<void> {
  const { timeoutMs, intervalMs = 1000, settle = 3 } = options;
  const deadline = Date.now() + timeoutMs;
  let ok = 0;
  let last = 'no answer yet';
  for (;;) {
    last = await probe(url, Math.max(100, Math.min(5000, deadline - Date.now())));
    ok = last === 'ok' ? ok + 1 : 0;
    if (ok >= settle) return;
    if (Date.now() + intervalMs > deadline)
      throw new Error(
        `kubelet's healthz ${url.href} did not answer ok within ${Math.round(timeoutMs / 1000)} s (last: ${last})`,
      );
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
