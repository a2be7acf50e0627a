import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createProxyApp } from '@org/proxy-core';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ConfigError, checkConfig, coreOptions, loadConfig } from './config.js';

/** The config file is operator input, but a typo must still give a clear error, never a crash. */
const dir = mkdtempSync(join(tmpdir(), 'proxy-config-fuzz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Every problem listed as `path: message`, joined by `; `. */
const LISTED = /^invalid config [^:]+: (?:\(root\)|[\w.-]+): .+/;

const component = fc.stringMatching(/^[a-z0-9]{1,8}(?:[-_.][a-z0-9]{1,8})?$/);
const host = fc.oneof(
  fc.constantFrom('registry.example.com', 'gcr.io', 'localhost'),
  fc.ipV4(),
  fc.stringMatching(/^[a-z]{1,10}\.[a-z]{2,5}$/),
);
const upstream = fc.record(
  {
    name: fc.stringMatching(/^[a-z][a-z0-9-]{0,10}$/),
    prefix: fc.oneof(fc.constant(''), component),
    url: fc
      .tuple(fc.constantFrom('http', 'https'), host, fc.option(fc.integer({ min: 1, max: 65535 })))
      .map(([s, h, p]) => `${s}://${h}${p === null ? '' : `:${p}`}`),
    repositoryPrefix: component,
    dockerHubLibrary: fc.boolean(),
    credentials: fc.oneof(
      fc.constant({ provider: 'none' }),
      fc.record({ provider: fc.constant('static'), username: component, password: component }),
    ),
    hosts: fc.array(host, { minLength: 1, maxLength: 2 }),
    allowInternalRedirects: fc.array(
      fc.oneof(
        fc.constantFrom('10.0.0.0/8', '172.16.0.0/12', 'fd00::/8', '::1', '127.0.0.1'),
        host,
        host.map((h) => `${h}:9000`),
      ),
      { maxLength: 3 },
    ),
  },
  { requiredKeys: ['name', 'prefix', 'url'] },
);
const validConfig = fc.record(
  {
    server: fc.record(
      { listen: fc.constantFrom('127.0.0.1:5000', ':5000', '[::1]:8080') },
      { requiredKeys: [] },
    ),
    upstreams: fc.uniqueArray(upstream, {
      minLength: 1,
      maxLength: 4,
      selector: (u) => `${u.prefix}|${(u.hosts ?? []).join(',')}`,
    }),
    blobs: fc.record({ mode: fc.constantFrom('stream', 'redirect') }),
    manifestMaxBytes: fc.integer({ min: 1, max: 64 * 1024 * 1024 }),
  },
  { requiredKeys: ['upstreams'] },
);

describe('config loading properties', () => {
  it('accepts every generated valid config, and proxy-core takes what it maps to', () => {
    fc.assert(
      fc.property(validConfig, (config) => {
        const checked = checkConfig(config, 'generated');
        expect(() => createProxyApp(coreOptions(checked))).not.toThrow();
      }),
      { numRuns: 300 },
    );
  });

  it('arbitrary JSON never crashes the loader: a config or a ConfigError listing paths', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (value) => {
        try {
          checkConfig(value, 'fuzz');
        } catch (err) {
          expect(err).toBeInstanceOf(ConfigError);
          expect((err as Error).message).toMatch(LISTED);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('valid configs with one field broken are refused with that field path', () => {
    const breakage = fc.constantFrom<unknown>(null, 42, 'x', [], {}, true, -1, '10.0.0.0/99');
    fc.assert(
      fc.property(validConfig, fc.nat(), breakage, (generated, pick, bad) => {
        const config = structuredClone(generated);
        const index = pick % config.upstreams.length;
        const u = config.upstreams[index] as Record<string, unknown>;
        const key = ['name', 'url', 'prefix', 'hosts', 'credentials'][pick % 5] as string;
        fc.pre(u[key] !== undefined && JSON.stringify(u[key]) !== JSON.stringify(bad));
        // any string is a name, and most are prefixes: only non-strings break those
        fc.pre(!((key === 'prefix' || key === 'name') && typeof bad === 'string'));
        u[key] = bad;
        let message = '';
        try {
          createProxyApp(coreOptions(checkConfig(config, 'fuzz')));
        } catch (err) {
          message = (err as Error).message;
        }
        // zod's paths (upstreams.0.url) or proxy-core's (upstreams[0].url)
        expect(message).toMatch(new RegExp(`upstreams(?:\\.${index}|\\[${index}\\])\\.${key}`));
      }),
      { numRuns: 300 },
    );
  });

  it('arbitrary text as a file never crashes loadConfig', () => {
    const file = join(dir, 'c.yaml');
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 200 }),
          validConfig.map((c) => stringify(c)),
          validConfig.map((c) => JSON.stringify(c).slice(0, -3)),
          fc.constantFrom(
            'a: &a [*a]',
            '!!binary x',
            '%YAML 9.9\n---\n',
            'upstreams: !!js/function x',
          ),
        ),
        (text) => {
          writeFileSync(file, text);
          try {
            loadConfig(file);
          } catch (err) {
            expect(err).toBeInstanceOf(ConfigError);
            expect((err as Error).message).toMatch(/^(?:invalid config|config .* is not YAML)/);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
