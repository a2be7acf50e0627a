import { CredentialsError } from './errors.js';
import { identityOf } from './identity.js';
import { type CredentialSource, type CredentialTarget, NEVER } from './types.js';
import { WatchedFile } from './watched-file.js';

/**
 * Where a static username or password comes from: a literal, an environment variable (from the
 * `env` the caller passes; this package never reads `process.env`), or a file that is re-read
 * when it changes (Kubernetes secret mounts rotate). One way each.
 */
export interface StaticSourceOptions {
  readonly username?: string;
  readonly usernameEnv?: string;
  readonly usernameFile?: string;
  readonly password?: string;
  readonly passwordEnv?: string;
  readonly passwordFile?: string;
  /** The environment `usernameEnv` / `passwordEnv` are read from. */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

type Value = { readonly get: (registry: string) => Promise<string> };

/**
 * Fixed credentials from configuration, the environment or files. Never cached by the caller:
 * files are re-read when they change, and nothing expires.
 *
 * @throws TypeError naming the option when the options are not one way each.
 */
export function createStaticSource(options: StaticSourceOptions): CredentialSource {
  const username = secretValue(
    'username',
    options.username,
    options.usernameEnv,
    options.usernameFile,
    options.env,
  );
  const password = secretValue(
    'password',
    options.password,
    options.passwordEnv,
    options.passwordFile,
    options.env,
  );
  return {
    kind: 'static',
    identity: identityOf('static', {
      username: options.username,
      usernameEnv: options.usernameEnv,
      usernameFile: options.usernameFile,
      password: options.password,
      passwordEnv: options.passwordEnv,
      passwordFile: options.passwordFile,
    }),
    cacheable: false,
    async fetch(target: CredentialTarget) {
      const [user, pass] = await Promise.all([
        username.get(target.registry),
        password.get(target.registry),
      ]);
      return { username: user, password: pass, expiresAt: NEVER };
    },
  };
}

function secretValue(
  name: 'username' | 'password',
  literal: string | undefined,
  envName: string | undefined,
  file: string | undefined,
  env: Readonly<Record<string, string | undefined>> | undefined,
): Value {
  const given = [literal, envName, file].filter((v) => v !== undefined).length;
  if (given !== 1) {
    throw new TypeError(
      `static credentials need exactly one of ${name}, ${name}Env, ${name}File (got ${given})`,
    );
  }
  for (const [option, v] of [
    [name, literal],
    [`${name}Env`, envName],
    [`${name}File`, file],
  ] as const) {
    if (v !== undefined && (typeof v !== 'string' || (option !== name && v === ''))) {
      throw new TypeError(`${option} must be a non-empty string`);
    }
  }
  if (literal !== undefined) {
    return { get: async () => literal };
  }
  if (envName !== undefined) {
    if (env === undefined) throw new TypeError(`${name}Env needs the env option`);
    return {
      async get(registry) {
        const v = env[envName];
        if (v === undefined || v === '') {
          throw new CredentialsError(
            'CREDENTIALS_UNAVAILABLE',
            { provider: 'static', registry },
            `environment variable ${envName} (${name}Env) is not set`,
          );
        }
        return v;
      },
    };
  }
  const watched = new WatchedFile(file as string);
  return {
    async get(registry) {
      try {
        // Secret files often end with a newline the value does not have.
        return (await watched.read()).replace(/\r?\n$/, '');
      } catch (err) {
        throw new CredentialsError(
          'CREDENTIALS_UNAVAILABLE',
          { provider: 'static', registry },
          `cannot read ${name}File ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
          { cause: err },
        );
      }
    },
  };
}
