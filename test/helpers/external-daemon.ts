import { startDaemon, type Daemon } from './processes.js';

/**
 * The real xcared in external broker mode: `XCARE_MQTT_BROKER_URL` (and `XCARE_DATABASE_URL` when
 * given) set for the spawned process only, the rest of its config as `startDaemon` writes it.
 */
export async function startExternalDaemon(dataDir: string, brokerUrl: string, extraYaml = '', env: Record<string, string> = {}): Promise<Daemon> {
  const vars = { XCARE_MQTT_BROKER_URL: brokerUrl, ...env };
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  // startDaemon spawns with this process's environment: set it around the spawn and put it back.
  Object.assign(process.env, vars);
  try {
    return await startDaemon(dataDir, extraYaml);
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}
