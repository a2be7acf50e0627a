import { readFile, stat } from 'node:fs/promises';

/**
 * A file read again only when it changed: `stat` (which follows symlinks, so a Kubernetes
 * secret mount's `..data` swap counts) is compared with the last read.
 */
export class WatchedFile {
  readonly path: string;
  #stamp = '';
  #text = '';

  constructor(path: string) {
    this.path = path;
  }

  /** The file's text, re-read if its inode, size, mtime or ctime changed since the last read. */
  async read(): Promise<string> {
    const st = await stat(this.path);
    const stamp = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    if (stamp !== this.#stamp) {
      this.#text = await readFile(this.path, 'utf8');
      this.#stamp = stamp;
    }
    return this.#text;
  }
}
