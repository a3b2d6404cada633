import { InvalidArgumentError, Option, type Command } from 'commander';
import { WorkloadAgent } from '../../agent/agent.js';
import { checkCertificateFolder } from '../../agent/atomic-files.js';
import { GrpcCaClient } from '../../agent/ca-client.js';
import { runExecHook } from '../../agent/exec-hook.js';
import {
  AgentMetrics,
  startMonitoringServer,
  type MonitoringServer,
} from '../../agent/monitoring.js';
import { DEFAULT_RENEWAL_POLICY } from '../../agent/renewal.js';
import { systemClock } from '../../clock.js';
import { createLogger } from '../../log.js';
import { WORKLOAD_KEY_TYPES, type WorkloadKeyType } from '../../pki/csr-builder.js';
import { durationOption, hostPortArg } from '../options.js';
import { requireReadable } from './request.js';

function ratioArg(value: string): number {
  const n = Number(value);
  if (!/^\d*\.?\d+$/.test(value.trim()) || !(n > 0 && n < 1)) {
    throw new InvalidArgumentError(`"${value}" is not a ratio strictly between 0 and 1`);
  }
  return n;
}

function positiveIntArg(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1)
    throw new InvalidArgumentError(`"${value}" is not a positive integer`);
  return n;
}

interface AgentOptions {
  caAddr: string;
  rootCert: string;
  outDir: string;
  tokenFile?: string;
  keyType: WorkloadKeyType;
  ttl?: number;
  graceRatio: number;
  once?: boolean;
  onceAttempts: number;
  exec?: string;
  monitoringAddr?: string;
  serverName?: string;
  retryInitial: number;
  retryMax: number;
  errorBackoff: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
}

/** `castellan agent`: keep a workload certificate fresh on disk. */
export function registerAgentCommand(program: Command): void {
  program
    .command('agent')
    .description(
      'obtain a workload certificate and keep it rotated on disk (cert-chain.pem, key.pem, root-cert.pem)',
    )
    .requiredOption('--ca-addr <host:port>', 'the CA gRPC address', hostPortArg)
    .requiredOption('--root-cert <file>', 'root(s) that sign the CA serving certificate')
    .requiredOption(
      '--out-dir <dir>',
      'directory for cert-chain.pem, key.pem (0600), root-cert.pem',
    )
    .option(
      '--token-file <file>',
      'bearer token, re-read for every request; without it, renew over mTLS with the current certificate',
    )
    .addOption(
      new Option('--key-type <type>', 'key to generate for each certificate')
        .choices(WORKLOAD_KEY_TYPES)
        .default('ec-p256'),
    )
    .addOption(
      durationOption('--ttl <duration>', 'requested lifetime (e.g. 24h); default: the CA default'),
    )
    .option(
      '--grace-ratio <ratio>',
      'renew when this fraction of the lifetime is left',
      ratioArg,
      DEFAULT_RENEWAL_POLICY.graceRatio,
    )
    .option('--once', 'obtain one certificate, write it and exit')
    .option(
      '--once-attempts <n>',
      'with --once: attempts on UNAVAILABLE/INTERNAL',
      positiveIntArg,
      5,
    )
    .option('--exec <command>', 'shell command to run after each write (e.g. to reload a server)')
    .option('--monitoring-addr <host:port>', 'serve /ready and /metrics here', hostPortArg)
    .option('--server-name <name>', 'name to verify the CA certificate against, if not the host')
    .addOption(
      durationOption(
        '--retry-initial <duration>',
        'first backoff after UNAVAILABLE/INTERNAL',
        DEFAULT_RENEWAL_POLICY.retryInitialMs,
      ),
    )
    .addOption(
      durationOption(
        '--retry-max <duration>',
        'longest backoff',
        DEFAULT_RENEWAL_POLICY.retryMaxMs,
      ),
    )
    .addOption(
      durationOption(
        '--error-backoff <duration>',
        'pause after a refusal retrying will not mend (UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT…)',
        DEFAULT_RENEWAL_POLICY.nonRetriableBackoffMs,
      ),
    )
    .addOption(
      new Option('--log-level <level>', 'log level')
        .choices(['debug', 'info', 'warn', 'error'])
        .default('info'),
    )
    .action(async (opts: AgentOptions) => {
      await requireReadable(opts.rootCert, '--root-cert');
      if (opts.tokenFile !== undefined) await requireReadable(opts.tokenFile, '--token-file');
      const logger = createLogger({ level: opts.logLevel, name: 'castellan-agent' });
      const clock = systemClock;
      const metrics = new AgentMetrics(clock);
      const agent = new WorkloadAgent(
        {
          outDir: opts.outDir,
          rootCertFile: opts.rootCert,
          keyType: opts.keyType,
          validitySeconds: opts.ttl === undefined ? 0 : Math.ceil(opts.ttl / 1000),
          authenticatesWithToken: opts.tokenFile !== undefined,
          policy: {
            ...DEFAULT_RENEWAL_POLICY,
            graceRatio: opts.graceRatio,
            retryInitialMs: opts.retryInitial,
            retryMaxMs: Math.max(opts.retryMax, opts.retryInitial),
            nonRetriableBackoffMs: opts.errorBackoff,
          },
          exec: opts.exec,
        },
        {
          ca: new GrpcCaClient({
            address: opts.caAddr,
            rootCertFile: opts.rootCert,
            tokenFile: opts.tokenFile,
            serverName: opts.serverName,
            clock,
          }),
          clock,
          random: Math.random,
          logger,
          metrics,
          runExec: (command, dir) => runExecHook(command, dir, { clock, env: process.env }),
        },
      );

      const stop = new AbortController();
      const onSignal = (): void => stop.abort();
      process.once('SIGTERM', onSignal);
      process.once('SIGINT', onSignal);
      let monitoring: MonitoringServer | undefined;
      try {
        if (opts.monitoringAddr) {
          monitoring = await startMonitoringServer(opts.monitoringAddr, metrics, () =>
            agent.isReady(),
          );
          logger.info(
            { addr: `${monitoring.address.address}:${monitoring.address.port}` },
            'monitoring: /ready and /metrics',
          );
        }
        // Before the CA is asked: a CA's folder, or files of ours castellan did not write and
        // that are no workload set, are never written over.
        await checkCertificateFolder(opts.outDir, 'provisioned');
        if (opts.once) {
          if (opts.tokenFile === undefined) await agent.loadExisting();
          const issued = await agent.runOnce(opts.onceAttempts, stop.signal);
          process.stdout.write(
            `wrote ${opts.outDir}: ${issued.uris.join(', ')}, serial ${issued.serialNumber}, ` +
              `expires ${new Date(issued.notAfter).toISOString()}\n`,
          );
        } else {
          await agent.run(stop.signal);
          logger.info('stopped');
        }
      } finally {
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
        await monitoring?.close();
      }
    });
}
