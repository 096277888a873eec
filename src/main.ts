import { parseArgs } from 'node:util';
import { join, resolve } from 'node:path';
import { backupDatabase } from './db/backup.js';
import { loadConfig } from './config/load.js';
import { checkConfigFiles } from './config/check.js';
import { lockDataDir } from './data-dir-lock.js';
import { createLogger, logFormat } from './log.js';
import { readFileSync } from 'node:fs';
import { systemClock, wallOffsetClock } from './clock.js';
import { App } from './app.js';
import { ConfigError, XcareError } from './errors.js';

const HELP = `Usage: xcared [--config FILE] [--check | --backup FILE]

The xcare-fleet daemon: embedded MQTT broker, heartbeat ingest, health evaluator, tickets,
helpdesk delivery, patch rollouts and the HTTP API.

Options:
  -c, --config FILE   YAML configuration (see config.example.yaml); without it, built-in defaults
      --backup FILE   write an online backup of the database (<dataDir>/xcare.db) to FILE and
                      exit; safe while the daemon runs (README "Upgrade and backup"); SQLite only:
                      with store.url (PostgreSQL) use pg_dump
      --check         validate the configuration, open every file it names, check the
                      data dir is writable, and exit (0 ok, 2 naming each bad key)
  -h, --help          show this help
  -v, --version       print the version

Environment overrides (applied over the file):
  XCARE_DATA_DIR, XCARE_MQTT_PORT, XCARE_MQTTS_PORT, XCARE_HTTP_HOST, XCARE_HTTP_PORT,
  XCARE_ADMIN_TOKEN, XCARE_LOG_LEVEL, XCARE_LOG_FORMAT (auto|json|pretty), XCARE_MQTT_BROKER_URL (external
  broker), XCARE_DATABASE_URL

Signals: SIGTERM/SIGINT stop gracefully (stop accepting, flush, close) and exit 0.`;

async function main(): Promise<number> {
  let args;
  try {
    args = parseArgs({
      options: {
        config: { type: 'string', short: 'c' },
        check: { type: 'boolean' },
        backup: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
      strict: true,
    }).values;
  } catch (err) {
    process.stderr.write(`xcared: ${(err as Error).message}\n`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (args.version) {
    process.stdout.write(`${process.env.npm_package_version ?? '0.1.0'}\n`);
    return 0;
  }
  let config;
  try {
    config = loadConfig(args.config);
    // Every file the config names is opened before anything is written (issue 10 fault 4), for a real
    // start as for --check: a missing release key or an expired certificate exits 2 naming its key.
    await checkConfigFiles(config, systemClock.now());
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`xcared: invalid configuration:\n${err.message}\n`);
    return 2;
  }
  if (args.check) {
    process.stdout.write('configuration ok\n');
    return 0;
  }
  if (args.backup !== undefined) {
    if (config.store.url) {
      // Issue 13: the PostgreSQL store is backed up with PostgreSQL's own tools, which also cover a cluster.
      process.stderr.write(
        'xcared: --backup copies the embedded SQLite store; this configuration uses PostgreSQL (store.url): back it up with pg_dump (README "Upgrade and backup")\n',
      );
      return 2;
    }
    const source = join(resolve(config.dataDir), 'xcare.db');
    try {
      const { totalPages } = await backupDatabase(source, resolve(args.backup));
      process.stdout.write(`backup of ${source} written to ${resolve(args.backup)} (${totalPages} pages)\n`);
      return 0;
    } catch (err) {
      process.stderr.write(`xcared: ${(err as Error).message}\n`);
      return 1;
    }
  }
  const log = createLogger(config.log.level, undefined, logFormat(config.log.format));
  // Signals are caught from before the start: one arriving while components start (right after the "xcared
  // started" line, say) must not kill the process mid-way; the daemon finishes starting, then stops cleanly.
  const stopRequested = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  let app: App;
  // One embedded daemon per data dir; cluster mode (an external broker) shares the store on purpose.
  let unlock = (): void => {};
  if (!config.mqtt.broker.url) {
    try {
      unlock = lockDataDir(resolve(config.dataDir));
      // Also on 'exit' (synchronous there): the process may leave once its last handle closes, or through
      // the cluster's exit(3), before the shutdown chain below reaches its end.
      process.once('exit', unlock);
    } catch (err) {
      process.stderr.write(`xcared: ${(err as Error).message}\n`);
      return 1;
    }
  }
  try {
    // Tests and the detection bench step the wall clock through a file (clock.ts wallOffsetClock); never set in production.
    const offsetFile = process.env.XCARE_WALL_OFFSET_FILE;
    const clock = offsetFile ? wallOffsetClock(() => Number(readFileSync(offsetFile, 'utf8').trim()) || 0) : systemClock;
    app = new App(config, { clock, log });
    await app.start();
  } catch (err) {
    unlock();
    log.fatal({ err }, 'start failed');
    process.stderr.write(`xcared: ${err instanceof XcareError ? err.message : (err as Error).message}\n`);
    log.flush();
    return 1;
  }
  return stopRequested
    .then((signal) => {
      log.info({ signal }, 'shutting down');
      return app.stop().then(
        () => 0,
        (err) => {
          log.error({ err }, 'shutdown failed');
          return 1;
        },
      );
    })
    .then((code) => {
      unlock();
      log.info('stopped');
      log.flush();
      return code;
    });
}

main().then(
  (code) => {
    process.exitCode = code;
    // Let pino's async destination drain, then leave even if a stray handle remains.
    setTimeout(() => process.exit(code), 200).unref();
  },
  (err) => {
    process.stderr.write(`xcared: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
