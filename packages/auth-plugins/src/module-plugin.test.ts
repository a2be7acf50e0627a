import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { authenticateLogin } from './login.js';
import { loadModulePlugin } from './module-plugin.js';
import { createPolicy } from './policy.js';

const dir = mkdtempSync(join(tmpdir(), 'module-plugin-'));
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** The ```js block under "## Custom plugins" in the README, written out as a module. */
function readmeExample(): string {
  const readme = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Custom plugins'));
  const code = /```js\n([\s\S]*?)```/.exec(section)?.[1];
  if (!code) throw new Error('no js example under "## Custom plugins"');
  const file = join(dir, 'api-keys-plugin.mjs');
  writeFileSync(file, code);
  return file;
}

describe('custom plugin modules', () => {
  it("runs the README's example: a key logs in as its robot, the policy sees its groups", async () => {
    readmeExample();
    const plugin = await loadModulePlugin({
      name: 'robots',
      path: './api-keys-plugin.mjs',
      baseDir: dir,
      options: { keys: [{ sha256: sha256('key-1'), subject: 'robot-1', groups: ['ci'] }] },
    });
    const ok = await authenticateLogin([plugin], { username: 'anything', password: 'key-1' });
    expect(ok).toEqual({
      ok: true,
      identity: { plugin: 'robots', subject: 'robot-1', groups: ['ci'], claims: {} },
    });
    const policy = createPolicy([
      { identities: ['robots:*'], groups: ['ci'], repositories: ['ci/**'], actions: ['pull'] },
    ]);
    expect(ok.ok && policy.grant(ok.identity, 'ci/app', ['pull'])).toEqual(['pull']);
    expect(await plugin.authenticate({ username: 'x', password: 'key-2' })).toEqual({
      ok: false,
      reason: 'BAD_PASSWORD',
    });
  });

  it('keeps a module from speaking for another plugin, and from leaking what it throws', async () => {
    const file = join(dir, 'rogue.mjs');
    writeFileSync(
      file,
      `export default ({ name }) => ({
        name: 'someone-else',
        async authenticate({ password }) {
          if (password === 'throw') throw new Error('secret=' + password);
          if (password === 'junk') return { ok: true, identity: { subject: 42 } };
          return { ok: true, identity: { plugin: 'admins', subject: 'root', groups: 'wheel' } };
        },
      });`,
    );
    const plugin = await loadModulePlugin({ name: 'rogue', path: file });
    expect(await plugin.authenticate({ username: 'u', password: 'p' })).toEqual({
      ok: true,
      identity: { plugin: 'rogue', subject: 'root', groups: [], claims: {} },
    });
    expect(await plugin.authenticate({ username: 'u', password: 'throw' })).toEqual({
      ok: false,
      reason: 'UNAVAILABLE',
    });
    expect(await plugin.authenticate({ username: 'u', password: 'junk' })).toEqual({
      ok: false,
      reason: 'BAD_PASSWORD',
    });
  });

  it('refuses modules that cannot be loaded or export no factory, naming the plugin', async () => {
    writeFileSync(join(dir, 'nofactory.mjs'), 'export const x = 1;\n');
    writeFileSync(join(dir, 'noplugin.mjs'), 'export default () => ({});\n');
    writeFileSync(
      join(dir, 'badfamily.mjs'),
      'export default () => ({ family: "root", authenticate() {} });\n',
    );
    for (const [path, message] of [
      ['missing.mjs', /robots\.path: cannot load/],
      ['nofactory.mjs', /no default export function/],
      ['noplugin.mjs', /did not return a plugin/],
      ['badfamily.mjs', /family must be one of/],
    ] as const) {
      await expect(loadModulePlugin({ name: 'robots', path, baseDir: dir })).rejects.toThrow(
        message,
      );
    }
  });
});
