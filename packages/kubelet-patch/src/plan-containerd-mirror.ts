import { isDeepStrictEqual } from 'node:util';
import { parse } from 'smol-toml';
import { REGISTRY_PLUGIN } from './containerd-config.js';
import type { KubeletLayout } from './detect.js';
import { PlanError } from './errors.js';
import type { HostRoot } from './host-root.js';
import { type FileChange, type Plan, plan } from './plan.js';

/** Where containerd's hosts.toml tree goes when the patcher sets `config_path` itself. */
export const DEFAULT_CONFIG_PATH = '/etc/containerd/certs.d';

/** A registry host as containerd names its hosts.toml directory: `host` or `host:port`. */
const REGISTRY =
  /^(?=.{1,253}(:\d{1,5})?$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$/;

/** Options of {@link planContainerdMirror}. */
export interface ContainerdMirrorOptions {
  /** The proxy's URL, `https://registry-proxy.example.com` (http only for a loopback or test). */
  readonly mirror: string;
  /** Registries whose pulls go through the proxy: `gcr.io`, `docker.io`, `myacr.azurecr.io`. */
  readonly registries: readonly string[];
  /** Set containerd's `config_path` when it has none (then containerd is restarted). */
  readonly setConfigPath?: boolean;
}

/** Checks the mirror URL: http(s), a host, no credentials, query or fragment. */
export function mirrorUrl(input: string): URL {
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    throw new PlanError(
      'BAD_OPTION',
      `--mirror ${JSON.stringify(input.slice(0, 120))} is not a URL`,
    );
  }
  if (
    !['https:', 'http:'].includes(url.protocol) ||
    url.username !== '' ||
    url.password !== '' ||
    url.search !== '' ||
    url.hash !== '' ||
    /["\\\n\r]/.test(input)
  )
    throw new PlanError(
      'BAD_OPTION',
      '--mirror must be an http(s) URL without credentials, query or fragment, like https://registry-proxy.example.com',
    );
  return url;
}

/** The upstream a registry name stands for: Docker Hub's name is not its API host. */
function upstreamServer(registry: string): string {
  return registry === 'docker.io' ? 'https://registry-1.docker.io' : `https://${registry}`;
}

/**
 * Plans `apply --mode containerd-mirror`: one `hosts.toml` per registry under containerd's
 * `config_path`, sending pulls and resolves to the proxy (containerd adds `?ns=<registry>` to
 * every request it sends to a mirror, which the proxy routes on) with the registry itself as the
 * fallback `server`. hosts.toml files are read per pull, so with `config_path` already set
 * nothing restarts. Without it the plan is refused unless `setConfigPath`, which adds
 * `config_path = "/etc/containerd/certs.d"` to config.toml and restarts containerd.
 *
 * An existing hosts.toml the patcher did not write is never overwritten (the transaction
 * refuses it as `NOT_OURS`).
 */
export function planContainerdMirror(
  layout: KubeletLayout,
  host: HostRoot,
  options: ContainerdMirrorOptions,
): Plan {
  const mirror = mirrorUrl(options.mirror);
  if (options.registries.length === 0)
    throw new PlanError(
      'BAD_OPTION',
      '--registries needs at least one registry, like gcr.io,docker.io',
    );
  for (const r of options.registries)
    if (!REGISTRY.test(r) || r === mirror.host)
      throw new PlanError(
        'BAD_OPTION',
        `--registries: ${JSON.stringify(r.slice(0, 80))} is not a registry host (lowercase host[:port], not the mirror itself)`,
      );
  const ctr = layout.containerd;
  if (!ctr.exists)
    throw new PlanError(
      'CONFIG_INVALID',
      `${ctr.path} does not exist: containerd's config is not where the patcher looks; nothing was changed`,
    );
  if (!ctr.parses)
    throw new PlanError('CONFIG_INVALID', `${ctr.path}: ${ctr.error}; nothing was changed`);
  const notes: string[] = [];
  const changes: FileChange[] = [];
  let root = ctr.registryConfigPath?.split(':')[0] ?? null;
  let restart: string[] = [];
  if (root === null) {
    if (!options.setConfigPath)
      throw new PlanError(
        'UNSAFE_EDIT',
        `${ctr.path} sets no registry config_path, so containerd would ignore hosts.toml files; pass --set-config-path to add config_path = "${DEFAULT_CONFIG_PATH}" and restart containerd (the same safety rules apply); nothing was changed`,
      );
    root = DEFAULT_CONFIG_PATH;
    changes.push(configPathChange(host, ctr.path, ctr.version ?? 1));
    restart = ['containerd.service'];
    notes.push(`${ctr.path}: adding config_path = "${root}"; containerd restarts once`);
  } else {
    notes.push(`containerd reads hosts.toml from ${root} at every pull: no restart`);
  }
  if (!root.startsWith('/') || root.includes('..'))
    throw new PlanError(
      'CONFIG_INVALID',
      `config_path ${JSON.stringify(root)} is not an absolute path`,
    );
  for (const registry of options.registries) {
    const path = `${root.replace(/\/+$/, '')}/${registry}/hosts.toml`;
    const text = [
      '# Written by node-patcher (docker-registry-proxy): pulls of this registry go through the',
      '# registry proxy; containerd falls back to the registry itself when the proxy fails.',
      '# `node-patcher revert` removes this file.',
      `server = ${JSON.stringify(upstreamServer(registry))}`,
      '',
      `[host.${JSON.stringify(mirror.href.replace(/\/$/, ''))}]`,
      '  capabilities = ["pull", "resolve"]',
      '',
    ].join('\n');
    changes.push({
      path,
      before: host.readBytes(path)?.bytes ?? null,
      after: Buffer.from(text),
      mode: 0o644,
      why: `pulls of ${registry} go to ${mirror.origin}`,
      owned: true,
    });
  }
  return plan({ mode: 'containerd-mirror', changes, reload: false, restart, notes });
}

/** config.toml with the CRI registry `config_path` set, checked by parsing both versions. */
function configPathChange(host: HostRoot, path: string, version: number): FileChange {
  const file = host.readBytes(path);
  if (file === null) throw new PlanError('CONFIG_INVALID', `${path} vanished`);
  const text = file.bytes.toString('utf8');
  // The registry table's plugin name, as a TOML key: quoted where it has dots.
  const pluginName = REGISTRY_PLUGIN[version] ?? 'cri';
  const plugin = pluginName.includes('.') ? JSON.stringify(pluginName) : pluginName;
  const escaped = pluginName.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const header = new RegExp(
    `^[ \\t]*\\[plugins\\.(?:"${escaped}"|'${escaped}'|${escaped})\\.registry\\][ \\t]*$`,
    'm',
  );
  const line = `config_path = ${JSON.stringify(DEFAULT_CONFIG_PATH)}`;
  const m = header.exec(text);
  let out: string;
  if (m) {
    const at = m.index + m[0].length;
    const indent = /^[ \t]*/.exec(m[0])?.[0] ?? '';
    // An empty `config_path = ""` right in the table is replaced; else the key is added first.
    const rest = text.slice(at);
    const empty = /^\n([ \t]*)config_path[ \t]*=[ \t]*(""|'')[ \t]*(?=\n|$)/.exec(rest);
    out = empty
      ? `${text.slice(0, at)}\n${empty[1]}${line}${rest.slice(empty[0].length)}`
      : `${text.slice(0, at)}\n${indent}  ${line}${rest}`;
  } else {
    const body = text.endsWith('\n') ? text : `${text}\n`;
    out = `${body}\n[plugins.${plugin}.registry]\n  ${line}\n`;
  }
  let before: Record<string, unknown>;
  let after: Record<string, unknown>;
  try {
    before = parse(text) as Record<string, unknown>;
    after = parse(out) as Record<string, unknown>;
  } catch (err) {
    throw new PlanError(
      'UNSAFE_EDIT',
      `${path}: adding config_path would not parse (${(err as Error).message.split('\n')[0]}); nothing was changed`,
    );
  }
  const want = structuredClone(before);
  const plugins = (want.plugins ?? {}) as Record<string, Record<string, unknown>>;
  want.plugins = plugins;
  const table = plugins[pluginName] ?? {};
  plugins[pluginName] = table;
  const reg = (table.registry ?? {}) as Record<string, unknown>;
  table.registry = reg;
  const configs = Object.values((reg.configs ?? {}) as Record<string, Record<string, unknown>>);
  if ('mirrors' in reg || configs.some((c) => c !== null && typeof c === 'object' && 'tls' in c))
    throw new PlanError(
      'UNSAFE_EDIT',
      `${path} uses the deprecated registry.mirrors or registry.configs.*.tls, which containerd refuses together with config_path; move them to hosts.toml first; nothing was changed`,
    );
  reg.config_path = DEFAULT_CONFIG_PATH;
  if (!isDeepStrictEqual(JSON.parse(JSON.stringify(after)), JSON.parse(JSON.stringify(want))))
    throw new PlanError(
      'UNSAFE_EDIT',
      `${path}: adding config_path would change more than that key; nothing was changed`,
    );
  return {
    path: file.hostPath,
    before: file.bytes,
    after: Buffer.from(out),
    mode: file.mode,
    why: 'containerd reads hosts.toml files from config_path',
  };
}
