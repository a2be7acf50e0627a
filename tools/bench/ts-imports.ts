import { existsSync } from 'node:fs';
import { registerHooks } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * The stand-ins import each other as `./x.js` (the spelling TypeScript and vitest resolve to
 * `x.ts`); Node's type stripping does not map extensions, so a bench that runs a stand-in under
 * plain `node` registers this first: a relative `.js` import with no such file but a `.ts` beside
 * it resolves to the `.ts`. Import it before (statically), the stand-ins after (dynamically).
 */
registerHooks({
  resolve(specifier, context, nextResolve) {
    if (
      (specifier.startsWith('./') || specifier.startsWith('../')) &&
      specifier.endsWith('.js') &&
      context.parentURL?.startsWith('file:')
    ) {
      const js = new URL(specifier, context.parentURL);
      const ts = new URL(`${specifier.slice(0, -'.js'.length)}.ts`, context.parentURL);
      if (!existsSync(fileURLToPath(js)) && existsSync(fileURLToPath(ts)))
        return nextResolve(ts.href, context);
    }
    return nextResolve(specifier, context);
  },
});
