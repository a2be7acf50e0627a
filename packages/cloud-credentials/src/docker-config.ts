import { spawn } from 'node:child_process';
import { CredentialsError } from './errors.js';
import { identityOf } from './identity.js';
import type { CredentialSource, CredentialTarget, RegistryCredentials } from './types.js';
import { WatchedFile } from './watched-file.js';

/** The parts of a docker `config.json` that hold credentials. */
export interface DockerConfig {
  readonly auths?: Readonly<
    Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>
  >;
  readonly credHelpers?: Readonly<Record<string, string>>;
  readonly credsStore?: string;
}

export interface DockerConfigSourceOptions {
  /** Path of a `config.json`, re-read when it changes. One of `configFile` and `config`. */
  readonly configFile?: string;
  /** A parsed config. */
  readonly config?: DockerConfig;
  /** How long helper and file answers are reused (their expiry is not known). Default 60 s. */
  readonly ttlMs?: number;
  /** Longest a `docker-credential-*` helper may run. Default 10 s. */
  readonly helperTimeoutMs?: number;
  /** Environment for helpers (their `PATH` finds them). Default: this process's. */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Clock in milliseconds. Default `Date.now`. */
  readonly now?: () => number;
}

/** The key docker keeps Docker Hub credentials under. */
const DOCKER_HUB_KEY = 'https://index.docker.io/v1/';
const DOCKER_HUB_NAMES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);
const HELPER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
/** What helpers print when they have nothing for the server (docker-credential-helpers). */
const NOT_FOUND = 'credentials not found in native keychain';

/**
 * Credentials the way docker finds them: `credHelpers[<registry>]` first, else `credsStore`
 * for everything, else the `auths` entry (`auth` = base64 `user:password`, or `username` and
 * `password`). Helpers speak the docker-credential-helper protocol: `docker-credential-<name>
 * get`, the server URL on stdin, `{"Username","Secret"}` on stdout.
 *
 * @throws TypeError for options that are not one config or a bad helper name.
 */
export function createDockerConfigSource(options: DockerConfigSourceOptions): CredentialSource {
  if ((options.configFile === undefined) === (options.config === undefined)) {
    throw new TypeError('docker-config needs exactly one of configFile and config');
  }
  const ttlMs = options.ttlMs ?? 60_000;
  const helperTimeoutMs = options.helperTimeoutMs ?? 10_000;
  const now = options.now ?? Date.now;
  const file = options.configFile === undefined ? undefined : new WatchedFile(options.configFile);
  const fixed = options.config === undefined ? undefined : checkConfig(options.config, 'config');

  return {
    kind: 'docker-config',
    identity: identityOf('docker-config', { file: options.configFile, config: options.config }),
    cacheable: true,
    async fetch(target: CredentialTarget): Promise<RegistryCredentials> {
      const registry = target.registry;
      const fields = { provider: 'docker-config', registry };
      const config = fixed ?? (await readConfig(file as WatchedFile, fields));
      const expiresAt = new Date(now() + ttlMs);
      const helper = helperFor(config, registry);
      if (helper !== undefined) {
        const server = DOCKER_HUB_NAMES.has(registry) ? DOCKER_HUB_KEY : registry;
        const got = await runHelper(helper, server, helperTimeoutMs, options.env, fields);
        return { ...got, expiresAt };
      }
      const entry = authsEntry(config, registry);
      if (entry === undefined) {
        throw new CredentialsError(
          'CREDENTIALS_UNAVAILABLE',
          fields,
          'the docker config has no auths entry, credHelpers entry or credsStore for it',
        );
      }
      return { ...decodeAuth(entry, fields), expiresAt };
    },
  };
}

async function readConfig(
  file: WatchedFile,
  fields: { provider: string; registry: string },
): Promise<DockerConfig> {
  let text: string;
  try {
    text = await file.read();
  } catch (err) {
    throw new CredentialsError(
      'CREDENTIALS_UNAVAILABLE',
      fields,
      `cannot read docker config ${file.path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
      { cause: err },
    );
  }
  try {
    return checkConfig(JSON.parse(text), file.path);
  } catch (err) {
    throw new CredentialsError(
      'CONFIG_INVALID',
      fields,
      `docker config ${file.path} is not valid: ${err instanceof SyntaxError ? 'not JSON' : (err as Error).message}`,
    );
  }
}

function checkConfig(config: unknown, where: string): DockerConfig {
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new TypeError(`${where}: a docker config is a JSON object`);
  }
  const c = config as Record<string, unknown>;
  for (const field of ['auths', 'credHelpers'] as const) {
    const v = c[field];
    if (v !== undefined && (v === null || typeof v !== 'object' || Array.isArray(v))) {
      throw new TypeError(`${where}: ${field} must be an object`);
    }
  }
  const helpers = [
    ...Object.values((c.credHelpers ?? {}) as Record<string, unknown>),
    ...(c.credsStore === undefined ? [] : [c.credsStore]),
  ];
  for (const name of helpers) {
    if (typeof name !== 'string' || !HELPER_NAME.test(name)) {
      throw new TypeError(`${where}: credential helper name ${JSON.stringify(name)} is not valid`);
    }
  }
  return c as DockerConfig;
}

function helperFor(config: DockerConfig, registry: string): string | undefined {
  const helpers = config.credHelpers ?? {};
  const names = DOCKER_HUB_NAMES.has(registry) ? [...DOCKER_HUB_NAMES, DOCKER_HUB_KEY] : [registry];
  for (const name of names) {
    const helper = helpers[name];
    if (helper) return helper;
  }
  return config.credsStore || undefined;
}

/** Docker's key normalisation: drop the scheme and any path, fold Docker Hub's names. */
function hostOfKey(key: string): string {
  const host = key.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
  return DOCKER_HUB_NAMES.has(host) ? 'docker.io' : host;
}

function authsEntry(config: DockerConfig, registry: string) {
  const want = DOCKER_HUB_NAMES.has(registry) ? 'docker.io' : registry;
  const auths = config.auths ?? {};
  for (const [key, entry] of Object.entries(auths)) {
    if (hostOfKey(key) === want) return entry;
  }
  return undefined;
}

function decodeAuth(
  entry: NonNullable<DockerConfig['auths']>[string],
  fields: { provider: string; registry: string },
): { username: string; password: string } {
  if (typeof entry.auth === 'string' && entry.auth !== '') {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon > 0) return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    throw new CredentialsError(
      'CONFIG_INVALID',
      fields,
      'its auths entry is not base64 "user:password"',
    );
  }
  if (typeof entry.username === 'string' && typeof entry.password === 'string') {
    return { username: entry.username, password: entry.password };
  }
  if (entry.identitytoken) {
    throw new CredentialsError(
      'CREDENTIALS_UNAVAILABLE',
      fields,
      'its auths entry holds only an OAuth identity token, which cannot be used as a password',
    );
  }
  throw new CredentialsError(
    'CONFIG_INVALID',
    fields,
    'its auths entry has no auth or username/password',
  );
}

function runHelper(
  name: string,
  server: string,
  timeoutMs: number,
  env: Readonly<Record<string, string | undefined>> | undefined,
  fields: { provider: string; registry: string },
): Promise<{ username: string; password: string }> {
  const program = `docker-credential-${name}`;
  return new Promise((resolve, reject) => {
    // Its own process group, so that stopping it also stops whatever it started (a shell
    // script's children would otherwise hold stdout open).
    const child = spawn(program, ['get'], {
      stdio: ['pipe', 'pipe', 'ignore'],
      detached: true,
      ...(env === undefined ? {} : { env: env as NodeJS.ProcessEnv }),
    });
    const stop = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(stop, timeoutMs);
    const chunks: Buffer[] = [];
    let size = 0;
    child.stdout.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > 1 << 20) stop();
      else chunks.push(chunk);
    });
    child.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        new CredentialsError(
          err.code === 'ENOENT' ? 'CREDENTIALS_UNAVAILABLE' : 'PROVIDER_ERROR',
          fields,
          err.code === 'ENOENT'
            ? `credential helper ${program} is not on PATH`
            : `cannot run ${program}: ${err.code}`,
          { cause: err },
        ),
      );
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const out = Buffer.concat(chunks).toString('utf8');
      if (signal !== null) {
        reject(
          new CredentialsError(
            'PROVIDER_ERROR',
            fields,
            `${program} was stopped (${signal}) after ${timeoutMs} ms or too much output`,
          ),
        );
        return;
      }
      if (code !== 0) {
        // Its output may hold anything; only the protocol's "not found" text is repeated.
        const notFound = out.includes(NOT_FOUND);
        reject(
          new CredentialsError(
            notFound ? 'CREDENTIALS_UNAVAILABLE' : 'PROVIDER_ERROR',
            fields,
            notFound
              ? `${program} has no credentials for ${server}`
              : `${program} get exited with ${code}`,
          ),
        );
        return;
      }
      try {
        const parsed = JSON.parse(out) as { Username?: unknown; Secret?: unknown };
        if (
          typeof parsed.Username === 'string' &&
          typeof parsed.Secret === 'string' &&
          parsed.Secret !== ''
        ) {
          resolve({ username: parsed.Username, password: parsed.Secret });
          return;
        }
      } catch {
        // reported below
      }
      reject(
        new CredentialsError(
          'INVALID_RESPONSE',
          fields,
          `${program} did not print {"Username","Secret"}`,
        ),
      );
    });
    child.stdin.on('error', () => {});
    child.stdin.end(server);
  });
}
