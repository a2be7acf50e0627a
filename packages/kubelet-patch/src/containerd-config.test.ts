import { describe, expect, it } from 'vitest';
import { inspectContainerdConfig } from './containerd-config.js';

describe('inspectContainerdConfig', () => {
  it.each([
    [
      'version 2 with config_path',
      'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n',
      2,
      '/etc/containerd/certs.d',
    ],
    [
      'version 2, config_path empty (the default config)',
      'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = ""\n',
      2,
      null,
    ],
    ['version 2 without a registry table', 'version = 2\n[grpc]\naddress = "/x.sock"\n', 2, null],
    [
      'version 3 (containerd 2.x images plugin)',
      "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\nconfig_path = '/a:/b'\n",
      3,
      '/a:/b',
    ],
    [
      'version 3 with the path under the old version 2 table (not read by containerd 2)',
      'version = 3\n[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = "/old"\n',
      3,
      null,
    ],
    [
      'no version: version 1, plugins.cri',
      '[plugins.cri.registry]\nconfig_path = "/etc/containerd/certs.d"\n',
      1,
      '/etc/containerd/certs.d',
    ],
    ['an empty file', '', 1, null],
  ])('%s', (_name, text, version, registryConfigPath) => {
    expect(inspectContainerdConfig(text)).toEqual({
      parses: true,
      error: null,
      version,
      registryConfigPath,
      imports: [],
    });
  });

  it('lists imports without reading them', () => {
    expect(
      inspectContainerdConfig('version = 2\nimports = ["/etc/containerd/conf.d/*.toml"]\n'),
    ).toMatchObject({ parses: true, imports: ['/etc/containerd/conf.d/*.toml'] });
  });

  it.each([
    ['version = 2\n[plugins\n', /^invalid TOML: .* \(line 2, column \d+\)$/],
    ['version = 2\nversion = 3\n', /^invalid TOML: /],
    ['version = 4\n', /^version is "4"; containerd knows 1, 2 and 3$/],
    ['version = "2"\n', /^version is "2"; containerd knows 1, 2 and 3$/],
    ['imports = "x"\n', /^imports is not a list of file names$/],
    [
      'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = 1\n',
      /^registry config_path is not a string$/,
    ],
  ])('reports %j as unparsable', (text, error) => {
    const facts = inspectContainerdConfig(text);
    expect(facts).toMatchObject({ parses: false, version: null, registryConfigPath: null });
    expect(facts.error).toMatch(error);
  });
});
