import { readFile, stat } from 'node:fs/promises';
import bcrypt from 'bcryptjs';
import type { AuthPlugin, AuthResult, Login } from './plugin.js';

export interface HtpasswdOptions {
  readonly name: string;
  /** An htpasswd file of bcrypt entries (`htpasswd -B`), re-read when it changes. */
  readonly file: string;
}

/** A bcrypt hash of a random string: compared against for unknown users, so timing says nothing. */
const DUMMY_HASH = '$2b$10$CwTycUXWue0Thq9StjUM0uJ8.wM3Yd1Kf6Zq3Q0g1f9Qdxr7Vf8Ce';
const BCRYPT = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;

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
      const matches = await bcrypt.compare(login.password, hash ?? DUMMY_HASH);
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
    if (colon <= 0 || !BCRYPT.test(hash)) {
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
