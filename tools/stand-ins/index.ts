export type { EcrCall, EcrFault, EcrStandIn } from './aws-ecr.js';
export { startEcr } from './aws-ecr.js';
export type { ImdsStandIn } from './aws-metadata.js';
export { startImds, startPodIdentityAgent } from './aws-metadata.js';
export { RedirectToStandIn } from './aws-redirect.js';
export { startSts, startStsCallerIdentity } from './aws-sts.js';
export type { AcrFault, AcrStandIn, EntraStandIn } from './azure.js';
export { fetchVia, startAcr, startAzureImds, startEntra } from './azure.js';
export type { Certificate, CertificateOptions } from './certs.js';
export { makeCertificate } from './certs.js';
export { criCall, imageSpecRequest, protoMessage } from './cri.js';
export type { CommandOptions, CommandResult, Containerd, Dockerd } from './engines.js';
export { startContainerd, startDockerd, writeGlibcRootfs, writeNodeRootfs } from './engines.js';
export type { FaultAction, FaultProxy, FaultRule, FaultSeen } from './fault-proxy.js';
export { startFaultProxy } from './fault-proxy.js';
export type { GceMetadataOptions } from './gce-metadata.js';
export { startGceMetadata } from './gce-metadata.js';
export { startGoogleSts } from './google-sts.js';
export type { Layers, OciImage, OciIndexImage, PushedImage } from './oci-image.js';
export { pushImage, writeOciImage, writeOciIndex } from './oci-image.js';
export type { OidcIssuer } from './oidc.js';
export { startOidcIssuer } from './oidc.js';
export type { DockerRegistry } from './registry.js';
export { freePort, startDockerRegistry } from './registry.js';
export type {
  RegistryTokenServer,
  RegistryTokenServerOptions,
  TokenFetch,
} from './registry-token.js';
export { startRegistryTokenServer } from './registry-token.js';
export type { Handler, Recorded, StandIn } from './server.js';
export { json, startStandIn, unsignedJwt } from './server.js';
export type { AwsKey, SigV4Check } from './sigv4.js';
export { verifySigV4 } from './sigv4.js';
export type { Slapd, SlapdUser } from './slapd.js';
export { startSlapd } from './slapd.js';
export type {
  SystemdCall,
  SystemdStandIn,
  SystemdStandInOptions,
  UnitOutcome,
} from './systemd.js';
export { startSystemdBus, startSystemdPrivateSocket, systemdUnitPath } from './systemd.js';
