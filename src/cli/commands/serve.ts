import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { authenticateCaller } from '../../authn/authenticate.js';
import type { Authenticator } from '../../authn/authenticator.js';
import { ClientCertAuthenticator } from '../../authn/client-cert-authenticator.js';
import { DevTokenIssuer } from '../../authn/dev-token-issuer.js';
import { loadJwksFile } from '../../authn/jwks.js';
import { JwtAuthenticator } from '../../authn/jwt-authenticator.js';
import type { CaState, KeyCertBundle } from '../../ca/authority.js';
import { SwappableCaState } from '../../ca/ca-state.js';
import { loadCacertsFolder, readCacertsFolder } from '../../ca/sources/folder.js';
import { loadOrCreateSelfSignedCa } from '../../ca/sources/self-signed.js';
import { KeyUriSigners } from '../../ca/signers/key-uri-signers.js';
import { openPkcs11Signer } from '../../ca/signers/pkcs11-signer.js';
import { writeFileAtomic } from '../../atomic-write.js';
import { systemClock, type Clock } from '../../clock.js';
import { CastellanError, isCastellanError } from '../../errors.js';
import { createLogger, type Logger } from '../../log.js';
import { Counter, Gauge, Registry } from 'prom-client';
import { formatHostPort } from '../../address.js';
import { CaServer } from '../../server/ca-server.js';
import { caChainDer } from '../../server/ca-service.js';
import { servingCertificateIssuer, workloadLeafIssuer } from '../../server/issuers.js';
import { CsrCheckPool, inlineCsrChecker, resolveCsrThreads } from '../../server/csr-check-pool.js';
import { readFile } from 'node:fs/promises';
import { parseSingleDocument } from '../../policy/documents.js';
import { PolicyCompiler } from '../../policy/compiler.js';
import { parseMesh, type MeshSettings } from '../../policy/mesh.js';
import { BundleHttpsServer } from '../../server/bundle-https-server.js';
import { PolicyDirSource } from '../../server/policy-dir-source.js';
import {
  policyBundleService,
  type PolicyBundleServingOptions,
} from '../../server/policy-bundles.js';
import {
  addKubeOptions,
  parseKubeOptions,
  type KubeModeConfig,
  type RawKubeOptions,
} from '../kube-options.js';
import {
  addServeOptions,
  parseServeConfig,
  type RawServeOptions,
  type ServeConfig,
} from '../serve-config.js';
import { clusterWorkerHooks, serveAsClusterPrimary, stopSignal } from '../serve-cluster.js';

/** The trust bundle clients need, kept in the data dir. */
export const ROOT_CERT_FILE = 'root-cert.pem';

/**
 * Where the CA material and the authenticators come from. Local mode (below) reads the data
 * dir or `--cacerts-dir`; Kubernetes mode (`--kube`, src/cli/kube-wiring.ts) provides its own
 * CaState (Secrets, watched) and adds TokenReview to the authenticators.
 */
export interface CaRuntime {
  readonly caState: CaState;
  /** Tried in order after the client certificate: JWTs, then TokenReview. */
  readonly tokenAuthenticators: readonly Authenticator[];
  /** What the start line tells the user about getting a token. */
  readonly tokenHint: string;
  close(): Promise<void>;
}

/** Local mode: a plugged-in folder or the self-signed root in the data dir; the dev token issuer. */
export async function startLocalRuntime(
  config: ServeConfig,
  clock: Clock,
  logger: Logger,
  onCaLoadError: (source: string) => void = () => {},
): Promise<CaRuntime> {
  // Opened while the CA loads: a new data dir's RSA key is generated on the thread pool.
  const devIssuer = DevTokenIssuer.open(config.dataDir, { clock });
  // Settled here if the CA load throws first, so its failure is not also an unhandled rejection.
  devIssuer.catch(() => undefined);
  let bundle: KeyCertBundle | undefined;
  // Keys in a PKCS#11 token (--ca-key-uri, or the folder's ca-key.uri): opened on first use.
  const signers = new KeyUriSigners({
    opener: (uri) => openPkcs11Signer({ uri, env: process.env, clock, logger }),
    clock,
  });
  const keys = { keyUri: config.caKeyUri, signers };
  if (config.cacertsDir) {
    bundle = await loadCacertsFolder(config.cacertsDir, clock, keys).catch(async (e: unknown) => {
      await signers.close();
      throw e;
    });
    if (!bundle) {
      throw new CastellanError(
        'incomplete-ca',
        'holds none of ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem (or tls.crt, tls.key, ca.crt)',
        { subject: config.cacertsDir },
      );
    }
  } else {
    bundle = await loadOrCreateSelfSignedCa(
      { dataDir: config.dataDir, trustDomain: config.trustDomain, keyType: config.caKeyType },
      clock,
    );
  }
  const caState = new SwappableCaState();
  caState.swap(bundle);
  logger.info({ source: bundle.source, keyType: bundle.signingKeyType }, 'CA loaded');

  const dev = await devIssuer;
  const tokenAuthenticators: Authenticator[] = [
    new JwtAuthenticator({
      issuer: dev.issuer,
      keys: dev.keySource(),
      audiences: config.tokenAudiences,
      clock,
      logger,
    }),
  ];
  if (config.jwt) {
    tokenAuthenticators.push(
      new JwtAuthenticator({
        issuer: config.jwt.issuer,
        keys: await loadJwksFile(config.jwt.jwksFile),
        audiences: config.tokenAudiences,
        clock,
        logger,
      }),
    );
  }
  const stopWatching = config.cacertsDir
    ? watchCacertsFolder(config.cacertsDir, caState, clock, logger, onCaLoadError, keys)
    : () => {};
  const dataDirFlag = config.dataDir === './.castellan' ? '' : ` --data-dir ${config.dataDir}`;
  return {
    caState,
    tokenAuthenticators,
    tokenHint: `npx castellan token --namespace default --service-account default${dataDirFlag} > token`,
    close: async () => {
      stopWatching();
      await signers.close();
    },
  };
}

/** How often a plugged-in folder is re-read (mounted Secrets change by symlink swaps). */
export const CACERTS_POLL_MS = 2000;

/**
 * Follows a plugged-in CA folder: when its files change, the new set is verified completely
 * and swapped in one step; a broken or partial set is refused (logged, counted) and serving
 * goes on with the last good CA.
 */
function watchCacertsFolder(
  dir: string,
  caState: SwappableCaState,
  clock: Clock,
  logger: Logger,
  onCaLoadError: (source: string) => void,
  keys: { keyUri: string | undefined; signers: KeyUriSigners },
): () => void {
  let last: string | undefined;
  let busy = false;
  // Matches no fingerprint: the next poll loads the set again.
  const RETRY = '(retry)';
  const fingerprint = (files: Map<string, string>): string =>
    JSON.stringify([...files.entries()].sort());
  const check = async (): Promise<void> => {
    if (busy) return;
    busy = true;
    try {
      const files = await readCacertsFolder(dir);
      const print = fingerprint(files);
      if (last === undefined) {
        last = print;
        return;
      }
      if (print === last) return;
      last = print;
      const bundle = await loadCacertsFolder(dir, clock, keys);
      if (!bundle)
        throw new CastellanError('incomplete-ca', 'the CA files were removed', { subject: dir });
      const snapshot = caState.swap(bundle);
      keys.signers.retain(bundle.signer);
      logger.info(
        { source: bundle.source, generation: snapshot.generation },
        'plugged-in CA changed: swapped',
      );
    } catch (e) {
      // A token that did not answer (`unavailable`) says nothing about the new set: it is tried
      // again at the next poll rather than waiting for the files to change again.
      if (isCastellanError(e, 'unavailable')) last = RETRY;
      onCaLoadError(`cacerts-dir:${dir}`);
      logger.error(
        { err: e instanceof Error ? e.message : String(e) },
        'plugged-in CA update refused; still serving with the last good CA',
      );
    } finally {
      busy = false;
    }
  };
  void check();
  const timer = setInterval(() => void check(), CACERTS_POLL_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * Runs the CA service until SIGTERM/SIGINT, then stops accepting, lets in-flight calls finish
 * and resolves (exit code 0).
 */
export async function runServe(
  config: ServeConfig,
  kube: KubeModeConfig | undefined = undefined,
  clock: Clock = systemClock,
): Promise<void> {
  // Set when this process is one of `--workers N` (src/cli/serve-cluster.ts).
  const worker = clusterWorkerHooks();
  const logger =
    worker?.tagLogger(createLogger({ level: config.logLevel })) ??
    createLogger({ level: config.logLevel });
  // Refused CA updates (a plugged-in folder or Kubernetes Secrets), shown on /metrics beside
  // the CA service's own.
  const extraMetrics = new Registry();
  const caLoadErrors = new Counter({
    name: 'castellan_ca_load_errors_total',
    help: 'CA updates refused (bad key pair, chain, partial set); serving goes on with the last good CA.',
    labelNames: ['source'],
    registers: [extraMetrics],
  });
  const policyCompiler = new PolicyCompiler(await meshSettings(config));
  // Read before anything else starts: a missing folder stops serve with nothing created.
  const policyDir = config.policyDir
    ? new PolicyDirSource({ dir: config.policyDir, compiler: policyCompiler, logger })
    : undefined;
  await policyDir?.start();
  const runtime: CaRuntime = kube?.enabled
    ? // Loaded only in Kubernetes mode: @kubernetes/client-node costs ~0.5 s of start-up.
      await (
        await import('../kube-wiring.js')
      ).startKubeMode(kube, {
        policyCompiler,
        namespace: config.namespace,
        trustDomain: config.trustDomain,
        tokenAudiences: config.tokenAudiences,
        caKeyType: config.caKeyType,
        caKeyUri: config.caKeyUri,
        clock,
        logger,
        onCaLoadError: (source) => caLoadErrors.inc({ source }),
      })
    : await startLocalRuntime(config, clock, logger, (source) => caLoadErrors.inc({ source }));

  // root-cert.pem follows the CA: written now and after every swap. (In Kubernetes mode the
  // trust bundle is the istio-ca-root-cert ConfigMap and the file system may be read-only.)
  const rootPath = resolve(join(config.dataDir, ROOT_CERT_FILE));
  const writeRoot = async (pem: string): Promise<void> => {
    if (kube?.enabled) return;
    try {
      await writeFileAtomic(rootPath, pem);
    } catch (e) {
      logger.error({ err: e, path: rootPath }, 'could not write the trust bundle');
    }
  };
  const initial = runtime.caState.current();
  if (initial) await writeRoot(initial.bundle.rootBundlePem);
  const unsubscribe = runtime.caState.onChange((s) => void writeRoot(s.bundle.rootBundlePem));

  const clientCert = new ClientCertAuthenticator({
    trustDomain: config.trustDomain,
    roots: () => runtime.caState.current()?.bundle.roots ?? [],
    clock,
  });
  const authenticators = [clientCert, ...runtime.tokenAuthenticators];
  const csrThreads = resolveCsrThreads(config.csrThreads);
  const csrPool = csrThreads > 0 ? new CsrCheckPool(csrThreads, { logger }) : undefined;
  const csrChecker = csrPool ?? inlineCsrChecker;
  new Gauge({
    name: 'castellan_csr_check_threads_ready',
    help: 'Threads checking CSRs beside the event loop that are up (0: checks run on the event loop).',
    registers: [extraMetrics],
    collect() {
      this.set(csrPool?.readyThreads ?? 0);
    },
  });
  const server = new CaServer({
    trustDomain: config.trustDomain,
    caState: runtime.caState,
    authenticate: (request) => authenticateCaller(authenticators, request),
    issuer: workloadLeafIssuer(clock, csrChecker),
    ttl: { defaultTtlMs: config.defaultTtlMs, maxTtlMs: config.maxTtlMs },
    clock,
    grpcAddress: config.grpcAddress,
    monitoringAddress: worker ? undefined : config.monitoringAddress,
    servingNames: { dnsNames: config.servingDnsNames, ipAddresses: config.servingIpAddresses },
    servingIssuer: servingCertificateIssuer,
    logger,
  });
  server.monitoring?.addRegistry(extraMetrics);

  // Policy bundles: the gRPC Watch stream on the CA port, and optionally GET over HTTPS. Only
  // the caller's workload certificate counts (no tokens): a workload reads its own bundle.
  // grpc-js hands out the peer leaf alone, so our CA chain stands in for the intermediates, as
  // in CreateCertificate (without it, a leaf issued under an intermediate never verifies).
  const bundleServing: PolicyBundleServingOptions = {
    source: policyCompiler,
    authenticator: clientCert,
    intermediates: () => caChainDer(runtime.caState.current()),
  };
  const bundles = policyBundleService(bundleServing);
  server.addService(bundles.service, bundles.implementation);
  const bundleHttps = config.bundleAddress
    ? new BundleHttpsServer({ ...bundleServing, serving: server.serving, logger })
    : undefined;
  // Releases everything started above, after a signal or a failed start alike.
  const shutdown = async (): Promise<void> => {
    policyDir?.stop();
    await bundleHttps?.close();
    await server.stop();
    await csrChecker.close();
    unsubscribe();
    await runtime.close();
  };

  const stopped = stopSignal();
  let addrs;
  let bundleAddr;
  try {
    addrs = await server.start();
    if (bundleHttps && config.bundleAddress)
      bundleAddr = await bundleHttps.listen(config.bundleAddress);
  } catch (e) {
    // e.g. a port in use: release whatever did start, so the process can exit.
    await shutdown();
    throw e;
  }
  const grpcAddr = formatHostPort(addrs.grpc);
  (worker?.announce ?? ((line: string) => process.stdout.write(line)))(
    `castellan: CA serving on ${grpcAddr} (monitoring ${addrs.monitoring ? formatHostPort(addrs.monitoring) : 'off'}; ` +
      `bundles ${bundleAddr ? `https://${formatHostPort(bundleAddr)}` : 'gRPC only'}); ` +
      `trust bundle: ${kube?.enabled ? 'ConfigMap istio-ca-root-cert' : rootPath}; get a token: ${runtime.tokenHint}\n`,
  );

  worker?.serving({
    registries: [server.metrics.registry, extraMetrics],
    readiness: () => server.readiness(),
  });
  const signal = await stopped;
  logger.info({ signal }, 'shutting down: finishing in-flight requests');
  await shutdown();
  logger.info('stopped');
  logger.flush();
}

/** MeshConfig for policies: --mesh-config, else the root namespace is ours, as in istiod. */
async function meshSettings(config: ServeConfig): Promise<MeshSettings> {
  if (!config.meshConfigFile) {
    return {
      ...parseMesh(undefined),
      rootNamespace: config.namespace,
      trustDomain: config.trustDomain,
    };
  }
  let text: string;
  try {
    text = await readFile(config.meshConfigFile, 'utf8');
  } catch (e) {
    throw new CastellanError('invalid-argument', `cannot read: ${(e as Error).message}`, {
      subject: config.meshConfigFile,
    });
  }
  const raw = parseSingleDocument(text, config.meshConfigFile);
  const mesh = parseMesh(raw, config.meshConfigFile);
  const given = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>) : {};
  return {
    ...mesh,
    rootNamespace: given['rootNamespace'] ? mesh.rootNamespace : config.namespace,
    trustDomain: given['trustDomain'] ? mesh.trustDomain : config.trustDomain,
  };
}

export function registerServeCommand(program: Command): void {
  const command = program
    .command('serve')
    .description(
      "run the CA: Istio's CreateCertificate gRPC API over TLS, plus /ready and /metrics",
    );
  addKubeOptions(addServeOptions(command)).action(
    async (options: RawServeOptions & RawKubeOptions) => {
      // Every flag is checked before anything starts.
      const config = parseServeConfig(options, process.env);
      const kube = parseKubeOptions(options, process.env);
      if (config.caKeyUri !== undefined && !kube?.enabled && config.cacertsDir === undefined) {
        throw new CastellanError(
          'invalid-argument',
          'goes with --cacerts-dir, or --kube (the certificates of the key)',
          { subject: '--ca-key-uri' },
        );
      }

      if (await serveAsClusterPrimary(config, kube?.enabled === true)) return;
      await runServe(config, kube);
    },
  );
}
