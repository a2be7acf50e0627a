import { defineConfig } from 'vitest/config';
import { projectConfig } from './vitest/preset.mjs';

// The bench's pure helpers are tested beside them; the benchmark itself never runs here.
export default defineConfig(
  projectConfig(import.meta.url, { include: ['*.test.ts', 'bench/*.test.ts'] }),
);
