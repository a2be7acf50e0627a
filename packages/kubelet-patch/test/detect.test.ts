// biome-ignore-all lint/suspicious/noTemplateCurlyInString: these strings are systemd command lines, where ${VAR} is systemd's syntax
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  realpathSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  detectLayout,
  HostFileError,
  type KubeletBinary,
  type KubeletFlags,
  type KubeletLayout,
  LayoutError,
  MAX_FILE_BYTES,
  type VersionRunner,
} from '../src/index.js';

const FIXTURES = join(import.meta.dirname, 'fixtures');
const scratch = mkdtempSync(join(tmpdir(), 'kubelet-patch-detect-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A VersionRunner that answers like the fixture's kubelet and records what it was asked. */
function runner(answer: string | Error): { run: VersionRunner; calls: KubeletBinary[] } {
  const calls: KubeletBinary[] = [];
  return {
    calls,
    run: async (binary) => {
      calls.push(binary);
      if (answer instanceof Error) throw answer;
      return answer;
    },
  };
}

function notRunnable(): Error {
  return Object.assign(new Error('spawn EACCES'), { code: 'EACCES' });
}

/** A private copy of a fixture (relative and absolute links kept as they are) to change. */
let copies = 0;
function copyOf(fixture: string): string {
  const root = join(scratch, `${fixture}-${copies++}`, 'host');
  cpSync(join(FIXTURES, fixture), root, { recursive: true, verbatimSymlinks: true });
  return root;
}

function write(root: string, path: string, content: string | Buffer): void {
  mkdirSync(join(root, path, '..'), { recursive: true });
  writeFileSync(join(root, path), content);
}

async function refused(promise: Promise<unknown>): Promise<LayoutError | HostFileError> {
  const err = await promise.then(
    () => {
      throw new Error('expected detectLayout to refuse the node');
    },
    (e: unknown) => e,
  );
  expect(err).toSatisfy((e) => e instanceof LayoutError || e instanceof HostFileError);
  return err as LayoutError | HostFileError;
}

const NO_FLAGS: KubeletFlags = {
  config: null,
  configDir: null,
  containerRuntimeEndpoint: null,
  imageServiceEndpoint: null,
  imageCredentialProviderConfig: null,
  imageCredentialProviderBinDir: null,
};

const CONTAINERD = '/etc/containerd/config.toml';

const GKE_ARGS = (distribution: string) => [
  '--v=2',
  '--cloud-provider=external',
  '--cert-dir=/var/lib/kubelet/pki/',
  '--kubeconfig=/var/lib/kubelet/kubeconfig',
  '--bootstrap-kubeconfig=/var/lib/kubelet/bootstrap-kubeconfig',
  '--image-credential-provider-config=/home/kubernetes/cri-auth-config.yaml',
  '--image-credential-provider-bin-dir=/home/kubernetes/bin',
  '--max-pods=110',
  `--node-labels=cloud.google.com/gke-nodepool=default-pool,cloud.google.com/gke-os-distribution=${distribution}`,
  '--volume-plugin-dir=/home/kubernetes/flexvolume',
  '--container-runtime-endpoint=unix:///run/containerd/containerd.sock',
  '--runtime-cgroups=/system.slice/containerd.service',
  '--config',
  '/home/kubernetes/kubelet-config.yaml',
];

const GKE_COMMON = {
  unit: {
    name: 'kubelet.service',
    path: '/etc/systemd/system/kubelet.service',
    dropIns: [],
    execStart: ['/home/kubernetes/bin/kubelet', '$KUBELET_OPTS'],
    execStartIn: '/etc/systemd/system/kubelet.service',
    environmentFiles: [{ path: '/etc/default/kubelet', optional: false, exists: true }],
    argsVariables: [{ name: 'KUBELET_OPTS', definedIn: '/etc/default/kubelet' }],
  },
  config: {
    path: '/home/kubernetes/kubelet-config.yaml',
    exists: true,
    format: 'yaml',
    parses: true,
    error: null,
    containerRuntimeEndpoint: null,
    imageServiceEndpoint: null,
  },
  configDir: null,
  credentialProvider: {
    config: '/home/kubernetes/cri-auth-config.yaml',
    binDir: '/home/kubernetes/bin',
  },
  notes: [],
} as const;

const GKE_FLAGS: KubeletFlags = {
  ...NO_FLAGS,
  config: '/home/kubernetes/kubelet-config.yaml',
  containerRuntimeEndpoint: 'unix:///run/containerd/containerd.sock',
  imageCredentialProviderConfig: '/home/kubernetes/cri-auth-config.yaml',
  imageCredentialProviderBinDir: '/home/kubernetes/bin',
};

const EKS_CREDENTIAL_PROVIDER = {
  config: '/etc/eks/image-credential-provider/config.json',
  binDir: '/etc/eks/image-credential-provider',
};

const AL2023_UNIT = {
  name: 'kubelet.service',
  path: '/etc/systemd/system/kubelet.service',
  dropIns: [],
  execStart: ['/usr/bin/kubelet', '$NODEADM_KUBELET_ARGS'],
  execStartIn: '/etc/systemd/system/kubelet.service',
  environmentFiles: [{ path: '/etc/eks/kubelet/environment', optional: false, exists: true }],
  argsVariables: [{ name: 'NODEADM_KUBELET_ARGS', definedIn: '/etc/eks/kubelet/environment' }],
} as const;

const AL2023_OS = {
  path: '/etc/os-release',
  id: 'amzn',
  versionId: '2023',
  prettyName: 'Amazon Linux 2023.6.20250203',
};

const AL2023_CONFIG = {
  path: '/etc/kubernetes/kubelet/config.json',
  exists: true,
  format: 'json',
  parses: true,
  error: null,
  containerRuntimeEndpoint: 'unix:///run/containerd/containerd.sock',
  imageServiceEndpoint: null,
} as const;

const EKS_CONTAINERD = {
  path: CONTAINERD,
  exists: true,
  parses: true,
  error: null,
  version: 2,
  registryConfigPath: '/etc/containerd/certs.d:/etc/docker/certs.d',
  imports: [],
};

const AKS_UNIT_WORDS = [
  '/usr/local/bin/kubelet',
  '--enable-server',
  '--node-labels=${KUBELET_NODE_LABELS}',
  '--v=2',
  '--volume-plugin-dir=/etc/kubernetes/volumeplugins',
  '$KUBELET_TLS_BOOTSTRAP_FLAGS',
  '$KUBELET_CONFIG_FILE_FLAGS',
  '$KUBELET_CONTAINERD_FLAGS',
  '$KUBELET_CONTAINER_RUNTIME_FLAG',
  '$KUBELET_CGROUP_FLAGS',
  '$KUBELET_FLAGS',
];

const AKS_CONTAINERD = {
  path: CONTAINERD,
  exists: true,
  parses: true,
  error: null,
  version: 2,
  registryConfigPath: '/etc/containerd/certs.d',
  imports: [],
};

const AKS_DROPINS = '/etc/systemd/system/kubelet.service.d';

const KUBEADM_EXEC = [
  '/usr/bin/kubelet',
  '$KUBELET_KUBECONFIG_ARGS',
  '$KUBELET_CONFIG_ARGS',
  '$KUBELET_KUBEADM_ARGS',
  '$KUBELET_EXTRA_ARGS',
];

interface Case {
  /** What the fixture's kubelet answers to --version (or how it fails). */
  readonly answer: string | Error;
  /** The host path the runner must be asked to run. */
  readonly binary: string;
  readonly expected: KubeletLayout;
}

const CASES: Record<string, Case> = {
  'gke-cos': {
    answer: 'Kubernetes v1.31.6-gke.1020000\n',
    binary: '/home/kubernetes/bin/kubelet',
    expected: {
      distribution: 'gke-cos',
      os: {
        path: '/etc/os-release',
        id: 'cos',
        versionId: '117',
        prettyName: 'Container-Optimized OS from Google',
      },
      kubelet: {
        binary: '/home/kubernetes/bin/kubelet',
        version: 'v1.31.6-gke.1020000',
        versionSource: 'binary',
        args: GKE_ARGS('cos'),
        flags: GKE_FLAGS,
      },
      ...GKE_COMMON,
      containerd: {
        path: CONTAINERD,
        exists: true,
        parses: true,
        error: null,
        version: 2,
        registryConfigPath: null,
        imports: [],
      },
    },
  },
  'gke-ubuntu': {
    answer: 'Kubernetes v1.30.9-gke.1201000\n',
    binary: '/home/kubernetes/bin/kubelet',
    expected: {
      distribution: 'gke-ubuntu',
      os: {
        path: '/etc/os-release',
        id: 'ubuntu',
        versionId: '22.04',
        prettyName: 'Ubuntu 22.04.5 LTS',
      },
      kubelet: {
        binary: '/home/kubernetes/bin/kubelet',
        version: 'v1.30.9-gke.1201000',
        versionSource: 'binary',
        args: GKE_ARGS('ubuntu'),
        flags: GKE_FLAGS,
      },
      ...GKE_COMMON,
      containerd: {
        path: CONTAINERD,
        exists: true,
        parses: true,
        error: null,
        version: 2,
        registryConfigPath: '/etc/containerd/hosts.d',
        imports: [],
      },
    },
  },
  'eks-al2': {
    answer: 'Kubernetes v1.29.15-eks-473151a\n',
    binary: '/usr/bin/kubelet',
    expected: {
      distribution: 'eks-al2',
      os: { path: '/etc/os-release', id: 'amzn', versionId: '2', prettyName: 'Amazon Linux 2' },
      kubelet: {
        binary: '/usr/bin/kubelet',
        version: 'v1.29.15-eks-473151a',
        versionSource: 'binary',
        args: [
          '--config',
          '/etc/kubernetes/kubelet/kubelet-config.json',
          '--kubeconfig',
          '/var/lib/kubelet/kubeconfig',
          '--container-runtime-endpoint',
          'unix:///run/containerd/containerd.sock',
          '--image-credential-provider-config',
          '/etc/eks/image-credential-provider/config.json',
          '--image-credential-provider-bin-dir',
          '/etc/eks/image-credential-provider',
          '--node-ip=192.168.45.12',
          '--pod-infra-container-image=602401143452.dkr.ecr.eu-west-1.amazonaws.com/eks/pause:3.5',
          '--v=2',
          '--hostname-override=ip-192-168-45-12.eu-west-1.compute.internal',
          '--cloud-provider=aws',
          '--node-labels=eks.amazonaws.com/nodegroup=workers',
          '--max-pods=29',
        ],
        flags: {
          ...NO_FLAGS,
          config: '/etc/kubernetes/kubelet/kubelet-config.json',
          containerRuntimeEndpoint: 'unix:///run/containerd/containerd.sock',
          imageCredentialProviderConfig: EKS_CREDENTIAL_PROVIDER.config,
          imageCredentialProviderBinDir: EKS_CREDENTIAL_PROVIDER.binDir,
        },
      },
      unit: {
        name: 'kubelet.service',
        path: '/etc/systemd/system/kubelet.service',
        dropIns: [
          '/etc/systemd/system/kubelet.service.d/10-kubelet-args.conf',
          '/etc/systemd/system/kubelet.service.d/30-kubelet-extra-args.conf',
        ],
        execStart: [
          '/usr/bin/kubelet',
          '--config',
          '/etc/kubernetes/kubelet/kubelet-config.json',
          '--kubeconfig',
          '/var/lib/kubelet/kubeconfig',
          '--container-runtime-endpoint',
          'unix:///run/containerd/containerd.sock',
          '--image-credential-provider-config',
          '/etc/eks/image-credential-provider/config.json',
          '--image-credential-provider-bin-dir',
          '/etc/eks/image-credential-provider',
          '$KUBELET_ARGS',
          '$KUBELET_EXTRA_ARGS',
        ],
        execStartIn: '/etc/systemd/system/kubelet.service',
        environmentFiles: [],
        argsVariables: [
          {
            name: 'KUBELET_ARGS',
            definedIn: '/etc/systemd/system/kubelet.service.d/10-kubelet-args.conf',
          },
          {
            name: 'KUBELET_EXTRA_ARGS',
            definedIn: '/etc/systemd/system/kubelet.service.d/30-kubelet-extra-args.conf',
          },
        ],
      },
      config: {
        path: '/etc/kubernetes/kubelet/kubelet-config.json',
        exists: true,
        format: 'json',
        parses: true,
        error: null,
        containerRuntimeEndpoint: null,
        imageServiceEndpoint: null,
      },
      configDir: null,
      credentialProvider: EKS_CREDENTIAL_PROVIDER,
      containerd: EKS_CONTAINERD,
      notes: [],
    },
  },
  'eks-al2023': {
    answer: 'Kubernetes v1.32.1-eks-5d632ec\n',
    binary: '/usr/bin/kubelet',
    expected: {
      distribution: 'eks-al2023',
      os: AL2023_OS,
      kubelet: {
        binary: '/usr/bin/kubelet',
        version: 'v1.32.1-eks-5d632ec',
        versionSource: 'binary',
        args: [
          '--node-ip=10.0.12.34',
          '--cloud-provider=external',
          '--hostname-override=ip-10-0-12-34.eu-west-1.compute.internal',
          '--image-credential-provider-bin-dir=/etc/eks/image-credential-provider',
          '--image-credential-provider-config=/etc/eks/image-credential-provider/config.json',
          '--config=/etc/kubernetes/kubelet/config.json',
          '--kubeconfig=/var/lib/kubelet/kubeconfig',
          '--node-labels=eks.amazonaws.com/nodegroup=workers',
        ],
        flags: {
          ...NO_FLAGS,
          config: '/etc/kubernetes/kubelet/config.json',
          imageCredentialProviderConfig: EKS_CREDENTIAL_PROVIDER.config,
          imageCredentialProviderBinDir: EKS_CREDENTIAL_PROVIDER.binDir,
        },
      },
      unit: AL2023_UNIT,
      config: AL2023_CONFIG,
      configDir: null,
      credentialProvider: EKS_CREDENTIAL_PROVIDER,
      containerd: EKS_CONTAINERD,
      notes: [],
    },
  },
  'eks-al2023-config-dir': {
    answer: 'Kubernetes v1.29.13-eks-8cce635\n',
    binary: '/usr/bin/kubelet',
    expected: {
      distribution: 'eks-al2023',
      os: AL2023_OS,
      kubelet: {
        binary: '/usr/bin/kubelet',
        version: 'v1.29.13-eks-8cce635',
        versionSource: 'binary',
        args: [
          '--node-ip=10.0.40.7',
          '--cloud-provider=external',
          '--hostname-override=ip-10-0-40-7.eu-west-1.compute.internal',
          '--image-credential-provider-bin-dir=/etc/eks/image-credential-provider',
          '--image-credential-provider-config=/etc/eks/image-credential-provider/config.json',
          '--config=/etc/kubernetes/kubelet/config.json',
          '--config-dir=/etc/kubernetes/kubelet/config.json.d',
          '--kubeconfig=/var/lib/kubelet/kubeconfig',
        ],
        flags: {
          ...NO_FLAGS,
          config: '/etc/kubernetes/kubelet/config.json',
          configDir: '/etc/kubernetes/kubelet/config.json.d',
          imageCredentialProviderConfig: EKS_CREDENTIAL_PROVIDER.config,
          imageCredentialProviderBinDir: EKS_CREDENTIAL_PROVIDER.binDir,
        },
      },
      unit: AL2023_UNIT,
      config: AL2023_CONFIG,
      configDir: {
        path: '/etc/kubernetes/kubelet/config.json.d',
        exists: true,
        files: [
          {
            path: '/etc/kubernetes/kubelet/config.json.d/40-nodeadm.conf',
            exists: true,
            format: 'json',
            parses: true,
            error: null,
            containerRuntimeEndpoint: null,
            imageServiceEndpoint: null,
          },
        ],
      },
      credentialProvider: EKS_CREDENTIAL_PROVIDER,
      containerd: EKS_CONTAINERD,
      notes: [],
    },
  },
  aks: {
    answer: 'Kubernetes v1.31.3\n',
    binary: '/usr/local/bin/kubelet',
    expected: {
      distribution: 'aks',
      os: {
        path: '/etc/os-release',
        id: 'ubuntu',
        versionId: '22.04',
        prettyName: 'Ubuntu 22.04.5 LTS',
      },
      kubelet: {
        binary: '/usr/local/bin/kubelet',
        version: 'v1.31.3',
        versionSource: 'binary',
        args: [
          '--enable-server',
          '--node-labels=kubernetes.azure.com/role=agent,agentpool=nodepool1,kubernetes.azure.com/mode=system',
          '--v=2',
          '--volume-plugin-dir=/etc/kubernetes/volumeplugins',
          '--kubeconfig',
          '/var/lib/kubelet/kubeconfig',
          '--bootstrap-kubeconfig',
          '/var/lib/kubelet/bootstrap-kubeconfig',
          '--config',
          '/etc/default/kubeletconfig.json',
          '--runtime-request-timeout=15m',
          '--container-runtime-endpoint=unix:///run/containerd/containerd.sock',
          '--runtime-cgroups=/system.slice/containerd.service',
          '--cloud-provider=external',
          '--image-credential-provider-bin-dir=/var/lib/kubelet/credential-provider',
          '--image-credential-provider-config=/var/lib/kubelet/credential-provider-config.yaml',
          '--pod-infra-container-image=mcr.microsoft.com/oss/kubernetes/pause:3.6',
        ],
        flags: {
          ...NO_FLAGS,
          config: '/etc/default/kubeletconfig.json',
          containerRuntimeEndpoint: 'unix:///run/containerd/containerd.sock',
          imageCredentialProviderConfig: '/var/lib/kubelet/credential-provider-config.yaml',
          imageCredentialProviderBinDir: '/var/lib/kubelet/credential-provider',
        },
      },
      unit: {
        name: 'kubelet.service',
        path: '/etc/systemd/system/kubelet.service',
        dropIns: [
          `${AKS_DROPINS}/10-componentconfig.conf`,
          `${AKS_DROPINS}/10-containerd.conf`,
          `${AKS_DROPINS}/10-tlsbootstrap.conf`,
        ],
        execStart: AKS_UNIT_WORDS,
        execStartIn: '/etc/systemd/system/kubelet.service',
        environmentFiles: [{ path: '/etc/default/kubelet', optional: false, exists: true }],
        argsVariables: [{ name: 'KUBELET_FLAGS', definedIn: '/etc/default/kubelet' }],
      },
      config: {
        path: '/etc/default/kubeletconfig.json',
        exists: true,
        format: 'json',
        parses: true,
        error: null,
        containerRuntimeEndpoint: null,
        imageServiceEndpoint: null,
      },
      configDir: null,
      credentialProvider: {
        config: '/var/lib/kubelet/credential-provider-config.yaml',
        binDir: '/var/lib/kubelet/credential-provider',
      },
      containerd: AKS_CONTAINERD,
      notes: [],
    },
  },
  'aks-no-config-file': {
    answer: 'Kubernetes v1.30.7\n',
    binary: '/usr/local/bin/kubelet',
    expected: {
      distribution: 'aks',
      os: {
        path: '/etc/os-release',
        id: 'azurelinux',
        versionId: '3.0',
        prettyName: 'Microsoft Azure Linux 3.0',
      },
      kubelet: {
        binary: '/usr/local/bin/kubelet',
        version: 'v1.30.7',
        versionSource: 'binary',
        args: [
          '--enable-server',
          '--node-labels=kubernetes.azure.com/role=agent,agentpool=linuxpool,kubernetes.azure.com/os-sku=AzureLinux',
          '--v=2',
          '--volume-plugin-dir=/etc/kubernetes/volumeplugins',
          '--kubeconfig',
          '/var/lib/kubelet/kubeconfig',
          '--bootstrap-kubeconfig',
          '/var/lib/kubelet/bootstrap-kubeconfig',
          '--runtime-request-timeout=15m',
          '--container-runtime-endpoint=unix:///run/containerd/containerd.sock',
          '--runtime-cgroups=/system.slice/containerd.service',
          '--address=0.0.0.0',
          '--anonymous-auth=false',
          '--authentication-token-webhook=true',
          '--authorization-mode=Webhook',
          '--cgroups-per-qos=true',
          '--client-ca-file=/etc/kubernetes/certs/ca.crt',
          '--cloud-provider=external',
          '--cluster-dns=10.0.0.10',
          '--cluster-domain=cluster.local',
          '--enforce-node-allocatable=pods',
          '--image-credential-provider-bin-dir=/var/lib/kubelet/credential-provider',
          '--image-credential-provider-config=/var/lib/kubelet/credential-provider-config.yaml',
          '--max-pods=30',
          '--pod-infra-container-image=mcr.microsoft.com/oss/kubernetes/pause:3.6',
          '--read-only-port=0',
          '--rotate-certificates=true',
          '--serialize-image-pulls=false',
        ],
        flags: {
          ...NO_FLAGS,
          containerRuntimeEndpoint: 'unix:///run/containerd/containerd.sock',
          imageCredentialProviderConfig: '/var/lib/kubelet/credential-provider-config.yaml',
          imageCredentialProviderBinDir: '/var/lib/kubelet/credential-provider',
        },
      },
      unit: {
        name: 'kubelet.service',
        path: '/etc/systemd/system/kubelet.service',
        dropIns: [`${AKS_DROPINS}/10-containerd.conf`, `${AKS_DROPINS}/10-tlsbootstrap.conf`],
        execStart: AKS_UNIT_WORDS,
        execStartIn: '/etc/systemd/system/kubelet.service',
        environmentFiles: [{ path: '/etc/default/kubelet', optional: false, exists: true }],
        argsVariables: [{ name: 'KUBELET_FLAGS', definedIn: '/etc/default/kubelet' }],
      },
      config: null,
      configDir: null,
      credentialProvider: {
        config: '/var/lib/kubelet/credential-provider-config.yaml',
        binDir: '/var/lib/kubelet/credential-provider',
      },
      containerd: AKS_CONTAINERD,
      notes: [],
    },
  },
  'kubeadm-deb': {
    answer: notRunnable(),
    binary: '/usr/bin/kubelet',
    expected: {
      distribution: 'kubeadm',
      os: {
        path: '/etc/os-release',
        id: 'ubuntu',
        versionId: '24.04',
        prettyName: 'Ubuntu 24.04.2 LTS',
      },
      kubelet: {
        binary: '/usr/bin/kubelet',
        version: 'v1.33.2',
        versionSource: '/var/lib/dpkg/status',
        args: [
          '--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf',
          '--kubeconfig=/etc/kubernetes/kubelet.conf',
          '--config=/var/lib/kubelet/config.yaml',
          '--node-ip=10.10.0.21',
          '--pod-infra-container-image=registry.k8s.io/pause:3.10',
        ],
        flags: { ...NO_FLAGS, config: '/var/lib/kubelet/config.yaml' },
      },
      unit: {
        name: 'kubelet.service',
        path: '/usr/lib/systemd/system/kubelet.service',
        dropIns: ['/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf'],
        execStart: KUBEADM_EXEC,
        execStartIn: '/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf',
        environmentFiles: [
          { path: '/var/lib/kubelet/kubeadm-flags.env', optional: true, exists: true },
          { path: '/etc/default/kubelet', optional: true, exists: true },
        ],
        argsVariables: [
          { name: 'KUBELET_KUBEADM_ARGS', definedIn: '/var/lib/kubelet/kubeadm-flags.env' },
          { name: 'KUBELET_EXTRA_ARGS', definedIn: '/etc/default/kubelet' },
        ],
      },
      config: {
        path: '/var/lib/kubelet/config.yaml',
        exists: true,
        format: 'yaml',
        parses: true,
        error: null,
        containerRuntimeEndpoint: 'unix:///var/run/containerd/containerd.sock',
        imageServiceEndpoint: null,
      },
      configDir: null,
      credentialProvider: null,
      containerd: {
        path: CONTAINERD,
        exists: true,
        parses: true,
        error: null,
        version: 2,
        registryConfigPath: null,
        imports: [],
      },
      notes: ['/usr/bin/kubelet --version did not run here (EACCES); version read from files'],
    },
  },
  'kubeadm-rpm': {
    answer: 'Kubernetes v1.29.14\n',
    binary: '/usr/bin/kubelet',
    expected: {
      distribution: 'kubeadm',
      os: {
        path: '/etc/os-release',
        id: 'rocky',
        versionId: '9.5',
        prettyName: 'Rocky Linux 9.5 (Blue Onyx)',
      },
      kubelet: {
        binary: '/usr/bin/kubelet',
        version: 'v1.29.14',
        versionSource: 'binary',
        args: [
          '--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf',
          '--kubeconfig=/etc/kubernetes/kubelet.conf',
          '--config=/var/lib/kubelet/config.yaml',
          '--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock',
          '--pod-infra-container-image=registry.k8s.io/pause:3.9',
          '--node-labels=node.example.com/pool=batch',
          '--max-pods=200',
        ],
        flags: {
          ...NO_FLAGS,
          config: '/var/lib/kubelet/config.yaml',
          containerRuntimeEndpoint: 'unix:///var/run/containerd/containerd.sock',
        },
      },
      unit: {
        name: 'kubelet.service',
        path: '/usr/lib/systemd/system/kubelet.service',
        dropIns: ['/etc/systemd/system/kubelet.service.d/10-kubeadm.conf'],
        execStart: KUBEADM_EXEC,
        execStartIn: '/etc/systemd/system/kubelet.service.d/10-kubeadm.conf',
        environmentFiles: [
          { path: '/var/lib/kubelet/kubeadm-flags.env', optional: true, exists: true },
          { path: '/etc/sysconfig/kubelet', optional: true, exists: true },
        ],
        argsVariables: [
          { name: 'KUBELET_KUBEADM_ARGS', definedIn: '/var/lib/kubelet/kubeadm-flags.env' },
          { name: 'KUBELET_EXTRA_ARGS', definedIn: '/etc/sysconfig/kubelet' },
        ],
      },
      config: {
        path: '/var/lib/kubelet/config.yaml',
        exists: true,
        format: 'yaml',
        parses: true,
        error: null,
        containerRuntimeEndpoint: null,
        imageServiceEndpoint: null,
      },
      configDir: null,
      credentialProvider: null,
      containerd: {
        path: CONTAINERD,
        exists: true,
        parses: true,
        error: null,
        version: 3,
        registryConfigPath: '/etc/containerd/certs.d:/etc/docker/certs.d',
        imports: [],
      },
      notes: [],
    },
  },
};

describe('detectLayout on the fixture host trees', () => {
  it.each(Object.entries(CASES))('%s', async (fixture, { answer, binary, expected }) => {
    const root = join(FIXTURES, fixture);
    const { run, calls } = runner(answer);
    const layout = await detectLayout(root, { runVersion: run });
    expect(layout).toEqual(expected);
    // The description is plain data: it survives JSON unchanged.
    expect(JSON.parse(JSON.stringify(layout))).toEqual(layout);
    expect(calls).toEqual([{ hostPath: binary, localPath: join(realpathSync(root), binary) }]);
  });

  it('refuses Bottlerocket, saying why and what to use instead', async () => {
    const { run, calls } = runner('Kubernetes v1.31.0');
    const err = await refused(detectLayout(join(FIXTURES, 'bottlerocket'), { runVersion: run }));
    expect(err).toBeInstanceOf(LayoutError);
    expect(err).toMatchObject({
      code: 'IMMUTABLE_HOST',
      os: 'bottlerocket',
      found: ['os-release ID=bottlerocket VERSION_ID=1.29.0', 'no kubelet.service to patch'],
    });
    expect(err.message).toMatch(/^Bottlerocket \(os-release ID=bottlerocket/);
    expect(err.message).toContain('dm-verity');
    expect(err.message).toContain('settings.kubernetes.credential-providers');
    expect(err.message).toContain('credential-provider route');
    expect(err.message).not.toContain('\n');
    expect(calls).toEqual([]);
  });

  it('refuses Bottlerocket even where a kubelet unit is on disk', async () => {
    const root = copyOf('bottlerocket');
    cpSync(join(FIXTURES, 'kubeadm-rpm', 'usr', 'lib', 'systemd'), join(root, 'usr/lib/systemd'), {
      recursive: true,
    });
    const err = await refused(detectLayout(root, { runVersion: runner('x').run }));
    expect(err).toMatchObject({ code: 'IMMUTABLE_HOST' });
    expect((err as LayoutError).found).toContain(
      '/usr/lib/systemd/system/kubelet.service (rendered)',
    );
  });

  it('refuses Talos from its os-release', async () => {
    const root = copyOf('bottlerocket');
    write(root, 'usr/lib/os-release', 'NAME="Talos"\nID=talos\nVERSION_ID=v1.9.2\n');
    const err = await refused(detectLayout(root));
    expect(err).toMatchObject({ code: 'IMMUTABLE_HOST', os: 'talos' });
    expect(err.message).toContain('talosctl');
  });

  it('runs the real kubelet binary when no runner is given', async () => {
    const layout = await detectLayout(join(FIXTURES, 'eks-al2'));
    expect(layout.kubelet).toMatchObject({
      version: 'v1.29.15-eks-473151a',
      versionSource: 'binary',
    });
    // kubeadm-deb's binary is not executable: the default runner fails, dpkg's database answers.
    const deb = await detectLayout(join(FIXTURES, 'kubeadm-deb'));
    expect(deb.kubelet).toMatchObject({
      version: 'v1.33.2',
      versionSource: '/var/lib/dpkg/status',
    });
    expect(deb.notes).toEqual([
      '/usr/bin/kubelet --version did not run here (EACCES); version read from files',
    ]);
  });

  it('reports no version, and why, when the binary answers nonsense and no file tells', async () => {
    const layout = await detectLayout(join(FIXTURES, 'aks'), {
      runVersion: runner('kubelet version 5\nmore').run,
    });
    expect(layout.kubelet).toMatchObject({ version: null, versionSource: null });
    expect(layout.notes).toEqual([
      '/usr/local/bin/kubelet --version printed "kubelet version 5", not "Kubernetes vX.Y.Z"; version read from files',
    ]);
  });

  it('validates its options', async () => {
    await expect(
      detectLayout(join(FIXTURES, 'aks'), { runVersion: 'kubelet' as never }),
    ).rejects.toThrow(/options\.runVersion/);
    await expect(detectLayout(join(FIXTURES, 'aks'), { maxFileBytes: -1 })).rejects.toThrow(
      /options\.maxFileBytes/,
    );
    const err = await refused(detectLayout(join(scratch, 'no-such-root')));
    expect(err).toMatchObject({ code: 'HOST_ROOT_INVALID' });
  });
});

describe('detectLayout on hostile or broken hosts', () => {
  it('reports malformed YAML in the kubelet config with the parse error, and still describes the node', async () => {
    const root = copyOf('kubeadm-deb');
    write(
      root,
      'var/lib/kubelet/config.yaml',
      'apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nclusterDNS: [10.96.0.10\nstaticPodPath: /etc/kubernetes/manifests\n',
    );
    const layout = await detectLayout(root, { runVersion: runner(notRunnable()).run });
    expect(layout.distribution).toBe('kubeadm');
    expect(layout.config).toEqual({
      path: '/var/lib/kubelet/config.yaml',
      exists: true,
      format: 'yaml',
      parses: false,
      error:
        'invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ] at line 4, column 1',
      containerRuntimeEndpoint: null,
      imageServiceEndpoint: null,
    });
  });

  it('reports malformed JSON in the kubelet config and in a --config-dir drop-in', async () => {
    const root = copyOf('eks-al2023-config-dir');
    write(root, 'etc/kubernetes/kubelet/config.json', '{"kind": "KubeletConfiguration", ');
    write(root, 'etc/kubernetes/kubelet/config.json.d/50-user.conf', 'kind: [\n');
    write(root, 'etc/kubernetes/kubelet/config.json.d/README', 'not a drop-in: no .conf suffix');
    const layout = await detectLayout(root, { runVersion: runner('Kubernetes v1.29.13').run });
    expect(layout.config).toMatchObject({
      format: 'json',
      parses: false,
      error: expect.stringMatching(/^invalid JSON: /),
    });
    expect(layout.configDir?.files.map((f) => [f.path, f.parses])).toEqual([
      ['/etc/kubernetes/kubelet/config.json.d/40-nodeadm.conf', true],
      ['/etc/kubernetes/kubelet/config.json.d/50-user.conf', false],
    ]);
  });

  it('reports a --config file that does not exist', async () => {
    const root = copyOf('aks');
    unlinkSync(join(root, 'etc/default/kubeletconfig.json'));
    const layout = await detectLayout(root, { runVersion: runner('Kubernetes v1.31.3').run });
    expect(layout.config).toEqual({
      path: '/etc/default/kubeletconfig.json',
      exists: false,
      format: null,
      parses: false,
      error: 'the file does not exist',
      containerRuntimeEndpoint: null,
      imageServiceEndpoint: null,
    });
  });

  it('refuses an env file symlinked out of the host root', async () => {
    const root = copyOf('gke-cos');
    write(join(root, '..'), 'outside/kubelet', 'KUBELET_OPTS="--config=/stolen.yaml"\n');
    unlinkSync(join(root, 'etc/default/kubelet'));
    symlinkSync('../../../outside/kubelet', join(root, 'etc/default/kubelet'));
    const err = await refused(detectLayout(root, { runVersion: runner('x').run }));
    expect(err).toBeInstanceOf(HostFileError);
    expect(err).toMatchObject({ code: 'PATH_ESCAPES_ROOT', hostPath: '/etc/default/kubelet' });
  });

  it('reads an absolute env-file link inside the host root, never the file it names here', async () => {
    const root = copyOf('gke-cos');
    const outside = join(root, '..', 'outside-abs');
    write(outside, 'kubelet', 'KUBELET_OPTS="--config=/stolen.yaml"\n');
    unlinkSync(join(root, 'etc/default/kubelet'));
    symlinkSync(join(outside, 'kubelet'), join(root, 'etc/default/kubelet'));
    const layout = await detectLayout(root, { runVersion: runner('Kubernetes v1.31.6').run });
    expect(layout.unit.environmentFiles).toEqual([
      { path: '/etc/default/kubelet', optional: false, exists: false },
    ]);
    expect(layout.kubelet.args).toEqual([]);
    expect(layout.config).toBeNull();
    expect(layout.notes).toContain(
      '/etc/default/kubelet is missing and not optional: systemd will not start kubelet',
    );
  });

  it.each([
    ['the kubelet config', 'eks-al2', 'etc/kubernetes/kubelet/kubelet-config.json'],
    ['an env file', 'kubeadm-rpm', 'var/lib/kubelet/kubeadm-flags.env'],
    ['a drop-in', 'aks', 'etc/systemd/system/kubelet.service.d/10-containerd.conf'],
    ['containerd config', 'gke-cos', 'etc/containerd/config.toml'],
  ])('refuses an oversized file: %s', async (_what, fixture, path) => {
    const root = copyOf(fixture);
    write(root, path, `# ${'x'.repeat(MAX_FILE_BYTES)}\n`);
    const err = await refused(detectLayout(root, { runVersion: runner('Kubernetes v1.30.0').run }));
    expect(err).toMatchObject({ code: 'FILE_TOO_LARGE', hostPath: `/${path}` });
  });

  it('costs only the version when dpkg status is over the cap', async () => {
    const root = copyOf('kubeadm-deb');
    write(root, 'var/lib/dpkg/status', 'x'.repeat(MAX_FILE_BYTES + 1));
    const layout = await detectLayout(root, { runVersion: runner(notRunnable()).run });
    expect(layout.kubelet).toMatchObject({ version: null, versionSource: null });
    expect(layout.notes).toContain(
      '/var/lib/dpkg/status not read (FILE_TOO_LARGE); kubelet version unknown',
    );
  });

  it('refuses a host with no kubelet unit as an unknown layout, listing what it found', async () => {
    const root = copyOf('kubeadm-deb');
    rmSync(join(root, 'usr/lib/systemd'), { recursive: true });
    const err = await refused(detectLayout(root));
    expect(err).toBeInstanceOf(LayoutError);
    expect(err).toMatchObject({ code: 'UNKNOWN_LAYOUT', os: 'ubuntu' });
    expect(err.message).toBe(
      'unknown kubelet layout (found: os-release ID=ubuntu VERSION_ID=24.04; no kubelet.service in /etc/systemd/system, /run/systemd/system, /usr/local/lib/systemd/system, /usr/lib/systemd/system, /lib/systemd/system); node-patcher knows GKE COS and Ubuntu, EKS AL2, EKS AL2023 (nodeadm), AKS and kubeadm',
    );
  });

  it('refuses a kubelet unit it does not recognise, listing the unit and its ExecStart', async () => {
    const root = copyOf('kubeadm-rpm');
    rmSync(join(root, 'etc/systemd/system/kubelet.service.d'), { recursive: true });
    write(
      root,
      'usr/lib/systemd/system/kubelet.service',
      '[Service]\nEnvironmentFile=-/etc/kubelet.env\nExecStart=/opt/k8s/kubelet --config=/etc/k.yaml $MY_FLAGS\n',
    );
    const err = await refused(detectLayout(root));
    expect(err).toMatchObject({
      code: 'UNKNOWN_LAYOUT',
      found: [
        'os-release ID=rocky VERSION_ID=9.5',
        'kubelet.service at /usr/lib/systemd/system/kubelet.service',
        'ExecStart=/opt/k8s/kubelet using $MY_FLAGS',
      ],
    });
  });

  it('keeps host-controlled names in a refusal on one line, escape sequences escaped', async () => {
    const root = copyOf('kubeadm-rpm');
    unlinkSync(join(root, 'etc/systemd/system/kubelet.service.d/10-kubeadm.conf'));
    write(
      root,
      'usr/lib/systemd/system/kubelet.service',
      '[Service]\nExecStart=/opt/k\\x1b[31mubelet\\n --v=2\n',
    );
    write(root, 'etc/systemd/system/kubelet.service.d/x\u001b[2J\ny.conf', '[Service]\n');
    const err = await refused(detectLayout(root));
    expect(err).toMatchObject({ code: 'UNKNOWN_LAYOUT' });
    expect([...err.message].filter((c) => c.charCodeAt(0) < 0x20)).toEqual([]);
    expect(err.message).toContain('ExecStart=/opt/k\\u001b[31mubelet\\n');
    expect(err.message).toContain('x\\u001b[2J\\ny.conf');
  });

  it.each([
    [
      'a masked unit',
      (root: string) => {
        symlinkSync('/dev/null', join(root, 'etc/systemd/system/kubelet.service'));
      },
      '/etc/systemd/system/kubelet.service masks kubelet.service (a link to /dev/null)',
    ],
    [
      'two ExecStart= lines',
      (root: string) => {
        write(
          root,
          'etc/systemd/system/kubelet.service.d/20-more.conf',
          '[Service]\nExecStart=/usr/bin/kubelet --v=4\n',
        );
      },
      '2 ExecStart= lines (systemd refuses that for a service)',
    ],
    [
      'an ExecStart= with an open quote',
      (root: string) => {
        write(
          root,
          'etc/systemd/system/kubelet.service.d/20-bad.conf',
          '[Service]\nExecStart=\nExecStart=/usr/bin/kubelet "--v=4\n',
        );
      },
      'ExecStart= in /etc/systemd/system/kubelet.service.d/20-bad.conf:3 is not valid (an unterminated " quote)',
    ],
  ])('refuses %s as an unknown layout', async (_what, change, finding) => {
    const root = copyOf('kubeadm-deb');
    mkdirSync(join(root, 'etc/systemd/system/kubelet.service.d'), { recursive: true });
    change(root);
    const err = await refused(detectLayout(root, { runVersion: runner(notRunnable()).run }));
    expect(err).toMatchObject({ code: 'UNKNOWN_LAYOUT' });
    expect((err as LayoutError).found).toContain(finding);
  });

  it('applies drop-ins as systemd does: /etc masks a same-named one, env files beat Environment=', async () => {
    const root = copyOf('kubeadm-deb');
    // Same name as the package's drop-in: this one replaces it entirely.
    write(
      root,
      'etc/systemd/system/kubelet.service.d/10-kubeadm.conf',
      [
        '[Service]',
        'Environment="KUBELET_CONFIG_ARGS=--config=/etc/kubelet/override.yaml"',
        'Environment="KUBELET_EXTRA_ARGS=--from-environment"',
        'EnvironmentFile=-/etc/default/kubelet',
        'EnvironmentFile=-/etc/kubelet/absent.env',
        'ExecStart=',
        'ExecStart=/usr/bin/kubelet $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS',
      ].join('\n'),
    );
    write(
      root,
      'etc/default/kubelet',
      'KUBELET_EXTRA_ARGS="--image-service-endpoint unix:///run/i.sock"\nexport NOPE=1\n',
    );
    // A masked drop-in is skipped.
    symlinkSync('/dev/null', join(root, 'etc/systemd/system/kubelet.service.d/50-masked.conf'));
    const layout = await detectLayout(root, { runVersion: runner('Kubernetes v1.33.2').run });
    expect(layout.unit).toMatchObject({
      dropIns: ['/etc/systemd/system/kubelet.service.d/10-kubeadm.conf'],
      execStartIn: '/etc/systemd/system/kubelet.service.d/10-kubeadm.conf',
      environmentFiles: [
        { path: '/etc/default/kubelet', optional: true, exists: true },
        { path: '/etc/kubelet/absent.env', optional: true, exists: false },
      ],
      argsVariables: [
        { name: 'KUBELET_KUBEADM_ARGS', definedIn: null },
        { name: 'KUBELET_EXTRA_ARGS', definedIn: '/etc/default/kubelet' },
      ],
    });
    expect(layout.distribution).toBe('kubeadm');
    expect(layout.kubelet.args).toEqual([
      '--config=/etc/kubelet/override.yaml',
      '--image-service-endpoint',
      'unix:///run/i.sock',
    ]);
    expect(layout.kubelet.flags.imageServiceEndpoint).toBe('unix:///run/i.sock');
    expect(layout.config).toMatchObject({ path: '/etc/kubelet/override.yaml', exists: false });
    expect(layout.notes).toEqual([
      '/etc/systemd/system/kubelet.service.d/50-masked.conf is masked (a link to /dev/null); skipped',
      '/etc/default/kubelet:2: not a NAME=value line; skipped',
    ]);
  });

  it('reports a containerd config that does not parse, and one that is absent', async () => {
    const broken = copyOf('aks');
    write(
      broken,
      'etc/containerd/config.toml',
      'version = 2\n[plugins."io.containerd.grpc.v1.cri"\n',
    );
    const layout = await detectLayout(broken, { runVersion: runner('Kubernetes v1.31.3').run });
    expect(layout.containerd).toMatchObject({
      exists: true,
      parses: false,
      error: expect.stringMatching(/^invalid TOML: .*\(line 2, column \d+\)$/),
    });
    const absent = copyOf('aks');
    unlinkSync(join(absent, 'etc/containerd/config.toml'));
    expect(
      (await detectLayout(absent, { runVersion: runner('Kubernetes v1.31.3').run })).containerd,
    ).toEqual({
      path: CONTAINERD,
      exists: false,
      parses: false,
      error: null,
      version: null,
      registryConfigPath: null,
      imports: [],
    });
  });
});
