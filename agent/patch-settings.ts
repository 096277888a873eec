import { isAbsolute, join, resolve } from 'node:path';
import { MAX_TIMER_MS } from './config.js';

/** The `patches:` mapping of agent.yaml, validated here (the agent config passes it through raw). */
export interface PatchSettings {
  /** PEM public key files of the release keys this agent pins. */
  keys: string[];
  threshold: number;
  clockSkewS: number;
  downloadDeadlineS: number;
  install?: string;
  check?: string;
  rollback?: string;
  commandTimeoutS: number;
  stagingDir: string;
  /** Command that reboots the device when an install exits 76 (reboot requested), e.g. `systemctl reboot`. */
  reboot?: string;
  /** Where the boot id is read (Linux: /proc/sys/kernel/random/boot_id); a reboot is a new boot id. */
  bootIdFile: string;
}

export class PatchSettingsError extends Error {}

const KEYS = ['keys', 'threshold', 'clockSkewS', 'downloadDeadlineS', 'install', 'check', 'rollback', 'reboot', 'bootIdFile', 'commandTimeoutS', 'stagingDir'];

/** Validate with `patches.<key>: message` errors; every problem is reported at once. */
export function parsePatchSettings(raw: Record<string, unknown> | undefined, stateDir: string, baseDir = process.cwd()): PatchSettings {
  const r = raw ?? {};
  const errors: string[] = [];
  const fail = (key: string, msg: string) => errors.push(`patches.${key}: ${msg}`);
  for (const k of Object.keys(r)) if (!KEYS.includes(k)) fail(k, 'unknown key');

  const keys: string[] = [];
  if (r.keys !== undefined && r.keys !== null) {
    if (!Array.isArray(r.keys)) fail('keys', 'must be a list of PEM public key paths');
    else
      r.keys.forEach((k, i) => {
        if (typeof k !== 'string' || k.trim() === '') fail(`keys.${i}`, 'must be a file path');
        else keys.push(isAbsolute(k) ? k : resolve(baseDir, k));
      });
  }
  // Seconds become timers (command timeout, download deadline): at most what a Node timer keeps (2^31-1 ms).
  const num = (key: string, def: number, min: number, integer = false, max = Math.floor(MAX_TIMER_MS / 1000)): number => {
    const v = r[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || (integer && !Number.isInteger(v))) {
      fail(key, `must be ${integer ? 'an integer' : 'a number'} >= ${min}`);
      return def;
    }
    if (v > max) {
      fail(key, `must be at most ${max}`);
      return def;
    }
    return v;
  };
  const cmd = (key: string): string | undefined => {
    const v = r[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string' || v.trim() === '') {
      fail(key, 'must be a shell command');
      return undefined;
    }
    return v;
  };
  const settings: PatchSettings = {
    keys,
    threshold: num('threshold', 1, 1, true),
    clockSkewS: num('clockSkewS', 300, 0),
    downloadDeadlineS: num('downloadDeadlineS', 600, 0.001),
    commandTimeoutS: num('commandTimeoutS', 300, 0.001),
    stagingDir: join(stateDir, 'staging'),
    bootIdFile: '/proc/sys/kernel/random/boot_id',
  };
  for (const k of ['install', 'check', 'rollback', 'reboot'] as const) {
    const c = cmd(k);
    if (c !== undefined) settings[k] = c;
  }
  if (r.stagingDir !== undefined && r.stagingDir !== null) {
    if (typeof r.stagingDir !== 'string' || r.stagingDir.trim() === '') fail('stagingDir', 'must be a directory path');
    else settings.stagingDir = isAbsolute(r.stagingDir) ? r.stagingDir : resolve(baseDir, r.stagingDir);
  }
  if (r.bootIdFile !== undefined && r.bootIdFile !== null) {
    if (typeof r.bootIdFile !== 'string' || r.bootIdFile.trim() === '') fail('bootIdFile', 'must be a file path');
    else settings.bootIdFile = isAbsolute(r.bootIdFile) ? r.bootIdFile : resolve(baseDir, r.bootIdFile);
  }
  if (keys.length > 0 && settings.threshold > keys.length) fail('threshold', `is ${settings.threshold} but only ${keys.length} keys are pinned`);
  if (errors.length) throw new PatchSettingsError(errors.join('; '));
  return settings;
}
