#!/usr/bin/env node
// @ts-check
/**
 * Makes the registry-proxy image's build context (tools/container-context.mjs says what is in
 * it): OUT/Dockerfile, OUT/config.yaml (apps/proxy/container/config.yaml, the image's default
 * config) and OUT/app/.
 *
 * usage: node apps/proxy/scripts/container-context.mjs OUT   (after building the app)
 */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { containerContext } from '@org/tools/container-context';

containerContext({
  app: resolve(dirname(fileURLToPath(import.meta.url)), '..'),
  argv: process.argv.slice(2),
  extra: [['container/config.yaml', 'config.yaml']],
});
