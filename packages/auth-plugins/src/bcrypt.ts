import bcrypt from 'bcryptjs';

/** A bcrypt hash of a random string, compared against for unknown users so timing says nothing. */
const DUMMY_HASH = '$2b$10$CwTycUXWue0Thq9StjUM0uJ8.wM3Yd1Kf6Zq3Q0g1f9Qdxr7Vf8Ce';
const BCRYPT_HASH = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;

/** `$2a$`, `$2b$` or `$2y$` bcrypt, as `htpasswd -B` writes and docker distribution accepts. */
export function isBcryptHash(value: string): boolean {
  return BCRYPT_HASH.test(value);
}

/** Whether `password` matches `hash`; with no hash (unknown user) it costs the same and is false. */
export async function verifyPassword(password: string, hash: string | undefined): Promise<boolean> {
  const matches = await bcrypt.compare(password, hash ?? DUMMY_HASH);
  return hash !== undefined && matches;
}

/** A bcrypt hash of `password` (cost 10), for passwords given in clear. */
export function hashPassword(password: string): string {
  return bcrypt.hashSync(password, 10);
}
