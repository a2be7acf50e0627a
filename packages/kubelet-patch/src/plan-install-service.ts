import { posix } from 'node:path';
import type { KubeletLayout } from './detect.js';
import { MARKER } from './edit.js';
import { PlanError } from './errors.js';
import type { HostRoot } from './host-root.js';
import {
  EXECUTABLE_NAME,
  executableChange,
  installDirFor,
  RULES_PATH,
  refuseNoexec,
  rulesChange,
} from './install.js';
import type { LargeContent, Plan } from './plan.js';
import { plan } from './plan.js';
import { endpointSocket } from './plan-image-service.js';

/** The image service's unit on the host. */
export const SERVICE_UNIT = 'kubelet-image-service.service';

/**
 * The service's runtime directory (its unit's `RuntimeDirectory=`): the only place under `/run`
 * it may create its socket in, since the unit mounts the rest of the system read-only.
 */
export const SERVICE_RUNTIME_DIR = '/run/kubelet-image-service';

/** Where its unit file goes: the local-administrator unit directory. */
export const SERVICE_UNIT_PATH = `/etc/systemd/system/${SERVICE_UNIT}`;

/**
 * The kubelet drop-in that makes kubelet pull the service in, ordered before it, at every start
 * (a boot too): kubelet `Wants=` it rather than the service being enabled on its own, so the
 * service runs exactly as long as kubelet is switched to it. `Wants=`, not `Requires=`: when the
 * service fails, kubelet still starts, and the guard points it back at its runtime.
 */
export const WANTS_DROP_IN = '/etc/systemd/system/kubelet.service.d/95-kubelet-image-service.conf';

/** The host paths the service's unit file names. */
export interface ServiceUnitPaths {
  /** The executable. */
  readonly executable: string;
  /** Its rules file (`--config`). */
  readonly rules: string;
  /** `unix:///PATH` it serves on: the endpoint kubelet is pointed at. */
  readonly listen: string;
  /** `unix:///PATH` of the runtime every call is forwarded to. */
  readonly backendEndpoint: string;
}

/** Options of {@link planInstallService}. */
export interface InstallServiceOptions {
  /** The kubelet-image-service executable to install (the single executable of 5/7). */
  readonly executable: LargeContent;
  /** The rules file's bytes. */
  readonly rules: Buffer;
  /** `unix:///PATH` the service listens on and kubelet will be pointed at. */
  readonly endpoint: string;
  /** Renders the unit file (`@org/cri-image-service`'s `hostServiceUnit`). */
  readonly unit: (paths: ServiceUnitPaths) => string;
  /** `/proc/self/mountinfo` text, for tests; default: read it. */
  readonly mountinfo?: string;
}

const DEFAULT_RUNTIME = 'unix:///run/containerd/containerd.sock';

/**
 * The runtime the service forwards to: whatever kubelet uses for images now (a separate image
 * endpoint that is not ours, else the container runtime endpoint, from the flags before the
 * config files, as kubelet reads them), containerd's default socket when nothing names one.
 */
export function backendEndpointOf(layout: KubeletLayout, ours: string): string {
  const files = [layout.config, ...(layout.configDir?.files ?? [])].filter(
    (f) => f?.exists === true,
  );
  const last = (key: 'imageServiceEndpoint' | 'containerRuntimeEndpoint') =>
    files.reduce<string | null>((v, f) => f?.[key] ?? v, null);
  const image = layout.kubelet.flags.imageServiceEndpoint ?? last('imageServiceEndpoint');
  if (image !== null && image !== '' && image !== ours) return image;
  return (
    layout.kubelet.flags.containerRuntimeEndpoint ??
    last('containerRuntimeEndpoint') ??
    DEFAULT_RUNTIME
  );
}

/**
 * Plans `apply --mode image-service --install-service FILE`, the step before kubelet is
 * switched: the executable into a persistent, exec-capable directory, its rules, its unit
 * (`Before=kubelet.service`), and kubelet's `Wants=` drop-in; then daemon-reload and a
 * (re)start of the service, which a rollback or `revert` stops again. Kubelet is not
 * restarted by this plan.
 */
export function planInstallService(
  layout: KubeletLayout,
  host: HostRoot,
  options: InstallServiceOptions,
): Plan {
  const listen = options.endpoint;
  const socket = endpointSocket(listen);
  if (posix.dirname(socket) !== SERVICE_RUNTIME_DIR)
    throw new PlanError(
      'BAD_OPTION',
      `with --install-service the endpoint must be a socket in ${SERVICE_RUNTIME_DIR}/ (the service's runtime directory), got ${listen}`,
    );
  const backendEndpoint = backendEndpointOf(layout, listen);
  try {
    endpointSocket(backendEndpoint);
  } catch {
    throw new PlanError(
      'UNSAFE_EDIT',
      `kubelet's runtime endpoint ${JSON.stringify(backendEndpoint.slice(0, 120))} is not a plain unix:///PATH; nothing was changed`,
    );
  }
  const dir = installDirFor(layout);
  refuseNoexec(host, dir, options.mountinfo);
  const executable = posix.join(dir, EXECUTABLE_NAME);
  const unit = options.unit({ executable, rules: RULES_PATH, listen, backendEndpoint });
  const wants = `${MARKER}\n# kubelet pulls in the image service it points at, and starts after it.\n[Unit]\nWants=${SERVICE_UNIT}\nAfter=${SERVICE_UNIT}\n`;
  return plan({
    mode: 'image-service',
    changes: [
      executableChange(
        host,
        executable,
        options.executable,
        'the kubelet-image-service executable',
      ),
      rulesChange(host, options.rules),
      {
        path: SERVICE_UNIT_PATH,
        before: host.readBytes(SERVICE_UNIT_PATH)?.bytes ?? null,
        after: Buffer.from(unit),
        mode: 0o644,
        why: `the ${SERVICE_UNIT} unit, serving ${listen}`,
        owned: true,
      },
      {
        path: WANTS_DROP_IN,
        before: host.readBytes(WANTS_DROP_IN)?.bytes ?? null,
        after: Buffer.from(wants),
        mode: 0o644,
        why: `kubelet starts ${SERVICE_UNIT} before itself`,
        owned: true,
      },
    ],
    reload: true,
    restart: [SERVICE_UNIT],
    installed: [SERVICE_UNIT],
    notes: [
      `installing kubelet-image-service at ${executable} (forwarding to ${backendEndpoint}), started before kubelet is switched to ${listen}`,
    ],
  });
}
