import { readFile, stat } from 'node:fs/promises';
import { isBcryptHash, verifyPassword } from './bcrypt.js';
import type { AuthPlugin, AuthResult, Login } from './plugin.js';

export interface HtpasswdOptions {
  readonly name: string;
  /** An htpasswd file of bcrypt entries (`htpasswd -B`), re-read when it changes. */
  readonly file: string;
}

/**
 * Users from an htpasswd file. Only bcrypt entries (`$2a$`, `$2b$`, `$2y$`, as `htpasswd -B`
 * writes and docker distribution accepts) are taken; any other line makes the file invalid, with
 * the line number in the error (never its content). The file is re-read when it changes; a file
 * that becomes invalid keeps the last good users in service.
 */
export function createHtpasswdPlugin(
  options: HtpasswdOptions,
): AuthPlugin & { reload(): Promise<void> } {
  if (typeof options.name !== 'string' || options.name === '' || /[:\s]/.test(options.name)) {
    throw new TypeError('name: a non-empty plugin name without ":" or spaces');
  }
  if (typeof options.file !== 'string' || options.file === '')
    throw new TypeError('file: the htpasswd file path');
  let stamp = '';
  let users = new Map<string, string>();

  const load = async (): Promise<void> => {
    const st = await stat(options.file);
    const next = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    if (next === stamp) return;
    users = parseHtpasswd(await readFile(options.file, 'utf8'), options.file);
    stamp = next;
  };

  return {
    name: options.name,
    type: 'htpasswd',
    reload: load,
    async authenticate(login: Login): Promise<AuthResult> {
      try {
        await load();
      } catch {
        // Keep serving the last good users; with none loaded yet there is nobody to let in.
        if (users.size === 0) return { ok: false, reason: 'UNAVAILABLE' };
      }
      const hash = users.get(login.username);
      const matches = await verifyPassword(login.password, hash);
      if (hash === undefined) return { ok: false, reason: 'UNKNOWN_USER' };
      if (!matches) return { ok: false, reason: 'BAD_PASSWORD' };
      return {
        ok: true,
        identity: { plugin: options.name, subject: login.username, groups: [], claims: {} },
      };
    },
  };
}

/**
 * Parses htpasswd text: `user:$2y$...` lines, blank lines and `#` comments allowed.
 *
 * @throws Error naming the file and line of the first bad entry (not its content).
 */
export function parseHtpasswd(text: string, file: string): Map<string, string> {
  const users = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    const user = line.slice(0, colon);
    const hash = line.slice(colon + 1);
    if (colon <= 0 || !isBcryptHash(hash)) {
      throw new Error(
        `${file}:${i + 1}: not a "user:bcrypt-hash" entry (create it with htpasswd -B)`,
      );
    }
    if (users.has(user))
      throw new Error(`${file}:${i + 1}: user ${JSON.stringify(user)} appears twice`);
    users.set(user, hash);
  });
  return users;
}
