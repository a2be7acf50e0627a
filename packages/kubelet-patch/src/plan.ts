import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync } from 'node:fs';
import { createTwoFilesPatch } from 'diff';
import { hashChunks } from './host-root.js';

/** What `apply` can switch a node to. */
export type PatchMode = 'image-service' | 'containerd-mirror' | 'credential-provider';

/**
 * Content too large to hold in memory (an executable the patcher installs): known by its digest
 * and copied from `localPath` in chunks.
 */
export interface LargeContent {
  readonly sha256: string;
  readonly size: number;
  /** The file as this process sees it: the source of a copy, or the host file under the root. */
  readonly localPath: string;
}

/** A file's bytes, or a digest of them for a large file. */
export type Content = Buffer | LargeContent;

/** True for {@link LargeContent}. */
export function isLarge(content: Content | null): content is LargeContent {
  return content !== null && !Buffer.isBuffer(content);
}

/** The sha256 of content, hex. */
export function contentSha256(content: Content): string {
  return isLarge(content) ? content.sha256 : createHash('sha256').update(content).digest('hex');
}

/** A local file (the executable to install) as {@link LargeContent}, hashed in 1 MiB chunks. */
export function largeContentOf(localPath: string): LargeContent {
  const fd = openSync(localPath, 'r');
  try {
    if (!fstatSync(fd).isFile()) throw new TypeError(`${localPath} is not a regular file`);
    return { ...hashChunks(fd, localPath), localPath };
  } finally {
    closeSync(fd);
  }
}

/** One file the patch writes, creates or removes; every path is a host path. */
export interface FileChange {
  /** The canonical host path (symlinks resolved inside the host root). */
  readonly path: string;
  /** The bytes there now, or `null` when the file does not exist. */
  readonly before: Content | null;
  /** The bytes to leave there, or `null` to remove the file. */
  readonly after: Content | null;
  /** Permission bits for a file that does not exist yet (an existing file keeps its own). */
  readonly mode: number;
  /** One line for the operator: why this file changes. */
  readonly why: string;
  /**
   * The patcher owns this file whole (a drop-in, a guard copy, a hosts.toml it adds): if it
   * exists and the state record does not say the patcher wrote it, it is someone else's and
   * `apply` refuses to overwrite it.
   */
  readonly owned?: boolean;
  /** The patcher's own bookkeeping (a guard copy): the diff names it in one line. */
  readonly brief?: boolean;
}

/**
 * Everything one `apply` would do to a node: the file changes, computed from the files as they
 * are now, and what systemd must do for kubelet (or containerd) to read them.
 */
export interface Plan {
  readonly mode: PatchMode;
  /** Only real changes: a file whose bytes would stay the same is not listed. */
  readonly changes: readonly FileChange[];
  /** A unit file or drop-in changes, so systemd must re-read them (`daemon-reload`) first. */
  readonly reload: boolean;
  /** Units to restart, in order, once the files are written (empty: nothing reads them late). */
  readonly restart: readonly string[];
  /** Which route the planner took and why, one line each, for the operator. */
  readonly notes: readonly string[];
  /**
   * Units whose unit files this plan adds (the image service it installs): a rollback or
   * `revert` stops them instead of restarting them.
   */
  readonly installed: readonly string[];
}

/** A plan with the changes that would write the same bytes removed. */
export function plan(fields: {
  mode: PatchMode;
  changes: readonly FileChange[];
  reload?: boolean;
  restart: readonly string[];
  notes: readonly string[];
  installed?: readonly string[];
}): Plan {
  const changes = fields.changes.filter((c) => !sameBytes(c.before, c.after));
  return {
    mode: fields.mode,
    changes,
    reload: changes.length > 0 && fields.reload === true,
    restart: fields.restart,
    notes: fields.notes,
    installed: fields.installed ?? [],
  };
}

/** True when both are absent or hold the same bytes. */
export function sameBytes(a: Content | null, b: Content | null): boolean {
  if (a === null || b === null) return a === b;
  if (isLarge(a) || isLarge(b)) return contentSha256(a) === contentSha256(b);
  return a.equals(b);
}

/**
 * The plan's changes as one unified diff (`--dry-run`), paths as the host sees them. A file
 * that is not UTF-8 text is described in one line instead of dumped.
 */
export function renderDiff(changes: readonly FileChange[]): string {
  let out = '';
  for (const change of changes) {
    const before = textOf(change.before);
    const after = textOf(change.after);
    if (change.brief) {
      out += `${change.after === null ? 'remove' : change.before === null ? 'create' : 'replace'} ${change.path} (${change.why}, ${describe(change.after)})\n`;
      continue;
    }
    if (before === undefined || after === undefined) {
      out += `Binary ${change.path}: ${describe(change.before)} -> ${describe(change.after)}\n`;
      continue;
    }
    out += createTwoFilesPatch(
      change.before === null ? '/dev/null' : `a${change.path}`,
      change.after === null ? '/dev/null' : `b${change.path}`,
      before,
      after,
      undefined,
      undefined,
      { context: 3 },
    ).replace(/^=+\n/, '');
  }
  return out;
}

function textOf(bytes: Content | null): string | undefined {
  if (bytes === null) return '';
  if (isLarge(bytes)) return undefined;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}

function describe(bytes: Content | null): string {
  if (bytes === null) return 'absent';
  if (isLarge(bytes)) return `${bytes.size} bytes, sha256 ${bytes.sha256.slice(0, 12)}`;
  return `${bytes.length} bytes`;
}
