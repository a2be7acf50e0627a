import { type OidcIssuer, startOidcIssuer } from '@org/tools/stand-ins';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGcpInstanceIdentityPlugin } from './gcp-instance-identity.js';
import { authenticateLogin } from './login.js';

let google: OidcIssuer;
const now = () => Math.floor(Date.now() / 1000);
/** What a GKE node's metadata server returns for `?audience=docker.example.com&format=full`. */
const nodeToken = (ce: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) =>
  google.sign({
    iss: google.issuer,
    aud: 'docker.example.com',
    azp: '1122334455',
    sub: '1122334455',
    email: '123-compute@developer.gserviceaccount.com',
    iat: now(),
    exp: now() + 3600,
    google: {
      compute_engine: {
        project_id: 'acme-prod',
        project_number: 123456789012,
        zone: 'europe-west1-b',
        instance_id: '4242',
        instance_name: 'gke-prod-pool-1-abcd',
        instance_creation_timestamp: now() - 86_400,
        ...ce,
      },
    },
    ...extra,
  });

beforeAll(async () => {
  google = await startOidcIssuer();
});
afterAll(() => google.close());

const plugin = (extra: Record<string, unknown> = {}) =>
  createGcpInstanceIdentityPlugin({
    name: 'gke',
    audience: 'docker.example.com',
    projectIds: ['acme-prod'],
    zones: ['europe-west1-*'],
    instanceNames: ['gke-prod-*'],
    issuer: google.issuer,
    jwksUri: `${google.issuer}/jwks`,
    ...extra,
  });

describe('the gcp-instance-identity plugin', () => {
  it('accepts an instance token of an allowed project, zone and instance name', async () => {
    expect(
      await authenticateLogin([plugin()], { username: '_gcp', password: nodeToken() }),
    ).toEqual({
      ok: true,
      identity: {
        plugin: 'gke',
        subject: 'acme-prod/gke-prod-pool-1-abcd',
        groups: [],
        claims: expect.objectContaining({
          project_number: '123456789012',
          zone: 'europe-west1-b',
          email: '123-compute@developer.gserviceaccount.com',
        }),
      },
    });
  });

  it('refuses another project, zone or instance, a token without compute_engine, and the wrong audience', async () => {
    for (const token of [
      nodeToken({ project_id: 'evil', project_number: 1 }),
      nodeToken({ zone: 'us-central1-a' }),
      nodeToken({ instance_name: 'dev-box' }),
      nodeToken({}, { google: undefined }),
      nodeToken({}, { aud: 'other.example.com' }),
      nodeToken({}, { exp: now() - 600 }),
    ]) {
      expect((await plugin().authenticate({ username: '_gcp', password: token })).ok).toBe(false);
    }
  });

  it('accepts by project number too, and requires a project allow-list', async () => {
    const byNumber = plugin({ projectIds: undefined, projectNumbers: ['123456789012'] });
    expect((await byNumber.authenticate({ username: '_gcp', password: nodeToken() })).ok).toBe(
      true,
    );
    expect(() =>
      createGcpInstanceIdentityPlugin({ name: 'x', audience: 'docker.example.com' }),
    ).toThrow(/projectIds or projectNumbers/);
  });
});
