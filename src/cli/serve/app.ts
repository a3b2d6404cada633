// The composition root of `castellan serve`: builds every component from ServeOptions, each with
// only its own options, and owns the order in which they start and stop. Read top to bottom:
// runServe (the process), then ServeApp.create (what is built from what), start, stop.
import type { Registry } from 'prom-client';
import { formatHostPort, type HostPort } from '../../address.js';
import { authenticateCaller } from '../../authn/authenticate.js';
import { ClientCertAuthenticator } from '../../authn/client-cert-authenticator.js';
import { JwtAuthenticator } from '../../authn/jwt-authenticator.js';
import type { Clock } from '../../clock.js';
import type { Logger } from '../../log.js';
import { PolicyCompiler } from '../../policy/compiler.js';
import { BundleHttpsServer } from '../../server/policy-bundle-https-server.js';
import { Admission } from '../../server/admission.js';
import { CaServer } from '../../server/ca-server.js';
import { caChainDer } from '../../server/create-certificate.js';
import { startCsrChecks, type CsrChecks } from '../../server/csr-check-threads.js';
import { servingCertificateIssuer, workloadLeafIssuer } from '../../server/issuers.js';
import { MonitoringServer, type Readiness } from '../../server/monitoring.js';
import { policyBundleService } from '../../server/policy-bundle-service.js';
import { PolicyDirSource } from '../../server/policy-dir-source.js';
import { meshSettingsFromText, readMeshConfigFile } from '../../server/policy-options.js';
import { ServingCertificateManager } from '../../server/serving-certificate.js';
import type { CaRuntime } from './ca-runtime.js';
import { startLocalRuntime } from './local-runtime.js';
import { MeshHolder } from './mesh-holder.js';
import type { Environment, ServeOptions } from './options.js';
import { StoppedWhileStarting } from './signals.js';

/** What serve takes from its process; read once, by the root (./command.ts, ./worker-main.ts). */
export interface ServeHost {
  readonly clock: Clock;
  readonly env: Environment;
  readonly logger: Logger;
  /** When given, a start still waiting for the API server gives up when it settles. */
  readonly stopRequested?: Promise<unknown> | undefined;
}

/** A whole process's worth: where the start line goes, and when to stop. */
export interface ServeProcessHost extends ServeHost {
  readonly stdout: { write(text: string): unknown };
  /** Resolves with the signal's name (SIGTERM, SIGINT) when the process is asked to stop. */
  readonly stopRequested: Promise<string>;
}

/** What a started serve tells its user. */
export interface ServingSummary {
  readonly grpc: HostPort;
  /** Undefined: no monitoring listener in this process (a cluster worker). */
  readonly monitoring: HostPort | undefined;
  /** Undefined: bundles over gRPC only. */
  readonly bundles: HostPort | undefined;
  /** Where clients find the trust bundle. */
  readonly trustBundle: string;
  readonly tokenHint: string;
}

/** Why serve does not serve yet, and where /ready tells the same. */
export interface WaitingSummary {
  readonly reason: string;
  /** Undefined: no monitoring listener in this process. */
  readonly monitoring: HostPort | undefined;
}

/**
 * The line serve prints when it starts without a CA (Kubernetes mode, a `cacerts` that does
 * not verify): it waits, and prints the start line once one is loaded.
 */
export function waitingLine(w: WaitingSummary): string {
  const monitoring = w.monitoring
    ? `/ready on ${formatHostPort(w.monitoring)} answers 503 until then`
    : 'no monitoring listener';
  return `castellan: waiting for a CA, not serving: ${w.reason}; ${monitoring}\n`;
}

/** The line serve prints once it serves (docs/serve.md shows it; tests read the ports from it). */
export function startLine(s: ServingSummary): string {
  const monitoring = s.monitoring ? formatHostPort(s.monitoring) : 'off';
  const bundles = s.bundles ? `https://${formatHostPort(s.bundles)}` : 'gRPC only';
  return (
    `castellan: CA serving on ${formatHostPort(s.grpc)} (monitoring ${monitoring}; bundles ${bundles}); ` +
    `trust bundle: ${s.trustBundle}; get a token: ${s.tokenHint}\n`
  );
}

/**
 * Serves until the process is asked to stop, then stops accepting, lets in-flight calls finish
 * and resolves (exit code 0).
 */
export async function runServe(options: ServeOptions, host: ServeProcessHost): Promise<void> {
  let app: ServeApp;
  try {
    app = await ServeApp.create(options, host);
  } catch (e) {
    if (!(e instanceof StoppedWhileStarting)) throw e;
    // E.g. SIGTERM while the API server could not be reached: nothing was serving.
    host.logger.info({ signal: await host.stopRequested }, 'stopped before serving');
    host.logger.flush();
    return;
  }
  // A stop may come while serve still waits for a CA: start() then resolves with nothing.
  const stopped = host.stopRequested.then(async (signal) => {
    host.logger.info({ signal }, 'shutting down: finishing in-flight requests');
    await app.stop();
  });
  // A stop asked for while create() ran (the signal already in) is taken first: its handler
  // runs on the next microtask, so start() then finds it stopping and opens nothing.
  await Promise.resolve();
  const serving = await app.start({ onWaiting: (w) => host.stdout.write(waitingLine(w)) });
  if (serving) host.stdout.write(startLine(serving));
  await stopped;
  host.logger.info('stopped');
  host.logger.flush();
}

interface ServeParts {
  readonly options: ServeOptions;
  readonly logger: Logger;
  readonly runtime: CaRuntime;
  readonly policyDir: PolicyDirSource | undefined;
  readonly csrChecks: CsrChecks;
  readonly serving: ServingCertificateManager;
  readonly server: CaServer<unknown>;
  readonly bundleHttps: BundleHttpsServer | undefined;
}

/** Every component of one serving process, built from ServeOptions; `start()` then `stop()`. */
export class ServeApp {
  /** This process's metrics: the CA service's, the CA source's, the CSR checks'. */
  readonly registries: readonly Registry[];
  /** /ready, /healthz and /metrics of this process; none in a cluster worker. */
  private readonly monitoring: MonitoringServer | undefined;
  private stopping: Promise<void> | undefined;
  /** Ends start()'s wait for a CA when stop() comes first. */
  private abortWait: (() => void) | undefined;
  /** Settles (never rejects) when start()'s steps have ended; stop() waits for it. */
  private starting: Promise<void> | undefined;

  private constructor(private readonly parts: ServeParts) {
    this.registries = [
      parts.server.metrics.registry,
      parts.runtime.registry,
      parts.csrChecks.registry,
    ];
    this.monitoring = parts.options.server.monitoringAddress
      ? new MonitoringServer({
          readiness: () => this.readiness(),
          registries: this.registries,
          logger: parts.logger,
        })
      : undefined;
  }

  /**
   * Builds the components and loads what they serve from (policies, then the CA); nothing
   * listens yet. A failure releases what was already started.
   */
  static async create(options: ServeOptions, host: ServeHost): Promise<ServeApp> {
    const { clock, logger } = host;
    // The one mesh config, and with it the one trust domain: issuance, renewals, ambient mode
    // and policies read it (./mesh-holder.ts). A file given wins; else, in Kubernetes mode,
    // ConfigMap istio is followed (the runtime feeds it below); else --trust-domain.
    const meshFileText = await readMeshConfigFile(options.policy);
    const mesh = new MeshHolder(
      meshSettingsFromText(meshFileText, options.policy.meshConfigFile ?? 'mesh', options.policy),
      logger,
    );
    const compiler = new PolicyCompiler(mesh.current());
    mesh.onChange((settings) => compiler.setMesh(settings));
    // Read before anything else starts: a missing folder stops serve with nothing created.
    const policyDir = options.policy.policyDir
      ? new PolicyDirSource({ dir: options.policy.policyDir, compiler, clock, logger })
      : undefined;
    await policyDir?.start();
    let runtime: CaRuntime | undefined;
    let csrChecks: CsrChecks | undefined;
    try {
      const { ca, authn, policy } = options;
      runtime = options.kube
        ? await (
            await import('./kube-runtime.js')
          ).startKubeRuntime(options.kube, {
            ca,
            authn,
            trustDomain: mesh.trustDomain,
            meshConfig: policy.meshConfigFile
              ? { file: { text: meshFileText, where: policy.meshConfigFile } }
              : {
                  apply: (text, where, first) =>
                    mesh.set(meshSettingsFromText(text, where, policy), first),
                },
            policyCompiler: compiler,
            clock,
            env: host.env,
            logger,
            stopRequested: host.stopRequested,
          })
        : await startLocalRuntime(
            { ca: { ...ca, trustDomain: mesh.trustDomain() }, authn },
            { clock, logger, env: host.env },
          );
      const { caState } = runtime;
      const clientCert = new ClientCertAuthenticator({
        trustDomain: mesh.trustDomain,
        trustDomainAliases: mesh.trustDomainAliases,
        roots: () => caState.current()?.bundle.roots ?? [],
        // The plugged-in CA's ca-crl.pem: a revoked workload certificate cannot renew, nor
        // read its policy bundle. Undefined with PILOT_ENABLE_CA_CRL=false (never loaded).
        revocations: () => caState.current()?.bundle.crl,
        clock,
      });
      const authenticators = [clientCert, ...runtime.tokenAuthenticators];
      csrChecks = startCsrChecks(options.server.csrThreads, { clock, logger });
      // Token signatures on the crypto thread too, for the tokens the cache does not answer.
      const { jwtOffload } = csrChecks;
      if (jwtOffload) {
        for (const a of authenticators) if (a instanceof JwtAuthenticator) a.offloadTo(jwtOffload);
      }
      const serving = new ServingCertificateManager({
        caState,
        issuer: servingCertificateIssuer,
        names: options.server.servingNames,
        clock,
        logger,
      });
      const server = new CaServer<unknown>({
        trustDomain: mesh.trustDomain,
        caState,
        authenticate: (request) => authenticateCaller(authenticators, request),
        issuer: workloadLeafIssuer(clock, csrChecks.checker),
        impersonation: runtime.impersonation,
        admission: new Admission(options.server.admission, clock),
        ttl: options.server.ttl,
        clock,
        grpcAddress: options.server.grpcAddress,
        serving,
        logger,
        connections: options.server.connections,
        transport: options.server.grpcTransport,
      });
      // Policy bundles: the gRPC Watch stream on the CA port, and optionally GET over HTTPS.
      // Only the caller's workload certificate counts (no tokens): a workload reads its own
      // bundle. grpc-js hands out the peer leaf alone, so our CA chain stands in for the
      // intermediates, as in CreateCertificate (without it, a leaf issued under an
      // intermediate never verifies).
      const bundleServing = {
        source: compiler,
        authenticator: clientCert,
        intermediates: () => caChainDer(caState.current()),
      };
      const bundles = policyBundleService(bundleServing);
      server.addService(bundles.service, bundles.implementation);
      const bundleHttps = options.server.bundleAddress
        ? new BundleHttpsServer({ ...bundleServing, serving, logger })
        : undefined;
      return new ServeApp({
        options,
        logger,
        runtime,
        policyDir,
        csrChecks,
        serving,
        server,
        bundleHttps,
      });
    } catch (e) {
      await csrChecks?.checker.close();
      await runtime?.close();
      await policyDir?.stop();
      throw e;
    }
  }

  /**
   * Ready = a CA is loaded, its serving certificate is in place, and the gRPC port listens.
   * Without a CA, the reason is the runtime's (e.g. the `cacerts` that does not verify).
   */
  readiness(): Readiness {
    const r = this.parts.server.readiness();
    const { runtime } = this.parts;
    if (r.ready || runtime.caState.current()) return r;
    return { ready: false, reason: runtime.whyNoCa?.() ?? r.reason };
  }

  /**
   * Listens, then publishes the trust bundle and serves: monitoring first (so /ready answers
   * while the rest starts), then — once a CA is loaded — the trust bundle, the gRPC port once
   * its serving certificate is issued, then the bundle port. Without a CA (Kubernetes mode, a
   * `cacerts` that does not verify) it waits, telling `onWaiting` why, with the gRPC port closed:
   * its TLS certificate comes from the CA, and a closed port is what clients of an istiod that
   * refused its CA meet too. Resolves with nothing when stop() comes first. A failure (e.g. a
   * port in use) stops whatever did start, so the process can exit.
   *
   * A stop() that arrives while start() is binding waits for it, then closes everything it
   * bound: before, a SIGTERM between the CA loading and the listeners binding let start() bind
   * them after stop() had closed everything, and serve went on serving after logging "stopped".
   */
  start(
    hooks: { readonly onWaiting?: (w: WaitingSummary) => void } = {},
  ): Promise<ServingSummary | undefined> {
    const started = this.startSteps(hooks);
    this.starting = started.then(
      () => undefined,
      () => undefined,
    );
    return started.catch(async (e: unknown) => {
      await this.stop();
      throw e;
    });
  }

  private async startSteps(hooks: {
    readonly onWaiting?: (w: WaitingSummary) => void;
  }): Promise<ServingSummary | undefined> {
    const { options, runtime, serving, server, bundleHttps, logger } = this.parts;
    const monitoring = this.monitoring;
    const monitoringAddress = options.server.monitoringAddress;
    if (this.stopAsked()) return undefined;
    const monitoringBound =
      monitoring && monitoringAddress ? await monitoring.listen(monitoringAddress) : undefined;
    if (!runtime.caState.current()) {
      const reason = this.readiness().reason ?? 'no CA loaded yet';
      logger.warn({ reason }, 'waiting for a CA: not serving until one is loaded');
      hooks.onWaiting?.({ reason, monitoring: monitoringBound });
      if (!(await this.caLoaded())) return undefined;
      logger.info({ source: runtime.caState.current()?.bundle.source }, 'CA loaded: serving');
    }
    // A stop() that comes during start-up is waiting for this start to end: nothing more is
    // opened once it has come (a listener bound after "shutting down" would be one an operator
    // sees come up while the process stops).
    if (this.stopAsked()) return undefined;
    await runtime.publishTrustBundle();
    await serving.start();
    if (this.stopAsked()) return undefined;
    const grpc = await server.start();
    if (this.stopAsked()) return undefined;
    const bundleAddress = options.server.bundleAddress;
    const bundles =
      bundleHttps && bundleAddress ? await bundleHttps.listen(bundleAddress) : undefined;
    // A stop() that came meanwhile is waiting for this start to end, and closes all of it: then
    // nothing serves, and nothing says it does.
    if (this.stopAsked()) return undefined;
    return {
      grpc,
      monitoring: monitoringBound,
      bundles,
      trustBundle: runtime.trustBundle,
      tokenHint: runtime.tokenHint,
    };
  }

  /** stop() has been called (a method: TypeScript would keep a field narrowed across awaits). */
  private stopAsked(): boolean {
    return this.stopping !== undefined;
  }

  /** Resolves true once the runtime has a CA, false if stop() comes first. */
  private caLoaded(): Promise<boolean> {
    const { caState } = this.parts.runtime;
    return new Promise((resolve) => {
      if (this.stopping) {
        resolve(false);
        return;
      }
      const unsubscribe = caState.onChange(() => {
        unsubscribe();
        this.abortWait = undefined;
        resolve(true);
      });
      this.abortWait = () => {
        unsubscribe();
        resolve(false);
      };
    });
  }

  /**
   * Stops accepting and lets in-flight calls finish, then releases the rest. Monitoring closes
   * after the gRPC port, so /ready reports the drain. Idempotent.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.abortWait?.();
      // A start() in progress binds what it is binding first; then all of it is closed.
      await this.starting;
      const p = this.parts;
      await p.bundleHttps?.close();
      await p.server.stop();
      p.serving.stop();
      await this.monitoring?.close();
      await p.csrChecks.checker.close();
      await p.runtime.close();
      await p.policyDir?.stop();
    })();
    return this.stopping;
  }
}
