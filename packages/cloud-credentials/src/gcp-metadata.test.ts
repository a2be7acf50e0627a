import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGceMetadata } from '@org/tools/stand-ins';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CredentialCache } from './cache.js';
import { CredentialsError } from './errors.js';
import { createGcpSource } from './gcp.js';

// ADC must find nothing but the metadata server: no key file, no gcloud config.
beforeAll(() => {
  delete process.env.GOOGLE_APPLICATION_CREDENTIALS;
  process.env.CLOUDSDK_CONFIG = mkdtempSync(join(tmpdir(), 'no-gcloud-'));
});

const target = { registry: 'europe-docker.pkg.dev' };
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

async function metadata(options: Parameters<typeof startGceMetadata>[0] = {}) {
  const server = await startGceMetadata(options);
  closers.push(server.close);
  process.env.GCE_METADATA_HOST = server.host;
  return server;
}

describe('gcp source on the GCE/GKE metadata server', () => {
  it('returns oauth2accesstoken and the access token, expiring with it', async () => {
    const server = await metadata({ expiresIn: 3599 });
    const before = Date.now();
    const creds = await createGcpSource().fetch(target);
    expect(creds.username).toBe('oauth2accesstoken');
    expect(creds.password).toBe('ya29.stand-in-1');
    expect(creds.expiresAt.getTime()).toBeGreaterThanOrEqual(before + 3590_000);
    expect(creds.expiresAt.getTime()).toBeLessThanOrEqual(Date.now() + 3600_000);
    const tokenRequests = server.requests.filter((r) => r.path.endsWith('/token'));
    expect(tokenRequests).toHaveLength(1);
    expect(tokenRequests[0]?.headers['metadata-flavor']).toBe('Google');
  });

  it('makes exactly one token request for 100 concurrent callers behind the cache', async () => {
    const server = await metadata();
    const source = createGcpSource();
    const cache = new CredentialCache();
    const results = await Promise.all(
      Array.from({ length: 100 }, () =>
        cache.get('gcp|k', { provider: 'gcp', registry: target.registry }, () =>
          source.fetch(target),
        ),
      ),
    );
    expect(server.tokens).toBe(1);
    expect(new Set(results.map((r) => r.password)).size).toBe(1);
  });

  it('refreshes before expiry as the clock advances', async () => {
    // 200 s tokens: inside google-auth-library's own 5 minute eager-refresh window, so each
    // fetch goes to the server and the refresh is the cache's decision alone.
    const server = await metadata({ expiresIn: 200 });
    const source = createGcpSource();
    let t = Date.now();
    const cache = new CredentialCache({ now: () => t });
    const get = () =>
      cache.get('k', { provider: 'gcp', registry: target.registry }, () => source.fetch(target));
    expect((await get()).password).toBe('ya29.stand-in-1');
    t += 90_000; // margin is min(max(5 min, 20 s), 100 s) = 100 s: not yet
    expect((await get()).password).toBe('ya29.stand-in-1');
    expect(server.tokens).toBe(1);
    t += 20_000; // 110 s in: due, still valid: served, refreshed behind
    expect((await get()).password).toBe('ya29.stand-in-1');
    await new Promise((r) => setTimeout(r, 200));
    expect((await get()).password).toBe('ya29.stand-in-2');
    expect(server.tokens).toBe(2);
  });

  it.each([
    [403, 'ACCESS_DENIED'],
    [429, 'THROTTLED'],
    [500, 'PROVIDER_ERROR'],
  ] as const)(
    'maps a %d from the token endpoint to %s, with no token in the message',
    async (status, code) => {
      await metadata({ tokenStatus: status });
      const err = await createGcpSource()
        .fetch(target)
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CredentialsError);
      expect(err).toMatchObject({ code, provider: 'gcp', registry: target.registry });
      expect(String((err as Error).message)).not.toMatch(/ya29/);
    },
  );
});
