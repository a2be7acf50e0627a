// biome-ignore-all lint/suspicious/noTemplateCurlyInString: these strings are systemd command lines, where ${VAR} is systemd's syntax
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  expandWords,
  parseCommandLine,
  parseEnvironmentAssignments,
  parseUnitFile,
  referencedVariables,
  splitWords,
  UnitSyntaxError,
} from './systemd-unit.js';

describe('parseUnitFile', () => {
  it('joins backslash continuations, skipping comment lines inside them', () => {
    const text = [
      '[Unit]',
      'Description=kubelet',
      '',
      '[Service]',
      '# a comment',
      '; another',
      'ExecStart=/usr/bin/kubelet \\',
      '    --config /c.yaml \\',
      '# commented-out flag',
      '    $KUBELET_ARGS',
      'Environment="A=1"\r',
      'not an assignment',
      'Restart=always',
    ].join('\n');
    expect(parseUnitFile(text)).toEqual([
      { section: 'Unit', key: 'Description', value: 'kubelet', line: 2 },
      {
        section: 'Service',
        key: 'ExecStart',
        value: '/usr/bin/kubelet  --config /c.yaml  $KUBELET_ARGS',
        line: 7,
      },
      { section: 'Service', key: 'Environment', value: '"A=1"', line: 11 },
      { section: 'Service', key: 'Restart', value: 'always', line: 13 },
    ]);
  });

  it('keeps empty assignments (they reset a list) and a continuation at end of file', () => {
    expect(parseUnitFile('[Service]\nExecStart=\nExecStart=/bin/k \\')).toEqual([
      { section: 'Service', key: 'ExecStart', value: '', line: 2 },
      { section: 'Service', key: 'ExecStart', value: '/bin/k', line: 3 },
    ]);
  });
});

describe('splitWords', () => {
  it.each([
    ['a b\tc', ['a', 'b', 'c']],
    ['  lead and trail  ', ['lead', 'and', 'trail']],
    ['"a b" c', ['a b', 'c']],
    ["'a \"b' c", ['a "b', 'c']],
    ['--labels="${X}"', ['--labels=${X}']],
    ['a""b', ['ab']],
    ['""', ['']],
    ['a\\sb', ['a b']],
    ['\\x41\\102\\n', ['AB\n']],
    ['"q\\"q"', ['q"q']],
  ])('splits %j with C escapes', (input, words) => {
    expect(splitWords(input, { cEscapes: true })).toEqual(words);
  });

  it('takes the next character literally without C escapes', () => {
    expect(splitWords('a\\ b c\\n', { cEscapes: false })).toEqual(['a b', 'cn']);
  });

  it.each(['"open', "'open", 'trailing\\', '\\q'])('rejects %j', (input) => {
    expect(() => splitWords(input, { cEscapes: true })).toThrow(UnitSyntaxError);
  });

  it('gives back any words written double-quoted with escapes', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 20 }), { maxLength: 8 }), (words) => {
        const line = words.map((w) => `"${w.replace(/[\\"]/g, (c) => `\\${c}`)}"`).join(' ');
        expect(splitWords(line, { cEscapes: true })).toEqual(words);
      }),
    );
  });
});

describe('parseCommandLine', () => {
  it.each([
    ['/usr/bin/kubelet $A', '/usr/bin/kubelet', ['$A'], false],
    ['-/usr/bin/kubelet --v=2', '/usr/bin/kubelet', ['--v=2'], false],
    [':/usr/bin/kubelet $A', '/usr/bin/kubelet', ['$A'], true],
    ['@/usr/bin/kubelet kubelet-argv0 --v=2', '/usr/bin/kubelet', ['--v=2'], false],
    ['+!kubelet', 'kubelet', [], false],
  ])('%j', (value, executable, args, noSubstitution) => {
    const cmd = parseCommandLine(value);
    expect(cmd.executable).toBe(executable);
    expect(cmd.args).toEqual(args);
    expect(cmd.noSubstitution).toBe(noSubstitution);
  });

  it.each(['', '-', '/bin/a ; /bin/b', '@/bin/a'])('refuses %j', (value) => {
    expect(() => parseCommandLine(value)).toThrow(UnitSyntaxError);
  });
});

describe('expandWords', () => {
  const env = new Map([
    ['OPTS', '--a=1  --b="x y"\t--c'],
    ['ONE', 'one value'],
    ['EMPTY', ''],
  ]);

  it.each([
    [['$OPTS'], ['--a=1', '--b=x y', '--c']],
    [['${OPTS}'], ['--a=1  --b="x y"\t--c']],
    [['--v=${ONE}'], ['--v=one value']],
    [
      ['$ONE', 'tail'],
      ['one', 'value', 'tail'],
    ],
    [['$UNSET', '$EMPTY', 'x'], ['x']],
    [['${UNSET}'], ['']],
    [['--p=$ONE'], ['--p=$ONE']],
    [
      ['$$ONE', 'a$$b'],
      ['$ONE', 'a$b'],
    ],
  ])('%j', (words, expanded) => {
    expect(expandWords(words, env)).toEqual(expanded);
  });

  it('lists the variables referenced, in order, once each', () => {
    expect(referencedVariables(['$B', '--x=${A}', '$B', '${C}${A}', '--y=$D', '$$E'])).toEqual([
      'B',
      'A',
      'C',
    ]);
  });
});

describe('parseEnvironmentAssignments', () => {
  it('reads quoted assignments and reports words that are not NAME=value', () => {
    expect(parseEnvironmentAssignments(`"A=b c" 'D=--e=1 --f' G= bad 1X=2 =v`)).toEqual({
      assignments: [
        ['A', 'b c'],
        ['D', '--e=1 --f'],
        ['G', ''],
      ],
      invalid: ['bad', '1X=2', '=v'],
    });
  });
});
