/**
 * Nodes pull from our proxy with their own identity and no static keys. Everything is real but
 * the clouds: the distribution registry (htpasswd, its password known only to the proxy), the
 * built `registry-proxy` and `kubelet-image-service` binaries as child processes, and containerd
 * 1.6 with its CRI plugin, which reaches the proxy over plain HTTP through a hosts.toml mirror
 * entry. Google (metadata server and token issuer) and the Kubernetes API server are wire-level
 * stand-ins on loopback.
 *
 * 1. A GKE node: kubelet's PullImage (no auth) goes to `kubelet-image-service serve`, which
 *    fetches the node's GCE identity token from the metadata server (GCE_METADATA_HOST) and hands
 *    it to containerd, which logs in to the proxy with it; the proxy checks it against Google's
 *    keys and the project allow-list. A node of another project is refused.
 * 2. KEP-4412: kubelet gives `kubelet-image-service credential-provider` the pod's
 *    service-account token for the proxy's audience; kubelet then pulls from containerd with the
 *    answer, and the proxy has the API server review the token (TokenReview) and applies the
 *    namespace's policy.
 */
import { randomBytes, verify } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  type Containerd,
  criCall,
  type DockerRegistry,
  freePort,
  imageSpecRequest,
  json,
  type OidcIssuer,
  type PushedImage,
  pushImage,
  type StandIn,
  startContainerd,
  startDockerRegistry,
  startGceMetadata,
  startOidcIssuer,
  startStandIn,
} from '@org/tools/stand-ins';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { binary, type Running, runBinary, startBinary } from './binaries.js';
import { bytesFields, pullImageRequest, stringFields } from './cri-wire.js';

const REGISTRY_PROXY = binary('@org/proxy-app', 'registry-proxy');
const KUBELET_IMAGE_SERVICE = binary('@org/kubelet-image-service-app', 'kubelet-image-service');

/** The proxy's name for itself: the audience node identity tokens are minted for. */
const AUDIENCE = 'docker.example.com';
/** The upstream registry's only account; the proxy's config is the one place that holds it. */
const UPSTREAM = {
  user: 'proxy-upstream',
  password: `upstream-${randomBytes(12).toString('hex')}`,
};
/** The token the proxy itself presents to the API server for TokenReviews. */
const PROXY_SA_TOKEN = `proxy-reviewer-${randomBytes(12).toString('hex')}`;

const dir = mkdtempSync(join(tmpdir(), 'e2e-node-identity-'));
/** Run in reverse after the file / after each test, whatever happened. */
const suiteCleanups: Array<() => Promise<unknown> | unknown> = [];
const testCleanups: Array<() => Promise<unknown> | unknown> = [];

async function unwind(stack: Array<() => Promise<unknown> | unknown>): Promise<void> {
  const errors: unknown[] = [];
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    try {
      await next();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length > 0) throw new AggregateError(errors, 'cleanup failed');
}

let registry: DockerRegistry;
/** Google's token issuer (accounts.google.com and its JWKS), as far as the proxy can tell. */
let google: OidcIssuer;
/** The cluster's service-account token issuer (the API server's signing key). */
let cluster: OidcIssuer;
let apiServer: StandIn;
let proxy: Running;
/** `127.0.0.1:PORT`, the registry host nodes pull from. */
let proxyHost: string;
let agent: PushedImage;
let teamA: PushedImage;
/** Pod UIDs whose pods are gone: the API server no longer accepts their tokens. */
const deletedPods = new Set<string>();
/** Every TokenReview the API server answered: the audiences asked for and the verdict. */
const reviews: Array<{
  audiences: readonly string[] | undefined;
  authenticated: boolean;
  error?: string;
}> = [];

const now = () => Math.floor(Date.now() / 1000);

/** The config digest of a pushed image: what containerd reports as the image id. */
function configDigest(image: PushedImage): string {
  const manifest = JSON.parse(
    readFileSync(join(image.layout, 'blobs', 'sha256', image.manifestDigest.slice(7)), 'utf8'),
  ) as { config: { digest: string } };
  return manifest.config.digest;
}

/**
 * A TokenReview answer as kube-apiserver gives it: the token must carry the cluster issuer's
 * signature, be unexpired, belong to a pod that still exists and be bound to one of the requested
 * audiences (the API server's own when none are asked for).
 */
function reviewToken(token: string, audiences: readonly string[] | undefined) {
  const unauthenticated = (error: string) => ({ authenticated: false, error });
  const [header, payload, signature] = token.split('.');
  if (header === undefined || payload === undefined || signature === undefined)
    return unauthenticated('not a JWT');
  const signed = verify(
    'sha256',
    Buffer.from(`${header}.${payload}`),
    cluster.publicKeyPem(),
    Buffer.from(signature, 'base64url'),
  );
  if (!signed) return unauthenticated('invalid signature');
  const claims = claimsOf(token) as {
    iss?: string;
    sub?: string;
    aud?: string[];
    exp?: number;
    'kubernetes.io'?: { namespace?: string; pod?: { uid?: string } };
  };
  const wanted = audiences ?? ['https://kubernetes.default.svc'];
  const bound = (claims.aud ?? []).filter((a) => wanted.includes(a));
  if (claims.iss !== cluster.issuer || typeof claims.sub !== 'string')
    return unauthenticated('unknown issuer');
  if (typeof claims.exp !== 'number' || claims.exp <= now()) return unauthenticated('expired');
  if (bound.length === 0) return unauthenticated('token audiences are invalid');
  if (deletedPods.has(claims['kubernetes.io']?.pod?.uid ?? ''))
    return unauthenticated('the pod no longer exists');
  const namespace = claims['kubernetes.io']?.namespace ?? '';
  return {
    authenticated: true,
    user: {
      username: claims.sub,
      groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`],
    },
    audiences: bound,
  };
}

/** The claims of a JWT, unverified. */
function claimsOf(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<
    string,
    unknown
  >;
}

/** A projected service-account token kubelet would request for a pod, for `audience`. */
function serviceAccountToken(
  namespace: string,
  pod: { name: string; uid: string },
  audience: string,
): string {
  return cluster.sign({
    iss: cluster.issuer,
    sub: `system:serviceaccount:${namespace}:puller`,
    aud: [audience],
    iat: now(),
    nbf: now(),
    exp: now() + 3600,
    'kubernetes.io': {
      namespace,
      pod,
      serviceaccount: { name: 'puller', uid: `sa-${namespace}` },
    },
  });
}

beforeAll(async () => {
  registry = await startDockerRegistry({ htpasswd: UPSTREAM });
  suiteCleanups.push(() => registry.close());
  const twoLayers = (name: string) => [
    { [`etc/${name}.conf`]: `${name}\n` },
    { [`opt/${name}/data.bin`]: randomBytes(512 * 1024) },
  ];
  agent = await pushImage(registry, dir, 'platform/agent', twoLayers('agent'), {
    credentials: UPSTREAM,
  });
  teamA = await pushImage(registry, dir, 'team-a/app', twoLayers('team-a'), {
    credentials: UPSTREAM,
  });
  // there, so that team-a's refusal is the policy's and not a missing repository
  await pushImage(registry, dir, 'team-b/app', twoLayers('team-b'), { credentials: UPSTREAM });

  google = await startOidcIssuer();
  suiteCleanups.push(() => google.close());
  cluster = await startOidcIssuer();
  suiteCleanups.push(() => cluster.close());
  apiServer = await startStandIn(
    (req, res) => {
      if (req.method !== 'POST' || req.path !== '/apis/authentication.k8s.io/v1/tokenreviews')
        return json(res, 404, { kind: 'Status', status: 'Failure', code: 404 });
      if (req.headers.authorization !== `Bearer ${PROXY_SA_TOKEN}`)
        return json(res, 401, { kind: 'Status', status: 'Failure', code: 401 });
      const { spec } = JSON.parse(req.body) as { spec: { token: string; audiences?: string[] } };
      const status = reviewToken(spec.token, spec.audiences);
      reviews.push({
        audiences: spec.audiences,
        authenticated: status.authenticated,
        ...('error' in status ? { error: status.error } : {}),
      });
      json(res, 201, { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec, status });
    },
    { tls: true },
  );
  suiteCleanups.push(() => apiServer.close());

  const passwordFile = join(dir, 'upstream-password');
  writeFileSync(passwordFile, UPSTREAM.password, { mode: 0o600 });
  const reviewerToken = join(dir, 'reviewer-token');
  writeFileSync(reviewerToken, PROXY_SA_TOKEN, { mode: 0o600 });
  const port = await freePort();
  proxyHost = `127.0.0.1:${port}`;
  const config = join(dir, 'proxy.json');
  writeFileSync(
    config,
    JSON.stringify({
      server: { listen: proxyHost, publicUrl: `http://${proxyHost}` },
      auth: {
        plugins: [
          {
            name: 'gke',
            type: 'gcp-instance-identity',
            audience: AUDIENCE,
            projectIds: ['acme-prod'],
            issuer: google.issuer,
            jwksUri: `${google.issuer}/jwks`,
          },
          {
            name: 'k8s',
            type: 'kubernetes',
            mode: 'tokenreview',
            apiServer: apiServer.url,
            caFile: join(process.env.STAND_IN_TLS_DIR as string, 'ca.crt'),
            tokenFile: reviewerToken,
            audiences: [AUDIENCE],
            cacheSeconds: 0,
          },
        ],
        policy: [
          { identities: ['gke:acme-prod/*'], repositories: ['platform/*'], actions: ['pull'] },
          { identities: ['k8s:team-a/*'], repositories: ['team-a/*'], actions: ['pull'] },
        ],
      },
      upstreams: [
        {
          name: 'private',
          prefix: '',
          url: registry.url,
          credentials: { provider: 'static', username: UPSTREAM.user, passwordFile },
        },
      ],
    }),
  );
  proxy = await startBinary(REGISTRY_PROXY, ['serve', '--config', config], { ready: 'listening' });
  suiteCleanups.push(() => proxy.stop());
});

afterEach(() => unwind(testCleanups));
afterAll(async () => {
  await unwind(suiteCleanups);
  rmSync(dir, { recursive: true, force: true });
});

/** A private containerd whose CRI reaches the proxy over plain HTTP (hosts.toml mirror). */
async function nodeContainerd(cleanups = testCleanups): Promise<Containerd> {
  const containerd = await startContainerd();
  cleanups.push(() => containerd.close());
  containerd.mirror(proxyHost, `http://${proxyHost}`);
  return containerd;
}

function criClient(socket: string, cleanups = testCleanups): grpc.Client {
  const client = new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure());
  cleanups.push(() => client.close());
  return client;
}

/** The image references containerd's k8s.io namespace holds. */
async function imagesIn(containerd: Containerd): Promise<string[]> {
  const { stdout } = await containerd.ctr(['-n', 'k8s.io', 'images', 'ls', '-q']);
  return stdout.split('\n').filter(Boolean);
}

/** What kubelet checks after a pull: ImageStatus's id, and the digests it knows the image by. */
async function imageStatus(client: grpc.Client, image: string) {
  // ImageStatusResponse: 1 image (absent: not there); Image: 1 id, 3 repo_digests
  const [found] = bytesFields(await criCall(client, 'ImageStatus', imageSpecRequest(image)), 1);
  return found && { id: stringFields(found, 1)[0], repoDigests: stringFields(found, 3) };
}

/** A pull's gRPC failure: status code and message. */
async function pullFailure(promise: Promise<Buffer>): Promise<grpc.ServiceError> {
  const outcome = await promise.then(
    (response) => new Error(`the pull succeeded: ${stringFields(response, 1).join()}`),
    (err: unknown) => err,
  );
  if (!(outcome instanceof Error) || !('code' in outcome)) throw outcome;
  return outcome as grpc.ServiceError;
}

/**
 * A GKE node: its metadata server (identity tokens for project `project`, signed by "Google"),
 * its containerd, and `kubelet-image-service serve` in front of it with one instance-identity
 * rule for the proxy and no secret of any kind.
 */
async function startGkeNode(project: string) {
  const issued: string[] = [];
  const metadata = await startGceMetadata({
    signIdentity: (claims) => {
      const token = google.sign(claims);
      issued.push(token);
      return token;
    },
    identityClaims: {
      iss: google.issuer,
      sub: '109876543210987654321',
      email: '123456789012-compute@developer.gserviceaccount.com',
      google: {
        compute_engine: {
          project_id: project,
          project_number: project === 'acme-prod' ? 123456789012 : 999999999999,
          zone: 'europe-west1-b',
          instance_id: '4242424242424242',
          instance_name: 'gke-prod-pool-1-abcd',
        },
      },
    },
  });
  testCleanups.push(() => metadata.close());
  const containerd = await nodeContainerd();
  const nodeDir = mkdtempSync(join(dir, `node-${project}-`));
  const rules = join(nodeDir, 'rules.json');
  writeFileSync(
    rules,
    JSON.stringify({
      rules: [
        {
          // kubelet matchImages: a host[:port] glob matches every repository on that host
          match: [proxyHost],
          credentials: { provider: 'instance-identity', kind: 'gcp', audience: AUDIENCE },
        },
      ],
    }),
  );
  const socket = join(nodeDir, 'kis.sock');
  const service = await startBinary(
    KUBELET_IMAGE_SERVICE,
    [
      'serve',
      '--config',
      rules,
      '--listen',
      `unix://${socket}`,
      '--backend',
      'cri',
      '--backend-endpoint',
      `unix://${containerd.socket}`,
    ],
    { ready: 'serving', env: { GCE_METADATA_HOST: metadata.host } },
  );
  testCleanups.push(() => service.stop());
  return { metadata, containerd, rules, service, issued, kubelet: criClient(socket) };
}

describe('a GKE node pulls through kubelet-image-service with its instance identity', () => {
  it('pulls the image into containerd as pushed, and the proxy logs the node identity', async () => {
    const node = await startGkeNode('acme-prod');
    const image = `${proxyHost}/platform/agent:v1`;

    // kubelet with no imagePullSecrets: PullImage carries no auth at all
    const response = await criCall(node.kubelet, 'PullImage', pullImageRequest(image));
    const [imageRef] = stringFields(response, 1);
    expect(imageRef).toBe(configDigest(agent));

    const status = await imageStatus(node.kubelet, image);
    expect(status?.id).toBe(imageRef);
    expect(status?.repoDigests).toContain(`${proxyHost}/platform/agent@${agent.manifestDigest}`);
    expect(await imagesIn(node.containerd)).toContain(image);

    const audit = await proxy.waitForLine(
      'the manifest pull audit line',
      (l) => l.msg === 'manifest pull' && l.repository === 'platform/agent',
    );
    expect(audit).toMatchObject({
      identity: 'gke:acme-prod/gke-prod-pool-1-abcd',
      digest: agent.manifestDigest,
      upstream: 'private',
    });
    const pull = await node.service.waitForLine('the pull line', (l) => l.msg === 'pull');
    expect(pull).toMatchObject({
      image,
      provider: 'instance-identity',
      injected: true,
      result: 'OK',
    });

    // the node held no key: its token came from the metadata server, and no log shows it
    expect(node.issued.length).toBeGreaterThan(0);
    expect(readFileSync(node.rules, 'utf8')).not.toContain(UPSTREAM.password);
    for (const log of [proxy.output(), node.service.output(), node.containerd.log()]) {
      expect(log).not.toContain(UPSTREAM.password);
      for (const token of node.issued) expect(log).not.toContain(token);
    }
  });

  it('refuses a node of another project: the proxy refusal reaches kubelet and nothing lands', async () => {
    const node = await startGkeNode('evil-proj');
    const image = `${proxyHost}/platform/agent:v1`;
    const isTokenRequest = (l: Record<string, unknown>) =>
      l.msg === 'request' && l.route === 'token';
    const before = proxy.lines().filter(isTokenRequest).length;

    const failure = await pullFailure(criCall(node.kubelet, 'PullImage', pullImageRequest(image)));
    // containerd's own status and words, unchanged by the image service: the proxy said 401
    expect(failure.code).toBe(grpc.status.UNKNOWN);
    expect(failure.details).toMatch(
      /failed to fetch oauth token: unexpected status: 401 Unauthorized/,
    );
    expect(node.issued.length).toBeGreaterThan(0);

    // the proxy saw the node's logins and refused every one (lines are written once the
    // response is out, so wait for them)
    await proxy.waitForLine(
      'a refused token request',
      (l) => isTokenRequest(l) && l.status === 401 && l.identity === undefined,
    );
    const logins = proxy.lines().filter(isTokenRequest).slice(before);
    expect(logins.length).toBeGreaterThan(0);
    expect(logins.map((l) => l.status)).toEqual(logins.map(() => 401));
    expect(await imagesIn(node.containerd)).toEqual([]);
    expect(await imageStatus(node.kubelet, image)).toBeUndefined();
    const pull = await node.service.waitForLine('the pull line', (l) => l.msg === 'pull');
    expect(pull).toMatchObject({ image, provider: 'instance-identity', injected: true });
    expect(pull.result).not.toBe('OK');
  });
});

describe('KEP-4412: kubelet hands the pod service-account token to the credential provider', () => {
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  let rules: string;
  let provider: {
    matchImages: string[];
    apiVersion: string;
    tokenAttributes?: { serviceAccountTokenAudience?: string; requireServiceAccount?: boolean };
  };
  /** The node's runtime, which kubelet pulls from itself on this route (no image service). */
  let containerd: Containerd;
  let kubelet: grpc.Client;
  const appImage = () => `${proxyHost}/team-a/app:v1`;

  beforeAll(async () => {
    rules = join(mkdtempSync(join(dir, 'node-sa-')), 'rules.json');
    writeFileSync(
      rules,
      JSON.stringify({
        rules: [
          {
            match: [proxyHost],
            credentials: { provider: 'service-account-token', audience: AUDIENCE },
          },
        ],
      }),
    );
    // what the operator installs as kubelet's --image-credential-provider-config
    const printed = await runBinary(
      KUBELET_IMAGE_SERVICE,
      ['credential-provider-config', '--config', rules],
      '',
    );
    if (printed.code !== 0) throw new Error(`credential-provider-config: ${printed.stderr}`);
    const config = parseYaml(printed.stdout) as { providers: Array<typeof provider> };
    provider = config.providers[0] as typeof provider;
    containerd = await nodeContainerd(cleanups);
    kubelet = criClient(containerd.socket, cleanups);
  });
  afterAll(() => unwind(cleanups));

  /** The token kubelet requests for a pod: for the audience the provider config names. */
  const podToken = (namespace: string, pod: { name: string; uid: string }) =>
    serviceAccountToken(
      namespace,
      pod,
      provider.tokenAttributes?.serviceAccountTokenAudience ?? '',
    );

  /** kubelet's exchange for one pull: the request it writes, the auth it takes from the answer. */
  async function credentialsFor(image: string, token: string) {
    const { code, stdout, stderr } = await runBinary(
      KUBELET_IMAGE_SERVICE,
      ['credential-provider', '--config', rules],
      JSON.stringify({
        apiVersion: provider.apiVersion,
        kind: 'CredentialProviderRequest',
        image: image.replace(/:[^:/]+$/, ''), // the repository: kubelet sends no tag
        serviceAccountToken: token,
        serviceAccountAnnotations: {},
      }),
    );
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const answer = JSON.parse(stdout) as {
      kind: string;
      cacheKeyType: string;
      auth: Record<string, { username: string; password: string }>;
    };
    expect(answer).toMatchObject({ kind: 'CredentialProviderResponse', cacheKeyType: 'Registry' });
    expect(Object.keys(answer.auth)).toEqual([proxyHost]);
    return answer.auth[proxyHost] as { username: string; password: string };
  }

  /** kubelet's PullImage to the runtime with the plugin's credentials. */
  const pull = async (image: string, token: string) =>
    criCall(kubelet, 'PullImage', pullImageRequest(image, await credentialsFor(image, token)));

  it("the printed CredentialProviderConfig sends the proxy's images and asks for tokens of its audience", () => {
    expect(provider.apiVersion).toBe('credentialprovider.kubelet.k8s.io/v1');
    expect(provider.matchImages).toEqual([proxyHost]);
    expect(provider.tokenAttributes).toMatchObject({
      serviceAccountTokenAudience: AUDIENCE,
      requireServiceAccount: true,
    });
  });

  it("pulls team-a/app with a team-a pod's token; the same token is refused team-b/app", async () => {
    const token = podToken('team-a', { name: 'app-7d9f8-x2x4q', uid: 'pod-uid-team-a-1' });
    expect(await credentialsFor(appImage(), token)).toEqual({ username: '_k8s', password: token });

    const [imageRef] = stringFields(await pull(appImage(), token), 1);
    expect(imageRef).toBe(configDigest(teamA));
    const status = await imageStatus(kubelet, appImage());
    expect(status?.id).toBe(imageRef);
    expect(status?.repoDigests).toContain(`${proxyHost}/team-a/app@${teamA.manifestDigest}`);
    expect(reviews.at(-1)).toEqual({ audiences: [AUDIENCE], authenticated: true });
    const audit = await proxy.waitForLine(
      'the team-a manifest pull audit line',
      (l) => l.msg === 'manifest pull' && l.repository === 'team-a/app',
    );
    expect(audit).toMatchObject({ identity: 'k8s:team-a/puller', digest: teamA.manifestDigest });

    // authenticated, but the policy gives namespace team-a nothing else; containerd passes on
    // the proxy's 401 `error="insufficient_scope"`
    const otherImage = `${proxyHost}/team-b/app:v1`;
    const denied = await pullFailure(pull(otherImage, token));
    expect(denied.code).toBe(grpc.status.UNKNOWN);
    expect(denied.details).toMatch(/server message: insufficient_scope/);
    expect(await imageStatus(kubelet, otherImage)).toBeUndefined();
    expect((await imagesIn(containerd)).filter((i) => i.includes('team-b'))).toEqual([]);

    expect(containerd.log()).not.toContain(UPSTREAM.password);
    expect(proxy.output()).not.toContain(token);
  });

  it('refuses tokens the API server rejects: a deleted pod, another audience, a foreign signer', async () => {
    const gone = { name: 'app-7d9f8-gone1', uid: 'pod-uid-team-a-gone' };
    const goneToken = podToken('team-a', gone);
    deletedPods.add(gone.uid);
    const pod = { name: 'app-7d9f8-k9k9z', uid: 'pod-uid-team-a-2' };
    const stranger = await startOidcIssuer();
    testCleanups.push(() => stranger.close());
    const reviewed = reviews.length;
    for (const token of [
      goneToken,
      serviceAccountToken('team-a', pod, 'https://kubernetes.default.svc'),
      stranger.sign(claimsOf(podToken('team-a', pod))),
    ]) {
      const refused = await pullFailure(pull(appImage(), token));
      expect(refused.code).toBe(grpc.status.UNKNOWN);
      expect(refused.details).toMatch(
        /failed to fetch oauth token: unexpected status: 401 Unauthorized/,
      );
    }
    // each refused by the API server for its own reason (containerd asks twice per pull: its
    // OAuth POST to /token, then, after the 401, the GET with Basic)
    expect([...new Set(reviews.slice(reviewed).map((r) => r.error))]).toEqual([
      'the pod no longer exists',
      'token audiences are invalid',
      'invalid signature',
    ]);
  });
});
