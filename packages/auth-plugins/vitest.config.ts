import { defineConfig } from 'vitest/config';
import { projectConfig } from '../../tools/vitest/preset.mjs';

export default defineConfig(
  projectConfig(import.meta.url, {
    // A throwaway CA for the TLS stand-ins (the TokenReview API server).
    globalSetup: ['../../tools/stand-ins/tls-global-setup.ts'],
  }),
);
