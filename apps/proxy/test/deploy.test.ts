/**
 * The Kubernetes manifests in deploy/: what has to agree across files (ports, labels, paths,
 * names) agrees, the security settings are there, and the ConfigMap's config passes the app's
 * own schema and starts the built binary, which answers the probes' paths.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { checkConfig } from '../src/config.js';

const deployDir = join(import.meta.dirname, '..', 'deploy');
const main = join(import.meta.dirname, '..', 'dist', 'main.js');
const temp = mkdtempSync(join(tmpdir(), 'registry-proxy-deploy-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

type Manifest = {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  // biome-ignore lint/suspicious/noExplicitAny: manifests are checked field by field below
  [field: string]: any;
};

const files = readdirSync(deployDir).filter((f) => /\.ya?ml$/.test(f));
/** Every document of every YAML file, parsed as YAML 1.1 like kubectl does (`0440` is octal). */
const documents = files.flatMap((file) =>
  parseAllDocuments(readFileSync(join(deployDir, file), 'utf8'), { version: '1.1' }).map((doc) => {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]?.message}`);
    return { file, manifest: doc.toJS() as Manifest };
  }),
);
const one = (kind: string): Manifest => {
  const found = documents.filter((d) => d.manifest.kind === kind);
  if (found.length !== 1) throw new Error(`deploy/ has ${found.length} ${kind} manifests, not 1`);
  return (found[0] as { manifest: Manifest }).manifest;
};

const deployment = one('Deployment');
const pod = deployment.spec.template.spec;
const container = pod.containers[0];
const configMap = one('ConfigMap');
const configText: string = configMap.data['config.yaml'];
const config = checkConfig(parseAllDocuments(configText)[0]?.toJS(), 'deploy/configmap.yaml');
const podLabels: Record<string, string> = deployment.spec.template.metadata.labels;
const selects = (selector: { matchLabels: Record<string, string> }) =>
  Object.entries(selector.matchLabels).every(([k, v]) => podLabels[k] === v);

describe('deploy/ (Kubernetes manifests)', () => {
  it('lists every manifest in kustomization.yaml, each parsing with a kind', () => {
    const kustomization = one('Kustomization');
    expect([...kustomization.resources].sort()).toEqual(
      files.filter((f) => f !== 'kustomization.yaml').sort(),
    );
    for (const { file, manifest } of documents) expect(manifest.kind, file).toMatch(/^[A-Z]/);
  });

  it('agrees on one port: config listen, containerPort, probes and the Service target', () => {
    expect(pod.containers).toHaveLength(1);
    const listenPort = Number(/:(\d+)$/.exec(config.server?.listen ?? '')?.[1]);
    const [port] = container.ports;
    expect(port.containerPort).toBe(listenPort);
    const resolve = (p: number | string) =>
      typeof p === 'number'
        ? p
        : container.ports.find((c: { name: string }) => c.name === p)?.containerPort;
    expect(resolve(container.livenessProbe.httpGet.port)).toBe(listenPort);
    expect(resolve(container.readinessProbe.httpGet.port)).toBe(listenPort);
    const service = one('Service');
    expect(selects({ matchLabels: service.spec.selector })).toBe(true);
    for (const p of service.spec.ports) expect(resolve(p.targetPort)).toBe(listenPort);
  });

  it("agrees with the image: its default config listens on the EXPOSEd port, the Deployment's", () => {
    const dockerfile = readFileSync(join(import.meta.dirname, '..', 'Dockerfile'), 'utf8');
    const exposed = Number(/^EXPOSE (\d+)$/m.exec(dockerfile)?.[1]);
    const imageConfig = checkConfig(
      parseAllDocuments(
        readFileSync(join(import.meta.dirname, '..', 'container', 'config.yaml'), 'utf8'),
      )[0]?.toJS(),
      'container/config.yaml',
    );
    expect(imageConfig.server?.listen).toBe(`:${exposed}`);
    expect(container.ports[0].containerPort).toBe(exposed);
  });

  it('runs non-root, read-only, without privileges, under the runtime seccomp profile', () => {
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
    expect(container.securityContext).toMatchObject({
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    // the Dockerfile's numeric user is the one the pod runs as
    const dockerfile = readFileSync(join(import.meta.dirname, '..', 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(
      new RegExp(`^USER ${pod.securityContext.runAsUser}:${pod.securityContext.runAsGroup}$`, 'm'),
    );
    expect(container.resources).toEqual({
      requests: { cpu: '100m', memory: '128Mi' },
      limits: { memory: '512Mi' },
    });
    // longer than the 25 s the binary gives in-flight requests after SIGTERM
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(25);
    for (const c of pod.topologySpreadConstraints) expect(selects(c.labelSelector)).toBe(true);
  });

  it('mounts the ConfigMap where the args read it, and the Secret where the config reads it', () => {
    const mounts: Array<{ name: string; mountPath: string; readOnly: boolean }> =
      container.volumeMounts;
    const volume = (name: string) => pod.volumes.find((v: { name: string }) => v.name === name);
    const configMount = mounts.find((m) => volume(m.name)?.configMap);
    expect(volume(configMount?.name ?? '').configMap.name).toBe(configMap.metadata.name);
    const configPath = container.args[container.args.indexOf('--config') + 1];
    expect(configPath).toBe(`${configMount?.mountPath}/config.yaml`);
    const secretMount = mounts.find((m) => volume(m.name)?.secret);
    expect(volume(secretMount?.name ?? '').secret.defaultMode).toBe(0o440);
    for (const m of mounts) expect(m.readOnly, m.name).toBe(true);
    const secretFiles = [
      config.auth?.signingKeyFile,
      ...(config.auth?.plugins ?? []).map((p) => (p.type === 'htpasswd' ? p.file : undefined)),
    ].filter((f): f is string => f !== undefined);
    expect(secretFiles.length).toBeGreaterThan(0);
    for (const f of secretFiles) expect(f.startsWith(`${secretMount?.mountPath}/`), f).toBe(true);
  });

  it('gives the PDB and the HPA the Deployment: selectors, target, CPU requests', () => {
    const pdb = one('PodDisruptionBudget');
    expect(pdb.apiVersion).toBe('policy/v1');
    expect(selects(pdb.spec.selector)).toBe(true);
    expect(pdb.spec.minAvailable).toBe(1);
    expect(deployment.spec.replicas).toBeGreaterThan(pdb.spec.minAvailable);
    expect(selects(deployment.spec.selector)).toBe(true);
    const hpa = one('HorizontalPodAutoscaler');
    expect(hpa.apiVersion).toBe('autoscaling/v2');
    expect(hpa.spec.scaleTargetRef).toEqual({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: deployment.metadata.name,
    });
    expect(hpa.spec.minReplicas).toBeGreaterThan(pdb.spec.minAvailable);
    expect(hpa.spec.metrics[0].resource.name).toBe('cpu');
    // utilization is relative to the request, so there must be one
    expect(container.resources.requests.cpu).toBeDefined();
  });

  it("starts the built binary with the ConfigMap's config, and it answers the probes' paths", async () => {
    // the Secret's files, made here, at the paths the config names under its mount
    const secret = pod.volumes.find((v: { secret?: unknown }) => v.secret).name;
    const mountPath: string = container.volumeMounts.find(
      (m: { name: string }) => m.name === secret,
    ).mountPath;
    const here = (path: string) => path.replace(`${mountPath}/`, `${temp}/`);
    for (const plugin of config.auth?.plugins ?? []) {
      if (plugin.type !== 'htpasswd') continue;
      const line = execFileSync('htpasswd', ['-Bbn', 'alice', 'wonderland'], { encoding: 'utf8' });
      writeFileSync(here(plugin.file), line);
    }
    const key = config.auth?.signingKeyFile ?? expect.unreachable('no signingKeyFile');
    execFileSync('openssl', [
      'genpkey',
      '-algorithm',
      'EC',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-out',
      here(key),
    ]);
    const file = join(temp, 'config.yaml');
    writeFileSync(file, configText.replaceAll(`${mountPath}/`, `${temp}/`));
    const child = spawn(
      process.execPath,
      [main, 'serve', '--config', file, '--listen', '127.0.0.1:0'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    try {
      const address = await listening(child);
      for (const probe of [container.livenessProbe, container.readinessProbe]) {
        const res = await fetch(`http://${address}${probe.httpGet.path}`);
        expect(res.status, probe.httpGet.path).toBe(200);
      }
      // and the auth section is live: the registry API wants a token, and alice gets one
      expect((await fetch(`http://${address}/v2/`)).status).toBe(401);
      const token = await fetch(`http://${address}/token?service=docker.example.com`, {
        headers: { authorization: `Basic ${Buffer.from('alice:wonderland').toString('base64')}` },
      });
      expect(token.status).toBe(200);
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
  }, 60_000);
});

/** The documents of a component's files, by kind. */
function component(dir: string): { kustomization: Manifest; byKind: Map<string, Manifest> } {
  const byKind = new Map<string, Manifest>();
  let kustomization: Manifest | undefined;
  for (const file of readdirSync(join(deployDir, dir))) {
    for (const doc of parseAllDocuments(readFileSync(join(deployDir, dir, file), 'utf8'), {
      version: '1.1',
    })) {
      if (doc.errors.length > 0) throw new Error(`${dir}/${file}: ${doc.errors[0]?.message}`);
      const manifest = doc.toJS() as Manifest;
      if (file === 'kustomization.yaml') kustomization = manifest;
      else byKind.set(manifest.kind, manifest);
    }
  }
  if (!kustomization) throw new Error(`${dir} has no kustomization.yaml`);
  return { kustomization, byKind };
}

describe('deploy/ optional components (docs/threat-model.md)', () => {
  it('network-policy: admits only the proxy port, and keeps metadata and private ranges out of egress', () => {
    const { kustomization, byKind } = component('network-policy');
    expect(kustomization.kind).toBe('Component');
    expect(kustomization.resources).toEqual(['networkpolicy.yaml']);
    const policy = byKind.get('NetworkPolicy') as Manifest;
    expect(selects(policy.spec.podSelector)).toBe(true);
    expect(policy.spec.policyTypes).toEqual(['Ingress', 'Egress']);
    const ports = policy.spec.ingress.flatMap((r: { ports: { port: number }[] }) => r.ports);
    expect(ports).toEqual([{ protocol: 'TCP', port: container.ports[0].containerPort }]);
    const blocks = policy.spec.egress.flatMap((r: { to: { ipBlock?: unknown }[] }) =>
      r.to.flatMap((t) => (t.ipBlock ? [t.ipBlock] : [])),
    ) as { cidr: string; except?: string[] }[];
    expect(blocks.length).toBeGreaterThan(0);
    for (const block of blocks) {
      expect(block.except).toEqual(
        expect.arrayContaining(['169.254.0.0/16', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16']),
      );
    }
  });

  it('tokenreview: a service account allowed TokenReviews only, its token mounted for the proxy', () => {
    const { kustomization, byKind } = component('tokenreview');
    expect(kustomization.kind).toBe('Component');
    const account = byKind.get('ServiceAccount') as Manifest;
    const binding = byKind.get('ClusterRoleBinding') as Manifest;
    expect(binding.roleRef).toEqual({
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'ClusterRole',
      name: 'system:auth-delegator',
    });
    expect(binding.subjects).toHaveLength(1);
    expect(binding.subjects[0]).toMatchObject({
      kind: 'ServiceAccount',
      name: account.metadata.name,
    });
    // the account mounts no token anywhere else; only the proxy's pod asks for it
    expect(account.automountServiceAccountToken).toBe(false);
    const patch = byKind.get('Deployment') as Manifest;
    expect(patch.metadata.name).toBe(deployment.metadata.name);
    expect(kustomization.patches).toEqual([
      {
        path: 'deployment-patch.yaml',
        target: { kind: 'Deployment', name: deployment.metadata.name },
      },
    ]);
    expect(patch.spec.template.spec).toEqual({
      serviceAccountName: account.metadata.name,
      automountServiceAccountToken: true,
    });
    // without the component the proxy has no token at all
    expect(pod.automountServiceAccountToken).toBe(false);
  });
});

async function listening(child: ChildProcess): Promise<string> {
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  for await (const line of lines) {
    const entry = JSON.parse(line) as { msg: string; address?: string };
    if (entry.msg === 'listening' && entry.address) return entry.address;
  }
  throw new Error(`registry-proxy exited before listening: ${stderr}`);
}
