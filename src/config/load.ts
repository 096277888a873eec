import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { configSchema, type Config } from './schema.js';
import { resolveConfigPaths } from './paths.js';

/** Environment variables operators set per host (PROTOCOL.md "Command line"), applied over the file. */
const ENV_OVERRIDES: { env: string; path: string[]; type: 'string' | 'port' }[] = [
  { env: 'XCARE_DATA_DIR', path: ['dataDir'], type: 'string' },
  { env: 'XCARE_MQTT_PORT', path: ['mqtt', 'port'], type: 'port' },
  { env: 'XCARE_MQTTS_PORT', path: ['mqtt', 'tls', 'port'], type: 'port' },
  { env: 'XCARE_HTTP_HOST', path: ['http', 'host'], type: 'string' },
  { env: 'XCARE_HTTP_PORT', path: ['http', 'port'], type: 'port' },
  { env: 'XCARE_ADMIN_TOKEN', path: ['adminToken'], type: 'string' },
  { env: 'XCARE_LOG_LEVEL', path: ['log', 'level'], type: 'string' },
  { env: 'XCARE_LOG_FORMAT', path: ['log', 'format'], type: 'string' },
  { env: 'XCARE_MQTT_BROKER_URL', path: ['mqtt', 'broker', 'url'], type: 'string' },
  { env: 'XCARE_DATABASE_URL', path: ['store', 'url'], type: 'string' },
];

function formatIssues(issues: z.core.$ZodIssue[], source: string): string {
  return issues
    .map((issue) => {
      const path = issue.path.length ? issue.path.join('.') : '(root)';
      if (issue.code === 'unrecognized_keys') {
        const keys = (issue as { keys: string[] }).keys;
        // An empty key (YAML `?`) is shown as "" so the line still names it (issue 11 config fuzzing).
        return keys.map((k) => `${source}: ${[...issue.path, k].map((p) => (p === '' ? '""' : String(p))).join('.')}: unknown key`).join('\n');
      }
      return `${source}: ${path}: ${issue.message}`;
    })
    .join('\n');
}

/** Validate a parsed config object; throws ConfigError listing every bad key as `path: message`. */
export function validateConfig(raw: unknown, source = 'config'): Readonly<Config> {
  const parsed = configSchema.safeParse(raw ?? {});
  if (!parsed.success) throw new ConfigError(formatIssues(parsed.error.issues, source));
  return deepFreeze(parsed.data);
}

export function applyEnv(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out = structuredClone(raw);
  for (const o of ENV_OVERRIDES) {
    const value = env[o.env];
    if (value === undefined || value === '') continue;
    let converted: unknown = value;
    if (o.type === 'port') {
      converted = /^\d+$/.test(value) ? Number(value) : value;
    }
    let node = out as Record<string, unknown>;
    for (const key of o.path.slice(0, -1)) {
      if (typeof node[key] !== 'object' || node[key] === null) node[key] = {};
      node = node[key] as Record<string, unknown>;
    }
    node[o.path[o.path.length - 1]!] = converted;
  }
  return out;
}

/**
 * Read the YAML file (if any), resolve its relative paths against its directory (src/config/paths.ts),
 * apply environment overrides, validate. The files the config names are opened by checkConfigFiles.
 */
export function loadConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  let raw: unknown = {};
  const source = file ?? 'defaults';
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`${file}: cannot read: ${(err as Error).message}`);
    }
    try {
      const doc = parseDocument(text);
      // A warning (an unknown tag such as `!x`) is refused like an error: yaml would otherwise print it
      // on the process and load the value as a plain string (issue 11 config fuzzing).
      const problem = doc.errors[0] ?? doc.warnings[0];
      if (problem) throw problem;
      raw = doc.toJS() ?? {};
    } catch (err) {
      throw new ConfigError(`${file}: not valid YAML: ${(err as Error).message.split('\n')[0]}`);
    }
    if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`${file}: (root): expected a mapping`);
    raw = resolveConfigPaths(raw as Record<string, unknown>, dirname(resolve(file)));
  }
  return validateConfig(applyEnv(raw as Record<string, unknown>, env), source);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
