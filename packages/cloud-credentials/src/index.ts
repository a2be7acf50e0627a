export type { CredentialCacheOptions, CredentialLabels, CredentialMetrics } from './cache.js';
export { CredentialCache, defaultRefreshMargin } from './cache.js';
export type { DockerConfig, DockerConfigSourceOptions } from './docker-config.js';
export { createDockerConfigSource } from './docker-config.js';
export type { CredentialsErrorCode } from './errors.js';
export { CredentialsError } from './errors.js';
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
