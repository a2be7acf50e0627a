export type { ContainerdConfigFacts } from './containerd-config.js';
export { inspectContainerdConfig } from './containerd-config.js';
export type {
  ArgsVariable,
  ArgsVariableName,
  ContainerdInfo,
  DetectOptions,
  Distribution,
  EnvironmentFileInfo,
  KubeletConfigDir,
  KubeletConfigFile,
  KubeletInfo,
  KubeletLayout,
  KubeletUnit,
  OsRelease,
} from './detect.js';
export { ARGS_VARIABLES, detectLayout, UNIT_DIRS } from './detect.js';
export type { HostFileCode, LayoutCode, SystemdBusCode } from './errors.js';
export { HostFileError, KubeletPatchError, LayoutError, SystemdBusError } from './errors.js';
export type { HostText, ResolvedPath } from './host-root.js';
export { HostRoot, MAX_FILE_BYTES } from './host-root.js';
export type { ConfigFormat, KubeletConfigFacts } from './kubelet-config.js';
export { inspectKubeletConfig } from './kubelet-config.js';
export type { KubeletFlags } from './kubelet-flags.js';
export type { KubeletBinary, VersionRunner } from './kubelet-version.js';
export { runKubeletVersion } from './kubelet-version.js';
export type {
  ConnectSystemdOptions,
  JobOptions,
  JobResult,
  SystemdClient,
  WaitActiveOptions,
} from './systemd.js';
export { connectSystemd, unitObjectPath } from './systemd.js';
