import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { Client, type Entry, InvalidCredentialsError } from 'ldapts';
import type { AuthPlugin, AuthResult, Identity } from './plugin.js';

export interface LdapOptions {
  readonly name: string;
  /** `ldap://host:389` or `ldaps://host:636`. */
  readonly url: string;
  /** Upgrade an `ldap://` connection with StartTLS before any credentials are sent. */
  readonly startTls?: boolean;
  /** CA bundle for LDAPS / StartTLS (else the system roots). */
  readonly caFile?: string;
  /**
   * Bind straight as this DN, `{username}` replaced (RFC 4514 escaped):
   * `uid={username},ou=people,dc=example,dc=org`. Otherwise search-then-bind.
   */
  readonly userDnTemplate?: string;
  /** Search-then-bind: where users live. */
  readonly userSearchBase?: string;
  /** Search-then-bind: `{username}` replaced (RFC 4515 escaped). Default `(uid={username})`. */
  readonly userFilter?: string;
  /** The service account that searches (absent: anonymous search). */
  readonly bindDn?: string;
  readonly bindPassword?: string;
  readonly bindPasswordFile?: string;
  /**
   * Where groups come from: the user's `memberOf` (default), or a search under `searchBase` with
   * `filter` (`{dn}` replaced, escaped; default `(member={dn})`). Group names are their `cn`.
   */
  readonly groups?:
    | { readonly from: 'memberOf' }
    | { readonly from: 'search'; readonly searchBase: string; readonly filter?: string };
  /**
   * The attribute whose value is the subject (directories match usernames case-insensitively;
   * the policy is case-sensitive). Default `uid`; `sAMAccountName` for Active Directory.
   */
  readonly usernameAttribute?: string;
  /** Connect and per-operation timeout. Default 5000 ms. */
  readonly timeoutMs?: number;
}

/** RFC 4515 §3: a value inside a search filter. `*`, `(`, `)`, `\` and NUL become \XX escapes. */
export function escapeFilterValue(value: string): string {
  return value.replace(/[*()\\\0]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** RFC 4514 §2.4: a value inside a DN attribute value. */
export function escapeDnValue(value: string): string {
  let out = value.replace(/[\\,+"<>;=]/g, (c) => `\\${c}`).replace(/\0/g, '\\00');
  if (out.startsWith('#') || out.startsWith(' ')) out = `\\${out}`;
  if (out.endsWith(' ') && !out.endsWith('\\ ')) out = `${out.slice(0, -1)}\\ `;
  return out;
}

/** The first RDN's value of a DN (`cn=platform,ou=groups,...` -> `platform`). */
function firstRdnValue(dn: string): string {
  const m = /^[^=]+=((?:\\.|[^,\\])*)/.exec(dn);
  return (m?.[1] ?? dn).replace(/\\(.)/g, '$1');
}

function strings(value: Entry[string] | undefined): string[] {
  if (value === undefined) return [];
  const list = Array.isArray(value) ? value : [value];
  return list.map((v) => (Buffer.isBuffer(v) ? v.toString('utf8') : String(v)));
}

const USERNAME_MAX = 256;

/**
 * Users and groups from an LDAP directory (OpenLDAP, Active Directory, FreeIPA) via ldapts:
 * search-then-bind with a service account (or a DN template), StartTLS or LDAPS with a CA file,
 * groups from `memberOf` or a group search, every value escaped for its place (filter or DN),
 * bounded timeouts, the service connection reused across logins. An empty password is refused
 * before anything is sent (LDAP treats it as an anonymous bind that "succeeds").
 */
export function createLdapPlugin(options: LdapOptions): AuthPlugin {
  const { name } = options;
  if (typeof name !== 'string' || name === '') throw new TypeError('ldap: name is required');
  let url: URL;
  try {
    url = new URL(options.url);
  } catch {
    throw new TypeError(`${name}.url: not a URL`);
  }
  if (url.protocol !== 'ldap:' && url.protocol !== 'ldaps:')
    throw new TypeError(`${name}.url: ldap:// or ldaps://`);
  if (options.startTls && url.protocol === 'ldaps:')
    throw new TypeError(`${name}.startTls: not with ldaps:// (already TLS)`);
  if (options.userDnTemplate === undefined && options.userSearchBase === undefined)
    throw new TypeError(`${name}: userDnTemplate or userSearchBase is required`);
  if (options.userDnTemplate !== undefined && !options.userDnTemplate.includes('{username}'))
    throw new TypeError(`${name}.userDnTemplate: must contain {username}`);
  const userFilter = options.userFilter ?? '(uid={username})';
  if (!userFilter.includes('{username}'))
    throw new TypeError(`${name}.userFilter: must contain {username}`);
  const timeout = options.timeoutMs ?? 5000;
  const tlsOptions: ConnectionOptions = {
    ...(options.caFile ? { ca: readFileSync(options.caFile) } : {}),
    // SNI takes host names only; certificates for IPs are checked against the IP anyway
    ...(isIP(url.hostname.replace(/^\[|\]$/g, '')) ? {} : { servername: url.hostname }),
  };
  const groupsFrom = options.groups ?? { from: 'memberOf' as const };
  const usernameAttribute = options.usernameAttribute ?? 'uid';
  const bindPassword = () =>
    options.bindPasswordFile !== undefined
      ? readFileSync(options.bindPasswordFile, 'utf8').trim()
      : (options.bindPassword ?? '');

  const connect = async (): Promise<Client> => {
    const client = new Client({
      url: options.url,
      timeout,
      connectTimeout: timeout,
      // ldapts speaks TLS from the start whenever tlsOptions are given
      ...(url.protocol === 'ldaps:' ? { tlsOptions } : {}),
      strictDN: false,
    });
    if (options.startTls) await client.startTLS(tlsOptions);
    return client;
  };

  /** The service connection, bound once and reused; dropped on any failure and made anew. */
  let service: Promise<Client> | undefined;
  const serviceClient = (): Promise<Client> => {
    service ??= (async () => {
      const client = await connect();
      if (options.bindDn !== undefined) await client.bind(options.bindDn, bindPassword());
      return client;
    })();
    service.catch(() => {
      service = undefined;
    });
    return service;
  };
  const dropService = async () => {
    const dead = service;
    service = undefined;
    await dead?.then((c) => c.unbind()).catch(() => {});
  };

  /** A search on the service connection; any failure drops it so the next login reconnects. */
  const serviceSearch = async (base: string, search: Parameters<Client['search']>[1]) => {
    const client = await serviceClient();
    try {
      return (await client.search(base, search)).searchEntries;
    } catch (err) {
      await dropService();
      throw err;
    }
  };

  const findUser = (username: string): Promise<Entry[]> =>
    serviceSearch(options.userSearchBase as string, {
      scope: 'sub',
      filter: userFilter.split('{username}').join(escapeFilterValue(username)),
      attributes: ['dn', 'memberOf', usernameAttribute],
      sizeLimit: 2,
    });

  const groupsOf = async (entry: Entry | undefined, dn: string): Promise<string[]> => {
    if (groupsFrom.from === 'memberOf') return strings(entry?.memberOf).map(firstRdnValue);
    const groups = await serviceSearch(groupsFrom.searchBase, {
      scope: 'sub',
      filter: (groupsFrom.filter ?? '(member={dn})').split('{dn}').join(escapeFilterValue(dn)),
      attributes: ['cn'],
      sizeLimit: 1000,
    });
    return groups.flatMap((g) => strings(g.cn).slice(0, 1));
  };

  return {
    name,
    type: 'ldap',
    family: 'password',
    async authenticate(login): Promise<AuthResult> {
      const { username, password } = login;
      if (!password || !username || username.length > USERNAME_MAX || username.includes('\0'))
        return { ok: false, reason: 'BAD_PASSWORD' };
      let dn: string;
      let entry: Entry | undefined;
      try {
        if (options.userDnTemplate !== undefined) {
          dn = options.userDnTemplate.split('{username}').join(escapeDnValue(username));
        } else {
          const found = await findUser(username);
          // none, or ambiguous (a filter that matches two users must never pick one)
          if (found.length !== 1) return { ok: false, reason: 'UNKNOWN_USER' };
          entry = found[0] as Entry;
          dn = entry.dn;
        }
      } catch {
        return { ok: false, reason: 'UNAVAILABLE' };
      }
      let user: Client | undefined;
      try {
        user = await connect();
        await user.bind(dn, password);
        if (entry === undefined) {
          // DN template: read our own entry (memberOf, the username), as the user just bound
          const { searchEntries } = await user.search(dn, {
            scope: 'base',
            attributes: ['memberOf', usernameAttribute],
          });
          entry = searchEntries[0];
        }
      } catch (err) {
        if (err instanceof InvalidCredentialsError) return { ok: false, reason: 'BAD_PASSWORD' };
        return { ok: false, reason: 'UNAVAILABLE' };
      } finally {
        await user?.unbind().catch(() => {});
      }
      let groups: string[];
      try {
        groups = await groupsOf(entry, dn);
      } catch {
        return { ok: false, reason: 'UNAVAILABLE' };
      }
      const subject = strings(entry?.[usernameAttribute])[0] ?? username;
      const identity: Identity = { plugin: name, subject, groups, claims: { dn } };
      return { ok: true, identity };
    },
  };
}
