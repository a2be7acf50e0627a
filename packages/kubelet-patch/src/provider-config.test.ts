import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Document } from 'yaml';
import { configFormatOf } from './kubelet-config.js';
import {
  mayOverlap,
  ProviderConfigError,
  parseProviderConfig,
  providerConfigYaml,
  withProvider,
} from './provider-config.js';

const OURS = {
  name: 'kubelet-image-service',
  matchImages: ['*.gcr.io', 'docker.example.com'],
  defaultCacheDuration: '5m',
  apiVersion: 'credentialprovider.kubelet.k8s.io/v1',
};
const OURS_YAML = (dash: string, body: string, list: string) =>
  `${dash}name: kubelet-image-service\n${body}matchImages:\n${list}- "*.gcr.io"\n${list}- docker.example.com\n${body}defaultCacheDuration: 5m\n${body}apiVersion: credentialprovider.kubelet.k8s.io/v1\n`;

describe('parseProviderConfig', () => {
  it('reads YAML and JSON, an absent list as empty', () => {
    expect(parseProviderConfig('kind: CredentialProviderConfig\n').providers).toEqual([]);
    const json = parseProviderConfig(
      '\uFEFF{"kind":"CredentialProviderConfig","apiVersion":"kubelet.config.k8s.io/v1","providers":[{"name":"a"}]}',
    );
    expect(json).toMatchObject({ format: 'json', apiVersion: 'kubelet.config.k8s.io/v1' });
    expect(json.providers).toEqual([{ name: 'a' }]);
  });

  it.each([
    ['providers: [\n', /does not parse as yaml/],
    ['kind: CredentialProviderConfig\nkind: CredentialProviderConfig\n', /does not parse/],
    ['kind: A\n---\nkind: B\n', /does not parse/],
    ['{"kind": "CredentialProviderConfig",}', /does not parse as json/],
    ['- a\n', /is not a mapping/],
    [
      'kind: KubeletConfiguration\n',
      /is not a CredentialProviderConfig \(kind "KubeletConfiguration"\)/,
    ],
    ['kind: CredentialProviderConfig\nproviders: {a: 1}\n', /providers is not a list/],
    ['kind: CredentialProviderConfig\nproviders: [1]\n', /providers\[0\] is not a mapping/],
    ['kind: CredentialProviderConfig\nproviders: [{name: 7}]\n', /providers\[0\] has no name/],
  ])('refuses %j', (text, message) => {
    expect(() => parseProviderConfig(text)).toThrow(ProviderConfigError);
    expect(() => parseProviderConfig(text)).toThrow(message);
  });
});

describe('withProvider', () => {
  const head =
    "kind: CredentialProviderConfig # the node's\napiVersion: kubelet.config.k8s.io/v1\n";

  it('appends block YAML after the last entry in the list style of the file', () => {
    const indented = `${head}providers:\n  - name: a\n    matchImages: ["a.io"]\n# trailing comment\n`;
    expect(withProvider(indented, OURS, null)).toBe(
      `${head}providers:\n  - name: a\n    matchImages: ["a.io"]\n${OURS_YAML('  - ', '    ', '      ')}# trailing comment\n`,
    );
    const flat = `${head}providers:\n- name: a\n  matchImages:\n  - a.io\n`;
    expect(withProvider(flat, OURS, null)).toBe(`${flat}${OURS_YAML('- ', '  ', '  ')}`);
    const wide = `${head}providers:\n  -   name: a\n      matchImages: [a.io]`;
    expect(withProvider(wide, OURS, null)).toBe(
      `${wide}\n${OURS_YAML('  -   ', '      ', '        ')}`,
    );
  });

  it('replaces our entry where it stands and gives the same bytes for the same entry', () => {
    const once = withProvider(
      `${head}providers:\n  - name: a\n    matchImages: [a.io]\n`,
      OURS,
      null,
    );
    expect(withProvider(once, OURS, 1)).toBe(once);
    const moved = `${head}providers:\n${OURS_YAML('  - ', '    ', '      ')}  - {name: b, matchImages: [b.io]}\n`;
    const changed = withProvider(moved, { ...OURS, defaultCacheDuration: '1m' }, 0);
    expect(changed).toBe(moved.replace('5m', '1m'));
  });

  it('falls back to the YAML document model for a flow list, keeping comments', () => {
    const text = `# header\n${head}providers: [{name: a, matchImages: [a.io]}] # flow\n`;
    const out = withProvider(text, OURS, null);
    expect(out).toContain('# header');
    expect(parseProviderConfig(out).providers).toEqual([
      { name: 'a', matchImages: ['a.io'] },
      OURS,
    ]);
  });

  it('adds a providers list to a config without one', () => {
    const out = withProvider('kind: CredentialProviderConfig\n', OURS, null);
    expect(parseProviderConfig(out).providers).toEqual([OURS]);
  });

  it('inserts a JSON element after the last one with the file indentation', () => {
    const text =
      '{\n    "kind": "CredentialProviderConfig",\n    "providers": [\n        {"name": "a", "matchImages": ["a.io"]}\n    ]\n}\n';
    const out = withProvider(text, OURS, null);
    expect(out).toBe(
      `{\n    "kind": "CredentialProviderConfig",\n    "providers": [\n        {"name": "a", "matchImages": ["a.io"]},\n        ${JSON.stringify(OURS, null, 4).replaceAll('\n', '\n        ')}\n    ]\n}\n`,
    );
    expect(withProvider(out, OURS, 1)).toBe(out);
  });

  it('keeps a one-line JSON file on one line, and a byte-order mark', () => {
    const text = '\uFEFF{"kind":"CredentialProviderConfig","providers":[{"name":"a"}]}';
    expect(withProvider(text, OURS, null)).toBe(
      `\uFEFF{"kind":"CredentialProviderConfig","providers":[{"name":"a"}, ${JSON.stringify(OURS)}]}`,
    );
  });

  it('writes JSON again, with its indentation and final newline, when no text edit fits', () => {
    const text = '{\n  "kind": "CredentialProviderConfig",\n  "providers": []\n}\n';
    expect(withProvider(text, OURS, null)).toBe(
      `${JSON.stringify({ kind: 'CredentialProviderConfig', providers: [OURS] }, null, 2)}\n`,
    );
  });

  it('finds the top-level providers, not a nested one or one inside a string', () => {
    const text =
      '{"x": {"providers": [1]}, "s": "\\"providers\\": [", "kind": "CredentialProviderConfig", "providers": [{"name": "a"}]}';
    expect(JSON.parse(withProvider(text, OURS, null))).toEqual({
      x: { providers: [1] },
      s: '"providers": [',
      kind: 'CredentialProviderConfig',
      providers: [{ name: 'a' }, OURS],
    });
  });

  it('throws ProviderConfigError for a file that is no provider config', () => {
    expect(() => withProvider('kind: Other\n', OURS, null)).toThrow(ProviderConfigError);
  });

  const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/);
  const glob = fc.stringMatching(
    /^(\*\.)?[a-z0-9-]{1,10}\.(io|com|dev)(:[0-9]{2,5})?(\/[a-z]{1,6})?$/,
  );
  const entry = fc.record({
    name,
    matchImages: fc.array(glob, { minLength: 1, maxLength: 3 }),
    defaultCacheDuration: fc.constantFrom('0s', '1m', '12h', '10m0s'),
    apiVersion: fc.constant('credentialprovider.kubelet.k8s.io/v1'),
  });

  it('property: whatever the layout of the file, the result reads as the list plus our entry, the rest unchanged', () => {
    fc.assert(
      fc.property(
        fc.array(entry, { minLength: 1, maxLength: 4 }),
        fc.constantFrom('json', 'yaml'),
        fc.constantFrom(0, 2, 4, '\t'),
        fc.boolean(),
        (providers, format, indent, indentSeq) => {
          const value = {
            apiVersion: 'kubelet.config.k8s.io/v1',
            kind: 'CredentialProviderConfig',
            extra: { keep: ['me'] },
            providers,
          };
          const text =
            format === 'json'
              ? `${JSON.stringify(value, null, indent === 0 ? undefined : indent)}\n`
              : new Document(value).toString({
                  indent: typeof indent === 'number' && indent > 0 ? indent : 2,
                  indentSeq,
                });
          const ours = { ...OURS, name: 'kubelet-image-service' };
          const added = withProvider(text, ours, null);
          expect(configFormatOf(added)).toBe(format);
          const read = parseProviderConfig(added);
          expect(read.value).toEqual({ ...value, providers: [...providers, ours] });
          // The node's text is kept: JSON around the inserted element, YAML line for line.
          if (format === 'json') {
            const end = text.lastIndexOf('}', text.lastIndexOf(']')) + 1;
            expect(added.startsWith(text.slice(0, end))).toBe(true);
            expect(added.endsWith(text.slice(end))).toBe(true);
          } else {
            const lines = added.split('\n');
            let at = 0;
            for (const line of text.split('\n')) {
              at = lines.indexOf(line, at);
              expect(at, line).toBeGreaterThanOrEqual(0);
              at++;
            }
          }
          const replaced = withProvider(
            added,
            { ...ours, defaultCacheDuration: '3m' },
            providers.length,
          );
          expect(parseProviderConfig(replaced).providers.at(-1)).toEqual({
            ...ours,
            defaultCacheDuration: '3m',
          });
          expect(withProvider(added, ours, providers.length)).toBe(added);
        },
      ),
    );
  });
});

describe('providerConfigYaml', () => {
  it('is a whole v1 config below the header', () => {
    const text = providerConfigYaml('# ours\n', [OURS]);
    expect(
      text.startsWith(
        '# ours\napiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\n',
      ),
    ).toBe(true);
    expect(parseProviderConfig(text).providers).toEqual([OURS]);
  });
});

describe('mayOverlap', () => {
  it.each([
    ['*.gcr.io', '*.gcr.io', true],
    ['*.gcr.io', 'eu.gcr.io', true],
    ['*.pkg.dev', '*-docker.pkg.dev', true],
    ['gcr.io', '*.gcr.io', false],
    ['gcr.io', 'gcr.io/proj', true],
    ['gcr.io/a', 'gcr.io/b', false],
    ['registry.io', 'registry.io:5000', false],
    ['10.0.0.*:5000', '10.0.0.7:5000/app', true],
    ['*.dkr.ecr.*.amazonaws.com', 'docker.example.com', false],
    ['container.cloud.google.com', '*.gcr.io', false],
  ])('%s and %s: %s', (a, b, want) => {
    expect(mayOverlap(a, b)).toBe(want);
    expect(mayOverlap(b, a)).toBe(want);
  });
});
