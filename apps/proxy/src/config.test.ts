import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, checkConfig, coreOptions, EMBEDDED_DEFAULT, loadConfig } from './config.js';

const dir = mkdtempSync(join(tmpdir(), 'proxy-config-'));

describe('config', () => {
  it('loads the YAML shape from ARCHITECTURE.md, and JSON', () => {
    const yaml = join(dir, 'c.yaml');
    writeFileSync(
      yaml,
      [
        'server: { listen: "127.0.0.1:5000", publicUrl: "http://127.0.0.1:5000" }',
        'upstreams:',
        '  - name: main',
        '    prefix: ""',
        '    url: http://127.0.0.1:5001',
        '    repositoryPrefix: ""',
        '    credentials: { provider: none }',
        '  - name: gcr',
        '    prefix: gcr',
        '    url: https://europe-docker.pkg.dev',
        '    repositoryPrefix: acme-prod/images',
        '    credentials: { provider: gcp }',
        'blobs: { mode: stream }',
      ].join('\n'),
    );
    const config = loadConfig(yaml);
    expect(coreOptions(config).upstreams.map((u) => u.name)).toEqual(['main', 'gcr']);
    const json = join(dir, 'c.json');
    writeFileSync(
      json,
      JSON.stringify({ upstreams: [{ name: 'x', prefix: '', url: 'https://r.example.com' }] }),
    );
    expect(loadConfig(json).upstreams).toHaveLength(1);
  });

  it('takes vanity hosts and containerd ns per upstream, and server.tls (both files)', () => {
    const config = checkConfig(
      {
        server: { tls: { certFile: '/tls/tls.crt', keyFile: '/tls/tls.key' } },
        upstreams: [
          { name: 'gcr', prefix: '', url: 'https://gcr.io', hosts: ['gcr.example.com'] },
          { name: 'hub', prefix: '', url: 'https://registry-1.docker.io', ns: ['docker.io'] },
        ],
      },
      'test',
    );
    expect(coreOptions(config).upstreams).toEqual([
      expect.objectContaining({ name: 'gcr', hosts: ['gcr.example.com'] }),
      expect.objectContaining({ name: 'hub', ns: ['docker.io'] }),
    ]);
    expect(() =>
      checkConfig(
        {
          server: { tls: { certFile: '/tls/tls.crt' } },
          upstreams: [{ name: 'x', prefix: '', url: 'https://r.example.com', hosts: [] }],
        },
        'test',
      ),
    ).toThrow(/server\.tls\.keyFile.*upstreams\.0\.hosts/);
  });

  it('accepts its embedded default', () => {
    expect(checkConfig(EMBEDDED_DEFAULT, 'default')).toEqual(EMBEDDED_DEFAULT);
  });

  it('lists every problem with its path, in one message', () => {
    let message = '';
    try {
      checkConfig(
        {
          server: { listen: 'nowhere' },
          upstreams: [
            {
              name: '',
              prefix: '',
              url: 'ftp://x',
              credentials: { provider: 'gcp', keyFil: 'typo' },
            },
          ],
          extra: true,
        },
        'test.yaml',
      );
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    expect(message).toMatch(/^invalid config test\.yaml: /);
    for (const path of [
      'server.listen',
      'upstreams.0.name',
      'upstreams.0.url',
      'upstreams.0.credentials',
      '(root)',
    ]) {
      expect(message).toContain(path);
    }
    expect(message.includes('\n')).toBe(false);
  });

  it('takes an auth section, which needs server.publicUrl for the realm', () => {
    const base = {
      upstreams: [{ name: 'a', prefix: '', url: 'https://r.example.com' }],
      auth: {
        plugins: [{ name: 'users', type: 'htpasswd', file: '/etc/htpasswd' }],
        policy: [{ identities: ['users:*'], repositories: ['**'], actions: ['pull'] }],
      },
    };
    expect(() => checkConfig(base, 'c')).toThrow(/server\.publicUrl: required with auth/);
    expect(
      checkConfig({ ...base, server: { publicUrl: 'https://docker.example.com' } }, 'c').auth
        ?.plugins,
    ).toHaveLength(1);
    expect(() =>
      checkConfig(
        {
          ...base,
          server: { publicUrl: 'https://d.example.com' },
          auth: {
            ...base.auth,
            policy: [{ identities: ['*'], repositories: ['*'], actions: ['delete'] }],
          },
        },
        'c',
      ),
    ).toThrow(/auth\.policy\.0\.actions/);
  });

  it('names an unreadable or unparsable file', () => {
    expect(() => loadConfig(join(dir, 'missing.yaml'))).toThrow(/cannot read config .*ENOENT/);
    writeFileSync(join(dir, 'bad.yaml'), 'upstreams: [ {');
    expect(() => loadConfig(join(dir, 'bad.yaml'))).toThrow(/is not YAML or JSON/);
  });
});

describe('blobs', () => {
  it('passes the blob mode to the proxy core', () => {
    const config = checkConfig(
      {
        upstreams: [{ name: 'a', prefix: '', url: 'https://r.example.com' }],
        blobs: { mode: 'redirect' },
      },
      'c',
    );
    expect(coreOptions(config).blobs).toEqual({ mode: 'redirect' });
    expect(() =>
      checkConfig(
        {
          upstreams: [{ name: 'a', prefix: '', url: 'https://r.example.com' }],
          blobs: { mode: 'proxy' },
        },
        'c',
      ),
    ).toThrow(/blobs\.mode/);
  });

  it('takes allowInternalRedirects per upstream and lists each bad entry by path', () => {
    const config = checkConfig(
      {
        upstreams: [
          {
            name: 'minio',
            prefix: '',
            url: 'http://registry.internal:5000',
            allowInternalRedirects: ['10.0.0.0/8', 'storage.internal:9000'],
          },
        ],
      },
      'test',
    );
    expect(coreOptions(config).upstreams[0]?.allowInternalRedirects).toEqual([
      '10.0.0.0/8',
      'storage.internal:9000',
    ]);
    expect(() =>
      checkConfig(
        {
          upstreams: [
            {
              name: 'x',
              prefix: '',
              url: 'https://r.example.com',
              allowInternalRedirects: ['10.0.0.0/8', '10.0.0.0/40', 'http://s3.internal'],
            },
          ],
        },
        'test',
      ),
    ).toThrow(
      /upstreams\.0\.allowInternalRedirects\.1: "10\.0\.0\.0\/40" is not a CIDR.*; upstreams\.0\.allowInternalRedirects\.2: "http:\/\/s3\.internal"/,
    );
  });
});
