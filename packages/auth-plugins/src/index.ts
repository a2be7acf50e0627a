export type { HtpasswdOptions } from './htpasswd.js';
export { createHtpasswdPlugin, parseHtpasswd } from './htpasswd.js';
export type { AuthPlugin, AuthResult, Identity, Login, Refusal } from './plugin.js';
export { identityName } from './plugin.js';
export type { Action, Policy, PolicyRule } from './policy.js';
export { createPolicy, globToRegExp } from './policy.js';
export type { StaticUser, StaticUsersOptions } from './static-users.js';
export { createStaticUsersPlugin } from './static-users.js';
