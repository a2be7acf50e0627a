import { hashPassword, isBcryptHash, verifyPassword } from './bcrypt.js';
import type { AuthPlugin, AuthResult, Login } from './plugin.js';

export interface StaticUser {
  readonly username: string;
  /** A bcrypt hash (prefer this), or the password itself. */
  readonly passwordHash?: string;
  readonly password?: string;
  readonly groups?: readonly string[];
}

export interface StaticUsersOptions {
  readonly name: string;
  readonly users: readonly StaticUser[];
}

/**
 * Users listed in the config. Plain passwords are hashed once at start (bcrypt, cost 10), so every
 * login costs the same bcrypt comparison whichever form was configured.
 */
export function createStaticUsersPlugin(options: StaticUsersOptions): AuthPlugin {
  if (typeof options.name !== 'string' || options.name === '' || /[:\s]/.test(options.name)) {
    throw new TypeError('name: a non-empty plugin name without ":" or spaces');
  }
  const users = new Map<string, { hash: string; groups: readonly string[] }>();
  options.users.forEach((u, i) => {
    const where = `users[${i}]`;
    if (typeof u.username !== 'string' || u.username === '' || u.username.includes(':')) {
      throw new TypeError(`${where}.username: non-empty, without ":"`);
    }
    if (users.has(u.username))
      throw new TypeError(`${where}.username: ${JSON.stringify(u.username)} appears twice`);
    if ((u.password === undefined) === (u.passwordHash === undefined)) {
      throw new TypeError(`${where}: exactly one of password and passwordHash`);
    }
    if (u.passwordHash !== undefined && !isBcryptHash(u.passwordHash)) {
      throw new TypeError(`${where}.passwordHash: a bcrypt hash`);
    }
    const hash = u.passwordHash ?? hashPassword(u.password as string);
    users.set(u.username, { hash, groups: [...(u.groups ?? [])] });
  });
  return {
    name: options.name,
    type: 'static',
    async authenticate(login: Login): Promise<AuthResult> {
      const user = users.get(login.username);
      const matches = await verifyPassword(login.password, user?.hash);
      if (!user) return { ok: false, reason: 'UNKNOWN_USER' };
      if (!matches) return { ok: false, reason: 'BAD_PASSWORD' };
      return {
        ok: true,
        identity: {
          plugin: options.name,
          subject: login.username,
          groups: user.groups,
          claims: {},
        },
      };
    },
  };
}
