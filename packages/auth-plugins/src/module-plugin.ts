import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AuthPlugin, AuthResult, Identity, PluginFamily, Refusal } from './plugin.js';

export interface ModulePluginOptions {
  readonly name: string;
  /** The ESM module: absolute, or relative to `baseDir`. */
  readonly path: string;
  /** Passed to the module's factory as `options`. */
  readonly options?: Readonly<Record<string, unknown>>;
  /** Where a relative `path` starts (the config file's folder). Default: the working directory. */
  readonly baseDir?: string;
}

/** What a plugin module's default export is called with. */
export interface PluginFactoryInput {
  readonly name: string;
  readonly options: Readonly<Record<string, unknown>>;
}

const FAMILIES: ReadonlySet<string> = new Set(['password', 'oidc', 'k8s', 'gcp', 'aws']);
const REFUSALS: ReadonlySet<string> = new Set([
  'UNKNOWN_USER',
  'BAD_PASSWORD',
  'NOT_FOR_THIS_PLUGIN',
  'UNAVAILABLE',
]);

function stringList(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

/**
 * Loads a custom auth plugin: an ESM module whose default export is a factory
 * `({ name, options }) => AuthPlugin` (or a promise of one). The result is checked and wrapped:
 * identities always carry the configured name as `plugin` (a module cannot speak for another
 * plugin's identities), malformed results are refusals, and a thrown error becomes `UNAVAILABLE`
 * without its message reaching anyone (it might hold a secret).
 *
 * @throws TypeError when the module cannot be loaded or does not export a factory.
 */
export async function loadModulePlugin(config: ModulePluginOptions): Promise<AuthPlugin> {
  const { name } = config;
  if (typeof name !== 'string' || name === '') throw new TypeError('module: name is required');
  if (typeof config.path !== 'string' || config.path === '')
    throw new TypeError(`${name}.path: the plugin module's file`);
  const file = isAbsolute(config.path)
    ? config.path
    : resolve(config.baseDir ?? process.cwd(), config.path);
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
  } catch (err) {
    throw new TypeError(
      `${name}.path: cannot load ${file}: ${(err as Error).message.split('\n')[0]}`,
    );
  }
  if (typeof mod.default !== 'function')
    throw new TypeError(`${name}.path: ${file} has no default export function (the factory)`);
  const made = (await (mod.default as (input: PluginFactoryInput) => unknown)({
    name,
    options: config.options ?? {},
  })) as Partial<AuthPlugin> | null | undefined;
  if (typeof made?.authenticate !== 'function')
    throw new TypeError(`${name}: the factory in ${file} did not return a plugin (authenticate)`);
  const family = made.family ?? 'password';
  if (!FAMILIES.has(family))
    throw new TypeError(`${name}: family must be one of ${[...FAMILIES].join(', ')}`);
  const authenticate = made.authenticate.bind(made);

  return {
    name,
    type: `module:${typeof made.type === 'string' ? made.type : 'custom'}`,
    family: family as PluginFamily,
    async authenticate(login): Promise<AuthResult> {
      let result: unknown;
      try {
        result = await authenticate(login);
      } catch {
        return { ok: false, reason: 'UNAVAILABLE' };
      }
      const r = result as { ok?: unknown; identity?: Partial<Identity>; reason?: unknown };
      if (r?.ok === true && typeof r.identity?.subject === 'string' && r.identity.subject !== '') {
        const claims =
          typeof r.identity.claims === 'object' && r.identity.claims !== null
            ? r.identity.claims
            : {};
        return {
          ok: true,
          identity: {
            plugin: name,
            subject: r.identity.subject,
            groups: stringList(r.identity.groups),
            claims,
          },
        };
      }
      const reason =
        typeof r?.reason === 'string' && REFUSALS.has(r.reason) ? r.reason : 'BAD_PASSWORD';
      return { ok: false, reason: reason as Refusal };
    },
  };
}
