import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface OciImage {
  /** `oci:<dir>:<tag>` for skopeo. */
  readonly ref: string;
  readonly manifestDigest: string;
  readonly layerDigests: readonly string[];
}

const sha256 = (data: Buffer | string) =>
  `sha256:${createHash('sha256').update(data).digest('hex')}`;

/**
 * Writes a single-platform OCI image layout: each layer a gzipped tar (made by the real `tar`
 * and `gzip -n`, so the bytes are reproducible) of the given files, a config whose diff_ids are
 * the uncompressed digests, a manifest, and index.json naming it `tag`. Gzip layers are what
 * registries hold; clients such as skopeo would compress uncompressed ones (and so change the
 * manifest digest) on push.
 */
export function writeOciImage(
  dir: string,
  tag: string,
  layers: ReadonlyArray<Readonly<Record<string, string | Buffer>>>,
): OciImage {
  const blobs = join(dir, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const put = (data: Buffer | string) => {
    const digest = sha256(data);
    writeFileSync(join(blobs, digest.slice(7)), data);
    return { digest, size: Buffer.byteLength(data) };
  };
  const layerDescs = layers.map((files, i) => {
    const root = join(dir, `.layer-${i}`);
    for (const [path, content] of Object.entries(files)) {
      mkdirSync(join(root, path, '..'), { recursive: true });
      writeFileSync(join(root, path), content);
    }
    const tar = join(dir, `.layer-${i}.tar`);
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
      architecture: 'amd64',
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: layerDescs.map((l) => l.diffId) },
    }),
  );
  const manifest = put(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: layerDescs.map(({ mediaType, digest, size }) => ({ mediaType, digest, size })),
    }),
  );
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          annotations: { 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
  return {
    ref: `oci:${dir}:${tag}`,
    manifestDigest: manifest.digest,
    layerDigests: layerDescs.map((l) => l.digest),
  };
}
