import { describe, expect, it } from 'vitest';
import {
  HELPER_NOT_FOUND,
  parseCredentialHelperConfig,
  registryAuthFromConfig,
  runCredentialHelper,
  serverHost,
} from './credential-helper.js';

describe('serverHost', () => {
  it.each([
    ['https://index.docker.io/v1/', 'docker.io'],
    ['registry-1.docker.io', 'docker.io'],
    ['127.0.0.1:5000', '127.0.0.1:5000'],
    ['https://gcr.io', 'gcr.io'],
    ['http://registry.internal:5000/v2/', 'registry.internal:5000'],
    ['  europe-docker.pkg.dev\n', 'europe-docker.pkg.dev'],
  ])('%j -> %s', (url, host) => {
    expect(serverHost(url)).toBe(host);
  });
});

describe('runCredentialHelper', () => {
  const config = parseCredentialHelperConfig({
    registries: {
      'registry.internal:5000': { provider: 'static', username: 'ci', password: 'pw' },
    },
  });
  const auth = registryAuthFromConfig(config);

  it('get: answers the protocol JSON for a configured registry', async () => {
    const r = await runCredentialHelper('get', 'registry.internal:5000\n', auth, config);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      ServerURL: 'registry.internal:5000',
      Username: 'ci',
      Secret: 'pw',
    });
  });

  it('get: says "not found" for a registry no source knows, so clients go anonymous', async () => {
    const r = await runCredentialHelper('get', 'ghcr.io', auth, config);
    expect(r).toEqual({ code: 1, stdout: `${HELPER_NOT_FOUND}\n`, stderr: '' });
  });

  it('get: reports a real failure on stderr without secrets', async () => {
    const c = parseCredentialHelperConfig({
      default: { provider: 'static', username: 'u', passwordFile: '/nonexistent/pw' },
    });
    const r = await runCredentialHelper('get', 'r.example.com', registryAuthFromConfig(c), c);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(
      /^docker-credential-registry-auth: static credentials for r\.example\.com: cannot read passwordFile/,
    );
  });

  it('list answers {}, store and erase are refused, anything else prints usage', async () => {
    expect(await runCredentialHelper('list', '', auth, config)).toMatchObject({
      code: 0,
      stdout: '{}\n',
    });
    expect((await runCredentialHelper('store', '{}', auth, config)).stderr).toContain(
      'store is not supported',
    );
    expect((await runCredentialHelper('erase', 'x', auth, config)).code).toBe(1);
    expect((await runCredentialHelper(undefined, '', auth, config)).stderr).toMatch(/^usage:/);
  });
});

describe('parseCredentialHelperConfig', () => {
  it('lists every problem with its path', () => {
    expect(() =>
      parseCredentialHelperConfig({
        default: { provider: 'ftp' },
        registries: { 'a.io': 3 },
        extra: 1,
        aws: [],
      }),
    ).toThrow(
      [
        'config.extra: unknown field',
        'config.default.provider: must be one of auto, gcp, aws, azure, static, docker-config, instance-identity',
        'config.registries["a.io"]: must be an object',
        'config.aws: must be an object',
      ].join('\n'),
    );
    expect(() => parseCredentialHelperConfig([])).toThrow('config: must be a JSON object');
  });
});
