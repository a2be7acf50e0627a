import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';

/** The built binary, run the way kubelet runs an exec credential plugin. */
const main = join(import.meta.dirname, '..', 'dist', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'kubelet-cred-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const rules = join(dir, 'rules.yaml');
writeFileSync(
  rules,
  [
    'rules:',
    '  - match: ["registry.internal:5000"]',
    '    credentials: { provider: static, username: puller, password: s3cret }',
    '  - match: ["*.dkr.ecr.*.amazonaws.com"]',
    '    credentials: { provider: aws }',
  ].join('\n'),
);

function plugin(
  args: string[],
  stdin: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [main, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

describe('kubelet-image-service credential-provider (the built binary)', () => {
  it('answers a CredentialProviderRequest on stdin with a CredentialProviderResponse on stdout', async () => {
    const { code, stdout, stderr } = await plugin(
      ['credential-provider', '--config', rules],
      JSON.stringify({
        apiVersion: 'credentialprovider.kubelet.k8s.io/v1',
        kind: 'CredentialProviderRequest',
        image: 'registry.internal:5000/team/app',
      }),
    );
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual({
      apiVersion: 'credentialprovider.kubelet.k8s.io/v1',
      kind: 'CredentialProviderResponse',
      cacheKeyType: 'Registry',
      cacheDuration: '3600s',
      auth: { 'registry.internal:5000': { username: 'puller', password: 's3cret' } },
    });
  });

  it('exits non-zero with one line on stderr for bad input, and never prints a secret', async () => {
    for (const stdin of [
      '',
      '{',
      JSON.stringify({ kind: 'CredentialProviderRequest', apiVersion: 'x', image: 'a' }),
    ]) {
      const { code, stdout, stderr } = await plugin(
        ['credential-provider', '--config', rules],
        stdin,
      );
      expect(code).toBe(1);
      expect(stdout).toBe('');
      expect(stderr.trim().split('\n')).toHaveLength(1);
      expect(stderr).toMatch(/^kubelet-image-service: /);
      expect(stderr).not.toContain('s3cret');
    }
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'rules: [ { match: [], credentials: { provider: nope } } ]\n');
    const { code, stderr } = await plugin(['credential-provider', '--config', bad], '{}');
    expect(code).toBe(1);
    expect(stderr).toMatch(/rules\.0\.match.*rules\.0\.credentials\.provider/);
  });

  it('prints the CredentialProviderConfig whose matchImages mirror the rules', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [
      main,
      'credential-provider-config',
      '--config',
      rules,
    ]);
    const config = parse(stdout) as {
      kind: string;
      providers: Array<{ name: string; matchImages: string[]; apiVersion: string }>;
    };
    expect(config.kind).toBe('CredentialProviderConfig');
    expect(config.providers[0]).toMatchObject({
      name: 'kubelet-image-service',
      matchImages: ['registry.internal:5000', '*.dkr.ecr.*.amazonaws.com'],
      apiVersion: 'credentialprovider.kubelet.k8s.io/v1',
    });
  });

  it('ships an example CredentialProviderConfig that is what the example rules produce', async () => {
    const examples = join(import.meta.dirname, '..', 'examples');
    const { code, stdout, stderr } = await plugin(
      ['credential-provider-config', '--config', join(examples, 'rules.yaml')],
      '',
    );
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toBe(readFileSync(join(examples, 'credential-provider-config.yaml'), 'utf8'));
  });
});
