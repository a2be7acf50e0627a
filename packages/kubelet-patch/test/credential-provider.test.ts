import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { HostRoot } from '../src/host-root.js';
import {
  type ApplyOptions,
  applyToNode,
  CREDENTIAL_PROVIDER_CONFIG,
  CREDENTIAL_PROVIDER_DROP_IN,
  detectLayout,
  largeContentOf,
  PlanError,
  planCredentialProvider,
  readState,
  revertNode,
  type SystemdControl,
  type TransactionError,
} from '../src/index.js';
import {
  copyOf,
  GOLDEN,
  LAYOUTS,
  recorder,
  rejected,
  snapshot,
  withoutFailureRecord,
} from './host-fixtures.js';

const scratch = mkdtempSync(join(tmpdir(), 'kubelet-patch-cp-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const EXECUTABLE = join(scratch, 'kubelet-image-service');
writeFileSync(EXECUTABLE, '#!/bin/sh\necho "kubelet-image-service stand-in"\n', { mode: 0o755 });
const RULES = join(scratch, 'rules.yaml');
writeFileSync(
  RULES,
  'rules:\n  - match: ["*.gcr.io", "docker.example.com"]\n    credentials: { provider: gcp }\n',
);
/** What `credentialProviderConfig(rules).providers[0]` of @org/cri-image-service gives. */
const PROVIDER = {
  name: 'kubelet-image-service',
  matchImages: ['*.gcr.io', 'docker.example.com'],
  defaultCacheDuration: '5m',
  apiVersion: 'credentialprovider.kubelet.k8s.io/v1',
  args: ['credential-provider', '--config', '/etc/kubelet-image-service/rules.yaml'],
};

/** Where each layout's kubelet reads providers from and runs them, after the apply. */
const WHERE: Record<(typeof LAYOUTS)[number], { config: string; binDir: string }> = {
  'gke-cos': { config: '/home/kubernetes/cri-auth-config.yaml', binDir: '/home/kubernetes/bin' },
  'gke-ubuntu': {
    config: '/home/kubernetes/cri-auth-config.yaml',
    binDir: '/home/kubernetes/bin',
  },
  'eks-al2': {
    config: '/etc/eks/image-credential-provider/config.json',
    binDir: '/etc/eks/image-credential-provider',
  },
  'eks-al2023': {
    config: '/etc/eks/image-credential-provider/config.json',
    binDir: '/etc/eks/image-credential-provider',
  },
  'eks-al2023-config-dir': {
    config: '/etc/eks/image-credential-provider/config.json',
    binDir: '/etc/eks/image-credential-provider',
  },
  aks: {
    config: '/var/lib/kubelet/credential-provider-config.yaml',
    binDir: '/var/lib/kubelet/credential-provider',
  },
  'aks-no-config-file': {
    config: '/var/lib/kubelet/credential-provider-config.yaml',
    binDir: '/var/lib/kubelet/credential-provider',
  },
  'kubeadm-deb': { config: CREDENTIAL_PROVIDER_CONFIG, binDir: '/opt/kubelet-image-service/bin' },
  'kubeadm-rpm': { config: CREDENTIAL_PROVIDER_CONFIG, binDir: '/opt/kubelet-image-service/bin' },
};

function options(
  root: string,
  systemd: { connect: () => Promise<SystemdControl> },
  extra: Partial<ApplyOptions> = {},
): ApplyOptions {
  return {
    hostRoot: root,
    mode: 'credential-provider',
    executable: EXECUTABLE,
    rules: RULES,
    provider: PROVIDER,
    connectSystemd: systemd.connect,
    waitHealthy: async () => {},
    ...extra,
  };
}

/** The providers kubelet would read from a config file (YAML or JSON) on the host. */
function providersIn(root: string, path: string): Array<Record<string, unknown>> {
  return (parseYaml(readFileSync(join(root, path), 'utf8')) as { providers: [] }).providers;
}

describe('apply --mode credential-provider on every layout', () => {
  for (const fixture of LAYOUTS) {
    it(`${fixture}: the dry-run diff is the golden one, and touches nothing`, async () => {
      const root = copyOf(scratch, fixture);
      const before = snapshot(root);
      const out = await applyToNode(options(root, recorder(), { dryRun: true }));
      const golden = join(GOLDEN, `${fixture}.credential-provider.diff`);
      if (process.env.UPDATE_GOLDEN === '1') writeFileSync(golden, out.diff);
      expect(out.diff).toBe(readFileSync(golden, 'utf8'));
      expect(out.diff).not.toContain('provider: gcp'); // the rules are named, not shown
      expect(snapshot(root)).toEqual(before);
    });

    it(`${fixture}: kubelet gets the plugin; apply again changes nothing; revert gives back every byte`, async () => {
      const root = copyOf(scratch, fixture);
      const before = snapshot(root);
      const systemd = recorder();
      const out = await applyToNode(options(root, systemd));
      expect(out.plan.reload).toBe(false);
      expect(systemd.calls).toEqual(['restart kubelet.service']);

      // What kubelet reads at its next start: both flags, our provider last, the executable.
      const where = WHERE[fixture];
      const layout = await detectLayout(root);
      expect(layout.credentialProvider).toEqual(where);
      const providers = providersIn(root, where.config);
      expect(providers.at(-1)).toEqual(PROVIDER);
      expect(providers.filter((p) => p.name === PROVIDER.name)).toHaveLength(1);
      const exe = join(root, where.binDir, 'kubelet-image-service');
      expect(readFileSync(exe)).toEqual(readFileSync(EXECUTABLE));
      expect(statSync(exe).mode & 0o777).toBe(0o755);
      const rules = join(root, 'etc/kubelet-image-service/rules.yaml');
      expect(readFileSync(rules)).toEqual(readFileSync(RULES));
      expect(statSync(rules).mode & 0o777).toBe(0o600);
      expect(readState(new HostRoot(root), '/var/lib/node-patcher')?.mode).toBe(
        'credential-provider',
      );

      const mid = snapshot(root);
      const again = await applyToNode(options(root, systemd));
      expect(again.plan.changes).toEqual([]);
      expect(systemd.calls).toEqual(['restart kubelet.service']);
      expect(snapshot(root)).toEqual(mid);

      const reverted = await revertNode(options(root, systemd));
      expect(reverted.changed).toHaveLength(out.result?.changed.length ?? -1);
      expect(systemd.calls).toEqual(['restart kubelet.service', 'restart kubelet.service']);
      expect(snapshot(root)).toEqual(before);
    });
  }

  it('new rules replace our entry where it stands; revert still gives back the first original', async () => {
    const root = copyOf(scratch, 'eks-al2');
    const before = snapshot(root);
    await applyToNode(options(root, recorder()));
    const wider = { ...PROVIDER, matchImages: [...PROVIDER.matchImages, '*.pkg.dev'] };
    const systemd = recorder();
    const out = await applyToNode(options(root, systemd, { provider: wider }));
    expect(out.result?.changed).toEqual(['/etc/eks/image-credential-provider/config.json']);
    const providers = providersIn(root, '/etc/eks/image-credential-provider/config.json');
    expect(providers.map((p) => p.name)).toEqual(['ecr-credential-provider', PROVIDER.name]);
    expect(providers[1]).toEqual(wider);
    await revertNode(options(root, systemd));
    expect(snapshot(root)).toEqual(before);
  });

  it('a config the node wrote again since (nodeadm at boot) gets our entry again', async () => {
    const root = copyOf(scratch, 'eks-al2023');
    const path = join(root, 'etc/eks/image-credential-provider/config.json');
    const original = readFileSync(path);
    const before = snapshot(root);
    await applyToNode(options(root, recorder()));
    writeFileSync(path, original);
    const out = await applyToNode(options(root, recorder()));
    expect(out.result?.changed).toEqual(['/etc/eks/image-credential-provider/config.json']);
    expect(providersIn(root, '/etc/eks/image-credential-provider/config.json')).toHaveLength(2);
    await revertNode(options(root, recorder()));
    expect(snapshot(root)).toEqual(before);
  });

  it('notes the route, the overlap with GKE auth-provider-gcp, and why there is no guard', async () => {
    const root = copyOf(scratch, 'gke-cos');
    const out = await applyToNode(options(root, recorder(), { dryRun: true }));
    const notes = out.plan.notes.join('\n');
    expect(notes).toMatch(/--image-credential-provider-bin-dir \/home\/kubernetes\/bin/);
    expect(notes).toMatch(/auth-provider-gcp also matches "\*\.gcr\.io".*listed first/);
    expect(notes).not.toMatch(/"container\.cloud\.google\.com"/);
    expect(notes).toMatch(/no guard drop-in: kubelet does not start when a configured plugin/);
  });
});

describe('a config directory (--image-credential-provider-config naming a directory)', () => {
  /** The AKS node with its provider config moved into a directory kubelet merges. */
  function withConfigDir(): string {
    const root = copyOf(scratch, 'aks');
    const file = join(root, 'var/lib/kubelet/credential-provider-config.yaml');
    renameSync(file, `${file}.tmp`);
    mkdirSync(file);
    renameSync(`${file}.tmp`, join(file, '10-acr.yaml'));
    return root;
  }

  it('gets a file of our own, last in name order; revert removes it', async () => {
    const root = withConfigDir();
    const before = snapshot(root);
    const systemd = recorder();
    const out = await applyToNode(options(root, systemd));
    const ours = `/var/lib/kubelet/credential-provider-config.yaml/${CREDENTIAL_PROVIDER_DROP_IN}`;
    expect(out.result?.changed).toContain(ours);
    expect(providersIn(root, ours)).toEqual([PROVIDER]);
    expect(systemd.calls).toEqual(['restart kubelet.service']);
    expect((await applyToNode(options(root, systemd))).plan.changes).toEqual([]);
    await revertNode(options(root, systemd));
    expect(snapshot(root)).toEqual(before);
  });

  it('refuses when another file there already declares our provider name', async () => {
    const root = withConfigDir();
    writeFileSync(
      join(root, 'var/lib/kubelet/credential-provider-config.yaml/20-other.yaml'),
      'kind: CredentialProviderConfig\napiVersion: kubelet.config.k8s.io/v1\nproviders:\n  - name: kubelet-image-service\n    matchImages: ["x.io"]\n',
    );
    const before = snapshot(root);
    const err = await rejected<PlanError>(applyToNode(options(root, recorder())));
    expect(err.code).toBe('NOT_OURS');
    expect(err.message).toContain('20-other.yaml');
    expect(snapshot(root)).toEqual(before);
  });
});

describe('refusals: nothing written, nothing restarted', () => {
  async function refused(root: string, code: string, message: RegExp, extra = {}) {
    const before = snapshot(root);
    const systemd = recorder();
    const err = await rejected<PlanError>(applyToNode(options(root, systemd, extra)));
    expect(err).toBeInstanceOf(PlanError);
    expect(err.code).toBe(code);
    expect(err.message).toMatch(message);
    expect(systemd.calls).toEqual([]);
    expect(snapshot(root)).toEqual(before);
  }

  it('a provider of our name the node already had is not ours', async () => {
    const root = copyOf(scratch, 'gke-ubuntu');
    const path = join(root, 'home/kubernetes/cri-auth-config.yaml');
    writeFileSync(
      path,
      `${readFileSync(path, 'utf8')}  - name: kubelet-image-service\n    matchImages: ["corp.example.com"]\n    defaultCacheDuration: 1m\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n`,
    );
    await refused(root, 'NOT_OURS', /cri-auth-config\.yaml already has a provider named/);
  });

  it('a file at <bin-dir>/kubelet-image-service the patcher did not write is not ours', async () => {
    const root = copyOf(scratch, 'aks');
    writeFileSync(
      join(root, 'var/lib/kubelet/credential-provider/kubelet-image-service'),
      '#!/bin/sh\n# the operator\n',
      { mode: 0o755 },
    );
    await refused(root, 'NOT_OURS', /kubelet-image-service exists and node-patcher did not write/);
  });

  it.each([
    ['gke-cos', 'home/kubernetes/cri-auth-config.yaml', 'providers: [\n', /does not parse as yaml/],
    ['eks-al2023', 'etc/eks/image-credential-provider/config.json', '{"kind": ', /as json/],
    [
      'aks',
      'var/lib/kubelet/credential-provider-config.yaml',
      'kind: KubeletConfiguration\n',
      /is not a CredentialProviderConfig/,
    ],
    [
      'aks-no-config-file',
      'var/lib/kubelet/credential-provider-config.yaml',
      'kind: CredentialProviderConfig\nproviders:\n  - matchImages: ["x.io"]\n',
      /providers\[0\] has no name/,
    ],
  ])('%s: a config kubelet could not load is refused (%s)', async (fixture, path, text, why) => {
    const root = copyOf(scratch, fixture);
    writeFileSync(join(root, path), text);
    await refused(root, 'CONFIG_INVALID', why);
  });

  it('a config file the flag names but that does not exist is refused', async () => {
    const root = copyOf(scratch, 'aks');
    rmSync(join(root, 'var/lib/kubelet/credential-provider-config.yaml'));
    await refused(root, 'CONFIG_INVALID', /which does not exist/);
  });

  it.each([
    [
      '--image-credential-provider-bin-dir=/var/lib/kubelet/credential-provider ',
      /no --image-credential-provider-bin-dir/,
    ],
    [
      '--image-credential-provider-config=/var/lib/kubelet/credential-provider-config.yaml ',
      /no --image-credential-provider-config/,
    ],
  ])('one flag without the other is refused (without %s)', async (flag, message) => {
    const root = copyOf(scratch, 'aks');
    const env = join(root, 'etc/default/kubelet');
    writeFileSync(env, readFileSync(env, 'utf8').replace(flag, ''));
    await refused(root, 'UNSAFE_EDIT', message);
  });

  it('tokenAttributes in a config older than kubelet.config.k8s.io/v1 is refused', async () => {
    const root = copyOf(scratch, 'eks-al2');
    const path = join(root, 'etc/eks/image-credential-provider/config.json');
    writeFileSync(
      path,
      readFileSync(path, 'utf8').replace('config.k8s.io/v1"', 'config.k8s.io/v1beta1"'),
    );
    const provider = {
      ...PROVIDER,
      tokenAttributes: {
        serviceAccountTokenAudience: 'docker.example.com',
        cacheType: 'ServiceAccount',
        requireServiceAccount: true,
      },
    };
    await refused(root, 'UNSAFE_EDIT', /only kubelet\.config\.k8s\.io\/v1 has/, { provider });
  });

  it.each([
    [{ ...PROVIDER, name: 'other' }, /provider\.name must be "kubelet-image-service"/],
    [{ ...PROVIDER, matchImages: [] }, /matchImages must list at least one/],
    [{ ...PROVIDER, args: undefined }, /plain data/],
  ])('a provider entry kubelet could not use is refused (%#)', async (provider, message) => {
    await refused(copyOf(scratch, 'kubeadm-deb'), 'BAD_OPTION', message, { provider });
  });

  it('a missing option is a TypeError', async () => {
    const root = copyOf(scratch, 'kubeadm-deb');
    const { provider: _p, ...without } = options(root, recorder());
    await expect(applyToNode(without)).rejects.toThrow(
      new TypeError(
        '--mode credential-provider needs --plugin FILE, --rules FILE and the provider entry',
      ),
    );
  });

  it('a plugin directory on a noexec mount is refused (COS: /home without the bin remount)', async () => {
    const root = copyOf(scratch, 'gke-cos');
    const host = new HostRoot(root);
    const layout = await detectLayout(root);
    const mountinfo = (remount: boolean) =>
      [
        '22 1 0:21 / / rw,relatime - overlay overlay rw',
        `40 22 8:1 / ${host.root} ro,relatime - ext2 /dev/dm-0 ro`,
        `41 40 8:1 /home ${host.root}/home rw,nosuid,nodev,noexec,relatime - ext4 /dev/sda1 rw`,
        ...(remount
          ? [
              `42 41 8:1 /home/kubernetes/bin ${host.root}/home/kubernetes/bin rw,relatime - ext4 /dev/sda1 rw`,
            ]
          : []),
      ].join('\n');
    const planWith = (table: string) =>
      planCredentialProvider(layout, host, {
        executable: largeContentOf(EXECUTABLE),
        rules: readFileSync(RULES),
        provider: PROVIDER,
        mountinfo: table,
      });
    expect(planWith(mountinfo(true)).changes.length).toBeGreaterThan(0);
    let err: unknown;
    try {
      planWith(mountinfo(false));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PlanError);
    expect((err as PlanError).code).toBe('UNSAFE_EDIT');
    expect((err as PlanError).message).toMatch(/\/home\/kubernetes\/bin is on a noexec mount/);
  });
});

describe('kubelet does not come back: rolled back byte for byte', () => {
  it.each(['gke-cos', 'kubeadm-rpm'])('%s: healthz never ok after the restart', async (fixture) => {
    const root = copyOf(scratch, fixture);
    const before = snapshot(root);
    const systemd = recorder();
    let checks = 0;
    const err = await rejected<TransactionError>(
      applyToNode(
        options(root, systemd, {
          waitHealthy: async () => {
            if (++checks === 1) throw new Error('healthz did not answer ok (last: ECONNREFUSED)');
          },
        }),
      ),
    );
    expect(err.code).toBe('ROLLED_BACK');
    expect(err.message).toMatch(/ECONNREFUSED.*original files are back/);
    expect(systemd.calls).toEqual(['restart kubelet.service', 'restart kubelet.service']);
    expect(withoutFailureRecord(snapshot(root), before)).toEqual(before);
    expect(existsSync(join(root, 'var/lib/node-patcher/state.json'))).toBe(false);
  });

  it('aks: the restart job fails', async () => {
    const root = copyOf(scratch, 'aks');
    const before = snapshot(root);
    const systemd = recorder({ failRestart: (n) => n === 1 });
    const err = await rejected<TransactionError>(applyToNode(options(root, systemd)));
    expect(err.code).toBe('ROLLED_BACK');
    expect(err.message).toMatch(/restart job of kubelet.service ended "failed"/);
    expect(withoutFailureRecord(snapshot(root), before)).toEqual(before);
  });

  it('another mode already applied is refused until revert', async () => {
    const root = copyOf(scratch, 'eks-al2');
    await applyToNode(options(root, recorder()));
    const err = await rejected<TransactionError>(
      applyToNode(
        options(root, recorder(), {
          mode: 'containerd-mirror',
          mirror: 'https://registry-proxy.example.com',
          registries: ['gcr.io'],
          setConfigPath: true,
        }),
      ),
    );
    expect(err.code).toBe('MODE_CONFLICT');
  });
});
