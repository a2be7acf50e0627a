export type {
  CredentialCacheOptions,
  CredentialLabels,
  CredentialMetrics,
  CredentialsErrorCode,
  DockerConfig,
} from '@org/cloud-credentials';
export { CredentialCache, CredentialsError, NEVER } from '@org/cloud-credentials';
export type {
  AwsPartition,
  CloudProvider,
  ImagePattern,
  InvalidReferenceCode,
  ProviderMatch,
  RegistryValidationCode,
  RegistryValidationDefaults,
  RegistryValidationOptions,
} from '@org/registry-domains';
export {
  compileImagePattern,
  detectProvider,
  getRegistryValidationDefaults,
  ImageReference,
  InvalidReferenceError,
  matchImage,
  PROVIDER_HOST_PATTERNS,
  parseImageReference,
  RegistryValidationError,
  registryHostOf,
  SKIP_REGISTRY_VALIDATION_ENV,
  setRegistryValidationDefaults,
  skipRegistryValidationFromEnv,
  validateRegistry,
} from '@org/registry-domains';
export type { CredentialHelperConfig, HelperResult } from './credential-helper.js';
export {
  HELPER_NOT_FOUND,
  parseCredentialHelperConfig,
  registryAuthFromConfig,
  runCredentialHelper,
  serverHost,
} from './credential-helper.js';
export type { RegistryMapping } from './mapping.js';
export type {
  CloudCredentialOptions,
  GetRegistryCredentialsOptions,
  RegistryAuthOptions,
  RegistryCredentials,
} from './registry-auth.js';
export {
  CREDENTIAL_PROVIDERS,
  configureRegistryAuth,
  getRegistryCredentials,
  RegistryAuth,
  withMetadataEndpointFromEnv,
} from './registry-auth.js';
