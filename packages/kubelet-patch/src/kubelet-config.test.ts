import { describe, expect, it } from 'vitest';
import { inspectKubeletConfig } from './kubelet-config.js';

const HEAD = 'apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n';

describe('inspectKubeletConfig', () => {
  it('reads the endpoints from YAML', () => {
    expect(
      inspectKubeletConfig(
        `${HEAD}containerRuntimeEndpoint: unix:///run/containerd/containerd.sock\nimageServiceEndpoint: "unix:///run/x.sock"\n`,
      ),
    ).toEqual({
      format: 'yaml',
      parses: true,
      error: null,
      containerRuntimeEndpoint: 'unix:///run/containerd/containerd.sock',
      imageServiceEndpoint: 'unix:///run/x.sock',
    });
  });

  it('reads JSON as JSON (also with a byte-order mark and leading space)', () => {
    expect(
      inspectKubeletConfig(
        '\uFEFF  {"kind":"KubeletConfiguration","apiVersion":"kubelet.config.k8s.io/v1beta1","imageServiceEndpoint":""}',
      ),
    ).toEqual({
      format: 'json',
      parses: true,
      error: null,
      containerRuntimeEndpoint: null,
      imageServiceEndpoint: null,
    });
  });

  it.each([
    ['yaml', `${HEAD}maxPods: 1\nmaxPods: 2\n`, /^invalid YAML: Map keys must be unique at line 4/],
    ['yaml', `${HEAD}clusterDNS: [10.0.0.10\n`, /^invalid YAML: .* at line \d+, column \d+/],
    ['yaml', `${HEAD}---\n${HEAD}`, /^invalid YAML: Source contains multiple documents/],
    ['yaml', `${HEAD}\tmaxPods: 1\n`, /^invalid YAML: Tabs are not allowed/],
    [
      'yaml',
      'a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n',
      /^invalid YAML: Excessive alias count/,
    ],
    ['json', '{"kind": "KubeletConfiguration",}', /^invalid JSON: /],
    ['json', '{"kind": "KubeletConfiguration", "kind": 1', /^invalid JSON: /],
    ['yaml', '', /^not a mapping \(the file holds nothing\)$/],
    ['yaml', '- a\n- b\n', /^not a mapping \(the file holds a list\)$/],
    [
      'yaml',
      'apiVersion: v1\nkind: ConfigMap\n',
      /^kind is "ConfigMap", not "KubeletConfiguration"$/,
    ],
    [
      'yaml',
      'kind: KubeletConfiguration\n',
      /^apiVersion is null, not kubelet\.config\.k8s\.io\/v1beta1$/,
    ],
    [
      'yaml',
      `${HEAD}imageServiceEndpoint: 42\n`,
      /^imageServiceEndpoint is a number, not a string$/,
    ],
    [
      'yaml',
      `${HEAD}containerRuntimeEndpoint: [a]\n`,
      /^containerRuntimeEndpoint is a list, not a string$/,
    ],
  ])('reports a %s file that is not a KubeletConfiguration: %j', (format, text, error) => {
    const facts = inspectKubeletConfig(text);
    expect(facts).toMatchObject({
      format,
      parses: false,
      containerRuntimeEndpoint: null,
      imageServiceEndpoint: null,
    });
    expect(facts.error).toMatch(error);
  });
});
