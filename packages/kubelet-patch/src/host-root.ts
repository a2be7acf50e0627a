import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
  realpathSync,
  statSync,
} from 'node:fs';
import { join } from 'node:path';
import { HostFileError, quote } from './errors.js';

/** Largest file read from the host, in bytes (1 MiB). */
export const MAX_FILE_BYTES = 1024 * 1024;

/** Most entries listed from one host directory (drop-in dirs hold a handful). */
export const MAX_DIR_ENTRIES = 256;

/** Symlinks followed while resolving one path, as Linux's own limit (ELOOP). */
const MAX_SYMLINKS = 40;

/** A host path resolved inside the host root. */
export interface ResolvedPath {
  /** The canonical path as the host sees it, symlinks followed. */
  readonly hostPath: string;
  /** The same file as this process sees it: under the host root. */
  readonly localPath: string;
}

/** A text file read from the host. */
export interface HostText {
  readonly hostPath: string;
  readonly text: string;
}

/**
 * Reads files of a host whose root filesystem is mounted at `root` (a DaemonSet's hostPath
 * mount), the way the host itself would see them, without ever reading outside it.
 *
 * Symlinks are followed one component at a time by this class, never by the kernel: an absolute
 * target is a host path, so it restarts at the host root (as a chroot would); a `..` that climbs
 * above the host root, from the path or from a link target, is refused (`PATH_ESCAPES_ROOT`).
 * Files must be regular files of at most `maxBytes` and valid UTF-8.
 */
export class HostRoot {
  /** The host root as this process sees it (symlinks resolved). */
  readonly root: string;
  readonly maxBytes: number;

  /**
   * @param root where the host's `/` is mounted; must be an existing directory
   * @param options.maxBytes largest file read (default {@link MAX_FILE_BYTES})
   */
  constructor(root: string, options: { readonly maxBytes?: number } = {}) {
    const maxBytes = options.maxBytes ?? MAX_FILE_BYTES;
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 1)
      throw new TypeError(`maxBytes must be a positive integer, got ${String(maxBytes)}`);
    this.maxBytes = maxBytes;
    this.root = realpathSync(root);
    if (!statSync(this.root).isDirectory())
      throw new TypeError(`host root ${quote(root)} is not a directory`);
  }

  /**
   * Resolves a host path inside the root. Returns `null` when the path (or a directory on the
   * way) does not exist.
   */
  resolve(hostPath: string): ResolvedPath | null {
    if (!hostPath.startsWith('/'))
      throw new HostFileError('PATH_NOT_ABSOLUTE', hostPath, 'not an absolute path');
    const done: string[] = [];
    const todo = hostPath.split('/').filter((c) => c !== '' && c !== '.');
    let links = 0;
    while (todo.length > 0) {
      const component = todo.shift() as string;
      if (component === '..') {
        if (done.length === 0)
          throw new HostFileError(
            'PATH_ESCAPES_ROOT',
            hostPath,
            'resolves above the host root (a ".." or a symlink climbs out of it); refused',
          );
        done.pop();
        continue;
      }
      const local = join(this.root, ...done, component);
      let isLink: boolean;
      let isDir: boolean;
      try {
        const st = lstatSync(local);
        isLink = st.isSymbolicLink();
        isDir = st.isDirectory();
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') return null;
        throw new HostFileError('READ_FAILED', hostPath, `cannot stat: ${code}`, { cause: err });
      }
      if (isLink) {
        if (++links > MAX_SYMLINKS)
          throw new HostFileError('SYMLINK_LOOP', hostPath, 'too many levels of symlinks');
        const target = readlinkSync(local);
        if (target.startsWith('/')) done.length = 0;
        todo.unshift(...target.split('/').filter((c) => c !== '' && c !== '.'));
        continue;
      }
      if (todo.length > 0 && !isDir) return null;
      done.push(component);
    }
    return { hostPath: `/${done.join('/')}`, localPath: join(this.root, ...done) };
  }

  /** True when the host path exists (as anything) inside the root. */
  exists(hostPath: string): boolean {
    return this.resolve(hostPath) !== null;
  }

  /**
   * Reads a host file as UTF-8 text, or returns `null` when it does not exist.
   * Throws `HostFileError` for anything refused.
   */
  readText(hostPath: string): HostText | null {
    const resolved = this.resolve(hostPath);
    if (resolved === null) return null;
    let fd: number;
    try {
      // O_NOFOLLOW: the last component was just checked not to be a link; if it was swapped
      // for one since, the open fails instead of following it. O_NONBLOCK: a FIFO put where a
      // file should be does not hang the open.
      fd = openSync(
        resolved.localPath,
        constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK,
      );
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return null;
      if (code === 'ELOOP')
        throw new HostFileError('PATH_ESCAPES_ROOT', hostPath, 'became a symlink while read', {
          cause: err,
        });
      throw new HostFileError('READ_FAILED', hostPath, `cannot open: ${code}`, { cause: err });
    }
    try {
      const st = fstatSync(fd);
      if (!st.isFile())
        throw new HostFileError('NOT_A_REGULAR_FILE', hostPath, 'not a regular file; refused');
      this.checkInsideRoot(fd, hostPath);
      if (st.size > this.maxBytes) throw this.tooLarge(hostPath, st.size);
      // The size can change between fstat and read (a file being written): count as we go.
      const chunks: Buffer[] = [];
      let length = 0;
      for (;;) {
        const chunk = Buffer.alloc(64 * 1024);
        const n = readSync(fd, chunk, 0, chunk.length, null);
        if (n === 0) break;
        length += n;
        if (length > this.maxBytes) throw this.tooLarge(hostPath, length);
        chunks.push(chunk.subarray(0, n));
      }
      let text: string;
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
      } catch (err) {
        throw new HostFileError('FILE_NOT_TEXT', hostPath, 'is not UTF-8 text; refused', {
          cause: err,
        });
      }
      return { hostPath: resolved.hostPath, text };
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Names in a host directory, sorted; `null` when it does not exist (or is not a directory).
   */
  list(hostPath: string): string[] | null {
    const resolved = this.resolve(hostPath);
    if (resolved === null) return null;
    let names: string[];
    try {
      names = readdirSync(resolved.localPath);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTDIR' || code === 'ENOENT') return null;
      throw new HostFileError('READ_FAILED', hostPath, `cannot list: ${code}`, { cause: err });
    }
    if (names.length > MAX_DIR_ENTRIES)
      throw new HostFileError(
        'TOO_MANY_ENTRIES',
        hostPath,
        `holds ${names.length} entries, more than the ${MAX_DIR_ENTRIES} read; refused`,
      );
    return names.sort();
  }

  /** The target of a symlink at the host path (not followed), or `null` if it is not one. */
  linkTarget(hostPath: string): string | null {
    const slash = hostPath.lastIndexOf('/');
    const parent = this.resolve(hostPath.slice(0, slash) || '/');
    if (parent === null) return null;
    const local = join(parent.localPath, hostPath.slice(slash + 1));
    try {
      return lstatSync(local).isSymbolicLink() ? readlinkSync(local) : null;
    } catch {
      return null;
    }
  }

  /**
   * Confirms through /proc that the open file lies inside the root, closing the window between
   * resolving a path and opening it. Skipped where /proc is not mounted.
   */
  private checkInsideRoot(fd: number, hostPath: string): void {
    let opened: string;
    try {
      opened = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      return;
    }
    if (this.root !== '/' && !opened.startsWith(`${this.root}/`))
      throw new HostFileError('PATH_ESCAPES_ROOT', hostPath, 'opened outside the host root');
  }

  private tooLarge(hostPath: string, size: number): HostFileError {
    return new HostFileError(
      'FILE_TOO_LARGE',
      hostPath,
      `is ${size} bytes or more, over the ${this.maxBytes}-byte cap; refused`,
    );
  }
}
