import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Every entry under a host root: type, permissions, owner, and content digest or link target;
 * what "byte-identical after revert" is checked against. `skip` leaves out a subtree by host
 * path (e.g. `/run`, where a stand-in service keeps its socket).
 */
export function snapshot(root: string, skip: readonly string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string, rel: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const st = lstatSync(path);
      const key = `${rel}/${name}`;
      if (skip.includes(key)) continue;
      const meta = `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
      if (st.isSymbolicLink()) out[key] = `link ${readlinkSync(path)}`;
      else if (st.isDirectory()) {
        out[key] = `dir ${meta}`;
        walk(path, key);
      } else if (st.isSocket()) out[key] = 'socket';
      else
        out[key] = `file ${meta} ${createHash('sha256').update(readFileSync(path)).digest('hex')}`;
    }
  };
  walk(root, '');
  return out;
}

/**
 * A snapshot without the failure record (`/var/lib/node-patcher/failed.json`) and the
 * directories made only to hold it: after a rollback, everything else is as it was.
 */
export function withoutFailureRecord(
  snap: Record<string, string>,
  before: Record<string, string>,
): Record<string, string> {
  const out = { ...snap };
  delete out['/var/lib/node-patcher/failed.json'];
  for (const dir of ['/var', '/var/lib', '/var/lib/node-patcher'])
    if (!(dir in before)) delete out[dir];
  return out;
}
