import { describe, expect, it } from 'vitest';
import { findKubeletFlags } from './kubelet-flags.js';

const NONE = {
  config: null,
  configDir: null,
  containerRuntimeEndpoint: null,
  imageServiceEndpoint: null,
  imageCredentialProviderConfig: null,
  imageCredentialProviderBinDir: null,
};

describe('findKubeletFlags', () => {
  it.each([
    [['--config=/a.yaml'], { config: '/a.yaml' }],
    [['--config', '/a.yaml', '--v=2'], { config: '/a.yaml' }],
    [['--config=/a', '--config', '/b'], { config: '/b' }],
    [
      ['--config-dir=/d', '--image-service-endpoint', 'unix:///i.sock'],
      { configDir: '/d', imageServiceEndpoint: 'unix:///i.sock' },
    ],
    [
      [
        '--image-credential-provider-config=/c.yaml',
        '--image-credential-provider-bin-dir',
        '/bin',
        '--container-runtime-endpoint=unix:///r.sock',
      ],
      {
        imageCredentialProviderConfig: '/c.yaml',
        imageCredentialProviderBinDir: '/bin',
        containerRuntimeEndpoint: 'unix:///r.sock',
      },
    ],
    [['--configx=/a', '-config=/b', 'config=/c', '--config'], {}],
    [['--', '--config=/after-dashes'], {}],
    [['--constructor=x', '--toString', 'y'], {}],
  ])('%j', (args, flags) => {
    expect(findKubeletFlags(args)).toEqual({ ...NONE, ...flags });
  });
});
