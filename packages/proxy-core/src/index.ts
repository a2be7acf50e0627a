export { createProxyApp } from './app.js';
export { challenge } from './client-auth.js';
export type { ProxyCoreOptions, UpstreamConfig } from './config.js';
export type { OciErrorCode } from './errors.js';
export { RegistryError } from './errors.js';
export type { LoginThrottleOptions } from './login-throttle.js';
export { LoginThrottle } from './login-throttle.js';
export type { ProxyObserver, RequestInfo } from './observe.js';
export { requestInfo } from './observe.js';
export type { RedirectAllow, Resolve } from './redirect-guard.js';
export { internalKind, parseRedirectAllow } from './redirect-guard.js';
export { requestGuard } from './request-guard.js';
export type { RetryOptions } from './retry.js';
export type { V2Request } from './route.js';
export { parseV2Path } from './route.js';
export type {
  Access,
  RequestedScope,
  TokenResponse,
  TokenService,
  TokenServiceOptions,
  VerifiedToken,
} from './token-service.js';
export { createTokenService, parseScopes } from './token-service.js';
