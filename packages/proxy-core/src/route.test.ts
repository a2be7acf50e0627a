import { describe, expect, it } from 'vitest';
import { resolveUpstreams } from './config.js';
import { RegistryError } from './errors.js';
import { parseV2Path, route } from './route.js';

const D = `sha256:${'a'.repeat(64)}`;

describe('parseV2Path', () => {
  it.each([
    ['/v2/', { kind: 'ping' }],
    ['/v2', { kind: 'ping' }],
    ['/v2/_catalog', { kind: 'catalog' }],
    [
      '/v2/team/app/manifests/v1',
      { kind: 'manifest', name: 'team/app', reference: 'v1', digest: false },
    ],
    [
      `/v2/team/app/manifests/${D}`,
      { kind: 'manifest', name: 'team/app', reference: D, digest: true },
    ],
    [`/v2/a/b/c/blobs/${D}`, { kind: 'blob', name: 'a/b/c', digest: D }],
    ['/v2/team/app/blobs/uploads/', { kind: 'upload', name: 'team/app' }],
    ['/v2/team/app/blobs/uploads/some-uuid', { kind: 'upload', name: 'team/app' }],
    ['/v2/team/app/tags/list', { kind: 'tags', name: 'team/app' }],
    [`/v2/team/app/referrers/${D}`, { kind: 'referrers', name: 'team/app', digest: D }],
    [
      '/v2/manifests/manifests/manifests/v1',
      { kind: 'manifest', name: 'manifests/manifests', reference: 'v1', digest: false },
    ],
  ])('%s', (path, expected) => {
    expect(parseV2Path(path)).toEqual(expected);
  });

  it.each([
    ['/v2/team/../secret/manifests/v1', 400, 'NAME_INVALID'],
    ['/v2/team/%2e%2e/secret/manifests/v1', 400, 'NAME_INVALID'],
    ['/v2/team%2Fapp/manifests/v1', 400, 'NAME_INVALID'],
    ['/v2/team%252Fapp/manifests/v1', 400, 'NAME_INVALID'],
    ['/v2/Team/App/manifests/v1', 400, 'NAME_INVALID'],
    ['/v2/team//app/manifests/v1', 400, 'NAME_INVALID'],
    [`/v2/${'a'.repeat(256)}/manifests/v1`, 400, 'NAME_INVALID'],
    ['/v2/team/app/manifests/-bad', 400, 'MANIFEST_INVALID'],
    ['/v2/team/app/manifests/sha256:abc', 400, 'DIGEST_INVALID'],
    ['/v2/team/app/blobs/not-a-digest', 400, 'DIGEST_INVALID'],
    ['/v2/team/app/blobs/sha256:../../x', 404, 'NAME_UNKNOWN'],
    ['/v2/team/app/whatever', 404, 'NAME_UNKNOWN'],
    ['/v3/team/app/manifests/v1', 404, 'NAME_UNKNOWN'],
  ])('refuses %s with %d %s', (path, status, code) => {
    let caught: unknown;
    try {
      parseV2Path(path);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(RegistryError);
    expect(caught).toMatchObject({ status, code });
  });
});

describe('route', () => {
  const upstreams = resolveUpstreams({
    upstreams: [
      { name: 'hub', prefix: '', url: 'https://registry-1.docker.io', dockerHubLibrary: true },
      {
        name: 'gcr',
        prefix: 'gcr',
        url: 'https://europe-docker.pkg.dev',
        repositoryPrefix: 'acme-prod/images',
      },
      {
        name: 'gcr-team',
        prefix: 'gcr/team',
        url: 'https://gcr.io',
        repositoryPrefix: 'team-project',
      },
    ],
  });

  it.each([
    ['alpine', 'hub', 'library/alpine'],
    ['bitnami/redis', 'hub', 'bitnami/redis'],
    ['gcr/app', 'gcr', 'acme-prod/images/app'],
    ['gcr', 'gcr', 'acme-prod/images'],
    ['gcr/team/app', 'gcr-team', 'team-project/app'],
    ['gcrx/app', 'hub', 'gcrx/app'],
  ])('%s -> %s %s (longest prefix wins)', (name, upstream, upstreamName) => {
    const r = route(upstreams, name);
    expect([r.upstream.name, r.upstreamName]).toEqual([upstream, upstreamName]);
  });

  it('says NAME_UNKNOWN when no prefix covers the name', () => {
    const only = resolveUpstreams({
      upstreams: [{ name: 'gcr', prefix: 'gcr', url: 'https://gcr.io' }],
    });
    expect(() => route(only, 'other/app')).toThrow(
      expect.objectContaining({ code: 'NAME_UNKNOWN', status: 404 }),
    );
  });

  it.each([
    [{ upstreams: [] }, /at least one upstream/],
    [{ upstreams: [{ name: 'a', prefix: 'Bad', url: 'http://x' }] }, /upstreams\[0\]\.prefix/],
    [{ upstreams: [{ name: 'a', prefix: '', url: 'ftp://x' }] }, /upstreams\[0\]\.url/],
    [{ upstreams: [{ name: 'a', prefix: '', url: 'https://user:pw@x' }] }, /credentials/],
    [
      {
        upstreams: [
          { name: 'a', prefix: '', url: 'http://x' },
          { name: 'b', prefix: '', url: 'http://y' },
        ],
      },
      /used twice/,
    ],
    [
      { upstreams: [{ name: 'a', prefix: '', url: 'http://x' }], manifestMaxBytes: 0 },
      /manifestMaxBytes/,
    ],
    [
      {
        upstreams: [
          { name: 'a', prefix: 'a', url: 'http://x', catalog: true },
          { name: 'b', prefix: 'b', url: 'http://y', catalog: true },
        ],
      },
      /catalog can be served by one upstream only/,
    ],
  ])('refuses bad options %#', (options, message) => {
    expect(() => resolveUpstreams(options as never)).toThrow(message);
  });
});

describe('route by Host and containerd ns', () => {
  const upstreams = resolveUpstreams({
    upstreams: [
      { name: 'default', prefix: '', url: 'https://registry-1.docker.io', dockerHubLibrary: true },
      {
        name: 'vanity-gcr',
        prefix: '',
        url: 'https://europe-docker.pkg.dev',
        repositoryPrefix: 'acme/images',
        hosts: ['gcr.example.com'],
      },
      { name: 'mirror-gcr', prefix: '', url: 'https://gcr.io', ns: ['gcr.io'] },
      {
        name: 'mirror-quay',
        prefix: '',
        url: 'https://quay.io',
        ns: ['quay.io'],
        hosts: ['mirror.example.com:5000'],
      },
    ],
  });

  it.each([
    [{ host: 'docker.example.com' }, 'alpine', 'default', 'library/alpine'],
    [{ host: 'gcr.example.com' }, 'app', 'vanity-gcr', 'acme/images/app'],
    [{ host: 'GCR.example.com:443' }, 'app', 'vanity-gcr', 'acme/images/app'],
    [{ host: 'proxy:5000', ns: 'gcr.io' }, 'my-project/app', 'mirror-gcr', 'my-project/app'],
    [{ host: 'mirror.example.com:5000', ns: 'quay.io' }, 'org/app', 'mirror-quay', 'org/app'],
    [{ host: 'other:5000', ns: 'quay.io' }, 'org/app', 'default', 'org/app'],
    [{ host: 'proxy:5000', ns: 'docker.io' }, 'nginx', 'default', 'library/nginx'],
  ])('%j %s -> %s %s', (context, name, upstream, upstreamName) => {
    const r = route(upstreams, name, context);
    expect([r.upstream.name, r.upstreamName]).toEqual([upstream, upstreamName]);
  });

  it('refuses bad hosts and ns lists', () => {
    expect(() =>
      resolveUpstreams({ upstreams: [{ name: 'a', prefix: '', url: 'http://x', hosts: [] }] }),
    ).toThrow(/hosts/);
    expect(() =>
      resolveUpstreams({ upstreams: [{ name: 'a', prefix: '', url: 'http://x', ns: ['a/b'] }] }),
    ).toThrow(/ns/);
  });
});
