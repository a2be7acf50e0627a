/**
 * The DaemonSet manifests in deploy/: one apply and one revert manifest per cloud, each with the
 * settings the patcher needs (privileged root init container, host network, no host PID, opt-in
 * node label, one node at a time) and only the host mounts allowed for that cloud below. Then,
 * for every fixture host tree of the cloud's layouts, the mounts are enough: a pod that sees only
 * them detects the same layout as the whole host, plans the same change, and every file the
 * change writes is on a writable mount, the image service's install included.
 */
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { hostServiceUnit, loadRules } from '@org/cri-image-service';
import {
  type ApplyOptions,
  applyToNode,
  detectLayout,
  HostRoot,
  KubeletPatchError,
  RULES_PATH,
  STATE_DIR,
  type VersionRunner,
} from '@org/kubelet-patch';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';

const appDir = join(import.meta.dirname, '..');
const deployDir = join(appDir, 'deploy');
const fixtures = join(appDir, '..', '..', 'packages', 'kubelet-patch', 'test', 'fixtures');
const scratch = mkdtempSync(join(tmpdir(), 'node-patcher-deploy-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** The opt-in node label, the same on every manifest. */
const LABEL = 'registry-proxy.example.com/node-patcher';
const NAMESPACE = 'node-patcher';
const SOCKET_DIR = '/run/kubelet-image-service';
const ENDPOINT = 'unix:///run/kubelet-image-service/cri.sock';
const BUS = 'unix:path=/host/run/dbus/system_bus_socket';
/** `--install-service`: the executable the node-patcher image carries (see ../Dockerfile). */
const EXECUTABLE = '/opt/kubelet-image-service/kubelet-image-service';
/** The rules ConfigMap of each apply manifest, mounted in the pod (not a host path). */
const RULES_CONFIGMAP = 'kubelet-image-service-rules';
const RULES_MOUNT = '/etc/kubelet-image-service';
/** `--rules`: a file of that ConfigMap. */
const RULES_FILE = `${RULES_MOUNT}/rules.yaml`;

type HostPathType = 'Directory' | 'DirectoryOrCreate' | 'File';
interface Allowed {
  readonly type: HostPathType;
  readonly readOnly: boolean;
}
const rw = (type: HostPathType = 'Directory'): Allowed => ({ type, readOnly: false });
const ro = (type: HostPathType = 'Directory'): Allowed => ({ type, readOnly: true });

/**
 * Shared by every cloud: systemd's runtime units, the bus, the socket, the state record, and
 * the installed rules file's directory.
 */
const COMMON: Record<string, Allowed> = {
  '/run/systemd/system': ro(),
  '/run/dbus': ro(),
  [SOCKET_DIR]: ro('DirectoryOrCreate'),
  [STATE_DIR]: rw('DirectoryOrCreate'),
  '/etc/kubelet-image-service': rw('DirectoryOrCreate'),
};
/** Where the executable is installed off GKE (GKE: /home/kubernetes/bin, mounted anyway). */
const OPT: Record<string, Allowed> = { '/opt/kubelet-image-service': rw('DirectoryOrCreate') };

/**
 * The host paths each cloud's apply manifest may mount, exactly (revert: the same less the
 * socket). A new or broader mount is a change to this list, made on purpose.
 */
const CLOUDS = {
  gke: {
    layouts: ['gke-cos', 'gke-ubuntu'],
    mounts: {
      '/etc/systemd/system': rw(),
      '/etc/default': rw(),
      '/etc/containerd': rw(),
      '/etc/os-release': ro('File'),
      '/usr/lib': ro(),
      '/home/kubernetes': rw(),
      ...COMMON,
    },
    /** The credential provider of the example rules. */
    provider: 'gcp',
    /** Writable mounts the containerd-mirror alternative adds (commented out in the file). */
    mirrorMounts: [] as string[],
  },
  eks: {
    layouts: ['eks-al2', 'eks-al2023', 'eks-al2023-config-dir'],
    mounts: {
      '/etc/systemd/system': rw(),
      '/etc/eks': rw(),
      '/etc/kubernetes/kubelet': rw(),
      '/etc/containerd': rw(),
      '/etc/os-release': ro('File'),
      '/usr/lib/systemd/system': ro(),
      '/usr/bin/kubelet': ro('File'),
      ...COMMON,
      ...OPT,
    },
    provider: 'aws',
    mirrorMounts: [] as string[],
  },
  aks: {
    layouts: ['aks', 'aks-no-config-file'],
    mounts: {
      '/etc/systemd/system': rw(),
      '/etc/default': rw(),
      '/etc/containerd': rw(),
      '/etc/os-release': ro('File'),
      '/usr/lib/systemd/system': ro(),
      '/usr/local/bin/kubelet': ro('File'),
      ...COMMON,
      ...OPT,
    },
    provider: 'azure',
    mirrorMounts: [] as string[],
  },
  kubeadm: {
    layouts: ['kubeadm-deb', 'kubeadm-rpm'],
    mounts: {
      '/etc': ro(),
      '/etc/systemd/system': rw(),
      '/etc/default': rw(),
      '/usr': ro(),
      '/lib/systemd/system': ro(),
      '/var/lib/kubelet': rw(),
      ...COMMON,
      ...OPT,
    },
    provider: 'docker-config',
    mirrorMounts: ['/etc/containerd'],
  },
} as const;
type Cloud = keyof typeof CLOUDS;
const cloudNames = Object.keys(CLOUDS) as Cloud[];

// biome-ignore lint/suspicious/noExplicitAny: manifests are checked field by field below
type Manifest = { kind: string; metadata: { name: string; namespace?: string }; [f: string]: any };
interface Volume {
  readonly name: string;
  readonly hostPath?: { readonly path: string; readonly type: HostPathType };
  readonly configMap?: { readonly name: string };
}
interface Mount {
  readonly name: string;
  readonly mountPath: string;
  readonly readOnly?: boolean;
}

/** Every document of a file, parsed as YAML 1.1 like kubectl does. */
function load(file: string): Manifest[] {
  const text = readFileSync(join(deployDir, file), 'utf8');
  return parseAllDocuments(text, { version: '1.1' }).map((doc) => {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]?.message}`);
    return doc.toJS() as Manifest;
  });
}

function daemonSet(file: string): Manifest {
  const found = load(file).filter((m) => m.kind === 'DaemonSet');
  if (found.length !== 1) throw new Error(`${file} has ${found.length} DaemonSets, not 1`);
  return found[0] as Manifest;
}

/** An apply manifest's rules ConfigMap. */
function rulesConfigMap(file: string): Manifest {
  const found = load(file).filter((m) => m.kind === 'ConfigMap');
  if (found.length !== 1) throw new Error(`${file} has ${found.length} ConfigMaps, not 1`);
  const cm = found[0] as Manifest;
  expect(cm.metadata).toMatchObject({ name: RULES_CONFIGMAP, namespace: NAMESPACE });
  return cm;
}

/** An apply manifest's example rules, written to a file of their own as the pod sees them. */
function rulesFile(cloud: Cloud): string {
  const path = join(scratch, `rules-${cloud}.yaml`);
  writeFileSync(path, rulesConfigMap(`${cloud}.yaml`).data[posix.basename(RULES_FILE)]);
  return path;
}

/** `--flag value` and `--flag=value` pairs of an argument list. */
function flags(args: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (!arg.startsWith('--')) continue;
    const eq = arg.indexOf('=');
    if (eq !== -1) out.set(arg.slice(0, eq), arg.slice(eq + 1));
    else if (args[i + 1] !== undefined && !(args[i + 1] as string).startsWith('--'))
      out.set(arg, args[++i] as string);
    else out.set(arg, '');
  }
  return out;
}

/**
 * The host paths a DaemonSet mounts, with type and read-only, checked to be at /host<path>.
 * Every other volume is checked too: an apply manifest has exactly one, the rules ConfigMap,
 * read-only at RULES_MOUNT; a revert manifest none.
 */
function hostMounts(ds: Manifest): Map<string, Allowed> {
  const pod = ds.spec.template.spec;
  const [init] = pod.initContainers;
  const mounts: Mount[] = init.volumeMounts;
  const apply = ds.spec.template.metadata.labels['app.kubernetes.io/component'] === 'apply';
  const out = new Map<string, Allowed>();
  const others: string[] = [];
  for (const v of pod.volumes as Volume[]) {
    const at = mounts.filter((m) => m.name === v.name);
    expect(at, `volume ${v.name} is mounted once`).toHaveLength(1);
    const mount = at[0] as Mount;
    if (v.hostPath === undefined) {
      others.push(v.name);
      expect(v, `volume ${v.name} is a hostPath or the rules ConfigMap`).toEqual({
        name: v.name,
        configMap: { name: RULES_CONFIGMAP },
      });
      expect(mount).toEqual({ name: v.name, mountPath: RULES_MOUNT, readOnly: true });
      continue;
    }
    expect(mount.mountPath).toBe(`/host${v.hostPath.path}`);
    out.set(v.hostPath.path, { type: v.hostPath.type, readOnly: mount.readOnly === true });
  }
  expect(others, 'volumes other than hostPaths').toHaveLength(apply ? 1 : 0);
  for (const m of mounts)
    expect(
      (pod.volumes as Volume[]).some((v) => v.name === m.name),
      m.name,
    ).toBe(true);
  return out;
}

describe('deploy/ (DaemonSet manifests per cloud)', () => {
  it('has an apply and a revert manifest for each cloud, and nothing else', () => {
    const files = readdirSync(deployDir).sort();
    expect(files).toEqual(cloudNames.flatMap((c) => [`${c}.yaml`, `revert-${c}.yaml`]).sort());
  });

  describe.each(
    cloudNames.flatMap((cloud) => [
      [cloud, `${cloud}.yaml`, 'apply'],
      [cloud, `revert-${cloud}.yaml`, 'revert'],
    ]) as Array<[Cloud, string, 'apply' | 'revert']>,
  )('%s: %s', (cloud, file, command) => {
    const docs = load(file);
    const ds = daemonSet(file);
    const pod = ds.spec.template.spec;

    it('is a namespace, a quota for the critical priority class, a token-less SA (apply: the rules) and the DaemonSet', () => {
      expect(docs.map((d) => d.kind)).toEqual([
        'Namespace',
        'ResourceQuota',
        'ServiceAccount',
        ...(command === 'apply' ? ['ConfigMap'] : []),
        'DaemonSet',
      ]);
      const [ns, quota, sa] = docs as [Manifest, Manifest, Manifest];
      expect(ns.metadata.name).toBe(NAMESPACE);
      expect(ns.metadata).toMatchObject({
        labels: { 'pod-security.kubernetes.io/enforce': 'privileged' },
      });
      for (const d of docs.slice(1)) expect(d.metadata.namespace, d.kind).toBe(NAMESPACE);
      expect(quota.spec.scopeSelector.matchExpressions).toEqual([
        { scopeName: 'PriorityClass', operator: 'In', values: ['system-node-critical'] },
      ]);
      expect(sa.automountServiceAccountToken).toBe(false);
      expect(pod.serviceAccountName).toBe(sa.metadata.name);
      expect(pod.automountServiceAccountToken).toBe(false);
    });

    it('runs on opted-in nodes only, one node at a time, node-critical, host network, no host PID', () => {
      expect(ds.spec.updateStrategy).toEqual({
        type: 'RollingUpdate',
        rollingUpdate: { maxUnavailable: 1 },
      });
      expect(ds.spec.selector.matchLabels).toEqual(ds.spec.template.metadata.labels);
      expect(ds.spec.template.metadata.labels['app.kubernetes.io/component']).toBe(command);
      expect(pod.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux', [LABEL]: 'enabled' });
      // opt-in: no toleration unless the operator adds one for a tainted pool
      expect(pod.tolerations).toBeUndefined();
      expect(pod.hostNetwork).toBe(true);
      expect(pod.hostPID ?? false).toBe(false);
      expect(pod.hostIPC ?? false).toBe(false);
      expect(pod.hostUsers ?? true).toBe(true);
      expect(pod.priorityClassName).toBe('system-node-critical');
      expect(pod.terminationGracePeriodSeconds).toBeLessThanOrEqual(30);
      // never beside the other DaemonSet's pod on a node: apply and revert would undo each other
      const other = command === 'apply' ? 'revert' : 'apply';
      expect(pod.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution).toEqual([
        {
          topologyKey: 'kubernetes.io/hostname',
          labelSelector: {
            matchLabels: {
              'app.kubernetes.io/name': 'node-patcher',
              'app.kubernetes.io/component': other,
            },
          },
        },
      ]);
    });

    it(`runs node-patcher ${command} --host-root /host in a privileged root init container`, () => {
      expect(pod.initContainers).toHaveLength(1);
      const [init] = pod.initContainers;
      expect(init.args[0]).toBe(command);
      const given = flags(init.args);
      expect(given.get('--host-root')).toBe('/host');
      expect(given.get('--systemd-bus')).toBe(BUS);
      if (command === 'apply') {
        expect(given.get('--mode')).toBe('image-service');
        expect(given.get('--endpoint')).toBe(ENDPOINT);
        expect(given.get('--install-service')).toBe(EXECUTABLE);
        expect(given.get('--rules')).toBe(RULES_FILE);
        // the rules file is a key of the ConfigMap mounted at its directory
        const volume = (pod.volumes as Volume[]).find((v) => v.configMap !== undefined);
        const mount = (init.volumeMounts as Mount[]).find((m) => m.name === volume?.name);
        expect(mount?.mountPath).toBe(posix.dirname(RULES_FILE));
        expect(Object.keys(rulesConfigMap(file).data)).toEqual([posix.basename(RULES_FILE)]);
      } else expect([...given.keys()].sort()).toEqual(['--host-root', '--systemd-bus']);
      expect(init.securityContext).toEqual({
        privileged: true,
        runAsUser: 0,
        runAsGroup: 0,
        runAsNonRoot: false,
      });
      expect(init.image).toBe('registry.example.com/node-patcher:0.1.0');
    });

    it('keeps the pod Running with an unprivileged pause container; every container has resources', () => {
      expect(pod.containers).toHaveLength(1);
      const [pause] = pod.containers;
      expect(pause.image).toBe('registry.k8s.io/pause:3.10');
      expect(pause.volumeMounts).toBeUndefined();
      expect(pause.securityContext).toMatchObject({
        runAsNonRoot: true,
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'] },
      });
      for (const c of [...pod.initContainers, ...pod.containers]) {
        expect(c.resources.requests.cpu, c.name).toBeDefined();
        expect(c.resources.requests.memory, c.name).toBeDefined();
        expect(c.resources.limits.memory, c.name).toBeDefined();
      }
    });

    it("mounts each host path at /host<path>, exactly the cloud's allowed ones, never /", () => {
      const mounts = hostMounts(ds);
      expect(mounts.has('/')).toBe(false);
      const allowed = new Map(Object.entries(CLOUDS[cloud].mounts));
      if (command === 'revert') allowed.delete(SOCKET_DIR);
      expect(Object.fromEntries(mounts)).toEqual(Object.fromEntries(allowed));
      // the bus address the args name is on a mount
      expect(mounts.has('/run/dbus')).toBe(true);
    });
  });

  it.each(cloudNames)('%s: apply and revert select the same nodes', (cloud) => {
    const apply = daemonSet(`${cloud}.yaml`).spec.template.spec;
    const revert = daemonSet(`revert-${cloud}.yaml`).spec.template.spec;
    expect(revert.nodeSelector).toEqual(apply.nodeSelector);
    expect(revert.tolerations).toEqual(apply.tolerations);
  });

  it.each(cloudNames)(
    "%s: the example rules load as kubelet-image-service loads them, with the cloud's provider",
    (cloud) => {
      const rules = loadRules(rulesFile(cloud));
      expect(rules.map((r) => r.credentials.provider)).toContain(CLOUDS[cloud].provider);
    },
  );

  it('the node-patcher image carries the executable --install-service names', () => {
    const dockerfile = readFileSync(join(appDir, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^FROM \$\{KUBELET_IMAGE_SERVICE_IMAGE\} AS image-service$/m);
    expect(dockerfile).toMatch(
      new RegExp(
        `^COPY --from=image-service /usr/local/bin/kubelet-image-service ${EXECUTABLE}$`,
        'm',
      ),
    );
  });

  it.each(cloudNames.filter((c) => CLOUDS[c].mirrorMounts.length > 0))(
    '%s: shows the containerd-mirror mounts it leaves out, commented',
    (cloud) => {
      const text = readFileSync(join(deployDir, `${cloud}.yaml`), 'utf8');
      for (const path of CLOUDS[cloud].mirrorMounts) {
        expect(text).toContain(`#   hostPath: { path: ${path}, type: Directory }`);
        expect(text).toContain(`#   mountPath: /host${path}`);
      }
    },
  );
});

/** Answers `kubelet --version` from the fixture's stand-in script, the same on both sides. */
const runVersion: VersionRunner = async (binary) => {
  const text = readFileSync(binary.localPath, 'utf8');
  const version = /Kubernetes v\d[\w.+-]*/.exec(text)?.[0] ?? 'Kubernetes v1.33.2';
  return `${version}\n`;
};

let views = 0;
/**
 * What the init container sees of a host: each hostPath copied to its own path under a new
 * root, parents first, symlinks in the path followed as the bind mount does, those inside a
 * mounted directory kept as they are; a DirectoryOrCreate path the host lacks is created.
 */
function podView(host: string, mounts: Map<string, Allowed>): string {
  const root = join(scratch, `view-${views++}`);
  const hostRoot = new HostRoot(host);
  const paths = [...mounts.keys()].sort((a, b) => a.split('/').length - b.split('/').length);
  for (const path of paths) {
    const target = join(root, path);
    const source = hostRoot.resolve(path);
    if (source === null) {
      if (mounts.get(path)?.type === 'DirectoryOrCreate') mkdirSync(target, { recursive: true });
      continue;
    }
    // a mount over a mounted directory hides what was there
    rmSync(target, { recursive: true, force: true });
    mkdirSync(dirname(target), { recursive: true });
    cpSync(source.localPath, target, { recursive: true, verbatimSymlinks: true });
  }
  mkdirSync(root, { recursive: true });
  return root;
}

/** The mount a host path is on: the deepest mounted directory containing it. */
function mountOf(mounts: Map<string, Allowed>, path: string): [string, Allowed] | undefined {
  let best: [string, Allowed] | undefined;
  for (const [at, how] of mounts)
    if ((path === at || path.startsWith(`${at}/`)) && (!best || at.length > best[0].length))
      best = [at, how];
  return best;
}

const noSystemd = {
  connectSystemd: () => Promise.reject(new Error('a dry run does not connect')),
  waitHealthy: () => Promise.reject(new Error('a dry run does not wait')),
};

/** A small stand-in for the executable: the install copies whatever file it is given. */
const standIn = join(scratch, 'kubelet-image-service');
writeFileSync(standIn, '#!/bin/sh\n', { mode: 0o755 });

type ModeOptions = Pick<
  ApplyOptions,
  'mode' | 'endpoint' | 'installService' | 'mountinfo' | 'mirror' | 'registries' | 'setConfigPath'
>;

/** The two modes as each cloud's manifest runs them: image-service with the install. */
const modes = (cloud: Cloud): ReadonlyArray<readonly [string, ModeOptions]> => [
  [
    'image-service',
    {
      mode: 'image-service',
      endpoint: ENDPOINT,
      installService: { executable: standIn, rules: rulesFile(cloud), unit: hostServiceUnit },
      // no noexec mount to refuse: this process's mount table is not the node's
      mountinfo: '',
    },
  ],
  [
    'containerd-mirror',
    {
      mode: 'containerd-mirror',
      mirror: 'https://registry-proxy.example.com',
      registries: ['gcr.io', 'docker.io'],
      setConfigPath: true,
    },
  ],
];

/** A dry run's outcome, or the refusal's code: the two sides must agree either way. */
async function dryRun(hostRoot: string, mode: ModeOptions) {
  try {
    const out = await applyToNode({
      hostRoot,
      ...noSystemd,
      ...mode,
      dryRun: true,
      detect: { runVersion },
    });
    const changes = [...(out.install?.changes ?? []), ...out.plan.changes];
    return { diff: out.diff, paths: changes.map((c) => c.path), refused: null };
  } catch (err) {
    if (!(err instanceof KubeletPatchError)) throw err;
    return { diff: null, paths: [], refused: (err as KubeletPatchError & { code: string }).code };
  }
}

describe.each(
  cloudNames.flatMap((cloud) => CLOUDS[cloud].layouts.map((layout) => [cloud, layout])) as Array<
    [Cloud, string]
  >,
)('%s mounts on the %s fixture host', (cloud, layout) => {
  const host = join(fixtures, layout);
  const mounts = hostMounts(daemonSet(`${cloud}.yaml`));

  it('let detect see the same layout as on the whole host', async () => {
    const view = podView(host, mounts);
    expect(await detectLayout(view, { runVersion })).toEqual(
      await detectLayout(host, { runVersion }),
    );
  });

  it.each(modes(cloud))(
    'let apply --mode %s plan the same change, every written file on a writable mount',
    async (_, mode) => {
      const view = podView(host, mounts);
      const whole = await dryRun(host, mode);
      const seen = await dryRun(view, mode);
      expect(seen).toEqual(whole);
      const writable = new Map(mounts);
      if (mode.mode === 'containerd-mirror')
        for (const path of CLOUDS[cloud].mirrorMounts) writable.set(path, rw());
      // the install is part of the change where the node allows it
      if (mode.installService && seen.refused === null) expect(seen.paths).toContain(RULES_PATH);
      for (const path of [...seen.paths, `${STATE_DIR}/state.json`, `${STATE_DIR}/failed.json`]) {
        const on = mountOf(writable, path);
        expect(on, `${path} is on a mount`).toBeDefined();
        expect(on?.[1].readOnly, `${path} is on the writable mount ${on?.[0]}`).toBe(false);
      }
    },
  );
});

describe('README.md (the operator guide)', () => {
  const readme = readFileSync(join(appDir, 'README.md'), 'utf8');

  it.each(cloudNames)('names the %s manifest and its revert twin', (cloud) => {
    expect(readme).toContain(`deploy/${cloud}.yaml`);
    expect(readme).toContain(`deploy/revert-${cloud}.yaml`);
  });

  it.each(cloudNames)('explains every host path the %s manifest mounts', (cloud) => {
    for (const path of Object.keys(CLOUDS[cloud].mounts)) expect(readme).toContain(`\`${path}\``);
  });

  it('gives the revert procedure: delete the apply DaemonSet, apply the revert one, remove it', () => {
    const steps = [
      'kubectl -n node-patcher delete daemonset node-patcher',
      'kubectl apply -f deploy/revert-',
      'kubectl delete -f deploy/revert-',
    ].map((step) => readme.indexOf(step));
    expect(steps.every((at) => at !== -1)).toBe(true);
    expect([...steps].sort((a, b) => a - b)).toEqual(steps);
  });

  it("uses the manifests' node label", () => {
    expect(readme).toContain(`${LABEL}=enabled`);
  });
});
