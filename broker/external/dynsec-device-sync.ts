import type { Logger } from '../../src/log.js';
import type { DeviceRecord } from '../../src/registry/types.js';
import { ConflictError, XcareError } from '../../src/errors.js';
import { DynsecError, deviceAcls, deviceRoleName, type DynsecClient, type DynsecCommand } from './dynsec.js';

/** `textname` that marks the dynsec clients xcared manages; others (admins, xcared itself) are never touched. */
export const MANAGED_TEXTNAME = 'xcare-device';

/** What one reconcile pass found and did (logged, and returned for tests). */
export interface ReconcileReport {
  /** Registry devices (not revoked) that have their broker client. */
  present: number;
  /** Broker clients of revoked or unknown devices that were deleted. */
  deleted: string[];
  /** Devices whose client lacked its role: role (re)created and attached. */
  repaired: string[];
  /**
   * Devices with no broker client: their token exists only as a hash in the registry, so xcared cannot
   * re-create the broker password; they connect again after `xcarectl device rotate-token ID`.
   */
  missing: string[];
}

interface ListedClient {
  username: string;
  textname?: string;
  roles?: { rolename: string }[];
}

/**
 * Keeps Mosquitto's dynamic-security clients and per-device roles in step with the registry
 * (issue 13, item 1): created at provisioning (the only moment the token is in clear), password set
 * at token rotation, deleted at revocation (deleting a dynsec client also disconnects it), and
 * reconciled against the whole registry at start and after every reconnect to the broker.
 */
export class DynsecDeviceSync {
  constructor(private readonly deps: { dynsec: DynsecClient; log: Logger }) {}

  /** Create broker credentials for freshly issued tokens. Rejects when the broker refuses or does not answer. */
  async provision(issued: readonly { id: string; token: string }[]): Promise<void> {
    if (issued.length === 0) return;
    const commands: DynsecCommand[] = [];
    for (const { id, token } of issued) {
      // A role left by an earlier life of this id is reused (same ACLs); a client is never overwritten, so
      // two provisionings of one id racing each other cannot swap the token under the winner.
      commands.push({ command: 'createRole', rolename: deviceRoleName(id), acls: deviceAcls(id) });
      commands.push({ command: 'createClient', username: id, clientid: id, password: token, textname: MANAGED_TEXTNAME, roles: [{ rolename: deviceRoleName(id), priority: 0 }] });
    }
    try {
      await this.deps.dynsec.run(commands, { tolerate: ['Role already exists'] });
    } catch (err) {
      if (err instanceof DynsecError && err.reason.includes('already exists')) {
        // An orphan of a provisioning that never committed (the next reconcile deletes it), or a race.
        throw new ConflictError(`broker credentials already exist for ${issued.map((i) => i.id).join(', ')} (left by an unfinished provisioning: xcared deletes them at its next reconcile)`);
      }
      throw new XcareError('BROKER_UNAVAILABLE', `the MQTT broker did not take the device credentials: ${(err as Error).message}`, 503, { cause: err });
    }
    this.deps.log.info({ devices: issued.length }, 'broker credentials created');
  }

  /** A new token for a device (rotation): the old one stops working and its live connection is closed. */
  async setToken(id: string, token: string): Promise<void> {
    await this.deps.dynsec.run(
      [
        // A revoked device enabled again by the rotation has no client any more: it is created afresh.
        { command: 'createRole', rolename: deviceRoleName(id), acls: deviceAcls(id) },
        { command: 'createClient', username: id, clientid: id, password: token, textname: MANAGED_TEXTNAME, roles: [{ rolename: deviceRoleName(id), priority: 0 }] },
        { command: 'setClientPassword', username: id, password: token },
        // Disabling kicks the connection made with the old token; enabling lets the new one in.
        { command: 'disableClient', username: id },
        { command: 'enableClient', username: id },
      ],
      { tolerate: ['already exists'] },
    );
    this.deps.log.info({ deviceId: id }, 'broker password rotated');
  }

  /** Revocation: deleting the client also closes its live connection (Mosquitto kicks it). */
  async revoke(id: string): Promise<void> {
    await this.deps.dynsec.run(
      [
        { command: 'deleteClient', username: id },
        { command: 'deleteRole', rolename: deviceRoleName(id) },
      ],
      { tolerate: ['not found'] },
    );
    this.deps.log.info({ deviceId: id }, 'broker credentials deleted');
  }

  /** Bring the broker in line with `devices` (the whole registry, revoked ones included). */
  async reconcile(devices: Iterable<DeviceRecord>): Promise<ReconcileReport> {
    const [listed] = await this.deps.dynsec.run([{ command: 'listClients', verbose: true, count: -1, offset: 0 }]);
    const clients = new Map<string, ListedClient>();
    for (const c of ((listed?.data?.clients ?? []) as ListedClient[])) {
      if (c.textname === MANAGED_TEXTNAME) clients.set(c.username, c);
    }
    const report: ReconcileReport = { present: 0, deleted: [], repaired: [], missing: [] };
    const live = new Set<string>();
    const repairs: DynsecCommand[] = [];
    for (const d of devices) {
      if (d.revokedAt !== null) continue;
      live.add(d.id);
      const client = clients.get(d.id);
      if (!client) {
        report.missing.push(d.id);
        continue;
      }
      report.present++;
      if (!client.roles?.some((r) => r.rolename === deviceRoleName(d.id))) {
        report.repaired.push(d.id);
        repairs.push(
          { command: 'createRole', rolename: deviceRoleName(d.id), acls: deviceAcls(d.id) },
          { command: 'addClientRole', username: d.id, rolename: deviceRoleName(d.id), priority: 0 },
        );
      }
    }
    for (const username of clients.keys()) {
      if (live.has(username)) continue;
      report.deleted.push(username);
      repairs.push({ command: 'deleteClient', username }, { command: 'deleteRole', rolename: deviceRoleName(username) });
    }
    // Batches keep each control message well under the broker's packet limit.
    for (let i = 0; i < repairs.length; i += 200) await this.deps.dynsec.run(repairs.slice(i, i + 200), { tolerate: ['already exists', 'not found'] });
    const level = report.missing.length > 0 ? 'warn' : 'info';
    this.deps.log[level](
      { present: report.present, deleted: report.deleted.length, repaired: report.repaired.length, missing: report.missing.slice(0, 20), missingCount: report.missing.length },
      report.missing.length > 0 ? 'broker credentials reconciled; devices without broker credentials need a token rotation' : 'broker credentials reconciled',
    );
    return report;
  }
}
