import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as api from './index.js';

const readme = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');

describe('README', () => {
  const factories = Object.keys(api).filter((name) => name.startsWith('create'));

  it.each(factories)('has a section on %s', (name) => {
    expect(readme).toMatch(new RegExp(`^### ${name}\\(`, 'm'));
  });

  it('documents the cache, the error codes and what each cloud identity needs', () => {
    expect(readme).toMatch(/^## CredentialCache/m);
    for (const text of [
      'CREDENTIALS_UNAVAILABLE',
      'ACCESS_DENIED',
      'THROTTLED',
      'PROVIDER_ERROR',
      'INVALID_RESPONSE',
      'CONFIG_INVALID',
      'roles/artifactregistry.reader',
      'ecr:GetAuthorizationToken',
      'AcrPull',
    ]) {
      expect(readme).toContain(text);
    }
  });
});
