/**
 * vitest globalSetup: makes a throwaway CA and a leaf certificate for 127.0.0.1 / localhost
 * with the real openssl, before the test workers start, and hands them over through the
 * environment the workers inherit: NODE_EXTRA_CA_CERTS (Node trusts the CA; MSAL insists on
 * https authorities) and STAND_IN_TLS_DIR (stand-ins serve the leaf).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'stand-in-tls-'));
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run(
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=stand-in test CA',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
  );
  run(
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-subj',
    '/CN=127.0.0.1',
    '-keyout',
    'leaf.key',
    '-out',
    'leaf.csr',
  );
  writeFileSync(
    join(dir, 'leaf.ext'),
    'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nextendedKeyUsage=serverAuth\n',
  );
  run(
    'x509',
    '-req',
    '-in',
    'leaf.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    'leaf.ext',
    '-out',
    'leaf.crt',
  );
  // Add to, never replace, the CAs this machine already gives Node (its network may need them:
  // npm's registry, for one).
  const previous = process.env.NODE_EXTRA_CA_CERTS;
  const bundle = [
    previous && existsSync(previous) ? readFileSync(previous, 'utf8') : '',
    readFileSync(join(dir, 'ca.crt'), 'utf8'),
  ]
    .filter(Boolean)
    .join('\n');
  writeFileSync(join(dir, 'bundle.crt'), bundle);
  process.env.NODE_EXTRA_CA_CERTS = join(dir, 'bundle.crt');
  process.env.STAND_IN_TLS_DIR = dir;
  return () => rmSync(dir, { recursive: true, force: true });
}
