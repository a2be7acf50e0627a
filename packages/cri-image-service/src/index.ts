export type { CredentialProviderResponse } from './credential-provider.js';
export {
  answerCredentialProviderRequest,
  CredentialProviderError,
  credentialProviderConfig,
} from './credential-provider.js';
export type { Rule } from './rules.js';
export { loadRules, parseRules, RulesError, ruleFor } from './rules.js';
