import { describe, it, expect, afterEach } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, freePort, startDaemon, type Daemon } from '../helpers/processes.js';
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
});
