import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectLayout } from '@org/kubelet-patch';
import { afterAll, describe, expect, it } from 'vitest';

const main = join(import.meta.dirname, '..', 'dist', 'main.js');
const fixtures = join(
  import.meta.dirname,
  '..',
  '..',
  '..',
  'packages',
  'kubelet-patch',
  'test',
  'fixtures',
);
const scratch = mkdtempSync(join(tmpdir(), 'node-patcher-bin-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the built binary as a user would, and collects what it printed and its exit code. */
function run(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [main, ...args], { encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function expectOneLine(stderr: string, start: string): void {
  expect(stderr.startsWith(`node-patcher: ${start}`), stderr).toBe(true);
  expect(stderr.endsWith('\n')).toBe(true);
  expect(stderr.slice(0, -1)).not.toContain('\n');
  expect(stderr).not.toMatch(/\n\s+at /);
}

describe('node-patcher detect (the built binary)', () => {
  it.each([
    ['gke-cos', ['--host-root'], 'gke-cos', 'v1.31.6-gke.1020000', 'binary'],
    ['kubeadm-deb', ['--host-root='], 'kubeadm', 'v1.33.2', '/var/lib/dpkg/status'],
  ])(
    'prints the layout of %s as JSON and exits 0',
    async (fixture, flag, distribution, version, source) => {
      const root = join(fixtures, fixture);
      const args = flag[0]?.endsWith('=')
        ? ['detect', `${flag[0]}${root}`]
        : ['detect', ...flag, root];
      const { code, stdout, stderr } = await run(args);
      expect(stderr).toBe('');
      expect(code).toBe(0);
      const printed = JSON.parse(stdout);
      expect(printed).toMatchObject({
        distribution,
        kubelet: { version, versionSource: source },
      });
      // Exactly what the library describes, with the real kubelet stand-in run by both.
      expect(printed).toEqual(JSON.parse(JSON.stringify(await detectLayout(root))));
    },
  );

  it('refuses Bottlerocket: exit 1, one line on stderr saying what to use instead', async () => {
    const { code, stdout, stderr } = await run([
      'detect',
      '--host-root',
      join(fixtures, 'bottlerocket'),
    ]);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expectOneLine(stderr, 'Bottlerocket (os-release ID=bottlerocket');
    expect(stderr).toContain('settings.kubernetes.credential-providers');
  });

  it('refuses an unknown layout with exit 1, listing what it found', async () => {
    const root = join(scratch, 'bare');
    mkdirSync(join(root, 'etc'), { recursive: true });
    writeFileSync(join(root, 'etc', 'os-release'), 'ID=debian\nVERSION_ID="12"\n');
    const { code, stdout, stderr } = await run(['detect', '--host-root', root]);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expectOneLine(
      stderr,
      'unknown kubelet layout (found: os-release ID=debian VERSION_ID=12; no kubelet.service in',
    );
  });

  it.each([
    [[], 'no command; try node-patcher --help'],
    [['patch', '--host-root', '/'], 'unknown command "patch"'],
    [['apply', '--host-root', '/'], '--mode is required: image-service or containerd-mirror'],
    [['apply', '--host-root', '/', '--mode', 'sed'], '--mode must be one of'],
    [
      ['apply', '--host-root', '/', '--mode', 'image-service'],
      '--mode image-service needs --endpoint',
    ],
    [['apply', '--host-root', '/', '--dry-run=yes'], '--dry-run takes no value'],
    [
      ['apply', '--host-root', '/', '--mode', 'containerd-mirror', '--mirror', 'https://p'],
      '--mode containerd-mirror needs --mirror URL and --registries LIST',
    ],
    [
      ['apply', '--host-root', '/', '--mode', 'credential-provider', '--rules', '/dev/null'],
      '--mode credential-provider needs --plugin FILE and --rules FILE',
    ],
    [
      ['apply', '--host-root', '/', '--mode', 'credential-provider', '--plugin', '/nonexistent/x'],
      '--mode credential-provider needs --plugin FILE and --rules FILE',
    ],
    [
      [
        'apply',
        '--host-root',
        '/',
        '--mode',
        'credential-provider',
        '--plugin',
        '/nonexistent/x',
        '--rules',
        '/dev/null',
      ],
      '--plugin "/nonexistent/x" is not a file',
    ],
    [['revert', '--host-root', '/', '--timeout', '0'], '--timeout must be a whole number'],
    [
      ['revert', '--host-root', '/', '--kubelet-healthz', 'https://u:p@x/'],
      '--kubelet-healthz must be an http:// URL',
    ],
    [
      ['revert', '--host-root', '/', '--systemd-bus', 'tcp:host=x'],
      '--systemd-bus must be unix:path=/PATH',
    ],
    [
      ['revert', '--host-root', '/', '--state-dir', 'rel/x'],
      '--state-dir must be an absolute host path',
    ],
    [['detect'], '--host-root DIR is required'],
    [['detect', '--host-root'], '--host-root needs a value'],
    [['detect', '--host-root='], '--host-root needs a value'],
    [['detect', '--host-root', '/', '--host-root', '/'], '--host-root is given twice'],
    [['detect', '--dry-run'], 'unknown option "--dry-run" for detect'],
    [
      ['detect', '--host-root', '/nonexistent/host'],
      '--host-root "/nonexistent/host" is not a directory',
    ],
  ])('exits 2 on bad arguments: %j', async (args, message) => {
    const { code, stdout, stderr } = await run(args);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expectOneLine(stderr, message);
  });

  it('prints usage for --help, naming its commands and modes', async () => {
    const { code, stdout, stderr } = await run(['--help']);
    expect(code).toBe(0);
    expect(stderr).toBe('');
    expect(stdout).toMatch(/^usage: node-patcher detect --host-root DIR\n/);
    expect(stdout).toMatch(/node-patcher apply {2}--host-root DIR --mode MODE/);
    expect(stdout).toMatch(/node-patcher revert --host-root DIR/);
  });
});

describe('node-patcher apply --mode credential-provider refuses before writing (the built binary)', () => {
  /** A kubeadm node copy, a plugin script with the given body and rules with the given text. */
  function setUp(pluginBody: string, rules: string) {
    const dir = mkdtempSync(join(scratch, 'cp-'));
    const root = join(dir, 'host');
    cpSync(join(fixtures, 'kubeadm-deb'), root, { recursive: true, verbatimSymlinks: true });
    writeFileSync(join(dir, 'plugin'), `#!/bin/sh\n${pluginBody}\n`, { mode: 0o755 });
    writeFileSync(join(dir, 'rules.yaml'), rules);
    const args = [
      'apply',
      '--host-root',
      root,
      '--mode',
      'credential-provider',
      '--plugin',
      join(dir, 'plugin'),
      '--rules',
      join(dir, 'rules.yaml'),
      '--systemd-bus',
      `unix:path=${join(dir, 'no-bus')}`,
    ];
    return { root, args, listing: () => readdirSync(root, { recursive: true }).sort() };
  }
  const good = 'rules:\n  - match: ["docker.example.com"]\n    credentials: { provider: gcp }\n';

  it.each([
    ['rules: [{ match: "docker.example.com" }]\n', 'invalid '],
    ['rules: [\n', 'is not YAML or JSON'],
  ])('bad rules %j: exit 2, one line, nothing written', async (rules, message) => {
    const { args, listing } = setUp('exit 0', rules);
    const before = listing();
    const { code, stdout, stderr } = await run(args);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expectOneLine(stderr, '--rules: ');
    expect(stderr).toContain(message);
    expect(listing()).toEqual(before);
  });

  it('a plugin that does not run: exit 1, what it said, nothing written', async () => {
    const { args, listing } = setUp('echo "cannot execute binary file" >&2; exit 126', good);
    const before = listing();
    const { code, stdout, stderr } = await run(args);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expectOneLine(stderr, 'the plugin does not run: ');
    expect(stderr).toMatch(
      /credential-provider-config exited 126: cannot execute binary file; nothing was changed\n$/,
    );
    expect(listing()).toEqual(before);
  });

  it('--dry-run prints the route and the diff, runs nothing and needs no systemd', async () => {
    const { args, listing } = setUp('exit 1', good);
    const before = listing();
    const { code, stdout, stderr } = await run([...args, '--dry-run']);
    expect(code, stderr).toBe(0);
    expect(stdout).toContain('# kubelet has no credential-provider config');
    expect(stdout).toContain(
      '+++ b/etc/kubernetes/kubelet-image-service/credential-provider-config.yaml',
    );
    expect(stdout).toContain('create /etc/kubelet-image-service/rules.yaml');
    expect(stdout).not.toContain('provider: gcp');
    expect(listing()).toEqual(before);
  });
});
