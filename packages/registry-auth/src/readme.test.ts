import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as api from './index.js';

const readme = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');

describe('README', () => {
  it.each(['getRegistryCredentials', 'configureRegistryAuth', 'RegistryAuth'])(
    'has a section on %s',
    (name) => {
      expect(readme).toMatch(new RegExp(`^### .*\\b${name}\\b`, 'm'));
      expect(name in api).toBe(true);
    },
  );

  it.each([
    'skipRegistryValidation',
    'region',
    'registryIds',
    'keyFile',
    'loginServer',
    'tenantId',
    'clientId',
    'azureIdentity',
  ])('documents the %s option', (option) => {
    expect(readme).toContain(`\`${option}\``);
  });

  it('names what each cloud identity needs and the gateway security note', () => {
    for (const text of [
      'roles/artifactregistry.reader',
      'ecr:GetAuthorizationToken',
      'AcrPull',
      '**Security.**',
      'source-controller#1974',
    ]) {
      expect(readme).toContain(text);
    }
  });
});
