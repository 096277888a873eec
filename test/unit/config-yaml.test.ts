import { describe, it, expect, afterAll } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { tempDir } from '../helpers/temp-dir.js';

/** Found by the config-file fuzzing of issue 11: what the YAML layer let through or named badly. */
describe('config file YAML', () => {
  const dir = tempDir('xcare-config-yaml-');
  afterAll(() => dir.cleanup());
  const load = (text: string) => {
    const file = join(dir.path, 'config.yaml');
    writeFileSync(file, text);
    return () => loadConfig(file, {});
  };

  it('refuses an unknown tag instead of loading it as a string (with a process warning)', () => {
    expect(load('mqtt: { host: !x 127.0.0.1 }\n')).toThrow(ConfigError);
    expect(load('mqtt: { host: !x 127.0.0.1 }\n')).toThrow(/not valid YAML: .*tag/i);
  });

  it('names an empty key (YAML `?`) as ""', () => {
    expect(load('?\n')).toThrow(/: "": unknown key/);
  });

  it('still loads plain YAML', () => {
    expect(load('mqtt: { host: 127.0.0.1, port: 1884 }\n')().mqtt.port).toBe(1884);
  });
});
