import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { DockerRegistry } from './registry.js';

export interface OciImage {
  /** `oci:<dir>:<tag>` for skopeo. */
  readonly ref: string;
  readonly manifestDigest: string;
  readonly layerDigests: readonly string[];
}

const sha256 = (data: Buffer | string) =>
  `sha256:${createHash('sha256').update(data).digest('hex')}`;

export type Layers = ReadonlyArray<Readonly<Record<string, string | Buffer>>>;

interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
}

/** Writes one platform's layers, config and manifest as blobs; returns the manifest. */
function writeManifest(
  dir: string,
  layers: Layers,
  platform: { os: string; architecture: string },
): { manifest: Descriptor; layerDigests: string[] } {
  const blobs = join(dir, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const put = (data: Buffer | string) => {
    const digest = sha256(data);
    writeFileSync(join(blobs, digest.slice(7)), data);
    return { digest, size: Buffer.byteLength(data) };
  };
  const layerDescs = layers.map((files) => {
    const root = mkdtempSync(join(dir, '.layer-'));
    for (const [path, content] of Object.entries(files)) {
      mkdirSync(join(root, path, '..'), { recursive: true });
      writeFileSync(join(root, path), content);
    }
    const tar = `${root}.tar`;
    execFileSync('tar', [
      '--sort=name',
      '--mtime=@0',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '-cf',
      tar,
      '-C',
      root,
      '.',
    ]);
    const raw = readFileSync(tar);
    execFileSync('gzip', ['-n', '-k', '-f', tar]);
    const gz = readFileSync(`${tar}.gz`);
    return {
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      diffId: sha256(raw),
      ...put(gz),
    };
  });
  const config = put(
    JSON.stringify({
      ...platform,
      config: {},
      rootfs: { type: 'layers', diff_ids: layerDescs.map((l) => l.diffId) },
    }),
  );
  const manifest = put(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: layerDescs.map(({ mediaType, digest, size }) => ({ mediaType, digest, size })),
    }),
  );
  return {
    manifest: { mediaType: MANIFEST, ...manifest },
    layerDigests: layerDescs.map((l) => l.digest),
  };
}

/** Writes `oci-layout` and index.json naming `top` as `tag`. */
function writeLayout(dir: string, tag: string, top: Descriptor): void {
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ ...top, annotations: { 'org.opencontainers.image.ref.name': tag } }],
    }),
  );
}

const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const INDEX = 'application/vnd.oci.image.index.v1+json';

/**
 * Writes a single-platform (linux/amd64) OCI image layout: each layer a gzipped tar (made by the
 * real `tar` and `gzip -n`, so the bytes are reproducible) of the given files, a config whose
 * diff_ids are the uncompressed digests, a manifest, and index.json naming it `tag`. Gzip layers
 * are what registries hold; clients such as skopeo would compress uncompressed ones (and so
 * change the manifest digest) on push.
 */
export function writeOciImage(dir: string, tag: string, layers: Layers): OciImage {
  const { manifest, layerDigests } = writeManifest(dir, layers, {
    os: 'linux',
    architecture: 'amd64',
  });
  writeLayout(dir, tag, manifest);
  return { ref: `oci:${dir}:${tag}`, manifestDigest: manifest.digest, layerDigests };
}

export interface OciIndexImage {
  /** `oci:<dir>:<tag>` for skopeo (`skopeo copy --all` pushes every platform). */
  readonly ref: string;
  /** Digest of the image index. */
  readonly indexDigest: string;
  readonly platforms: ReadonlyArray<{
    readonly os: string;
    readonly architecture: string;
    readonly manifestDigest: string;
    readonly layerDigests: readonly string[];
  }>;
}

/**
 * Writes a multi-platform image: one manifest per platform (as writeOciImage) and an OCI image
 * index listing them with their platforms, named `tag`.
 */
export function writeOciIndex(
  dir: string,
  tag: string,
  platforms: ReadonlyArray<{ os: string; architecture: string; layers: Layers }>,
): OciIndexImage {
  const written = platforms.map(({ os, architecture, layers }) => ({
    os,
    architecture,
    ...writeManifest(dir, layers, { os, architecture }),
  }));
  const body = JSON.stringify({
    schemaVersion: 2,
    mediaType: INDEX,
    manifests: written.map(({ os, architecture, manifest }) => ({
      ...manifest,
      platform: { os, architecture },
    })),
  });
  const digest = sha256(body);
  writeFileSync(join(dir, 'blobs', 'sha256', digest.slice(7)), body);
  writeLayout(dir, tag, { mediaType: INDEX, digest, size: Buffer.byteLength(body) });
  return {
    ref: `oci:${dir}:${tag}`,
    indexDigest: digest,
    platforms: written.map(({ os, architecture, manifest, layerDigests }) => ({
      os,
      architecture,
      manifestDigest: manifest.digest,
      layerDigests,
    })),
  };
}

/** An image {@link pushImage} wrote and pushed: the layout, and where it now is. */
export interface PushedImage extends OciImage {
  /** `<registry host>/<repository>:<tag>`, no scheme. */
  readonly pushed: string;
  /** The OCI layout directory (its `blobs/sha256/<hex>` are the image's bytes). */
  readonly layout: string;
}

/**
 * Writes an OCI image of `layers` under `dir` and pushes it with the real skopeo to
 * `<registry>/<repository>:<tag>` (with `credentials` when the registry wants them).
 */
export async function pushImage(
  registry: DockerRegistry,
  dir: string,
  repository: string,
  layers: Layers,
  options: { tag?: string; credentials?: { user: string; password: string } } = {},
): Promise<PushedImage> {
  const tag = options.tag ?? 'v1';
  const layout = join(dir, `${repository.replaceAll('/', '-')}-${tag}`);
  const built = writeOciImage(layout, tag, layers);
  const pushed = `${registry.host}/${repository}:${tag}`;
  await promisify(execFile)('skopeo', [
    'copy',
    '--dest-tls-verify=false',
    ...(options.credentials
      ? ['--dest-creds', `${options.credentials.user}:${options.credentials.password}`]
      : []),
    built.ref,
    `docker://${pushed}`,
  ]);
  return { ...built, pushed, layout };
}
