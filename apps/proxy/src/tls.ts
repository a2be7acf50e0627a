import { readFileSync, statSync } from 'node:fs';
import type { Server as HttpsServer } from 'node:https';
import type { Log } from './log.js';

export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  /** CA bundle for client certificates (mtls): asked for, verified, never required by TLS. */
  readonly clientCaFile?: string | undefined;
}

/** The certificate chain and key (and client CA), read now: a missing file is a start error. */
export function readTls(files: TlsFiles): { cert: Buffer; key: Buffer; ca?: Buffer } {
  return {
    cert: readFileSync(files.certFile),
    key: readFileSync(files.keyFile),
    ...(files.clientCaFile ? { ca: readFileSync(files.clientCaFile) } : {}),
  };
}

/** What identifies a file's current content cheaply (follows symlinks, as Kubernetes swaps them). */
function stamp(files: TlsFiles): string {
  return [files.certFile, files.keyFile, ...(files.clientCaFile ? [files.clientCaFile] : [])]
    .map((f) => {
      try {
        const s = statSync(f);
        return `${s.ino}:${s.size}:${s.mtimeMs}`;
      } catch {
        return 'missing';
      }
    })
    .join('|');
}

/**
 * Re-reads the certificate and key when either file changes (checked every `intervalMs`; polling
 * works through the symlink swaps of Kubernetes secret volumes, where fs.watch loses track) and
 * installs them for new connections. A pair that does not load (half-written, key and cert not
 * matching) is logged and the serving pair kept. Returns a stop function.
 */
export function reloadTlsOnChange(
  server: HttpsServer,
  files: TlsFiles,
  intervalMs: number,
  log: Log,
): () => void {
  let last = stamp(files);
  let failed = '';
  const timer = setInterval(() => {
    const now = stamp(files);
    if (now === last || now === failed) return;
    try {
      server.setSecureContext(readTls(files));
      last = now;
      log('info', 'tls certificate reloaded', { certFile: files.certFile });
    } catch (err) {
      // Tried again when either file changes again (the other of the pair may be on its way).
      failed = now;
      log('error', 'tls certificate reload failed; still serving the previous one', {
        certFile: files.certFile,
        error: (err as NodeJS.ErrnoException).code ?? (err as Error).message.split('\n')[0],
      });
    }
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
