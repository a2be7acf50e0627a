import { describe, expect, it } from 'vitest';
import { parseVersionOutput, versionFromDpkgStatus } from './kubelet-version.js';

describe('parseVersionOutput', () => {
  it.each([
    ['Kubernetes v1.31.2\n', 'v1.31.2'],
    ['Kubernetes v1.31.6-gke.1020000', 'v1.31.6-gke.1020000'],
    ['  Kubernetes v1.29.15-eks-473151a  \n', 'v1.29.15-eks-473151a'],
    ['Kubernetes v1.33.0-alpha.1+abc', 'v1.33.0-alpha.1+abc'],
    ['kubelet 1.31.2', null],
    ['Kubernetes v1.31', null],
    ['Kubernetes v1.31.2\nsomething else', null],
    ['', null],
  ])('%j', (stdout, version) => {
    expect(parseVersionOutput(stdout)).toBe(version);
  });
});

describe('versionFromDpkgStatus', () => {
  const stanza = (pkg: string, status: string, version: string) =>
    `Package: ${pkg}\nStatus: ${status}\nArchitecture: amd64\nVersion: ${version}\nDescription: x\n more\n`;

  it.each([
    [stanza('kubelet', 'install ok installed', '1.31.2-1.1'), 'v1.31.2'],
    [stanza('kubelet', 'hold ok installed', '1:1.30.0-00'), 'v1.30.0'],
    [
      `${stanza('kubeadm', 'install ok installed', '1.29.0-1.1')}\n${stanza('kubelet', 'install ok installed', '1.28.4-1.1')}`,
      'v1.28.4',
    ],
    [stanza('kubelet', 'deinstall ok config-files', '1.31.2-1.1'), null],
    [stanza('kubeadm', 'install ok installed', '1.31.2-1.1'), null],
    [stanza('kubelet', 'install ok installed', 'weird'), null],
    ['', null],
  ])('%#', (text, version) => {
    expect(versionFromDpkgStatus(text)).toBe(version);
  });
});
