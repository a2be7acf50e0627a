/**
 * vitest globalSetup: makes a throwaway CA and a leaf certificate for 127.0.0.1 / localhost
 * with the real openssl, before the test workers start, and hands them over through the
 * environment the workers inherit: NODE_EXTRA_CA_CERTS (Node trusts the CA; MSAL insists on
 * https authorities) and STAND_IN_TLS_DIR (stand-ins serve the leaf).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeCertificate } from './certs.js';

export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'stand-in-tls-'));
  const ca = makeCertificate(dir, 'ca', { subject: '/CN=stand-in test CA' });
  makeCertificate(dir, 'leaf', {
    subject: '/CN=127.0.0.1',
    san: 'IP:127.0.0.1,IP:::1,DNS:localhost',
    extendedKeyUsage: 'serverAuth',
    ca,
  });
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
