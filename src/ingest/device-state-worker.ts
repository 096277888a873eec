import { parentPort, workerData } from 'node:worker_threads';
import BetterSqlite3 from 'better-sqlite3';
import { DeviceStateRowWriter, type StateRow } from './device-state-rows.js';
import type { Database } from '../db/database.js';
import { PgSyncDatabase } from '../db/pg/pg-sync.js';

/**
 * Worker thread that owns a second store connection (SQLite, or PostgreSQL through its own PgSyncDatabase) for the heartbeat state writes, so the
 * event loop that acknowledges MQTT packets never waits on SQLite. WAL lets it write beside the
 * main connection; each message is one small transaction. Messages: { rows } to write, { close } to
 * finish and exit after everything before it is written.
 */
const { file, url, chunkRows } = workerData as { file?: string; url?: string; chunkRows: number };
// PostgreSQL (store.url): this thread waits on its own connection's answers, never the daemon's event loop.
const db: Database = url ? new PgSyncDatabase(url) : sqlite(file!);
const writer = new DeviceStateRowWriter(db);

parentPort!.on('message', (msg: { rows?: StateRow[]; close?: boolean }) => {
  if (msg.rows) {
    for (let i = 0; i < msg.rows.length; i += chunkRows) {
      try {
        writer.write(msg.rows.slice(i, i + chunkRows));
      } catch (err) {
        // The rows go back to the writer, which retries them at its next flush.
        parentPort!.postMessage({ error: (err as Error).message, failed: msg.rows.slice(i, i + chunkRows) });
      }
    }
    parentPort!.postMessage({ written: msg.rows.length });
  }
  if (msg.close) {
    db.close();
    parentPort!.postMessage({ closed: true });
    parentPort!.close();
  }
});

function sqlite(path: string): Database {
  const conn = new BetterSqlite3(path);
  conn.pragma('journal_mode = WAL');
  conn.pragma('synchronous = NORMAL');
  conn.pragma('busy_timeout = 5000');
  return conn;
}
