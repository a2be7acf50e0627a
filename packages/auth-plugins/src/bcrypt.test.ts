import bcrypt from 'bcryptjs';
import { describe, expect, it } from 'vitest';
import { hashPassword, PasswordVerifier, verifyPassword } from './bcrypt.js';

/** A verifier over the real bcrypt comparison, counting how often it runs. */
function counted(options: { ttlMs?: number; maxEntries?: number; now?: () => number } = {}) {
  const calls: string[] = [];
  const verifier = new PasswordVerifier({
    ...options,
    compare: (password, hash) => {
      calls.push(hash);
      return bcrypt.compare(password, hash);
    },
  });
  return { verifier, calls };
}

describe('PasswordVerifier', () => {
  const hash = hashPassword('right');

  it('answers a verified password again without another bcrypt comparison', async () => {
    const { verifier, calls } = counted();
    expect(await verifier.verify('right', hash)).toBe(true);
    expect(await verifier.verify('right', hash)).toBe(true);
    expect(calls).toHaveLength(1);
  });

  it('never remembers a failure: each wrong password costs a full comparison', async () => {
    const { verifier, calls } = counted();
    expect(await verifier.verify('wrong', hash)).toBe(false);
    expect(await verifier.verify('wrong', hash)).toBe(false);
    expect(calls).toHaveLength(2);
  });

  it('does not let a remembered password match a changed hash (a new password)', async () => {
    const { verifier, calls } = counted();
    expect(await verifier.verify('right', hash)).toBe(true);
    const changed = hashPassword('new');
    expect(await verifier.verify('right', changed)).toBe(false);
    expect(await verifier.verify('new', changed)).toBe(true);
    expect(calls).toHaveLength(3);
  });

  it('compares unknown users against a dummy hash and refuses them, remembering nothing', async () => {
    const { verifier, calls } = counted();
    expect(await verifier.verify('right', undefined)).toBe(false);
    expect(await verifier.verify('right', undefined)).toBe(false);
    expect(calls).toHaveLength(2);
    expect(calls[0]).not.toBe(hash);
  });

  it('compares again once the remembered success has expired', async () => {
    let now = 0;
    const { verifier, calls } = counted({ ttlMs: 1000, now: () => now });
    await verifier.verify('right', hash);
    now = 999;
    await verifier.verify('right', hash);
    expect(calls).toHaveLength(1);
    now = 1000;
    expect(await verifier.verify('right', hash)).toBe(true);
    expect(calls).toHaveLength(2);
  });

  it('shares one comparison among concurrent checks of the same pair', async () => {
    const { verifier, calls } = counted();
    const results = await Promise.all(
      Array.from({ length: 20 }, () => verifier.verify('right', hash)),
    );
    expect(results.every(Boolean)).toBe(true);
    expect(calls).toHaveLength(1);
  });

  it('forgets the oldest pair beyond maxEntries', async () => {
    const { verifier, calls } = counted({ maxEntries: 1 });
    const other = hashPassword('other');
    await verifier.verify('right', hash);
    await verifier.verify('other', other);
    await verifier.verify('other', other);
    expect(calls).toHaveLength(2);
    await verifier.verify('right', hash);
    expect(calls).toHaveLength(3);
  });
});

describe('verifyPassword', () => {
  it('checks against bcrypt hashes htpasswd -B writes ($2y$)', async () => {
    const y = hashPassword('pw').replace(/^\$2b\$/, '$2y$');
    expect(await verifyPassword('pw', y)).toBe(true);
    expect(await verifyPassword('nope', y)).toBe(false);
  });
});
