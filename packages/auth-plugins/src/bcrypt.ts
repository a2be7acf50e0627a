import { createHmac, randomBytes } from 'node:crypto';
import bcrypt from 'bcryptjs';

/** A bcrypt hash of a random string, compared against for unknown users so timing says nothing. */
const DUMMY_HASH = '$2b$10$CwTycUXWue0Thq9StjUM0uJ8.wM3Yd1Kf6Zq3Q0g1f9Qdxr7Vf8Ce';
const BCRYPT_HASH = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;

/** `$2a$`, `$2b$` or `$2y$` bcrypt, as `htpasswd -B` writes and docker distribution accepts. */
export function isBcryptHash(value: string): boolean {
  return BCRYPT_HASH.test(value);
}

export interface PasswordVerifierOptions {
  /** How long a verified (password, hash) pair is trusted without bcrypt. Default 5 minutes. */
  readonly ttlMs?: number;
  /** Most pairs remembered; the oldest is forgotten first. Default 10,000. */
  readonly maxEntries?: number;
  /** The bcrypt comparison. Default bcryptjs's. */
  readonly compare?: (password: string, hash: string) => Promise<boolean>;
  /** Clock in milliseconds. Default `Date.now`. */
  readonly now?: () => number;
}

/**
 * bcrypt comparisons with the successes remembered for a while. Every docker or containerd pull
 * logs in again (one token per pull), and one bcrypt at cost 10 is about 50-100 ms of CPU in
 * JavaScript, so without this a few hundred nodes pulling at once spend the proxy's CPU on
 * comparing the same password to the same hash. What is kept is an HMAC, under a key made at
 * start and never stored, of the hash and the password: nothing in memory gives a password
 * back, a changed hash (a new password in the htpasswd file) matches no entry, and failures are
 * never remembered, so a wrong password always costs a full comparison. Concurrent checks of
 * the same pair share one comparison.
 */
export class PasswordVerifier {
  readonly #key = randomBytes(32);
  readonly #verified = new Map<string, number>();
  readonly #inFlight = new Map<string, Promise<boolean>>();
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #compare: (password: string, hash: string) => Promise<boolean>;
  readonly #now: () => number;

  constructor(options: PasswordVerifierOptions = {}) {
    this.#ttlMs = options.ttlMs ?? 5 * 60_000;
    this.#maxEntries = options.maxEntries ?? 10_000;
    this.#compare = options.compare ?? ((password, hash) => bcrypt.compare(password, hash));
    this.#now = options.now ?? Date.now;
  }

  /** Whether `password` matches `hash`; with no hash (unknown user) it costs the same and is false. */
  async verify(password: string, hash: string | undefined): Promise<boolean> {
    if (hash === undefined) {
      await this.#compare(password, DUMMY_HASH);
      return false;
    }
    const key = createHmac('sha256', this.#key)
      .update(hash)
      .update('\0')
      .update(password)
      .digest('base64');
    const until = this.#verified.get(key);
    if (until !== undefined) {
      if (until > this.#now()) return true;
      this.#verified.delete(key);
    }
    const pending = this.#inFlight.get(key);
    if (pending) return pending;
    const check = this.#compare(password, hash)
      .then((matches) => {
        if (matches) this.#remember(key);
        return matches;
      })
      .finally(() => this.#inFlight.delete(key));
    this.#inFlight.set(key, check);
    return check;
  }

  #remember(key: string): void {
    this.#verified.delete(key);
    this.#verified.set(key, this.#now() + this.#ttlMs);
    for (const oldest of this.#verified.keys()) {
      if (this.#verified.size <= this.#maxEntries) break;
      this.#verified.delete(oldest);
    }
  }
}

const shared = new PasswordVerifier();

/** Whether `password` matches `hash` (see {@link PasswordVerifier}; one per process). */
export function verifyPassword(password: string, hash: string | undefined): Promise<boolean> {
  return shared.verify(password, hash);
}

/** A bcrypt hash of `password` (cost 10), for passwords given in clear. */
export function hashPassword(password: string): string {
  return bcrypt.hashSync(password, 10);
}
