export type { ApplyOptions, ApplyOutcome, NodeOptions } from './apply.js';
export { applyToNode, revertNode } from './apply.js';
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
export { EditError } from './edit.js';
export type {
  HostFileCode,
  LayoutCode,
  PlanCode,
  SystemdBusCode,
  TransactionCode,
} from './errors.js';
export {
  HostFileError,
  KubeletPatchError,
  LayoutError,
  PlanError,
  SystemdBusError,
  TransactionError,
} from './errors.js';
export { healthzUrl, KUBELET_HEALTHZ, waitHealthy } from './health.js';
export type { HostBytes, HostText, ResolvedPath } from './host-root.js';
export { HostRoot, MAX_FILE_BYTES } from './host-root.js';
export {
  EXECUTABLE_NAME,
  installDirFor,
  RULES_PATH,
} from './install.js';
export type { ConfigFormat, KubeletConfigFacts } from './kubelet-config.js';
export { inspectKubeletConfig } from './kubelet-config.js';
export type { KubeletFlags } from './kubelet-flags.js';
export type { KubeletBinary, VersionRunner } from './kubelet-version.js';
export { runKubeletVersion } from './kubelet-version.js';
export type { Content, FileChange, LargeContent, PatchMode, Plan } from './plan.js';
export { largeContentOf, renderDiff } from './plan.js';
export type { ContainerdMirrorOptions } from './plan-containerd-mirror.js';
export { DEFAULT_CONFIG_PATH, mirrorUrl, planContainerdMirror } from './plan-containerd-mirror.js';
export type { CredentialProviderOptions } from './plan-credential-provider.js';
export {
  CREDENTIAL_PROVIDER_CONFIG,
  CREDENTIAL_PROVIDER_DROP_IN,
  planCredentialProvider,
} from './plan-credential-provider.js';
export {
  CONFIG_DROP_IN,
  endpointSocket,
  GUARD_DROP_IN,
  planImageService,
  STATE_DIR,
  UNIT_DROP_IN,
} from './plan-image-service.js';
export type { InstallServiceOptions, ServiceUnitPaths } from './plan-install-service.js';
export {
  backendEndpointOf,
  planInstallService,
  SERVICE_RUNTIME_DIR,
  SERVICE_UNIT,
  SERVICE_UNIT_PATH,
  WANTS_DROP_IN,
} from './plan-install-service.js';
export type {
  ConnectSystemdOptions,
  JobOptions,
  JobResult,
  SystemdClient,
  WaitActiveOptions,
} from './systemd.js';
export { connectSystemd, systemdAddressFor, unitObjectPath } from './systemd.js';
export type {
  StateRecord,
  SystemdControl,
  TransactionResult,
} from './transaction.js';
export { readState } from './transaction.js';
