/** One structured log line: JSON on stdout, `time`, `level`, `msg` and the fields. */
export type Log = (
  level: 'info' | 'warn' | 'error',
  msg: string,
  fields?: Record<string, unknown>,
) => void;

export const log: Log = (level, msg, fields = {}) => {
  process.stdout.write(
    `${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`,
  );
};
