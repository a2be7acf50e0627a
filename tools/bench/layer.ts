import { spawn } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { createWriteStream, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';

/** An OCI layout with one large layer, ready for `skopeo copy`. */
export interface LargeImage {
  /** `oci:<dir>:<tag>` for skopeo. */
  readonly ref: string;
  readonly manifestDigest: string;
  /** Digest and size of the layer blob as the registry will serve it. */
  readonly layer: { readonly digest: string; readonly size: number; readonly path: string };
}

const sha256 = (data: string) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** A pass-through stream that hashes and counts what flows through it. */
function tap() {
  const hash = createHash('sha256');
  let bytes = 0;
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  return { stream, result: () => ({ digest: `sha256:${hash.digest('hex')}`, size: bytes }) };
}

/**
 * Writes an OCI image layout whose single layer is a real gzipped tar of one file of `size`
 * random bytes. Random data does not compress, so the gzip stream uses stored (level 0) deflate
 * blocks: valid gzip that every client can unpack, written at disk speed instead of the minute
 * a compressor would spend. It is gzip so that skopeo pushes the blob as it is (an uncompressed
 * layer would be compressed on push). The layer is made with the real `tar` streaming into
 * Node's gzip, hashed on the way (diff_id over the tar, digest over the gzip).
 */
export async function writeLargeImage(dir: string, tag: string, size: number): Promise<LargeImage> {
  const blobs = join(dir, 'blobs', 'sha256');
  const root = join(dir, '.rootfs');
  mkdirSync(blobs, { recursive: true });
  mkdirSync(root, { recursive: true });

  const file = join(root, 'random.bin');
  const out = createWriteStream(file);
  const CHUNK = 8 * 1024 * 1024;
  for (let left = size; left > 0; left -= CHUNK) {
    const part = randomFillSync(Buffer.allocUnsafe(Math.min(left, CHUNK)));
    if (!out.write(part)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) =>
    out.end((err?: Error | null) => (err ? reject(err) : resolve())),
  );

  const tar = spawn(
    'tar',
    [
      '--sort=name',
      '--mtime=@0',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '-cf',
      '-',
      '-C',
      root,
      '.',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const tarExit = new Promise<number | null>((r) => tar.once('close', r));
  const raw = tap();
  const gz = tap();
  const partial = join(blobs, '.partial');
  await pipeline(
    tar.stdout,
    raw.stream,
    createGzip({ level: 0 }),
    gz.stream,
    createWriteStream(partial),
  );
  const code = await tarExit;
  if (code !== 0) throw new Error(`tar exited ${code} while writing the ${size}-byte layer`);
  rmSync(root, { recursive: true, force: true });
  const diffId = raw.result().digest;
  const layer = gz.result();
  const path = join(blobs, layer.digest.slice(7));
  renameSync(partial, path);

  const put = (text: string) => {
    const digest = sha256(text);
    writeFileSync(join(blobs, digest.slice(7)), text);
    return { digest, size: Buffer.byteLength(text) };
  };
  const config = put(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: [diffId] },
    }),
  );
  const manifest = put(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }],
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
  return { ref: `oci:${dir}:${tag}`, manifestDigest: manifest.digest, layer: { ...layer, path } };
}
