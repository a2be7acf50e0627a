#!/usr/bin/env node
// @ts-check
/**
 * Makes the node-patcher image's build context (tools/container-context.mjs says what is in
 * it): OUT/Dockerfile and OUT/app/.
 *
 * usage: node apps/node-patcher/scripts/container-context.mjs OUT   (after building the app)
 */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { containerContext } from '@org/tools/container-context';

containerContext({
  app: resolve(dirname(fileURLToPath(import.meta.url)), '..'),
  argv: process.argv.slice(2),
});
