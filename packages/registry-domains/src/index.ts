export type { InvalidReferenceCode, RegistryValidationCode } from './errors.js';
export { InvalidReferenceError, RegistryDomainsError, RegistryValidationError } from './errors.js';
export type { ImagePattern } from './match-image.js';
export { compileImagePattern, matchImage } from './match-image.js';
export type { AwsPartition, CloudProvider, ProviderMatch } from './providers.js';
export {
  detectProvider,
  PROVIDER_HOST_PATTERNS,
  REGISTRY_HOSTS,
  registryHostOf,
} from './providers.js';
export {
  DOCKER_HUB_DOMAIN,
  ImageReference,
  NAME_MAX_LENGTH,
  parseImageReference,
  REFERENCE_MAX_LENGTH,
  TAG_MAX_LENGTH,
  validateDigest,
  validateRepositoryName,
  validateTag,
} from './reference.js';
export type { RegistryValidationDefaults, RegistryValidationOptions } from './validation.js';
export {
  getRegistryValidationDefaults,
  isRegionName,
  SKIP_REGISTRY_VALIDATION_ENV,
  setRegistryValidationDefaults,
  skipRegistryValidationFromEnv,
  validateRegistry,
} from './validation.js';
