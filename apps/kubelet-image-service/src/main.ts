#!/usr/bin/env node
/**
 * kubelet-image-service: credentials for kubelet's image pulls. This version has the kubelet
 * exec credential-provider mode; the CRI ImageService proxy (`serve`) is being built (5/7).
 * Logic lives in @org/cri-image-service.
 */
import {
  answerCredentialProviderRequest,
  credentialProviderConfig,
  loadRules,
  type Rule,
} from '@org/cri-image-service';
import { RegistryAuth } from '@org/registry-auth';
import { stringify } from 'yaml';

const USAGE = `usage: kubelet-image-service credential-provider --config RULES
       kubelet-image-service credential-provider-config --config RULES [--name NAME]
       kubelet-image-service --help

  credential-provider         kubelet exec plugin: reads a CredentialProviderRequest on stdin,
                              writes a CredentialProviderResponse on stdout
  credential-provider-config  prints the kubelet CredentialProviderConfig for the rules
  --config RULES              rules file (YAML or JSON): rules: [{ match, credentials, override? }]
  --name NAME                 provider name (the binary's name in kubelet's bin dir)
`;

function fail(message: string, code = 1): never {
  process.stderr.write(`kubelet-image-service: ${message.split('\n').join('; ')}\n`);
  process.exit(code);
}

function parseArgs(argv: string[]): { command: string; config: string; name?: string } {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE);
    process.exit(command === undefined ? 2 : 0);
  }
  if (command !== 'credential-provider' && command !== 'credential-provider-config')
    fail(`unknown command ${JSON.stringify(command)}; try kubelet-image-service --help`, 2);
  let config: string | undefined;
  let name: string | undefined;
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i] ?? '';
    const [flag, inline] = arg.includes('=')
      ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)]
      : [arg, undefined];
    const value = () => inline ?? rest[++i] ?? fail(`${flag} needs a value`, 2);
    if (flag === '--config') config = value();
    else if (flag === '--name') name = value();
    else fail(`unknown option ${JSON.stringify(arg)}; try kubelet-image-service --help`, 2);
  }
  if (config === undefined) fail('--config RULES is required', 2);
  return { command, config, ...(name === undefined ? {} : { name }) };
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > 1024 * 1024) fail('the request on stdin is too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  let rules: Rule[];
  try {
    rules = loadRules(args.config);
  } catch (err) {
    fail((err as Error).message);
  }
  if (args.command === 'credential-provider-config') {
    process.stdout.write(stringify(credentialProviderConfig(rules, args.name)));
    return;
  }
  const input = await readStdin();
  try {
    const response = await answerCredentialProviderRequest(input, rules, new RegistryAuth());
    process.stdout.write(`${JSON.stringify(response)}\n`);
  } catch (err) {
    fail((err as Error).message);
  }
}

main().catch((err: unknown) => fail(String(err)));
