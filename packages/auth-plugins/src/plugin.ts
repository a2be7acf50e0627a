/** Who a login turned out to be. The policy sees `<plugin>:<subject>`. */
export interface Identity {
  /** The plugin's configured name (`users`, `corp`). */
  readonly plugin: string;
  readonly subject: string;
  readonly groups: readonly string[];
  readonly claims: Readonly<Record<string, unknown>>;
}

/** Why a login was refused; never says which of user or password was wrong to the client. */
export type Refusal = 'UNKNOWN_USER' | 'BAD_PASSWORD' | 'NOT_FOR_THIS_PLUGIN' | 'UNAVAILABLE';

export type AuthResult =
  | { readonly ok: true; readonly identity: Identity }
  | { readonly ok: false; readonly reason: Refusal };

/** What a client sent to the token endpoint. */
export interface Login {
  readonly username: string;
  readonly password: string;
}

/**
 * Which logins reach a plugin (see `authenticateLogin`): `password` plugins get ordinary usernames;
 * the token families get the username `_<family>` (`_oidc`, `_k8s`, `_gcp`, `_aws`), and `oidc`,
 * `k8s` and `gcp` also any login whose password is a JWT.
 */
export type PluginFamily = 'password' | 'oidc' | 'k8s' | 'gcp' | 'aws' | 'connection';

/**
 * What the transport says about a client that sent no login: its address, and the certificate
 * it presented if the proxy terminates TLS and asked for one.
 */
export interface ConnectionInfo {
  readonly remoteAddress?: string | undefined;
  readonly certificate?:
    | {
        /** Whether the chain verified against the configured client CA bundle. */
        readonly authorized: boolean;
        /** Subject fields (`CN`, `O`, `OU`, ...). */
        readonly subject: Readonly<Record<string, string>>;
        /** Node's `subjectaltname` string: `DNS:node-1.example.com, URI:spiffe://...`. */
        readonly subjectAltName?: string | undefined;
        readonly fingerprint256: string;
      }
    | undefined;
}

/**
 * A client authentication plugin: takes a login, returns an identity or a typed refusal. Never
 * puts a password or token into a message or a thrown error.
 */
export interface AuthPlugin {
  readonly name: string;
  readonly type: string;
  /** Default `password`. */
  readonly family?: PluginFamily;
  authenticate(login: Login): Promise<AuthResult>;
  /** `connection` plugins: an identity from the transport, for clients that sent no login. */
  authenticateConnection?(connection: ConnectionInfo): Promise<AuthResult>;
}

/** `<plugin>:<subject>`, what policy `identities` globs match. */
export function identityName(identity: Identity): string {
  return `${identity.plugin}:${identity.subject}`;
}
