import { defineConfig } from 'vitest/config';
import { projectConfig } from '../tools/vitest/preset.mjs';

export default defineConfig(
  projectConfig(import.meta.url, {
    // A throwaway CA for the TLS stand-ins (the Kubernetes API server), trusted by the workers
    // through NODE_EXTRA_CA_CERTS.
    globalSetup: ['../tools/stand-ins/tls-global-setup.ts'],
    // Each test starts containerd, both built binaries and pulls whole images through them on a
    // small shared machine: a bound, never an expectation.
    testTimeout: 180_000,
  }),
);
