import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './registry.js';

export interface Slapd {
  /** `ldap://127.0.0.1:PORT` (StartTLS offered). */
  readonly url: string;
  /** `ldaps://127.0.0.1:PORT`. */
  readonly ldapsUrl: string;
  readonly suffix: string;
  readonly adminDn: string;
  readonly adminPassword: string;
  /** CA that signed the server certificate (the TLS stand-in CA). */
  readonly caFile: string;
  log(): string;
  close(): Promise<void>;
}

export interface SlapdUser {
  readonly uid: string;
  readonly password: string;
  readonly groups?: readonly string[];
}

/**
 * A private OpenLDAP slapd (Debian `slapd`) on loopback, plain (with StartTLS) and LDAPS with the
 * TLS stand-in's certificate, an mdb database in a temp dir, and the memberOf overlay; users
 * under `ou=people`, groups (groupOfNames) under `ou=groups`, loaded with the real `ldapadd`
 * so the overlay fills in `memberOf`. Passwords are stored as `slappasswd` SSHA hashes.
 */
export async function startSlapd(users: readonly SlapdUser[]): Promise<Slapd> {
  const tlsDir = process.env.STAND_IN_TLS_DIR;
  if (!tlsDir) throw new Error('STAND_IN_TLS_DIR is not set: add tls-global-setup as globalSetup');
  const dir = mkdtempSync(join(tmpdir(), 'slapd-'));
  mkdirSync(join(dir, 'data'));
  const suffix = 'dc=example,dc=org';
  const adminDn = `cn=admin,${suffix}`;
  const adminPassword = 'stand-in-admin';
  const [port, tlsPort] = [await freePort(), await freePort()];
  writeFileSync(
    join(dir, 'slapd.conf'),
    [
      ...['core', 'cosine', 'inetorgperson', 'nis'].map(
        (s) => `include /etc/ldap/schema/${s}.schema`,
      ),
      'modulepath /usr/lib/ldap',
      'moduleload back_mdb.la',
      'moduleload memberof.la',
      `pidfile ${join(dir, 'slapd.pid')}`,
      `TLSCACertificateFile ${join(tlsDir, 'ca.crt')}`,
      `TLSCertificateFile ${join(tlsDir, 'leaf.crt')}`,
      `TLSCertificateKeyFile ${join(tlsDir, 'leaf.key')}`,
      'database mdb',
      'maxsize 10485760',
      `suffix "${suffix}"`,
      `rootdn "${adminDn}"`,
      `rootpw ${adminPassword}`,
      `directory ${join(dir, 'data')}`,
      'overlay memberof',
      'memberof-group-oc groupOfNames',
      'memberof-member-ad member',
      'memberof-memberof-ad memberOf',
      // users may read their own entry; the admin (our service account here) everything
      'access to attrs=userPassword by self write by anonymous auth by * none',
      'access to * by self read by users read by anonymous auth',
    ].join('\n'),
  );
  const url = `ldap://127.0.0.1:${port}`;
  const ldapsUrl = `ldaps://127.0.0.1:${tlsPort}`;
  const child = spawn(
    '/usr/sbin/slapd',
    ['-f', join(dir, 'slapd.conf'), '-h', `${url}/ ${ldapsUrl}/`, '-d', 'stats'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const close = async () => {
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const ldapadd = (ldif: string) =>
    execFileSync('ldapadd', ['-x', '-H', url, '-D', adminDn, '-w', adminPassword], {
      input: ldif,
      stdio: ['pipe', 'ignore', 'pipe'],
    });
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`slapd exited ${child.exitCode}:\n${output}`);
    try {
      execFileSync('ldapwhoami', ['-x', '-H', url, '-D', adminDn, '-w', adminPassword], {
        stdio: 'ignore',
      });
      break;
    } catch {
      if (Date.now() > deadline) {
        await close();
        throw new Error(`slapd did not start:\n${output}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const entries = [
    `dn: ${suffix}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n`,
    `dn: ou=people,${suffix}\nobjectClass: organizationalUnit\nou: people\n`,
    `dn: ou=groups,${suffix}\nobjectClass: organizationalUnit\nou: groups\n`,
    ...users.map((u) => {
      const hash = execFileSync('slappasswd', ['-s', u.password], { encoding: 'utf8' }).trim();
      return `dn: uid=${u.uid},ou=people,${suffix}\nobjectClass: inetOrgPerson\nuid: ${u.uid}\ncn: ${u.uid}\nsn: ${u.uid}\nuserPassword: ${hash}\n`;
    }),
  ];
  const groups = [...new Set(users.flatMap((u) => u.groups ?? []))];
  for (const group of groups) {
    const members = users.filter((u) => u.groups?.includes(group));
    entries.push(
      `dn: cn=${group},ou=groups,${suffix}\nobjectClass: groupOfNames\ncn: ${group}\n${members.map((m) => `member: uid=${m.uid},ou=people,${suffix}\n`).join('')}`,
    );
  }
  try {
    ldapadd(entries.join('\n'));
  } catch (err) {
    await close();
    throw new Error(
      `ldapadd failed: ${String((err as { stderr?: Buffer }).stderr ?? err)}\n${output}`,
    );
  }
  return {
    url,
    ldapsUrl,
    suffix,
    adminDn,
    adminPassword,
    caFile: join(tlsDir, 'ca.crt'),
    log: () => output,
    close,
  };
}
