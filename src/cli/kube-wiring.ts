import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Authenticator } from '../authn/authenticator.js';
import { CachingTokenReviewer } from '../authn/caching-token-reviewer.js';
import { JwtAuthenticator } from '../authn/jwt-authenticator.js';
import { TokenReviewAuthenticator } from '../authn/token-review.js';
import type { CaState } from '../ca/authority.js';
import { SwappableCaState } from '../ca/ca-state.js';
import { KeyUriSigners } from '../ca/signers/key-uri-signers.js';
import { openPkcs11Signer } from '../ca/signers/pkcs11-signer.js';
import type { Clock } from '../clock.js';
import { CastellanError } from '../errors.js';
import type { Logger } from '../log.js';
import type { CaKeyType } from '../pki/key-type.js';
import { KubeCaSource } from '../kube/cacerts-secret-source.js';
import { kubeConfigFromString, loadKubeConfig, makeClients } from '../kube/client.js';
import { EventRecorder } from '../kube/events.js';
import { ApiServerJwks } from '../kube/jwt-discovery.js';
import { LeaderElector, whileLeader } from '../kube/leader-election.js';
import { startPolicyWatch } from '../kube/policy-watch.js';
import { RootPublisher } from '../kube/root-publisher.js';
import { RootRotator } from '../kube/root-rotation.js';
import {
  KubeTokenReviewer,
  SecretRemoteClusters,
  StaticRemoteClusters,
} from '../kube/token-reviewer.js';
import type { PolicyCompiler } from '../policy/compiler.js';
import type { KubeModeConfig } from './kube-options.js';

export { addKubeOptions, parseKubeOptions } from './kube-options.js';
export type { KubeModeConfig, RawKubeOptions } from './kube-options.js';

export interface KubeModeDeps {
  readonly namespace: string;
  readonly trustDomain: string;
  readonly tokenAudiences: readonly string[];
  readonly caKeyType?: CaKeyType | undefined;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Counts refused CA updates: castellan_ca_load_errors_total{source}. */
  readonly onCaLoadError?: ((source: string) => void) | undefined;
  /** This replica's name in the Lease; default POD_NAME or the host name, plus a suffix. */
  readonly identity?: string | undefined;
  /** Fed from PeerAuthentications, AuthorizationPolicies, Pods and Namespaces when given. */
  readonly policyCompiler?: PolicyCompiler | undefined;
  /** `cacerts`' key in a PKCS#11 token (--ca-key-uri), unless the Secret names it (ca-key.uri). */
  readonly caKeyUri?: string | undefined;
}

/** What `serve` needs from Kubernetes mode (the same shape as its local CaRuntime). */
export interface KubeRuntime {
  readonly caState: CaState;
  readonly tokenAuthenticators: readonly Authenticator[];
  readonly tokenHint: string;
  readonly leader: LeaderElector;
  close(): Promise<void>;
}

/**
 * Starts Kubernetes mode: the CA from `cacerts` / `istio-ca-secret` (watched), TokenReview
 * (cached; remote clusters), optional offline JWT verification, leader election, and the
 * leader-only root publication and self-signed root rotation. Resolves once a CA is loaded.
 */
export async function startKubeMode(
  config: KubeModeConfig,
  deps: KubeModeDeps,
): Promise<KubeRuntime> {
  const { clock, logger, namespace } = deps;
  const kc = loadKubeConfig({ kubeconfigPath: config.kubeconfigPath });
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
    deps.identity ?? `${process.env['POD_NAME'] ?? hostname()}-${randomBytes(3).toString('hex')}`;
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
  try {
    const state = new SwappableCaState();
    // Keys in a PKCS#11 token (--ca-key-uri, or the Secret's ca-key.uri): opened on first use.
    const signers = new KeyUriSigners({
      opener: (uri) => openPkcs11Signer({ uri, env: process.env, clock, logger }),
      clock,
    });
    stops.push(() => signers.close());
    const caSource = new KubeCaSource({
      keys: { keyUri: deps.caKeyUri, signers },
      kubeConfig: kc,
      core: clients.core,
      namespace,
      trustDomain: deps.trustDomain,
      state,
      clock,
      events,
      onLoadError: (source) => deps.onCaLoadError?.(source),
      selfSignedKeyType: deps.caKeyType,
      logger,
    });
    stops.push(() => caSource.stop());
    await caSource.start();

    const secretRemotes = new SecretRemoteClusters({
      kubeConfig: kc,
      core: clients.core,
      namespace,
      logger,
    });
    stops.push(() => secretRemotes.stop());
    const reviewer = new CachingTokenReviewer(
      new KubeTokenReviewer(clients.authentication, {
        localClusterId: config.clusterId,
        remotes: [new StaticRemoteClusters(remoteKubeconfigs), secretRemotes],
      }),
      { maxAgeMs: config.tokenReviewCacheMaxAgeMs, clock },
    );
    const tokenAuthenticators: Authenticator[] = [];
    if (config.jwtOffline) {
      const jwks = new ApiServerJwks({ kubeConfig: kc, clock, logger });
      await jwks.start();
      stops.push(() => jwks.stop());
      tokenAuthenticators.push(
        new JwtAuthenticator({
          issuer: jwks.issuer,
          keys: jwks.keys,
          audiences: deps.tokenAudiences,
          clock,
          logger,
        }),
      );
    }
    tokenAuthenticators.push(
      new TokenReviewAuthenticator({ reviewer, audiences: deps.tokenAudiences, logger }),
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
      const publisher = new RootPublisher({
        kubeConfig: kc,
        core: clients.core,
        rootBundlePem: state.current()?.bundle.rootBundlePem ?? '',
        logger,
      });
      publisher.start();
      const unsubscribe = state.onChange((s) => publisher.setBundle(s.bundle.rootBundlePem));
      const rotator = new RootRotator({
        core: clients.core,
        namespace,
        clock,
        checkIntervalMs: config.rootRotationCheckMs,
        logger,
      });
      rotator.start();
      return async () => {
        rotator.stop();
        unsubscribe();
        await publisher.stop();
      };
    });
    stops.push(() => leader.stop());
    stops.push(stopLeaderWork);
    if (deps.policyCompiler) {
      const policies = await startPolicyWatch({
        kubeConfig: kc,
        compiler: deps.policyCompiler,
        logger,
      });
      stops.push(() => policies.stop());
    }
    leader.start();
    logger.info(
      { server: clients.server, namespace, identity, lease: config.leaseName },
      'Kubernetes mode started',
    );
    return {
      caState: state,
      tokenAuthenticators,
      tokenHint: `kubectl create token <service-account> -n <namespace> --audience ${deps.tokenAudiences[0] ?? 'istio-ca'}`,
      leader,
      close,
    };
  } catch (e) {
    await close();
    throw e;
  }
}
