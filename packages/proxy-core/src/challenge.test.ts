import { describe, expect, it } from 'vitest';
import { parseChallenges } from './challenge.js';

describe('parseChallenges', () => {
  it.each([
    [
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"',
      [
        {
          scheme: 'bearer',
          params: {
            realm: 'https://auth.docker.io/token',
            service: 'registry.docker.io',
            scope: 'repository:library/alpine:pull',
          },
        },
      ],
    ],
    [
      'Basic realm="https://123.dkr.ecr.eu-west-1.amazonaws.com/",service="ecr.amazonaws.com"',
      [
        {
          scheme: 'basic',
          params: {
            realm: 'https://123.dkr.ecr.eu-west-1.amazonaws.com/',
            service: 'ecr.amazonaws.com',
          },
        },
      ],
    ],
    [
      'Bearer realm="https://gcr.io/v2/token"',
      [{ scheme: 'bearer', params: { realm: 'https://gcr.io/v2/token' } }],
    ],
    [
      'bearer Realm=simple , Service="a\\"b"',
      [{ scheme: 'bearer', params: { realm: 'simple', service: 'a"b' } }],
    ],
    [
      'Basic realm="a", Bearer realm="https://r/token",scope="repository:x:pull,push"',
      [
        { scheme: 'basic', params: { realm: 'a' } },
        { scheme: 'bearer', params: { realm: 'https://r/token', scope: 'repository:x:pull,push' } },
      ],
    ],
    ['Bearer realm="unterminated', [{ scheme: 'bearer', params: {} }]],
    ['', []],
    [`Bearer realm="${'x'.repeat(9000)}"`, []],
  ])('%s', (header, expected) => {
    expect(
      parseChallenges(header).map((c) => ({ scheme: c.scheme, params: { ...c.params } })),
    ).toEqual(expected);
  });

  it('cannot be made to set inherited properties', () => {
    const [c] = parseChallenges('Bearer __proto__="x",constructor="y"');
    expect(Object.getPrototypeOf(c?.params)).toBeNull();
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });
});
