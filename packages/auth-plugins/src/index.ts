export type { AwsIamOptions } from './aws-iam.js';
export { createAwsIamPlugin } from './aws-iam.js';
export type { AwsInstanceIdentityOptions } from './aws-instance-identity.js';
export {
  createAwsInstanceIdentityPlugin,
  shippedAwsSignatureCertificates,
} from './aws-instance-identity.js';
export type { MtlsOptions, NetworkOptions } from './connection-plugins.js';
export { createMtlsPlugin, createNetworkPlugin } from './connection-plugins.js';
export type { GcpInstanceIdentityOptions } from './gcp-instance-identity.js';
export { createGcpInstanceIdentityPlugin } from './gcp-instance-identity.js';
export type { HtpasswdOptions } from './htpasswd.js';
export { createHtpasswdPlugin, parseHtpasswd } from './htpasswd.js';
export type { KubernetesOptions } from './kubernetes.js';
export { createKubernetesPlugin } from './kubernetes.js';
export type { LdapOptions } from './ldap.js';
export { createLdapPlugin, escapeDnValue, escapeFilterValue } from './ldap.js';
export {
  authenticateConnection,
  authenticateLogin,
  FAMILY_USERNAMES,
  looksLikeJwt,
} from './login.js';
export type { ModulePluginOptions, PluginFactoryInput } from './module-plugin.js';
export { loadModulePlugin } from './module-plugin.js';
export type { OidcOptions } from './oidc.js';
export { createOidcPlugin } from './oidc.js';
export type {
  AuthPlugin,
  AuthResult,
  ConnectionInfo,
  Identity,
  Login,
  PluginFamily,
  Refusal,
} from './plugin.js';
export { identityName } from './plugin.js';
export type { Action, Policy, PolicyRule } from './policy.js';
export { createPolicy, globToRegExp } from './policy.js';
export type { StaticUser, StaticUsersOptions } from './static-users.js';
export { createStaticUsersPlugin } from './static-users.js';
