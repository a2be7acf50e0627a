#!/usr/bin/env node
/**
 * The proxy's load scenario: `node tools/bench/load.ts [--clients 200] [--seconds 60] ...`
 * (see load-scenario.ts and tools/bench/README.md). The stand-ins it runs import each other as
 * `.js`, so the resolve hook goes first and the scenario is imported after it.
 */
import './ts-imports.ts';

await import('./load-scenario.ts');
