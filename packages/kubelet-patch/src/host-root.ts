import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
  realpathSync,
  renameSync,
  rmdirSync,
  rmSync,
  type Stats,
  statSync,
  writeSync,
} from 'node:fs';
import { join, posix } from 'node:path';
import { HostFileError, quote } from './errors.js';

/** Largest file read from the host, in bytes (1 MiB). */
export const MAX_FILE_BYTES = 1024 * 1024;

/** Largest file hashed or copied in streaming (an executable), in bytes (1 GiB). */
export const MAX_STREAMED_BYTES = 1024 * 1024 * 1024;

/** Bytes read or written per system call when streaming. */
const CHUNK_BYTES = 1024 * 1024;

/** A host file known by its digest, for files too large to hold in memory. */
export interface HostDigest extends ResolvedPath {
  readonly sha256: string;
  readonly size: number;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
}

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

/** A file read from the host, with what `revert` needs to put it back exactly. */
export interface HostBytes extends ResolvedPath {
  readonly bytes: Buffer;
  /** Permission bits (`st_mode & 0o7777`). */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
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
   * Reads a host file as UTF-8 text (a leading byte-order mark dropped), or returns `null` when
   * it does not exist. Throws `HostFileError` for anything refused.
   */
  readText(hostPath: string): HostText | null {
    const file = this.readBytes(hostPath);
    if (file === null) return null;
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(file.bytes);
    } catch (err) {
      throw new HostFileError('FILE_NOT_TEXT', hostPath, 'is not UTF-8 text; refused', {
        cause: err,
      });
    }
    return { hostPath: file.hostPath, text };
  }

  /**
   * Reads a host file's bytes and ownership, or returns `null` when it does not exist. Throws
   * `HostFileError` for anything refused (a symlink out of the root, not a regular file, over
   * the size cap).
   */
  readBytes(hostPath: string): HostBytes | null {
    return this.withOpenFile(hostPath, (fd, resolved, st) => {
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
      return {
        hostPath: resolved.hostPath,
        localPath: resolved.localPath,
        bytes: Buffer.concat(chunks),
        mode: st.mode & 0o7777,
        uid: st.uid,
        gid: st.gid,
      };
    });
  }

  /**
   * The size, mode and owner of a host file, or `null` when it does not exist; like
   * {@link readBytes} without reading it (and without its size cap).
   */
  stat(
    hostPath: string,
  ): (ResolvedPath & { size: number; mode: number; uid: number; gid: number }) | null {
    return this.withOpenFile(hostPath, (_fd, resolved, st) => ({
      ...resolved,
      size: st.size,
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
    }));
  }

  /**
   * The sha256 of a host file read in chunks (an executable too large for {@link readBytes}),
   * with its mode and owner; `null` when it does not exist. Refused over
   * {@link MAX_STREAMED_BYTES}.
   */
  digest(hostPath: string): HostDigest | null {
    return this.withOpenFile(hostPath, (fd, resolved, st) => {
      const { sha256, size } = hashChunks(fd, hostPath);
      return {
        ...resolved,
        sha256,
        size,
        mode: st.mode & 0o7777,
        uid: st.uid,
        gid: st.gid,
      };
    });
  }

  /** Opens a resolved regular file the way {@link readBytes} does and hands it to `use`. */
  private withOpenFile<T>(
    hostPath: string,
    use: (fd: number, resolved: ResolvedPath, st: Stats) => T,
  ): T | null {
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
      return use(fd, resolved, st);
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
   * Creates a host directory and its missing parents (mode 0755, like `mkdir -p`), resolving
   * each existing component the way {@link resolve} does, so nothing is created outside the
   * root. Returns the resolved directory.
   */
  ensureDir(hostPath: string): ResolvedPath {
    const existing = this.resolve(hostPath);
    if (existing !== null) {
      if (!statSync(existing.localPath).isDirectory())
        throw new HostFileError('NOT_A_REGULAR_FILE', hostPath, 'is not a directory; refused');
      return existing;
    }
    const parent = this.ensureDir(posix.dirname(hostPath));
    const name = posix.basename(hostPath);
    const local = join(parent.localPath, name);
    try {
      mkdirSync(local, { mode: 0o755 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw writeFailed(hostPath, err);
    }
    const made = this.resolve(posix.join(parent.hostPath, name));
    if (made === null) throw new HostFileError('READ_FAILED', hostPath, 'vanished after mkdir');
    return made;
  }

  /**
   * Replaces a host file atomically: the bytes go to a temporary file in the same directory,
   * which is fsynced, given its mode (and owner, when `owner` is set and differs), renamed over
   * the target, and the directory fsynced. A reader sees the old file or the new one, never a
   * mix, and a crash leaves one of the two. The target's final component is replaced, not
   * followed: pass the canonical path from {@link readBytes}.
   */
  writeAtomic(
    hostPath: string,
    bytes: Uint8Array,
    options: { mode: number; owner?: { uid: number; gid: number } },
  ): void {
    this.replaceAtomic(hostPath, options, (fd) => {
      let off = 0;
      while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    });
  }

  /**
   * Replaces a host file atomically, as {@link writeAtomic} does, with a copy of a local file
   * (an executable too large to hold in memory) made in chunks. The copy's sha256 must be
   * `sha256`, or nothing is replaced (the source changed since it was planned).
   */
  copyAtomic(
    hostPath: string,
    source: { localPath: string; sha256: string },
    options: { mode: number; owner?: { uid: number; gid: number } },
  ): void {
    this.replaceAtomic(hostPath, options, (fd) => {
      const input = openSync(source.localPath, constants.O_RDONLY);
      try {
        const { sha256: got } = hashChunks(input, hostPath, (chunk) => {
          let off = 0;
          while (off < chunk.length) off += writeSync(fd, chunk, off, chunk.length - off);
        });
        if (got !== source.sha256)
          throw new HostFileError(
            'WRITE_FAILED',
            hostPath,
            `the source ${quote(source.localPath)} changed while copied (sha256 ${got}, planned ${source.sha256}); not replaced`,
          );
      } finally {
        closeSync(input);
      }
    });
  }

  /** The temp-file, fsync, chmod/chown, rename, fsync-directory sequence of the writers. */
  private replaceAtomic(
    hostPath: string,
    options: { mode: number; owner?: { uid: number; gid: number } },
    fill: (fd: number) => void,
  ): void {
    const dir = this.ensureDir(posix.dirname(hostPath));
    const target = join(dir.localPath, posix.basename(hostPath));
    const temp = join(
      dir.localPath,
      `.${posix.basename(hostPath)}.np-${randomBytes(6).toString('hex')}`,
    );
    try {
      const fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
      try {
        fill(fd);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      const owner = options.owner;
      if (owner !== undefined) {
        const st = statSync(temp);
        if (st.uid !== owner.uid || st.gid !== owner.gid) chownSync(temp, owner.uid, owner.gid);
      }
      chmodSync(temp, options.mode & 0o7777);
      renameSync(temp, target);
      syncDir(dir.localPath);
    } catch (err) {
      rmSync(temp, { force: true });
      throw writeFailed(hostPath, err);
    }
  }

  /** Removes a host file (not a directory); absent is fine. The directory is fsynced. */
  remove(hostPath: string): void {
    const parent = this.resolve(posix.dirname(hostPath));
    if (parent === null) return;
    const local = join(parent.localPath, posix.basename(hostPath));
    try {
      if (lstatSync(local).isDirectory())
        throw new HostFileError('NOT_A_REGULAR_FILE', hostPath, 'is a directory; not removed');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    try {
      rmSync(local, { force: true });
      syncDir(parent.localPath);
    } catch (err) {
      throw writeFailed(hostPath, err);
    }
  }

  /** Removes a host directory if it is empty; anything else is left alone. */
  removeEmptyDir(hostPath: string): void {
    const dir = this.resolve(hostPath);
    if (dir === null) return;
    try {
      rmdirSync(dir.localPath);
    } catch {
      // not empty, not a directory, gone: left as it is
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

/**
 * Reads an open file to its end in 1 MiB chunks, hashing them and handing each to `each` (a
 * copy), without ever holding more than one chunk. Refused over {@link MAX_STREAMED_BYTES}.
 */
export function hashChunks(
  fd: number,
  name: string,
  each?: (chunk: Buffer) => void,
): { sha256: string; size: number } {
  const hash = createHash('sha256');
  const chunk = Buffer.alloc(CHUNK_BYTES);
  let size = 0;
  for (;;) {
    const n = readSync(fd, chunk, 0, chunk.length, null);
    if (n === 0) break;
    size += n;
    if (size > MAX_STREAMED_BYTES)
      throw new HostFileError(
        'FILE_TOO_LARGE',
        name,
        `is over the ${MAX_STREAMED_BYTES}-byte cap for streamed files; refused`,
      );
    hash.update(chunk.subarray(0, n));
    each?.(chunk.subarray(0, n));
  }
  return { sha256: hash.digest('hex'), size };
}

function syncDir(local: string): void {
  const fd = openSync(local, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function writeFailed(hostPath: string, err: unknown): HostFileError {
  if (err instanceof HostFileError) return err;
  const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
  return new HostFileError('WRITE_FAILED', hostPath, `cannot write: ${code}`, { cause: err });
}
