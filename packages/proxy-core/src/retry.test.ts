import { describe, expect, it } from 'vitest';
import { RetryBudget, retryAfterMs, sleep } from './retry.js';

describe('RetryBudget', () => {
  it('allows the floor, then retries only up to the ratio of requests in the window', () => {
    const now = 0;
    const budget = new RetryBudget(
      { budgetRatio: 0.1, minPerWindow: 2, windowMs: 10_000 },
      () => now,
    );
    expect([budget.tryRetry(), budget.tryRetry(), budget.tryRetry()]).toEqual([true, true, false]);
    for (let i = 0; i < 100; i++) budget.request();
    // floor 2 + 10% of 100 = 12 in the window, 2 taken
    let granted = 0;
    while (budget.tryRetry()) granted++;
    expect(granted).toBe(10);
  });

  it('forgets what fell out of the sliding window', () => {
    let now = 1_000_000;
    const budget = new RetryBudget({ budgetRatio: 0, minPerWindow: 1, windowMs: 1000 }, () => now);
    expect(budget.tryRetry()).toBe(true);
    expect(budget.tryRetry()).toBe(false);
    now += 500;
    expect(budget.tryRetry()).toBe(false);
    now += 600;
    expect(budget.tryRetry()).toBe(true);
    now += 60_000; // long idle: every bucket zeroed, no stale counts
    expect(budget.tryRetry()).toBe(true);
    expect(budget.tryRetry()).toBe(false);
  });

  it('backs off exponentially with full jitter, capped', () => {
    const budget = new RetryBudget({ backoffMs: 100, maxBackoffMs: 1000 });
    expect([1, 2, 3, 4, 5].map((n) => budget.backoff(n, () => 1))).toEqual([
      100, 200, 400, 800, 1000,
    ]);
    expect(budget.backoff(3, () => 0)).toBe(0);
  });

  it.each([
    [{ attempts: 0 }, 'retries.attempts'],
    [{ attempts: 1.5 }, 'retries.attempts'],
    [{ budgetRatio: 2 }, 'retries.budgetRatio'],
    [{ minPerWindow: -1 }, 'retries.minPerWindow'],
    [{ windowMs: 1 }, 'retries.windowMs'],
    [{ maxBackoffMs: -5 }, 'retries.maxBackoffMs'],
  ])('refuses bad options %j naming the option', (options, name) => {
    expect(() => new RetryBudget(options)).toThrow(name);
  });
});

describe('retryAfterMs', () => {
  it.each([
    [null, undefined],
    ['3', 3000],
    [' 0 ', 0],
    ['soon', undefined],
    ['-1', undefined],
    [new Date(61_000).toUTCString(), 60_000],
    [new Date(0).toUTCString(), 0],
  ])('%j -> %j', (value, expected) => {
    expect(retryAfterMs(value, 1000)).toBe(expected);
  });
});

describe('sleep', () => {
  it('rejects when the signal aborts, at once when it already has', async () => {
    const controller = new AbortController();
    const pending = sleep(60_000, controller.signal);
    controller.abort();
    await expect(pending).rejects.toThrow('aborted');
    await expect(sleep(1, controller.signal)).rejects.toThrow('aborted');
    await expect(sleep(1)).resolves.toBeUndefined();
  });
});
