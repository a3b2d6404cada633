import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Authenticator } from '../../authn/authenticator.js';
import { CachingTokenReviewer } from '../../authn/caching-token-reviewer.js';
import {
  formatNodeAccount,
  NodeAuthorizer,
  type Impersonation,
} from '../../authn/impersonation.js';
import { JwtAuthenticator } from '../../authn/jwt-authenticator.js';
import type { AuthnOptions } from '../../authn/options.js';
import { TokenReviewAuthenticator } from '../../authn/token-review-authenticator.js';
import { SwappableCaState } from '../../ca/swappable-ca-state.js';
import type { CaOptions } from '../../ca/options.js';
import { KeyUriSigners } from '../../ca/signers/key-uri-signers.js';
import { openPkcs11Signer } from '../../ca/signers/pkcs11-signer.js';
import type { Clock } from '../../clock.js';
import { CastellanError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { KubeCaSource } from '../../kube/cacerts-secret-source.js';
import { kubeConfigFromString, loadKubeConfig, makeClients } from '../../kube/client.js';
import { EventRecorder } from '../../kube/events.js';
import { ApiServerJwks } from '../../kube/jwt-discovery.js';
import {
  MESH_CONFIGMAP,
  MESH_CONFIGMAP_KEY,
  startMeshConfigWatch,
} from '../../kube/mesh-config-watch.js';
import { LeaderElector, whileLeader } from '../../kube/leader-election.js';
import type { KubeOptions } from '../../kube/options.js';
import { ClusterPodIndexes } from '../../kube/pod-index.js';
import { startPolicyWatch } from '../../kube/policy-watch.js';
import {
  CRL_CONFIGMAP_KEY,
  ConfigMapPublisher,
  ROOT_CERT_CONFIGMAP_KEY,
  type PublishedConfigMap,
} from '../../kube/configmap-publisher.js';
import { DiscoveryNamespaces } from '../../kube/discovery-namespaces.js';
import { RootRotator } from '../../kube/root-rotation.js';
import type { TokenReviewer } from '../../authn/token-review-authenticator.js';
import {
  KubeTokenReviewer,
  SecretRemoteClusters,
  StaticRemoteClusters,
} from '../../kube/kube-token-reviewer.js';
import type { PolicyCompiler } from '../../policy/compiler.js';
import { caLoadErrorsMetric, type CaRuntime } from './ca-runtime.js';
import type { Environment } from './options.js';
import { StoppedWhileStarting } from './signals.js';

// Loaded only in Kubernetes mode (app.ts imports it on demand): @kubernetes/client-node, which
// everything under src/kube/ pulls in, costs ~0.5 s of start-up.

export interface KubeRuntimeDeps {
  /**
   * Key type and lifetime of a self-signed root (istio-ca-secret); whether a `ca-crl.pem` in
   * `cacerts` is read and published; and the `cacerts` key in a PKCS#11 token (--ca-key-uri)
   * unless the Secret names it (ca-key.uri).
   */
  readonly ca: Pick<
    CaOptions,
    'selfSignedKeyType' | 'selfSignedRootTtlMs' | 'enableCaCrl' | 'caKeyUri'
  >;
  /**
   * The current trust domain (src/cli/serve/mesh-holder.ts), read per request by the node
   * authorizer, and once by the first replica to create a self-signed root (its subject O).
   */
  readonly trustDomain: () => string;
  /**
   * Where the mesh config comes from, as in istiod, for the holder and the discovery selectors
   * alike (pkg/kube/namespace/filter.go reads them from the one mesh watcher):
   * - `apply` (no mesh config file): ConfigMap `istio`'s `mesh` key is followed and handed to
   *   `apply` (the text, or undefined when absent), first once before anything else starts — a
   *   refusal then stops the start, naming the ConfigMap — then on every change, where a refusal
   *   keeps the last good settings (istiod: "invalid mesh config, using last known state");
   * - `file` (`--mesh-config`): its text, read once; the ConfigMap is not watched at all;
   * - absent: the ConfigMap is followed for the discovery selectors only.
   */
  readonly meshConfig?:
    | { apply(text: string | undefined, where: string, first: boolean): void }
    | { readonly file: { readonly text: string | undefined; readonly where: string } }
    | undefined;
  readonly authn: Pick<AuthnOptions, 'tokenAudiences'>;
  readonly clock: Clock;
  /** POD_NAME (this replica's name in the Lease), KUBERNETES_SERVICE_HOST (in-cluster config). */
  readonly env: Environment;
  readonly logger: Logger;
  /** This replica's name in the Lease; default POD_NAME or the host name, plus a suffix. */
  readonly identity?: string | undefined;
  /** Fed from PeerAuthentications, AuthorizationPolicies, Pods and Namespaces when given. */
  readonly policyCompiler?: PolicyCompiler | undefined;
  /**
   * Settles when the process is asked to stop. The start waits for the API server as long as it
   * takes (every list is retried); a stop ends that wait with StoppedWhileStarting, after what
   * had started is released.
   */
  readonly stopRequested?: Promise<unknown> | undefined;
}

/** Kubernetes mode's CaRuntime; `leader` is exposed for tests and logs. */
export interface KubeRuntime extends CaRuntime {
  readonly leader: LeaderElector;
  /** Ambient mode's node authorizer; undefined without trusted node accounts. */
  readonly impersonation: Impersonation | undefined;
}

/**
 * Starts Kubernetes mode: the CA from `cacerts` / `istio-ca-secret` (watched), TokenReview
 * (cached; remote clusters), optional offline JWT verification, the mesh config's
 * discoverySelectors, and the policy watches. Resolves once the Secrets are read: with a CA
 * loaded, or with none when `cacerts` does not verify (`whyNoCa()` says why; a good one is
 * picked up from the watch). `publishTrustBundle()`, called once a CA is loaded, joins leader
 * election: the leader publishes the root as ConfigMap istio-ca-root-cert, and the CRL as
 * istio-ca-crl, in every selected namespace, and re-issues an expiring self-signed root.
 */
export async function startKubeRuntime(
  config: KubeOptions,
  deps: KubeRuntimeDeps,
): Promise<KubeRuntime> {
  const { clock, logger } = deps;
  const { namespace } = config;
  const kc = loadKubeConfig({ kubeconfigPath: config.kubeconfigPath, env: deps.env });
  // Read before anything starts: a bad file must not leave a half-started replica behind.
  const remoteKubeconfigs = new Map(
    [...config.remoteKubeconfigs].map(([id, path]) => {
      let text: string;
      try {
        text = readFileSync(path, 'utf8');
      } catch (e) {
        throw new CastellanError('invalid-argument', `cannot read: ${(e as Error).message}`, {
          subject: path,
        });
      }
      return [id, kubeConfigFromString(text, path)] as const;
    }),
  );
  const clients = makeClients(kc);
  const identity =
    deps.identity ?? `${deps.env['POD_NAME'] ?? hostname()}-${randomBytes(3).toString('hex')}`;
  const events = new EventRecorder(clients.core, clock, 'castellan', identity, logger);
  const stops: (() => Promise<void> | void)[] = [];
  const close = async (): Promise<void> => {
    // Taken out of the list: a second close() has nothing left to stop.
    for (const s of stops.splice(0).reverse()) {
      try {
        await s();
      } catch (e) {
        logger.warn({ error: String(e) }, 'error while stopping Kubernetes mode');
      }
    }
  };
  const loadErrors = caLoadErrorsMetric();
  const { stopRequested } = deps;
  const untilStop = <T>(step: Promise<T>): Promise<T> =>
    stopRequested
      ? Promise.race([
          step,
          stopRequested.then(() => {
            throw new StoppedWhileStarting('Kubernetes mode');
          }),
        ])
      : step;
  try {
    // Every replica follows the selectors, so a new leader publishes at once to the right
    // namespaces and never to one the mesh config leaves out.
    const discovery = new DiscoveryNamespaces({ logger });
    const meshConfig = deps.meshConfig;
    if (meshConfig && 'file' in meshConfig) {
      // A mesh config file wins, as istiod's does: the selectors are its, not the ConfigMap's.
      discovery.meshChanged(meshConfig.file.text, meshConfig.file.where);
    } else {
      // The one watch of ConfigMap `istio`: it feeds the mesh holder and the discovery
      // selectors. Read before the CA: a first replica's self-signed root takes the mesh's
      // trust domain.
      const where = `configmap ${namespace}/${MESH_CONFIGMAP} key ${MESH_CONFIGMAP_KEY}`;
      let live = false;
      const meshWatch = startMeshConfigWatch({
        kubeConfig: kc,
        core: clients.core,
        namespace,
        clock,
        logger,
        onChange: (text) => {
          if (!live) return;
          discovery.meshChanged(text, where);
          try {
            meshConfig?.apply(text, where, false);
          } catch (e) {
            logger.error(
              { configMap: `${namespace}/${MESH_CONFIGMAP}`, error: (e as Error).message },
              'mesh config refused; keeping the last good one',
            );
          }
        },
      });
      stops.push(() => meshWatch.stop());
      await untilStop(meshWatch.synced);
      discovery.meshChanged(meshWatch.current(), where);
      meshConfig?.apply(meshWatch.current(), where, true);
      live = true;
    }
    const state = new SwappableCaState();
    // Keys in a PKCS#11 token (--ca-key-uri, or the Secret's ca-key.uri): opened on first use.
    const signers = new KeyUriSigners({
      opener: (uri) => openPkcs11Signer({ uri, env: deps.env, clock, logger }),
      clock,
    });
    stops.push(() => signers.close());
    const caSource = new KubeCaSource({
      keys: { keyUri: deps.ca.caKeyUri, signers },
      kubeConfig: kc,
      core: clients.core,
      namespace,
      trustDomain: deps.trustDomain(),
      state,
      clock,
      events,
      onLoadError: loadErrors.count,
      selfSignedKeyType: deps.ca.selfSignedKeyType,
      selfSignedTtlMs: deps.ca.selfSignedRootTtlMs,
      readCrl: deps.ca.enableCaCrl,
      logger,
    });
    stops.push(() => caSource.stop());
    await untilStop(caSource.start());

    const secretRemotes = new SecretRemoteClusters({
      kubeConfig: kc,
      core: clients.core,
      namespace,
      clock,
      logger,
    });
    stops.push(() => secretRemotes.stop());
    const remotes = [new StaticRemoteClusters(remoteKubeconfigs), secretRemotes];
    const apiReviewer = new KubeTokenReviewer(clients.authentication, {
      localClusterId: config.clusterId,
      remotes,
    });
    // 0: no cache and no sharing of reviews in flight — every request is reviewed, as istiod does
    // (kube_jwt.go), so a deleted pod's or service account's token stops working at once.
    const reviewer: TokenReviewer =
      config.tokenReviewCacheMaxAgeMs > 0
        ? new CachingTokenReviewer(apiReviewer, {
            maxAgeMs: config.tokenReviewCacheMaxAgeMs,
            clock,
          })
        : apiReviewer;
    // Ambient mode: one pod index per cluster, only when some node account is trusted (istiod
    // makes no node authorizer otherwise, and then needs no cluster-wide pod watch for it).
    let impersonation: Impersonation | undefined;
    if (config.trustedNodeAccounts.length > 0) {
      const pods = new ClusterPodIndexes({
        kubeConfig: kc,
        localClusterId: config.clusterId,
        remotes,
        clock,
        logger,
      });
      stops.push(() => pods.stop());
      impersonation = new NodeAuthorizer({
        trustDomain: deps.trustDomain,
        trustedNodeAccounts: config.trustedNodeAccounts,
        pods,
      });
      logger.info(
        { trustedNodeAccounts: config.trustedNodeAccounts.map(formatNodeAccount) },
        'ambient mode: node proxies may ask for the identities of pods on their node',
      );
    }
    const tokenAuthenticators: Authenticator[] = [];
    if (config.jwtOffline) {
      const jwks = new ApiServerJwks({ kubeConfig: kc, clock, logger });
      stops.push(() => jwks.stop());
      await untilStop(jwks.start());
      tokenAuthenticators.push(
        new JwtAuthenticator({
          issuer: jwks.issuer,
          keys: jwks.keys,
          audiences: deps.authn.tokenAudiences,
          // The same bound as TokenReview answers, 0 included (then nothing is remembered).
          cache:
            config.tokenReviewCacheMaxAgeMs > 0
              ? { maxAgeMs: config.tokenReviewCacheMaxAgeMs }
              : false,
          clock,
          logger,
        }),
      );
    }
    tokenAuthenticators.push(
      new TokenReviewAuthenticator({ reviewer, audiences: deps.authn.tokenAudiences, logger }),
    );

    const leader = new LeaderElector({
      coordination: clients.coordination,
      namespace,
      leaseName: config.leaseName,
      identity,
      leaseDurationMs: config.leaseDurationMs,
      clock,
      logger,
    });
    const stopLeaderWork = whileLeader(leader, () => {
      // What istiod's namespace controller publishes: the root always, the plugged-in CA's CRL
      // while it has one (PILOT_ENABLE_CA_CRL), removed when it goes.
      const published = (): PublishedConfigMap[] => {
        const bundle = state.current()?.bundle;
        const maps: PublishedConfigMap[] = [
          {
            name: config.rootCertConfigMap,
            key: ROOT_CERT_CONFIGMAP_KEY,
            value: bundle?.rootBundlePem,
            what: 'the root certificate',
          },
        ];
        if (deps.ca.enableCaCrl) {
          maps.push({
            name: config.crlConfigMapName,
            key: CRL_CONFIGMAP_KEY,
            value: bundle?.crl?.pem,
            what: 'the CA CRL',
          });
        }
        return maps;
      };
      const publisher = new ConfigMapPublisher({
        kubeConfig: kc,
        core: clients.core,
        configMaps: published(),
        namespaces: discovery,
        clock,
        logger,
      });
      publisher.start();
      const unsubscribe = state.onChange(() => {
        for (const m of published()) publisher.set(m.name, m.value);
      });
      // A check interval of 0 turns the checks off (CITADEL_SELF_SIGNED_ROOT_CERT_CHECK_INTERVAL).
      const rotator = new RootRotator({
        core: clients.core,
        namespace,
        clock,
        checkIntervalMs: config.rootRotationCheckMs,
        gracePercent: config.rootRotationGracePercent,
        ttlMs: deps.ca.selfSignedRootTtlMs,
        logger,
      });
      rotator.start();
      return async () => {
        await rotator.stop();
        unsubscribe();
        await publisher.stop();
      };
    });
    stops.push(() => leader.stop());
    stops.push(stopLeaderWork);
    if (deps.policyCompiler) {
      const starting = startPolicyWatch({
        kubeConfig: kc,
        compiler: deps.policyCompiler,
        clock,
        // The MeshConfig reaches the compiler from the mesh holder (the one watch above; app.ts).
        logger,
      });
      // Stopped once started, also when a stop ends the wait for it below.
      stops.push(async () => (await starting.catch(() => undefined))?.stop());
      await untilStop(starting);
    }
    logger.info(
      { server: clients.server, namespace, identity, lease: config.leaseName },
      'Kubernetes mode started',
    );
    return {
      caState: state,
      tokenAuthenticators,
      tokenHint: `kubectl create token <service-account> -n <namespace> --audience ${deps.authn.tokenAudiences[0] ?? 'istio-ca'}`,
      trustBundle: `ConfigMap ${config.rootCertConfigMap}`,
      registry: loadErrors.registry,
      leader,
      // The leader's work (whileLeader above) publishes and follows the ConfigMaps. Called once
      // a CA is loaded: a replica serving nothing does not lead.
      publishTrustBundle: () => {
        // Never lead without a CA: the publisher would have no root to publish.
        if (!state.current()) {
          return Promise.reject(new CastellanError('unavailable', 'no CA loaded yet'));
        }
        leader.start();
        return Promise.resolve();
      },
      whyNoCa: () => caSource.whyNoCa(),
      impersonation,
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}
