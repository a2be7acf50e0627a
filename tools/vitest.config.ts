import { defineConfig } from 'vitest/config';
import { projectConfig } from './vitest/preset.mjs';

export default defineConfig(projectConfig(import.meta.url));
