export type { CredentialProviderResponse } from './credential-provider.js';
export {
  answerCredentialProviderRequest,
  CredentialProviderError,
  credentialProviderConfig,
} from './credential-provider.js';
export { DockerBackend } from './docker-backend.js';
export type { HostServiceUnitPaths } from './host-unit.js';
export { HOST_SERVICE_DEFAULTS, hostServiceUnit } from './host-unit.js';
export type {
  CallContext,
  CriBackendOptions,
  ImageBackend,
  ImageServiceOptions,
  PullRecord,
  UnaryMethod,
} from './image-service.js';
export {
  CallError,
  CriBackend,
  checkImageService,
  createImageServiceServer,
  IMAGE_SERVICE,
  injectCredentials,
  listenUnix,
  MAX_MESSAGE_BYTES,
  shutdown,
  socketPath,
  UNARY_METHODS,
  waitServing,
} from './image-service.js';
export type { Rule, ServiceAccountTokenCredentials } from './rules.js';
export { loadRules, parseRules, RulesError, ruleFor } from './rules.js';
