/**
 * The systemd unit that runs \`kubelet-image-service serve\` on a node, ahead of kubelet: the
 * text of \`apps/kubelet-image-service/deploy/kubelet-image-service.service\` (below its comment
 * header) for the given host paths. \`node-patcher apply --install-service\` writes it with the
 * paths the node needs (GKE COS: the executable in /home/kubernetes/bin).
 */

/** The host paths the unit names. */
export interface HostServiceUnitPaths {
  /** The kubelet-image-service executable. */
  readonly executable: string;
  /** The rules file (\`--config\`). */
  readonly rules: string;
  /** \`unix:///PATH\` served to kubelet. */
  readonly listen: string;
  /** \`unix:///PATH\` of the node's CRI runtime every call is forwarded to. */
  readonly backendEndpoint: string;
}

/** The paths of the shipped unit file. */
export const HOST_SERVICE_DEFAULTS: HostServiceUnitPaths = {
  executable: '/opt/kubelet-image-service/bin/kubelet-image-service',
  rules: '/etc/kubelet-image-service/rules.yaml',
  listen: 'unix:///run/kubelet-image-service/cri.sock',
  backendEndpoint: 'unix:///run/containerd/containerd.sock',
};

/**
 * The unit's text for these paths. Each must be plain (letters, digits, \`._/:-\`): they are
 * written into ExecStart= lines unquoted.
 */
export function hostServiceUnit(paths: HostServiceUnitPaths): string {
  for (const [key, value] of Object.entries(paths))
    if (!/^(?:unix:\/\/)?\/[A-Za-z0-9._/-]+$/.test(value))
      throw new TypeError(
        `hostServiceUnit: ${key} must be a plain absolute path, got ${JSON.stringify(value)}`,
      );
  return `[Unit]
Description=kubelet-image-service: credentials for kubelet's image pulls (CRI ImageService)
# kubelet probes its image endpoint at start-up and does not start without an answer
Before=kubelet.service
# the runtime every call is forwarded to (units that do not exist are ignored)
After=containerd.service crio.service docker.service

[Service]
Type=exec
ExecStart=${paths.executable} serve \\
  --config ${paths.rules} \\
  --listen ${paths.listen} \\
  --backend cri --backend-endpoint ${paths.backendEndpoint}
# started means answering: the unit is up only once the socket answers its health check
# SERVING, which needs the runtime to answer too, so kubelet (ordered after) never meets a
# socket that is not ready
ExecStartPost=${paths.executable} probe \\
  --listen ${paths.listen} --timeout 60
TimeoutStartSec=90
Restart=always
RestartSec=2
# SIGTERM: stop accepting calls, let running ones (a pull) finish for up to 10 s
TimeoutStopSec=20
RuntimeDirectory=kubelet-image-service
RuntimeDirectoryMode=0750
# Root, because the runtime's socket is root's; no capabilities, and little else to touch
CapabilityBoundingSet=
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallArchitectures=native
# not MemoryDenyWriteExecute: V8 compiles JavaScript to machine code at run time

[Install]
WantedBy=multi-user.target
`;
}
