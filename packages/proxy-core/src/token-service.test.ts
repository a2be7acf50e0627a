import { createHmac, createPublicKey } from 'node:crypto';
import { createPolicy, createStaticUsersPlugin } from '@org/auth-plugins';
import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { RegistryError } from './errors.js';
import { createTokenService, parseScopes, type TokenService } from './token-service.js';

const users = createStaticUsersPlugin({
  name: 'users',
  users: [
    { username: 'alice', password: 'wonderland' },
    { username: 'bob', password: 'builder' },
  ],
});
const policy = createPolicy([
  { identities: ['users:alice'], repositories: ['team-a/**'], actions: ['pull', 'push'] },
  { identities: ['users:*'], repositories: ['public/*'], actions: ['pull'] },
  { identities: ['anonymous'], repositories: ['mirror/*'], actions: ['pull'] },
]);
let t = Date.UTC(2026, 10, 22, 12, 0, 0);
let keys: Awaited<ReturnType<typeof generateKeyPair>>;
let service: TokenService;

beforeAll(async () => {
  keys = await generateKeyPair('ES256', { extractable: true });
  service = await createTokenService({
    plugins: [users],
    policy,
    issuer: 'https://docker.example.com',
    service: 'docker.example.com',
    keyPair: keys,
    now: () => t,
  });
});

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
const claims = () => ({
  iss: 'https://docker.example.com',
  aud: 'docker.example.com',
  sub: 'users:alice',
  iat: Math.floor(t / 1000),
  exp: Math.floor(t / 1000) + 900,
  access: [{ type: 'repository', name: 'team-b/secret', actions: ['pull'] }],
});

async function refused(token: string): Promise<RegistryError> {
  const err = await service.verify(token).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(RegistryError);
  expect(err).toMatchObject({ status: 401, code: 'UNAUTHORIZED' });
  return err as RegistryError;
}

describe('parseScopes', () => {
  it.each([
    [['repository:team-a/app:pull'], [{ name: 'team-a/app', actions: ['pull'] }]],
    [
      ['repository:team-a/app:pull,push repository:public/x:pull'],
      [
        { name: 'team-a/app', actions: ['pull', 'push'] },
        { name: 'public/x', actions: ['pull'] },
      ],
    ],
    [['repository:localhost:5000/app:pull'], []],
    [['registry:catalog:*'], []],
    [['repository:Team/App:pull', 'repository:../x:pull', 'garbage', 'repository:x'], []],
    [['repository:a:pull,pull,push'], [{ name: 'a', actions: ['pull', 'push'] }]],
    // repeated scopes (500 of them) must not grow the token: one entry, actions merged
    [
      [...Array(500).fill('repository:a:pull'), 'repository:a:push'],
      [{ name: 'a', actions: ['pull', 'push'] }],
    ],
  ])('%j', (scopes, expected) => {
    expect(parseScopes(scopes)).toEqual(expected);
  });
});

describe('token service', () => {
  it('issues an ES256 token with our kid granting only what the policy allows', async () => {
    const res = await service.issue({ username: 'alice', password: 'wonderland' }, [
      'repository:team-a/app:pull,push',
      'repository:team-b/app:pull',
      'repository:public/tool:pull,push',
    ]);
    expect(res.token).toBe(res.access_token);
    expect(res.expires_in).toBe(900);
    expect(decodeProtectedHeader(res.token)).toMatchObject({
      alg: 'ES256',
      kid: service.jwks().keys[0]?.kid,
    });
    expect(decodeJwt(res.token)).toMatchObject({
      sub: 'users:alice',
      aud: 'docker.example.com',
      access: [
        { type: 'repository', name: 'team-a/app', actions: ['pull', 'push'] },
        { type: 'repository', name: 'public/tool', actions: ['pull'] },
      ],
    });
    const verified = await service.verify(res.token);
    expect(service.allows(verified, 'team-a/app', 'push')).toBe(true);
    expect(service.allows(verified, 'team-b/app', 'pull')).toBe(false);
    expect(service.allows(verified, 'public/tool', 'push')).toBe(false);
  });

  it('issues tokens without scope (docker login) and for anonymous pulls the policy allows', async () => {
    const login = await service.issue({ username: 'bob', password: 'builder' }, []);
    expect(decodeJwt(login.token).access).toEqual([]);
    const anon = await service.verify(
      (await service.issue(undefined, ['repository:mirror/app:pull'])).token,
    );
    expect(anon).toEqual({
      subject: 'anonymous',
      access: [{ type: 'repository', name: 'mirror/app', actions: ['pull'] }],
    });
  });

  it('refuses a wrong password and an unknown user alike', async () => {
    for (const login of [
      { username: 'alice', password: 'nope' },
      { username: 'mallory', password: 'x' },
    ]) {
      await expect(service.issue(login, [])).rejects.toMatchObject({
        status: 401,
        code: 'UNAUTHORIZED',
        message: 'authentication failed',
      });
    }
  });

  it('refuses an expired token, and a not-yet-valid one', async () => {
    const { token } = await service.issue({ username: 'alice', password: 'wonderland' }, [
      'repository:team-a/app:pull',
    ]);
    t += 931_000; // 900 s + 30 s tolerance + 1
    await refused(token);
    t -= 2 * 931_000;
    await refused(token);
    t += 931_000;
  });

  it('stops accepting a token it verified before once the token expires', async () => {
    const { token } = await service.issue({ username: 'alice', password: 'wonderland' }, [
      'repository:team-a/app:pull',
    ]);
    // verified in full, then again (remembered) until just before exp + tolerance
    expect((await service.verify(token)).subject).toBe('users:alice');
    t += 929_000;
    expect(service.allows(await service.verify(token), 'team-a/app', 'pull')).toBe(true);
    t += 2_000;
    await refused(token);
    t -= 931_000;
  });

  it('checks in full a token that differs in one byte from one verified before', async () => {
    const { token } = await service.issue({ username: 'alice', password: 'wonderland' }, [
      'repository:team-a/app:pull',
    ]);
    await service.verify(token);
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const widened = Buffer.from(payload, 'base64url')
      .toString()
      .replace('team-a/app', 'team-b/app');
    await refused(`${header}.${Buffer.from(widened).toString('base64url')}.${signature}`);
    // the first character: the last one of an ES256 signature carries 4 padding bits
    const flipped = signature.startsWith('A') ? 'B' : 'A';
    await refused(`${header}.${payload}.${flipped}${signature.slice(1)}`);
  });

  it('refuses alg none', async () => {
    const kid = service.jwks().keys[0]?.kid;
    await refused(`${b64({ alg: 'none', typ: 'JWT', kid })}.${b64(claims())}.`);
  });

  it('refuses HS256 signed with our public key', async () => {
    const kid = service.jwks().keys[0]?.kid;
    const input = `${b64({ alg: 'HS256', typ: 'JWT', kid })}.${b64(claims())}`;
    const pem = createPublicKey({
      key: (await exportJWK(keys.publicKey)) as never,
      format: 'jwk',
    }).export({ type: 'spki', format: 'pem' });
    for (const secret of [pem, JSON.stringify(service.jwks().keys[0])]) {
      await refused(`${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`);
    }
  });

  it('refuses tokens signed by another key, whether it names our kid or its own', async () => {
    const other = await generateKeyPair('ES256');
    const kid = service.jwks().keys[0]?.kid as string;
    for (const header of [
      { alg: 'ES256', kid },
      { alg: 'ES256', kid: 'someone-else' },
    ]) {
      await refused(await new SignJWT(claims()).setProtectedHeader(header).sign(other.privateKey));
    }
  });

  it('refuses our own key used for another issuer or audience', async () => {
    const elsewhere = await createTokenService({
      plugins: [users],
      policy,
      issuer: 'https://other.example.com',
      service: 'other',
      keyPair: keys,
      now: () => t,
    });
    const { token } = await elsewhere.issue({ username: 'alice', password: 'wonderland' }, [
      'repository:team-a/app:pull',
    ]);
    await refused(token);
  });

  it('grants the catalog only where the policy allows pulling everything (`**`)', async () => {
    const catalogFor = async (rules: Parameters<typeof createPolicy>[0]) => {
      const tokens = await createTokenService({
        plugins: [users],
        policy: createPolicy(rules),
        issuer: 'https://docker.example.com',
        service: 'docker.example.com',
        keyPair: keys,
        now: () => t,
      });
      const issued = await tokens.issue({ username: 'bob', password: 'builder' }, [
        'registry:catalog:*',
      ]);
      return tokens.allowsCatalog(await tokens.verify(issued.token));
    };
    expect(
      await catalogFor([{ identities: ['users:bob'], repositories: ['**'], actions: ['pull'] }]),
    ).toBe(true);
    expect(
      await catalogFor([
        { identities: ['users:bob'], repositories: ['_catalog/*'], actions: ['pull'] },
      ]),
    ).toBe(true);
    for (const repositories of [['*'], ['team-a/**'], ['_catalog']]) {
      expect(
        await catalogFor([{ identities: ['users:bob'], repositories, actions: ['pull'] }]),
      ).toBe(false);
    }
    // a catalog grant is not a repository grant
    const token = await service.issue({ username: 'alice', password: 'wonderland' }, [
      'registry:catalog:*',
    ]);
    expect(service.allowsCatalog(await service.verify(token.token))).toBe(false);
  });

  it('rotates keys: tokens of the previous key stay valid, both are published, new ones use the new key', async () => {
    const next = await generateKeyPair('ES256', { extractable: true });
    const rotated = await createTokenService({
      plugins: [users],
      policy,
      issuer: 'https://docker.example.com',
      service: 'docker.example.com',
      keyPair: next,
      previousPublicKeys: [keys.publicKey],
      now: () => t,
    });
    const old = await service.issue({ username: 'alice', password: 'wonderland' }, [
      'repository:team-a/app:pull',
    ]);
    expect((await rotated.verify(old.token)).subject).toBe('users:alice');
    const fresh = await rotated.issue({ username: 'alice', password: 'wonderland' }, []);
    const kids = rotated.jwks().keys.map((k) => k.kid);
    expect(kids).toHaveLength(2);
    expect(decodeProtectedHeader(fresh.token).kid).toBe(kids[0]);
    expect(kids[1]).toBe(decodeProtectedHeader(old.token).kid);
    // and once the previous key is dropped, its tokens are refused
    const after = await createTokenService({
      plugins: [users],
      policy,
      issuer: 'https://docker.example.com',
      service: 'docker.example.com',
      keyPair: next,
      now: () => t,
    });
    await expect(after.verify(old.token)).rejects.toThrow(RegistryError);
  });

  it('publishes only the public key', () => {
    const [key] = service.jwks().keys;
    expect(key).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
    expect(key).not.toHaveProperty('d');
  });

  it('validates its options', async () => {
    await expect(
      createTokenService({ plugins: [], policy, issuer: 'i', service: 's', ttlSeconds: 30 }),
    ).rejects.toThrow(/ttlSeconds/);
  });
});
