import { defineConfig } from 'vitest/config';
import { projectConfig } from '../../tools/vitest/preset.mjs';

export default defineConfig(projectConfig(import.meta.url));
