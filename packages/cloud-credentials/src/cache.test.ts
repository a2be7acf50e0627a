import { describe, expect, it } from 'vitest';
import { CredentialCache, type CredentialLabels, defaultRefreshMargin } from './cache.js';
import { CredentialsError } from './errors.js';
import type { RegistryCredentials } from './types.js';

const MIN = 60_000;
const labels = { provider: 'gcp', registry: 'gcr.io' };

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

function creds(password: string, expiresAt: number): RegistryCredentials {
  return { username: 'u', password, expiresAt: new Date(expiresAt) };
}

function counting() {
  const seen = { hit: 0, miss: 0, ok: 0, failed: 0, codes: [] as string[] };
  return {
    seen,
    metrics: {
      hit: (_: CredentialLabels) => void seen.hit++,
      miss: () => void seen.miss++,
      fetched: (_: CredentialLabels, _ms: number, ok: boolean) =>
        void (ok ? seen.ok++ : seen.failed++),
      error: (_: CredentialLabels, code: string) => void seen.codes.push(code),
    },
  };
}

describe('defaultRefreshMargin', () => {
  it.each([
    [12 * 60 * MIN, 72 * MIN], // ECR: 10% of 12 h
    [60 * MIN, 6 * MIN], // GCP: 10% of 1 h
    [30 * MIN, 5 * MIN], // the 5 minute floor
    [4 * MIN, 2 * MIN], // never more than half the lifetime
  ])('lifetime %d ms -> margin %d ms', (lifetime, margin) => {
    expect(defaultRefreshMargin(lifetime)).toBe(margin);
  });
});

describe('CredentialCache', () => {
  it('reuses credentials until the refresh margin, then fetches again', async () => {
    const c = clock();
    const { seen, metrics } = counting();
    const cache = new CredentialCache({ now: c.now, metrics });
    let n = 0;
    const fetch = async () => creds(`p${++n}`, c.now() + 60 * MIN);
    expect((await cache.get('k', labels, fetch)).password).toBe('p1');
    c.advance(53 * MIN);
    expect((await cache.get('k', labels, fetch)).password).toBe('p1');
    c.advance(2 * MIN); // 55 min: inside the 6 minute margin, still valid: served, refreshed behind
    expect((await cache.get('k', labels, fetch)).password).toBe('p1');
    await Promise.resolve();
    expect((await cache.get('k', labels, fetch)).password).toBe('p2');
    expect(n).toBe(2);
    // a refresh counts as a miss even though the caller was served the still-valid credentials
    expect(seen).toMatchObject({ hit: 2, miss: 2, ok: 2, failed: 0 });
  });

  it('fetches again once expired, waiting for the new credentials', async () => {
    const c = clock();
    const cache = new CredentialCache({ now: c.now });
    let n = 0;
    const fetch = async () => creds(`p${++n}`, c.now() + 60 * MIN);
    await cache.get('k', labels, fetch);
    c.advance(61 * MIN);
    expect((await cache.get('k', labels, fetch)).password).toBe('p2');
  });

  it('shares one fetch among 100 concurrent callers', async () => {
    const c = clock();
    const cache = new CredentialCache({ now: c.now });
    let fetches = 0;
    let release: (v: RegistryCredentials) => void = () => {};
    const fetch = () => {
      fetches++;
      return new Promise<RegistryCredentials>((r) => {
        release = r;
      });
    };
    const all = Promise.all(Array.from({ length: 100 }, () => cache.get('k', labels, fetch)));
    release(creds('shared', c.now() + 60 * MIN));
    const results = await all;
    expect(fetches).toBe(1);
    expect(new Set(results.map((r) => r.password))).toEqual(new Set(['shared']));
  });

  it('keeps keys apart', async () => {
    const cache = new CredentialCache();
    const a = await cache.get('a', labels, async () => creds('A', Date.now() + 60 * MIN));
    const b = await cache.get('b', labels, async () => creds('B', Date.now() + 60 * MIN));
    expect([a.password, b.password]).toEqual(['A', 'B']);
  });

  it('remembers a failure only for a growing backoff, then tries again', async () => {
    const c = clock();
    const { seen, metrics } = counting();
    const cache = new CredentialCache({ now: c.now, metrics, failureBackoffMs: 1000 });
    let calls = 0;
    const denied = new CredentialsError('ACCESS_DENIED', labels, 'no');
    const fetch = async () => {
      calls++;
      if (calls <= 2) throw denied;
      return creds('ok', c.now() + 60 * MIN);
    };
    await expect(cache.get('k', labels, fetch)).rejects.toBe(denied);
    await expect(cache.get('k', labels, fetch)).rejects.toBe(denied); // within 1 s: not refetched
    expect(calls).toBe(1);
    c.advance(1001);
    await expect(cache.get('k', labels, fetch)).rejects.toBe(denied); // second failure: 2 s backoff
    c.advance(1500);
    await expect(cache.get('k', labels, fetch)).rejects.toBe(denied);
    expect(calls).toBe(2);
    c.advance(600);
    expect((await cache.get('k', labels, fetch)).password).toBe('ok');
    expect(calls).toBe(3);
    expect(seen.codes).toEqual(['ACCESS_DENIED', 'ACCESS_DENIED']);
  });

  it('keeps serving valid credentials while refreshes fail, until they expire', async () => {
    const c = clock();
    const cache = new CredentialCache({ now: c.now });
    let fail = false;
    const fetch = async () => {
      if (fail) throw new CredentialsError('PROVIDER_ERROR', labels, 'down');
      return creds('good', c.now() + 60 * MIN);
    };
    await cache.get('k', labels, fetch);
    fail = true;
    c.advance(57 * MIN);
    expect((await cache.get('k', labels, fetch)).password).toBe('good');
    await new Promise((r) => setTimeout(r, 0));
    c.advance(2 * MIN);
    expect((await cache.get('k', labels, fetch)).password).toBe('good');
    c.advance(2 * MIN); // expired now
    await expect(cache.get('k', labels, fetch)).rejects.toMatchObject({ code: 'PROVIDER_ERROR' });
  });

  it('refuses credentials that arrive already expired', async () => {
    const c = clock();
    const cache = new CredentialCache({ now: c.now });
    await expect(
      cache.get('k', labels, async () => creds('old', c.now() - 1)),
    ).rejects.toMatchObject({
      code: 'INVALID_RESPONSE',
    });
  });

  it('drops the oldest keys beyond maxEntries', async () => {
    const cache = new CredentialCache({ maxEntries: 3 });
    for (const k of ['a', 'b', 'c', 'd'])
      await cache.get(k, labels, async () => creds(k, Date.now() + 60 * MIN));
    expect(cache.size).toBe(3);
    let refetched = false;
    await cache.get('a', labels, async () => {
      refetched = true;
      return creds('a2', Date.now() + 60 * MIN);
    });
    expect(refetched).toBe(true);
  });

  it('validates its options, naming them', () => {
    expect(() => new CredentialCache({ failureBackoffMs: 0 })).toThrow(/failureBackoffMs/);
    expect(() => new CredentialCache({ maxEntries: Number.NaN })).toThrow(/maxEntries/);
  });
});
