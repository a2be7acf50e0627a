import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HOST_SERVICE_DEFAULTS, hostServiceUnit } from '@org/cri-image-service';
import { describe, expect, it } from 'vitest';

/**
 * The shipped unit file and the one node-patcher --install-service writes are one text: the
 * file is the renderer's output for the default paths under a comment header (the file's
 * systemd-analyze and ExecStart checks are in sea.integration.test.ts).
 */
describe('deploy/kubelet-image-service.service', () => {
  const file = readFileSync(
    join(import.meta.dirname, '..', 'deploy', 'kubelet-image-service.service'),
    'utf8',
  );

  it('is hostServiceUnit() for the default paths, under a comment header', () => {
    const body = hostServiceUnit(HOST_SERVICE_DEFAULTS);
    expect(file.endsWith(body)).toBe(true);
    const header = file.slice(0, file.length - body.length);
    expect(header.split('\n').filter((l) => l !== '' && !l.startsWith('#'))).toEqual([]);
  });

  it('puts other paths where the defaults are, and refuses one that is not plain', () => {
    const unit = hostServiceUnit({
      ...HOST_SERVICE_DEFAULTS,
      executable: '/home/kubernetes/bin/kubelet-image-service',
      backendEndpoint: 'unix:///run/crio/crio.sock',
    });
    expect(unit).toMatch(/^ExecStart=\/home\/kubernetes\/bin\/kubelet-image-service serve \\$/m);
    expect(unit).toMatch(
      /^ExecStartPost=\/home\/kubernetes\/bin\/kubelet-image-service probe \\$/m,
    );
    expect(unit).toContain('--backend-endpoint unix:///run/crio/crio.sock\n');
    expect(unit).not.toContain('/opt/');
    expect(() =>
      hostServiceUnit({ ...HOST_SERVICE_DEFAULTS, rules: '/etc/x.yaml --listen tcp://0.0.0.0:1' }),
    ).toThrow(TypeError);
  });
});
