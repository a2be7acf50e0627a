import { execFile } from 'node:child_process';
import { createHash, createSign } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { RegistryAuth } from '@org/registry-auth';
import {
  type DockerRegistry,
  freePort,
  json,
  makeCertificate,
  type OciImage,
  type OidcIssuer,
  pushImage,
  type Slapd,
  type StandIn,
  startDockerRegistry,
  startGceMetadata,
  startImds,
  startOidcIssuer,
  startSlapd,
  startStandIn,
  startStsCallerIdentity,
} from '@org/tools/stand-ins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Started, start } from './start.js';

/**
 * Logins beyond passwords, through the built binary and pulled with the real skopeo: GitHub
 * Actions OIDC, Kubernetes service accounts (TokenReview), GKE instance identity, LDAP.
 */
const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'registry-proxy-oidc-'));
let registry: DockerRegistry;
let issuer: OidcIssuer;
/** Google's token issuer, as far as these nodes can tell. */
let google: OidcIssuer;
let image: OciImage;
let proxy: Started;
let apiServer: StandIn;
let slapd: Slapd;
let sts: StandIn;
const nodeKey = { accessKeyId: 'AKIANODEROLE', secretAccessKey: 'node-secret' };
const strangerKey = { accessKeyId: 'AKIASTRANGER', secretAccessKey: 'stranger-secret' };
/** Service-account tokens the stand-in API server's TokenReview accepts, and whose they are. */
const serviceAccounts = new Map<string, string>();

beforeAll(async () => {
  registry = await startDockerRegistry();
  issuer = await startOidcIssuer();
  google = await startOidcIssuer();
  sts = await startStsCallerIdentity([
    { key: nodeKey, arn: 'arn:aws:sts::123456789012:assumed-role/eks-node-prod/i-0abc' },
    { key: strangerKey, arn: 'arn:aws:sts::999999999999:assumed-role/eks-node-prod/i-0def' },
  ]);
  slapd = await startSlapd([
    { uid: 'alice', password: 'alice-pw', groups: ['platform'] },
    { uid: 'carol', password: 'carol-pw', groups: ['dev'] },
  ]);
  image = await pushImage(registry, dir, 'acme/app', [{ 'etc/motd': 'oidc\n' }]);
  apiServer = await startStandIn(
    (req, res) => {
      if (req.headers.authorization !== 'Bearer proxy-own-token') return json(res, 401, {});
      const { spec } = JSON.parse(req.body) as { spec: { token: string } };
      const username = serviceAccounts.get(spec.token);
      json(res, 201, {
        kind: 'TokenReview',
        status: username ? { authenticated: true, user: { username, groups: [] } } : {},
      });
    },
    { tls: true },
  );
  const ownToken = join(dir, 'own-token');
  writeFileSync(ownToken, 'proxy-own-token');
  // the custom plugin example from @org/auth-plugins' README, next to the config
  const readme = readFileSync(
    join(import.meta.dirname, '..', '..', '..', 'packages', 'auth-plugins', 'README.md'),
    'utf8',
  );
  const example = /```js\n([\s\S]*?)```/.exec(readme.slice(readme.indexOf('## Custom plugins')));
  writeFileSync(join(dir, 'api-keys-plugin.mjs'), example?.[1] ?? '');
  const keyDigest = createHash('sha256').update('robot-key-1').digest('hex');
  // a stand-in for AWS's identity-document certificate
  makeCertificate(dir, 'aws', { key: 'rsa', subject: '/CN=aws-stand-in' });
  const port = await freePort();
  const config = join(dir, 'proxy.yaml');
  writeFileSync(
    config,
    [
      `server: { listen: "127.0.0.1:${port}", publicUrl: "http://127.0.0.1:${port}" }`,
      'auth:',
      '  plugins:',
      `    - { name: ci, type: oidc, issuer: "${issuer.issuer}", audience: docker.example.com }`,
      `    - { name: k8s, type: kubernetes, mode: tokenreview, apiServer: "${apiServer.url}", caFile: "${join(process.env.STAND_IN_TLS_DIR as string, 'ca.crt')}", tokenFile: "${ownToken}", cacheSeconds: 0 }`,
      `    - { name: gke, type: gcp-instance-identity, audience: docker.example.com, projectIds: [acme-prod], zones: ["europe-west1-*"], issuer: "${google.issuer}", jwksUri: "${google.issuer}/jwks" }`,
      `    - { name: corp, type: ldap, url: "${slapd.url}", startTls: true, caFile: "${slapd.caFile}", userSearchBase: "ou=people,${slapd.suffix}", bindDn: "${slapd.adminDn}", bindPassword: "${slapd.adminPassword}" }`,
      `    - { name: robots, type: module, path: ./api-keys-plugin.mjs, options: { keys: [ { sha256: "${keyDigest}", subject: robot-1, groups: [ci] } ] } }`,
      `    - { name: eks, type: aws-iam, serverId: docker.example.com, accounts: ["123456789012"], principals: ["eks-node-*"], stsEndpoints: ["${sts.url}"] }`,
      `    - { name: ec2, type: aws-instance-identity, accounts: ["123456789012"], regions: [eu-west-1], certificates: { "eu-west-1": "${join(dir, 'aws.crt')}" } }`,
      '  policy:',
      '    - { identities: ["k8s:team-a/*"], repositories: ["team-a/**"], actions: [pull] }',
      '    - { identities: ["ec2:123456789012/*"], repositories: ["team-a/**"], actions: [pull] }',
      '    - { identities: ["eks:123456789012/eks-node-*"], repositories: ["**"], actions: [pull] }',
      '    - { identities: ["robots:*"], groups: [ci], repositories: ["team-a/**"], actions: [pull] }',
      '    - { identities: ["corp:*"], groups: [platform], repositories: ["**"], actions: [pull] }',
      '    - { identities: ["gke:acme-prod/*"], repositories: ["**"], actions: [pull] }',
      '    - identities: ["ci:**"]',
      '      claims: { repository_owner: acme }',
      '      repositories: ["team-a/**"]',
      '      actions: [pull]',
      'upstreams:',
      `  - { name: local, prefix: team-a, url: "${registry.url}", repositoryPrefix: acme }`,
    ].join('\n'),
  );
  proxy = await start(['serve', '--config', config]);
}, 120_000);
afterAll(async () => {
  await proxy?.stop();
  await issuer?.close();
  await google?.close();
  await slapd?.close();
  await sts?.close();
  await apiServer?.close();
  await registry?.close();
  rmSync(dir, { recursive: true, force: true });
});

const now = () => Math.floor(Date.now() / 1000);
const token = (extra: Record<string, unknown> = {}) =>
  issuer.sign({
    iss: issuer.issuer,
    aud: 'docker.example.com',
    sub: 'repo:acme/app:ref:refs/heads/main',
    repository_owner: 'acme',
    iat: now(),
    exp: now() + 300,
    ...extra,
  });
const inspect = (username: string, password: string) =>
  run('skopeo', [
    'inspect',
    '--tls-verify=false',
    '--creds',
    `${username}:${password}`,
    `docker://${proxy.address}/team-a/app:v1`,
  ]);
const refusal = async (username: string, password: string) =>
  ((await inspect(username, password).catch((e: unknown) => e)) as { stderr?: string }).stderr ??
  'succeeded';

describe('oidc logins (GitHub Actions style) through the proxy binary', () => {
  it('pulls with a CI token as the password, as _oidc or any username', async () => {
    for (const username of ['_oidc', 'github-actions']) {
      const { stdout } = await inspect(username, token());
      expect(JSON.parse(stdout).Digest).toBe(image.manifestDigest);
    }
    await proxy.waitForLine(
      (l) => l.msg === 'manifest pull' && l.identity === 'ci:repo:acme/app:ref:refs/heads/main',
    );
  });

  it('denies a token from another owner (the policy claim), an expired one and a forged one', async () => {
    expect(await refusal('_oidc', token({ repository_owner: 'evil' }))).toMatch(
      /denied|unauthorized|authentication required/i,
    );
    expect(await refusal('_oidc', token({ exp: now() - 600 }))).toMatch(/unauthorized|401/i);
    const [h, , s] = token().split('.');
    const forged = `${h}.${Buffer.from(JSON.stringify({ sub: 'x', aud: 'docker.example.com', iss: issuer.issuer, exp: now() + 60, repository_owner: 'acme' })).toString('base64url')}.${s}`;
    expect(await refusal('_oidc', forged)).toMatch(/unauthorized|401/i);
  });
});

describe('kubernetes service-account logins (TokenReview) through the proxy binary', () => {
  it('pulls as a service account of namespace team-a; another namespace and a revoked token are refused', async () => {
    const teamA = token({ sub: 'system:serviceaccount:team-a:puller' });
    const teamB = token({ sub: 'system:serviceaccount:team-b:puller' });
    serviceAccounts.set(teamA, 'system:serviceaccount:team-a:puller');
    serviceAccounts.set(teamB, 'system:serviceaccount:team-b:puller');
    const { stdout } = await inspect('_k8s', teamA);
    expect(JSON.parse(stdout).Digest).toBe(image.manifestDigest);
    expect(await refusal('_k8s', teamB)).toMatch(/denied|unauthorized|authentication required/i);
    serviceAccounts.delete(teamA); // the pod is gone: the API server no longer accepts it
    expect(await refusal('_k8s', teamA)).toMatch(/unauthorized|401/i);
  });
});

describe('GKE nodes logging in with their instance identity', () => {
  it('pulls with the credentials @org/registry-auth makes from the metadata server; another project is refused', async () => {
    const node = (project: string) =>
      startGceMetadata({
        signIdentity: google.sign,
        identityClaims: {
          iss: google.issuer,
          sub: '1122334455',
          google: {
            compute_engine: {
              project_id: project,
              project_number: project === 'acme-prod' ? 123456789012 : 1,
              zone: 'europe-west1-b',
              instance_id: '4242',
              instance_name: 'gke-prod-pool-1-abcd',
            },
          },
        },
      });
    for (const project of ['acme-prod', 'someone-else']) {
      const metadata = await node(project);
      try {
        // what kubelet-image-service / the docker credential helper do on the node
        const creds = await new RegistryAuth().getCredentials(proxy.address, {
          provider: 'instance-identity',
          kind: 'gcp',
          audience: 'docker.example.com',
          endpoint: metadata.url,
        });
        expect(creds.username).toBe('_gcp');
        if (project === 'acme-prod') {
          const { stdout } = await inspect(creds.username, creds.password);
          expect(JSON.parse(stdout).Digest).toBe(image.manifestDigest);
        } else {
          expect(await refusal(creds.username, creds.password)).toMatch(/unauthorized|401/i);
        }
      } finally {
        await metadata.close();
      }
    }
  });
});

describe('LDAP logins (real slapd, StartTLS) through the proxy binary', () => {
  it('group platform pulls everything; a user outside it, a wrong password and an injection are refused', async () => {
    const { stdout } = await inspect('alice', 'alice-pw');
    expect(JSON.parse(stdout).Digest).toBe(image.manifestDigest);
    expect(await refusal('carol', 'carol-pw')).toMatch(
      /denied|unauthorized|authentication required/i,
    );
    expect(await refusal('alice', 'wrong')).toMatch(/unauthorized|401/i);
    expect(await refusal('*)(uid=*', 'alice-pw')).toMatch(/unauthorized|401/i);
  });
});

describe('a custom plugin module (the README example) through the proxy binary', () => {
  it('a robot key pulls; a wrong key is refused', async () => {
    const { stdout } = await inspect('robot', 'robot-key-1');
    expect(JSON.parse(stdout).Digest).toBe(image.manifestDigest);
    expect(await refusal('robot', 'robot-key-2')).toMatch(/unauthorized|401/i);
  });
});

describe('EKS nodes logging in with their IAM role (signed GetCallerIdentity)', () => {
  it('pulls with what @org/registry-auth signs on the node; another account is refused', async () => {
    for (const [key, allowed] of [
      [nodeKey, true],
      [strangerKey, false],
    ] as const) {
      const creds = await new RegistryAuth().getCredentials(proxy.address, {
        provider: 'instance-identity',
        kind: 'aws-iam',
        audience: 'docker.example.com',
        stsEndpoint: sts.url,
        credentials: key,
      });
      expect(creds.username).toBe('_aws');
      expect(creds.password).not.toContain(key.secretAccessKey);
      if (allowed) {
        const { stdout } = await inspect(creds.username, creds.password);
        expect(JSON.parse(stdout).Digest).toBe(image.manifestDigest);
      } else {
        expect(await refusal(creds.username, creds.password)).toMatch(/unauthorized|401/i);
      }
    }
    expect(sts.requests.length).toBeGreaterThanOrEqual(2);
  });
});

describe('EC2 nodes logging in with their instance identity document', () => {
  it('pulls with the document @org/registry-auth reads over IMDSv2; a tampered one is refused', async () => {
    const imds = await startImds({
      signIdentityDocument: (doc) =>
        createSign('RSA-SHA256')
          .update(doc)
          .sign(readFileSync(join(dir, 'aws.key')), 'base64'),
    });
    try {
      const creds = await new RegistryAuth().getCredentials(proxy.address, {
        provider: 'instance-identity',
        kind: 'aws',
        endpoint: imds.url,
      });
      expect(creds.username).toBe('_aws');
      const { stdout } = await inspect(creds.username, creds.password);
      expect(JSON.parse(stdout).Digest).toBe(image.manifestDigest);
      const presented = JSON.parse(Buffer.from(creds.password, 'base64url').toString()) as Record<
        string,
        string
      >;
      const tampered = {
        ...presented,
        document: (presented.document ?? '').replace('123456789012', '123456789013'),
      };
      expect(
        await refusal('_aws', Buffer.from(JSON.stringify(tampered)).toString('base64url')),
      ).toMatch(/unauthorized|401/i);
    } finally {
      await imds.close();
    }
  });
});
