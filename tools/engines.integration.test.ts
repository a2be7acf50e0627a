import { execFileSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startContainerd, startDockerd } from './stand-ins/index.js';

/** Command lines of live processes that mention `text`. */
function processesMentioning(text: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      const argv = readFileSync(join('/proc', pid, 'cmdline'), 'utf8');
      if (argv.includes(text)) found.push(argv.replaceAll('\0', ' '));
    } catch {
      // exited
    }
  }
  return found;
}

describe('containerd and dockerd stand-ins', () => {
  it('start on private sockets, run a container, and leave no process, mount or dir behind', async () => {
    const containerd = await startContainerd();
    const dockerd = await startDockerd({ containerdSocket: containerd.socket }).catch(
      async (err: unknown) => {
        await containerd.close();
        throw err;
      },
    );
    const roots = [dirname(containerd.socket), dockerd.host.replace(/^unix:\/\//, '')].map((p) =>
      p.endsWith('.sock') ? dirname(p) : p,
    );
    try {
      expect(containerd.socket.length).toBeLessThan(108);
      expect((await containerd.ctr(['version'])).stdout).toMatch(/Server:/);
      const info = await dockerd.docker(['info', '--format', '{{.Driver}}']);
      expect(info.stdout.trim()).toBe('vfs');
      // a container from an imported one-file image (docker.io's static tini): runc, the shim
      // and vfs work here, and the shim is gone after close
      const dir = mkdtempSync(join(tmpdir(), 'engines-test-'));
      try {
        mkdirSync(join(dir, 'root'));
        copyFileSync('/usr/bin/docker-init', join(dir, 'root', 'tini'));
        execFileSync('tar', ['-C', join(dir, 'root'), '-cf', join(dir, 'root.tar'), '.']);
        await dockerd.docker(['import', join(dir, 'root.tar'), 'tini:test']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
      const ran = await dockerd.docker([
        'run',
        '--rm',
        '--network',
        'host',
        'tini:test',
        '/tini',
        '--version',
      ]);
      expect(ran.stdout).toMatch(/^tini version/);
    } finally {
      await dockerd.close();
      await containerd.close();
    }
    for (const root of roots) {
      expect(existsSync(root)).toBe(false);
      expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(root);
      expect(processesMentioning(root)).toEqual([]);
    }
  }, 180_000);

  it('refuses a containerd socket that is not there, before starting anything', async () => {
    await expect(startDockerd({ containerdSocket: '/tmp/no-such-dir/c.sock' })).rejects.toThrow(
      /^containerdSocket: the socket of a running containerd/,
    );
  });
});
