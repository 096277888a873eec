import { AUTOMATIC_TICKETS, type ConditionReport } from '../tickets/types.js';
import type { HealthSettings } from './liveness.js';
import { reachesShare } from './correlation.js';

/**
 * Liveness of a device as the evaluator tracks it:
 * unknown (never heard from, or not yet re-judged after a daemon restart), online, offline (Last Will received,
 * grace running), restarting (silent while installing a patch or within the expected-restart grace), lost.
 */
export type LiveState = 'unknown' | 'online' | 'offline' | 'restarting' | 'lost';

export interface Fault {
  /** `subsystem:<name>` or `gateway-report`. */
  source: string;
  detail: string;
}

export interface DeviceView {
  id: string;
  state: LiveState;
  lostReason?: 'silence' | 'will';
  /** Subsystems reporting ok:false (own heartbeat) and, for sensors, an ok:false from the gateway's listing. */
  faults: readonly Fault[];
}

function isAlive(state: LiveState): boolean {
  return state === 'online' || state === 'offline';
}

/**
 * RULES.md `gateway_loss` (lost: medium, covers all its sensors) and `gateway_partial` (alive, but a subsystem
 * ok:false, or >= sensorLostShare and >= minSensorsLost of its sensors lost together: low, covers the sensors
 * that are lost or faulty). `sensors` are the gateway's non-revoked sensors.
 */
export function gatewayCondition(gateway: DeviceView, sensors: readonly DeviceView[], settings: HealthSettings): ConditionReport | null {
  if (gateway.state === 'lost') {
    return {
      kind: 'gateway_loss',
      subject: gateway.id,
      ...AUTOMATIC_TICKETS.gateway_loss,
      summary: gateway.lostReason === 'will' ? `gateway ${gateway.id} lost (Last Will, not back within the grace)` : `gateway ${gateway.id} lost (no heartbeat)`,
      details: { reason: gateway.lostReason ?? 'silence', sensors: sensors.length },
      covers: sensors.map((s) => s.id).sort(),
    };
  }
  if (!isAlive(gateway.state)) return null;
  const lostSensors = sensors.filter((s) => s.state === 'lost');
  const sensorShare =
    lostSensors.length >= settings.minSensorsLost && reachesShare(lostSensors.length, sensors.length, settings.sensorLostShare);
  const subsystems = gateway.faults.filter((f) => f.source.startsWith('subsystem:'));
  if (!sensorShare && subsystems.length === 0) return null;
  const affected = sensors.filter((s) => s.state === 'lost' || s.faults.length > 0);
  const reasons: string[] = [];
  if (subsystems.length > 0) reasons.push(`subsystem ${subsystems.map((f) => f.source.slice('subsystem:'.length)).join(', ')} not ok`);
  if (sensorShare) reasons.push(`${lostSensors.length} of ${sensors.length} sensors lost`);
  return {
    kind: 'gateway_partial',
    subject: gateway.id,
    ...AUTOMATIC_TICKETS.gateway_partial,
    summary: `gateway ${gateway.id} degraded: ${reasons.join('; ')}`,
    details: {
      subsystems: subsystems.map((f) => ({ name: f.source.slice('subsystem:'.length), detail: f.detail })),
      lostSensors: lostSensors.map((s) => s.id).sort(),
      sensors: sensors.length,
    },
    covers: affected.map((s) => s.id).sort(),
  };
}

/**
 * Is a sensor's gateway "fine" (RULES.md `sensor_issue`)? Not when the gateway is lost or restarting, has a
 * condition of its own, or still has a gateway ticket open: while that ticket is open, its sensors are listed
 * on it and open nothing themselves (grouping and inhibition). A sensor without a gateway has nothing to hide behind.
 */
export function gatewayIsFine(gateway: { state: LiveState; hasCondition: boolean; ticketOpen: boolean } | null): boolean {
  if (!gateway) return true;
  if (gateway.state === 'lost' || gateway.state === 'restarting') return false;
  return !gateway.hasCondition && !gateway.ticketOpen;
}

/** RULES.md `sensor_issue`: a sensor lost or reporting ok:false while its gateway is fine: low. */
export function sensorCondition(sensor: DeviceView, gatewayFine: boolean): ConditionReport | null {
  if (!gatewayFine) return null;
  const lost = sensor.state === 'lost';
  const faulty = isAlive(sensor.state) && sensor.faults.length > 0;
  if (!lost && !faulty) return null;
  return {
    kind: 'sensor_issue',
    subject: sensor.id,
    ...AUTOMATIC_TICKETS.sensor_issue,
    summary: lost ? `sensor ${sensor.id} lost` : `sensor ${sensor.id} reports a fault: ${sensor.faults.map((f) => f.detail || f.source).join('; ')}`,
    details: lost ? { reason: sensor.lostReason ?? 'silence' } : { faults: sensor.faults.map((f) => ({ ...f })) },
  };
}
