#!/usr/bin/env node
/**
 * kubelet-image-service: credentials for kubelet's image pulls, as the CRI ImageService kubelet
 * points at (`serve`) or as a kubelet exec credential-provider plugin. Logic lives in
 * @org/cri-image-service.
 */
import {
  answerCredentialProviderRequest,
  credentialProviderConfig,
  loadRules,
  type Rule,
  waitServing,
} from '@org/cri-image-service';
import { RegistryAuth, withMetadataEndpointFromEnv } from '@org/registry-auth';
import { stringify } from 'yaml';
import { serve } from './serve.js';

const DEFAULT_LISTEN = 'unix:///run/kubelet-image-service/cri.sock';
const DEFAULT_BACKEND = {
  cri: 'unix:///run/containerd/containerd.sock',
  docker: 'unix:///var/run/docker.sock',
} as const;

const USAGE = `usage: kubelet-image-service serve --config RULES [--listen ENDPOINT] [--backend cri|docker]
                             [--backend-endpoint ENDPOINT] [--metrics-listen HOST:PORT]
       kubelet-image-service credential-provider --config RULES
       kubelet-image-service credential-provider-config --config RULES [--name NAME]
       kubelet-image-service probe [--listen ENDPOINT] [--timeout SECONDS]
       kubelet-image-service --help

  serve                       the CRI ImageService kubelet's imageServiceEndpoint points at:
                              every call forwarded to the node's runtime, pulls given
                              credentials from the rules
  credential-provider         kubelet exec plugin: reads a CredentialProviderRequest on stdin,
                              writes a CredentialProviderResponse on stdout
  credential-provider-config  prints the kubelet CredentialProviderConfig for the rules
  probe                       waits until the service at --listen answers its gRPC health
                              check SERVING (its runtime answers too); exits 1 after
                              --timeout (default 30) seconds. systemd's ExecStartPost.
  --config RULES              rules file (YAML or JSON): rules: [{ match, credentials, override? }]
  --listen ENDPOINT           default ${DEFAULT_LISTEN}
  --backend cri               the node's CRI runtime (containerd, CRI-O); the default
  --backend docker            the Docker Engine API (nodes on cri-dockerd / Docker)
  --backend-endpoint ENDPOINT default ${DEFAULT_BACKEND.cri} (cri),
                              ${DEFAULT_BACKEND.docker} (docker)
  --metrics-listen HOST:PORT  Prometheus metrics at http://HOST:PORT/metrics (off by default)
  --name NAME                 provider name (the binary's name in kubelet's bin dir)
`;

function fail(message: string, code = 1): never {
  process.stderr.write(`kubelet-image-service: ${message.split('\n').join('; ')}\n`);
  process.exit(code);
}

const COMMANDS = ['serve', 'credential-provider', 'credential-provider-config', 'probe'] as const;
type Command = (typeof COMMANDS)[number];
const FLAGS: Record<Command, readonly string[]> = {
  serve: ['--config', '--listen', '--backend', '--backend-endpoint', '--metrics-listen'],
  'credential-provider': ['--config'],
  'credential-provider-config': ['--config', '--name'],
  probe: ['--listen', '--timeout'],
};

function parseArgs(argv: string[]): { command: Command; flags: Map<string, string> } {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE);
    process.exit(command === undefined ? 2 : 0);
  }
  if (!(COMMANDS as readonly string[]).includes(command))
    fail(`unknown command ${JSON.stringify(command)}; try kubelet-image-service --help`, 2);
  const known = FLAGS[command as Command];
  const flags = new Map<string, string>();
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i] ?? '';
    const [flag, inline] = arg.includes('=')
      ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)]
      : [arg, undefined];
    if (!known.includes(flag))
      fail(
        `unknown option ${JSON.stringify(arg)} for ${command}; try kubelet-image-service --help`,
        2,
      );
    flags.set(flag, inline ?? rest[++i] ?? fail(`${flag} needs a value`, 2));
  }
  if (command !== 'probe' && !flags.has('--config')) fail('--config RULES is required', 2);
  const timeout = flags.get('--timeout');
  if (timeout !== undefined && !/^[1-9]\d{0,4}$/.test(timeout))
    fail(`--timeout ${JSON.stringify(timeout)}: give whole seconds, 1 to 99999`, 2);
  const backend = flags.get('--backend');
  if (backend !== undefined && backend !== 'cri' && backend !== 'docker')
    fail(`--backend ${JSON.stringify(backend)}: use cri or docker`, 2);
  return { command: command as Command, flags };
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
  const { command, flags } = parseArgs(process.argv.slice(2));
  if (command === 'probe') {
    try {
      await waitServing(flags.get('--listen') ?? DEFAULT_LISTEN, {
        timeoutMs: Number(flags.get('--timeout') ?? 30) * 1000,
      });
    } catch (err) {
      fail((err as Error).message);
    }
    return;
  }
  let rules: Rule[];
  try {
    // instance-identity rules ask the metadata server the environment names, as the SDKs do
    rules = loadRules(flags.get('--config') as string).map((rule) => ({
      ...rule,
      credentials: withMetadataEndpointFromEnv(rule.credentials, process.env),
    }));
  } catch (err) {
    fail((err as Error).message);
  }
  if (command === 'credential-provider-config') {
    let config: Record<string, unknown>;
    try {
      config = credentialProviderConfig(rules, flags.get('--name'));
    } catch (err) {
      fail((err as Error).message);
    }
    process.stdout.write(stringify(config));
    return;
  }
  if (command === 'serve') {
    const backend = flags.get('--backend') === 'docker' ? 'docker' : 'cri';
    const metricsListen = flags.get('--metrics-listen');
    try {
      await serve({
        listen: flags.get('--listen') ?? DEFAULT_LISTEN,
        backend,
        backendEndpoint: flags.get('--backend-endpoint') ?? DEFAULT_BACKEND[backend],
        rules,
        ...(metricsListen === undefined ? {} : { metricsListen }),
      });
    } catch (err) {
      fail((err as Error).message);
    }
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
