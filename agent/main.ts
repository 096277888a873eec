/**
 * `xcare-agent --config FILE` (PROTOCOL.md "Command line"): the process around EdgeAgent.
 * Exit codes: 0 after a clean stop or --help/--version, 2 for a bad command line or config,
 * 1 for anything unexpected. Errors are one line on stderr; logs are JSON lines on stdout.
 */
import { parseArgs } from 'node:util';
import { AgentConfigError, loadAgentConfig } from './config.js';
import { EdgeAgent } from './edge-agent.js';
import { createAgentLogger } from './log.js';
import type { PatchPortFactory } from './patch-port.js';
import { AGENT_VERSION } from './version.js';

const USAGE = `Usage: xcare-agent --config FILE

The Xcare edge agent: connects to the fleet broker with the device's credentials,
publishes heartbeats (health, probes, software version and integrity) and applies
signed patches.

Options:
  -c, --config FILE   agent configuration (YAML; see agent/agent.example.yaml)
  -h, --help          show this help and exit
  -v, --version       print the agent version and exit

Signals: SIGTERM or SIGINT publishes {"online":false}, disconnects and exits 0.
`;

/** Stop takes at most a few seconds (bounded PUBACK wait); past this we exit anyway. */
const STOP_DEADLINE_MS = 10_000;

async function main(argv: string[]): Promise<number> {
  let values: { config?: string; help?: boolean; version?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    process.stderr.write(`xcare-agent: ${(err as Error).message} (see --help)\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values.version) {
    process.stdout.write(`${AGENT_VERSION}\n`);
    return 0;
  }
  if (!values.config) {
    process.stderr.write('xcare-agent: --config FILE is required (see --help)\n');
    return 2;
  }

  let config;
  try {
    config = loadAgentConfig(values.config);
  } catch (err) {
    const message = err instanceof AgentConfigError ? err.message : (err as Error).message;
    process.stderr.write(`xcare-agent: bad config: ${message}\n`);
    return 2;
  }

  const log = createAgentLogger({ level: config.logLevel, base: { deviceId: config.deviceId } });
  const loaded = await loadPatchPortFactory(log);
  // Patch downloads from an https daemonUrl verify the daemon's certificate with the agent's `ca`, as the
  // broker's is (issue 10 fault 5: the device token crosses the network in the downloads' Basic auth).
  const ca = config.ca?.pem;
  const patchPortFactory: PatchPortFactory | undefined = loaded && ca ? (deps) => loaded({ ...deps, ca }) : loaded;
  const agent = new EdgeAgent({ config, log, patchPortFactory });

  return new Promise<number>((resolve) => {
    let stopping = false;
    const shutdown = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info('stopping', { signal });
      const deadline = setTimeout(() => {
        log.error('stop took too long; exiting');
        resolve(1);
      }, STOP_DEADLINE_MS);
      agent.stop().then(
        () => {
          clearTimeout(deadline);
          resolve(0);
        },
        (err: unknown) => {
          clearTimeout(deadline);
          log.error('stop failed', { err });
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
    agent.start();
  });
}

/**
 * The patch job lives in agent/patch-port-impl.ts (another part of the agent). A build without it
 * still runs: offers are then answered `rejected` by EdgeAgent. The specifier is a literal so that
 * esbuild puts the patch job into the agent bundle (scripts/build-agent.mjs).
 */
async function loadPatchPortFactory(log: ReturnType<typeof createAgentLogger>): Promise<PatchPortFactory | undefined> {
  const mod = (await import('./patch-port-impl.js').catch((err: NodeJS.ErrnoException) => {
    const absent = err?.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('patch-port-impl');
    if (absent) log.info('no patch module installed; patch offers will be rejected');
    else log.error('cannot load the patch module; patching disabled', { err });
    return undefined;
  })) as { createPatchPort?: PatchPortFactory } | undefined;
  return mod?.createPatchPort;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`xcare-agent: ${(err as Error)?.message ?? String(err)}\n`);
    process.exit(1);
  },
);
