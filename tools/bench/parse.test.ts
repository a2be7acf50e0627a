import { describe, expect, it } from 'vitest';
import {
  counterSum,
  formatSize,
  formatTable,
  median,
  parseBearerChallenge,
  parseSize,
  parseWrkOutput,
  parseWrkTime,
  percentile,
  refreshesWithin,
  splitRanges,
} from './parse.ts';

// What wrk 4.1 (Debian) printed for a run of the bench.
const WRK_OUTPUT = `Running 2s test @ http://127.0.0.1:36985/v2/bench/small/manifests/v1
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    16.17ms   10.55ms  98.38ms   87.23%
    Req/Sec     1.65k   561.00     2.70k    67.50%
  Latency Distribution
     50%   12.67ms
     75%   18.72ms
     90%   27.87ms
     99%   52.37ms
  6667 requests in 2.04s, 5.13MB read
Requests/sec:   3269.61
Transfer/sec:      2.52MB
`;

describe('parseWrkOutput', () => {
  it('reads the rate, the count and the latency distribution in milliseconds', () => {
    expect(parseWrkOutput(WRK_OUTPUT)).toEqual({
      requests: 6667,
      requestsPerSec: 3269.61,
      latencyMs: { p50: 12.67, p75: 18.72, p90: 27.87, p99: 52.37 },
      non2xx3xx: 0,
      socketErrors: { connect: 0, read: 0, write: 0, timeout: 0 },
    });
  });

  it('reads non-2xx/3xx responses and socket errors, which wrk prints only when not zero', () => {
    const output = WRK_OUTPUT.replace(
      'Requests/sec:',
      '  Socket errors: connect 0, read 3, write 1, timeout 12\n  Non-2xx or 3xx responses: 5\nRequests/sec:',
    )
      .replace('50%   12.67ms', '50%  812.00us')
      .replace('99%   52.37ms', '99%    1.20s');
    const result = parseWrkOutput(output);
    expect(result.non2xx3xx).toBe(5);
    expect(result.socketErrors).toEqual({ connect: 0, read: 3, write: 1, timeout: 12 });
    expect(result.latencyMs.p50).toBeCloseTo(0.812, 6);
    expect(result.latencyMs.p99).toBe(1200);
  });

  it('refuses output without --latency or without a summary', () => {
    expect(() =>
      parseWrkOutput(WRK_OUTPUT.replace(/ {2}Latency Distribution[\s\S]*?99%.*\n/, '')),
    ).toThrow(/no 50% latency/);
    expect(() => parseWrkOutput('unable to connect to 127.0.0.1:1 Connection refused\n')).toThrow(
      /no Requests\/sec/,
    );
  });
});

describe('parseWrkTime', () => {
  it.each([
    ['812.00us', 0.812],
    ['1.23ms', 1.23],
    ['2.00s', 2000],
    ['1.50m', 90_000],
    ['1.00h', 3_600_000],
  ])('%s is %d ms', (text, ms) => {
    expect(parseWrkTime(text)).toBeCloseTo(ms, 6);
  });

  it.each(['', '12', '1.2 ms', 'fast'])('refuses %j', (text) => {
    expect(() => parseWrkTime(text)).toThrow(TypeError);
  });
});

describe('parseSize', () => {
  it.each([
    ['1G', 1024 ** 3],
    ['1GiB', 1024 ** 3],
    ['1gb', 1024 ** 3],
    ['256M', 256 * 1024 ** 2],
    ['256MiB', 256 * 1024 ** 2],
    ['1.5G', 1.5 * 1024 ** 3],
    ['2048K', 2 * 1024 ** 2],
    ['1048576', 1024 ** 2],
    [' 64M ', 64 * 1024 ** 2],
  ])('%j is %d bytes', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it.each(['', 'big', '1T', '-1G', '1 G B'])('refuses %j, naming the accepted forms', (text) => {
    expect(() => parseSize(text)).toThrow(/not a size such as 256M or 1G/);
  });

  it('refuses sizes below 1 MiB, or below the minimum given', () => {
    expect(() => parseSize('512K')).toThrow(/below 1 MiB/);
    expect(parseSize('256K', 1)).toBe(256 * 1024);
    expect(() => parseSize('0', 1)).toThrow(/below 1 B/);
  });
});

describe('counterSum', () => {
  const exposition = [
    '# HELP registry_proxy_upstream_token_fetches_total Upstream token fetches.',
    '# TYPE registry_proxy_upstream_token_fetches_total counter',
    'registry_proxy_upstream_token_fetches_total{upstream="a",outcome="ok"} 3',
    'registry_proxy_upstream_token_fetches_total{upstream="b",outcome="error"} 2',
    'registry_proxy_upstream_token_fetches_total_other 100',
    'registry_proxy_credential_fetches_total 4 1700000000000',
  ].join('\n');

  it('adds every sample of the counter across labels, and only of that counter', () => {
    expect(counterSum(exposition, 'registry_proxy_upstream_token_fetches_total')).toBe(5);
    expect(counterSum(exposition, 'registry_proxy_credential_fetches_total')).toBe(4);
  });

  it('is 0 for a counter that is absent', () => {
    expect(counterSum(exposition, 'registry_proxy_nothing_total')).toBe(0);
  });
});

describe('parseBearerChallenge', () => {
  it('reads realm and service, quoted or not, any case of the scheme', () => {
    expect(
      parseBearerChallenge(
        'Bearer realm="http://127.0.0.1:5000/token",service="proxy",scope="repository:a/b:pull"',
      ),
    ).toEqual({ realm: 'http://127.0.0.1:5000/token', service: 'proxy' });
    expect(parseBearerChallenge('bearer service=s, realm="https://x/t\\"q"')).toEqual({
      realm: 'https://x/t"q',
      service: 's',
    });
  });

  it.each(['Basic realm="x"', 'Bearer service="s"', ''])('refuses %j', (header) => {
    expect(() => parseBearerChallenge(header)).toThrow();
  });
});

describe('refreshesWithin', () => {
  it('counts the first fetch and one per lifetime less the margin', () => {
    expect(refreshesWithin(60_000, 60_000, 10_000)).toBe(2);
    expect(refreshesWithin(49_999, 60_000, 10_000)).toBe(1);
    expect(refreshesWithin(60_000, 120_000, 60_000)).toBe(2);
  });

  it('refuses a margin as long as the lifetime', () => {
    expect(() => refreshesWithin(1, 10, 10)).toThrow(RangeError);
  });
});

describe('splitRanges', () => {
  it.each([
    [1, 1],
    [8, 8],
    [1024, 8],
    [1_073_864_828, 8],
    [1001, 3],
  ])('covers %d bytes in %d ranges with no gap or overlap', (size, count) => {
    const ranges = splitRanges(size, count);
    expect(ranges).toHaveLength(count);
    expect(ranges[0]?.start).toBe(0);
    expect(ranges.at(-1)?.end).toBe(size - 1);
    for (let i = 1; i < ranges.length; i++)
      expect(ranges[i]?.start).toBe((ranges[i - 1]?.end ?? Number.NaN) + 1);
    expect(ranges.reduce((sum, r) => sum + r.end - r.start + 1, 0)).toBe(size);
  });

  it('refuses more ranges than bytes', () => {
    expect(() => splitRanges(4, 8)).toThrow(RangeError);
  });
});

describe('figures as text', () => {
  it('takes the median of odd and even counts without reordering the input', () => {
    const values = [3, 1, 2];
    expect(median(values)).toBe(2);
    expect(values).toEqual([3, 1, 2]);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(() => median([])).toThrow(RangeError);
  });

  it.each([
    [1024 ** 3, '1 GiB'],
    [256 * 1024 ** 2, '256 MiB'],
    [1536, '1.50 KiB'],
    [100, '100 B'],
  ])('formats %d bytes as %s', (bytes, text) => {
    expect(formatSize(bytes)).toBe(text);
  });

  it('aligns the first column left and the others right', () => {
    expect(
      formatTable([
        ['', 'a', 'bb'],
        ['row one', '1.5', '10'],
        ['two', '100.25', '2'],
      ]),
    ).toBe(['              a  bb', 'row one     1.5  10', 'two      100.25   2'].join('\n'));
  });
});

describe('percentile', () => {
  it('takes the nearest rank', () => {
    const values = Array.from({ length: 100 }, (_, i) => 100 - i); // 100..1, unsorted
    expect(percentile(values, 50)).toBe(50);
    expect(percentile(values, 99)).toBe(99);
    expect(percentile(values, 100)).toBe(100);
    expect(percentile([7], 50)).toBe(7);
    expect(() => percentile([], 50)).toThrow(RangeError);
    expect(() => percentile([1], 0)).toThrow(RangeError);
  });
});
