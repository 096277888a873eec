import { describe, it, expect } from 'vitest';
import { runCli } from '../../src/cli/xcarectl.js';

/** `--help` everywhere: the whole tool, a group of commands, and one command (found by a new user: groups printed the top-level help). */
async function help(argv: string[]): Promise<{ code: number; text: string }> {
  let text = '';
  const code = await runCli(argv, {}, (s) => (text += s));
  return { code, text };
}

describe('xcarectl --help', () => {
  it.each(['device', 'rollout', 'token', 'ticket', 'patch', 'customer'])('`%s --help` lists that group\'s subcommands only, exit 0', async (group) => {
    const { code, text } = await help([group, '--help']);
    expect(code).toBe(0);
    expect(text).toContain(`xcarectl [--url URL] [--token TOKEN] [--json] ${group} <command>`);
    const listed = text.split('\n').filter((l) => /^ {2}\S/.test(l)).map((l) => l.trim().split(/\s+/)[0]);
    expect(listed.length).toBeGreaterThan(0);
    expect(new Set(listed)).toEqual(new Set([group]));
  });

  it('a group without a subcommand lists its subcommands and exits 2', async () => {
    const { code, text } = await help(['rollout']);
    expect(code).toBe(2);
    expect(text).toContain('rollout watch');
    expect(text).not.toContain('device add');
  });

  it('one command prints its usage; the tool alone prints every command', async () => {
    expect((await help(['rollout', 'watch', '--help'])).text).toContain('Usage:');
    const all = await help(['--help']);
    expect(all.code).toBe(0);
    expect(all.text).toContain('device add');
    expect(all.text).toContain('rollout watch');
  });

  it('an unknown command is an error naming it', async () => {
    await expect(help(['nonsense'])).rejects.toThrow(/unknown command 'nonsense'/);
  });
});
