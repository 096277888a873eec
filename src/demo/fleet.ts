/**
 * The demo's simulated fleet (issue 10, `npm run demo`): a few customers with gateways and sensors, every gateway a
 * real edge agent (agent/edge-agent.ts, run in this process, one MQTT connection each) on a copy of the sample
 * software, with the sample patch scripts. Sensors are reported by their gateway through probe commands that read a
 * file, so the demo can make one fail.
 */
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EdgeAgent } from '../../agent/edge-agent.js';
import { parseAgentConfig } from '../../agent/config.js';
import { silentAgentLogger } from '../../agent/log.js';
import { createPatchPort } from '../../agent/patch-port-impl.js';
import type { Tier } from '../protocol/names.js';

/** One customer of the demo and what it runs. */
export interface DemoCustomer {
  name: string;
  tier: Tier;
  installer: string;
  /** Subscription start; an old one has expired (June 30 rule). Default: today. */
  since?: string;
  gateways: string[];
  /** Sensors per gateway: `sn-<gateway suffix><a|b|...>`. */
  sensorsPerGateway: number;
  /** What the customer shows in the demo. */
  note: string;
}

/** The demo's fleet: paid customers, one without a subscription, one expired, one with an unapproved installer. */
export const DEMO_CUSTOMERS: readonly DemoCustomer[] = [
  { name: 'acme', tier: 'xcare_pro', installer: 'minnovation', gateways: ['gw-acme-1', 'gw-acme-2', 'gw-acme-3'], sensorsPerGateway: 2, note: 'Xcare Pro' },
  { name: 'globex', tier: 'xcare', installer: 'minnovation', gateways: ['gw-globex-1', 'gw-globex-2'], sensorsPerGateway: 1, note: 'Xcare' },
  { name: 'initech', tier: 'none', installer: 'minnovation', gateways: ['gw-initech-1'], sensorsPerGateway: 1, note: 'no subscription' },
  { name: 'umbrella', tier: 'xcare', installer: 'minnovation', since: '2024-03-01', gateways: ['gw-umbrella-1'], sensorsPerGateway: 0, note: 'Xcare, expired June 30, 2024' },
  { name: 'hooli', tier: 'xcare', installer: 'quickfix-installs', gateways: ['gw-hooli-1'], sensorsPerGateway: 0, note: 'Xcare, installed by an unapproved contractor' },
];

/** Sensor ids of a gateway: gw-acme-1 -> sn-acme-1a, sn-acme-1b. */
export function sensorsOf(gateway: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `sn-${gateway.replace(/^gw-/, '')}${String.fromCharCode(97 + i)}`);
}

/** Every device to provision, gateways before their sensors, in the daemon's API shape (POST /api/v1/devices). */
export function demoDevices(): { id: string; type: 'gateway' | 'sensor'; parent?: string; customer: string; installer: string; tier: Tier; since?: string }[] {
  const out: ReturnType<typeof demoDevices> = [];
  for (const c of DEMO_CUSTOMERS) {
    for (const gw of c.gateways) {
      const common = { customer: c.name, installer: c.installer, tier: c.tier, ...(c.since ? { since: c.since } : {}) };
      out.push({ id: gw, type: 'gateway', ...common });
      for (const sn of sensorsOf(gw, c.sensorsPerGateway)) out.push({ id: sn, type: 'sensor', parent: gw, ...common });
    }
  }
  return out;
}

export interface DemoFleetDeps {
  dir: string;
  mqttUrl: string;
  daemonUrl: string;
  /** The patch examples folder (patches/examples) and the pinned release public key. */
  examples: string;
  releasePublicKey: string;
  intervalS: number;
  /** Gateways whose patch check fails (the sample check.sh honours XCARE_EXAMPLE_FAIL_CHECK). */
  failingCheck: ReadonlySet<string>;
}

/** The running gateways: start, stop (a clean shutdown: retained offline, then silence) and break sensors. */
export class DemoFleet {
  private readonly agents = new Map<string, EdgeAgent>();
  private readonly tokens = new Map<string, string>();
  private readonly sensors = new Map<string, string[]>();

  constructor(private readonly deps: DemoFleetDeps) {}

  /** Remember a provisioned gateway's token and lay out its software, state and sensor files. */
  prepare(gateway: string, token: string, sensors: string[]): void {
    const home = join(this.deps.dir, gateway);
    mkdirSync(join(home, 'sensors'), { recursive: true });
    cpSync(join(this.deps.examples, 'sample-app'), join(home, 'software'), { recursive: true });
    for (const sn of sensors) writeFileSync(join(home, 'sensors', sn), 'ok\n');
    this.tokens.set(gateway, token);
    this.sensors.set(gateway, sensors);
  }

  /** Start (or restart) one gateway's agent. */
  start(gateway: string): void {
    if (this.agents.has(gateway)) return;
    const home = join(this.deps.dir, gateway);
    const sh = (script: string) => `sh ${join(this.deps.examples, script)}`;
    const config = parseAgentConfig(
      {
        deviceId: gateway,
        deviceType: 'gateway',
        token: this.tokens.get(gateway),
        brokerUrl: this.deps.mqttUrl,
        daemonUrl: this.deps.daemonUrl,
        intervalS: this.deps.intervalS,
        stateDir: join(home, 'state'),
        softwareVersionFile: join(home, 'software', 'VERSION'),
        softwareDir: join(home, 'software'),
        reconnect: { minMs: 200, maxMs: 2000 },
        // A sensor is fine while its file says ok; `fail()` replaces it with a reading error.
        sensors: (this.sensors.get(gateway) ?? []).map((id) => ({ id, command: `f=${join(home, 'sensors', id)}; read s < "$f"; echo "$s"; [ "$s" = ok ]` })),
        patches: {
          keys: [this.deps.releasePublicKey],
          install: sh('install.sh'),
          check: `${this.deps.failingCheck.has(gateway) ? 'XCARE_EXAMPLE_FAIL_CHECK=1 ' : ''}${sh('check.sh')}`,
          rollback: sh('rollback.sh'),
          commandTimeoutS: 60,
        },
      },
      home,
    );
    const agent = new EdgeAgent({ config, log: silentAgentLogger(), patchPortFactory: createPatchPort });
    this.agents.set(gateway, agent);
    agent.start();
  }

  /** Stop one gateway's agent the way a power-off with a clean shutdown looks: offline, then silence. */
  async stop(gateway: string): Promise<void> {
    const agent = this.agents.get(gateway);
    if (!agent) return;
    this.agents.delete(gateway);
    await agent.stop();
  }

  /** Make a sensor report an error (or fine again) through its gateway's probe. */
  setSensor(gateway: string, sensor: string, ok: boolean): void {
    writeFileSync(join(this.deps.dir, gateway, 'sensors', sensor), ok ? 'ok\n' : 'no reading: probe timed out on the bus\n');
  }

  async stopAll(): Promise<void> {
    await Promise.allSettled([...this.agents.keys()].map((g) => this.stop(g)));
  }
}
