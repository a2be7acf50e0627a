export type { AwsSourceOptions } from './aws.js';
export { createAwsSource } from './aws.js';
export type { AwsIamLoginOptions, AwsIamLoginPassword } from './aws-iam-login.js';
export {
  AWS_IAM_SERVER_ID_HEADER,
  GET_CALLER_IDENTITY_BODY,
  signAwsIamLogin,
} from './aws-iam-login.js';
export type { AzureSourceOptions } from './azure.js';
export { ACR_REFRESH_TOKEN_USERNAME, createAzureSource } from './azure.js';
export type { CredentialCacheOptions, CredentialLabels, CredentialMetrics } from './cache.js';
export { CredentialCache, defaultRefreshMargin } from './cache.js';
export type { DockerConfig, DockerConfigSourceOptions } from './docker-config.js';
export { createDockerConfigSource } from './docker-config.js';
export type { CredentialsErrorCode } from './errors.js';
export { CredentialsError } from './errors.js';
export type { GcpSourceOptions } from './gcp.js';
export { createGcpSource, GCP_REGISTRY_SCOPE } from './gcp.js';
export { identityOf } from './identity.js';
export type { AwsInstanceIdentityPassword, InstanceIdentityOptions } from './instance-identity.js';
export { createInstanceIdentitySource, INSTANCE_IDENTITY_USERNAMES } from './instance-identity.js';
export type { StaticSourceOptions } from './static.js';
export { createStaticSource } from './static.js';
export type {
  CredentialSource,
  CredentialTarget,
  Logger,
  RegistryCredentials,
  SourceKind,
} from './types.js';
export { NEVER, silentLogger } from './types.js';
