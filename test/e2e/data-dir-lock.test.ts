import { describe, it, expect, afterEach } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, eventually, freePort, startDaemon, type Daemon } from '../helpers/processes.js';
import { lockDataDir, DataDirBusyError } from '../../src/data-dir-lock.js';
import { tempDir } from '../helpers/temp-dir.js';

/** Found by a new user: two embedded daemons on one data dir both ran (two evaluators, schedulers, helpdesk senders on one store). */
describe('one embedded xcared per data dir', () => {
  const dirs: ReturnType<typeof tempDir>[] = [];
  const daemons: Daemon[] = [];
  afterEach(async () => {
    for (const d of daemons.splice(0)) await d.kill9();
    for (const d of dirs.splice(0)) d.cleanup();
  });

  it('a second daemon on the same data dir exits 1 naming the holder; after a kill -9 of the first, a new one starts', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const first = await startDaemon(join(dir.path, 'data'));
    daemons.push(first);
    const config = join(dir.path, 'second.yaml');
    writeFileSync(
      config,
      `dataDir: ${first.dataDir}\nadminToken: ${first.adminToken}\nmqtt: { host: 127.0.0.1, port: ${await freePort()} }\nhttp: { host: 127.0.0.1, port: ${await freePort()} }\n`,
    );
    const second = spawn(process.execPath, [join(ROOT, 'bin/xcared.js'), '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    second.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => second.once('exit', (c) => resolve(c)));
    expect(code).toBe(1);
    expect(stderr).toContain(`is in use by another xcared (pid ${first.proc.pid})`);
    expect((await fetch(`${first.url}/readyz`)).status).toBe(200);

    await first.kill9();
    expect(existsSync(join(first.dataDir, 'xcared.pid'))).toBe(true); // left behind by the kill -9
    const third = await startDaemon(first.dataDir);
    daemons.push(third);
    expect((await fetch(`${third.url}/readyz`)).status).toBe(200);
    expect(await third.stop()).toBe(0);
    expect(existsSync(join(first.dataDir, 'xcared.pid'))).toBe(false); // a clean stop removes it
  });

  it('lockDataDir: a live holder refuses, a dead holder is taken over, the release removes only our own file', () => {
    const dir = tempDir();
    dirs.push(dir);
    const release = lockDataDir(dir.path, process.pid);
    expect(() => lockDataDir(dir.path, process.pid + 1)).toThrow(DataDirBusyError);
    release();
    writeFileSync(join(dir.path, 'xcared.pid'), '999999999\n'); // no such process
    const again = lockDataDir(dir.path, process.pid);
    again();
    expect(existsSync(join(dir.path, 'xcared.pid'))).toBe(false);
  });

  // Found from outside: `kill -9` of xcared, then at once `xcared` again, refused with "in use by another xcared":
  // the killed daemon's parent (there, PID 1 of a container) had not reaped it yet, and kill(pid, 0) answers for
  // a zombie as for a live process. A pid file naming a reused pid (another program after a reboot or a container
  // restart) would refuse every start the same way. A holder counts only when it is the very process that wrote
  // the file (its start time and boot) and not a zombie.
  it.skipIf(!existsSync('/proc/self/stat'))('a daemon killed with kill -9 and not yet reaped (a zombie) does not hold the data dir', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const dataDir = join(dir.path, 'data');
    const first = await startDaemon(dataDir);
    await first.stop();
    // The first daemon again, now as the child of a parent that never reaps it (sh execs into sleep).
    const parent = spawn('sh', ['-c', `"${process.execPath}" "${join(ROOT, 'bin/xcared.js')}" --config "${first.configFile}" >/dev/null 2>&1 & echo $!; exec sleep 120`], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    try {
      const pid = Number(await new Promise<string>((resolve) => parent.stdout!.once('data', (d: Buffer) => resolve(d.toString().trim()))));
      await eventually(async () => (await fetch(`${first.url}/readyz`).catch(() => undefined))?.status === 200, 60_000, 'the reparented daemon ready');
      expect(Number(readFileSync(join(dataDir, 'xcared.pid'), 'utf8').split('\n')[0])).toBe(pid);
      process.kill(pid, 'SIGKILL');
      await eventually(() => readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').startsWith('Z'), 10_000, 'a zombie');
      const again = await startDaemon(dataDir);
      daemons.push(again);
      expect((await fetch(`${again.url}/readyz`)).status).toBe(200);
    } finally {
      parent.kill('SIGKILL');
    }
  });

  it.skipIf(!existsSync('/proc/self/stat'))('lockDataDir: a pid file whose pid now belongs to another process (reused) is taken over', () => {
    const dir = tempDir();
    dirs.push(dir);
    const release = lockDataDir(dir.path, process.pid);
    const written = readFileSync(join(dir.path, 'xcared.pid'), 'utf8');
    expect(written.split('\n')[0]).toBe(String(process.pid)); // the first line stays the bare pid, for people and scripts
    release();
    // A live process (our parent) named by a file written by another process of that pid: another start time.
    const other = String(process.ppid);
    writeFileSync(join(dir.path, 'xcared.pid'), written.replace(String(process.pid), other).replace(/^(\d+\n\S+ )\d+/, '$11'));
    expect(() => lockDataDir(dir.path, process.pid)).not.toThrow();
    // The same file content naming a live process with its true identity still refuses.
    const mine = lockDataDir(dir.path, process.pid);
    expect(() => lockDataDir(dir.path, process.pid + 1)).toThrow(DataDirBusyError);
    mine();
  });
});
