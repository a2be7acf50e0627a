/**
 * parseImageReference + detectProvider sit on every request path of the proxy. The baseline,
 * measured in the same run, is the distribution/reference grammar as one anchored JS regex:
 * what a straightforward parser does, with no normalisation and no provider detection.
 * Target: more than 1,000,000 parse+detect calls per second on one core.
 */
import { test } from 'vitest';
import { detectProvider, parseImageReference } from '../src/index.js';

const refs = [
  'alpine',
  'nginx:1.27',
  'gcr.io/my-project/app:v1',
  'europe-docker.pkg.dev/acme/images/app@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  '123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:2024.11.3',
  'myregistry.azurecr.io/team/service:latest',
  'ghcr.io/org/tool:v0.1.0',
  'localhost:5000/library/busybox:1.36',
];

const component = '[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*';
const domainComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const host = `(?:${domainComponent}(?:\\.${domainComponent})*|\\[(?:[a-fA-F0-9:]+)\\])`;
const referenceRegexp = new RegExp(
  `^((?:${host}(?::[0-9]+)?/)?${component}(?:/${component})*)(?::([\\w][\\w.-]{0,127}))?(?:@([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9A-Fa-f]{32,}))?$`,
);

/**
 * Calls per benchmark iteration: tinybench reads the clock around every iteration, which on a
 * small VM costs more than one parse, so each iteration makes BATCH calls.
 */
const BATCH = 64;
let sink = 0;
const OURS = 'parseImageReference + detectProvider(registry)';
const PARSE_ONLY = 'parseImageReference alone';
const BASELINE = 'baseline: distribution grammar regex, match only';

test('parse + detect, calls per second', async ({ bench }) => {
  const results = await bench.compare(
    bench(OURS, () => {
      for (let i = 0; i < BATCH; i++) {
        const ref = parseImageReference(refs[i & 7] as string);
        if (detectProvider(ref.registry)) sink++;
      }
    }),
    bench(PARSE_ONLY, () => {
      for (let i = 0; i < BATCH; i++)
        sink += parseImageReference(refs[i & 7] as string).repository.length;
    }),
    bench(BASELINE, () => {
      for (let i = 0; i < BATCH; i++) {
        if (referenceRegexp.exec(refs[i & 7] as string)) sink++;
      }
    }),
  );
  const ours = results.get(OURS).throughput.mean * BATCH;
  const parseOnly = results.get(PARSE_ONLY).throughput.mean * BATCH;
  const base = results.get(BASELINE).throughput.mean * BATCH;
  process.stdout.write(
    `parse+detect: ${Math.round(ours).toLocaleString('en')} calls/s on one core ` +
      `(target > 1,000,000); ${(ours / base).toFixed(2)}x the grammar-regex baseline ` +
      `(${Math.round(base).toLocaleString('en')} matches/s); parse alone ` +
      `${Math.round(parseOnly).toLocaleString('en')} calls/s [sink ${sink > 0}]\n`,
  );
});
