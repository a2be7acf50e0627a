import type { AuthPlugin, AuthResult, Identity } from './plugin.js';
import { globToRegExp } from './policy.js';

/**
 * The account allow-list both AWS plugins require (anyone with an AWS account can sign a
 * GetCallerIdentity or run an instance).
 *
 * @throws TypeError naming the plugin.
 */
export function checkAwsAccounts(name: string, accounts: unknown): void {
  if (
    !Array.isArray(accounts) ||
    accounts.length === 0 ||
    accounts.some((a) => typeof a !== 'string' || !/^\d{12}$/.test(a))
  ) {
    throw new TypeError(`${name}.accounts: one or more 12-digit AWS account ids`);
  }
}

export interface AwsIamOptions {
  readonly name: string;
  /** Our id, which clients sign into the request (`x-registry-proxy-server-id`): our host name. */
  readonly serverId: string;
  /** AWS accounts whose principals may log in (12 digits). Required. */
  readonly accounts: readonly string[];
  /** Globs over the principal's role or user name (`eks-node-*`); absent: any in the accounts. */
  readonly principals?: readonly string[];
  /** Regions whose STS endpoints are accepted besides the global one. */
  readonly regions?: readonly string[];
  /** Exact STS origins accepted instead of AWS's (tests, VPC endpoints): `https://sts.example`. */
  readonly stsEndpoints?: readonly string[];
  readonly fetch?: typeof fetch;
}

const SERVER_ID_HEADER = 'x-registry-proxy-server-id';
const BODY = 'Action=GetCallerIdentity&Version=2011-06-15';
/** Headers passed on to STS; everything else the client sent is dropped. */
const FORWARDED = [
  'authorization',
  'content-type',
  'x-amz-date',
  'x-amz-security-token',
  'x-amz-content-sha256',
  SERVER_ID_HEADER,
];
const PASSWORD_MAX = 16 * 1024;
const ANSWER_MAX = 64 * 1024;
const SIGV4 =
  /^AWS4-HMAC-SHA256 Credential=[A-Za-z0-9/_-]+, ?SignedHeaders=([a-z0-9;-]+), ?Signature=[0-9a-f]{64}$/;

/** The text of the first `<tag>` element (STS answers are flat, well-known XML). */
function xmlText(xml: string, tag: string): string | undefined {
  return new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(xml)?.[1];
}

/** The principal name and its kind from a caller ARN. */
function principalOf(arn: string): { kind: string; name: string } | undefined {
  const m = /^arn:aws[a-z-]*:(sts|iam)::(\d{12}):(assumed-role|user|root)(?:\/(.+))?$/.exec(arn);
  if (!m) return undefined;
  if (m[3] === 'root') return { kind: 'root', name: 'root' };
  const rest = m[4] ?? '';
  if (m[3] === 'assumed-role') return { kind: 'role', name: rest.split('/')[0] ?? '' };
  return { kind: 'user', name: rest.split('/').pop() ?? '' };
}

/**
 * The strong AWS login (username `_aws`): the client signs, but does not send, an
 * `sts:GetCallerIdentity` request covering our server id, and gives it to us as its password; we
 * send it to an allow-listed STS endpoint, which answers with the caller's ARN. Works for any AWS
 * principal (EKS nodes' instance roles, IRSA, Pod Identity), cannot be replayed to another
 * service (the server id is signed), and STS refuses it after 15 minutes. Only principals of
 * `accounts` are accepted; the identity is `<name>:<account>/<role or user name>`.
 */
export function createAwsIamPlugin(options: AwsIamOptions): AuthPlugin {
  const { name } = options;
  if (typeof name !== 'string' || name === '') throw new TypeError('aws-iam: name is required');
  if (typeof options.serverId !== 'string' || options.serverId === '')
    throw new TypeError(`${name}.serverId: our host name, which clients sign into the request`);
  checkAwsAccounts(name, options.accounts);
  for (const region of options.regions ?? []) {
    if (!/^[a-z]{2}(-[a-z]+)+-\d$/.test(region))
      throw new TypeError(`${name}.regions: ${JSON.stringify(region)} is not a region`);
  }
  const endpoints = new Set(
    options.stsEndpoints?.map((e) => new URL(e).origin) ?? [
      'https://sts.amazonaws.com',
      ...(options.regions ?? []).map((r) => `https://sts.${r}.amazonaws.com`),
    ],
  );
  const accounts = new Set(options.accounts);
  const principals = options.principals?.map(globToRegExp);
  const doFetch = options.fetch ?? fetch;

  return {
    name,
    type: 'aws-iam',
    family: 'aws',
    async authenticate(login): Promise<AuthResult> {
      const refuse = (): AuthResult => ({ ok: false, reason: 'BAD_PASSWORD' });
      if (login.password.length > PASSWORD_MAX) return refuse();
      let request: { method?: unknown; url?: unknown; headers?: unknown; body?: unknown };
      try {
        request = JSON.parse(Buffer.from(login.password, 'base64url').toString('utf8'));
      } catch {
        return { ok: false, reason: 'NOT_FOR_THIS_PLUGIN' };
      }
      if (typeof request !== 'object' || request === null || request.url === undefined)
        return { ok: false, reason: 'NOT_FOR_THIS_PLUGIN' }; // e.g. an instance identity document
      if (request.method !== 'POST' || typeof request.url !== 'string') return refuse();
      if (request.body !== BODY) return refuse();
      let url: URL;
      try {
        url = new URL(request.url);
      } catch {
        return refuse();
      }
      if (!endpoints.has(url.origin) || url.pathname !== '/' || url.search !== '') return refuse();
      const given = request.headers;
      if (typeof given !== 'object' || given === null) return refuse();
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(given)) {
        if (typeof v !== 'string' || /[\r\n]/.test(v)) return refuse();
        const key = k.toLowerCase();
        if (FORWARDED.includes(key)) headers[key] = v;
      }
      const signedHeaders = SIGV4.exec(headers.authorization ?? '')?.[1]?.split(';') ?? [];
      if (
        headers[SERVER_ID_HEADER] !== options.serverId ||
        !signedHeaders.includes(SERVER_ID_HEADER) ||
        !signedHeaders.includes('host')
      ) {
        return refuse();
      }
      let status: number;
      let xml: string;
      try {
        const res = await doFetch(url, {
          method: 'POST',
          headers,
          body: BODY,
          redirect: 'error',
          signal: AbortSignal.timeout(5000),
        });
        status = res.status;
        xml = (await res.text()).slice(0, ANSWER_MAX);
      } catch {
        return { ok: false, reason: 'UNAVAILABLE' };
      }
      if (status === 403 || status === 400) return refuse(); // bad or expired signature
      if (status !== 200) return { ok: false, reason: 'UNAVAILABLE' };
      const arn = xmlText(xml, 'Arn');
      const account = xmlText(xml, 'Account');
      const principal = arn ? principalOf(arn) : undefined;
      if (!arn || !account || !principal || !arn.includes(`::${account}:`)) return refuse();
      if (!accounts.has(account)) return refuse();
      if (principal.kind === 'root') return refuse(); // never log in as an account's root
      if (principals && !principals.some((re) => re.test(principal.name))) return refuse();
      const identity: Identity = {
        plugin: name,
        subject: `${account}/${principal.name}`,
        groups: [],
        claims: {
          arn,
          account,
          principalType: principal.kind,
          ...(xmlText(xml, 'UserId') ? { userId: xmlText(xml, 'UserId') } : {}),
        },
      };
      return { ok: true, identity };
    },
  };
}
