import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App } from '../../src/app.js';
import { validateConfig } from '../../src/config/load.js';
import { systemClock } from '../../src/clock.js';
import { silentLogger } from '../../src/log.js';
import { openedTicketLabelPairs } from '../../src/metrics/ticket-metrics.js';
import { packageVersion } from '../../src/metrics/build-info.js';
import { MISNAMED_DEFAULT_METRICS } from '../../src/metrics/metrics.js';
import { toolsMissing } from '../helpers/system-tools.js';
import { tempDir } from '../helpers/temp-dir.js';
import { ROOT } from '../helpers/processes.js';

/**
 * Issue 10 fault 3: what the wired daemon exposes on /metrics right after start, before anything happened.
 * A counter whose label set is born at its first increment has no earlier sample, so rate()/increase() miss that
 * first event (the dashboard showed 1 ticket of 4): every labelled counter must export its known label sets at 0.
 */
describe('/metrics of a freshly started daemon', () => {
  const dir = tempDir('xcare-metrics-');
  let app: App;
  let text: string;

  beforeAll(async () => {
    const config = validateConfig({
      dataDir: join(dir.path, 'data'),
      adminToken: 'metrics-test-admin-token-0123',
      mqtt: { host: '127.0.0.1', port: 0 },
      http: { host: '127.0.0.1', port: 0 },
    });
    app = new App(config, { clock: systemClock, log: silentLogger() });
    await app.start();
    text = await (await fetch(`http://127.0.0.1:${app.http.port()}/metrics`)).text();
  });
  afterAll(async () => {
    await app?.stop();
    dir.cleanup();
  });

  /** Metric families of the exposition: name -> {type, sample lines}. */
  const families = () => {
    const out = new Map<string, { type: string; samples: string[] }>();
    for (const line of text.split('\n')) {
      const t = /^# TYPE (\S+) (\S+)/.exec(line);
      if (t) out.set(t[1]!, { type: t[2]!, samples: [] });
      else if (line && !line.startsWith('#')) {
        const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)![0];
        const fam = out.get(name) ?? out.get(name.replace(/_(bucket|sum|count)$/, ''));
        fam?.samples.push(line);
      }
    }
    return out;
  };

  it('exports a sample for every counter of the daemon before its first event', () => {
    const empty = [...families()].filter(([name, f]) => f.type === 'counter' && name.startsWith('fleet_') && f.samples.length === 0).map(([n]) => n);
    expect(empty).toEqual([]);
  });

  it.each(openedTicketLabelPairs())('fleet_tickets_opened_total{severity="$severity",kind="$kind"} is 0 from the start', ({ severity, kind }) => {
    expect(text).toContain(`fleet_tickets_opened_total{severity="${severity}",kind="${kind}"} 0`);
  });

  it('labels every automatic ticket kind at its RULES.md severity, and manual tickets at every severity', () => {
    const pairs = openedTicketLabelPairs();
    expect(pairs).toContainEqual({ severity: 'medium', kind: 'gateway_loss' });
    expect(pairs).toContainEqual({ severity: 'urgent', kind: 'security_incident' });
    expect(pairs.filter((p) => p.kind === 'manual').map((p) => p.severity).sort()).toEqual(['high', 'low', 'medium', 'urgent']);
  });

  it.each(['json', 'schema', 'size', 'unknown_device'])('fleet_heartbeat_rejected_total{reason="%s"} is 0 from the start', (reason) => {
    expect(text).toContain(`fleet_heartbeat_rejected_total{reason="${reason}"} 0`);
  });

  it('fleet_health_conditions_total exports every evaluator kind for raise and clear', () => {
    expect(text).toContain('fleet_health_conditions_total{kind="gateway_loss",action="raise"} 0');
    expect(text).toContain('fleet_health_conditions_total{kind="flapping",action="clear"} 0');
  });

  it('xcare_build_info{version} is 1 and names the package version', () => {
    expect(packageVersion()).toMatch(/^\d+\.\d+\.\d+/);
    expect(text).toMatch(new RegExp(`^xcare_build_info\\{version="${packageVersion().replace(/\./g, '\\.')}",node="[^"]+"\\} 1$`, 'm'));
  });

  it('drops the gauges prom-client names like counters (nodejs_active_*_total)', () => {
    for (const name of MISNAMED_DEFAULT_METRICS) expect(text).not.toContain(`${name} `);
  });

  it('drops the default gauges that walk every handle at scrape time; process_open_fds is read off the event loop (issue 12)', () => {
    expect(text).not.toContain('# TYPE nodejs_active_handles gauge');
    expect(text).not.toContain('# TYPE nodejs_active_resources gauge');
    expect(text).toMatch(/^process_open_fds \d+$/m);
  });

  const rulesFile = join(ROOT, 'deploy/prometheus/xcare-rules.yml');
  const dashboardFile = join(ROOT, 'deploy/grafana/xcare-fleet.json');
  const dashboard = JSON.parse(readFileSync(dashboardFile, 'utf8')) as {
    panels: { title: string; fieldConfig?: { defaults?: { unit?: string } }; targets: { expr: string }[] }[];
    templating: { list: { name: string }[] };
  };
  /** fleet_/xcare_ metric names an expression reads (recording rule names, `xcare:...`, excluded). */
  const metricNames = (expr: string) => [...expr.matchAll(/\b((?:fleet|xcare)_[a-z_]+)\b/g)].map((m) => m[1]!.replace(/_(bucket|sum|count)$/, ''));

  it('the alert rules and the dashboard read only metrics the daemon exports', () => {
    const exported = new Set(families().keys());
    const used = [...metricNames(readFileSync(rulesFile, 'utf8')), ...dashboard.panels.flatMap((p) => p.targets.flatMap((t) => metricNames(t.expr)))];
    expect(used.length).toBeGreaterThan(10);
    expect([...new Set(used)].filter((name) => !exported.has(name))).toEqual([]);
  });

  it('the dashboard has an instance variable that every query filters on, and a unit on every panel', () => {
    expect(dashboard.templating.list.map((v) => v.name)).toContain('instance');
    for (const panel of dashboard.panels) {
      expect(panel.fieldConfig?.defaults?.unit, panel.title).toBeTruthy();
      for (const t of panel.targets) for (const sel of t.expr.matchAll(/\b(?:fleet|xcare)_[a-z_]+(\{[^}]*\})?/g)) expect(sel[1] ?? '', `${panel.title}: ${t.expr}`).toContain('instance=~"$instance"');
    }
  });

  describe.skipIf(toolsMissing(['promtool'], 'prometheus').length > 0)('with promtool', () => {
    it('`promtool check rules` accepts the rules, and `promtool test rules` proves every alert fires and stays silent', () => {
      const check = spawnSync('promtool', ['check', 'rules', rulesFile], { encoding: 'utf8' });
      expect(check.status, `${check.stdout}${check.stderr}`).toBe(0);
      const test = spawnSync('promtool', ['test', 'rules', join(ROOT, 'deploy/prometheus/xcare-rules.test.yml')], { encoding: 'utf8' });
      expect(test.status, `${test.stdout}${test.stderr}`).toBe(0);
      // Every alert of the rules file has a test.
      const alerts = [...readFileSync(rulesFile, 'utf8').matchAll(/- alert: (\w+)/g)].map((m) => m[1]);
      const tested = readFileSync(join(ROOT, 'deploy/prometheus/xcare-rules.test.yml'), 'utf8');
      for (const alert of alerts) expect(tested, alert).toContain(`alertname: ${alert}`);
    });

    it('`promtool check metrics` finds nothing to complain about', () => {
      const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', cwd: ROOT });
      expect(r.error).toBeUndefined();
      expect(`${r.stdout}${r.stderr}`.trim()).toBe('');
      expect(r.status).toBe(0);
    });
  });
});
