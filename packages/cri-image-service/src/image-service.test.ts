import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { RegistryAuth } from '@org/registry-auth';
import { protoMessage as message } from '@org/tools/stand-ins';
import { afterAll, describe, expect, it } from 'vitest';
import { CallError, injectCredentials, socketPath } from './image-service.js';
import { parseRules } from './rules.js';
import { fieldsOf, stringField } from './wire.js';

const dir = mkdtempSync(join(tmpdir(), 'cri-inject-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const pull = (image: string, auth?: Buffer) =>
  message([[1, message([[1, image]])], ...(auth ? ([[2, auth]] as const) : [])]);
const authOf = (request: Buffer) => {
  const auth = fieldsOf(request).filter((f) => f.field === 2);
  expect(auth.length).toBeLessThanOrEqual(1);
  const value = auth[0]?.value;
  return value === undefined
    ? undefined
    : {
        user: stringField(value, 1),
        password: stringField(value, 2),
        server: stringField(value, 4),
      };
};

const rules = (override = false) =>
  parseRules({
    rules: [
      {
        match: ['docker.io/team', 'registry.example.com:5000'],
        credentials: { provider: 'static', username: 'robot', password: 'p4ss' },
        override,
      },
      {
        match: ['*.broken.example'],
        credentials: { provider: 'docker-config', configFile: join(dir, 'empty.json') },
      },
    ],
  });

describe('injectCredentials', () => {
  it('sets credentials for the contacted host only, and none for Docker Hub hosts', async () => {
    const hub = await injectCredentials(pull('team/app:1.0'), rules(), new RegistryAuth());
    expect(hub).toMatchObject({
      image: 'team/app:1.0',
      rule: 0,
      provider: 'static',
      injected: true,
    });
    // Docker Hub pulls go to registry-1.docker.io: a server_address would keep them from it
    expect(authOf(hub.request)).toEqual({ user: 'robot', password: 'p4ss', server: undefined });
    const other = await injectCredentials(
      pull(`registry.example.com:5000/x/y@sha256:${'a'.repeat(64)}`),
      rules(),
      new RegistryAuth(),
    );
    expect(authOf(other.request)?.server).toBe('https://registry.example.com:5000');
  });

  it('leaves a request alone when no rule matches, or kubelet sent credentials', async () => {
    const auth = new RegistryAuth();
    const unmatched = pull('quay.io/team/app:1');
    const a = await injectCredentials(unmatched, rules(), auth);
    expect(a.request.equals(unmatched)).toBe(true);
    expect(a).toMatchObject({ rule: null, injected: false });
    const sent = message([
      [1, 'kubelet-user'],
      [2, 'kubelet-pass'],
    ]);
    const withAuth = pull('docker.io/team/app:1', sent);
    const b = await injectCredentials(withAuth, rules(), auth);
    expect(b.request.equals(withAuth)).toBe(true);
    expect(b).toMatchObject({ rule: 0, injected: false });
    // override: the rule's credentials replace kubelet's
    const c = await injectCredentials(withAuth, rules(true), auth);
    expect(authOf(c.request)).toMatchObject({ user: 'robot', password: 'p4ss' });
    const empty = pull('');
    expect((await injectCredentials(empty, rules(), auth)).request.equals(empty)).toBe(true);
  });

  it('fails UNAUTHENTICATED naming the rule and provider, never a secret', async () => {
    writeFileSync(join(dir, 'empty.json'), JSON.stringify({ auths: {} }));
    const err = await injectCredentials(
      pull('cr.broken.example/app:1'),
      rules(),
      new RegistryAuth(),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CallError);
    expect((err as CallError).code).toBe(status.UNAUTHENTICATED);
    expect((err as CallError).message).toMatch(
      /rule 1 \(docker-config\) has no credentials for cr\.broken\.example/,
    );
    expect((err as CallError).message).not.toContain('p4ss');
  });

  it('refuses service-account-token rules FAILED_PRECONDITION: kubelet gives the image service no pod token', async () => {
    const sa = parseRules({
      rules: [
        {
          match: ['docker.example.com'],
          credentials: { provider: 'service-account-token', audience: 'docker.example.com' },
        },
      ],
    });
    const err = await injectCredentials(
      pull('docker.example.com/team/app:1'),
      sa,
      new RegistryAuth(),
    ).catch((e: unknown) => e);
    expect((err as CallError).code).toBe(status.FAILED_PRECONDITION);
    expect((err as CallError).message).toMatch(
      /rule 0 \(service-account-token\) works only as a credential provider/,
    );
  });

  it('refuses a malformed request INVALID_ARGUMENT', async () => {
    const err = await injectCredentials(
      Buffer.from([0x0a, 0x40, 0x01]),
      rules(),
      new RegistryAuth(),
    ).catch((e: unknown) => e);
    expect((err as CallError).code).toBe(status.INVALID_ARGUMENT);
  });
});

describe('socketPath', () => {
  it('takes unix:///absolute paths only', () => {
    expect(socketPath('unix:///run/x/cri.sock')).toBe('/run/x/cri.sock');
    expect(() => socketPath('unix://relative.sock')).toThrow(/absolute/);
    expect(() => socketPath('tcp://127.0.0.1:1')).toThrow(/absolute/);
  });
});
