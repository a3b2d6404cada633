import { readFile } from 'node:fs/promises';
import { sleep, type Clock } from '../clock.js';
import { formatDuration } from '../duration.js';
import { CastellanError, asCastellanError } from '../errors.js';
import type { Logger } from '../log.js';
import { createKeyAndCsr, type WorkloadKeyType } from '../pki/csr-builder.js';
import { readCertificateFiles, writeCertificateFiles } from './atomic-files.js';
import type { CertificateAuthorityClient } from './ca-client.js';
import type { ExecResult } from './exec-hook.js';
import {
  acceptIssuedChain,
  acceptStoredCertificate,
  type IssuedCertificate,
} from './issued-chain.js';
import type { AgentMetrics } from './monitoring.js';
import {
  isRetriable,
  renewalTime,
  retryDelay,
  type Random,
  type RenewalPolicy,
} from './renewal.js';

export interface AgentConfig {
  /** Where cert-chain.pem, key.pem and root-cert.pem go. */
  readonly outDir: string;
  /** The configured trust anchor; written as root-cert.pem if the CA sends no root. */
  readonly rootCertFile: string;
  readonly keyType: WorkloadKeyType;
  /** Requested lifetime, seconds; 0 lets the CA choose. */
  readonly validitySeconds: number;
  /**
   * Whether requests carry a bearer token. Without one the agent renews over mTLS with the
   * certificate it holds, so it needs a valid one in outDir to start from.
   */
  readonly authenticatesWithToken: boolean;
  readonly policy: RenewalPolicy;
  /** Shell command run after each write. */
  readonly exec?: string | undefined;
}

export interface AgentDeps {
  readonly ca: CertificateAuthorityClient;
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Logger;
  readonly metrics?: AgentMetrics | undefined;
  readonly runExec?: ((command: string, dir: string) => Promise<ExecResult>) | undefined;
}

/**
 * Sleeps are cut into slices of at most this much, so a suspended machine or a clock jump
 * never leaves the agent asleep long past its renewal time.
 */
const MAX_SLEEP_MS = 60_000;

/**
 * Keeps one workload certificate fresh: a new key and CSR for every certificate, the call
 * to the CA, the checks on the answer, the atomic write, the exec hook. Failures never
 * touch the files: the current certificate stays in place until it expires, and the agent
 * keeps trying (retriable errors with backoff, the others with a long pause and one log
 * line).
 */
export class WorkloadAgent {
  private held: IssuedCertificate | undefined;

  constructor(
    private readonly config: AgentConfig,
    private readonly deps: AgentDeps,
  ) {}

  /** The certificate on disk, as last written or found at start. */
  get current(): IssuedCertificate | undefined {
    return this.held;
  }

  /** True while a certificate that has not expired is on disk. */
  isReady(): boolean {
    return this.held !== undefined && this.deps.clock.now() < this.held.notAfter;
  }

  /** Picks up a valid certificate left by an earlier run (or provisioned for mTLS renewal). */
  async loadExisting(): Promise<IssuedCertificate | undefined> {
    const files = await readCertificateFiles(this.config.outDir);
    if (!files) return undefined;
    const stored = acceptStoredCertificate(files.certChainPem, files.keyPem, files.rootCertPem);
    if (!stored || stored.notAfter <= this.deps.clock.now()) {
      this.deps.logger.info(
        { dir: this.config.outDir },
        'certificate files in the output directory are unusable or expired; not reusing them',
      );
      return undefined;
    }
    this.held = stored;
    this.deps.metrics?.certificateWritten(stored.notAfter);
    this.deps.logger.info(
      { serial: stored.serialNumber, notAfter: new Date(stored.notAfter).toISOString() },
      'reusing the certificate found in the output directory',
    );
    return stored;
  }

  /** Obtains one certificate and writes it. Throws CastellanError; the files stay as they were. */
  async renew(): Promise<IssuedCertificate> {
    const { config, deps } = this;
    const now = deps.clock.now();
    let clientIdentity: { certChainPem: string; keyPem: string } | undefined;
    if (!config.authenticatesWithToken) {
      if (!this.held || this.held.notAfter <= now) {
        throw new CastellanError(
          'unauthenticated',
          'no token file and no valid certificate in the output directory to renew with over mTLS',
          { subject: config.outDir },
        );
      }
      clientIdentity = { certChainPem: this.held.certChainPem, keyPem: this.held.keyPem };
    }
    const { keyPem, csrPem } = await createKeyAndCsr(config.keyType);
    deps.metrics?.requests.inc();
    const chain = await deps.ca.createCertificate({
      csrPem,
      validitySeconds: config.validitySeconds,
      extraTrustPem: this.held?.rootCertPem,
      clientIdentity,
    });
    const fallbackRoot = await readFile(config.rootCertFile, 'utf8').catch(() => '');
    const issued = acceptIssuedChain(chain, keyPem, fallbackRoot, deps.clock.now());
    const rootsChanged = this.held !== undefined && this.held.rootCertPem !== issued.rootCertPem;
    await writeCertificateFiles(config.outDir, issued, deps.clock, 'provisioned');
    this.held = issued;
    deps.metrics?.renewals.inc();
    deps.metrics?.certificateWritten(issued.notAfter);
    deps.logger.info(
      {
        serial: issued.serialNumber,
        identity: issued.uris.join(','),
        notAfter: new Date(issued.notAfter).toISOString(),
        rootsChanged,
        dir: config.outDir,
      },
      rootsChanged
        ? 'wrote a new certificate; the CA trust bundle changed and root-cert.pem follows it'
        : 'wrote a new certificate',
    );
    if (config.exec && deps.runExec) {
      const result = await deps.runExec(config.exec, config.outDir);
      if (result.code === 0) deps.logger.info({ exec: config.exec }, 'exec hook succeeded');
      else
        deps.logger.warn(
          {
            exec: config.exec,
            code: result.code,
            signal: result.signal,
            timedOut: result.timedOut,
          },
          'exec hook failed',
        );
    }
    return issued;
  }

  /**
   * `--once`: one certificate, retrying retriable failures up to `maxAttempts` times;
   * anything else fails at once.
   */
  async runOnce(maxAttempts: number, signal: AbortSignal): Promise<IssuedCertificate> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.renew();
      } catch (e) {
        const err = asCastellanError(e);
        this.deps.metrics?.failures.inc({ reason: err.kind });
        if (!isRetriable(err.kind) || attempt >= maxAttempts || signal.aborted) throw err;
        const delay = retryDelay(
          err.kind,
          attempt,
          this.config.policy,
          this.deps.random,
          this.deps.clock.now(),
        );
        this.deps.logger.warn(
          { kind: err.kind, attempt, retryIn: formatDuration(delay) },
          `${err.message}; retrying`,
        );
        await this.pause(delay, signal);
      }
    }
  }

  /**
   * Waits `ms` on the clock or until `signal` aborts. The timer keeps the process alive: between
   * renewals the agent's loop is all there is (the monitoring server is optional).
   */
  private pause(ms: number, signal: AbortSignal): Promise<void> {
    return sleep(this.deps.clock, ms, signal, { keepAlive: true });
  }

  private renewalDue(cert: IssuedCertificate): number {
    const lifetime = { notBefore: cert.obtainedAt, notAfter: cert.notAfter };
    return renewalTime(lifetime, this.config.policy, this.deps.random);
  }

  /** The rotation loop, until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const { deps, config } = this;
    if (!this.held) await this.loadExisting();
    if (!config.authenticatesWithToken && !this.held) {
      throw new CastellanError(
        'invalid-argument',
        `without --token-file the agent renews over mTLS and needs a valid certificate and key in ${config.outDir}`,
        { subject: '--token-file' },
      );
    }
    let due = this.held ? this.renewalDue(this.held) : deps.clock.now();
    let failures = 0;
    let reported: string | undefined;
    while (!signal.aborted) {
      const now = deps.clock.now();
      if (now < due) {
        await this.pause(Math.min(due - now, MAX_SLEEP_MS), signal);
        continue;
      }
      try {
        const issued = await this.renew();
        failures = 0;
        reported = undefined;
        due = this.renewalDue(issued);
        deps.logger.debug({ renewAt: new Date(due).toISOString() }, 'next renewal scheduled');
      } catch (e) {
        const err = asCastellanError(e);
        failures++;
        deps.metrics?.failures.inc({ reason: err.kind });
        const at = deps.clock.now();
        const delay = retryDelay(err.kind, failures, config.policy, deps.random, at, this.held);
        due = at + delay;
        const holding = this.held
          ? this.held.notAfter > at
            ? `keeping the current certificate (expires ${new Date(this.held.notAfter).toISOString()})`
            : 'the current certificate has EXPIRED'
          : 'no certificate yet';
        const fields = { kind: err.kind, failures, retryIn: formatDuration(delay) };
        if (isRetriable(err.kind)) {
          deps.logger.warn(fields, `${err.message}; ${holding}; retrying with backoff`);
        } else if (reported !== err.message) {
          // One clear line per distinct cause: repeating it every few minutes adds nothing.
          reported = err.message;
          deps.logger.error(
            fields,
            `${err.message}; ${holding}; this will not fix itself (check the token, the CA's trust ` +
              `domain and the requested TTL); next attempt in ${formatDuration(delay)}`,
          );
        } else {
          deps.logger.debug(fields, err.message);
        }
      }
    }
  }
}
