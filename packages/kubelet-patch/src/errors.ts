/** Why a file on the host was not read; stable, so callers can `switch` on it. */
export type HostFileCode =
  | 'PATH_NOT_ABSOLUTE'
  | 'PATH_ESCAPES_ROOT'
  | 'SYMLINK_LOOP'
  | 'NOT_A_REGULAR_FILE'
  | 'FILE_TOO_LARGE'
  | 'FILE_NOT_TEXT'
  | 'TOO_MANY_ENTRIES'
  | 'READ_FAILED'
  | 'WRITE_FAILED';

/** Why `detectLayout` refused the node as a whole. */
export type LayoutCode = 'HOST_ROOT_INVALID' | 'IMMUTABLE_HOST' | 'UNKNOWN_LAYOUT';

/** Why a conversation with systemd over D-Bus failed; stable, so callers can `switch` on it. */
export type SystemdBusCode =
  | 'CONNECT_FAILED'
  | 'AUTH_FAILED'
  | 'NOT_A_BUS'
  | 'DISCONNECTED'
  | 'TIMEOUT'
  | 'CALL_FAILED'
  | 'BAD_REPLY'
  | 'UNIT_FAILED';

/** Longest piece of host input quoted back in a message. */
const QUOTE_MAX = 160;

/**
 * Quotes untrusted input for an error message: JSON-escaped (no control characters reach a
 * log line) and cut to a bounded length.
 */
export function quote(input: string): string {
  const cut = input.length > QUOTE_MAX ? `${input.slice(0, QUOTE_MAX)}…` : input;
  return JSON.stringify(cut);
}

/**
 * Makes host input safe for a one-line message without quoting it: control characters (a
 * newline, an escape sequence in a file name) are written as JSON escapes.
 */
export function printable(input: string): string {
  const cut = input.length > QUOTE_MAX * 2 ? `${input.slice(0, QUOTE_MAX * 2)}…` : input;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
  return cut.replace(/[\u0000-\u001f\u007f]/g, (c) => JSON.stringify(c).slice(1, -1));
}

/** Base class of every error this package throws. */
export abstract class KubeletPatchError extends Error {
  abstract readonly code: HostFileCode | LayoutCode | PlanCode | TransactionCode | SystemdBusCode;
}

/**
 * A file under the host root was refused: it resolves outside the root, is not a regular
 * file, is larger than the cap, or is not UTF-8 text. Nothing was read from it.
 *
 * @example
 * try { await detectLayout('/host') } catch (e) {
 *   if (e instanceof HostFileError && e.code === 'PATH_ESCAPES_ROOT') ...
 * }
 */
export class HostFileError extends KubeletPatchError {
  override readonly name = 'HostFileError';
  readonly code: HostFileCode;
  /** The path as the host sees it (not prefixed by the host root). */
  readonly hostPath: string;

  constructor(code: HostFileCode, hostPath: string, reason: string, options?: ErrorOptions) {
    super(`${quote(hostPath)} on the host: ${reason}`, options);
    this.code = code;
    this.hostPath = hostPath;
  }
}

/**
 * The node's kubelet layout is one the patcher must not or cannot change: an immutable host
 * (Bottlerocket, Talos), or a layout it does not recognise. The message says what was found
 * and what to use instead.
 */
export class LayoutError extends KubeletPatchError {
  override readonly name = 'LayoutError';
  readonly code: LayoutCode;
  /** The operating system from os-release (`ID`), when one was found. */
  readonly os: string | null;
  /** What detection found on the host, one short line each, for the operator. */
  readonly found: readonly string[];

  constructor(code: LayoutCode, fields: { os: string | null; found: string[] }, message: string) {
    super(message);
    this.code = code;
    this.os = fields.os;
    this.found = fields.found;
  }
}

/** Why a change to the node was refused before anything was written. */
export type PlanCode = 'BAD_OPTION' | 'CONFIG_INVALID' | 'UNSAFE_EDIT' | 'NOT_OURS';

/**
 * `apply` refused to plan a change: a bad option, a kubelet config file that does not parse,
 * an edit that would change more than it means to, a file it did not write in its way.
 * Nothing was written.
 */
export class PlanError extends KubeletPatchError {
  override readonly name = 'PlanError';
  readonly code: PlanCode;

  constructor(code: PlanCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** Why a transaction stopped. */
export type TransactionCode =
  | 'STATE_INVALID'
  | 'MODE_CONFLICT'
  | 'ENDPOINT_DOWN'
  | 'SYSTEMD_UNREACHABLE'
  | 'ROLLED_BACK'
  | 'REVERT_UNHEALTHY'
  | 'WRITE_FAILED'
  | 'FAILED_BEFORE';

/** A transaction failed; `code` says at which step, the message what happened to the files. */
export class TransactionError extends KubeletPatchError {
  override readonly name = 'TransactionError';
  readonly code: TransactionCode;

  constructor(code: TransactionCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

/**
 * Talking to systemd over D-Bus failed: the socket is missing or refused us, authentication
 * was rejected, the other end is not what the connection mode expects (a bus daemon versus
 * PID 1's private socket), a call or a job did not finish in time, systemd answered a call with
 * an error (`dbusName`), or a unit ended up `failed`.
 *
 * @example
 * try { await systemd.reload() } catch (e) {
 *   if (e instanceof SystemdBusError && e.dbusName === 'org.freedesktop.DBus.Error.AccessDenied') ...
 * }
 */
export class SystemdBusError extends KubeletPatchError {
  override readonly name = 'SystemdBusError';
  readonly code: SystemdBusCode;
  /** The D-Bus error name systemd (or the bus) answered with, for `CALL_FAILED` and `NOT_A_BUS`. */
  readonly dbusName: string | null;
  /** The unit concerned, when there is one. */
  readonly unit: string | null;
  /** The unit's last `ActiveState` seen, for `UNIT_FAILED` and a `waitActive` timeout. */
  readonly activeState: string | null;

  constructor(
    code: SystemdBusCode,
    message: string,
    fields: { dbusName?: string | null; unit?: string | null; activeState?: string | null } = {},
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.code = code;
    this.dbusName = fields.dbusName ?? null;
    this.unit = fields.unit ?? null;
    this.activeState = fields.activeState ?? null;
  }
}
