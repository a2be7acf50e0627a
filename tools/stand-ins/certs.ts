import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Certificate {
  readonly certFile: string;
  readonly keyFile: string;
}

export interface CertificateOptions {
  /** `ec` (P-256, default) or `rsa` (2048 bits). */
  readonly key?: 'ec' | 'rsa';
  /** Subject, e.g. `/CN=127.0.0.1` or `/CN=node-1/OU=nodes`. */
  readonly subject: string;
  /** subjectAltName value, e.g. `IP:127.0.0.1,DNS:localhost`. */
  readonly san?: string;
  /** extendedKeyUsage value, e.g. `serverAuth`. */
  readonly extendedKeyUsage?: string;
  /** Sign with this CA; absent: self-signed. */
  readonly ca?: Certificate;
  /** Default 2. */
  readonly days?: number;
}

/**
 * A key and certificate made by the real openssl as `<dir>/<name>.key` and `<dir>/<name>.crt`:
 * self-signed, or signed by `ca`. Test certificates only.
 */
export function makeCertificate(
  dir: string,
  name: string,
  options: CertificateOptions,
): Certificate {
  const keyFile = join(dir, `${name}.key`);
  const certFile = join(dir, `${name}.crt`);
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const newKey =
    options.key === 'rsa'
      ? ['-newkey', 'rsa:2048']
      : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
  const days = String(options.days ?? 2);
  const extensions = [
    ...(options.san ? [`subjectAltName=${options.san}`] : []),
    ...(options.extendedKeyUsage ? [`extendedKeyUsage=${options.extendedKeyUsage}`] : []),
  ];
  if (options.ca === undefined) {
    run(
      'req',
      '-x509',
      ...newKey,
      '-nodes',
      '-days',
      days,
      '-subj',
      options.subject,
      ...extensions.flatMap((e) => ['-addext', e]),
      '-keyout',
      keyFile,
      '-out',
      certFile,
    );
    return { certFile, keyFile };
  }
  const csr = join(dir, `${name}.csr`);
  run('req', ...newKey, '-nodes', '-subj', options.subject, '-keyout', keyFile, '-out', csr);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, extensions.map((e) => `${e}\n`).join(''));
  run(
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    options.ca.certFile,
    '-CAkey',
    options.ca.keyFile,
    '-CAcreateserial',
    '-days',
    days,
    '-extfile',
    ext,
    '-out',
    certFile,
  );
  return { certFile, keyFile };
}
