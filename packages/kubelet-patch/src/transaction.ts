import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { PlanError, SystemdBusError, TransactionError } from './errors.js';
import type { HostRoot } from './host-root.js';
import { contentSha256, type FileChange, isLarge, type PatchMode, type Plan } from './plan.js';

/**
 * The transaction around a plan: the state record and original bytes saved before anything is
 * written, atomic writes, daemon-reload and restarts through systemd, the health wait, and the
 * rollback when kubelet does not come back. `revert` undoes it from the state record.
 */

/** What the engine needs from systemd (implemented over D-Bus by `connectSystemd`). */
export interface SystemdControl {
  reload(): Promise<void>;
  /** Restarts a unit (mode `replace`) and resolves with the job's result (`done`, `failed`, …). */
  restartUnit(name: string, options: { timeoutMs: number }): Promise<string>;
  /** Resolves once the unit's ActiveState is `active`; rejects on `failed` or at the timeout. */
  waitActive(name: string, options: { timeoutMs: number }): Promise<void>;
  /** Stops a unit (mode `replace`) and resolves with the job's result. */
  stopUnit(name: string, options: { timeoutMs: number }): Promise<string>;
  close(): void | Promise<void>;
}

/** A file as the state record knows it. */
interface Version {
  readonly sha256: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
}

interface FileRecord {
  readonly path: string;
  /** The file before the patcher first changed it (`null`: it did not exist). */
  readonly original: Version | null;
  /** What the patcher wrote (`null`: it removed the file). */
  readonly applied: Version | null;
}

/** The state record, `<stateDir>/state.json`. */
export interface StateRecord {
  readonly version: 1;
  readonly mode: PatchMode;
  /**
   * `writing` → `written` → `restarting` → `applied`; anything but `applied` means interrupted.
   * `reverting`: a revert or rollback began putting the originals back; until kubelet has been
   * restarted on them the record stays, so a re-run restarts it even when every file already
   * holds its original.
   */
  readonly phase: 'writing' | 'written' | 'restarting' | 'applied' | 'reverting';
  readonly reload: boolean;
  readonly restart: readonly string[];
  readonly files: readonly FileRecord[];
  /** Directories the patcher created (parents first); `revert` removes them when empty. */
  readonly dirs: readonly string[];
  /** Units the patcher installed (see `Plan.installed`): rollback and revert stop them. */
  readonly installed?: readonly string[];
}

/** What the engine is given. */
export interface TransactionContext {
  readonly host: HostRoot;
  /** Host path of the state directory (default `/var/lib/node-patcher`). */
  readonly stateDir: string;
  readonly connectSystemd: () => Promise<SystemdControl>;
  /** Resolves once kubelet answers healthy; rejects (with the reason) at its timeout. */
  readonly waitHealthy: () => Promise<void>;
  /** How long one restart job and the wait for `active` may take. */
  readonly restartTimeoutMs: number;
  /** One line of progress for the operator (stderr). */
  readonly log: (line: string) => void;
}

/** What `applyPlan` / `revertState` did. */
export interface TransactionResult {
  readonly changed: readonly string[];
  readonly restarted: readonly string[];
  readonly notes: readonly string[];
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function statePath(stateDir: string): string {
  return posix.join(stateDir, 'state.json');
}

function originalPath(stateDir: string, digest: string): string {
  return posix.join(stateDir, 'originals', digest);
}

/** Reads and checks the state record; `null` when there is none. */
export function readState(host: HostRoot, stateDir: string): StateRecord | null {
  const file = host.readText(statePath(stateDir));
  if (file === null) return null;
  const bad = (why: string) =>
    new TransactionError(
      'STATE_INVALID',
      `${statePath(stateDir)} is not a state record node-patcher wrote (${why}); move it away to start over`,
    );
  let value: unknown;
  try {
    value = JSON.parse(file.text);
  } catch {
    throw bad('not JSON');
  }
  const v = value as Partial<StateRecord> | null;
  if (v === null || typeof v !== 'object' || v.version !== 1) throw bad('unknown version');
  if (!['image-service', 'containerd-mirror', 'credential-provider'].includes(v.mode as string))
    throw bad('unknown mode');
  if (!['writing', 'written', 'restarting', 'applied', 'reverting'].includes(v.phase as string))
    throw bad('unknown phase');
  if (typeof v.reload !== 'boolean') throw bad('reload');
  const unit = /^[A-Za-z0-9:_.@-]{1,255}\.service$/;
  const units = (x: unknown) =>
    Array.isArray(x) && x.every((u) => typeof u === 'string' && unit.test(u));
  if (!units(v.restart)) throw bad('restart');
  if (v.installed !== undefined && !units(v.installed)) throw bad('installed');
  if (!Array.isArray(v.files)) throw bad('files');
  const normal = (p: unknown) =>
    typeof p === 'string' && p.startsWith('/') && posix.normalize(p) === p;
  if (!Array.isArray(v.dirs) || !v.dirs.every(normal)) throw bad('dirs');
  const version = (x: unknown): boolean =>
    x === null ||
    (typeof x === 'object' &&
      /^[0-9a-f]{64}$/.test(String((x as Version).sha256)) &&
      [(x as Version).mode, (x as Version).uid, (x as Version).gid].every(
        (n) => Number.isSafeInteger(n) && n >= 0,
      ));
  for (const f of v.files) {
    if (
      typeof f?.path !== 'string' ||
      !f.path.startsWith('/') ||
      posix.normalize(f.path) !== f.path
    )
      throw bad('a file path');
    if (!version(f.original) || !version(f.applied)) throw bad(`the record of ${f.path}`);
  }
  return v as StateRecord;
}

function writeState(host: HostRoot, stateDir: string, state: StateRecord): void {
  host.writeAtomic(statePath(stateDir), Buffer.from(`${JSON.stringify(state, null, 2)}\n`), {
    mode: 0o600,
  });
}

/**
 * A file as it is now: its version, and its bytes unless it is larger than the host root reads
 * whole (an executable the patcher installed), which is hashed in chunks instead.
 */
function current(host: HostRoot, path: string): { bytes: Buffer | null; version: Version } | null {
  const st = host.stat(path);
  if (st === null) return null;
  if (st.size > host.maxBytes) {
    const d = host.digest(path);
    if (d === null) return null;
    return { bytes: null, version: { sha256: d.sha256, mode: d.mode, uid: d.uid, gid: d.gid } };
  }
  const f = host.readBytes(path);
  if (f === null) return null;
  return {
    bytes: f.bytes,
    version: { sha256: sha256(f.bytes), mode: f.mode, uid: f.uid, gid: f.gid },
  };
}

/** The original bytes of every file the state record tracks, read back and checked. */
export function originalBytes(
  host: HostRoot,
  stateDir: string,
  state: StateRecord,
): Map<string, Buffer | null> {
  const out = new Map<string, Buffer | null>();
  for (const f of state.files) {
    if (f.original === null) {
      out.set(f.path, null);
      continue;
    }
    const saved = host.readBytes(originalPath(stateDir, f.original.sha256));
    if (saved === null || sha256(saved.bytes) !== f.original.sha256)
      throw new TransactionError(
        'STATE_INVALID',
        `the saved original of ${f.path} is missing or damaged in ${posix.join(stateDir, 'originals')}; nothing was changed`,
      );
    out.set(f.path, saved.bytes);
  }
  return out;
}

/** True for a path systemd reads as a unit or drop-in (a change needs daemon-reload). */
function isUnitFile(path: string): boolean {
  return /\/systemd\/system\//.test(path);
}

/**
 * Applies a plan. In order: refuse a file the patcher would own that someone else wrote;
 * connect to systemd (unreachable: nothing written); save the original bytes and the state
 * record (`writing`); write each file atomically; `written`; daemon-reload when a unit file
 * changed; `restarting`; restart the units and wait for `active` and healthy; `applied`. When
 * a restart or the health wait fails, every tracked file is put back, systemd reloads and
 * restarts again, the state record is removed and `TransactionError('ROLLED_BACK')` is thrown.
 *
 * An empty plan against an `applied` record changes and restarts nothing.
 */
export async function applyPlan(ctx: TransactionContext, plan: Plan): Promise<TransactionResult> {
  const { host, stateDir, log } = ctx;
  const old = readState(host, stateDir);
  if (old !== null && old.mode !== plan.mode)
    throw new TransactionError(
      'MODE_CONFLICT',
      `the node is patched in ${old.mode} mode; run node-patcher revert first, nothing was changed`,
    );
  if (old !== null && old.phase !== 'applied')
    throw new TransactionError(
      'STATE_INVALID',
      'an earlier run was interrupted; recover it first (node-patcher apply does that by itself)',
    );
  if (plan.changes.length === 0)
    return {
      changed: [],
      restarted: [],
      notes: ['already applied: nothing changed, nothing restarted'],
    };
  const tracked = new Map((old?.files ?? []).map((f) => [f.path, f]));
  for (const c of plan.changes)
    if (c.before !== null && c.owned === true && !tracked.has(c.path))
      throw new PlanError(
        'NOT_OURS',
        `${c.path} exists and node-patcher did not write it; it is left alone and nothing was changed`,
      );

  // A plan that restarts nothing (hosts.toml files) does not need systemd at all.
  const needsSystemd = plan.reload || plan.restart.length > 0;
  const systemd = needsSystemd ? await connect(ctx) : NO_SYSTEMD;
  try {
    // Directories that do not exist yet, parents first, so revert can take them away again.
    const dirs = [...(old?.dirs ?? [])];
    for (const path of [
      statePath(stateDir),
      originalPath(stateDir, 'x'),
      ...plan.changes.map((c) => c.path),
    ])
      for (const dir of missingDirs(host, posix.dirname(path)))
        if (!dirs.includes(dir)) dirs.push(dir);
    // The new record: a file already tracked keeps its first original unless the node wrote
    // it again since (a regenerated file: what is there now is the new original).
    const files = new Map(tracked);
    // Each file is read once: what it holds now decides the record and how it is written.
    const before = new Map(plan.changes.map((c) => [c.path, current(host, c.path)]));
    const keeps = (path: string) => {
      const now = before.get(path) ?? null;
      const prev = tracked.get(path);
      return (
        prev !== undefined &&
        (now === null ? prev.applied === null : prev.applied?.sha256 === now.version.sha256)
      );
    };
    // A file too large to save (an executable) is only ever replaced when the patcher wrote it.
    for (const c of plan.changes) {
      const now = before.get(c.path) ?? null;
      if (now !== null && now.bytes === null && !keeps(c.path))
        throw new PlanError(
          'NOT_OURS',
          `${c.path} exists and is not the file node-patcher wrote; it is left alone and nothing was changed`,
        );
    }
    for (const c of plan.changes) {
      const now = before.get(c.path) ?? null;
      const prev = tracked.get(c.path);
      const keep = keeps(c.path);
      if (prev !== undefined && !keep)
        log(
          `${c.path} was rewritten since node-patcher applied (a reboot, the node's bootstrap or an upgrade): applying again, what is there now counts as the original`,
        );
      const original = keep ? (prev?.original ?? null) : (now?.version ?? null);
      if (!keep && now?.bytes)
        host.writeAtomic(originalPath(stateDir, now.version.sha256), now.bytes, { mode: 0o600 });
      const mode = now?.version.mode ?? c.mode;
      files.set(c.path, {
        path: c.path,
        original,
        applied:
          c.after === null
            ? null
            : {
                sha256: contentSha256(c.after),
                mode,
                uid: now?.version.uid ?? 0,
                gid: now?.version.gid ?? 0,
              },
      });
    }
    const reload = plan.reload || (old?.reload ?? false);
    const restart = [...new Set([...(old?.restart ?? []), ...plan.restart])];
    const installed = [...new Set([...(old?.installed ?? []), ...plan.installed])];
    const record = (phase: StateRecord['phase']): StateRecord => ({
      version: 1,
      mode: plan.mode,
      phase,
      reload,
      restart,
      files: [...files.values()],
      dirs,
      ...(installed.length > 0 ? { installed } : {}),
    });
    writeState(host, stateDir, record('writing'));
    const written: FileChange[] = [];
    try {
      for (const c of plan.changes) {
        const now = before.get(c.path) ?? null;
        const options = {
          mode: now?.version.mode ?? c.mode,
          ...(now ? { owner: { uid: now.version.uid, gid: now.version.gid } } : {}),
        };
        if (c.after === null) host.remove(c.path);
        else if (isLarge(c.after)) host.copyAtomic(c.path, c.after, options);
        else host.writeAtomic(c.path, c.after, options);
        written.push(c);
        log(`wrote ${c.path} (${c.why})`);
      }
    } catch (err) {
      // Nothing has read the new files yet: put back what was written, no restart needed.
      undoWrites(ctx, written, before, old, record('writing'));
      throw new TransactionError(
        'WRITE_FAILED',
        `${(err as Error).message}; the files written before it were put back and nothing was restarted`,
        { cause: err },
      );
    }
    writeState(host, stateDir, record('written'));
    try {
      if (plan.reload) {
        log('systemd daemon-reload');
        await systemd.reload();
      }
      writeState(host, stateDir, record('restarting'));
      await restartAll(ctx, systemd, plan.restart);
    } catch (err) {
      const reason = (err as Error).message;
      log(`failed: ${reason}; rolling back`);
      const unfinished = await rollBack(ctx, systemd, record('restarting'));
      throw new TransactionError(
        'ROLLED_BACK',
        unfinished === null
          ? `${reason}; the original files are back and ${plan.restart.join(', ')} restarted on them`
          : `${reason}; the original files are back, but systemd could not restart ${plan.restart.join(', ')} on them (${unfinished}); the next run does that`,
        { cause: err },
      );
    }
    writeState(host, stateDir, record('applied'));
    return { changed: plan.changes.map((c) => c.path), restarted: plan.restart, notes: [] };
  } finally {
    await systemd.close();
  }
}

/** Stands in for a connection when a plan restarts nothing; any use is a bug. */
const NO_SYSTEMD: SystemdControl = {
  reload: () => Promise.reject(new Error('no systemd connection for a plan without restarts')),
  restartUnit: () => Promise.reject(new Error('no systemd connection for a plan without restarts')),
  waitActive: () => Promise.reject(new Error('no systemd connection for a plan without restarts')),
  stopUnit: () => Promise.reject(new Error('no systemd connection for a plan without restarts')),
  close: () => {},
};

/**
 * After a failed write: every file written so far gets the bytes it had before this run (a
 * large file cannot be: the patcher's earlier copy stays replaced, and that is logged), and
 * the state record goes back to what it was (or away, with what this run saved).
 */
function undoWrites(
  ctx: TransactionContext,
  written: Plan['changes'],
  before: ReadonlyMap<string, { bytes: Buffer | null; version: Version } | null>,
  old: StateRecord | null,
  attempted: StateRecord,
): void {
  const { host, stateDir, log } = ctx;
  for (const c of [...written].reverse()) {
    const was = before.get(c.path) ?? null;
    if (was === null) host.remove(c.path);
    else if (was.bytes === null) log(`left the new ${c.path}: too large to have been kept`);
    else
      host.writeAtomic(c.path, was.bytes, {
        mode: was.version.mode,
        owner: { uid: was.version.uid, gid: was.version.gid },
      });
    log(`put back ${c.path}`);
  }
  if (old === null) {
    dropState(ctx, attempted);
    return;
  }
  writeState(host, stateDir, old);
  const kept = new Set(old.files.flatMap((f) => (f.original ? [f.original.sha256] : [])));
  for (const f of attempted.files)
    if (f.original !== null && !kept.has(f.original.sha256))
      host.remove(originalPath(stateDir, f.original.sha256));
  for (const dir of [...attempted.dirs].reverse())
    if (!old.dirs.includes(dir)) host.removeEmptyDir(dir);
}

async function connect(ctx: TransactionContext): Promise<SystemdControl> {
  try {
    return await ctx.connectSystemd();
  } catch (err) {
    throw new TransactionError(
      'SYSTEMD_UNREACHABLE',
      `cannot reach systemd over D-Bus (${(err as Error).message}); nothing was changed`,
      { cause: err },
    );
  }
}

async function restartAll(
  ctx: TransactionContext,
  systemd: SystemdControl,
  units: readonly string[],
): Promise<void> {
  for (const unit of units) {
    ctx.log(`restarting ${unit}`);
    const result = await systemd.restartUnit(unit, { timeoutMs: ctx.restartTimeoutMs });
    if (result !== 'done') throw new Error(`the restart job of ${unit} ended "${result}"`);
    await systemd.waitActive(unit, { timeoutMs: ctx.restartTimeoutMs });
  }
  if (units.length > 0) {
    ctx.log('waiting for kubelet healthz');
    await ctx.waitHealthy();
  }
}

/** A file `restoreFiles` put back, with what it held before, to undo a half-done restore. */
interface Restored {
  readonly path: string;
  readonly was: { bytes: Buffer | null; version: Version };
}

/**
 * Puts every tracked file back as it was before the patcher (when it still holds what the
 * patcher wrote; a file someone else changed since is left and reported). When a write fails
 * half-way (a full disk), the files it already put back get the patcher's bytes again, so the
 * node stays as it was (patched and running), and `WRITE_FAILED` is thrown.
 */
function restoreFiles(
  ctx: TransactionContext,
  state: StateRecord,
): { restored: string[]; left: string[] } {
  const { host, stateDir, log } = ctx;
  const originals = originalBytes(host, stateDir, state);
  const done: Restored[] = [];
  const left: string[] = [];
  try {
    for (const f of [...state.files].reverse()) {
      const now = current(host, f.path);
      const nowSha = now?.version.sha256 ?? null;
      if (nowSha === (f.original?.sha256 ?? null)) continue;
      // While writing, a file may still hold its original: only bytes we wrote are replaced.
      if (nowSha !== (f.applied?.sha256 ?? null)) {
        left.push(f.path);
        log(`left ${f.path}: changed by something else since node-patcher wrote it`);
        continue;
      }
      const bytes = originals.get(f.path) ?? null;
      if (f.original === null || bytes === null) host.remove(f.path);
      else
        host.writeAtomic(f.path, bytes, {
          mode: f.original.mode,
          owner: { uid: f.original.uid, gid: f.original.gid },
        });
      done.push({ path: f.path, was: now ?? { bytes: null, version: ABSENT } });
      log(`restored ${f.path}`);
    }
  } catch (err) {
    for (const r of [...done].reverse()) {
      try {
        if (r.was.version === ABSENT) host.remove(r.path);
        else if (r.was.bytes === null)
          log(`left ${r.path} as the original: too large to have been kept`);
        else
          host.writeAtomic(r.path, r.was.bytes, {
            mode: r.was.version.mode,
            owner: { uid: r.was.version.uid, gid: r.was.version.gid },
          });
      } catch (undo) {
        log(`could not put back ${r.path}: ${(undo as Error).message}`);
      }
    }
    throw new TransactionError(
      'WRITE_FAILED',
      `${(err as Error).message}; the files already restored hold node-patcher's version again, nothing was restarted, and the state record is kept: run revert again once the write can succeed`,
      { cause: err },
    );
  }
  return { restored: done.map((r) => r.path), left };
}

/** Marks a file that did not exist before it was restored (the patcher had removed it). */
const ABSENT: Version = { sha256: '', mode: 0, uid: 0, gid: 0 };

/**
 * True when systemd was not reached or did not answer, so whether kubelet restarted is not
 * known: the state record stays for the next run. A job that ended badly, a unit that went
 * `failed` or a health check that failed are answers: those are reported, not retried.
 */
function unanswered(err: unknown): boolean {
  return err instanceof SystemdBusError && err.code !== 'UNIT_FAILED' && err.code !== 'TIMEOUT';
}

/** Whether a reload is due on the way back: a unit file restored now or in an interrupted run. */
function reloadDue(state: StateRecord, restored: readonly string[]): boolean {
  return (
    state.reload ||
    restored.some(isUnitFile) ||
    (state.phase === 'reverting' && state.files.some((f) => isUnitFile(f.path)))
  );
}

/**
 * Puts the originals back after a failed restart, restarts on them and stops what the patcher
 * installed. Returns null when done, or why systemd could not be asked to restart (the record
 * then stays `reverting`, the installed units keep running, and the next run finishes).
 */
async function rollBack(
  ctx: TransactionContext,
  systemd: SystemdControl,
  state: StateRecord,
): Promise<string | null> {
  const reverting: StateRecord = { ...state, phase: 'reverting' };
  writeState(ctx.host, ctx.stateDir, reverting);
  let restored: string[];
  try {
    ({ restored } = restoreFiles(ctx, state));
  } catch (err) {
    // the new files stay, so does the record as it was: the next run rolls back again
    writeState(ctx.host, ctx.stateDir, state);
    throw err;
  }
  try {
    if (reloadDue(state, restored)) await systemd.reload();
    await restartAll(ctx, systemd, kept(state));
  } catch (err) {
    ctx.log(`after the rollback: ${(err as Error).message}`);
    if (unanswered(err)) return (err as Error).message;
  }
  await stopInstalled(ctx, systemd, state);
  dropState(ctx, state);
  return null;
}

/** The units to restart on the original files: all but the ones the patcher installed. */
function kept(state: StateRecord): string[] {
  return state.restart.filter((u) => !(state.installed ?? []).includes(u));
}

/**
 * Stops the units the patcher installed, once kubelet no longer points at them. Their unit
 * files are gone by now; systemd keeps a running unit loaded until it stops. A failure is
 * logged, not thrown: the node already runs on its original configuration.
 */
async function stopInstalled(
  ctx: TransactionContext,
  systemd: SystemdControl,
  state: StateRecord,
): Promise<void> {
  for (const unit of state.installed ?? []) {
    ctx.log(`stopping ${unit}`);
    try {
      const result = await systemd.stopUnit(unit, { timeoutMs: ctx.restartTimeoutMs });
      if (result !== 'done') ctx.log(`the stop job of ${unit} ended "${result}"`);
    } catch (err) {
      ctx.log(`could not stop ${unit}: ${(err as Error).message}`);
    }
  }
}

function dropState(ctx: TransactionContext, state: StateRecord): void {
  for (const f of state.files)
    if (f.original !== null) ctx.host.remove(originalPath(ctx.stateDir, f.original.sha256));
  ctx.host.remove(statePath(ctx.stateDir));
  for (const dir of ['guard', 'originals']) ctx.host.removeEmptyDir(posix.join(ctx.stateDir, dir));
  for (const dir of [...state.dirs].reverse()) ctx.host.removeEmptyDir(dir);
}

/** The directories on the way to `dir` that do not exist yet, outermost first. */
function missingDirs(host: HostRoot, dir: string): string[] {
  const out: string[] = [];
  for (let d = dir; d !== '/' && !host.exists(d); d = posix.dirname(d)) out.unshift(d);
  return out;
}

/**
 * Finishes an interrupted run (a state record not `applied`): puts the originals back,
 * reloads, restarts and waits for health, as `revert` does. The caller then plans afresh.
 * Returns null when there was nothing to recover.
 */
export async function recoverInterrupted(
  ctx: TransactionContext,
): Promise<TransactionResult | null> {
  const state = readState(ctx.host, ctx.stateDir);
  if (state === null || state.phase === 'applied') return null;
  ctx.log(`an earlier run stopped while ${state.phase}: rolling back from the state record`);
  return revertState(ctx);
}

/**
 * `revert`: restores every file the state record tracks to its original bytes, mode and owner
 * (removing files the patcher created), reloads when a unit file changes, restarts the units
 * and waits for health, then removes the state record. No record: nothing to do.
 */
export async function revertState(ctx: TransactionContext): Promise<TransactionResult> {
  const state = readState(ctx.host, ctx.stateDir);
  if (state === null)
    return { changed: [], restarted: [], notes: ['nothing to revert: no state record'] };
  originalBytes(ctx.host, ctx.stateDir, state);
  const systemd =
    state.reload || state.restart.length > 0 || (state.installed ?? []).length > 0
      ? await connect(ctx)
      : NO_SYSTEMD;
  try {
    // From here until kubelet runs on the originals, a re-run must restart it
    if (state.phase !== 'reverting')
      writeState(ctx.host, ctx.stateDir, { ...state, phase: 'reverting' });
    let restoredNow: { restored: string[]; left: string[] };
    try {
      restoredNow = restoreFiles(ctx, state);
    } catch (err) {
      writeState(ctx.host, ctx.stateDir, state);
      throw err;
    }
    const { restored, left } = restoredNow;
    const notes = left.map((p) => `${p} was changed by something else since; left as it is`);
    if (restored.length === 0 && state.phase !== 'reverting') {
      await stopInstalled(ctx, systemd, state);
      dropState(ctx, state);
      return {
        changed: [],
        restarted: [],
        notes: [...notes, 'the files already hold their originals'],
      };
    }
    try {
      if (reloadDue(state, restored)) {
        ctx.log('systemd daemon-reload');
        await systemd.reload();
      }
      await restartAll(ctx, systemd, kept(state));
    } catch (err) {
      if (unanswered(err))
        throw new TransactionError(
          'REVERT_UNHEALTHY',
          `the original files are back, but systemd did not restart ${kept(state).join(', ') || 'anything'} on them (${(err as Error).message}); run node-patcher revert again to finish`,
          { cause: err },
        );
      await stopInstalled(ctx, systemd, state);
      dropState(ctx, state);
      throw new TransactionError(
        'REVERT_UNHEALTHY',
        `the original files are back, but ${(err as Error).message}`,
        { cause: err },
      );
    }
    await stopInstalled(ctx, systemd, state);
    dropState(ctx, state);
    return {
      changed: restored,
      restarted: kept(state),
      notes: restored.length === 0 ? [...notes, 'finished an interrupted revert'] : notes,
    };
  } finally {
    await systemd.close();
  }
}
