import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  EditError,
  environmentLine,
  MARKER,
  quoteEnvValue,
  setConfigFields,
  setEnvAssignment,
  withFlags,
  withoutOurLines,
} from './edit.js';
import { parseEnvFile } from './env-file.js';
import { parseEnvironmentAssignments, parseUnitFile } from './systemd-unit.js';

const E = 'unix:///run/kubelet-image-service/cri.sock';

describe('setConfigFields', () => {
  it('adds a missing key as the last line of a YAML file', () => {
    expect(
      setConfigFields('kind: KubeletConfiguration\nport: 1\n', 'yaml', { imageServiceEndpoint: E }),
    ).toBe(`kind: KubeletConfiguration\nport: 1\nimageServiceEndpoint: "${E}"\n`);
    expect(setConfigFields('kind: K', 'yaml', { x: 'y' })).toBe('kind: K\nx: "y"\n');
  });

  it('replaces an existing top-level YAML key in place, not a nested one', () => {
    const text = 'a:\n  imageServiceEndpoint: nested\nimageServiceEndpoint: old # c\nz: 1\n';
    expect(setConfigFields(text, 'yaml', { imageServiceEndpoint: E })).toBe(
      `a:\n  imageServiceEndpoint: nested\nimageServiceEndpoint: "${E}"\nz: 1\n`,
    );
  });

  it('falls back to the YAML library for a flow mapping', () => {
    const out = setConfigFields('{kind: K, port: 1}\n', 'yaml', { x: 'y' });
    expect(out).toContain('x: y');
    expect(out).toContain('port: 1');
  });

  it('adds a JSON member after the last one with the file indentation', () => {
    expect(setConfigFields('{\n    "kind": "K",\n    "a": [1]\n}\n', 'json', { x: 'y' })).toBe(
      '{\n    "kind": "K",\n    "a": [1],\n    "x": "y"\n}\n',
    );
    expect(setConfigFields('{"kind":"K"}', 'json', { x: 'y' })).toBe('{"kind":"K", "x": "y"}');
    expect(setConfigFields('{}', 'json', { x: 'y' })).toBe('{ "x": "y"}');
  });

  it('replaces a JSON value in place and refuses nothing it can verify', () => {
    expect(setConfigFields('{"x": "old\\"q", "k": 1}\n', 'json', { x: E })).toBe(
      `{"x": "${E}", "k": 1}\n`,
    );
    // The first "x" is nested: the text edit would change it, so the file is written again.
    const nested = '{\n  "a": {"x": "n"},\n  "x": "old"\n}\n';
    const out = setConfigFields(nested, 'json', { x: 'new' });
    expect(JSON.parse(out)).toEqual({ a: { x: 'n' }, x: 'new' });
  });

  it('keeps a byte-order mark', () => {
    expect(setConfigFields('\uFEFF{"k": 1}\n', 'json', { x: 'y' })).toBe(
      '\uFEFF{"k": 1, "x": "y"}\n',
    );
  });

  it.each([
    ['yaml', 'a: [\n'],
    ['yaml', '- a\n'],
    ['json', '{"a": '],
    ['json', '[1]'],
    ['yaml', 'a: 1\na: 2\n'],
  ] as const)('refuses %s that is not one mapping: %j', (format, text) => {
    expect(() => setConfigFields(text, format, { x: 'y' })).toThrow(EditError);
  });
});

describe('env files', () => {
  it('adds the marker and an assignment that wins, keeping earlier lines', () => {
    const text = 'KUBELET_OPTS="--a --b"\nOTHER=1';
    const out = setEnvAssignment(text, 'KUBELET_OPTS', '--a --b --c=d');
    expect(out).toBe(`${text}\n${MARKER}\nKUBELET_OPTS="--a --b --c=d"\n`);
    expect(withoutOurLines(out)).toBe(`${text}\n`);
    // Applying again replaces our line instead of adding a second one.
    expect(setEnvAssignment(out, 'KUBELET_OPTS', '--x')).toBe(
      `${text}\n${MARKER}\nKUBELET_OPTS="--x"\n`,
    );
  });

  it('any value without a line break reads back through the env-file parser', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary' }).filter((v) => !/[\n\r\0]/.test(v)),
        (value) => {
          const out = setEnvAssignment('A=1\n', 'V', value);
          expect(parseEnvFile(out).assignments.at(-1)).toEqual(['V', value]);
        },
      ),
    );
  });

  it('refuses a value with a line break', () => {
    expect(() => quoteEnvValue('a\nb')).toThrow(EditError);
    expect(() => environmentLine('A', 'a\rb')).toThrow(EditError);
  });
});

describe('environmentLine', () => {
  it('reads back through the unit parser for printable values', () => {
    fc.assert(
      fc.property(
        fc.string().filter((v) => !/[\n\r\0\\%]/.test(v)),
        (value) => {
          const [a] = parseUnitFile(`[Service]\n${environmentLine('KUBELET_EXTRA_ARGS', value)}\n`);
          expect(parseEnvironmentAssignments(a?.value ?? '').assignments).toEqual([
            ['KUBELET_EXTRA_ARGS', value],
          ]);
        },
      ),
    );
  });

  it('doubles % so systemd reads no specifier', () => {
    expect(environmentLine('A', '--x=50%')).toBe('Environment="A=--x=50%%"');
  });
});

describe('withFlags', () => {
  it('replaces --name=value and --name value forms, appends a missing flag', () => {
    expect(withFlags(['--a', '--x=1', '--b'], { x: '2' })).toEqual(['--a', '--x=2', '--b']);
    expect(withFlags(['--x', '1', '--b'], { x: '2' })).toEqual(['--x=2', '--b']);
    expect(withFlags(['--b'], { x: '2', y: '3' })).toEqual(['--b', '--x=2', '--y=3']);
    expect(withFlags(['--xy=1'], { x: '2' })).toEqual(['--xy=1', '--x=2']);
  });
});
