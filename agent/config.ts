/**
 * agent.yaml: load, validate by hand (no zod at run time, PROTOCOL.md "Command line"), fill
 * defaults, freeze. Every problem is reported as `key.path: message`, all of them at once, so an
 * installer fixes a file in one go (STYLE.md "Config").
 *
 * Relative paths (tokenFile, ca, stateDir, softwareVersionFile, softwareDir) are resolved against
 * the directory of the config file, so a config works wherever the agent is started from.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { DEVICE_ID_PATTERN } from '../src/protocol/names.js';
import { isLogLevel, LOG_LEVELS, type LogLevel } from './log.js';
import { parseYamlLite, YamlLiteError } from './yaml-lite.js';

export interface ProbeConfig {
  command: string;
  timeoutMs: number;
}
export interface SubsystemConfig extends ProbeConfig {
  name: string;
}
export interface SensorConfig extends ProbeConfig {
  id: string;
}

export interface AgentConfig {
  deviceId: string;
  deviceType: 'gateway' | 'sensor';
  /** The device token, from `token` or read from `tokenFile` at load time. */
  token: string;
  /** Absolute path of `tokenFile`, re-read before each connect so a re-provisioned token is picked up. */
  tokenFile?: string;
  brokerUrl: string;
  /** PEM CA bundle contents (read at load time) and its path, for mqtts. */
  ca?: { path: string; pem: Buffer };
  daemonUrl: string;
  intervalS: number;
  stateDir: string;
  softwareVersionFile: string;
  softwareDir: string;
  subsystems: readonly SubsystemConfig[];
  sensors: readonly SensorConfig[];
  reconnect: { minMs: number; maxMs: number };
  logLevel: LogLevel;
  /** Raw `patches:` mapping, passed through to the patch port unvalidated. */
  patches: Record<string, unknown> | undefined;
}

/** The longest delay a Node timer keeps (2^31-1 ms); every timer setting of the agent stays within it. */
export const MAX_TIMER_MS = 2_147_483_647;

export const AGENT_DEFAULTS = {
  intervalS: 30,
  stateDir: '/var/lib/xcare-agent',
  probeTimeoutMs: 5000,
  reconnect: { minMs: 1000, maxMs: 60_000 },
  logLevel: 'info' as LogLevel,
  daemonHttpPort: 8080,
};

/** Matches the daemon's heartbeatSchema bounds (intervalS <= 1 day, subsystem name <= 64 chars). */
const MAX_INTERVAL_S = 86_400;
const MAX_NAME = 64;

const TOP_KEYS = new Set([
  'deviceId', 'deviceType', 'token', 'tokenFile', 'brokerUrl', 'ca', 'daemonUrl', 'intervalS', 'stateDir',
  'softwareVersionFile', 'softwareDir', 'subsystems', 'sensors', 'reconnect', 'logLevel', 'patches',
]);

export class AgentConfigError extends Error {
  constructor(readonly issues: readonly string[], readonly file?: string) {
    super(`${file ? `${file}: ` : ''}${issues.join('; ')}`);
    this.name = 'AgentConfigError';
  }
}

/** Read, parse and validate a config file. Throws AgentConfigError (never anything else). */
export function loadAgentConfig(file: string): AgentConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new AgentConfigError([`cannot read config: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`], file);
  }
  let data: unknown;
  try {
    data = parseYamlLite(text);
  } catch (err) {
    if (err instanceof YamlLiteError) throw new AgentConfigError([`YAML ${err.message}`], file);
    throw err;
  }
  return parseAgentConfig(data, dirname(resolve(file)), file);
}

/**
 * Validate parsed YAML. `baseDir` resolves relative paths and the token file.
 * Throws AgentConfigError listing every problem.
 */
export function parseAgentConfig(data: unknown, baseDir: string, file?: string): AgentConfig {
  const issues: string[] = [];
  const fail = (path: string, message: string): undefined => {
    issues.push(`${path}: ${message}`);
    return undefined;
  };
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new AgentConfigError(['(root): must be a mapping of keys'], file);
  }
  const raw = data as Record<string, unknown>;
  for (const key of Object.keys(raw)) if (!TOP_KEYS.has(key)) fail(key, 'unknown key');

  const str = (path: string, value: unknown, required: boolean): string | undefined => {
    if (value === undefined || value === null) return required ? fail(path, 'is required') : undefined;
    if (typeof value !== 'string' || value.trim() === '') return fail(path, 'must be a non-empty string');
    return value;
  };
  // Node runs a timer longer than 2^31-1 ms after 1 ms: a probe timeout or a backoff past it would fire at once.
  const positive = (path: string, value: unknown, fallback: number, max = MAX_TIMER_MS): number | undefined => {
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) return fail(path, 'must be a positive number');
    if (value > max) return fail(path, `must be at most ${max}`);
    return value;
  };
  const pathOf = (value: string): string => (isAbsolute(value) ? value : resolve(baseDir, value));

  const deviceId = str('deviceId', raw.deviceId, true);
  if (deviceId !== undefined && !DEVICE_ID_PATTERN.test(deviceId)) {
    fail('deviceId', `must match ${DEVICE_ID_PATTERN.source} (PROTOCOL.md "Names")`);
  }
  let deviceType: AgentConfig['deviceType'] | undefined;
  if (raw.deviceType === undefined || raw.deviceType === null) fail('deviceType', 'is required');
  else if (raw.deviceType !== 'gateway' && raw.deviceType !== 'sensor') fail('deviceType', 'must be "gateway" or "sensor"');
  else deviceType = raw.deviceType;

  let token: string | undefined;
  let tokenFilePath: string | undefined;
  if (raw.token !== undefined && raw.tokenFile !== undefined) {
    fail('token', 'give either token or tokenFile, not both');
  } else if (raw.tokenFile !== undefined) {
    const tokenFile = str('tokenFile', raw.tokenFile, true);
    if (tokenFile !== undefined) {
      try {
        tokenFilePath = pathOf(tokenFile);
        token = readFileSync(tokenFilePath, 'utf8').trim();
        if (token === '') fail('tokenFile', `${pathOf(tokenFile)} is empty`);
      } catch (err) {
        fail('tokenFile', `cannot read ${pathOf(tokenFile)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    }
  } else if (raw.token === undefined || raw.token === null) {
    fail('token', 'is required (or give tokenFile)');
  } else {
    token = str('token', raw.token, true);
  }

  const brokerUrl = str('brokerUrl', raw.brokerUrl, true);
  let brokerHost: string | undefined;
  if (brokerUrl !== undefined) {
    const url = parseUrl(brokerUrl);
    if (!url || (url.protocol !== 'mqtt:' && url.protocol !== 'mqtts:') || url.hostname === '') {
      fail('brokerUrl', 'must be an mqtt:// or mqtts:// URL with a host');
    } else {
      brokerHost = url.hostname;
    }
  }

  let ca: AgentConfig['ca'];
  const caPath = str('ca', raw.ca, false);
  if (caPath !== undefined) {
    try {
      ca = { path: pathOf(caPath), pem: readFileSync(pathOf(caPath)) };
    } catch (err) {
      fail('ca', `cannot read ${pathOf(caPath)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }

  // The daemon serves MQTT and HTTP from one host, so its HTTP port on the broker's host is the best default.
  let daemonUrl = str('daemonUrl', raw.daemonUrl, false);
  if (daemonUrl !== undefined) {
    const url = parseUrl(daemonUrl);
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) fail('daemonUrl', 'must be an http:// or https:// URL');
    else daemonUrl = daemonUrl.replace(/\/+$/, '');
  } else if (brokerHost !== undefined) {
    const host = brokerHost.includes(':') && !brokerHost.startsWith('[') ? `[${brokerHost}]` : brokerHost;
    daemonUrl = `http://${host}:${AGENT_DEFAULTS.daemonHttpPort}`;
  }

  const intervalS = positive('intervalS', raw.intervalS, AGENT_DEFAULTS.intervalS, MAX_INTERVAL_S);
  const stateDir = str('stateDir', raw.stateDir, false) ?? AGENT_DEFAULTS.stateDir;
  const softwareVersionFile = str('softwareVersionFile', raw.softwareVersionFile, true);
  const softwareDir = str('softwareDir', raw.softwareDir, true);

  const probes = <T extends ProbeConfig>(key: 'subsystems' | 'sensors', idKey: 'name' | 'id'): T[] => {
    const list = raw[key];
    if (list === undefined || list === null) return [];
    if (!Array.isArray(list)) {
      fail(key, 'must be a list');
      return [];
    }
    const out: T[] = [];
    const seen = new Set<string>();
    list.forEach((item: unknown, i) => {
      const at = `${key}[${i}]`;
      if (item === null || typeof item !== 'object' || Array.isArray(item)) return void fail(at, 'must be a mapping');
      const entry = item as Record<string, unknown>;
      for (const k of Object.keys(entry)) {
        if (k !== idKey && k !== 'command' && k !== 'timeoutMs') fail(`${at}.${k}`, 'unknown key');
      }
      const id = str(`${at}.${idKey}`, entry[idKey], true);
      if (id !== undefined) {
        if (idKey === 'id' && !DEVICE_ID_PATTERN.test(id)) fail(`${at}.id`, 'must be a device id (PROTOCOL.md "Names")');
        else if (id.length > MAX_NAME) fail(`${at}.${idKey}`, `must be at most ${MAX_NAME} characters`);
        else if (seen.has(id)) fail(`${at}.${idKey}`, `duplicate "${id}"`);
        seen.add(id);
      }
      const command = str(`${at}.command`, entry.command, true);
      const timeoutMs = positive(`${at}.timeoutMs`, entry.timeoutMs, AGENT_DEFAULTS.probeTimeoutMs);
      if (id !== undefined && command !== undefined && timeoutMs !== undefined) {
        out.push(Object.freeze({ [idKey]: id, command, timeoutMs }) as unknown as T);
      }
    });
    return out;
  };
  const subsystems = probes<SubsystemConfig>('subsystems', 'name');
  const sensors = probes<SensorConfig>('sensors', 'id');

  let reconnect: AgentConfig['reconnect'] | undefined = { ...AGENT_DEFAULTS.reconnect };
  if (raw.reconnect !== undefined && raw.reconnect !== null) {
    if (typeof raw.reconnect !== 'object' || Array.isArray(raw.reconnect)) {
      fail('reconnect', 'must be a mapping with minMs and maxMs');
      reconnect = undefined;
    } else {
      const r = raw.reconnect as Record<string, unknown>;
      for (const k of Object.keys(r)) if (k !== 'minMs' && k !== 'maxMs') fail(`reconnect.${k}`, 'unknown key');
      const minMs = positive('reconnect.minMs', r.minMs, AGENT_DEFAULTS.reconnect.minMs);
      const maxMs = positive('reconnect.maxMs', r.maxMs, AGENT_DEFAULTS.reconnect.maxMs);
      if (minMs !== undefined && maxMs !== undefined && minMs > maxMs) fail('reconnect.maxMs', 'must be >= reconnect.minMs');
      reconnect = minMs !== undefined && maxMs !== undefined ? { minMs, maxMs } : undefined;
    }
  }

  let logLevel: LogLevel = AGENT_DEFAULTS.logLevel;
  if (raw.logLevel !== undefined && raw.logLevel !== null) {
    if (isLogLevel(raw.logLevel)) logLevel = raw.logLevel;
    else fail('logLevel', `must be one of ${LOG_LEVELS.join(', ')}`);
  }

  let patches: Record<string, unknown> | undefined;
  if (raw.patches !== undefined && raw.patches !== null) {
    if (typeof raw.patches !== 'object' || Array.isArray(raw.patches)) fail('patches', 'must be a mapping');
    else patches = raw.patches as Record<string, unknown>;
  }

  if (issues.length > 0) throw new AgentConfigError(issues, file);
  return deepFreeze({
    deviceId: deviceId!,
    deviceType: deviceType!,
    token: token!,
    ...(tokenFilePath ? { tokenFile: tokenFilePath } : {}),
    brokerUrl: brokerUrl!,
    ...(ca ? { ca } : {}),
    daemonUrl: daemonUrl!,
    intervalS: intervalS!,
    stateDir: pathOf(stateDir),
    softwareVersionFile: pathOf(softwareVersionFile!),
    softwareDir: pathOf(softwareDir!),
    subsystems,
    sensors,
    reconnect: reconnect!,
    logLevel,
    patches,
  });
}

function parseUrl(text: string): URL | undefined {
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Buffer.isBuffer(value) && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as object)) deepFreeze(v);
  }
  return value;
}
