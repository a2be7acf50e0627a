#!/usr/bin/env node
/**
 * docker-credential-registry-auth: the docker-credential-helper `get` protocol on top of
 * @org/registry-auth, for docker, skopeo, crane, containerd and distribution's proxy mode.
 *
 * Environment: REGISTRY_AUTH_CONFIG, a JSON config file (see CredentialHelperConfig; default:
 * every registry with provider auto); SKIP_REGISTRY_VALIDATION=true, the process-wide skip
 * default; plus what the cloud SDKs read (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, AZURE_*).
 */
import { readFileSync } from 'node:fs';
import {
  setRegistryValidationDefaults,
  skipRegistryValidationFromEnv,
} from '@org/registry-domains';
import {
  parseCredentialHelperConfig,
  registryAuthFromConfig,
  runCredentialHelper,
} from '../credential-helper.js';

async function main(): Promise<number> {
  const action = process.argv[2];
  let config: ReturnType<typeof parseCredentialHelperConfig>;
  try {
    setRegistryValidationDefaults({
      skipRegistryValidation: skipRegistryValidationFromEnv(process.env),
    });
    const file = process.env.REGISTRY_AUTH_CONFIG;
    config = parseCredentialHelperConfig(file ? JSON.parse(readFileSync(file, 'utf8')) : {});
  } catch (err) {
    const message =
      err instanceof SyntaxError
        ? 'REGISTRY_AUTH_CONFIG is not valid JSON'
        : (err as Error).message;
    process.stderr.write(`docker-credential-registry-auth: ${message.split('\n').join('; ')}\n`);
    return 1;
  }
  const input = action === 'get' ? readFileSync(0, 'utf8') : '';
  const result = await runCredentialHelper(action, input, registryAuthFromConfig(config), config);
  process.stdout.write(result.stdout);
  process.stderr.write(result.stderr);
  return result.code;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`docker-credential-registry-auth: ${String(err).slice(0, 300)}\n`);
    process.exitCode = 1;
  },
);
